//! MIDI notes from the host to MRT2's piano roll, sample-accurate and lock-free.
//!
//! ```text
//!  process(): NoteEvent{timing} ─► NoteIn (preallocated list) ─► ChunkPlayer: at sample `timing`,
//!     the next block to start ─► NoteMsg{frame, pitch, on} ─rtrb─► worker: NoteFeed ─► before
//!     generating frame f, every note of frames ≤ f reaches the NoteTracker ─► evaluate_frame
//!     ─► Controls.mrt2.pianoroll
//! ```
//!
//! A frame is a generated block (MRT2: 40 ms); its id is the block's sequence number
//! (`ChunkBuf::seq`). A note steers the first block that starts at or after its sample, the rule
//! slot-weight automation follows for v1's chunks: one sample before a block boundary it lands in
//! the block starting there, one sample after it in the next. Notes between two boundaries all
//! reach the same frame, so one pressed and released between them is still one onset (the
//! tracker's latch). Offline, the worker generates block `f` only when the player waits for it
//! at its first sample, after the player has handed over every note up to that sample: the
//! mapping is exact. In real time, blocks are generated ahead: a note for a block already made
//! reaches the next one generated, the buffer's latency.

use std::collections::VecDeque;

use mrt::mrt2::notes::{NoteTracker, NUM_PITCHES};

/// Capacity of the player → worker note ring (messages; the worker drains it every 2 ms when idle,
/// after each block when generating). A burst beyond it is dropped and counted
/// ([`crate::shared::Shared::notes_dropped`]).
pub const NOTE_RING: usize = 4096;
/// Notes of one `process()` call kept for the player (nice-plug's own event queue holds 1024
/// before it allocates); more are dropped and counted.
pub const NOTES_PER_BLOCK: usize = 1024;
/// MIDI channel 10 (0-based 9) carries General MIDI drums, not pitches: left out, as
/// `mrt generate --midi` does.
pub const DRUM_CHANNEL: u8 = 9;

/// A note event of one `process()` block, at its sample offset in the block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NoteIn {
    pub timing: u32,
    pub pitch: u8,
    pub on: bool,
}

/// A note event placed on the generated-block timeline (audio thread → worker).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NoteMsg {
    /// The sequence number of the block in which the note falls.
    pub frame: u64,
    pub pitch: u8,
    pub on: bool,
}

/// A fresh note ring for one activation.
pub fn ring() -> (rtrb::Producer<NoteMsg>, rtrb::Consumer<NoteMsg>) {
    rtrb::RingBuffer::new(NOTE_RING)
}

/// The worker's side: notes waiting for their frame, and the tracker they drive.
#[derive(Debug)]
pub struct NoteFeed {
    pending: VecDeque<NoteMsg>,
    tracker: NoteTracker,
    /// Pitches down now (note-ons minus note-offs reached the tracker), for the editor.
    held: [bool; NUM_PITCHES],
}

impl Default for NoteFeed {
    fn default() -> Self {
        Self { pending: VecDeque::new(), tracker: NoteTracker::new(), held: [false; NUM_PITCHES] }
    }
}

impl NoteFeed {
    /// Takes every message the player has sent.
    pub fn drain(&mut self, rx: &mut rtrb::Consumer<NoteMsg>) {
        while let Ok(m) = rx.pop() {
            self.pending.push_back(m);
        }
    }

    /// Queues one message (tests, and [`NoteFeed::drain`]).
    pub fn push(&mut self, m: NoteMsg) {
        self.pending.push_back(m);
    }

    /// The piano roll of frame `frame`: every pending note of a frame ≤ `frame` reaches the
    /// tracker (in arrival order), then the frame is read once (advancing the tracker).
    pub fn frame_roll(&mut self, frame: u64, onset_mode: u8, unmask_width: usize) -> [i32; NUM_PITCHES] {
        // Messages arrive in frame order (the player's timeline only moves forward), except
        // across a context reset; take every due one wherever it sits, in arrival order.
        let (tracker, held) = (&self.tracker, &mut self.held);
        self.pending.retain(|m| {
            if m.frame > frame {
                return true;
            }
            let p = usize::from(m.pitch);
            if m.on {
                tracker.note_on(p);
            } else {
                tracker.note_off(p);
            }
            if let Some(h) = held.get_mut(p) {
                *h = m.on;
            }
            false
        });
        self.tracker.evaluate_frame(onset_mode, unmask_width)
    }

    /// Number of pitches held down.
    pub fn held(&self) -> usize {
        self.held.iter().filter(|&&h| h).count()
    }

    /// Forgets every note (a new activation).
    pub fn clear(&mut self) {
        self.pending.clear();
        self.tracker.reset();
        self.held = [false; NUM_PITCHES];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(frame: u64, pitch: u8, on: bool) -> NoteMsg {
        NoteMsg { frame, pitch, on }
    }

    #[test]
    fn a_note_reaches_the_roll_of_its_frame_and_not_before() {
        let mut f = NoteFeed::default();
        f.push(msg(3, 60, true));
        assert_eq!(f.frame_roll(2, 1, 0)[60], -1, "frame 2 comes before the note");
        assert_eq!(f.frame_roll(3, 1, 0)[60], 2, "onset in its frame");
        assert_eq!(f.frame_roll(4, 1, 0)[60], 1, "then sustain");
        assert_eq!(f.held(), 1);
        f.push(msg(5, 60, false));
        assert_eq!(f.frame_roll(5, 1, 0)[60], -1, "released in frame 5: idle (masked at width 0)");
        assert_eq!(f.held(), 0);
    }

    #[test]
    fn a_note_released_within_its_frame_is_still_one_onset() {
        let mut f = NoteFeed::default();
        f.push(msg(7, 64, true));
        f.push(msg(7, 64, false));
        let roll = f.frame_roll(7, 1, 2);
        assert_eq!((roll[64], roll[62], roll[66], roll[61]), (2, 0, 0, -1), "latched onset, ±2 unmasked");
        assert_eq!(f.frame_roll(8, 1, 2)[64], -1, "seen once");
        // Onset mode 0: any active pitch is 3.
        f.push(msg(9, 64, true));
        assert_eq!(f.frame_roll(9, 0, 0)[64], 3);
    }

    #[test]
    fn a_late_note_reaches_the_next_frame_generated() {
        // Real time: frame 4 was generated before the note for frame 3 arrived.
        let mut f = NoteFeed::default();
        f.push(msg(3, 48, true));
        assert_eq!(f.frame_roll(5, 1, 0)[48], 2);
    }
}
