//! MusicCoCa's log-mel front end (spec §3.3; MRT2 `audio_preprocessor.tflite`).
//!
//! ```text
//!  16 kHz mono clip (160000) ─ y[n] = x[n] − 0.97·x[n−1], y[0] = x[0]
//!    ─ frames of 400, hop 160, no centring ─ × Hann window (the file's constant)
//!    ─ |rFFT 2048|² (1025 bins) ─ · mel matrix (the file's constant, DC row zero) ─ log(· + 1e-3)
//!    ─ first 992 frames → [992, 128], time-major
//! ```
//!
//! The window and the mel matrix are read from the official graph rather than recomputed: the
//! matrix's band edges are not documented anywhere. [`htk_mel_matrix`] is TensorFlow's
//! `linear_to_mel_weight_matrix`, used for tiny test models and to check a file's matrix shape.

use std::sync::Arc;

use realfft::{RealFftPlanner, RealToComplex};

pub const SAMPLE_RATE_HZ: u32 = 16_000;
pub const CLIP_SAMPLES: usize = 160_000;
pub const FRAME_LENGTH: usize = 400;
pub const FRAME_HOP: usize = 160;
pub const FFT_LENGTH: usize = 2048;
pub const NUM_FRAMES: usize = 992;
pub const PREEMPHASIS: f64 = 0.97;
pub const LOG_OFFSET: f64 = 1e-3;

/// The front end with its two constants.
#[derive(Clone)]
pub struct LogMel {
    window: Vec<f64>,
    /// `[1025, mel_bins]`, row 0 (DC) included.
    matrix: Vec<f64>,
    mel_bins: usize,
    /// Per mel band, the range of spectrum bins with non-zero weight (the bands are narrow).
    support: Vec<(usize, usize)>,
    fft: Arc<dyn RealToComplex<f64>>,
}

impl std::fmt::Debug for LogMel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogMel").field("mel_bins", &self.mel_bins).finish_non_exhaustive()
    }
}

impl LogMel {
    /// `window`: 400 values; `matrix`: `[1025, M]` or `[1024, M]` (bins 1..=1024, DC dropped).
    pub fn new(window: &[f32], matrix: &[f32], rows: usize, mel_bins: usize) -> Result<Self, String> {
        if window.len() != FRAME_LENGTH {
            return Err(format!("the analysis window has {} values, expected {FRAME_LENGTH}", window.len()));
        }
        let bins = FFT_LENGTH / 2 + 1;
        if mel_bins == 0 || matrix.len() != rows * mel_bins || !(rows == bins || rows == bins - 1) {
            return Err(format!("mel matrix of {rows} × {mel_bins} ({} values); expected {bins} or {} rows", matrix.len(), bins - 1));
        }
        if let Some(i) = window.iter().chain(matrix).position(|v| !v.is_finite()) {
            return Err(format!("front-end constant value {i} is not finite"));
        }
        let mut full = vec![0f64; bins * mel_bins];
        let skip = bins - rows;
        for (dst, &src) in full[skip * mel_bins..].iter_mut().zip(matrix) {
            *dst = f64::from(src);
        }
        let support = (0..mel_bins)
            .map(|j| {
                let nz: Vec<usize> = (0..bins).filter(|&k| full[k * mel_bins + j] != 0.0).collect();
                nz.first().map_or((0, 0), |&a| (a, nz[nz.len() - 1] + 1))
            })
            .collect();
        Ok(Self {
            window: window.iter().map(|&v| f64::from(v)).collect(),
            matrix: full,
            mel_bins,
            support,
            fft: RealFftPlanner::<f64>::new().plan_fft_forward(FFT_LENGTH),
        })
    }

    pub fn mel_bins(&self) -> usize {
        self.mel_bins
    }

    /// `[992 × mel_bins]` log-mel frames of one clip of exactly 160000 samples.
    pub fn compute(&self, clip: &[f32]) -> Vec<f32> {
        assert_eq!(clip.len(), CLIP_SAMPLES, "LogMel::compute takes one 10 s clip");
        let m = self.mel_bins;
        let bins = FFT_LENGTH / 2 + 1;
        let mut input = self.fft.make_input_vec();
        let mut spectrum = self.fft.make_output_vec();
        let mut scratch = self.fft.make_scratch_vec();
        let mut power = vec![0f64; bins];
        let mut out = vec![0f32; NUM_FRAMES * m];
        for f in 0..NUM_FRAMES {
            let start = f * FRAME_HOP;
            input.fill(0.0);
            for (i, slot) in input[..FRAME_LENGTH].iter_mut().enumerate() {
                let n = start + i;
                let prev = if n == 0 { 0.0 } else { f64::from(clip[n - 1]) };
                *slot = (f64::from(clip[n]) - PREEMPHASIS * prev) * self.window[i];
            }
            // The FFT cannot fail on buffers it made itself.
            let _ = self.fft.process_with_scratch(&mut input, &mut spectrum, &mut scratch);
            for (p, c) in power.iter_mut().zip(&spectrum) {
                *p = c.norm_sqr();
            }
            let row = &mut out[f * m..(f + 1) * m];
            for (j, r) in row.iter_mut().enumerate() {
                let (a, b) = self.support[j];
                let mut acc = 0.0;
                for (k, &p) in power.iter().enumerate().take(b).skip(a) {
                    acc += p * self.matrix[k * m + j];
                }
                *r = (acc + LOG_OFFSET).ln() as f32;
            }
        }
        out
    }
}

/// A periodic Hann window of `n` values: `0.5 − 0.5·cos(2πi/n)`.
pub fn periodic_hann(n: usize) -> Vec<f32> {
    (0..n).map(|i| (0.5 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / n as f64).cos()) as f32).collect()
}

/// TensorFlow's `linear_to_mel_weight_matrix` (HTK mel scale `1127·ln(1 + f/700)`, triangular
/// bands, DC row zero): `[spectrogram_bins, mel_bins]`.
pub fn htk_mel_matrix(mel_bins: usize, spectrogram_bins: usize, sample_rate_hz: f64, lower_hz: f64, upper_hz: f64) -> Vec<f32> {
    let mel = |f: f64| 1127.0 * (1.0 + f / 700.0).ln();
    let nyquist = sample_rate_hz / 2.0;
    let (lo, hi) = (mel(lower_hz), mel(upper_hz));
    let edges: Vec<f64> = (0..mel_bins + 2).map(|i| lo + (hi - lo) * i as f64 / (mel_bins + 1) as f64).collect();
    let mut out = vec![0f32; spectrogram_bins * mel_bins];
    for k in 1..spectrogram_bins {
        let f = mel(nyquist * k as f64 / (spectrogram_bins - 1) as f64);
        for j in 0..mel_bins {
            let (l, c, u) = (edges[j], edges[j + 1], edges[j + 2]);
            let w = ((f - l) / (c - l)).min((u - f) / (u - c)).max(0.0);
            out[k * mel_bins + j] = w as f32;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same front end computed independently: a direct O(n²) DFT in f64, pre-emphasis over
    /// the whole clip first, framing second.
    fn reference(clip: &[f32], window: &[f32], matrix: &[f32], m: usize) -> Vec<f64> {
        let emph: Vec<f64> = (0..clip.len()).map(|n| f64::from(clip[n]) - if n > 0 { 0.97 * f64::from(clip[n - 1]) } else { 0.0 }).collect();
        let mut out = Vec::new();
        for f in [0usize, 1, 500, 991] {
            let frame: Vec<f64> = (0..400).map(|i| emph[f * 160 + i] * f64::from(window[i])).collect();
            let power: Vec<f64> = (0..1025)
                .map(|k| {
                    let (mut re, mut im) = (0.0, 0.0);
                    for (n, &x) in frame.iter().enumerate() {
                        let a = -2.0 * std::f64::consts::PI * (k * n) as f64 / 2048.0;
                        re += x * a.cos();
                        im += x * a.sin();
                    }
                    re * re + im * im
                })
                .collect();
            for j in 0..m {
                let e: f64 = (0..1025).map(|k| power[k] * f64::from(matrix[k * m + j])).sum();
                out.push((e + 1e-3).ln());
            }
        }
        out
    }

    #[test]
    fn matches_a_direct_dft() {
        let m = 128;
        let window = periodic_hann(400);
        let matrix = htk_mel_matrix(m, 1025, 16000.0, 0.0, 8000.0);
        let mut rng = crate::sampling::rng::SplitMix64::new(5);
        let clip: Vec<f32> = (0..CLIP_SAMPLES)
            .map(|n| (0.3 * (2.0 * std::f64::consts::PI * 440.0 * n as f64 / 16000.0).sin() + 0.05 * rng.next_normal()) as f32)
            .collect();
        let lm = LogMel::new(&window, &matrix, 1025, m).unwrap();
        let ours = lm.compute(&clip);
        assert_eq!(ours.len(), NUM_FRAMES * m);
        let want = reference(&clip, &window, &matrix, m);
        let mut worst = 0f64;
        for (i, f) in [0usize, 1, 500, 991].into_iter().enumerate() {
            for j in 0..m {
                worst = worst.max((f64::from(ours[f * m + j]) - want[i * m + j]).abs());
            }
        }
        assert!(worst < 1e-4, "max |Δ log-mel| = {worst}");

        // A matrix without its DC row gives the same result.
        let lm2 = LogMel::new(&window, &matrix[m..], 1024, m).unwrap();
        assert_eq!(lm2.compute(&clip), ours);
    }

    #[test]
    fn silence_is_the_log_floor_and_bad_constants_are_rejected() {
        let lm = LogMel::new(&periodic_hann(400), &htk_mel_matrix(16, 1025, 16000.0, 0.0, 8000.0), 1025, 16).unwrap();
        let out = lm.compute(&vec![0.0; CLIP_SAMPLES]);
        let floor = (1e-3f64).ln() as f32;
        assert!(out.iter().all(|&v| v == floor));
        assert!(LogMel::new(&periodic_hann(399), &[0.0; 1025], 1025, 1).is_err());
        assert!(LogMel::new(&periodic_hann(400), &[0.0; 1000], 1000, 1).is_err());
        assert!(LogMel::new(&periodic_hann(400), &[f32::NAN; 1025], 1025, 1).is_err());
    }

    #[test]
    fn htk_matrix_is_triangular_and_zero_at_dc() {
        let m = htk_mel_matrix(128, 1025, 16000.0, 0.0, 8000.0);
        assert!(m[..128].iter().all(|&v| v == 0.0));
        assert!(m.iter().all(|&v| (0.0..=1.0).contains(&v)));
        // Every band has weight somewhere.
        for j in 0..128 {
            assert!((0..1025).any(|k| m[k * 128 + j] > 0.0), "band {j} is empty");
        }
    }
}
