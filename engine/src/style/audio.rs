//! Audio prompts from files: decoded packet by packet, averaged to mono, resampled to 16 kHz and
//! cut into clips as they arrive, so memory stays bounded for any length.
//!
//! ```text
//!  file ─ symphonia packets ─ mean of channels ─ rubato (→ 16 kHz, delay removed) ─ ClipAccumulator
//! ```
//!
//! The reference resamples with resampy (`kaiser_best`); rubato's FFT resampler differs from it
//! by a small fraction of the signal, far below what moves a 10 s clip's embedding.

use std::path::Path;

use rubato::{FftFixedIn, Resampler};

use super::mel::SAMPLE_RATE_HZ;
use super::model::{ClipAccumulator, StyleModel};
use super::StyleError;
use crate::codec::audio::{self, AudioError};

/// Streams mono audio through a resampler, delay removed, `round(n · to/from)` samples out.
pub struct MonoResampler {
    inner: Option<FftFixedIn<f32>>,
    from_hz: u32,
    to_hz: u32,
    input: Vec<f32>,
    skip: usize,
    taken_in: u64,
    given_out: u64,
}

impl MonoResampler {
    pub fn new(from_hz: u32, to_hz: u32) -> Result<Self, String> {
        if from_hz == 0 {
            return Err("sample rate 0".into());
        }
        let inner = if from_hz == to_hz {
            None
        } else {
            Some(FftFixedIn::<f32>::new(from_hz as usize, to_hz as usize, 1024, 2, 1).map_err(|e| format!("resampler {from_hz} → {to_hz} Hz: {e}"))?)
        };
        let skip = inner.as_ref().map_or(0, |r| r.output_delay());
        Ok(Self { inner, from_hz, to_hz, input: Vec::new(), skip, taken_in: 0, given_out: 0 })
    }

    fn emit(&mut self, produced: &[f32], out: &mut impl FnMut(&[f32]) -> Result<(), StyleError>, limit: Option<u64>) -> Result<(), StyleError> {
        let drop = self.skip.min(produced.len());
        self.skip -= drop;
        let mut rest = &produced[drop..];
        if let Some(limit) = limit {
            rest = &rest[..rest.len().min(limit.saturating_sub(self.given_out) as usize)];
        }
        self.given_out += rest.len() as u64;
        if rest.is_empty() {
            Ok(())
        } else {
            out(rest)
        }
    }

    /// Feeds samples; resampled output goes to `out` as it becomes available.
    pub fn push(&mut self, samples: &[f32], out: &mut impl FnMut(&[f32]) -> Result<(), StyleError>) -> Result<(), StyleError> {
        self.taken_in += samples.len() as u64;
        let Some(r) = self.inner.as_mut() else {
            self.given_out += samples.len() as u64;
            return out(samples);
        };
        self.input.extend_from_slice(samples);
        let mut produced_all = Vec::new();
        loop {
            let need = r.input_frames_next();
            if self.input.len() < need {
                break;
            }
            let produced = r.process(&[&self.input[..need]], None).map_err(|e| StyleError::BadInput(format!("resampling: {e}")))?;
            self.input.drain(..need);
            produced_all.extend_from_slice(&produced[0]);
        }
        self.emit(&produced_all, out, None)
    }

    /// Flushes the resampler's tail.
    pub fn finish(mut self, out: &mut impl FnMut(&[f32]) -> Result<(), StyleError>) -> Result<(), StyleError> {
        let want = (self.taken_in * u64::from(self.to_hz) + u64::from(self.from_hz) / 2) / u64::from(self.from_hz);
        let Some(mut r) = self.inner.take() else { return Ok(()) };
        let mut pending = std::mem::take(&mut self.input);
        let mut guard = 0;
        while self.given_out < want && guard < 64 {
            let produced = if pending.is_empty() {
                r.process_partial::<&[f32]>(None, None)
            } else {
                let p = r.process_partial(Some(&[&pending[..]]), None);
                pending.clear();
                p
            }
            .map_err(|e| StyleError::BadInput(format!("resampling: {e}")))?;
            self.emit(&produced[0], out, Some(want))?;
            guard += 1;
        }
        Ok(())
    }
}

/// The style embedding of an audio file (any length; clips every `hop` 16 kHz samples, default
/// one clip). Errors name the file: unreadable, no samples, a NaN or infinite sample.
pub fn embed_file(model: &StyleModel, path: &Path, hop: Option<usize>) -> Result<Vec<f32>, StyleError> {
    let wrap = |e: StyleError| match e {
        StyleError::BadInput(reason) => StyleError::Audio { path: path.to_path_buf(), reason },
        other => other,
    };
    let mut acc = ClipAccumulator::new(model, hop)?;
    let mut resampler: Option<MonoResampler> = None;
    let mut mono = Vec::new();
    let mut frames_in = 0u64;
    let mut failure: Option<StyleError> = None;
    let result = audio::stream(path, |block, channels, rate| {
        let r = match &mut resampler {
            Some(r) => r,
            None => resampler.insert(MonoResampler::new(rate, SAMPLE_RATE_HZ).map_err(|reason| AudioError::Unsupported { path: path.to_path_buf(), reason })?),
        };
        mono.clear();
        for (f, frame) in block.chunks_exact(channels).enumerate() {
            let sum: f32 = frame.iter().sum();
            if !sum.is_finite() {
                let c = frame.iter().position(|v| !v.is_finite()).unwrap_or(0);
                return Err(AudioError::NonFinite { path: path.to_path_buf(), channel: c, frame: frames_in as usize + f });
            }
            mono.push(sum / channels as f32);
        }
        frames_in += mono.len() as u64;
        let pushed = r.push(&mono, &mut |s: &[f32]| acc.push(s));
        if let Err(e) = pushed {
            failure = Some(e);
            return Err(AudioError::Stopped { path: path.to_path_buf() });
        }
        Ok(())
    });
    if let Some(e) = failure {
        return Err(wrap(e));
    }
    result.map_err(|e| StyleError::Audio { path: path.to_path_buf(), reason: strip_path(&e.to_string(), path) })?;
    if frames_in == 0 {
        return Err(StyleError::Audio { path: path.to_path_buf(), reason: "holds no audio samples".into() });
    }
    if let Some(r) = resampler {
        r.finish(&mut |s: &[f32]| acc.push(s)).map_err(wrap)?;
    }
    acc.finish().map_err(wrap)
}

/// An [`AudioError`] message already starts with the path; keep it once.
fn strip_path(message: &str, path: &Path) -> String {
    let p = path.display().to_string();
    message.strip_prefix(&p).map(|s| s.trim_start_matches([':', ' ']).to_string()).unwrap_or_else(|| message.to_string())
}
