//! The audio-thread half of the chunk pipeline: plays finished chunks handed over by the worker
//! through a [`triple_buffer`], sample-exact across chunk seams, with a 10 ms fade for underruns,
//! transport stops and context resets.
//!
//! ```text
//!  worker ── ChunkBuf{seq, epoch, len, L, R} ──► triple buffer ──► ChunkPlayer::render
//!     ▲                                                              │
//!     └──── started_seq / epoch / waiting / underruns (atomics) ◄────┘
//! ```
//!
//! The worker publishes chunk `n + 1` only once the player has started chunk `n`
//! (`started_seq`), so a publish never overwrites a chunk the player has not seen. Nothing here
//! allocates, locks or logs: buffers are allocated by the worker and only swapped here.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::shared::Shared;

/// Length of every fade (underrun, stop, reset), in seconds.
pub const FADE_SECONDS: f32 = 0.010;

/// One chunk of output-rate audio as handed from the worker to the player.
#[derive(Clone, Debug, Default)]
pub struct ChunkBuf {
    /// 1, 2, … in generation order; 0 = no chunk yet.
    pub seq: u64,
    /// The context epoch the chunk belongs to (bumped on every reset).
    pub epoch: u64,
    /// Valid samples per channel; the vectors may be longer (they are reused).
    pub len: usize,
    pub left: Vec<f32>,
    pub right: Vec<f32>,
}

impl ChunkBuf {
    /// An empty chunk whose channels hold `capacity` samples, so that the worker rarely has to
    /// grow them.
    pub fn with_capacity(capacity: usize) -> Self {
        Self { seq: 0, epoch: 0, len: 0, left: vec![0.0; capacity], right: vec![0.0; capacity] }
    }

    /// Copies `left`/`right` in, growing the channels if needed (worker side only).
    pub fn fill(&mut self, seq: u64, epoch: u64, left: &[f32], right: &[f32]) {
        let n = left.len().min(right.len());
        if self.left.len() < n {
            self.left.resize(n, 0.0);
        }
        if self.right.len() < n {
            self.right.resize(n, 0.0);
        }
        self.left[..n].copy_from_slice(&left[..n]);
        self.right[..n].copy_from_slice(&right[..n]);
        self.seq = seq;
        self.epoch = epoch;
        self.len = n;
    }
}

/// The fade envelope: follows its target down at once (the target itself never falls faster
/// than one fade per `fade_len` samples) and rises toward it by `1 / fade_len` per sample.
#[derive(Clone, Copy, Debug)]
pub struct Envelope {
    gain: f32,
    step: f32,
    fade_len: usize,
}

impl Envelope {
    pub fn new(sample_rate: f32) -> Self {
        let fade_len = ((sample_rate * FADE_SECONDS).round() as usize).max(1);
        Self { gain: 0.0, step: 1.0 / fade_len as f32, fade_len }
    }

    /// An envelope that starts fully open (gain 1).
    pub fn open(sample_rate: f32) -> Self {
        Self { gain: 1.0, ..Self::new(sample_rate) }
    }

    pub fn fade_len(&self) -> usize {
        self.fade_len
    }

    pub fn gain(&self) -> f32 {
        self.gain
    }

    /// Advances one sample toward `target` and returns the new gain.
    #[inline]
    pub fn next(&mut self, target: f32) -> f32 {
        if target <= self.gain {
            // Falling: never faster than one step per sample.
            self.gain = (self.gain - self.step).max(target);
        } else {
            self.gain = (self.gain + self.step).min(target);
        }
        self.gain
    }

    /// The highest gain that still reaches zero by the time `remaining` samples are played.
    #[inline]
    pub fn ceiling(&self, remaining: usize) -> f32 {
        (remaining as f32 / self.fade_len as f32).min(1.0)
    }
}

/// What the host transport asks of the player for one block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockControl {
    /// Audio is wanted (transport playing, or free-run).
    pub playing: bool,
    /// Offline rendering: wait for every chunk instead of running out.
    pub offline: bool,
    /// MIDI gate: sound only while at least one note is held (fading in and out).
    pub gate: bool,
}

/// Plays chunks from the worker. Lives on the audio thread.
pub struct ChunkPlayer {
    output: triple_buffer::Output<ChunkBuf>,
    shared: Arc<Shared>,
    /// Whether the output buffer holds a chunk of the current epoch being played.
    has_chunk: bool,
    pos: usize,
    env: Envelope,
    epoch: u64,
    /// Whether the player ran dry while playing (one underrun per dry spell).
    dry: bool,
    /// A chunk of the current epoch has been started (a jump to the start must then reset).
    started_in_epoch: bool,
    sample_rate: f32,
    /// Notes placed on the block timeline, to the worker (`None`: notes are dropped).
    notes: Option<rtrb::Producer<crate::midi::NoteMsg>>,
    /// Per pitch, how many note-ons are held (over all channels), and their sum: the MIDI gate.
    held: [u8; 128],
    held_total: u32,
    gate: Envelope,
}

/// How long [`ChunkPlayer::render`] waits in offline mode between checks of the worker.
const OFFLINE_POLL: std::time::Duration = std::time::Duration::from_micros(500);

impl ChunkPlayer {
    pub fn new(output: triple_buffer::Output<ChunkBuf>, shared: Arc<Shared>, sample_rate: f32) -> Self {
        let epoch = shared.epoch.load(Ordering::Acquire);
        Self {
            output,
            shared,
            has_chunk: false,
            pos: 0,
            env: Envelope::new(sample_rate),
            epoch,
            dry: false,
            started_in_epoch: false,
            sample_rate,
            notes: None,
            held: [0; 128],
            held_total: 0,
            gate: Envelope::open(sample_rate),
        }
    }

    /// Notes held now (the MIDI gate opens while this is above zero).
    pub fn notes_held(&self) -> u32 {
        self.held_total
    }

    /// Sends the notes given to [`ChunkPlayer::render_notes`] to the worker through `notes`.
    pub fn with_notes(mut self, notes: rtrb::Producer<crate::midi::NoteMsg>) -> Self {
        self.notes = Some(notes);
        self
    }

    /// The block a note at the current sample steers: the next block to start (at this very
    /// sample when the previous one has just run out). See [`crate::midi`].
    fn note_frame(&self) -> u64 {
        self.shared.started_seq.load(Ordering::Acquire) + 1
    }

    /// Hands `events` (sorted by timing) whose timing is at most `i` to the worker.
    fn send_notes(&mut self, events: &[crate::midi::NoteIn], next: &mut usize, i: usize) {
        while let Some(e) = events.get(*next).filter(|e| e.timing as usize <= i) {
            if let Some(h) = self.held.get_mut(e.pitch as usize) {
                match (e.on, *h) {
                    (true, n) if n < u8::MAX => {
                        *h += 1;
                        self.held_total += 1;
                    }
                    (false, n) if n > 0 => {
                        *h -= 1;
                        self.held_total -= 1;
                    }
                    _ => {}
                }
            }
            let msg = crate::midi::NoteMsg { frame: self.note_frame(), pitch: e.pitch, on: e.on };
            if let Some(tx) = self.notes.as_mut() {
                if tx.push(msg).is_err() {
                    self.shared.notes_dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
            *next += 1;
        }
    }

    pub fn envelope(&self) -> &Envelope {
        &self.env
    }

    /// Whether a chunk of the current epoch has started playing.
    pub fn started_in_epoch(&self) -> bool {
        self.started_in_epoch
    }

    /// Starts a new generation context: the current chunk is dropped (after the caller's fade,
    /// see [`ChunkPlayer::fading_reset`]) and only chunks of the new epoch are played.
    pub fn reset_context(&mut self) {
        self.epoch = self.shared.epoch.fetch_add(1, Ordering::AcqRel) + 1;
        self.has_chunk = false;
        self.pos = 0;
        self.started_in_epoch = false;
        self.dry = false;
        self.env = Envelope::new(self.sample_rate);
    }

    fn remaining(&self) -> usize {
        if self.has_chunk {
            self.output.output_buffer().len.saturating_sub(self.pos)
        } else {
            0
        }
    }

    /// Takes the next chunk if the worker has published one of the current epoch.
    fn try_advance(&mut self) -> bool {
        if !self.output.updated() {
            return false;
        }
        self.output.update();
        let buf = self.output.output_buffer();
        if buf.epoch != self.epoch || buf.len == 0 {
            // A chunk from before a reset: ignore it; the worker sees the new epoch and moves on.
            self.has_chunk = false;
            return false;
        }
        // Offline: stop asking for a chunk before announcing this one, or the worker could see
        // "started N, still waiting" and generate N+1 now, with parameters from before the
        // boundary.
        self.shared.waiting.store(false, Ordering::Release);
        self.shared.started_seq.store(buf.seq, Ordering::Release);
        self.has_chunk = true;
        self.pos = 0;
        self.started_in_epoch = true;
        true
    }

    /// Offline: blocks until the worker has published the next chunk or can no longer deliver.
    fn wait_for_chunk(&mut self) -> bool {
        self.shared.waiting.store(true, Ordering::Release);
        let ok = loop {
            if self.try_advance() {
                break true;
            }
            if !self.shared.can_deliver() {
                break false;
            }
            std::thread::sleep(OFFLINE_POLL);
        };
        self.shared.waiting.store(false, Ordering::Release);
        ok
    }

    /// Renders `left.len()` samples (both slices the same length) and reports what was
    /// buffered through the shared atomics.
    pub fn render(&mut self, left: &mut [f32], right: &mut [f32], ctl: BlockControl) {
        self.render_notes(left, right, ctl, &[]);
    }

    /// [`ChunkPlayer::render`] with the block's note events (sorted by timing): each is placed
    /// in the block that plays at its sample ([`crate::midi`]) before that block is waited for.
    pub fn render_notes(&mut self, left: &mut [f32], right: &mut [f32], ctl: BlockControl, events: &[crate::midi::NoteIn]) {
        let n = left.len().min(right.len());
        let mut next_note = 0;
        for i in 0..n {
            if self.has_chunk && self.pos >= self.output.output_buffer().len {
                self.has_chunk = false;
            }
            // Before an offline wait below, so the block waited for is generated with them.
            self.send_notes(events, &mut next_note, i);
            let gate = self.gate.next(if !ctl.gate || self.held_total > 0 { 1.0 } else { 0.0 });
            if !self.has_chunk && (ctl.playing || self.env.gain() > 0.0) {
                let got = self.try_advance() || (ctl.offline && ctl.playing && self.wait_for_chunk());
                if !got {
                    if ctl.playing && self.started_in_epoch && !self.dry {
                        self.dry = true;
                        self.shared.underruns.fetch_add(1, Ordering::AcqRel);
                    }
                    left[i] = 0.0;
                    right[i] = 0.0;
                    self.env.next(0.0);
                    continue;
                }
                self.dry = false;
            }
            if !self.has_chunk {
                left[i] = 0.0;
                right[i] = 0.0;
                continue;
            }
            // Fade toward zero ahead of running dry, and when the transport stops.
            let target = if !ctl.playing {
                0.0
            } else if ctl.offline || self.output.updated() {
                1.0
            } else {
                self.env.ceiling(self.remaining())
            };
            let g = self.env.next(target);
            if !ctl.playing && g == 0.0 {
                // Stopped and faded out: hold the position until play resumes.
                left[i] = 0.0;
                right[i] = 0.0;
                continue;
            }
            let buf = self.output.output_buffer();
            left[i] = buf.left[self.pos] * g * gate;
            right[i] = buf.right[self.pos] * g * gate;
            self.pos += 1;
        }
        // Notes timed past the block's end (a host's mistake) go with its last sample.
        self.send_notes(events, &mut next_note, usize::MAX);
        // The pending block's length is not visible before it is taken; every block of a model
        // has the same length.
        let pending = if self.output.updated() { self.shared.block_seconds() } else { 0.0 };
        self.shared.set_buffer_ahead(self.remaining() as f32 / self.sample_rate + pending);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Stands in for the worker: publishes chunk `k + 1` once the player has started chunk `k`.
    pub(crate) struct FakeWorker {
        pub input: triple_buffer::Input<ChunkBuf>,
        pub shared: Arc<Shared>,
        pub published: u64,
        pub chunk_len: usize,
        pub epoch: u64,
    }

    impl FakeWorker {
        /// Chunk `seq` (1-based) holds the global sample indices `(seq−1)·len ..`, scaled.
        pub fn chunk(seq: u64, len: usize) -> (Vec<f32>, Vec<f32>) {
            let base = (seq - 1) as usize * len;
            let l: Vec<f32> = (0..len).map(|i| value(base + i)).collect();
            let r: Vec<f32> = l.iter().map(|v| -v).collect();
            (l, r)
        }

        pub fn publish_next(&mut self) {
            let seq = self.published + 1;
            let (l, r) = Self::chunk(seq, self.chunk_len);
            self.input.input_buffer_mut().fill(seq, self.epoch, &l, &r);
            self.input.publish();
            self.published = seq;
        }

        /// Publishes when the player has started the last published chunk.
        pub fn poll(&mut self) {
            if self.shared.started_seq.load(Ordering::Acquire) >= self.published {
                self.publish_next();
            }
        }
    }

    /// A distinct, exactly representable value per global sample index.
    pub(crate) fn value(i: usize) -> f32 {
        ((i % 4096) as f32 - 2048.0) / 4096.0
    }

    fn setup(rate: f32, chunk_len: usize) -> (ChunkPlayer, FakeWorker, Arc<Shared>) {
        let shared = Arc::new(Shared::default());
        let (input, output) = triple_buffer::triple_buffer(&ChunkBuf::with_capacity(chunk_len));
        let player = ChunkPlayer::new(output, shared.clone(), rate);
        (player, FakeWorker { input, shared: shared.clone(), published: 0, chunk_len, epoch: 0 }, shared)
    }

    const PLAY: BlockControl = BlockControl { playing: true, offline: false, gate: false };
    const STOP: BlockControl = BlockControl { playing: false, offline: false, gate: false };

    fn render(p: &mut ChunkPlayer, n: usize, ctl: BlockControl) -> (Vec<f32>, Vec<f32>) {
        let (mut l, mut r) = (vec![f32::NAN; n], vec![f32::NAN; n]);
        p.render(&mut l, &mut r, ctl);
        (l, r)
    }

    #[test]
    fn envelope_falls_with_its_ceiling_and_rises_one_step_per_sample() {
        let mut e = Envelope::new(48_000.0);
        assert_eq!(e.fade_len(), 480);
        for _ in 0..480 {
            e.next(1.0);
        }
        assert_eq!(e.gain(), 1.0, "fully open after one fade length");
        // Falling along the ceiling: reaches 1/len at the last sample.
        for remaining in (1..=480).rev() {
            let g = e.next(e.ceiling(remaining));
            assert!((g - remaining as f32 / 480.0).abs() < 1e-6);
        }
        // A sudden target of zero still falls at most one step per sample.
        let mut e = Envelope::new(48_000.0);
        for _ in 0..480 {
            e.next(1.0);
        }
        let g = e.next(0.0);
        assert!((g - (1.0 - 1.0 / 480.0)).abs() < 1e-6);
    }

    #[test]
    fn seams_are_sample_exact_across_odd_blocks_and_rates() {
        for rate in [44_100.0f32, 48_000.0, 88_200.0, 96_000.0] {
            let chunk_len = 9_001;
            let (mut p, mut w, shared) = setup(rate, chunk_len);
            let fade = p.envelope().fade_len();
            w.publish_next();
            let blocks = [1usize, 7, 333, 8192, 64, 5, 4097, 2, 8191, 1000];
            let (mut out_l, mut out_r) = (Vec::new(), Vec::new());
            let total = chunk_len * 6;
            let mut k = 0;
            while out_l.len() < total {
                let n = blocks[k % blocks.len()];
                k += 1;
                let (l, r) = render(&mut p, n, PLAY);
                out_l.extend(l);
                out_r.extend(r);
                w.poll();
            }
            assert_eq!(shared.underruns.load(Ordering::Relaxed), 0, "{rate} Hz: no underrun expected");
            // Fade-in over the first `fade` samples, then every sample exactly in order.
            for i in 0..out_l.len() {
                let want = value(i);
                if i <= fade {
                    assert!(out_l[i].abs() <= want.abs() + 1e-6, "{rate} Hz: sample {i} exceeds the signal during fade-in");
                } else {
                    assert_eq!(out_l[i], want, "{rate} Hz: left sample {i} (chunk {}, offset {})", i / chunk_len + 1, i % chunk_len);
                    assert_eq!(out_r[i], -want, "{rate} Hz: right sample {i}");
                }
            }
        }
    }

    #[test]
    fn underrun_fades_out_within_10ms_counts_once_and_fades_back_in() {
        let rate = 48_000.0;
        let len = 4_800;
        let (mut p, mut w, shared) = setup(rate, len);
        let fade = p.envelope().fade_len();
        assert_eq!(fade, 480, "10 ms at 48 kHz");
        w.publish_next();
        // Play chunk 1 and then 3 blocks past its end without a chunk 2.
        let (l, _) = render(&mut p, len + 3 * 256, PLAY);
        for (i, &v) in l.iter().enumerate().take(len).skip(fade + 1) {
            let remaining = len - i;
            if remaining > fade {
                assert_eq!(v, value(i), "full level at {i}");
            } else {
                let g = remaining as f32 / fade as f32;
                assert!((v - value(i) * g).abs() < 1e-5, "fade-out at {i}: {v} vs {}", value(i) * g);
            }
        }
        assert!(l[len..].iter().all(|&v| v == 0.0), "silence once dry");
        for _ in 0..5 {
            render(&mut p, 100, PLAY);
        }
        assert_eq!(shared.underruns.load(Ordering::Relaxed), 1, "one dry spell, one underrun");
        // Chunk 2 arrives: it fades in from zero, one step per sample.
        w.publish_next();
        let (l, _) = render(&mut p, 2 * fade, PLAY);
        for (i, &v) in l.iter().enumerate() {
            let want = value(len + i);
            let g = ((i + 1) as f32 / fade as f32).min(1.0);
            assert!((v - want * g).abs() < 1e-5, "fade-in at {i}: {v} vs {}", want * g);
        }
        assert_eq!(shared.underruns.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn waiting_for_the_first_chunk_is_not_an_underrun() {
        let (mut p, mut w, shared) = setup(48_000.0, 10_000);
        for _ in 0..10 {
            let (l, _) = render(&mut p, 512, PLAY);
            assert!(l.iter().all(|&v| v == 0.0));
        }
        assert_eq!(shared.underruns.load(Ordering::Relaxed), 0);
        w.publish_next();
        let (l, _) = render(&mut p, 1000, PLAY);
        assert!(l[600..].iter().zip(600..).all(|(&v, i)| v == value(i)));
    }

    #[test]
    fn stop_fades_out_holds_position_and_resumes_where_it_stopped() {
        let (mut p, mut w, shared) = setup(48_000.0, 48_000);
        w.publish_next();
        let (l, _) = render(&mut p, 1000, PLAY);
        assert_eq!(l[999], value(999));
        // Stop: 480 more samples are consumed while fading, then silence.
        let (l, _) = render(&mut p, 2000, STOP);
        for (i, &v) in l.iter().enumerate().take(480) {
            let g = 1.0 - (i + 1) as f32 / 480.0;
            assert!((v - value(1000 + i) * g).abs() < 1e-5, "stop fade at {i}");
        }
        assert!(l[480..].iter().all(|&v| v == 0.0));
        let (l, _) = render(&mut p, 5000, STOP);
        assert!(l.iter().all(|&v| v == 0.0));
        // Resume at the held position (1000 + 479 consumed while fading to zero).
        let (l, _) = render(&mut p, 1000, PLAY);
        let resume = 1000 + 479;
        assert!((l[0] - value(resume) / 480.0).abs() < 1e-6, "{} vs {}", l[0], value(resume) / 480.0);
        assert_eq!(l[999], value(resume + 999));
        assert_eq!(shared.underruns.load(Ordering::Relaxed), 0, "stopping is not an underrun");
    }

    #[test]
    fn reset_ignores_chunks_of_the_old_context() {
        let (mut p, mut w, shared) = setup(48_000.0, 10_000);
        w.publish_next();
        render(&mut p, 1000, PLAY);
        w.poll(); // chunk 2, old epoch
        p.reset_context();
        assert_eq!(shared.epoch.load(Ordering::Relaxed), 1);
        let (l, _) = render(&mut p, 12_000, PLAY);
        assert!(l.iter().all(|&v| v == 0.0), "old-epoch chunk must not play");
        assert_eq!(shared.underruns.load(Ordering::Relaxed), 0);
        w.epoch = 1;
        w.publish_next();
        let (l, _) = render(&mut p, 1000, PLAY);
        assert_eq!(l[999], value(2 * 10_000 + 999));
    }

    #[test]
    fn offline_waits_for_every_chunk() {
        let rate = 44_100.0;
        let len = 3_000;
        let (mut p, w, shared) = setup(rate, len);
        shared.worker_alive.store(true, Ordering::Release);
        shared.set_status(crate::shared::Status::Ready, "");
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let worker = {
            let done = done.clone();
            let shared = shared.clone();
            std::thread::spawn(move || {
                let mut w = w;
                while !done.load(Ordering::Acquire) {
                    // Slow, on-demand delivery: only when the player waits.
                    // `started_seq` first, as the worker reads it: the player clears `waiting`
                    // before it announces a chunk, so once the new `started_seq` is seen, a
                    // `waiting` read after it is the wait for the next chunk, not a stale one.
                    let started = shared.started_seq.load(Ordering::Acquire);
                    if started >= w.published && shared.waiting.load(Ordering::Acquire) {
                        std::thread::sleep(std::time::Duration::from_millis(5));
                        w.publish_next();
                    }
                    std::thread::yield_now();
                }
            })
        };
        let offline = BlockControl { playing: true, offline: true, gate: false };
        let mut out = Vec::new();
        for n in [4097usize, 3, 1500, 2999, 8192].iter().cycle().take(12) {
            let (l, _) = render(&mut p, *n, offline);
            out.extend(l);
        }
        done.store(true, Ordering::Release);
        worker.join().unwrap();
        assert_eq!(shared.underruns.load(Ordering::Relaxed), 0);
        let fade = p.envelope().fade_len();
        for (i, &v) in out.iter().enumerate().skip(fade + 1) {
            assert_eq!(v, value(i), "offline sample {i}");
        }
    }

    #[test]
    fn offline_gives_up_when_the_worker_cannot_deliver() {
        let (mut p, _w, shared) = setup(48_000.0, 1000);
        shared.set_status(crate::shared::Status::Error, "no model");
        let (l, _) = render(&mut p, 512, BlockControl { playing: true, offline: true, gate: false });
        assert!(l.iter().all(|&v| v == 0.0));
    }

    fn note(timing: u32, pitch: u8, on: bool) -> crate::midi::NoteIn {
        crate::midi::NoteIn { timing, pitch, on }
    }

    /// The MIDI gate: with no note held the output fades to silence; a note-on at a sample
    /// opens it from that sample on (one fade), its note-off closes it again; two keys on one
    /// pitch (two channels) keep it open until both are up. Off, the gate changes nothing.
    #[test]
    fn the_midi_gate_sounds_only_while_a_note_is_held() {
        let len = 10_000;
        let gated = BlockControl { gate: true, ..PLAY };
        let run = |ctl: BlockControl, events: &[crate::midi::NoteIn]| {
            let (mut p, mut w, _shared) = setup(48_000.0, len);
            w.publish_next();
            let (mut l, mut r) = (vec![f32::NAN; 4_000], vec![f32::NAN; 4_000]);
            p.render_notes(&mut l, &mut r, ctl, events);
            (l, p.notes_held())
        };
        let (open, _) = run(PLAY, &[]);
        let fade = Envelope::new(48_000.0).fade_len();
        let (quiet, held) = run(gated, &[]);
        assert_eq!(held, 0);
        assert!(quiet[fade..].iter().all(|&v| v == 0.0), "closed after one fade");
        let events = [note(1_000, 60, true), note(1_500, 60, true), note(2_000, 60, false), note(3_000, 60, false)];
        let (played, held) = run(gated, &events);
        assert_eq!(held, 0, "both note-ons released");
        assert!(played[fade..1_000].iter().all(|&v| v == 0.0), "silent before the first note-on");
        assert_eq!(&played[1_000 + fade..3_000], &open[1_000 + fade..3_000], "open while either key is held");
        assert!(played[3_000 + fade..].iter().all(|&v| v == 0.0), "closed again after the last note-off");
        for w in played[1_000..1_000 + fade].windows(2).zip(open[1_000..1_000 + fade].windows(2)) {
            assert!(w.0[1].abs() <= w.1[1].abs() + 1e-7, "fading in, never above the ungated output");
        }
        let (ungated, _) = run(PLAY, &events);
        assert_eq!(ungated, open, "the gate off changes nothing");
    }

    #[test]
    fn a_note_one_sample_before_a_block_boundary_steers_the_block_there_one_after_the_next() {
        let len = 100;
        let (p, mut w, _shared) = setup(48_000.0, len);
        let (tx, mut rx) = crate::midi::ring();
        let mut p = p.with_notes(tx);
        w.publish_next();
        // Samples 0..98: a note at sample 0, where block 1 starts.
        let (mut l, mut r) = (vec![0.0; len - 1], vec![0.0; len - 1]);
        p.render_notes(&mut l, &mut r, PLAY, &[note(0, 40, true)]);
        w.poll();
        // Sample 99 (block 1's last), 100 (block 2's first), 101.
        let (mut l, mut r) = (vec![0.0; 4], vec![0.0; 4]);
        p.render_notes(&mut l, &mut r, PLAY, &[note(0, 60, true), note(1, 61, true), note(2, 62, true), note(2, 60, false)]);
        let got: Vec<_> = std::iter::from_fn(|| rx.pop().ok()).map(|m| (m.frame, m.pitch, m.on)).collect();
        assert_eq!(got, vec![(1, 40, true), (2, 60, true), (2, 61, true), (3, 62, true), (3, 60, false)]);
    }

    #[test]
    fn offline_a_note_reaches_the_worker_before_its_block_is_generated() {
        let len = 3_000;
        let (p, w, shared) = setup(44_100.0, len);
        let (tx, rx) = crate::midi::ring();
        let mut p = p.with_notes(tx);
        shared.worker_alive.store(true, Ordering::Release);
        shared.set_status(crate::shared::Status::Ready, "");
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let worker = {
            let (done, shared) = (done.clone(), shared.clone());
            std::thread::spawn(move || {
                let (mut w, mut rx) = (w, rx);
                // (block generated, notes of that block or earlier already received)
                let mut seen: Vec<(u64, Vec<u8>)> = Vec::new();
                let mut got = Vec::new();
                while !done.load(Ordering::Acquire) {
                    // `started_seq` first, as the worker reads it: the player clears `waiting`
                    // before it announces a chunk, so once the new `started_seq` is seen, a
                    // `waiting` read after it is the wait for the next chunk, not a stale one.
                    let started = shared.started_seq.load(Ordering::Acquire);
                    if started >= w.published && shared.waiting.load(Ordering::Acquire) {
                        while let Ok(m) = rx.pop() {
                            got.push(m);
                        }
                        let next = w.published + 1;
                        seen.push((next, got.iter().filter(|m| m.frame <= next).map(|m| m.pitch).collect()));
                        w.publish_next();
                    }
                    std::thread::yield_now();
                }
                seen
            })
        };
        let offline = BlockControl { playing: true, offline: true, gate: false };
        // One 8192-sample block spans blocks 1–3 (3000 samples each): notes at block 1's first
        // sample, inside it, at block 2's last sample, block 3's first and second.
        let (mut l, mut r) = (vec![0.0; 8192], vec![0.0; 8192]);
        let at = [(0, 40), (5, 50), (2 * len - 1, 60), (2 * len, 70), (2 * len + 1, 80)];
        let events: Vec<_> = at.iter().map(|&(t, p)| note(t as u32, p, true)).collect();
        p.render_notes(&mut l, &mut r, offline, &events);
        done.store(true, Ordering::Release);
        let seen = worker.join().unwrap();
        assert_eq!(seen, vec![(1, vec![40]), (2, vec![40, 50]), (3, vec![40, 50, 60, 70])], "block 4 steered by the note at 6001");
    }

}
