//! The MIDI note tracker: what one frame's piano roll says about each pitch.
//!
//! Note-ons and note-offs arrive between frames (from the audio thread); each generated frame
//! reads every pitch once and advances it. A note pressed and released between two frames is
//! latched and still seen once as an onset. The official engine's rules
//! (`core/src/midi_note_tracker.{h,cpp}` and `MLXEngine::Impl::populate_condition_tokens` in
//! `core/src/mlx_engine.cpp`, `magenta/magenta-realtime` branch `main`):
//!
//! ```text
//!  note_on ──► Onset ──frame──► Sustain ──note_off──► Idle
//!                │ note_off
//!                ▼
//!          OnsetReleased ──frame (seen as an onset)──► Idle
//! ```

use std::sync::atomic::{AtomicU8, Ordering};

/// Number of MIDI pitches in the piano roll.
pub const NUM_PITCHES: usize = 128;

/// Note states of the tracker (the official `magentart::core::NoteState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum NoteState {
    Idle = 0,
    /// Pressed, not yet seen by a frame.
    Onset = 1,
    /// Seen as an onset, still held.
    Sustain = 2,
    /// Pressed and released before any frame saw it: latched, seen once as an onset.
    OnsetReleased = 3,
}

impl NoteState {
    fn from_u8(v: u8) -> Self {
        match v {
            1 => NoteState::Onset,
            2 => NoteState::Sustain,
            3 => NoteState::OnsetReleased,
            _ => NoteState::Idle,
        }
    }
}

/// Piano-roll value of a pitch in `state` (`calculate_token` of the C++ engine):
/// idle → 0; onset mode 0: any held/onset → 3; onset mode 1: onset or latched onset → 2,
/// sustain → 1.
pub fn pianoroll_value(state: NoteState, onset_mode: u8) -> i32 {
    match state {
        NoteState::Idle => 0,
        NoteState::Onset | NoteState::OnsetReleased if onset_mode == 1 => 2,
        NoteState::Sustain if onset_mode == 1 => 1,
        _ => 3,
    }
}

/// The MIDI note tracker of the official engine (`core/src/midi_note_tracker.{h,cpp}` and
/// `MLXEngine::Impl::populate_condition_tokens` in `core/src/mlx_engine.cpp`).
///
/// `note_on`/`note_off` may be called from another thread (the states are atomics, updated
/// lock-free as in the C++); [`NoteTracker::evaluate_frame`] must be called exactly once per
/// generated frame, since it advances every pitch's state.
#[derive(Debug)]
pub struct NoteTracker {
    states: [AtomicU8; NUM_PITCHES],
}

impl Default for NoteTracker {
    fn default() -> Self {
        Self::new()
    }
}

impl NoteTracker {
    pub fn new() -> Self {
        Self { states: std::array::from_fn(|_| AtomicU8::new(NoteState::Idle as u8)) }
    }

    /// A note-on: the pitch becomes an unseen onset (also when it was already held).
    pub fn note_on(&self, pitch: usize) {
        if let Some(s) = self.states.get(pitch) {
            s.store(NoteState::Onset as u8, Ordering::Relaxed);
        }
    }

    /// A note-off: an unseen onset is latched (`OnsetReleased`), a sustained note goes idle.
    pub fn note_off(&self, pitch: usize) {
        if let Some(s) = self.states.get(pitch) {
            let _ = s.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| match NoteState::from_u8(v) {
                NoteState::Onset => Some(NoteState::OnsetReleased as u8),
                NoteState::Sustain => Some(NoteState::Idle as u8),
                _ => None,
            });
        }
    }

    /// Releases every note (all pitches idle).
    pub fn reset(&self) {
        for s in &self.states {
            s.store(NoteState::Idle as u8, Ordering::Relaxed);
        }
    }

    /// Returns the state a frame observes for `pitch` and advances it (onset → sustain,
    /// latched onset → idle).
    pub fn evaluate_and_update(&self, pitch: usize) -> NoteState {
        let prev = self.states[pitch]
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| match NoteState::from_u8(v) {
                NoteState::Onset => Some(NoteState::Sustain as u8),
                NoteState::OnsetReleased => Some(NoteState::Idle as u8),
                _ => None,
            })
            .unwrap_or_else(|v| v);
        NoteState::from_u8(prev)
    }

    /// The piano-roll values of one frame, advancing every pitch once.
    ///
    /// `unmask_width ≥ 127`: every pitch explicit (0 for idle pitches). Otherwise idle pitches
    /// are masked (−1) except those within ±`unmask_width` of an active pitch, which are sent as
    /// explicit off (0); active pitches get their value from [`pianoroll_value`].
    pub fn evaluate_frame(&self, onset_mode: u8, unmask_width: usize) -> [i32; NUM_PITCHES] {
        let mut out = [-1i32; NUM_PITCHES];
        let mut states = [NoteState::Idle; NUM_PITCHES];
        for (p, s) in states.iter_mut().enumerate() {
            *s = self.evaluate_and_update(p);
        }
        if unmask_width >= 127 {
            for (o, &s) in out.iter_mut().zip(&states) {
                *o = pianoroll_value(s, onset_mode);
            }
            return out;
        }
        for (p, &s) in states.iter().enumerate() {
            if s != NoteState::Idle {
                let lo = p.saturating_sub(unmask_width);
                let hi = (p + unmask_width + 1).min(NUM_PITCHES);
                for v in &mut out[lo..hi] {
                    *v = 0;
                }
            }
        }
        for p in 0..NUM_PITCHES {
            if states[p] != NoteState::Idle {
                out[p] = pianoroll_value(states[p], onset_mode);
            }
        }
        out
    }
}

/// A note-on or note-off at a time in seconds (from a MIDI file, after its tempo map).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NoteEvent {
    pub seconds: f64,
    pub pitch: u8,
    pub on: bool,
}

/// The piano roll of `frames` frames of `frame_seconds` each, driven by `events` through a
/// [`NoteTracker`] as the plugin drives it live: every event inside frame `t`'s window
/// `[t·d, (t+1)·d)` reaches the tracker (in time order, file order on ties) before frame `t` is
/// evaluated, so a note that starts and ends inside one window is still one onset. Events at
/// negative times count for frame 0; those past the last frame are ignored.
pub fn pianoroll_frames(events: &[NoteEvent], frames: usize, frame_seconds: f64, onset_mode: u8, unmask_width: usize) -> Vec<[i32; NUM_PITCHES]> {
    let mut sorted: Vec<NoteEvent> = events.to_vec();
    sorted.sort_by(|a, b| a.seconds.total_cmp(&b.seconds)); // stable: file order on ties
    let tracker = NoteTracker::new();
    let mut next = 0;
    (0..frames)
        .map(|t| {
            let end = (t + 1) as f64 * frame_seconds;
            while next < sorted.len() && sorted[next].seconds < end {
                let e = sorted[next];
                if e.on {
                    tracker.note_on(usize::from(e.pitch));
                } else {
                    tracker.note_off(usize::from(e.pitch));
                }
                next += 1;
            }
            tracker.evaluate_frame(onset_mode, unmask_width)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(seconds: f64, pitch: u8, on: bool) -> NoteEvent {
        NoteEvent { seconds, pitch, on }
    }

    #[test]
    fn midi_events_land_on_the_frame_whose_window_holds_them() {
        // A held note from 0.05 s to 0.13 s (frames of 40 ms: windows 1, 2, 3), a short one inside
        // frame 5's window, and a late one past the end.
        let events = [ev(0.13, 60, false), ev(0.05, 60, true), ev(0.205, 64, true), ev(0.215, 64, false), ev(9.0, 70, true)];
        let roll = pianoroll_frames(&events, 7, 0.04, 1, 0);
        let col = |p: usize| roll.iter().map(|f| f[p]).collect::<Vec<_>>();
        assert_eq!(col(60), vec![-1, 2, 1, -1, -1, -1, -1]);
        assert_eq!(col(64), vec![-1, -1, -1, -1, -1, 2, -1]);
        assert!(roll.iter().all(|f| f[70] == -1));
        // Onset mode 0 and a full unmask.
        let roll = pianoroll_frames(&events, 3, 0.04, 0, 127);
        assert_eq!(roll[1][60], 3);
        assert_eq!(roll[1][61], 0);
        assert!(roll[0].iter().all(|&v| v == 0));
    }

    #[test]
    fn a_retrigger_at_the_same_time_as_the_release_is_a_new_onset() {
        let events = [ev(0.0, 60, true), ev(0.08, 60, false), ev(0.08, 60, true)];
        let roll = pianoroll_frames(&events, 4, 0.04, 1, 0);
        assert_eq!(roll.iter().map(|f| f[60]).collect::<Vec<_>>(), vec![2, 1, 2, 1]);
    }

    #[test]
    fn a_note_pressed_and_released_between_frames_is_seen_once_as_an_onset() {
        let t = NoteTracker::new();
        t.note_on(60);
        t.note_off(60);
        let f1 = t.evaluate_frame(1, 0);
        assert_eq!(f1[60], 2);
        let f2 = t.evaluate_frame(1, 0);
        assert_eq!(f2[60], -1);
    }

    #[test]
    fn a_held_note_is_an_onset_then_sustain_in_onset_mode_one() {
        let t = NoteTracker::new();
        t.note_on(64);
        assert_eq!(t.evaluate_frame(1, 0)[64], 2);
        assert_eq!(t.evaluate_frame(1, 0)[64], 1);
        t.note_off(64);
        assert_eq!(t.evaluate_frame(1, 0)[64], -1);
    }

    #[test]
    fn onset_mode_zero_sends_three_for_every_active_note() {
        let t = NoteTracker::new();
        t.note_on(64);
        assert_eq!(t.evaluate_frame(0, 0)[64], 3);
        assert_eq!(t.evaluate_frame(0, 0)[64], 3);
        t.note_on(65);
        t.note_off(65);
        assert_eq!(t.evaluate_frame(0, 0)[65], 3);
    }

    #[test]
    fn unmask_width_sends_neighbours_as_explicit_off_and_masks_the_rest() {
        let t = NoteTracker::new();
        t.note_on(60);
        let f = t.evaluate_frame(1, 2);
        assert_eq!(&f[57..64], &[-1, 0, 0, 2, 0, 0, -1]);
        // The window is clipped at the ends of the keyboard.
        t.note_on(0);
        let f = t.evaluate_frame(1, 3);
        assert_eq!(&f[0..5], &[2, 0, 0, 0, -1]);
    }

    #[test]
    fn unmask_width_127_makes_every_pitch_explicit() {
        let t = NoteTracker::new();
        t.note_on(10);
        let f = t.evaluate_frame(0, 127);
        assert!(f.iter().enumerate().all(|(p, &v)| if p == 10 { v == 3 } else { v == 0 }));
    }

    #[test]
    fn a_repeated_note_on_while_held_is_a_new_onset() {
        let t = NoteTracker::new();
        t.note_on(67);
        assert_eq!(t.evaluate_frame(1, 0)[67], 2);
        assert_eq!(t.evaluate_frame(1, 0)[67], 1);
        t.note_on(67);
        assert_eq!(t.evaluate_frame(1, 0)[67], 2);
    }
}
