//! The official weights: where they are, how to download them, and the one-time conversion of the
//! LM checkpoint into a memory-mappable file.
//!
//! ```text
//!                      size ("base" | "large" | a name from mrt-live.json)
//!                                   │
//!   ┌───────────────────────────────▼────────────────────────────────┐
//!   │ locate        (offline, never touches the network)             │
//!   │  for every needed item, the first place that holds it whole:   │
//!   │   1. --model-dir <dir>        <dir>/magenta-realtime/<path>     │
//!   │      (else $MRT_MODEL_DIR)    <dir>/magenta-realtime-2/<path>   │
//!   │                               <dir>/mrt-live.json (overrides)   │
//!   │   2. Hugging Face cache       $HF_HUB_CACHE | $HF_HOME/hub |    │
//!   │                               ~/.cache/huggingface/hub          │
//!   │        models--google--magenta-realtime/refs/main → <commit>    │
//!   │        models--google--magenta-realtime/snapshots/<commit>/…    │
//!   └───────┬──────────────────────────────────────────┬─────────────┘
//!      found│                                   missing│ AssetError::Missing
//!           │                                          │ (repo + path of every file,
//!           │                                          │  where it looked, `mrt fetch`)
//!           │                  ┌───────────────────────▼────────────────────────────┐
//!           │                  │ fetch   $HF_ENDPOINT (https://huggingface.co)       │
//!           │                  │  GET /api/models/<repo>/revision/main?blobs=true    │
//!           │                  │  (HEAD /<repo>/resolve/<commit>/<path> if needed)   │
//!           │                  │  GET  …/resolve/<commit>/<path>  Range: bytes=N-    │
//!           │                  │   → blobs/<etag>.incomplete → size + sha256/sha1    │
//!           │                  │   → blobs/<etag> ← snapshots/<commit>/<path>        │
//!           │                  │   → refs/main (written once the repo is complete)   │
//!           │                  └───────────────────────┬────────────────────────────┘
//!           ▼                                          ▼
//!        ModelPaths ◄──────────────────────────── locate again
//!           │
//!   ┌───────▼────────────────────────────────────────────────────────┐
//!   │ convert   t5x zarr checkpoint (gzip chunks, ~210 MB/s to read)  │
//!   │   → $MRT_CACHE_DIR | ~/.cache/mrt-live                          │
//!   │      /converted/<repo>@<commit | fingerprint>/<ckpt>.v1.safetensors│
//!   │   (f32, t5x names, temp file + rename; reused while valid)      │
//!   └───────┬────────────────────────────────────────────────────────┘
//!           ▼
//!   HostWeights::from_safetensors (mmap)      Codec::load(codec_dir)
//! ```
//!
//! Environment variables reach this module only through [`Settings::from_vars`]; everything else takes a
//! [`Settings`] value, so tests (and the plugin) can point at their own caches and endpoints.
//!
//! - [`locate`]: [`ModelPaths`] and the `mrt-live.json` manifest.
//! - [`hub`]: the few Hugging Face Hub requests, the standard cache layout, [`fetch`].
//! - [`convert`](mod@convert): t5x → safetensors, [`convert()`](fn@convert).

pub mod convert;
pub mod hub;
pub mod locate;
pub mod mrt2;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::v1::lm::{LmConfig, LmError};

pub use convert::{convert_with, with_converted_lm, ConvertedPaths};
pub use hub::{fetch_mrt2, fetch_with, FetchOptions, FetchTarget};
pub use locate::{locate_codec, locate_mrt2_style, locate_style, manifest_sizes, ManifestSizes, LmFormat, Located, ModelPaths, Source};
pub use mrt2::Mrt2Paths;

/// Magenta RT v1 on the Hub: LM checkpoints, MusicCoCa SavedModels, vocabulary, test data.
pub const V1_REPO: &str = "google/magenta-realtime";
/// Magenta RT 2 on the Hub: SpectroStream safetensors and the MusicCoCa audio front end.
pub const V2_REPO: &str = "google/magenta-realtime-2";
/// File name of our own manifest inside a model directory.
pub const MANIFEST_FILE: &str = "mrt-live.json";

/// The two Hub repositories the engine reads from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Repo {
    V1,
    V2,
}

impl Repo {
    pub const ALL: [Repo; 2] = [Repo::V1, Repo::V2];

    /// `owner/name` on the Hub.
    pub fn id(self) -> &'static str {
        match self {
            Repo::V1 => V1_REPO,
            Repo::V2 => V2_REPO,
        }
    }

    /// Sub-directory of a model directory holding this repository's files.
    pub fn dir_name(self) -> &'static str {
        match self {
            Repo::V1 => "magenta-realtime",
            Repo::V2 => "magenta-realtime-2",
        }
    }

    /// Folder of this repository in the Hugging Face cache (`models--google--magenta-realtime`).
    pub fn cache_folder(self) -> String {
        format!("models--{}", self.id().replace('/', "--"))
    }
}

impl fmt::Display for Repo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

/// An LM size the Hub publishes: its name, checkpoint directory in the v1 repo and config.
#[derive(Clone, Debug, PartialEq)]
pub struct LmSize {
    pub name: String,
    /// Repo-relative directory of the t5x checkpoint, without a trailing slash.
    pub checkpoint: String,
    pub config: LmConfig,
}

/// The released sizes: base (`llm_base_x4286_c1860k`) and large (`llm_large_x3047_c1860k`).
pub fn released_sizes() -> Vec<LmSize> {
    vec![
        LmSize { name: "base".into(), checkpoint: "checkpoints/llm_base_x4286_c1860k".into(), config: LmConfig::base() },
        LmSize { name: "large".into(), checkpoint: "checkpoints/llm_large_x3047_c1860k".into(), config: LmConfig::large() },
    ]
}

/// MusicCoCa SavedModel (float, no vocabulary op) in the v1 repo.
pub const MUSICCOCA_DIR: &str = "savedmodels/musiccoca_mv212f_cpu_novocab";
/// Quantised MusicCoCa SavedModel in the v1 repo.
pub const MUSICCOCA_QUANT_DIR: &str = "savedmodels/musiccoca_mv212_quant";
/// MusicCoCa's SentencePiece vocabulary in the v1 repo.
pub const VOCAB_FILE: &str = "vocabularies/musiccoca_mv212f_vocab.model";
/// The v1 reference outputs used by `mrt verify`.
pub const TESTDATA_DIR: &str = "testdata";
/// SpectroStream weights in the v2 repo.
pub const CODEC_DIR: &str = "resources/spectrostream";
pub const CODEC_FILES: [&str; 3] = ["encoder.safetensors", "decoder.safetensors", "quantizer.safetensors"];
/// MusicCoCa's audio front end (mel matrix, Hann window) in the v2 repo.
pub const AUDIO_PREPROCESSOR: &str = "resources/musiccoca/audio_preprocessor.tflite";
/// MRT2's own MusicCoCa in the v2 repo (`style::mrt2`): the folder and the files the loader needs
/// (the front end is [`AUDIO_PREPROCESSOR`]; the optional mapper is [`MRT2_MAPPER`]).
pub const MRT2_MUSICCOCA_DIR: &str = "resources/musiccoca";
pub const MRT2_MUSICCOCA_FILES: [&str; 4] = [
    crate::style::mrt2::TEXT_ENCODER,
    crate::style::mrt2::MUSIC_ENCODER,
    crate::style::mrt2::QUANTIZER,
    crate::style::mrt2::VOCAB,
];
/// MRT2's optional text → audio mapper (`style::mapper`), fetched with MRT2.
pub const MRT2_MAPPER: &str = "resources/musiccoca/mapper.tflite";

/// Where assets live and how the Hub is reached. Built by [`Settings::from_vars`] in binaries and
/// by hand in tests.
#[derive(Clone, Debug)]
pub struct Settings {
    /// `$MRT_MODEL_DIR`: a model directory searched after an explicit `--model-dir`.
    pub model_dir: Option<PathBuf>,
    /// The Hugging Face hub cache (the directory holding `models--*`).
    pub hf_cache: PathBuf,
    /// Root of our own cache (converted checkpoints live under `converted/`).
    pub cache_dir: PathBuf,
    /// Hub endpoint without a trailing slash (`https://huggingface.co`).
    pub endpoint: String,
    /// Bearer token sent to the endpoint.
    pub token: Option<String>,
    /// `HF_HUB_OFFLINE`: never touch the network; `fetch` only reports what is present.
    pub offline: bool,
    /// TCP connect (and DNS) limit: an unreachable endpoint fails within this.
    pub connect_timeout: Duration,
    /// Limit on each read from the network (a stalled transfer fails after this).
    pub read_timeout: Duration,
    /// Retries of one file after a transfer error, each resuming where the last stopped.
    pub retries: usize,
    /// Files downloaded at once.
    pub parallel_downloads: usize,
    /// The sizes `locate` and `fetch` know besides those of a manifest.
    pub sizes: Vec<LmSize>,
}

pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

impl Settings {
    /// Settings with the given caches, no model directory, the public endpoint, no token, and
    /// the default timeouts. Reads no environment variable.
    pub fn new(hf_cache: PathBuf, cache_dir: PathBuf) -> Self {
        Self {
            model_dir: None,
            hf_cache,
            cache_dir,
            endpoint: DEFAULT_ENDPOINT.into(),
            token: None,
            offline: false,
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(60),
            retries: 3,
            parallel_downloads: 4,
            sizes: released_sizes(),
        }
    }

    /// The settings from environment variables, read through `var` (binaries and the plugin pass
    /// `|k| std::env::var_os(k)`; the library itself reads no environment):
    ///
    /// | variable | meaning |
    /// |---|---|
    /// | `MRT_MODEL_DIR` | model directory searched when no explicit one is given |
    /// | `MRT_CACHE_DIR` | our cache root, else the platform cache dir + `mrt-live` |
    /// | `HF_HUB_CACHE` (`HUGGINGFACE_HUB_CACHE`), `HF_HOME`, `XDG_CACHE_HOME` | the Hugging Face cache, as `huggingface_hub` resolves it |
    /// | `HF_ENDPOINT` | Hub endpoint |
    /// | `HF_TOKEN` (`HUGGING_FACE_HUB_TOKEN`), else the file `HF_TOKEN_PATH` or `$HF_HOME/token` | bearer token |
    /// | `HF_HUB_OFFLINE` | `1`/`true`/`yes`: no network |
    pub fn from_vars(var: impl Fn(&str) -> Option<std::ffi::OsString>) -> Self {
        let var = |k: &str| var(k).filter(|v| !v.is_empty());
        let home = dirs::home_dir().unwrap_or_else(|| PathBuf::from("."));
        let hf_home = var("HF_HOME").map(PathBuf::from).unwrap_or_else(|| {
            var("XDG_CACHE_HOME").map(PathBuf::from).unwrap_or_else(|| home.join(".cache")).join("huggingface")
        });
        let hf_cache = var("HF_HUB_CACHE")
            .or_else(|| var("HUGGINGFACE_HUB_CACHE"))
            .map(PathBuf::from)
            .unwrap_or_else(|| hf_home.join("hub"));
        let cache_dir = var("MRT_CACHE_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| dirs::cache_dir().unwrap_or_else(|| home.join(".cache")).join("mrt-live"));
        let mut s = Self::new(hf_cache, cache_dir);
        s.model_dir = var("MRT_MODEL_DIR").map(PathBuf::from);
        if let Some(e) = var("HF_ENDPOINT") {
            s.endpoint = e.to_string_lossy().trim_end_matches('/').to_string();
        }
        let token_file = var("HF_TOKEN_PATH").map(PathBuf::from).unwrap_or_else(|| hf_home.join("token"));
        s.token = var("HF_TOKEN")
            .or_else(|| var("HUGGING_FACE_HUB_TOKEN"))
            .map(|t| t.to_string_lossy().trim().to_string())
            .or_else(|| std::fs::read_to_string(&token_file).ok().map(|t| t.trim().to_string()))
            .filter(|t| !t.is_empty());
        s.offline = var("HF_HUB_OFFLINE")
            .map(|v| matches!(v.to_string_lossy().to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on"))
            .unwrap_or(false);
        s
    }

    /// The size called `name` among [`Settings::sizes`].
    pub fn size(&self, name: &str) -> Option<&LmSize> {
        self.sizes.iter().find(|s| s.name == name)
    }
}

/// One file of a Hub repository.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct RepoFile {
    pub repo: Repo,
    pub path: String,
}

impl fmt::Display for RepoFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.repo, self.path)
    }
}

/// Progress of a download or conversion. Every method has a no-op default; `()` reports nothing.
/// Methods may be called from several download threads at once.
pub trait Progress: Sync {
    /// A phase starts with `total_bytes` to move (`what` says which: a repo's downloads, a conversion).
    fn begin(&self, _what: &str, _total_bytes: u64) {}
    /// A file starts downloading; `resumed_from` bytes of it were already on disk.
    fn file(&self, _file: &RepoFile, _size: u64, _resumed_from: u64) {}
    /// `bytes` more were moved in the current phase (including resumed bytes, once, at the start).
    fn advance(&self, _bytes: u64) {}
    /// A file has been verified and moved into place.
    fn file_done(&self, _file: &RepoFile) {}
    /// The current phase is over.
    fn finish(&self) {}
    /// A line worth showing (offline fallback, reused cache, retries).
    fn note(&self, _text: &str) {}
}

impl Progress for () {}

/// One place `locate` looked for an item, and what it found there.
#[derive(Clone, Debug)]
pub struct Looked {
    pub place: PathBuf,
    /// Why the item did not count as present there ("absent", "lacks target.x/.zarray and 3 more").
    pub problem: String,
}

/// One item the model needs and could not be found.
#[derive(Clone, Debug)]
pub struct MissingItem {
    pub repo: Repo,
    /// Repo-relative file or directory (directories end with `/`).
    pub path: String,
    /// What must be there (e.g. "all files under it", "saved_model.pb, variables/…").
    pub what: String,
    pub looked: Vec<Looked>,
}

/// The report carried by [`AssetError::Missing`].
#[derive(Clone, Debug)]
pub struct Missing {
    pub size: String,
    pub items: Vec<MissingItem>,
    /// The Hugging Face cache `mrt fetch` would fill.
    pub hf_cache: PathBuf,
    /// The model directory searched, if any.
    pub model_dir: Option<PathBuf>,
    /// Why the files could not be downloaded, when a fetch was attempted.
    pub fetch_error: Option<String>,
}

impl fmt::Display for Missing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "model files for size `{}` are missing ({} item(s)):", self.size, self.items.len())?;
        for item in &self.items {
            writeln!(f, "  - {} {} ({})", item.repo, item.path, item.what)?;
            for l in &item.looked {
                writeln!(f, "      looked in {}: {}", l.place.display(), l.problem)?;
            }
        }
        if let Some(e) = &self.fetch_error {
            writeln!(f, "download failed: {e}")?;
        }
        writeln!(
            f,
            "Fix: run `mrt fetch --size {}` to download them into the Hugging Face cache {}",
            self.size,
            self.hf_cache.display()
        )?;
        let dir = self.model_dir.as_deref().map_or_else(|| "<dir>".to_string(), |d| d.display().to_string());
        write!(
            f,
            "     or put each file at {dir}/{}/<path> or {dir}/{}/<path> (repo-relative paths as listed) \
             and pass --model-dir {dir} or set MRT_MODEL_DIR",
            Repo::V1.dir_name(),
            Repo::V2.dir_name()
        )
    }
}

/// Everything that can go wrong locating, downloading or converting assets. Messages name the
/// file (repo + path and/or local path), the value expected and the value found.
#[derive(Debug, thiserror::Error)]
pub enum AssetError {
    #[error("{0}")]
    Missing(Box<Missing>),
    #[error("unknown model size `{size}` (known: {list}){note}", list = .known.join(", "), note = manifest_note(.manifest))]
    UnknownSize { size: String, known: Vec<String>, manifest: Option<PathBuf> },
    #[error("bad manifest {path}: {reason}")]
    BadManifest { path: PathBuf, reason: String },
    #[error("bad manifest {path}: not the JSON this build reads")]
    ManifestJson { path: PathBuf, #[source] source: serde_json::Error },
    #[error("I/O error on {path}: {source}")]
    Io { path: PathBuf, #[source] source: std::io::Error },
    #[error("cannot reach {url}: {reason}")]
    Network { url: String, reason: String },
    #[error("{url} answered HTTP {status}{hint}: {body}", hint = http_hint(.status))]
    Http { url: String, status: u16, body: String },
    #[error("unexpected answer from {url}: {reason}")]
    BadResponse { url: String, reason: String },
    #[error("{repo} at commit {commit} has no file {path} (the Hub listing lacks it)")]
    NotOnServer { repo: Repo, commit: String, path: String },
    #[error("{file}: downloaded {got} bytes into {partial}, the server announced {expected}")]
    SizeMismatch { file: RepoFile, partial: PathBuf, expected: u64, got: u64 },
    #[error("{file}: {algorithm} of the download is {got}, expected {expected} (the server's etag); the partial download {partial} was removed, nothing else was touched — run the fetch again")]
    HashMismatch { file: RepoFile, partial: PathBuf, algorithm: &'static str, expected: String, got: String },
    #[error("{path} is not a usable safetensors file: {reason}")]
    BadConverted { path: PathBuf, reason: String },
    #[error(transparent)]
    Lm(#[from] LmError),
}

fn manifest_note(manifest: &Option<PathBuf>) -> String {
    manifest.as_ref().map_or(String::new(), |m| format!("; manifest {} defines no other", m.display()))
}

fn http_hint(status: &u16) -> &'static str {
    match *status {
        401 | 403 => " (set HF_TOKEN if the repository needs a login)",
        404 => " (not found)",
        429 => " (rate limited; try again later)",
        _ => "",
    }
}

pub(crate) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> AssetError + '_ {
    move |source| AssetError::Io { path: path.to_path_buf(), source }
}
