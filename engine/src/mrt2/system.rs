//! MRT2's streaming system: the LM step, then the codec's frame-by-frame decode, one 40 ms frame
//! (1920 stereo samples at 48 kHz) per [`Mrt2System::step`], as `MagentaRT2System` streams it
//! (`magenta_rt/jax/system.py`, branch `main`).
//!
//! ```text
//!  ConditionFrame ─► tokens (+7) ─► Mrt2Model::step (FrameState) ─► 12 ids ─► codes (id − 6) mod 1024
//!                                                                                 │
//!  audio [2][1920] ◄── DecoderStream::step (frame 0: silence; frame t: audio of t − 1) ◄──┘
//! ```
//!
//! - **Seeds.** The sampler's key starts at [`DEFAULT_INIT_RNG_KEY`], the key `MagentaRT2System`
//!   gets from flax's `make_rng('random')` under `PRNGKey(0)` (M1 `config.json`,
//!   `system_default_init_rng_key`). A user seed `s` gives
//!   `fold_in(fold_in(DEFAULT_INIT_RNG_KEY, hi32(s)), lo32(s))` ([`key_for_seed`]): every 64-bit
//!   seed a distinct, reproducible stream; no seed is the reference's own stream.
//! - **State** ([`Mrt2State`]): the LM's [`FrameState`] and the codec's [`DecoderStream`]. It
//!   serialises (versioned, floats as bit patterns) to the LM's rings, tokens, frame counter and
//!   keys plus the decoder's history rows and overlap-add tail; a loaded state becomes live on
//!   its first use against a model, after [`Mrt2System::validate`]. Save → load → continue is
//!   bit-exact.
//! - **Prefill** ([`Mrt2System::prefill`]): teacher-forced frames from known codes. Each runs the
//!   LM step with the codes forced (the key chain advances as in generation) and feeds them to
//!   the decoder, so the next generated frame continues exactly as if the model had produced them.
//! - Errors leave the state as it was: conditioning and forced codes are checked before anything
//!   moves, and the codes the LM emits are in range by construction.

use serde::{Deserialize, Serialize};

use super::conditioning::ConditionFrame;
use super::model::{token_to_code, FrameSnapshot, FrameState, Mrt2Model, StepError};
use super::{Mrt2Config, Mrt2Weights, WeightsError};
use crate::codec::stream::DecoderSnapshot;
use crate::codec::{Codec, CodecConfig, CodecError, CodecWeights, DecoderStream};
use crate::sampling::mrt2::{fold_in, Key, SamplingParams};

/// The initial key of `MagentaRT2System` (`rngs={'random': PRNGKey(0)}`), from the M1 fixture's
/// `config.json` (`system_default_init_rng_key`).
pub const DEFAULT_INIT_RNG_KEY: Key = [2622765856, 4027185423];

/// Bumped when the saved layout changes.
pub const STATE_VERSION: u32 = 1;

/// MusicCoCa levels the official engine keeps from a prompt (`kMusicCoCaMaskedTailLevels = 6`
/// in `core/include/magentart/mlx_engine.h`: the 6 finest of 12 are masked).
pub const MUSICCOCA_KEPT_LEVELS: usize = 6;

/// The longest audio a prefill takes (the official engine's limit).
pub const MAX_PREFILL_SECONDS: f64 = 28.0;

/// The sampler key of a stream: the reference's for `None`, else derived from the seed (see the
/// module docs).
pub fn key_for_seed(seed: Option<u64>) -> Key {
    match seed {
        None => DEFAULT_INIT_RNG_KEY,
        Some(s) => fold_in(fold_in(DEFAULT_INIT_RNG_KEY, (s >> 32) as u32), s as u32),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Mrt2Error {
    #[error(transparent)]
    Step(#[from] StepError),
    #[error("codec")]
    Codec(#[source] CodecError),
    #[error("LM weights")]
    Weights(#[source] WeightsError),
    #[error("the codec does not fit the LM: {0}")]
    CodecMismatch(String),
    #[error("stream state version {found} is newer than this build understands ({supported})")]
    Version { found: u32, supported: u32 },
    #[error("the stream state does not fit this model: {0}")]
    State(String),
    #[error("prefill: {0}")]
    Prefill(String),
    #[error("device: {0}")]
    Device(String),
}

/// The LM and the decode-only codec of one MRT2 checkpoint.
#[derive(Debug)]
pub struct Mrt2System {
    pub model: Mrt2Model,
    pub codec: Codec,
}

/// The sizes a state must have to run on a system (saved with it, checked before use).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dims {
    pub levels: usize,
    pub temporal_layers: usize,
    pub temporal_inner: usize,
    pub self_window: usize,
    pub cross_window: usize,
    pub channels: usize,
    pub samples_per_frame: usize,
}

/// What a saved state holds (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedState {
    pub version: u32,
    pub dims: Dims,
    pub lm: FrameSnapshot,
    pub decoder: DecoderSnapshot,
}

struct Live {
    lm: FrameState,
    decoder: DecoderStream,
    /// Codes of the last frame, `[levels]`.
    codes: Vec<i32>,
}

/// One MRT2 stream: live buffers once it has run on a system, else the saved form it was loaded
/// from. Cloning and comparing go through the saved form.
pub struct Mrt2State {
    dims: Dims,
    live: Option<Box<Live>>,
    saved: Option<Box<SavedState>>,
}

impl Mrt2State {
    /// The saved form (what [`Serialize`] writes).
    pub fn to_saved(&self) -> SavedState {
        match (&self.live, &self.saved) {
            (Some(l), _) => SavedState { version: STATE_VERSION, dims: self.dims, lm: l.lm.snapshot(), decoder: l.decoder.snapshot() },
            (None, Some(s)) => (**s).clone(),
            (None, None) => unreachable!("a state is live or saved"),
        }
    }

    /// A state from its saved form; it becomes live on its first use with a system.
    pub fn from_saved(saved: SavedState) -> Self {
        Self { dims: saved.dims, live: None, saved: Some(Box::new(saved)) }
    }

    pub fn version(&self) -> u32 {
        self.saved.as_ref().map_or(STATE_VERSION, |s| s.version)
    }

    /// Frames generated (or prefilled) so far.
    pub fn frame(&self) -> u32 {
        match (&self.live, &self.saved) {
            (Some(l), _) => l.lm.frame(),
            (None, Some(s)) => s.lm.frame,
            (None, None) => 0,
        }
    }

    /// Codes of the last frame (empty before the first, or before a loaded state has run).
    pub fn last_codes(&self) -> &[i32] {
        self.live.as_ref().map_or(&[], |l| l.codes.as_slice())
    }
}

impl Clone for Mrt2State {
    fn clone(&self) -> Self {
        Self::from_saved(self.to_saved())
    }
}

impl PartialEq for Mrt2State {
    fn eq(&self, other: &Self) -> bool {
        self.to_saved() == other.to_saved()
    }
}

impl std::fmt::Debug for Mrt2State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mrt2State").field("frame", &self.frame()).field("live", &self.live.is_some()).finish_non_exhaustive()
    }
}

impl Serialize for Mrt2State {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_saved().serialize(s)
    }
}

impl<'de> Deserialize<'de> for Mrt2State {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        SavedState::deserialize(d).map(Self::from_saved)
    }
}

impl Mrt2System {
    /// The system from a model and a codec (host decoder, at least the LM's levels).
    pub fn new(model: Mrt2Model, codec: Codec) -> Result<Self, Mrt2Error> {
        if !codec.host_decoder() {
            return Err(Mrt2Error::CodecMismatch("frame-by-frame decoding needs the host decoder (load with the host target)".into()));
        }
        if codec.levels() < model.cfg.num_levels {
            return Err(Mrt2Error::CodecMismatch(format!("{} codebooks, the LM emits {} levels", codec.levels(), model.cfg.num_levels)));
        }
        if codec.rvq().codebook_size() != model.cfg.codebook_size {
            return Err(Mrt2Error::CodecMismatch(format!(
                "codebooks of {} codes, the LM's of {}",
                codec.rvq().codebook_size(),
                model.cfg.codebook_size
            )));
        }
        // Proves at load that a decoder stream can be made (so `init_state` cannot fail).
        DecoderStream::new(&codec, model.cfg.num_levels).map_err(Mrt2Error::Codec)?;
        Ok(Self { model, codec })
    }

    /// Reads an MRT2 checkpoint (`checkpoints/mrt2_*.safetensors` or a fixture's
    /// `weights.safetensors`) once: the codec's tensors, then the LM's.
    pub fn load(path: &std::path::Path, cfg: Mrt2Config, codec_config: CodecConfig) -> Result<Self, Mrt2Error> {
        Self::load_with(path, cfg, codec_config, crate::kernels::WeightPrecision::F32)
    }

    /// [`Mrt2System::load`] with the LM's projections in `precision` (f32 is exact; bf16 and
    /// int8 stream fewer bytes per frame, `mrt bench agreement` measures what they change).
    pub fn load_with(path: &std::path::Path, cfg: Mrt2Config, codec_config: CodecConfig, precision: crate::kernels::WeightPrecision) -> Result<Self, Mrt2Error> {
        Self::load_on(path, cfg, codec_config, precision, &crate::Target::host())
    }

    /// [`Mrt2System::load_with`] with the LM's decoder on `target`: the GPU kernels on a GPU
    /// target (`Compute::Gpu`: wgpu or CUDA), the host kernels on the CPU. The conditioning
    /// encoder and the codec's frame-by-frame decode stay on the host; MRT2 has no burn path.
    pub fn load_on(
        path: &std::path::Path,
        cfg: Mrt2Config,
        codec_config: CodecConfig,
        precision: crate::kernels::WeightPrecision,
        target: &crate::Target,
    ) -> Result<Self, Mrt2Error> {
        if target.compute == crate::Compute::Burn {
            return Err(Mrt2Error::Device(format!("MRT2 has no burn path: run it on the host kernels or the GPU kernels, not `--kernels burn` on {}", target.choice)));
        }
        let store = crate::formats::safetensors::read(path).map_err(|e| Mrt2Error::Weights(WeightsError::from(e)))?;
        let codec_weights = CodecWeights::from_mrt2_store(&store, &codec_config).map_err(Mrt2Error::Codec)?;
        let mut weights = Mrt2Weights::from_store(store, &cfg).map_err(Mrt2Error::Weights)?;
        weights.set_precision(precision);
        let codec = Codec::from_weights(codec_config, codec_weights, &crate::Target::host()).map_err(Mrt2Error::Codec)?;
        let mut model = Mrt2Model::new(cfg, weights);
        if target.compute == crate::Compute::Gpu {
            model = model.on_device(&target.device).map_err(|e| Mrt2Error::Device(format!("{}: {e}", target.choice)))?;
        }
        Self::new(model, codec)
    }

    pub fn config(&self) -> &Mrt2Config {
        &self.model.cfg
    }

    pub fn sample_rate(&self) -> u32 {
        self.codec.config.sample_rate_hz
    }

    pub fn channels(&self) -> usize {
        self.codec.channels()
    }

    /// Samples per channel of one frame (1920).
    pub fn frame_samples(&self) -> usize {
        self.codec.samples_per_frame()
    }

    pub fn dims(&self) -> Dims {
        let c = &self.model.cfg;
        Dims {
            levels: c.num_levels,
            temporal_layers: c.temporal.layers,
            temporal_inner: c.temporal.inner(),
            self_window: c.self_attention_window,
            cross_window: c.cross_attention_window,
            channels: self.channels(),
            samples_per_frame: self.frame_samples(),
        }
    }

    /// The state before the first frame, its sampler key from `seed` ([`key_for_seed`]).
    pub fn init_state(&self, seed: Option<u64>) -> Mrt2State {
        let lm = FrameState::new(&self.model, key_for_seed(seed));
        let decoder = DecoderStream::new(&self.codec, self.model.cfg.num_levels).expect("checked in Mrt2System::new");
        Mrt2State { dims: self.dims(), live: Some(Box::new(Live { lm, decoder, codes: Vec::new() })), saved: None }
    }

    /// Whether `state` can run on this system: version and every dimension; a saved state is
    /// also checked in full (rings, buffers) by building it once, without changing `state`.
    pub fn validate(&self, state: &Mrt2State) -> Result<(), Mrt2Error> {
        if state.version() > STATE_VERSION {
            return Err(Mrt2Error::Version { found: state.version(), supported: STATE_VERSION });
        }
        if state.dims != self.dims() {
            return Err(Mrt2Error::State(format!("saved for sizes {:?}, this model has {:?}", state.dims, self.dims())));
        }
        match (&state.live, &state.saved) {
            (Some(_), _) => Ok(()),
            (None, Some(s)) => self.build(s).map(|_| ()),
            (None, None) => unreachable!("a state is live or saved"),
        }
    }

    fn build(&self, s: &SavedState) -> Result<Live, Mrt2Error> {
        let mut lm = FrameState::new(&self.model, s.lm.initial_key);
        lm.restore(&self.model.cfg, &s.lm).map_err(Mrt2Error::State)?;
        let mut decoder = DecoderStream::new(&self.codec, self.model.cfg.num_levels).map_err(Mrt2Error::Codec)?;
        decoder.restore(&self.codec, &s.decoder).map_err(|e| Mrt2Error::State(e.to_string()))?;
        Ok(Live { lm, decoder, codes: Vec::new() })
    }

    /// Makes a loaded state live (validated); an error leaves it as it was.
    fn live<'s>(&self, state: &'s mut Mrt2State) -> Result<&'s mut Live, Mrt2Error> {
        if state.live.is_none() {
            self.validate(state)?;
            let saved = state.saved.as_ref().expect("not live, so saved");
            state.live = Some(Box::new(self.build(saved)?));
            state.saved = None;
        } else if state.dims != self.dims() {
            return Err(Mrt2Error::State(format!("made for sizes {:?}, this model has {:?}", state.dims, self.dims())));
        }
        Ok(state.live.as_mut().expect("made live above"))
    }

    /// The model input of one frame's conditioning (raw values + the shift).
    pub fn condition_tokens(&self, frame: &ConditionFrame, out: &mut Vec<i32>) {
        frame.to_tokens(self.model.cfg.token_shift, out);
    }

    /// Generates one frame from shifted conditioning `cond_tokens` and returns channel-first
    /// audio `[channels][frame_samples]`: silence at frame 0, then the previous frame's audio.
    pub fn step<'s>(&self, state: &'s mut Mrt2State, cond_tokens: &[i32], params: &SamplingParams) -> Result<&'s [f32], Mrt2Error> {
        self.run_frame(state, cond_tokens, params, None)
    }

    /// [`Mrt2System::step`] from a [`ConditionFrame`].
    pub fn step_frame<'s>(&self, state: &'s mut Mrt2State, frame: &ConditionFrame, params: &SamplingParams) -> Result<&'s [f32], Mrt2Error> {
        let mut tokens = Vec::with_capacity(self.model.cfg.cond_channels());
        self.condition_tokens(frame, &mut tokens);
        self.run_frame(state, &tokens, params, None)
    }

    fn run_frame<'s>(
        &self,
        state: &'s mut Mrt2State,
        cond_tokens: &[i32],
        params: &SamplingParams,
        forced: Option<&[i32]>,
    ) -> Result<&'s [f32], Mrt2Error> {
        let cfg = &self.model.cfg;
        let live = self.live(state)?;
        // Checks conditioning and forced ids before anything moves.
        self.model.step(&mut live.lm, cond_tokens, params, forced)?;
        live.codes.clear();
        live.codes.extend(live.lm.tokens().iter().map(|&id| token_to_code(cfg, id)));
        // Cannot fail: the codes are reduced modulo the codebook and the codec was checked in `new`.
        let audio = live.decoder.step(&self.codec, &live.codes).map_err(Mrt2Error::Codec)?;
        Ok(audio)
    }

    /// Encodes `audio` (channel-first `[channels][samples]` at the codec's rate, at most
    /// [`MAX_PREFILL_SECONDS`]) with `encoder` (SpectroStream with an encoder: MRT2's checkpoint
    /// carries only the decoder, the released `resources/spectrostream/` has both) and
    /// teacher-forces the codes of its first `num_levels` levels ([`Mrt2System::prefill`]), as
    /// the official engine's prefill from audio. The last partial frame is zero-padded. Returns the
    /// frames prefilled; a clip that is too long, a codec of another geometry or codebook, or bad
    /// audio is an error before anything moves.
    pub fn prefill_audio(&self, state: &mut Mrt2State, cond_tokens: &[i32], encoder: &Codec, audio: &[f32]) -> Result<usize, Mrt2Error> {
        let cfg = &self.model.cfg;
        let (ch, rate) = (encoder.channels(), encoder.config.sample_rate_hz);
        if ch != self.codec.channels() || rate != self.codec.config.sample_rate_hz || encoder.samples_per_frame() != self.codec.samples_per_frame() {
            return Err(Mrt2Error::Prefill(format!(
                "the encoding codec makes {ch}-channel {rate} Hz frames of {} samples; this model's codec {}-channel {} Hz frames of {}",
                encoder.samples_per_frame(),
                self.codec.channels(),
                self.codec.config.sample_rate_hz,
                self.codec.samples_per_frame()
            )));
        }
        if encoder.rvq().codebook_size() != cfg.codebook_size || encoder.levels() < cfg.num_levels {
            return Err(Mrt2Error::Prefill(format!(
                "the encoding codec has {} levels of {} codes; this model takes {} levels of {}",
                encoder.levels(),
                encoder.rvq().codebook_size(),
                cfg.num_levels,
                cfg.codebook_size
            )));
        }
        let seconds = audio.len() as f64 / ch as f64 / f64::from(rate);
        if seconds > MAX_PREFILL_SECONDS {
            return Err(Mrt2Error::Prefill(format!("{seconds:.2} s of audio; a prefill takes at most {MAX_PREFILL_SECONDS} s")));
        }
        self.validate(state)?;
        let codes = encoder.encode_audio(audio, cfg.num_levels).map_err(Mrt2Error::Codec)?;
        self.prefill(state, cond_tokens, &codes.data)
    }

    /// Teacher-forces `codes` (`[frames][levels]`, raw codes 0..codebook) into the stream, one
    /// LM step and one decoder step per frame, with conditioning `cond_tokens` (one frame of
    /// shifted tokens for all, or `[frames][channels]`). Everything is checked before the first
    /// frame runs; the audio of these frames is dropped. Returns the frames prefilled.
    pub fn prefill(&self, state: &mut Mrt2State, cond_tokens: &[i32], codes: &[i32]) -> Result<usize, Mrt2Error> {
        let cfg = &self.model.cfg;
        let (levels, cb, cc) = (cfg.num_levels, cfg.codebook_size as i32, cfg.cond_channels());
        if !codes.len().is_multiple_of(levels) {
            return Err(Mrt2Error::Prefill(format!("{} codes are not whole frames of {levels}", codes.len())));
        }
        let frames = codes.len() / levels;
        if let Some((i, c)) = codes.iter().enumerate().find(|(_, &c)| c < 0 || c >= cb) {
            return Err(Mrt2Error::Prefill(format!("code {c} (frame {}, level {}) is outside 0..{cb}", i / levels, i % levels)));
        }
        let per_frame = match cond_tokens.len() {
            n if n == cc => false,
            n if n == cc * frames => true,
            n => return Err(Mrt2Error::Prefill(format!("{n} conditioning tokens: give {cc} (one frame) or {cc}·{frames}"))),
        };
        for t in 0..if per_frame { frames } else { 1 } {
            super::conditioning::check_tokens(cfg, &cond_tokens[t * cc..(t + 1) * cc]).map_err(StepError::from)?;
        }
        self.validate(state)?;
        let mut ids = vec![0i32; levels];
        for t in 0..frames {
            for (k, id) in ids.iter_mut().enumerate() {
                *id = (cfg.num_reserved + k * cfg.codebook_size) as i32 + codes[t * levels + k];
            }
            let cond = if per_frame { &cond_tokens[t * cc..(t + 1) * cc] } else { cond_tokens };
            self.run_frame(state, cond, &SamplingParams::greedy(), Some(&ids))?;
        }
        Ok(frames)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::npy;
    use std::path::PathBuf;
    use std::sync::OnceLock;

    fn m1_dir() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/mrt2/M1")
    }

    fn m1() -> &'static Mrt2System {
        static S: OnceLock<Mrt2System> = OnceLock::new();
        S.get_or_init(|| {
            let dir = m1_dir();
            assert!(dir.join("config.json").is_file(), "fixture set missing: {}", dir.display());
            let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
            let cfg = Mrt2Config::from_fixture_value(&json).expect("M1 config");
            let codec = CodecConfig::from_mrt2_value(&json["codec"]).expect("M1 codec config");
            Mrt2System::load(&dir.join("weights.safetensors"), cfg, codec).expect("M1 loads")
        })
    }

    fn cond() -> Vec<i32> {
        npy::read_i32(&m1_dir().join("cond_tokens.npy")).expect("cond_tokens.npy").data
    }

    fn run(sys: &Mrt2System, st: &mut Mrt2State, cond: &[i32], frames: std::ops::Range<usize>, p: &SamplingParams) -> (Vec<f32>, Vec<i32>) {
        let cc = sys.config().cond_channels();
        let (mut audio, mut codes) = (Vec::new(), Vec::new());
        for t in frames {
            audio.extend_from_slice(sys.step(st, &cond[t * cc..(t + 1) * cc], p).unwrap());
            codes.extend_from_slice(st.last_codes());
        }
        (audio, codes)
    }

    #[test]
    fn the_stream_reproduces_the_m1_greedy_codes_with_a_silent_first_frame() {
        let sys = m1();
        let mut st = sys.init_state(None);
        let (audio, codes) = run(sys, &mut st, &cond(), 0..32, &SamplingParams::greedy());
        let want = npy::read_i32(&m1_dir().join("greedy_codes.npy")).unwrap().data;
        assert_eq!(codes, want);
        assert_eq!(audio.len(), 32 * 2 * 1920);
        assert!(audio[..2 * 1920].iter().all(|&v| v == 0.0), "frame 0 is silent");
        assert!(audio[2 * 1920..].iter().any(|&v| v != 0.0));
    }

    #[test]
    fn no_seed_is_the_references_key_and_seeds_give_distinct_keys() {
        assert_eq!(key_for_seed(None), DEFAULT_INIT_RNG_KEY);
        assert_ne!(key_for_seed(Some(0)), key_for_seed(Some(1)));
        assert_ne!(key_for_seed(Some(1)), key_for_seed(Some(1 << 32)));
        assert_eq!(key_for_seed(Some(7)), key_for_seed(Some(7)));
    }

    #[test]
    fn the_m1_sampled_tokens_come_from_the_fixtures_key() {
        let sys = m1();
        let key = npy::read_u32(&m1_dir().join("init_rng_key.npy")).unwrap().data;
        let mut st = sys.init_state(None);
        st.live.as_mut().unwrap().lm = FrameState::new(&sys.model, [key[0], key[1]]);
        let (_, codes) = run(sys, &mut st, &cond(), 0..32, &SamplingParams { temperature: 1.3, top_k: 40 });
        let want: Vec<i32> =
            npy::read_i32(&m1_dir().join("sampled_tokens.npy")).unwrap().data.iter().map(|&id| token_to_code(sys.config(), id)).collect();
        assert_eq!(codes, want);
    }

    #[test]
    fn save_load_continue_is_bit_exact() {
        let sys = m1();
        let cond = cond();
        let p = SamplingParams::default();
        let mut whole = sys.init_state(Some(7));
        let (audio, codes) = run(sys, &mut whole, &cond, 0..20, &p);

        let mut first = sys.init_state(Some(7));
        let (a1, c1) = run(sys, &mut first, &cond, 0..9, &p);
        let text = serde_json::to_string(&first).unwrap();
        let mut loaded: Mrt2State = serde_json::from_str(&text).unwrap();
        assert_eq!(loaded, first);
        sys.validate(&loaded).unwrap();
        let (a2, c2) = run(sys, &mut loaded, &cond, 9..20, &p);
        assert_eq!([c1, c2].concat(), codes);
        let joined = [a1, a2].concat();
        assert!(joined.iter().zip(&audio).all(|(a, b)| a.to_bits() == b.to_bits()), "audio is bit-exact");
    }

    #[test]
    fn prefilling_the_first_greedy_frames_then_continuing_equals_the_whole_stream() {
        let sys = m1();
        let cond = cond();
        let g = SamplingParams::greedy();
        let mut whole = sys.init_state(None);
        let (audio, codes) = run(sys, &mut whole, &cond, 0..32, &g);
        let (k, levels, cc, spf) = (11, 12, sys.config().cond_channels(), 2 * 1920);
        let mut st = sys.init_state(None);
        assert_eq!(sys.prefill(&mut st, &cond[..k * cc], &codes[..k * levels]).unwrap(), k);
        assert_eq!(st.frame(), k as u32);
        let (rest_audio, rest_codes) = run(sys, &mut st, &cond, k..32, &g);
        assert_eq!(rest_codes, codes[k * levels..]);
        assert!(rest_audio.iter().zip(&audio[k * spf..]).all(|(a, b)| a.to_bits() == b.to_bits()));
    }

    #[test]
    fn bad_input_is_an_error_that_leaves_the_state_untouched() {
        let sys = m1();
        let cond = cond();
        let cc = sys.config().cond_channels();
        let mut st = sys.init_state(Some(3));
        run(sys, &mut st, &cond, 0..3, &SamplingParams::default());
        let before = st.to_saved();
        assert!(sys.step(&mut st, &cond[..cc - 1], &SamplingParams::default()).is_err());
        let mut bad = cond[..cc].to_vec();
        bad[0] = -5;
        assert!(sys.step(&mut st, &bad, &SamplingParams::default()).is_err());
        assert!(matches!(sys.prefill(&mut st, &cond[..cc], &[1; 12 * 2 - 1]), Err(Mrt2Error::Prefill(_))));
        assert!(matches!(sys.prefill(&mut st, &cond[..cc], &[1024; 12]), Err(Mrt2Error::Prefill(_))));
        assert!(matches!(sys.prefill(&mut st, &cond[..cc + 1], &[1; 12]), Err(Mrt2Error::Prefill(_))));
        assert_eq!(st.to_saved(), before);

        // A saved state for other sizes, or from a newer build, is refused before use.
        let mut saved = before.clone();
        saved.dims.levels = 11;
        let mut other = Mrt2State::from_saved(saved);
        assert!(matches!(sys.step(&mut other, &cond[..cc], &SamplingParams::default()), Err(Mrt2Error::State(_))));
        let mut saved = before.clone();
        saved.version = STATE_VERSION + 1;
        assert!(matches!(sys.validate(&Mrt2State::from_saved(saved)), Err(Mrt2Error::Version { .. })));
        let mut saved = before.clone();
        saved.lm.self_kv[0].keys.pop();
        let broken = Mrt2State::from_saved(saved.clone());
        assert!(matches!(sys.validate(&broken), Err(Mrt2Error::State(_))));
        let mut saved = before;
        saved.decoder.istft_tail.push(0);
        assert!(matches!(sys.validate(&Mrt2State::from_saved(saved)), Err(Mrt2Error::State(_))));
    }
}
