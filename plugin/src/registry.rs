//! One loaded model per process: every plugin instance asking for the same (family, model
//! directory, size, device) shares one set of weights.
//!
//! The registry holds weak references, so a model is freed when the last instance using it
//! goes away. Loading happens under the registry lock: a second instance asking for the same
//! model while it loads waits for it instead of loading it twice.

use std::collections::HashMap;
use std::hash::Hash;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use mrt::style::StyleModel;
use mrt::DeviceChoice;

use crate::shared::lock;

/// What identifies a loaded model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelKey {
    pub family: mrt::stream::Family,
    /// The model directory asked for (`None` = the engine's default places).
    pub model_dir: Option<PathBuf>,
    pub size: String,
    pub device: DeviceChoice,
    /// LM speed options (bf16 weights, per-level depth logits): a different set is another load.
    pub lm: mrt::v1::lm::LmOptions,
}

impl Hash for ModelKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.family.hash(state);
        self.model_dir.hash(state);
        self.size.hash(state);
        // `DeviceChoice` has no `Hash`; its name identifies it.
        self.device.to_string().hash(state);
        self.lm.hash(state);
    }
}

/// The loaded system: generator and style model.
pub struct Models {
    pub generator: mrt::stream::Generator,
    pub style: StyleModel,
    pub device: DeviceChoice,
    /// Where the files came from, for the status line.
    pub description: String,
    /// Identifies the style model's weights (its SavedModel folder): embeddings cached under
    /// another identity are not reused.
    pub style_id: String,
}

/// A keyed cache of weakly held, shared values, loaded at most once at a time. A value let go
/// by its last user may linger for a grace period ([`Registry::linger`]).
pub struct Registry<K, V> {
    entries: Mutex<HashMap<K, Weak<V>>>,
    /// Values kept alive until their deadline, and whether a reaper thread is running.
    lingering: Arc<Mutex<Lingering<V>>>,
}

struct Lingering<V> {
    held: Vec<(Instant, Arc<V>)>,
    reaper: bool,
}

impl<K: Eq + Hash + Clone, V> Default for Registry<K, V> {
    fn default() -> Self {
        Self { entries: Mutex::new(HashMap::new()), lingering: Arc::new(Mutex::new(Lingering { held: Vec::new(), reaper: false })) }
    }
}

impl<K: Eq + Hash + Clone, V: Send + Sync + 'static> Registry<K, V> {
    /// The live value for `key`, or the result of `load` (stored when it succeeds).
    pub fn get_or_load<E>(&self, key: &K, load: impl FnOnce() -> Result<V, E>) -> Result<Arc<V>, E> {
        self.expire();
        let mut entries = lock(&self.entries);
        if let Some(v) = entries.get(key).and_then(Weak::upgrade) {
            return Ok(v);
        }
        entries.retain(|_, w| w.strong_count() > 0);
        let v = Arc::new(load()?);
        entries.insert(key.clone(), Arc::downgrade(&v));
        Ok(v)
    }

    /// Number of values alive.
    pub fn live(&self) -> usize {
        self.expire();
        lock(&self.entries).values().filter(|w| w.strong_count() > 0).count()
    }

    /// Keeps `value` alive for `grace` after its user lets go of it, so that an instance that
    /// closes and reopens (or switches a setting back) within it finds the model loaded. A
    /// background thread frees it when the grace period ends unused.
    pub fn linger(&self, value: Arc<V>, grace: Duration) {
        let deadline = Instant::now() + grace;
        let mut l = lock(&self.lingering);
        // One deadline per value: the latest.
        l.held.retain(|(_, v)| !Arc::ptr_eq(v, &value));
        l.held.push((deadline, value));
        if !l.reaper {
            let lingering = Arc::clone(&self.lingering);
            let spawned = std::thread::Builder::new().name("mrt-live model grace".into()).spawn(move || loop {
                let next = {
                    let mut l = lock(&lingering);
                    let now = Instant::now();
                    l.held.retain(|(d, _)| *d > now);
                    match l.held.iter().map(|(d, _)| *d).min() {
                        Some(d) => d,
                        None => {
                            l.reaper = false;
                            return;
                        }
                    }
                };
                std::thread::sleep(next.saturating_duration_since(Instant::now()));
            });
            // Without a thread the value is freed at the next lookup after its deadline.
            l.reaper = spawned.is_ok();
        }
    }

    /// Drops lingering values whose grace period is over.
    fn expire(&self) {
        let now = Instant::now();
        // Freed outside the lock (a model's drop can take a while).
        let expired: Vec<_> = {
            let mut l = lock(&self.lingering);
            let (gone, kept) = std::mem::take(&mut l.held).into_iter().partition(|(d, _)| *d <= now);
            l.held = kept;
            gone
        };
        drop(expired);
    }
}

/// The process-wide model registry.
pub fn models() -> &'static Registry<ModelKey, Models> {
    static REGISTRY: OnceLock<Registry<ModelKey, Models>> = OnceLock::new();
    REGISTRY.get_or_init(Registry::default)
}

/// Why a model could not be loaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LoadFailure {
    /// Files are missing; the engine's message lists them and how to fetch them.
    NotInstalled(String),
    Error(String),
}

fn asset_failure(e: mrt::assets::AssetError) -> LoadFailure {
    match e {
        mrt::assets::AssetError::Missing(_) => LoadFailure::NotInstalled(e.to_string()),
        other => LoadFailure::Error(other.to_string()),
    }
}

/// Locates and loads a model of `key.family` (no network). A t5x LM checkpoint is converted once
/// into the engine's cache (as `mrt generate` does), reporting through `progress`.
pub fn load(key: &ModelKey, progress: &dyn mrt::assets::Progress) -> Result<Models, LoadFailure> {
    let models = match key.family {
        mrt::stream::Family::V1 => load_v1(key, progress)?,
        mrt::stream::Family::Mrt2 => load_mrt2(key)?,
    };
    note_load(key);
    Ok(models)
}

/// MRT2: the combined checkpoint (LM + decode-only codec) and the style model for the prompts.
/// The device setting moves the LM's decoder (the GPU kernels on wgpu/cuda) and the style model;
/// the codec's frame-by-frame decode and the conditioning encoder stay on the CPU.
fn load_mrt2(key: &ModelKey) -> Result<Models, LoadFailure> {
    let settings = crate::params::asset_settings();
    let paths = mrt::assets::Mrt2Paths::locate_with(&key.size, key.model_dir.as_deref(), &settings).map_err(asset_failure)?;
    // The LM weights setting applies (host and GPU kernels take f32, bf16, int8); depth logits do
    // not (MRT2 computes only the current level's, which is exact there).
    let precision = key.lm.precision;
    let target = mrt::Target::new(key.device).map_err(LoadFailure::Error)?;
    let system = mrt::mrt2::Mrt2System::load_on(&paths.checkpoint.path, paths.config.clone(), paths.codec_config.clone(), precision, &target).map_err(|e| {
        LoadFailure::Error(format!("loading MRT2 {} from {}: {}", paths.size, paths.checkpoint.path.display(), mrt::error_chain(&e)))
    })?;
    // MRT2's own MusicCoCa (its tflite towers and quantizer) where installed, else v1's.
    let style_files = mrt::assets::locate_mrt2_style(key.model_dir.as_deref(), &settings).map_err(asset_failure)?;
    let style = mrt::style::StyleModel::load_files(&style_files, &target.device).map_err(|e| LoadFailure::Error(mrt::error_chain(&e)))?;
    let lm_where = if target.compute == mrt::Compute::Gpu { format!("LM on {} (GPU kernels), codec on the CPU", key.device) } else { "LM and codec on the CPU".to_owned() };
    let description = format!(
        "MRT2 {} from {} ({lm_where}, {precision} weights; {} MusicCoCa)",
        paths.size,
        paths.checkpoint.source,
        style_files.family()
    );
    let style_id = style_files.main_path().display().to_string();
    Ok(Models { generator: mrt::stream::Generator::Mrt2(system), style, device: key.device, description, style_id })
}

fn load_v1(key: &ModelKey, progress: &dyn mrt::assets::Progress) -> Result<Models, LoadFailure> {
    use mrt::assets::ModelPaths;
    let settings = crate::params::asset_settings();
    let paths = ModelPaths::locate_with(&key.size, key.model_dir.as_deref(), &settings).map_err(asset_failure)?;
    let paths = mrt::assets::with_converted_lm(paths, &settings.cache_dir, progress)
        .map_err(|e| LoadFailure::Error(mrt::error_chain(&e)))?;
    let target = mrt::Target::new(key.device).map_err(LoadFailure::Error)?;
    // The engine's rule of which options a path supports (reduced precision on our CPU and GPU
    // kernels, not on burn's ops): where it refuses, the plugin plays f32 and says so.
    let mut options = key.lm;
    let mut notes = Vec::new();
    if options.check(target.compute).is_err() {
        notes.push(format!("{} weights are not supported on {}; it runs f32", options.precision, key.device));
        options.precision = mrt::v1::lm::WeightPrecision::F32;
    }
    let generator =
        mrt::v1::system::load::load_generator_with(&paths, &target, options).map_err(|e| LoadFailure::Error(mrt::error_chain(&e)))?;
    let style = mrt::v1::system::load::load_style(&paths, &target.device).map_err(|e| LoadFailure::Error(mrt::error_chain(&e)))?;
    let mut description = format!("{} from {}", key.size, paths.lm_checkpoint.source);
    if options != mrt::v1::lm::LmOptions::default() {
        description.push_str(&format!(" (LM weights {}, depth logits {})", options.precision, options.depth_logits));
    }
    for note in notes {
        description.push_str(&format!("; {note}"));
    }
    let style_id = paths.musiccoca.path.display().to_string();
    Ok(Models { generator: mrt::stream::Generator::V1(generator), style, device: key.device, description, style_id })
}

/// Appends one line per model actually loaded to `$MRT_LIVE_LOAD_LOG`, when set: host tests (and
/// users chasing memory use) can see that instances share one load. Best effort.
fn note_load(key: &ModelKey) {
    use std::io::Write as _;
    let Some(path) = std::env::var_os("MRT_LIVE_LOAD_LOG") else { return };
    if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
        let dir = key.model_dir.as_ref().map(|d| d.display().to_string()).unwrap_or_else(|| "(default)".into());
        let _ = writeln!(f, "loaded family={} size={} device={} model_dir={dir} pid={}", key.family, key.size, key.device, std::process::id());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn same_key_shares_one_load_and_frees_when_unused() {
        let reg: Registry<u32, String> = Registry::default();
        let loads = AtomicUsize::new(0);
        let load = || -> Result<String, ()> {
            loads.fetch_add(1, Ordering::SeqCst);
            Ok("model".into())
        };
        let a = reg.get_or_load(&1, load).unwrap();
        let b = reg.get_or_load(&1, load).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(loads.load(Ordering::SeqCst), 1);
        let c = reg.get_or_load(&2, load).unwrap();
        assert!(!Arc::ptr_eq(&a, &c));
        assert_eq!(loads.load(Ordering::SeqCst), 2);
        assert_eq!(reg.live(), 2);
        drop((a, b));
        assert_eq!(reg.live(), 1);
        let _d = reg.get_or_load(&1, load).unwrap();
        assert_eq!(loads.load(Ordering::SeqCst), 3, "a freed model is loaded again");
    }

    #[test]
    fn a_lingering_value_is_found_again_within_its_grace_and_freed_after_it() {
        let reg: Registry<u32, String> = Registry::default();
        let loads = AtomicUsize::new(0);
        let load = || -> Result<String, ()> {
            loads.fetch_add(1, Ordering::SeqCst);
            Ok("model".into())
        };
        let a = reg.get_or_load(&1, load).unwrap();
        let weak = Arc::downgrade(&a);
        reg.linger(a, Duration::from_secs(3600));
        assert_eq!(reg.live(), 1, "kept alive by its grace period");
        let b = reg.get_or_load(&1, load).unwrap();
        assert_eq!(loads.load(Ordering::SeqCst), 1, "reopened within the grace period: no second load");
        assert!(std::ptr::eq(weak.as_ptr(), Arc::as_ptr(&b)));
        // Let go again with no grace: the old, longer deadline is replaced, and the next lookup
        // frees it.
        reg.linger(b, Duration::ZERO);
        assert_eq!(reg.live(), 0, "freed once its grace period is over");
        assert_eq!(weak.strong_count(), 0);
        let _c = reg.get_or_load(&1, load).unwrap();
        assert_eq!(loads.load(Ordering::SeqCst), 2, "a freed model is loaded again");
    }

    #[test]
    fn the_grace_thread_frees_an_unused_value_on_its_own() {
        let reg: Registry<u32, String> = Registry::default();
        let a = reg.get_or_load(&1, || Ok::<_, ()>("model".to_string())).unwrap();
        let weak = Arc::downgrade(&a);
        reg.linger(a, Duration::from_millis(20));
        let start = Instant::now();
        while weak.strong_count() > 0 {
            assert!(start.elapsed() < Duration::from_secs(30), "the lingering value was never freed");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn failed_load_is_not_cached() {
        let reg: Registry<u32, String> = Registry::default();
        assert_eq!(reg.get_or_load(&1, || Err::<String, _>("nope")).unwrap_err(), "nope");
        assert_eq!(*reg.get_or_load(&1, || Ok::<_, &str>("ok".to_string())).unwrap(), "ok");
    }

    #[test]
    fn concurrent_requests_load_once() {
        let reg: Arc<Registry<u32, String>> = Arc::new(Registry::default());
        let loads = Arc::new(AtomicUsize::new(0));
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let (reg, loads) = (reg.clone(), loads.clone());
                std::thread::spawn(move || {
                    reg.get_or_load(&7, || {
                        loads.fetch_add(1, Ordering::SeqCst);
                        std::thread::sleep(std::time::Duration::from_millis(20));
                        Ok::<_, ()>("m".to_string())
                    })
                    .unwrap()
                })
            })
            .collect();
        let vals: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        assert_eq!(loads.load(Ordering::SeqCst), 1);
        assert!(vals.windows(2).all(|w| Arc::ptr_eq(&w[0], &w[1])));
    }
}
