//! The sidechain as a style source.
//!
//! Audio thread ([`SidechainTap`]): downmix to mono at the host rate into an `rtrb` ring (no
//! allocation; samples that do not fit are counted and dropped) and keep a peak meter.
//! Worker ([`SidechainHistory`]): drain the ring, resample to 16 kHz, keep the last 10 s, and say
//! whether they carry signal.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::resample::StreamResampler;
use crate::shared::Shared;

/// MusicCoCa's input rate.
pub const STYLE_RATE: u32 = 16_000;
/// Seconds of sidechain audio kept for the style embedding (one MusicCoCa clip).
pub const HISTORY_SECONDS: usize = 10;
/// Seconds of host-rate audio the ring holds (the worker drains it before every chunk, and
/// between chunks while idle).
pub const RING_SECONDS: f32 = 4.0;
/// Below this peak (−60 dBFS) the history counts as silence and is not embedded.
pub const SIGNAL_PEAK: f32 = 1e-3;
/// Peak meter release time constant, in seconds.
const METER_RELEASE_S: f32 = 0.3;

/// A ring sized for `sample_rate`.
pub fn ring(sample_rate: f32) -> (rtrb::Producer<f32>, rtrb::Consumer<f32>) {
    rtrb::RingBuffer::new(((sample_rate * RING_SECONDS) as usize).max(1024))
}

/// Audio-thread side of the sidechain.
pub struct SidechainTap {
    producer: rtrb::Producer<f32>,
    shared: Arc<Shared>,
    peak: f32,
    release: f32,
}

impl SidechainTap {
    pub fn new(producer: rtrb::Producer<f32>, shared: Arc<Shared>, sample_rate: f32) -> Self {
        let release = (-1.0 / (METER_RELEASE_S * sample_rate.max(1.0))).exp();
        Self { producer, shared, peak: 0.0, release }
    }

    /// Captures one block. `channels` are the sidechain port's channels (1 or 2 used).
    pub fn capture(&mut self, left: &[f32], right: &[f32]) {
        let n = left.len().min(right.len());
        let mut peak = self.peak;
        for i in 0..n {
            let m = 0.5 * (left[i] + right[i]);
            peak = (peak * self.release).max(m.abs());
        }
        self.peak = if peak.is_finite() { peak } else { 0.0 };
        self.shared.set_sidechain_peak(self.peak);

        let fit = n.min(self.producer.slots());
        if fit > 0 {
            if let Ok(chunk) = self.producer.write_chunk_uninit(fit) {
                chunk.fill_from_iter((0..fit).map(|i| {
                    let m = 0.5 * (left[i] + right[i]);
                    if m.is_finite() { m } else { 0.0 }
                }));
            }
        }
        if fit < n {
            self.shared.sidechain_dropped.fetch_add((n - fit) as u64, Ordering::Relaxed);
        }
    }

    /// Feeds silence to the meter (no sidechain connected this block).
    pub fn idle(&mut self, samples: usize) {
        self.peak *= self.release.powi(samples.min(i32::MAX as usize) as i32);
        self.shared.set_sidechain_peak(self.peak);
    }
}

/// Worker side: the last [`HISTORY_SECONDS`] of sidechain audio at 16 kHz.
pub struct SidechainHistory {
    consumer: rtrb::Consumer<f32>,
    resampler: StreamResampler,
    history: VecDeque<f32>,
    scratch: Vec<f32>,
    out: Vec<Vec<f32>>,
}

impl SidechainHistory {
    pub fn new(consumer: rtrb::Consumer<f32>, host_rate: u32) -> Result<Self, String> {
        let resampler = StreamResampler::new(host_rate, STYLE_RATE, 1, 1024)?;
        Ok(Self {
            consumer,
            resampler,
            history: VecDeque::with_capacity(HISTORY_SECONDS * STYLE_RATE as usize),
            scratch: Vec::new(),
            out: vec![Vec::new()],
        })
    }

    /// Moves everything in the ring into the history.
    pub fn drain(&mut self) -> Result<(), String> {
        let n = self.consumer.slots();
        if n == 0 {
            return Ok(());
        }
        self.scratch.clear();
        if let Ok(chunk) = self.consumer.read_chunk(n) {
            let (a, b) = chunk.as_slices();
            self.scratch.extend_from_slice(a);
            self.scratch.extend_from_slice(b);
            chunk.commit_all();
        }
        self.out[0].clear();
        self.resampler.process(&[&self.scratch], &mut self.out)?;
        let cap = HISTORY_SECONDS * STYLE_RATE as usize;
        self.history.extend(self.out[0].iter().copied());
        let excess = self.history.len().saturating_sub(cap);
        self.history.drain(..excess);
        Ok(())
    }

    /// The history as one slice (oldest first).
    pub fn samples(&mut self) -> &[f32] {
        self.history.make_contiguous()
    }

    /// Whether the history holds anything louder than [`SIGNAL_PEAK`].
    pub fn has_signal(&self) -> bool {
        self.history.iter().any(|v| v.abs() > SIGNAL_PEAK)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tap_to_history_keeps_the_last_ten_seconds_at_16k() {
        let shared = Arc::new(Shared::default());
        let rate = 44_100.0;
        let (p, c) = ring(rate);
        let mut tap = SidechainTap::new(p, shared.clone(), rate);
        let mut hist = SidechainHistory::new(c, 44_100).unwrap();
        let block = vec![0.25f32; 441];
        // 12 s of audio in 10 ms blocks, drained every 0.5 s.
        for i in 0..1200 {
            tap.capture(&block, &block);
            if i % 50 == 49 {
                hist.drain().unwrap();
            }
        }
        hist.drain().unwrap();
        assert_eq!(shared.sidechain_dropped.load(Ordering::Relaxed), 0);
        assert_eq!(hist.samples().len(), HISTORY_SECONDS * STYLE_RATE as usize);
        assert!(hist.has_signal());
        assert!((shared.sidechain_peak() - 0.25).abs() < 1e-6);
        // The steady part resamples to the same level.
        let s = hist.samples();
        assert!(s[s.len() / 2..s.len() - 1000].iter().all(|v| (v - 0.25).abs() < 1e-3));
    }

    #[test]
    fn overflow_is_counted_not_blocking() {
        let shared = Arc::new(Shared::default());
        let (p, _c) = rtrb::RingBuffer::new(100);
        let mut tap = SidechainTap::new(p, shared.clone(), 48_000.0);
        let block = vec![0.1f32; 64];
        tap.capture(&block, &block);
        tap.capture(&block, &block);
        assert_eq!(shared.sidechain_dropped.load(Ordering::Relaxed), 28);
    }

    #[test]
    fn silence_has_no_signal() {
        let (mut p, c) = ring(16_000.0);
        let mut hist = SidechainHistory::new(c, 16_000).unwrap();
        for _ in 0..16_000 {
            p.push(0.0).unwrap();
        }
        hist.drain().unwrap();
        assert_eq!(hist.samples().len(), 16_000);
        assert!(!hist.has_signal());
    }
}
