//! Finding the files of one model size on disk, without the network.
//!
//! Places, in order, for every item separately (the first place holding the item whole wins):
//!
//! 1. a model directory: the explicit `--model-dir`, else `$MRT_MODEL_DIR`. It holds
//!    `magenta-realtime/<repo path>` and `magenta-realtime-2/<repo path>`, and optionally
//!    `mrt-live.json`:
//!
//!    ```json
//!    {"format": 1,
//!     "lm": {"tiny": {"checkpoint": "lm/checkpoint", "config": { …LmConfig JSON… }}},
//!     "codec_config": { …CodecConfig JSON… }}
//!    ```
//!
//!    `lm.<size>.checkpoint` is relative to the model directory: a t5x directory or a
//!    `.safetensors` file. `config` uses the schema of [`LmConfig::from_json_str`] and may be left
//!    out for a released size name. `codec_config` uses [`CodecConfig::from_json_str`].
//! 2. the Hugging Face cache: `models--google--magenta-realtime/refs/main` names a commit, the
//!    files are under `snapshots/<commit>/`.
//!
//! An item counts as present only when it is complete: a t5x checkpoint needs the `.zarray` of
//! every tensor its config expects (our downloader writes `.zarray` files last, so an array with
//! metadata has all its chunks), a SavedModel needs `saved_model.pb`, `variables/variables.index`
//! and every `variables.data-*-of-N` shard, the codec needs its three files side by side.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{
    io_err, AssetError, Looked, Missing, MissingItem, Repo, Settings, AUDIO_PREPROCESSOR, CODEC_DIR, CODEC_FILES, MRT2_MUSICCOCA_DIR,
    MRT2_MUSICCOCA_FILES,
    MANIFEST_FILE, MUSICCOCA_DIR, MUSICCOCA_QUANT_DIR, TESTDATA_DIR, VOCAB_FILE,
};
use crate::codec::config::CodecConfig;
use crate::v1::lm::LmConfig;

/// Where a located item came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// A model directory: `--model-dir` (`from_env: false`) or `$MRT_MODEL_DIR` (`true`).
    ModelDir { dir: PathBuf, from_env: bool },
    /// A snapshot of the Hugging Face cache.
    HfCache { repo: Repo, commit: String },
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::ModelDir { dir, from_env: false } => write!(f, "model dir {}", dir.display()),
            Source::ModelDir { dir, from_env: true } => write!(f, "MRT_MODEL_DIR {}", dir.display()),
            Source::HfCache { repo, commit } => write!(f, "Hugging Face cache {repo}@{commit}"),
        }
    }
}

/// A file or directory and where it was found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Located {
    pub path: PathBuf,
    pub source: Source,
}

/// On-disk form of an LM checkpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LmFormat {
    /// A t5x/tensorstore directory of zarr arrays (as published).
    T5x,
    /// One safetensors file with t5x names (ours, see `convert`).
    Safetensors,
}

/// Every file one model size needs, found on disk.
#[derive(Clone, Debug)]
pub struct ModelPaths {
    pub size: String,
    pub lm_checkpoint: Located,
    pub lm_format: LmFormat,
    pub lm_config: LmConfig,
    /// Directory holding `encoder.safetensors`, `decoder.safetensors`, `quantizer.safetensors`.
    pub codec_dir: Located,
    pub codec_config: CodecConfig,
    /// `savedmodels/musiccoca_mv212f_cpu_novocab/`.
    pub musiccoca: Located,
    /// `savedmodels/musiccoca_mv212_quant/`.
    pub musiccoca_quant: Located,
    /// `vocabularies/musiccoca_mv212f_vocab.model`.
    pub vocab: Located,
    /// `resources/musiccoca/audio_preprocessor.tflite` (v2).
    pub audio_preprocessor: Located,
    /// `testdata/` of v1, when present (only fetched on request).
    pub testdata: Option<Located>,
    /// The `mrt-live.json` that shaped this result, if any.
    pub manifest: Option<PathBuf>,
}

impl ModelPaths {
    /// Locates `size`: the explicit `model_dir`, else `settings.model_dir`, then the Hugging Face
    /// cache, item by item. Never uses the network.
    pub fn locate_with(size: &str, model_dir: Option<&Path>, settings: &Settings) -> Result<ModelPaths, AssetError> {
        let plan = Plan::new(size, model_dir, settings, false)?;
        plan.locate()
    }
}

/// What kind of thing an item is, which decides when it counts as complete.
#[derive(Clone, Debug)]
pub(crate) enum Kind {
    File,
    /// A directory of whose files only those named are needed.
    Files(Vec<String>),
    SavedModel,
    Checkpoint(Box<LmConfig>),
    /// A directory needed whole; complete when it holds at least one file.
    Tree,
}

/// One thing to find (and to download).
#[derive(Clone, Debug)]
pub(crate) struct Item {
    pub repo: Repo,
    /// Repo-relative, no trailing slash.
    pub path: String,
    pub kind: Kind,
    pub role: Role,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    Lm,
    Codec,
    MusicCoCa,
    MusicCoCaQuant,
    Vocab,
    AudioPreprocessor,
    TestData,
    Mrt2MusicCoCa,
}

impl Item {
    pub(crate) fn new(repo: Repo, path: &str, kind: Kind, role: Role) -> Self {
        Self { repo, path: path.to_string(), kind, role }
    }

    pub fn is_dir(&self) -> bool {
        !matches!(self.kind, Kind::File)
    }

    /// Whether a repo file belongs to this item.
    pub fn wants(&self, repo_path: &str) -> bool {
        match &self.kind {
            Kind::File => repo_path == self.path,
            Kind::Files(names) => names.iter().any(|n| repo_path == format!("{}/{n}", self.path)),
            _ => repo_path.strip_prefix(&self.path).is_some_and(|rest| rest.starts_with('/')),
        }
    }

    fn what(&self) -> String {
        match &self.kind {
            Kind::File => "one file".into(),
            Kind::Files(names) => names.join(", "),
            Kind::SavedModel => "saved_model.pb, variables/variables.index, variables/variables.data-*".into(),
            Kind::Checkpoint(_) => "t5x checkpoint: all files under it".into(),
            Kind::Tree => "all files under it".into(),
        }
    }

    fn display_path(&self) -> String {
        if self.is_dir() {
            format!("{}/", self.path)
        } else {
            self.path.clone()
        }
    }

    /// `Ok` when `path` holds the item whole, else what is wrong.
    pub fn check(&self, path: &Path) -> Result<(), String> {
        if !path.exists() {
            return Err("absent".into());
        }
        match &self.kind {
            Kind::File => (path.is_file()).then_some(()).ok_or_else(|| "not a file".into()),
            Kind::Files(names) => {
                lacks(names.iter().filter(|n| !path.join(n).is_file()).cloned().collect())
            }
            Kind::SavedModel => check_saved_model(path),
            Kind::Checkpoint(config) => check_checkpoint(path, config),
            Kind::Tree => {
                let any = std::fs::read_dir(path).map_err(|e| e.to_string())?.next().is_some();
                any.then_some(()).ok_or_else(|| "empty directory".into())
            }
        }
    }
}

fn lacks(names: Vec<String>) -> Result<(), String> {
    match names.len() {
        0 => Ok(()),
        1..=3 => Err(format!("lacks {}", names.join(", "))),
        n => Err(format!("lacks {} and {} more", names[..3].join(", "), n - 3)),
    }
}

fn check_saved_model(dir: &Path) -> Result<(), String> {
    let mut lacking: Vec<String> =
        ["saved_model.pb", "variables/variables.index"].iter().filter(|f| !dir.join(f).is_file()).map(|f| f.to_string()).collect();
    let vars = dir.join("variables");
    let mut shards: Vec<(usize, usize)> = Vec::new();
    if let Ok(entries) = std::fs::read_dir(&vars) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(rest) = name.strip_prefix("variables.data-") {
                if let Some((i, n)) = rest.split_once("-of-") {
                    if let (Ok(i), Ok(n)) = (i.parse(), n.parse()) {
                        shards.push((i, n));
                    }
                }
            }
        }
    }
    match shards.first() {
        None => lacking.push("variables/variables.data-00000-of-*".into()),
        Some(&(_, n)) => {
            for i in 0..n {
                if !shards.contains(&(i, n)) {
                    lacking.push(format!("variables/variables.data-{i:05}-of-{n:05}"));
                }
            }
        }
    }
    lacks(lacking)
}

fn check_checkpoint(dir: &Path, config: &LmConfig) -> Result<(), String> {
    if !dir.is_dir() {
        return Err("not a directory".into());
    }
    let lacking: Vec<String> = crate::v1::lm::weights::manifest(config)
        .into_iter()
        .map(|(name, _)| format!("target.{name}/.zarray"))
        .filter(|f| !dir.join(f).is_file())
        .collect();
    lacks(lacking)
}

/// `mrt-live.json`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ManifestJson {
    pub format: u32,
    #[serde(default)]
    pub lm: BTreeMap<String, ManifestLm>,
    pub codec_config: Option<serde_json::Value>,
    /// MRT2 sizes: `checkpoint` (a combined `.safetensors`, relative to the model dir) and
    /// `config` (an MRT2 fixture-style `config.json`, codec section included).
    #[serde(default)]
    pub mrt2: BTreeMap<String, ManifestLm>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ManifestLm {
    pub checkpoint: String,
    pub config: Option<serde_json::Value>,
}

/// Reads `dir/mrt-live.json` when there is one (format 1 only).
pub(crate) fn read_manifest(dir: &Path) -> Result<Option<(PathBuf, ManifestJson)>, AssetError> {
    let path = dir.join(MANIFEST_FILE);
    if !path.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path).map_err(io_err(&path))?;
    let j: ManifestJson = serde_json::from_str(&text).map_err(|source| AssetError::ManifestJson { path: path.clone(), source })?;
    if j.format != 1 {
        return Err(AssetError::BadManifest { path, reason: format!("\"format\" is {}, this build reads format 1", j.format) });
    }
    Ok(Some((path, j)))
}

/// The sizes a model directory's `mrt-live.json` declares.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ManifestSizes {
    pub v1: Vec<String>,
    pub mrt2: Vec<String>,
}

/// The sizes the model directory's `mrt-live.json` declares (v1 LMs, MRT2 checkpoints), if it
/// has one (the directory given, else `MRT_MODEL_DIR` from `settings`).
pub fn manifest_sizes(model_dir: Option<&Path>, settings: &Settings) -> Result<Option<ManifestSizes>, AssetError> {
    let Some((dir, _)) = roots(model_dir, settings).1 else {
        return Ok(None);
    };
    Ok(read_manifest(&dir)?.map(|(_, j)| ManifestSizes { v1: j.lm.keys().cloned().collect(), mrt2: j.mrt2.keys().cloned().collect() }))
}

/// The places to look, in order, and the model directory among them (with whether it came from
/// the environment).
pub(crate) fn roots(model_dir: Option<&Path>, settings: &Settings) -> (Vec<Root>, Option<(PathBuf, bool)>) {
    let dir_root = match model_dir {
        Some(d) => Some((d.to_path_buf(), false)),
        None => settings.model_dir.clone().map(|d| (d, true)),
    };
    let mut roots = Vec::new();
    if let Some((dir, from_env)) = &dir_root {
        roots.push(Root::ModelDir { dir: dir.clone(), from_env: *from_env });
    }
    roots.push(Root::HfCache { cache: settings.hf_cache.clone() });
    (roots, dir_root)
}

/// Finds `item` in `roots`, or every place it was not.
pub(crate) fn find_in(roots: &[Root], item: &Item) -> Result<Located, Vec<Looked>> {
    let mut looked = Vec::new();
    for root in roots {
        match root.repo_base(item.repo) {
            Ok((base, source)) => {
                let path = join_repo_path(&base, &item.path);
                match item.check(&path) {
                    Ok(()) => return Ok(Located { path, source }),
                    Err(problem) => looked.push(Looked { place: path, problem }),
                }
            }
            Err(l) => looked.push(l),
        }
    }
    Err(looked)
}

/// The missing-item entry of `item`.
pub(crate) fn missing_item(item: &Item, looked: Vec<Looked>) -> MissingItem {
    MissingItem { repo: item.repo, path: item.display_path(), what: item.what(), looked }
}

/// The style model's files (v1's MusicCoCa SavedModels and vocabulary, MRT2's audio front end),
/// located alone: what MRT2 prompts need besides the MRT2 checkpoint.
pub fn locate_style(model_dir: Option<&Path>, settings: &Settings) -> Result<crate::style::StylePaths, AssetError> {
    let (roots, dir_root) = roots(model_dir, settings);
    let items = [
        Item::new(Repo::V1, MUSICCOCA_DIR, Kind::SavedModel, Role::MusicCoCa),
        Item::new(Repo::V1, MUSICCOCA_QUANT_DIR, Kind::SavedModel, Role::MusicCoCaQuant),
        Item::new(Repo::V1, VOCAB_FILE, Kind::File, Role::Vocab),
        Item::new(Repo::V2, AUDIO_PREPROCESSOR, Kind::File, Role::AudioPreprocessor),
    ];
    let mut found = Vec::new();
    let mut missing = Vec::new();
    for item in &items {
        match find_in(&roots, item) {
            Ok(l) => found.push(l.path),
            Err(looked) => missing.push(missing_item(item, looked)),
        }
    }
    if !missing.is_empty() {
        return Err(AssetError::Missing(Box::new(Missing {
            size: "style model (MusicCoCa)".into(),
            items: missing,
            hf_cache: settings.hf_cache.clone(),
            model_dir: dir_root.map(|(d, _)| d),
            fetch_error: None,
        })));
    }
    let mut it = found.into_iter();
    let mut next = || it.next().expect("one path per item");
    Ok(crate::style::StylePaths { savedmodel: next(), quantizer: next(), vocab: next(), preprocessor: Some(next()) })
}

/// The item of MRT2's own MusicCoCa files (`resources/musiccoca/…` of the v2 repo).
pub(crate) fn mrt2_musiccoca_item() -> Item {
    Item::new(Repo::V2, MRT2_MUSICCOCA_DIR, Kind::Files(MRT2_MUSICCOCA_FILES.iter().map(|s| s.to_string()).collect()), Role::Mrt2MusicCoCa)
}

/// The style model MRT2 prompts are embedded with: MRT2's own MusicCoCa
/// (`resources/musiccoca/{text_encoder,music_encoder,pretrained_vector_quantizer}.tflite` +
/// `spm.model`, with `audio_preprocessor.tflite` and `mapper.tflite` where present) when its
/// files are found; else v1's ([`locate_style`]), as before MRT2's was read. A folder holding only
/// some of MRT2's files is an error naming the missing ones (a partial download), as is finding
/// neither model.
pub fn locate_mrt2_style(model_dir: Option<&Path>, settings: &Settings) -> Result<crate::style::StyleFiles, AssetError> {
    let (roots, dir_root) = roots(model_dir, settings);
    let item = mrt2_musiccoca_item();
    let looked = match find_in(&roots, &item) {
        Ok(found) => return Ok(crate::style::StyleFiles::Mrt2(crate::style::Mrt2StylePaths::in_dir(&found.path))),
        Err(looked) => looked,
    };
    // Some but not all of the files in one place: a partial download, not an absent model.
    let partial = looked.iter().any(|l| {
        let n = MRT2_MUSICCOCA_FILES.iter().filter(|f| l.place.join(f).is_file()).count();
        0 < n && n < MRT2_MUSICCOCA_FILES.len()
    });
    if !partial {
        if let Ok(v1) = locate_style(model_dir, settings) {
            return Ok(crate::style::StyleFiles::V1(v1));
        }
    }
    Err(AssetError::Missing(Box::new(Missing {
        size: "MRT2 style model (MusicCoCa)".into(),
        items: vec![missing_item(&item, looked)],
        hf_cache: settings.hf_cache.clone(),
        model_dir: dir_root.map(|(d, _)| d),
        fetch_error: None,
    })))
}

/// The SpectroStream files (`resources/spectrostream/{encoder,decoder,quantizer}.safetensors`)
/// located alone, with their config (the model directory's manifest `codec_config`, else the
/// released preset): what MRT2's prefill from audio needs besides the MRT2 checkpoint, whose codec
/// is decode-only.
pub fn locate_codec(model_dir: Option<&Path>, settings: &Settings) -> Result<(Located, CodecConfig), AssetError> {
    let (roots, dir_root) = roots(model_dir, settings);
    let mut config = CodecConfig::spectrostream_48k_stereo();
    if let Some((path, j)) = match &dir_root {
        Some((dir, _)) => read_manifest(dir)?,
        None => None,
    } {
        if let Some(c) = &j.codec_config {
            config = CodecConfig::from_json_str(&c.to_string())
                .map_err(|reason| AssetError::BadManifest { path, reason: format!("codec_config: {reason}") })?;
        }
    }
    let item = Item::new(Repo::V2, CODEC_DIR, Kind::Files(CODEC_FILES.iter().map(|s| s.to_string()).collect()), Role::Codec);
    match find_in(&roots, &item) {
        Ok(located) => Ok((located, config)),
        Err(looked) => Err(AssetError::Missing(Box::new(Missing {
            size: "codec (SpectroStream)".into(),
            items: vec![missing_item(&item, looked)],
            hf_cache: settings.hf_cache.clone(),
            model_dir: dir_root.map(|(d, _)| d),
            fetch_error: None,
        }))),
    }
}

/// A place to look.
#[derive(Clone, Debug)]
pub(crate) enum Root {
    ModelDir { dir: PathBuf, from_env: bool },
    HfCache { cache: PathBuf },
}

impl Root {
    /// The directory holding `repo`'s files here, or why there is none.
    pub fn repo_base(&self, repo: Repo) -> Result<(PathBuf, Source), Looked> {
        match self {
            Root::ModelDir { dir, from_env } => {
                Ok((dir.join(repo.dir_name()), Source::ModelDir { dir: dir.clone(), from_env: *from_env }))
            }
            Root::HfCache { cache } => {
                let folder = cache.join(repo.cache_folder());
                let refs = folder.join("refs").join("main");
                let commit = match std::fs::read_to_string(&refs) {
                    Ok(c) => c.trim().to_string(),
                    Err(_) => return Err(Looked { place: folder, problem: "no refs/main (nothing fetched)".into() }),
                };
                let snap = folder.join("snapshots").join(&commit);
                Ok((snap, Source::HfCache { repo, commit }))
            }
        }
    }
}

/// What a size needs and where to look, before looking.
pub(crate) struct Plan {
    pub size: String,
    pub roots: Vec<Root>,
    pub items: Vec<Item>,
    /// Set when the manifest supplies the LM (then no LM item is in `items`).
    pub manifest_lm: Option<(Located, LmFormat)>,
    pub lm_config: LmConfig,
    pub codec_config: CodecConfig,
    pub manifest: Option<PathBuf>,
    pub hf_cache: PathBuf,
    pub model_dir: Option<PathBuf>,
}

impl Plan {
    pub fn new(size: &str, model_dir: Option<&Path>, settings: &Settings, testdata: bool) -> Result<Self, AssetError> {
        let mut roots = Vec::new();
        let dir_root = match model_dir {
            Some(d) => Some((d.to_path_buf(), false)),
            None => settings.model_dir.clone().map(|d| (d, true)),
        };
        if let Some((dir, from_env)) = &dir_root {
            roots.push(Root::ModelDir { dir: dir.clone(), from_env: *from_env });
        }
        roots.push(Root::HfCache { cache: settings.hf_cache.clone() });

        let mut manifest = None;
        let mut manifest_json = None;
        if let Some((dir, _)) = &dir_root {
            let path = dir.join(MANIFEST_FILE);
            if path.is_file() {
                let text = std::fs::read_to_string(&path).map_err(io_err(&path))?;
                let j: ManifestJson = serde_json::from_str(&text)
                    .map_err(|source| AssetError::ManifestJson { path: path.clone(), source })?;
                if j.format != 1 {
                    return Err(AssetError::BadManifest {
                        path,
                        reason: format!("\"format\" is {}, this build reads format 1", j.format),
                    });
                }
                manifest_json = Some(j);
                manifest = Some(path);
            }
        }

        let bad = |reason: String| AssetError::BadManifest { path: manifest.clone().unwrap_or_default(), reason };
        let mut codec_config = CodecConfig::spectrostream_48k_stereo();
        if let Some(c) = manifest_json.as_ref().and_then(|j| j.codec_config.as_ref()) {
            codec_config = CodecConfig::from_json_str(&c.to_string()).map_err(|e| bad(format!("codec_config: {e}")))?;
        }

        let mut items = Vec::new();
        let manifest_entry = manifest_json.as_ref().and_then(|j| j.lm.get(size));
        let (lm_config, manifest_lm) = match manifest_entry {
            Some(entry) => {
                let config = match (&entry.config, settings.size(size)) {
                    (Some(c), _) => LmConfig::from_json_str(&c.to_string()).map_err(|e| bad(format!("lm.{size}.config: {e}")))?,
                    (None, Some(known)) => known.config.clone(),
                    (None, None) => return Err(bad(format!("lm.{size} needs a \"config\" (`{size}` is not a released size)"))),
                };
                let (dir, from_env) = dir_root.clone().expect("a manifest comes from a model dir");
                let path = dir.join(&entry.checkpoint);
                let format = if path.extension().is_some_and(|e| e == "safetensors") {
                    LmFormat::Safetensors
                } else {
                    LmFormat::T5x
                };
                let check = match format {
                    LmFormat::Safetensors => path.is_file().then_some(()).ok_or_else(|| "absent".to_string()),
                    LmFormat::T5x => check_checkpoint(&path, &config),
                };
                if let Err(problem) = check {
                    return Err(bad(format!("lm.{size}.checkpoint {}: {problem}", path.display())));
                }
                (config, Some((Located { path, source: Source::ModelDir { dir, from_env } }, format)))
            }
            None => {
                let Some(known) = settings.size(size) else {
                    let mut known: Vec<String> = settings.sizes.iter().map(|s| s.name.clone()).collect();
                    if let Some(j) = &manifest_json {
                        known.extend(j.lm.keys().cloned());
                    }
                    return Err(AssetError::UnknownSize { size: size.to_string(), known, manifest });
                };
                items.push(Item::new(Repo::V1, &known.checkpoint, Kind::Checkpoint(Box::new(known.config.clone())), Role::Lm));
                (known.config.clone(), None)
            }
        };
        let codec_files = CODEC_FILES.iter().map(|s| s.to_string()).collect();
        items.push(Item::new(Repo::V1, MUSICCOCA_DIR, Kind::SavedModel, Role::MusicCoCa));
        items.push(Item::new(Repo::V1, MUSICCOCA_QUANT_DIR, Kind::SavedModel, Role::MusicCoCaQuant));
        items.push(Item::new(Repo::V1, VOCAB_FILE, Kind::File, Role::Vocab));
        items.push(Item::new(Repo::V2, CODEC_DIR, Kind::Files(codec_files), Role::Codec));
        items.push(Item::new(Repo::V2, AUDIO_PREPROCESSOR, Kind::File, Role::AudioPreprocessor));
        if testdata {
            items.push(Item::new(Repo::V1, TESTDATA_DIR, Kind::Tree, Role::TestData));
        }
        Ok(Plan {
            size: size.to_string(),
            roots,
            items,
            manifest_lm,
            lm_config,
            codec_config,
            manifest,
            hf_cache: settings.hf_cache.clone(),
            model_dir: dir_root.map(|(d, _)| d),
        })
    }

    /// Finds one item in the roots, or every place it was not.
    pub fn find(&self, item: &Item) -> Result<Located, Vec<Looked>> {
        find_in(&self.roots, item)
    }

    pub fn locate(&self) -> Result<ModelPaths, AssetError> {
        let mut found: BTreeMap<&'static str, Located> = BTreeMap::new();
        let mut missing = Vec::new();
        for item in &self.items {
            match self.find(item) {
                Ok(l) => {
                    found.insert(role_key(item.role), l);
                }
                Err(looked) => {
                    if item.role != Role::TestData {
                        missing.push(MissingItem { repo: item.repo, path: item.display_path(), what: item.what(), looked });
                    }
                }
            }
        }
        if !missing.is_empty() {
            return Err(self.missing(missing, None));
        }
        // Test data is optional for `locate`: look for it even when not asked to fetch it.
        let testdata = match found.remove(role_key(Role::TestData)) {
            Some(l) => Some(l),
            None => self.find(&Item::new(Repo::V1, TESTDATA_DIR, Kind::Tree, Role::TestData)).ok(),
        };
        let mut take = |r: Role| found.remove(role_key(r)).expect("every required item was found");
        let (lm_checkpoint, lm_format) = match &self.manifest_lm {
            Some((l, f)) => (l.clone(), *f),
            None => (take(Role::Lm), LmFormat::T5x),
        };
        Ok(ModelPaths {
            size: self.size.clone(),
            lm_checkpoint,
            lm_format,
            lm_config: self.lm_config.clone(),
            codec_dir: take(Role::Codec),
            codec_config: self.codec_config.clone(),
            musiccoca: take(Role::MusicCoCa),
            musiccoca_quant: take(Role::MusicCoCaQuant),
            vocab: take(Role::Vocab),
            audio_preprocessor: take(Role::AudioPreprocessor),
            testdata,
            manifest: self.manifest.clone(),
        })
    }

    /// The `Missing` error for these items.
    pub fn missing(&self, items: Vec<MissingItem>, fetch_error: Option<String>) -> AssetError {
        AssetError::Missing(Box::new(Missing {
            size: self.size.clone(),
            items,
            hf_cache: self.hf_cache.clone(),
            model_dir: self.model_dir.clone(),
            fetch_error,
        }))
    }

    /// Every item not present anywhere, as `Missing` entries.
    pub fn missing_items(&self) -> Vec<MissingItem> {
        self.items
            .iter()
            .filter_map(|item| {
                self.find(item).err().map(|looked| MissingItem {
                    repo: item.repo,
                    path: item.display_path(),
                    what: item.what(),
                    looked,
                })
            })
            .collect()
    }
}

fn role_key(r: Role) -> &'static str {
    match r {
        Role::Lm => "lm",
        Role::Codec => "codec",
        Role::MusicCoCa => "musiccoca",
        Role::MusicCoCaQuant => "musiccoca_quant",
        Role::Vocab => "vocab",
        Role::AudioPreprocessor => "audio_preprocessor",
        Role::TestData => "testdata",
        Role::Mrt2MusicCoCa => "mrt2_musiccoca",
    }
}

/// `base` joined with a `/`-separated repo path.
pub(crate) fn join_repo_path(base: &Path, repo_path: &str) -> PathBuf {
    let mut p = base.to_path_buf();
    for part in repo_path.split('/').filter(|s| !s.is_empty()) {
        p.push(part);
    }
    p
}
