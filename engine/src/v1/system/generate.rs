//! `generate_chunk`: one 2 s chunk of stereo 48 kHz audio from the streaming state, exactly the
//! steps of v1 `system.py` `MagentaRTT5X.generate_chunk` (spec §1.1):
//!
//! ```text
//!  state.context (250×16, −1 empty) + style codes ─ encoder ids [cond | uncond]
//!    ─ LM: 800 sampled ids (CFG, temperature, top-k; RNG keyed by seed + chunk index)
//!    ─ codes = max(id − 2, 0) mod 1024                                        (50×16)
//!    ─ codec decode of [previous context frame (zeros on chunk 0) ; codes]   (51 frames → 97920)
//!    ─ out = first 96000 samples, head crossfaded with the stored tail; tail = last 1920
//!    ─ state: context ← context[50:] + codes, tail, chunk index + 1
//! ```

use super::crossfade;
use super::ids::{encoder_ids, id_to_code, IdsError};
use super::state::{StateError, StreamState};
use crate::codec::{Codec, CodecError};
use crate::v1::lm::{DecodeHooks, Depthformer, LmError, SamplingParams};

/// Frames of decoded overlap between chunks (v1 `crossfade_length_frames`: 40 ms).
pub const CROSSFADE_FRAMES: usize = 1;

#[derive(Debug, thiserror::Error)]
pub enum SystemError {
    #[error(transparent)]
    Lm(#[from] LmError),
    #[error(transparent)]
    Codec(#[from] CodecError),
    #[error(transparent)]
    Ids(#[from] IdsError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error("the LM and the codec do not fit together: {0}")]
    Mismatch(String),
}

/// One generated chunk.
#[derive(Clone, Debug, PartialEq)]
pub struct Chunk {
    /// Channel-first `[channels][samples]` at the codec rate, crossfaded and final.
    pub audio: Vec<f32>,
    pub channels: usize,
    /// The chunk's RVQ codes, `[frames][levels]`.
    pub codes: Vec<i32>,
}

impl Chunk {
    pub fn samples(&self) -> usize {
        self.audio.len() / self.channels.max(1)
    }
}

/// LM + codec: the generator of the streaming system. Style arrives as raw style codes (the first
/// `encoder_style_levels` MusicCoCa RVQ codes) or none.
pub struct MagentaRt {
    pub lm: Depthformer,
    pub codec: Codec,
    ramp: Vec<f32>,
}

impl MagentaRt {
    pub fn new(lm: Depthformer, codec: Codec) -> Result<Self, SystemError> {
        let levels = lm.config.num_levels;
        if codec.levels() < levels {
            return Err(SystemError::Mismatch(format!(
                "the LM writes {levels} RVQ levels, the codec has {} codebooks",
                codec.levels()
            )));
        }
        if lm.config.codebook_size != codec.rvq().codebook_size() {
            return Err(SystemError::Mismatch(format!(
                "LM codebook size {} vs codec {}",
                lm.config.codebook_size,
                codec.rvq().codebook_size()
            )));
        }
        let ramp = crossfade::equal_power_ramp(CROSSFADE_FRAMES * codec.samples_per_frame());
        Ok(Self { lm, codec, ramp })
    }

    pub fn channels(&self) -> usize {
        self.codec.channels()
    }

    pub fn sample_rate(&self) -> u32 {
        self.codec.config.sample_rate_hz
    }

    /// Samples per channel of one chunk (96000).
    pub fn chunk_samples(&self) -> usize {
        self.lm.config.chunk_frames * self.codec.samples_per_frame()
    }

    /// The state before the first chunk.
    pub fn init_state(&self) -> StreamState {
        StreamState::new(self.lm.config.context_frames, self.lm.config.num_levels, self.channels(), self.ramp.len())
    }

    /// Generates the next chunk and advances `state`. On error the state is left untouched.
    pub fn generate_chunk(&self, state: &mut StreamState, style: Option<&[i32]>, params: &SamplingParams) -> Result<Chunk, SystemError> {
        self.generate_chunk_cancellable(state, style, params, None)
    }

    /// [`generate_chunk`](Self::generate_chunk) that gives up within one frame's steps once
    /// `cancel` is raised (`LmError::Cancelled`; the state is left untouched).
    pub fn generate_chunk_cancellable(
        &self,
        state: &mut StreamState,
        style: Option<&[i32]>,
        params: &SamplingParams,
        cancel: Option<&std::sync::atomic::AtomicBool>,
    ) -> Result<Chunk, SystemError> {
        let c = &self.lm.config;
        let (channels, xfade) = (self.channels(), self.ramp.len());
        state.validate(c.context_frames, c.num_levels, channels, xfade)?;
        let ids = encoder_ids(c, &state.context_codes, state.levels, style)?;
        let hooks = DecodeHooks { cancel, ..DecodeHooks::default() };
        let tokens = self.lm.decode_chunk(&ids, params, state.chunk_index, &mut state.scratch.lm, hooks)?;
        let codes: Vec<i32> = tokens.iter().map(|&id| id_to_code(c, id)).collect();

        // The previous context frame is decoded again in front of the new ones: its rendition
        // now has look-ahead and overlaps the stored tail. Chunk 0 has none: zeros, faded in.
        let mut frames = Vec::with_capacity((CROSSFADE_FRAMES + c.chunk_frames) * c.num_levels);
        if state.chunk_index == 0 {
            frames.resize(CROSSFADE_FRAMES * c.num_levels, 0);
        } else {
            // v1 asserts these are filled; a hand-made state may hold −1, decoded as code 0.
            frames.extend(state.last_frames(CROSSFADE_FRAMES).iter().map(|&v| v.max(0)));
        }
        frames.extend_from_slice(&codes);
        let decoded = self.codec.decode_codes_in(&frames, CROSSFADE_FRAMES + c.chunk_frames, c.num_levels, &mut state.scratch.codec)?;
        let per_channel = decoded.len() / channels;
        let n = self.chunk_samples();
        if per_channel != n + xfade {
            return Err(SystemError::Mismatch(format!("codec decoded {per_channel} samples per channel, expected {}", n + xfade)));
        }

        let mut audio = Vec::with_capacity(channels * n);
        let mut tail = Vec::with_capacity(channels * xfade);
        for ch in 0..channels {
            let rendered = &decoded[ch * per_channel..(ch + 1) * per_channel];
            let start = audio.len();
            audio.extend_from_slice(&rendered[..n]);
            crossfade::apply(&mut audio[start..start + xfade], &state.crossfade_tail[ch * xfade..(ch + 1) * xfade], &self.ramp);
            tail.extend_from_slice(&rendered[n..]);
        }
        state.push_frames(&codes);
        state.crossfade_tail = tail;
        state.chunk_index += 1;
        Ok(Chunk { audio, channels, codes })
    }
}
