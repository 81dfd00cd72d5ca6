//! The generator the plugin worker and offline generation drive, whichever model family runs.
//!
//! ```text
//!  Generator::{V1(MagentaRt), Mrt2(Mrt2System)} ──next_block(state, controls, cancel)──► Block
//!                                                  (v1: one 2 s chunk; MRT2: one 40 ms frame)
//!  StreamState::{V1(..), …}        serde-tagged by family: a saved project reopens under its family
//! ```
//!
//! An enum, not a trait: the families are few and closed, their states must round-trip through
//! a project file under the right family, and an exhaustive `match` shows every place a new
//! family must be handled. The shared surface is small: sample rate, channels, block length
//! (96000 samples for v1's 2 s chunk, 1920 for an MRT2 frame), `init_state`, `next_block`. Each
//! family ignores the controls it has no use for: v1 the MRT2 conditioning, MRT2 the guidance
//! weight and the sampling seed (its seed is in its state, [`Generator::init_state_seeded`]).

use std::sync::atomic::AtomicBool;

use serde::{Deserialize, Serialize};

use crate::mrt2::conditioning::{ConditionFrame, DrumFlag};
use crate::mrt2::notes::NUM_PITCHES;
use crate::mrt2::system::{Mrt2Error, Mrt2State, Mrt2System, MUSICCOCA_KEPT_LEVELS};
use crate::v1::lm::SamplingParams;
use crate::v1::system::{self, MagentaRt, SystemError};

/// The model families.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// Magenta RealTime v1: 2 s chunks from 10 s of context.
    V1,
    /// Magenta RealTime 2: 40 ms frames, conditioned per frame (style, notes, drums, adherence).
    Mrt2,
}

impl std::fmt::Display for Family {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Family::V1 => "v1",
            Family::Mrt2 => "mrt2",
        })
    }
}

/// A loaded generator of one family.
// One per loaded model, never moved in a loop: boxing a variant would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum Generator {
    V1(MagentaRt),
    Mrt2(Mrt2System),
}

/// A stream's state, tagged with its family (`{"family": "v1", …}`). States saved before the tag
/// existed (a bare v1 state) still load, as v1.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "family", rename_all = "lowercase")]
#[allow(clippy::large_enum_variant)] // one per stream, moved only when saved or loaded
pub enum StreamState {
    V1(system::StreamState),
    Mrt2(Mrt2State),
}

impl<'de> Deserialize<'de> for StreamState {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(tag = "family", rename_all = "lowercase")]
        #[allow(clippy::large_enum_variant)]
        enum Tagged {
            V1(system::StreamState),
            Mrt2(Mrt2State),
        }
        let value = serde_json::Value::deserialize(d)?;
        let tagged = value.get("family").is_some();
        if tagged {
            Ok(match Tagged::deserialize(value).map_err(serde::de::Error::custom)? {
                Tagged::V1(s) => StreamState::V1(s),
                Tagged::Mrt2(s) => StreamState::Mrt2(s),
            })
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
            StreamState::Mrt2(_) => Family::Mrt2,
        }
    }

    /// Writes the state as JSON (through a temporary file, so a crash never leaves half a state).
    pub fn save(&self, path: &std::path::Path) -> Result<(), StreamError> {
        let text = serde_json::to_string(self).map_err(|source| StreamError::Json { path: path.to_path_buf(), source })?;
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text).map_err(|source| StreamError::Io { path: tmp.clone(), source })?;
        std::fs::rename(&tmp, path).map_err(|source| StreamError::Io { path: path.to_path_buf(), source })
    }

    /// Reads a state saved by [`StreamState::save`] (or a bare v1 state of older builds); it is
    /// checked against the model when used.
    pub fn load(path: &std::path::Path) -> Result<Self, StreamError> {
        let err = |reason: String| StreamError::File { path: path.to_path_buf(), reason };
        let text = std::fs::read_to_string(path).map_err(|source| StreamError::Io { path: path.to_path_buf(), source })?;
        let state: Self = serde_json::from_str(&text).map_err(|source| StreamError::Json { path: path.to_path_buf(), source })?;
        match &state {
            StreamState::V1(s) if s.version > system::state::STATE_VERSION => {
                Err(err(format!("stream state version {} is newer than this build understands ({})", s.version, system::state::STATE_VERSION)))
            }
            StreamState::Mrt2(s) if s.version() > crate::mrt2::system::STATE_VERSION => Err(err(format!(
                "MRT2 stream state version {} is newer than this build understands ({})",
                s.version(),
                crate::mrt2::system::STATE_VERSION
            ))),
            _ => Ok(state),
        }
    }
}

/// What steers the next block. v1 reads the style codes and all sampling knobs; MRT2 reads the
/// style codes (its 6 coarsest levels), `sampling.temperature` and `sampling.top_k`, and
/// [`Mrt2Controls`].
#[derive(Clone, Copy, Debug, Default)]
pub struct Controls<'a> {
    /// Style codes of the prompt blend (`None`: no style).
    pub style: Option<&'a [i32]>,
    pub sampling: SamplingParams,
    /// MRT2's per-frame conditioning (v1 ignores it).
    pub mrt2: Mrt2Controls<'a>,
}

/// MRT2's per-frame conditioning besides the style (spec §4).
#[derive(Clone, Copy, Debug)]
pub struct Mrt2Controls<'a> {
    /// This frame's piano roll (`notes::NoteTracker::evaluate_frame`: −1 masked, 0 off,
    /// 1 sustain, 2 onset, 3 on); `None`: every pitch masked (the model decides).
    pub pianoroll: Option<&'a [i32; NUM_PITCHES]>,
    pub drums: DrumFlag,
    /// Guidance scales (−1..7), binned into the conditioning: prompt 3, notes 1, drums 1 by default.
    pub prompt_adherence: f64,
    pub note_adherence: f64,
    pub drum_adherence: f64,
    /// The style codes' coarsest levels sent, the finer ones masked: 6 as the official C++
    /// engine ([`MUSICCOCA_KEPT_LEVELS`]), up to all 12 as the Python systems.
    pub style_levels: usize,
}

impl Default for Mrt2Controls<'_> {
    /// The AUv3's defaults: no notes, drums auto, adherence 3 / 1 / 1, 6 style levels.
    fn default() -> Self {
        Self {
            pianoroll: None,
            drums: DrumFlag::Auto,
            prompt_adherence: 3.0,
            note_adherence: 1.0,
            drum_adherence: 1.0,
            style_levels: MUSICCOCA_KEPT_LEVELS,
        }
    }
}

impl Mrt2Controls<'_> {
    /// One frame's conditioning from these controls and the style codes.
    pub fn condition_frame(&self, style: Option<&[i32]>, musiccoca_levels: usize) -> ConditionFrame {
        let mut f = ConditionFrame::masked(musiccoca_levels);
        if let Some(codes) = style {
            f.set_musiccoca_coarse(codes, self.style_levels.min(musiccoca_levels));
        }
        if let Some(roll) = self.pianoroll {
            f.pianoroll = *roll;
        }
        f.drums = self.drums;
        f.cfg_musiccoca = self.prompt_adherence;
        f.cfg_notes = self.note_adherence;
        f.cfg_drums = self.drum_adherence;
        f
    }
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
    #[error(transparent)]
    Mrt2(#[from] Mrt2Error),
    #[error("a {state} stream state cannot drive the {model} model")]
    WrongFamily { state: Family, model: Family },
    #[error("stream state file {path}: {reason}")]
    File { path: std::path::PathBuf, reason: String },
    #[error("stream state file {path}")]
    Io { path: std::path::PathBuf, #[source] source: std::io::Error },
    #[error("stream state file {path}: not a saved stream state")]
    Json { path: std::path::PathBuf, #[source] source: serde_json::Error },
}

impl Generator {
    pub fn family(&self) -> Family {
        match self {
            Generator::V1(_) => Family::V1,
            Generator::Mrt2(_) => Family::Mrt2,
        }
    }

    pub fn sample_rate(&self) -> u32 {
        match self {
            Generator::V1(g) => g.sample_rate(),
            Generator::Mrt2(g) => g.sample_rate(),
        }
    }

    pub fn channels(&self) -> usize {
        match self {
            Generator::V1(g) => g.channels(),
            Generator::Mrt2(g) => g.channels(),
        }
    }

    /// Samples per channel of one block (v1: 96000, a 2 s chunk; MRT2: 1920, a 40 ms frame).
    pub fn block_samples(&self) -> usize {
        match self {
            Generator::V1(g) => g.chunk_samples(),
            Generator::Mrt2(g) => g.frame_samples(),
        }
    }

    /// Seconds of audio per block.
    pub fn block_seconds(&self) -> f64 {
        self.block_samples() as f64 / f64::from(self.sample_rate())
    }

    /// The state before the first block (MRT2: the reference's sampler key).
    pub fn init_state(&self) -> StreamState {
        self.init_state_seeded(None)
    }

    /// The state before the first block; MRT2 keys its sampler from `seed`
    /// ([`crate::mrt2::system::key_for_seed`]), v1 takes its seed from the controls instead.
    pub fn init_state_seeded(&self, seed: Option<u64>) -> StreamState {
        match self {
            Generator::V1(g) => StreamState::V1(g.init_state()),
            Generator::Mrt2(g) => StreamState::Mrt2(g.init_state(seed)),
        }
    }

    /// Whether `state` can continue on this model (family and dimensions).
    pub fn fits(&self, state: &StreamState) -> bool {
        match (self, state) {
            (Generator::V1(g), StreamState::V1(s)) => {
                let fresh = g.init_state();
                s.validate(fresh.context_frames, fresh.levels, fresh.channels, fresh.crossfade_samples()).is_ok()
            }
            (Generator::Mrt2(g), StreamState::Mrt2(s)) => g.validate(s).is_ok(),
            _ => false,
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
            (Generator::Mrt2(g), StreamState::Mrt2(s)) => {
                // One frame: nothing to cancel inside it.
                let frame = controls.mrt2.condition_frame(controls.style, g.config().musiccoca_levels);
                let params = crate::sampling::mrt2::SamplingParams { temperature: controls.sampling.temperature, top_k: controls.sampling.top_k };
                let audio = g.step_frame(s, &frame, &params)?.to_vec();
                Ok(Block { audio, channels: g.channels(), codes: s.last_codes().to_vec() })
            }
            (g, s) => Err(StreamError::WrongFamily { state: s.family(), model: g.family() }),
        }
    }

    /// The v1 system, when this is v1 (tests, tools).
    pub fn as_v1(&self) -> Option<&MagentaRt> {
        match self {
            Generator::V1(g) => Some(g),
            Generator::Mrt2(_) => None,
        }
    }

    /// The MRT2 system, when this is MRT2.
    pub fn as_mrt2(&self) -> Option<&Mrt2System> {
        match self {
            Generator::Mrt2(g) => Some(g),
            Generator::V1(_) => None,
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

    #[test]
    fn mrt2_controls_become_one_frames_conditioning() {
        let mut roll = [-1; NUM_PITCHES];
        roll[60] = 2;
        let style: Vec<i32> = (100..112).collect();
        let c = Mrt2Controls { pianoroll: Some(&roll), drums: DrumFlag::Off, prompt_adherence: 7.0, note_adherence: -1.0, drum_adherence: 2.0, ..Default::default() };
        let f = c.condition_frame(Some(&style), 12);
        assert_eq!(f.musiccoca, vec![100, 101, 102, 103, 104, 105, -1, -1, -1, -1, -1, -1]);
        let mut raw = Vec::new();
        f.raw_values(&mut raw);
        assert_eq!(raw[12 + 60], 2);
        assert_eq!(&raw[140..], &[0, 40, 0, 3]);
        let none = Mrt2Controls::default().condition_frame(None, 12);
        assert_eq!(none, ConditionFrame::masked(12));
    }
}
