//! Host parameters (stable ids, never rename them: hosts store automation by id) and the
//! persisted non-parameter state (prompts, settings, generation context).

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use nice_plug::params::persist::PersistentField;
use nice_plug::prelude::*;
use serde::{Deserialize, Serialize};

use crate::shared::lock;

/// Lowest value of the output gain parameter, in decibels.
pub const GAIN_MIN_DB: f32 = -60.0;
/// Highest value of the output gain parameter, in decibels.
pub const GAIN_MAX_DB: f32 = 12.0;
/// Time the output gain smoother takes to reach a new value, in milliseconds.
pub const GAIN_SMOOTHING_MS: f32 = 50.0;
/// Number of text-prompt style slots.
pub const SLOTS: usize = 8;
/// MRT2's buffer setting, in 40 ms frames: the range and the default (200 ms, the control
/// latency the official engine aims at).
pub const FRAMES_AHEAD_MIN: i32 = 3;
pub const FRAMES_AHEAD_MAX: i32 = 24;
pub const FRAMES_AHEAD_DEFAULT: i32 = 5;
/// One MRT2 frame, in seconds.
pub const MRT2_FRAME_SECONDS: f64 = 0.04;

/// The latency MRT Live reports to the host at `rate`: MRT2's buffer (frames generated ahead,
/// the time from a note or a control change to the frame it steers); v1 reports none (its
/// controls land at 2 s chunk boundaries, which no delay compensation can align).
pub fn latency_samples(family: mrt::stream::Family, frames_ahead: i32, rate: f32) -> u32 {
    match family {
        mrt::stream::Family::V1 => 0,
        mrt::stream::Family::Mrt2 => {
            let frames = frames_ahead.clamp(FRAMES_AHEAD_MIN, FRAMES_AHEAD_MAX);
            (f64::from(frames) * MRT2_FRAME_SECONDS * f64::from(rate)).round() as u32
        }
    }
}

/// Highest seed value (kept below 2^24 so every seed survives the host's normalised f32).
pub const SEED_MAX: i32 = 1_000_000;

/// Every parameter id, in declaration order. A test pins this list: changing it breaks saved
/// projects and automation.
pub const PARAM_IDS: [&str; 26] = [
    "slot1_weight",
    "slot2_weight",
    "slot3_weight",
    "slot4_weight",
    "slot5_weight",
    "slot6_weight",
    "slot7_weight",
    "slot8_weight",
    "sidechain_weight",
    "temperature",
    "top_k",
    "guidance",
    "seed",
    "gain",
    "free_run",
    "chunks_ahead",
    "prompt_adherence",
    "note_adherence",
    "drum_adherence",
    "drum_mode",
    "onset_mode",
    "unmask_width",
    "midi_gate",
    "frames_ahead",
    "render_mode",
    "style_levels",
];

/// Version of [`SavedState`]'s layout. 1: prompts, settings, context. 2: + prompt embeddings.
/// 3: the context is tagged with its model family (`{"family": "v1", …}`); a version 1–2 context
/// is a bare v1 state and loads as v1. 4: the settings name the model family (`"family"`);
/// projects of versions 1–3 open as v1 whatever `$MRT_MODEL` says.
pub const SAVED_STATE_VERSION: u32 = 4;

/// Drum conditioning of MRT2 (`mrt2::conditioning::DrumFlag`); the ids are stable.
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum DrumMode {
    /// The model decides.
    #[id = "auto"]
    Auto,
    #[id = "off"]
    #[name = "No Drums"]
    Off,
    #[id = "on"]
    #[name = "Drums"]
    On,
}

impl DrumMode {
    pub fn flag(self) -> mrt::mrt2::conditioning::DrumFlag {
        use mrt::mrt2::conditioning::DrumFlag;
        match self {
            DrumMode::Auto => DrumFlag::Auto,
            DrumMode::Off => DrumFlag::Off,
            DrumMode::On => DrumFlag::On,
        }
    }
}

/// When `process()` waits for generated audio instead of playing silence (ids stable).
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum RenderMode {
    /// Wait when the host says it renders offline, or when it is seen running ahead of the wall
    /// clock (a bounce in a host that does not say so: DawDreamer, pedalboard, Ardour's export).
    #[id = "auto"]
    Auto,
    /// Never wait unless the host says it renders offline: silence (and an underrun) rather than
    /// a stalled audio thread.
    #[id = "live"]
    Live,
    /// Always wait for the audio: complete, deterministic renders in any host (never for live
    /// playing: a slow model stalls the host's audio).
    #[id = "bounce"]
    Bounce,
}

/// Model and worker settings, persisted with the project.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// Model family: v1 (2 s chunks) or MRT2 (40 ms frames steered by MIDI notes).
    pub family: mrt::stream::Family,
    /// Model directory; `None` = `$MRT_MODEL_DIR`, then the Hugging Face cache.
    pub model_dir: Option<PathBuf>,
    /// Model size of the family (v1: `base`, `large`; MRT2: `small`, `base`; or a name from the
    /// directory's `mrt-live.json`).
    pub size: String,
    /// Backend (`flex`, `wgpu`, `cuda`); `None` = the best one compiled in.
    pub device: Option<String>,
    /// LM decoder weights: f32 (exact), bf16 (half the bytes per decode step) or int8, on the
    /// host and the GPU kernels; burn's ops (`--kernels burn`) run f32 whatever this says.
    pub lm_weights: mrt::v1::lm::WeightPrecision,
    /// Depth-step logits over the whole vocabulary (exact) or the current level's ids (faster).
    pub depth_logits: mrt::v1::lm::DepthLogits,
}

impl Settings {
    /// The LM options these settings ask for.
    pub fn lm_options(&self) -> mrt::v1::lm::LmOptions {
        mrt::v1::lm::LmOptions { precision: self.lm_weights, depth_logits: self.depth_logits }
    }
}

impl Default for Settings {
    /// v1 (or `$MRT_MODEL`), `base` for v1 and `small` for MRT2 (or `$MRT_MODEL_SIZE`), the
    /// default model places, the best backend (or `$MRT_DEVICE`), the exact LM path (or
    /// `$MRT_LM_WEIGHTS` / `$MRT_DEPTH_LOGITS`; a value those do not name leaves the exact path,
    /// and a `$MRT_MODEL` that names no family leaves v1: the worker reports both).
    fn default() -> Self {
        let env = |name: &str| std::env::var(name).ok().map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        let lm = lm_options_from_env().unwrap_or_default();
        let family = family_from_env().unwrap_or(mrt::stream::Family::V1);
        Self {
            family,
            model_dir: None,
            size: env("MRT_MODEL_SIZE").unwrap_or_else(|| default_size(family).into()),
            device: env("MRT_DEVICE"),
            lm_weights: lm.precision,
            depth_logits: lm.depth_logits,
        }
    }
}

/// The size a family plays when none is asked for: v1 `base`, MRT2 `small` (the one made for a
/// machine without a big GPU).
pub fn default_size(family: mrt::stream::Family) -> &'static str {
    match family {
        mrt::stream::Family::V1 => "base",
        mrt::stream::Family::Mrt2 => "small",
    }
}

/// The model family `$MRT_MODEL` (`v1` or `mrt2`) names for new instances (v1 when unset). A
/// value that is neither is an error naming the variable and the value.
pub fn family_from_env() -> Result<mrt::stream::Family, String> {
    parse_family(std::env::var("MRT_MODEL").ok().as_deref())
}

/// [`family_from_env`] on a given value.
pub fn parse_family(value: Option<&str>) -> Result<mrt::stream::Family, String> {
    match value.map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(mrt::stream::Family::V1),
        Some(v) if v.eq_ignore_ascii_case("v1") => Ok(mrt::stream::Family::V1),
        Some(v) if v.eq_ignore_ascii_case("mrt2") => Ok(mrt::stream::Family::Mrt2),
        Some(v) => Err(format!("MRT_MODEL={v:?}: expected v1 or mrt2")),
    }
}

/// The engine's asset settings from this process's environment (`MRT_MODEL_DIR`, `MRT_CACHE_DIR`,
/// `HF_*`): the plugin, like the `mrt` binary, is where environment variables are read.
pub fn asset_settings() -> mrt::assets::Settings {
    mrt::assets::Settings::from_vars(|k| std::env::var_os(k))
}

/// The LM speed options of `MRT_LM_WEIGHTS` (f32|bf16) and `MRT_DEPTH_LOGITS` (all|level), the
/// defaults of new instances. A value that is not one of those is an error naming the variable.
pub fn lm_options_from_env() -> Result<mrt::v1::lm::LmOptions, String> {
    let mut o = mrt::v1::lm::LmOptions::default();
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    if let Some(v) = var("MRT_LM_WEIGHTS") {
        o.precision = v.trim().parse().map_err(|e| format!("MRT_LM_WEIGHTS: {e}"))?;
    }
    if let Some(v) = var("MRT_DEPTH_LOGITS") {
        o.depth_logits = v.trim().parse().map_err(|e| format!("MRT_DEPTH_LOGITS: {e}"))?;
    }
    Ok(o)
}

/// Everything besides parameters that a project stores.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SavedState {
    pub version: u32,
    /// Prompts of the style slots (empty = unused): text, or the path of an audio file (an
    /// existing file, or a name with an audio extension; `mrt::style::Prompt::parse`).
    pub prompts: Vec<String>,
    pub settings: Settings,
    /// The generation context, so a reopened project continues where it stopped.
    pub context: Option<mrt::stream::StreamState>,
    /// Style embeddings of the slots' prompts, so a reopened project needs no re-embedding (and
    /// keeps an audio prompt whose file has moved). Keyed by [`embedding_key`].
    pub embeddings: std::collections::BTreeMap<String, Vec<f32>>,
}

impl Default for SavedState {
    fn default() -> Self {
        Self {
            version: SAVED_STATE_VERSION,
            prompts: vec![String::new(); SLOTS],
            settings: Settings::default(),
            context: None,
            embeddings: Default::default(),
        }
    }
}

/// The cache key of a prompt's embedding under a style model: the model's identity, then the
/// text, or the audio file's path, size and modification time (an edited file is embedded again).
pub fn embedding_key(style_model: &str, prompt: &mrt::style::Prompt) -> String {
    use mrt::style::Prompt;
    match prompt {
        Prompt::Text(t) => format!("{style_model}\ntext\n{t}"),
        Prompt::AudioFile(path) => {
            let stamp = std::fs::metadata(path)
                .ok()
                .map(|m| {
                    let mtime = m.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
                    format!("{}:{}", m.len(), mtime.map(|d| d.as_nanos()).unwrap_or(0))
                })
                .unwrap_or_else(|| "missing".into());
            format!("{style_model}\naudio\n{}\n{stamp}", path.display())
        }
        Prompt::Audio16k(s) => format!("{style_model}\nsamples\n{}", s.len()),
    }
}

impl SavedState {
    /// Brings a deserialised state to the current layout; a state from a newer build keeps
    /// nothing but is reported.
    pub fn normalized(mut self) -> Result<Self, String> {
        if self.version > SAVED_STATE_VERSION {
            return Err(format!(
                "the project was saved by a newer MRT Live (state version {}, this build reads up to {SAVED_STATE_VERSION}); prompts and settings were not restored",
                self.version
            ));
        }
        // Version 1 had no embeddings: serde's default (none) is the migration. Versions 1–2 held
        // the context as a bare v1 state: `mrt::stream::StreamState` reads it as v1. Versions
        // 1–3 knew only v1: serde's default family follows `$MRT_MODEL`, which must not turn an
        // old project into MRT2.
        if self.version < 4 {
            self.settings.family = mrt::stream::Family::V1;
        }
        self.version = SAVED_STATE_VERSION;
        self.prompts.resize(SLOTS, String::new());
        self.embeddings.retain(|_, e| e.iter().all(|v| v.is_finite()));
        Ok(self)
    }
}

/// A persisted value behind a mutex that counts host restores, so the worker can notice a
/// restored project (nice-plug does not re-activate the plugin after loading state).
///
/// A save (the host serialising the field) first runs the refresh hook, if one is set: the
/// worker copies its live generation context into the value only when asked, not after every
/// 40 ms frame (an MRT2 base context is ~25 MB).
#[derive(Default)]
pub struct Persisted<T> {
    value: Mutex<T>,
    restores: AtomicU64,
    refresh: Mutex<Option<RefreshHook>>,
}

/// Runs before the persisted value is serialised (main thread).
pub type RefreshHook = Box<dyn Fn() + Send + Sync>;

impl<T: std::fmt::Debug> std::fmt::Debug for Persisted<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Persisted").field("value", &self.value).field("restores", &self.restores).finish_non_exhaustive()
    }
}

impl<T: Clone> Persisted<T> {
    pub fn new(value: T) -> Self {
        Self { value: Mutex::new(value), restores: AtomicU64::new(0), refresh: Mutex::new(None) }
    }

    /// Sets the hook run before every save (the plugin's: ask the worker for its context).
    pub fn set_refresh(&self, hook: RefreshHook) {
        *lock(&self.refresh) = Some(hook);
    }

    pub fn get(&self) -> T {
        lock(&self.value).clone()
    }

    /// Changes the value without counting as a restore (editor and worker).
    pub fn update<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        f(&mut lock(&self.value))
    }

    /// How many times the host restored this value.
    pub fn restores(&self) -> u64 {
        self.restores.load(Ordering::Acquire)
    }
}

impl<'a, T> PersistentField<'a, T> for Persisted<T>
where
    T: Serialize + Deserialize<'a> + Send + Sync + Clone,
{
    fn set(&self, new_value: T) {
        *lock(&self.value) = new_value;
        self.restores.fetch_add(1, Ordering::AcqRel);
    }

    fn map<F, R>(&self, f: F) -> R
    where
        F: Fn(&T) -> R,
    {
        // nice-plug maps only to serialise: bring the context up to date first.
        if let Some(hook) = lock(&self.refresh).as_ref() {
            hook();
        }
        f(&lock(&self.value))
    }
}

/// Parameters exposed to the host, plus the persisted state.
#[derive(Params)]
pub struct MrtLiveParams {
    #[id = "slot1_weight"]
    pub slot1: FloatParam,
    #[id = "slot2_weight"]
    pub slot2: FloatParam,
    #[id = "slot3_weight"]
    pub slot3: FloatParam,
    #[id = "slot4_weight"]
    pub slot4: FloatParam,
    #[id = "slot5_weight"]
    pub slot5: FloatParam,
    #[id = "slot6_weight"]
    pub slot6: FloatParam,
    #[id = "slot7_weight"]
    pub slot7: FloatParam,
    #[id = "slot8_weight"]
    pub slot8: FloatParam,
    /// Weight of the sidechain audio in the style blend.
    #[id = "sidechain_weight"]
    pub sidechain_weight: FloatParam,
    #[id = "temperature"]
    pub temperature: FloatParam,
    /// 0 disables the top-k filter.
    #[id = "top_k"]
    pub top_k: IntParam,
    #[id = "guidance"]
    pub guidance: FloatParam,
    #[id = "seed"]
    pub seed: IntParam,
    /// Output gain, stored as a linear voltage gain and displayed in decibels.
    #[id = "gain"]
    pub gain: FloatParam,
    /// Generate and play regardless of the host transport.
    #[id = "free_run"]
    pub free_run: BoolParam,
    /// v1: 2 s chunks generated ahead of the one playing (MRT2 has [`Self::frames_ahead`]).
    #[id = "chunks_ahead"]
    pub chunks_ahead: IntParam,
    /// MRT2: how strongly the style prompt steers (guidance scale −1..7, binned by the model).
    #[id = "prompt_adherence"]
    pub prompt_adherence: FloatParam,
    /// MRT2: how strongly the MIDI notes steer.
    #[id = "note_adherence"]
    pub note_adherence: FloatParam,
    /// MRT2: how strongly the drum mode steers.
    #[id = "drum_adherence"]
    pub drum_adherence: FloatParam,
    /// MRT2: drums left to the model, asked off, or asked on.
    #[id = "drum_mode"]
    pub drum_mode: EnumParam<DrumMode>,
    /// MRT2: 1 = a note's first frame is an onset, later frames sustain; 0 = every held frame
    /// is "on".
    #[id = "onset_mode"]
    pub onset_mode: IntParam,
    /// MRT2: pitches within this many semitones of a held note are sent as explicitly off (the
    /// rest are left to the model); 127 = every pitch explicit.
    #[id = "unmask_width"]
    pub unmask_width: IntParam,
    /// Sound only while notes are held (both families; generation goes on underneath).
    #[id = "midi_gate"]
    pub midi_gate: BoolParam,
    /// MRT2: 40 ms frames generated ahead of the one playing (3–24). The buffer trades control
    /// latency for safety against slow frames; it is the latency reported to the host.
    #[id = "frames_ahead"]
    pub frames_ahead: IntParam,
    /// When `process()` waits for generated audio ([`RenderMode`]).
    #[id = "render_mode"]
    pub render_mode: EnumParam<RenderMode>,
    /// MRT2: style levels sent, the coarsest first (6 as the official engine; 12 = all).
    #[id = "style_levels"]
    pub style_levels: IntParam,

    /// Prompts, model settings and the generation context.
    #[persist = "mrt-live-state"]
    pub saved: Persisted<SavedState>,
}

fn weight(name: &str, default: f32) -> FloatParam {
    FloatParam::new(name, default, FloatRange::Linear { min: 0.0, max: 1.0 })
        .with_value_to_string(formatters::v2s_f32_rounded(2))
}

/// An MRT2 guidance scale (the AUv3's range, −1..7; the model bins it).
fn adherence(name: &str, default: f32) -> FloatParam {
    FloatParam::new(name, default, FloatRange::Linear { min: -1.0, max: 7.0 }).with_value_to_string(formatters::v2s_f32_rounded(2))
}

impl Default for MrtLiveParams {
    fn default() -> Self {
        Self {
            slot1: weight("Slot 1 Weight", 1.0),
            slot2: weight("Slot 2 Weight", 0.0),
            slot3: weight("Slot 3 Weight", 0.0),
            slot4: weight("Slot 4 Weight", 0.0),
            slot5: weight("Slot 5 Weight", 0.0),
            slot6: weight("Slot 6 Weight", 0.0),
            slot7: weight("Slot 7 Weight", 0.0),
            slot8: weight("Slot 8 Weight", 0.0),
            sidechain_weight: weight("Sidechain Weight", 0.0),
            temperature: FloatParam::new("Temperature", 1.1, FloatRange::Linear { min: 0.0, max: 4.0 })
                .with_value_to_string(formatters::v2s_f32_rounded(2)),
            top_k: IntParam::new("Top-k", 40, IntRange::Linear { min: 0, max: 1024 }),
            guidance: FloatParam::new("Guidance", 5.0, FloatRange::Linear { min: 0.0, max: 10.0 })
                .with_value_to_string(formatters::v2s_f32_rounded(2)),
            seed: IntParam::new("Seed", 0, IntRange::Linear { min: 0, max: SEED_MAX }),
            gain: FloatParam::new("Output Gain", util::db_to_gain(0.0), FloatRange::gain_range(GAIN_MIN_DB, GAIN_MAX_DB))
                // The range never reaches zero, so logarithmic smoothing is safe.
                .with_smoother(SmoothingStyle::Logarithmic(GAIN_SMOOTHING_MS))
                .with_unit(" dB")
                .with_value_to_string(formatters::v2s_f32_gain_to_db(2))
                .with_string_to_value(formatters::s2v_f32_gain_to_db()),
            free_run: BoolParam::new("Free Run", false),
            chunks_ahead: IntParam::new("Chunks Ahead", 1, IntRange::Linear { min: 1, max: 4 }).non_automatable(),
            prompt_adherence: adherence("Prompt Adherence", 3.0),
            note_adherence: adherence("Note Adherence", 1.0),
            drum_adherence: adherence("Drum Adherence", 1.0),
            drum_mode: EnumParam::new("Drum Mode", DrumMode::Auto),
            onset_mode: IntParam::new("Onset Mode", 1, IntRange::Linear { min: 0, max: 1 }),
            unmask_width: IntParam::new("Unmask Width", 0, IntRange::Linear { min: 0, max: 127 }),
            midi_gate: BoolParam::new("MIDI Gate", false),
            frames_ahead: IntParam::new("MRT2 Buffer", FRAMES_AHEAD_DEFAULT, IntRange::Linear { min: FRAMES_AHEAD_MIN, max: FRAMES_AHEAD_MAX })
                .with_value_to_string(Arc::new(|v| format!("{v} frames ({} ms)", v * 40)))
                .non_automatable(),
            render_mode: EnumParam::new("Render Mode", RenderMode::Auto).non_automatable(),
            style_levels: IntParam::new(
                "Style Levels",
                mrt::mrt2::system::MUSICCOCA_KEPT_LEVELS as i32,
                IntRange::Linear { min: 1, max: 12 },
            ),
            saved: Persisted::new(SavedState::default()),
        }
    }
}

impl MrtLiveParams {
    /// The weight parameter of slot `i` (0-based).
    pub fn slot(&self, i: usize) -> &FloatParam {
        [&self.slot1, &self.slot2, &self.slot3, &self.slot4, &self.slot5, &self.slot6, &self.slot7, &self.slot8][i]
    }

    /// The sampling settings the next chunk will use.
    pub fn sampling(&self) -> mrt::v1::lm::SamplingParams {
        mrt::v1::lm::SamplingParams {
            temperature: self.temperature.value(),
            top_k: self.top_k.value().max(0) as usize,
            guidance_weight: self.guidance.value(),
            seed: self.seed.value().max(0) as u64,
        }
    }

    /// MRT2's conditioning for the next frame besides the style, around `pianoroll`.
    pub fn mrt2_controls<'a>(&self, pianoroll: Option<&'a [i32; mrt::mrt2::notes::NUM_PITCHES]>) -> mrt::stream::Mrt2Controls<'a> {
        mrt::stream::Mrt2Controls {
            pianoroll,
            drums: self.drum_mode.value().flag(),
            prompt_adherence: f64::from(self.prompt_adherence.value()),
            note_adherence: f64::from(self.note_adherence.value()),
            drum_adherence: f64::from(self.drum_adherence.value()),
            style_levels: self.style_levels.value().clamp(1, 12) as usize,
        }
    }

    /// MRT2's onset mode and unmask width for the note tracker.
    pub fn note_options(&self) -> (u8, usize) {
        (self.onset_mode.value().clamp(0, 1) as u8, self.unmask_width.value().clamp(0, 127) as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_1_state_migrates_to_the_current_layout() {
        let v1 = r#"{"version":1,"prompts":["funk","",""],"settings":{"model_dir":null,"size":"large","device":"flex"},"context":null}"#;
        let s: SavedState = serde_json::from_str(v1).unwrap();
        let s = s.normalized().unwrap();
        assert_eq!(s.version, SAVED_STATE_VERSION);
        assert_eq!(s.prompts.len(), SLOTS);
        assert_eq!(s.prompts[0], "funk");
        assert_eq!(s.settings.size, "large");
        // Speed options absent from older projects take the defaults (exact unless the
        // environment asks otherwise).
        assert_eq!(s.settings.lm_options(), Settings::default().lm_options());
        assert!(s.embeddings.is_empty());
    }

    #[test]
    fn version_2_context_opens_as_a_v1_stream_and_saves_tagged() {
        let mut v1 = mrt::v1::system::StreamState::new(4, 2, 2, 3);
        v1.push_frames(&[5, 6, 7, 8]);
        v1.chunk_index = 2;
        let context = serde_json::to_string(&v1).unwrap();
        let v2 = format!(r#"{{"version":2,"prompts":["funk"],"settings":{{"size":"base"}},"context":{context},"embeddings":{{}}}}"#);
        let s: SavedState = serde_json::from_str(&v2).unwrap();
        let s = s.normalized().unwrap();
        assert_eq!((s.version, s.context.clone()), (SAVED_STATE_VERSION, Some(mrt::stream::StreamState::V1(v1))));
        let saved = serde_json::to_string(&s).unwrap();
        assert!(saved.contains(r#""context":{"family":"v1","#), "{saved}");
        assert_eq!(serde_json::from_str::<SavedState>(&saved).unwrap(), s);
    }

    #[test]
    fn version_3_state_opens_as_v1_and_the_family_round_trips() {
        let v3 = r#"{"version":3,"prompts":["funk"],"settings":{"size":"large","device":"flex"},"context":null,"embeddings":{}}"#;
        let mut s: SavedState = serde_json::from_str(v3).unwrap();
        // Whatever default a new instance would take (`$MRT_MODEL`), an old project is v1.
        s.settings.family = mrt::stream::Family::Mrt2;
        let s = s.normalized().unwrap();
        assert_eq!((s.version, s.settings.family, s.settings.size.as_str()), (4, mrt::stream::Family::V1, "large"));
        let mut m = s.clone();
        m.settings.family = mrt::stream::Family::Mrt2;
        let json = serde_json::to_string(&m).unwrap();
        assert!(json.contains(r#""family":"mrt2""#), "{json}");
        let back = serde_json::from_str::<SavedState>(&json).unwrap().normalized().unwrap();
        assert_eq!(back.settings.family, mrt::stream::Family::Mrt2, "a version 4 state keeps its family");
        let bad = json.replace(r#""family":"mrt2""#, r#""family":"mrt3""#);
        assert!(serde_json::from_str::<SavedState>(&bad).is_err(), "an unknown family is an error");
    }

    #[test]
    fn model_family_env_values_parse_and_a_bad_one_is_named() {
        use mrt::stream::Family;
        assert_eq!(parse_family(None), Ok(Family::V1));
        assert_eq!(parse_family(Some(" ")), Ok(Family::V1));
        assert_eq!(parse_family(Some("v1")), Ok(Family::V1));
        assert_eq!(parse_family(Some("MRT2")), Ok(Family::Mrt2));
        let e = parse_family(Some("mrt3")).unwrap_err();
        assert!(e.contains("MRT_MODEL") && e.contains("mrt3"), "{e}");
        assert_eq!((default_size(Family::V1), default_size(Family::Mrt2)), ("base", "small"));
    }

    #[test]
    fn mrt2_parameters_map_into_the_controls() {
        let p = MrtLiveParams::default();
        let roll = [-1; mrt::mrt2::notes::NUM_PITCHES];
        let c = p.mrt2_controls(Some(&roll));
        assert_eq!((c.prompt_adherence, c.note_adherence, c.drum_adherence), (3.0, 1.0, 1.0), "the AUv3's defaults");
        assert_eq!(c.drums, mrt::mrt2::conditioning::DrumFlag::Auto);
        assert!(c.pianoroll.is_some());
        assert_eq!(p.note_options(), (1, 0));
        assert_eq!([DrumMode::Auto, DrumMode::Off, DrumMode::On].map(DrumMode::flag), [
            mrt::mrt2::conditioning::DrumFlag::Auto,
            mrt::mrt2::conditioning::DrumFlag::Off,
            mrt::mrt2::conditioning::DrumFlag::On
        ]);
    }

    #[test]
    fn speed_settings_persist_by_name() {
        let mut s = SavedState::default();
        s.settings.lm_weights = mrt::v1::lm::WeightPrecision::Bf16;
        s.settings.depth_logits = mrt::v1::lm::DepthLogits::Level;
        let json = serde_json::to_string(&s).unwrap();
        assert!(json.contains(r#""lm_weights":"bf16""#) && json.contains(r#""depth_logits":"level""#), "{json}");
        let back: SavedState = serde_json::from_str(&json).unwrap();
        assert_eq!(back.settings, s.settings);
        let o = back.settings.lm_options();
        assert_eq!((o.precision, o.depth_logits), (mrt::v1::lm::WeightPrecision::Bf16, mrt::v1::lm::DepthLogits::Level));
        let bad = json.replace(r#""lm_weights":"bf16""#, r#""lm_weights":"int3""#);
        assert!(serde_json::from_str::<SavedState>(&bad).is_err(), "an unknown precision is an error, not a silent default");
    }

    #[test]
    fn newer_state_is_refused_with_its_version() {
        let s = SavedState { version: SAVED_STATE_VERSION + 1, ..Default::default() };
        let err = s.normalized().unwrap_err();
        assert!(err.contains(&format!("state version {}", SAVED_STATE_VERSION + 1)), "{err}");
    }

    #[test]
    fn non_finite_saved_embeddings_are_dropped() {
        let mut s = SavedState::default();
        s.embeddings.insert("a".into(), vec![0.5, 1.0]);
        s.embeddings.insert("b".into(), vec![f32::NAN, 1.0]);
        let s = s.normalized().unwrap();
        assert_eq!(s.embeddings.keys().collect::<Vec<_>>(), ["a"]);
    }

    #[test]
    fn embedding_keys_separate_models_kinds_and_file_versions() {
        use mrt::style::Prompt;
        let text = Prompt::Text("funk".into());
        assert_ne!(embedding_key("m1", &text), embedding_key("m2", &text));
        let dir = std::env::temp_dir().join(format!("mrt-live-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let wav = dir.join("funk.wav");
        std::fs::write(&wav, b"1234").unwrap();
        let audio = Prompt::AudioFile(wav.clone());
        let before = embedding_key("m1", &audio);
        assert_ne!(before, embedding_key("m1", &text));
        std::fs::write(&wav, b"123456").unwrap();
        assert_ne!(before, embedding_key("m1", &audio), "an edited file gets a new key");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
