//! Offline generation to a file (`mrt generate`): blocks (v1: 2 s chunks) stream into a 32-bit
//! float WAV as they are made, so an hour of audio needs one block of memory, and the file's
//! header is brought up to date after every block (an interrupted run leaves a playable file).
//!
//! ```text
//!  controls ─┐
//!  state ────┴─ Generator::next_block × ⌈seconds / block⌉ ─ WAV (48 kHz stereo f32), cut to length
//! ```

use std::path::Path;
use std::time::Instant;

use crate::stream::{Controls, Generator, StreamError, StreamState};

/// Progress after each chunk.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Progress {
    pub chunk: usize,
    pub chunks: usize,
    /// Seconds of audio written so far.
    pub audio_seconds: f64,
    /// Wall-clock seconds spent generating so far.
    pub elapsed_seconds: f64,
}

impl Progress {
    /// Real-time factor so far: seconds of audio per second of compute (> 1 is faster than real time).
    pub fn realtime_factor(&self) -> f64 {
        if self.elapsed_seconds > 0.0 {
            self.audio_seconds / self.elapsed_seconds
        } else {
            0.0
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OfflineError {
    #[error("{0}")]
    BadSetting(String),
    #[error(transparent)]
    Stream(#[from] StreamError),
    #[error("cannot write {path}")]
    Write { path: std::path::PathBuf, #[source] source: hound::Error },
}

/// Frames (per channel) that `seconds` of audio at `rate` make, checked.
pub fn frames_for(seconds: f64, rate: u32) -> Result<u64, OfflineError> {
    if !seconds.is_finite() || seconds <= 0.0 || seconds > 24.0 * 3600.0 {
        return Err(OfflineError::BadSetting(format!("--seconds {seconds}: expected a duration above 0 and at most 24 hours")));
    }
    Ok((seconds * f64::from(rate)).round() as u64)
}

/// Generates `seconds` of audio from `state` into a WAV at `path`, calling `progress` after every
/// chunk. The file has exactly `round(seconds · rate)` frames. The state advances chunk by chunk
/// (save it afterwards to continue later).
pub fn generate_to_wav(
    generator: &Generator,
    state: &mut StreamState,
    controls: &Controls<'_>,
    seconds: f64,
    path: &Path,
    progress: impl FnMut(Progress),
) -> Result<u64, OfflineError> {
    generate_to_wav_with(generator, state, |_| *controls, seconds, path, progress)
}

/// Blocks of `round(seconds · rate)` frames of audio at `rate` (the last one cut).
pub fn blocks_for(generator: &Generator, seconds: f64) -> Result<usize, OfflineError> {
    let total = frames_for(seconds, generator.sample_rate())?;
    Ok(total.div_ceil(generator.block_samples() as u64) as usize)
}

/// [`generate_to_wav`] with controls per block (`controls(i)` steers block `i` of this run:
/// MRT2's piano roll moves frame by frame).
pub fn generate_to_wav_with<'c>(
    generator: &Generator,
    state: &mut StreamState,
    mut controls: impl FnMut(usize) -> Controls<'c>,
    seconds: f64,
    path: &Path,
    mut progress: impl FnMut(Progress),
) -> Result<u64, OfflineError> {
    let rate = generator.sample_rate();
    let total = frames_for(seconds, rate)?;
    let per_chunk = generator.block_samples() as u64;
    let chunks = total.div_ceil(per_chunk) as usize;
    let channels = generator.channels();
    let werr = |source: hound::Error| OfflineError::Write { path: path.to_path_buf(), source };
    let spec = hound::WavSpec { channels: channels as u16, sample_rate: rate, bits_per_sample: 32, sample_format: hound::SampleFormat::Float };
    let mut writer = hound::WavWriter::create(path, spec).map_err(werr)?;
    let start = Instant::now();
    let mut written = 0u64;
    for chunk in 0..chunks {
        let out = generator.next_block(state, &controls(chunk), None)?;
        let n = out.samples();
        let take = (total - written).min(n as u64) as usize;
        for i in 0..take {
            for c in 0..channels {
                writer.write_sample(out.audio[c * n + i]).map_err(werr)?;
            }
        }
        written += take as u64;
        // The header now counts what is written: a run stopped later still leaves a valid file.
        writer.flush().map_err(werr)?;
        progress(Progress {
            chunk: chunk + 1,
            chunks,
            audio_seconds: written as f64 / f64::from(rate),
            elapsed_seconds: start.elapsed().as_secs_f64(),
        });
    }
    writer.finalize().map_err(werr)?;
    Ok(written)
}
