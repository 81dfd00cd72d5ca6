//! The codec's STFT front end and its inverse, on the host in f64.
//!
//! ```text
//!  audio [ch][T] ─ pad 480 zeros at the end ─ frames of 960, hop 480 ─ × periodic Hann ─ rFFT 960
//!        ─ bins 0..480 (Nyquist dropped) ─ spec [2·ch][T/480][480]   (channel 2c = re, 2c+1 = im)
//!
//!  spec ─ + zero Nyquist bin ─ irFFT 960 ─ × hann / Σ shifted hann² ─ overlap-add, hop 480
//!       ─ first frames·480 samples (causal) ─ audio [ch][frames·480]
//! ```
//!
//! The spectrogram layout is one batch row of the encoder's NCHW input (channels, time, freq), so
//! `[L.re, L.im, R.re, R.im]` falls out for stereo. No scaling, no normalisation: these are the
//! semantics of sequence-layers' `STFT`/`InverseSTFT` as MRT2 configures them (fixture README C1,
//! "Reference semantics"; spec §2.2, §2.5). The irFFT ignores the imaginary part of the DC bin, as
//! NumPy's, XLA's and TF's do; the decoder does produce a non-zero one.

use std::f64::consts::PI;
use std::sync::Arc;

use realfft::num_complex::Complex;
use realfft::{ComplexToReal, RealFftPlanner, RealToComplex};

use super::{CodecConfig, CodecError};

/// Forward and inverse STFT with precomputed windows and FFT plans.
#[derive(Clone)]
pub struct Stft {
    frame_length: usize,
    frame_step: usize,
    fft_length: usize,
    /// Periodic Hann, `0.5 − 0.5·cos(2πn/N)`.
    analysis: Vec<f64>,
    /// `hann[n] / Σ_k hann[(n + k·step) mod N]²` (tf.signal `inverse_stft_window_fn`).
    synthesis: Vec<f64>,
    forward: Arc<dyn RealToComplex<f64>>,
    inverse: Arc<dyn ComplexToReal<f64>>,
}

impl std::fmt::Debug for Stft {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stft")
            .field("frame_length", &self.frame_length)
            .field("frame_step", &self.frame_step)
            .field("fft_length", &self.fft_length)
            .finish()
    }
}

impl Stft {
    pub fn new(config: &CodecConfig) -> Self {
        let (n, step) = (config.frame_length, config.frame_step);
        let analysis: Vec<f64> = (0..n).map(|i| 0.5 - 0.5 * (2.0 * PI * i as f64 / n as f64).cos()).collect();
        let overlaps = n.div_ceil(step);
        let synthesis = (0..n)
            .map(|i| {
                let denom: f64 = (0..overlaps).map(|k| analysis[(i + k * step) % n].powi(2)).sum();
                analysis[i] / denom
            })
            .collect();
        let mut planner = RealFftPlanner::<f64>::new();
        Self {
            frame_length: n,
            frame_step: step,
            fft_length: config.fft_length,
            analysis,
            synthesis,
            forward: planner.plan_fft_forward(config.fft_length),
            inverse: planner.plan_fft_inverse(config.fft_length),
        }
    }

    /// Bins kept per frame (Nyquist dropped).
    pub fn num_bins(&self) -> usize {
        self.fft_length / 2
    }

    /// STFT frames of `samples` audio samples.
    pub fn frames_for(&self, samples: usize) -> usize {
        samples / self.frame_step
    }

    /// `audio`: channel-first `[channels][samples]`, `samples` a multiple of the hop.
    /// Returns `[2·channels][samples / hop][bins]` (re, im per channel).
    pub fn forward(&self, audio: &[f32], channels: usize) -> Result<Vec<f32>, CodecError> {
        if channels == 0 || !audio.len().is_multiple_of(channels) {
            return Err(CodecError::BadInput(format!("{} samples do not split into {channels} channels", audio.len())));
        }
        let samples = audio.len() / channels;
        if !samples.is_multiple_of(self.frame_step) {
            return Err(CodecError::BadInput(format!(
                "STFT input of {samples} samples is not a multiple of the hop {}",
                self.frame_step
            )));
        }
        let (frames, bins) = (self.frames_for(samples), self.num_bins());
        let mut out = vec![0f32; 2 * channels * frames * bins];
        let mut buf = vec![0f64; self.fft_length];
        let mut spec = vec![Complex::new(0f64, 0f64); self.fft_length / 2 + 1];
        let mut scratch = self.forward.make_scratch_vec();
        for c in 0..channels {
            let x = &audio[c * samples..(c + 1) * samples];
            for j in 0..frames {
                buf.fill(0.0);
                let start = j * self.frame_step;
                let end = (start + self.frame_length).min(samples); // zero padding past the end
                for (i, &s) in x[start..end].iter().enumerate() {
                    buf[i] = f64::from(s) * self.analysis[i];
                }
                self.forward
                    .process_with_scratch(&mut buf, &mut spec, &mut scratch)
                    .map_err(|e| CodecError::BadInput(format!("rFFT failed: {e}")))?;
                let re = &mut out[((2 * c) * frames + j) * bins..][..bins];
                for (o, z) in re.iter_mut().zip(&spec) {
                    *o = z.re as f32;
                }
                let im = &mut out[((2 * c + 1) * frames + j) * bins..][..bins];
                for (o, z) in im.iter_mut().zip(&spec) {
                    *o = z.im as f32;
                }
            }
        }
        Ok(out)
    }

    /// `spec`: `[2·channels][frames][bins]` as [`Stft::forward`] makes it.
    /// Returns channel-first `[channels][frames·hop]`.
    pub fn inverse(&self, spec: &[f32], channels: usize, frames: usize) -> Result<Vec<f32>, CodecError> {
        let mut state = self.inverse_stream(channels, frames);
        let mut out = vec![0f32; channels * frames * self.frame_step];
        self.inverse_step(spec, frames, &mut state, &mut out)?;
        Ok(out)
    }

    /// The state of a frame-by-frame inverse STFT of `channels` channels: each channel's
    /// overlap-add tail (the last frame's samples past its output) and the FFT buffers, sized
    /// for steps of up to `frames` frames.
    pub fn inverse_stream(&self, channels: usize, frames: usize) -> InverseStft {
        InverseStft {
            channels,
            tail: vec![0f64; channels * (self.frame_length - self.frame_step)],
            acc: vec![0f64; frames * self.frame_step + self.frame_length],
            z: vec![Complex::new(0f64, 0f64); self.fft_length / 2 + 1],
            buf: vec![0f64; self.fft_length],
            scratch: self.inverse.make_scratch_vec(),
        }
    }

    /// The next `frames` spectrogram frames `[2·channels][frames][bins]` → the next
    /// `frames·hop` samples per channel into `out` (channel-first). A sequence cut into any
    /// pieces gives [`Stft::inverse`] of the whole, bit for bit (the same additions in the same
    /// order). Allocates only when `frames` exceeds every earlier call's.
    pub fn inverse_step(&self, spec: &[f32], frames: usize, st: &mut InverseStft, out: &mut [f32]) -> Result<(), CodecError> {
        let (bins, channels) = (self.num_bins(), st.channels);
        if spec.len() != 2 * channels * frames * bins {
            return Err(CodecError::BadInput(format!(
                "inverse STFT input has {} values, expected 2·{channels}·{frames}·{bins}",
                spec.len()
            )));
        }
        let out_len = frames * self.frame_step;
        if out.len() != channels * out_len {
            return Err(CodecError::BadInput(format!("inverse STFT output has room for {} samples, expected {channels}·{out_len}", out.len())));
        }
        let keep = self.frame_length - self.frame_step;
        // Overlap-add in f64; the frame that ends past `out_len` is only partly kept (causal crop).
        if st.acc.len() < out_len + self.frame_length {
            st.acc.resize(out_len + self.frame_length, 0.0);
        }
        let norm = 1.0 / self.fft_length as f64;
        for c in 0..channels {
            let acc = &mut st.acc[..out_len + self.frame_length];
            acc.fill(0.0);
            acc[..keep].copy_from_slice(&st.tail[c * keep..(c + 1) * keep]);
            for j in 0..frames {
                let re = &spec[((2 * c) * frames + j) * bins..][..bins];
                let im = &spec[((2 * c + 1) * frames + j) * bins..][..bins];
                for k in 0..bins {
                    st.z[k] = Complex::new(f64::from(re[k]), f64::from(im[k]));
                }
                // irFFT ignores the imaginary part of DC; the Nyquist bin is re-inserted as zero.
                st.z[0].im = 0.0;
                for v in &mut st.z[bins..] {
                    *v = Complex::new(0.0, 0.0);
                }
                self.inverse
                    .process_with_scratch(&mut st.z, &mut st.buf, &mut st.scratch)
                    .map_err(|e| CodecError::BadInput(format!("irFFT failed: {e}")))?;
                let dst = &mut acc[j * self.frame_step..][..self.frame_length];
                for ((d, &s), &w) in dst.iter_mut().zip(&st.buf).zip(&self.synthesis) {
                    *d += s * norm * w;
                }
            }
            for (o, &a) in out[c * out_len..(c + 1) * out_len].iter_mut().zip(acc.iter()) {
                *o = a as f32;
            }
            st.tail[c * keep..(c + 1) * keep].copy_from_slice(&acc[out_len..out_len + keep]);
        }
        Ok(())
    }
}

/// A frame-by-frame inverse STFT's state ([`Stft::inverse_stream`], [`Stft::inverse_step`]).
pub struct InverseStft {
    channels: usize,
    /// `[channels][frame_length − hop]`: what earlier frames add to the next samples.
    tail: Vec<f64>,
    acc: Vec<f64>,
    z: Vec<Complex<f64>>,
    buf: Vec<f64>,
    scratch: Vec<Complex<f64>>,
}

impl InverseStft {
    /// Back to the start of a sequence (no allocation).
    pub fn reset(&mut self) {
        self.tail.fill(0.0);
    }

    /// The overlap-add tail `[channels][frame_length − hop]`: all a stream carries.
    pub fn tail(&self) -> &[f64] {
        &self.tail
    }

    /// Sets the tail saved by [`InverseStft::tail`]; false (nothing changed) on a length mismatch.
    pub fn set_tail(&mut self, tail: &[f64]) -> bool {
        if tail.len() != self.tail.len() {
            return false;
        }
        self.tail.copy_from_slice(tail);
        true
    }
}

impl std::fmt::Debug for InverseStft {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InverseStft").field("channels", &self.channels).finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stft() -> Stft {
        Stft::new(&CodecConfig::spectrostream_48k_stereo())
    }

    #[test]
    fn a_sine_on_a_bin_lands_on_that_bin() {
        let s = stft();
        let (n, bin) = (960 * 4, 10usize);
        let audio: Vec<f32> = (0..n).map(|i| (2.0 * PI * bin as f64 * i as f64 / 960.0).cos() as f32).collect();
        let spec = s.forward(&audio, 1).unwrap();
        // Channel 0 re, frame 1 (fully inside the signal): a Hann-windowed cosine gives N/4 at the
        // bin and −N/8 beside it.
        let re = &spec[480..960];
        assert!((re[bin] - 240.0).abs() < 1e-3, "{}", re[bin]);
        assert!((re[bin + 1] + 120.0).abs() < 1e-3, "{}", re[bin + 1]);
        assert!(re[bin + 3].abs() < 1e-3);
    }

    #[test]
    fn inverse_reconstructs_all_but_the_causal_tail() {
        let s = stft();
        let n = 1920 * 3;
        // Band-limited (the Nyquist bin is dropped, so white noise would not come back exactly).
        let audio: Vec<f32> = (0..2 * n)
            .map(|i| {
                let t = (i % n) as f64 / 48_000.0 + (i / n) as f64 * 0.37;
                (0.3 * (2.0 * PI * 440.3 * t).sin() + 0.2 * (2.0 * PI * 3123.7 * t + 1.0).sin()) as f32
            })
            .collect();
        let spec = s.forward(&audio, 2).unwrap();
        let back = s.inverse(&spec, 2, n / 480).unwrap();
        // Samples 480.. are covered by two frames; the first 480 see only frame 0 (frame −1 does not
        // exist), so they come back scaled by the window. The last frame is cut by the end padding,
        // and the dropped Nyquist bin of that edge perturbs its samples slightly.
        for c in 0..2 {
            for t in 480..n - 480 {
                let (a, b) = (audio[c * n + t], back[c * n + t]);
                assert!((a - b).abs() < 1e-5, "channel {c} sample {t}: {a} vs {b}");
            }
        }
    }

    #[test]
    fn the_inverse_in_pieces_equals_the_whole() {
        let s = stft();
        let frames = 13;
        let mut rng = crate::sampling::rng::SplitMix64::new(9);
        let spec: Vec<f32> = (0..2 * 2 * frames * 480).map(|_| rng.next_normal() as f32).collect();
        let whole = s.inverse(&spec, 2, frames).unwrap();
        let mut st = s.inverse_stream(2, 1);
        let mut got = vec![0f32; whole.len()];
        let mut at = 0;
        for n in [1, 4, 3, 5] {
            // Frames at..at+n of both planes of both channels.
            let part: Vec<f32> = spec.chunks_exact(frames * 480).flat_map(|p| p[at * 480..(at + n) * 480].to_vec()).collect();
            let mut out = vec![0f32; 2 * n * 480];
            s.inverse_step(&part, n, &mut st, &mut out).unwrap();
            for c in 0..2 {
                got[c * frames * 480 + at * 480..][..n * 480].copy_from_slice(&out[c * n * 480..(c + 1) * n * 480]);
            }
            at += n;
        }
        assert_eq!(got, whole);
    }

    #[test]
    fn bad_lengths_are_errors() {
        let s = stft();
        assert!(s.forward(&[0.0; 100], 1).is_err());
        assert!(s.forward(&[0.0; 961], 2).is_err());
        assert!(s.inverse(&[0.0; 10], 2, 1).is_err());
    }
}
