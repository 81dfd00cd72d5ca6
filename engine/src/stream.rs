//! The generator the plugin worker and offline generation drive, whichever model family runs.
//!
//! ```text
//!  Generator::{V1(MagentaRt), …}  ──next_block(state, controls, cancel)──►  Block (1 chunk or frame)
//!  StreamState::{V1(..), …}        serde-tagged by family: a saved project reopens under its family
//! ```
//!
//! An enum, not a trait: the families are few and closed, their states must round-trip through
//! a project file under the right family, and an exhaustive `match` shows every place a new
//! family must be handled. The shared surface is small: sample rate, channels, block length
//! (96000 samples for v1's 2 s chunk), `init_state`, `next_block`. Each family ignores the
//! controls it has no use for.

use std::sync::atomic::AtomicBool;

use serde::{Deserialize, Serialize};

use crate::v1::lm::SamplingParams;
use crate::v1::system::{self, MagentaRt, SystemError};

/// The model families.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// Magenta RealTime v1: 2 s chunks from 10 s of context.
    V1,
}

impl std::fmt::Display for Family {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Family::V1 => "v1",
        })
    }
}

/// A loaded generator of one family.
pub enum Generator {
    V1(MagentaRt),
}

/// A stream's state, tagged with its family (`{"family": "v1", …}`). States saved before the tag
/// existed (a bare v1 state) still load, as v1.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "family", rename_all = "lowercase")]
pub enum StreamState {
    V1(system::StreamState),
}

impl<'de> Deserialize<'de> for StreamState {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(tag = "family", rename_all = "lowercase")]
        enum Tagged {
            V1(system::StreamState),
        }
        let value = serde_json::Value::deserialize(d)?;
        let tagged = value.get("family").is_some();
        if tagged {
            let Tagged::V1(s) = Tagged::deserialize(value).map_err(serde::de::Error::custom)?;
            Ok(StreamState::V1(s))
        } else {
            // Before the family tag: a v1 state.
            system::StreamState::deserialize(value).map(StreamState::V1).map_err(serde::de::Error::custom)
        }
    }
}

impl StreamState {
    pub fn family(&self) -> Family {
        match self {
            StreamState::V1(_) => Family::V1,
        }
    }

    /// Writes the state as JSON (through a temporary file, so a crash never leaves half a state).
    pub fn save(&self, path: &std::path::Path) -> Result<(), StreamError> {
        let err = |reason: String| StreamError::File { path: path.to_path_buf(), reason };
        let text = serde_json::to_string(self).map_err(|e| err(e.to_string()))?;
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text).map_err(|e| err(e.to_string()))?;
        std::fs::rename(&tmp, path).map_err(|e| err(e.to_string()))
    }

    /// Reads a state saved by [`StreamState::save`] (or a bare v1 state of older builds); it is
    /// checked against the model when used.
    pub fn load(path: &std::path::Path) -> Result<Self, StreamError> {
        let err = |reason: String| StreamError::File { path: path.to_path_buf(), reason };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        let state: Self = serde_json::from_str(&text).map_err(|e| err(format!("not a saved stream state: {e}")))?;
        match &state {
            StreamState::V1(s) if s.version > system::state::STATE_VERSION => {
                Err(err(format!("stream state version {} is newer than this build understands ({})", s.version, system::state::STATE_VERSION)))
            }
            _ => Ok(state),
        }
    }
}

/// What steers the next block. v1 reads the style codes and all sampling knobs.
#[derive(Clone, Copy, Debug, Default)]
pub struct Controls<'a> {
    /// Style codes of the prompt blend (`None`: no style).
    pub style: Option<&'a [i32]>,
    pub sampling: SamplingParams,
}

/// One generated block of audio at the generator's rate.
#[derive(Clone, Debug, PartialEq)]
pub struct Block {
    /// Channel-first `[channels][samples]`, final (crossfaded where the family crossfades).
    pub audio: Vec<f32>,
    pub channels: usize,
    /// The block's RVQ codes, `[frames][levels]`.
    pub codes: Vec<i32>,
}

impl Block {
    pub fn samples(&self) -> usize {
        self.audio.len() / self.channels.max(1)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error(transparent)]
    V1(#[from] SystemError),
    #[error("a {state} stream state cannot drive the {model} model")]
    WrongFamily { state: Family, model: Family },
    #[error("stream state file {path}: {reason}")]
    File { path: std::path::PathBuf, reason: String },
}

impl Generator {
    pub fn family(&self) -> Family {
        match self {
            Generator::V1(_) => Family::V1,
        }
    }

    pub fn sample_rate(&self) -> u32 {
        match self {
            Generator::V1(g) => g.sample_rate(),
        }
    }

    pub fn channels(&self) -> usize {
        match self {
            Generator::V1(g) => g.channels(),
        }
    }

    /// Samples per channel of one block (v1: 96000, a 2 s chunk).
    pub fn block_samples(&self) -> usize {
        match self {
            Generator::V1(g) => g.chunk_samples(),
        }
    }

    /// Seconds of audio per block.
    pub fn block_seconds(&self) -> f64 {
        self.block_samples() as f64 / f64::from(self.sample_rate())
    }

    /// The state before the first block.
    pub fn init_state(&self) -> StreamState {
        match self {
            Generator::V1(g) => StreamState::V1(g.init_state()),
        }
    }

    /// Whether `state` can continue on this model (family and dimensions).
    pub fn fits(&self, state: &StreamState) -> bool {
        match (self, state) {
            (Generator::V1(g), StreamState::V1(s)) => {
                let fresh = g.init_state();
                s.validate(fresh.context_frames, fresh.levels, fresh.channels, fresh.crossfade_samples()).is_ok()
            }
        }
    }

    /// Generates the next block and advances `state`; on error the state is left as it was.
    /// Gives up within one frame's steps once `cancel` is raised.
    pub fn next_block(&self, state: &mut StreamState, controls: &Controls<'_>, cancel: Option<&AtomicBool>) -> Result<Block, StreamError> {
        match (self, state) {
            (Generator::V1(g), StreamState::V1(s)) => {
                let c = g.generate_chunk_cancellable(s, controls.style, &controls.sampling, cancel)?;
                Ok(Block { audio: c.audio, channels: c.channels, codes: c.codes })
            }
        }
    }

    /// The v1 system, when this is v1 (tests, tools).
    pub fn as_v1(&self) -> Option<&MagentaRt> {
        match self {
            Generator::V1(g) => Some(g),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_are_tagged_with_their_family_and_bare_v1_states_still_load() {
        let mut v1 = system::StreamState::new(3, 2, 2, 4);
        v1.push_frames(&[1, 2, 3, 4]);
        let tagged = StreamState::V1(v1.clone());
        let text = serde_json::to_string(&tagged).unwrap();
        assert!(text.starts_with(r#"{"family":"v1","#), "{text}");
        assert_eq!(serde_json::from_str::<StreamState>(&text).unwrap(), tagged);
        // A project saved before the tag holds the bare v1 state.
        let bare = serde_json::to_string(&v1).unwrap();
        assert_eq!(serde_json::from_str::<StreamState>(&bare).unwrap(), tagged);
        assert!(serde_json::from_str::<StreamState>(r#"{"family":"v9"}"#).is_err());
    }
}
