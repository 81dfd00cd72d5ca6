//! Flags and helpers several commands share: the model and where it is, the device and compute
//! path, the LM speed options, benchmark runs, progress bars, prompt weights.
//!
//! Environment variables (`MRT_MODEL_SIZE`, `MRT_DEVICE`, `MRT_LM_WEIGHTS`, `MRT_DEPTH_LOGITS`,
//! `MRT_LM_KERNELS`, `MRT_MODEL_DIR`, …) are read here and in the plugin, never in the library.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::ValueEnum;
use mrt::v1::lm::LmConfig;
use mrt::{DeviceChoice, Target};

/// The model family (`--model`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ModelFamily {
    /// Magenta RealTime v1 (2 s chunks).
    V1,
    /// Magenta RealTime 2 (40 ms frames, MIDI and drum conditioning).
    Mrt2,
}

/// Which model and where.
#[derive(clap::Args, Clone)]
pub struct ModelArgs {
    /// v1: base, large; MRT2: small, base; or a size named in the model dir's mrt-live.json (the
    /// tiny models' is "tiny"). Default: the one size the model dir's mrt-live.json declares for
    /// the model, else base (v1) or small (MRT2, the size that can keep up on a CPU).
    #[arg(long, env = "MRT_MODEL_SIZE")]
    pub size: Option<String>,
    /// A folder with magenta-realtime/ and magenta-realtime-2/ (default: $MRT_MODEL_DIR, then the
    /// Hugging Face cache).
    #[arg(long)]
    pub model_dir: Option<PathBuf>,
    /// flex (CPU), wgpu or cuda (default: the best one compiled in).
    #[arg(long, env = "MRT_DEVICE")]
    pub device: Option<DeviceChoice>,
}

impl ModelArgs {
    /// The size asked for, or the default for `family` (see `--size`).
    pub fn size(&self, family: ModelFamily) -> Result<String> {
        if let Some(s) = &self.size {
            return Ok(s.clone());
        }
        if let Some(sizes) = mrt::assets::manifest_sizes(self.model_dir.as_deref(), &settings())? {
            let declared = match family {
                ModelFamily::V1 => sizes.v1,
                ModelFamily::Mrt2 => sizes.mrt2,
            };
            if let [only] = declared.as_slice() {
                return Ok(only.clone());
            }
        }
        Ok(match family {
            ModelFamily::V1 => "base",
            ModelFamily::Mrt2 => "small",
        }
        .to_owned())
    }

    pub fn locate(&self) -> Result<mrt::assets::ModelPaths> {
        Ok(mrt::assets::ModelPaths::locate_with(&self.size(ModelFamily::V1)?, self.model_dir.as_deref(), &settings())?)
    }

    /// Downloads go into --model-dir when given, else the Hugging Face cache.
    pub fn fetch_target(&self) -> mrt::assets::FetchTarget {
        match &self.model_dir {
            Some(d) => mrt::assets::FetchTarget::ModelDir(d.clone()),
            None => mrt::assets::FetchTarget::HfCache,
        }
    }

    /// The device with the default (host-kernel) compute path.
    pub fn target(&self) -> Result<Target> {
        target(self.device, true)
    }
}

/// How the LM runs (speed options; the defaults are the exact path).
#[derive(clap::Args, Clone)]
pub struct LmFlags {
    /// Decoder weights: f32 (exact), bf16 (half the bytes per step) or int8 (a quarter, one scale
    /// per row); the CPU and GPU kernels take all three, burn's ops f32 only.
    #[arg(long = "lm-weights", env = "MRT_LM_WEIGHTS", default_value = "f32")]
    pub precision: mrt::v1::lm::WeightPrecision,
    /// Depth-step logits over the whole vocabulary (exact) or only the current level's ids.
    #[arg(long = "depth-logits", env = "MRT_DEPTH_LOGITS", default_value = "all")]
    pub depth_logits: mrt::v1::lm::DepthLogits,
    /// The LM decoder's kernels: host (ours: the host kernels on the CPU, the GPU kernels on wgpu and
    /// CUDA; the default) or burn (burn ops, the reference path).
    #[arg(long, env = "MRT_LM_KERNELS", default_value = "host", action = clap::ArgAction::Set, value_parser = mrt::device::parse_host_kernels)]
    pub kernels: bool,
}

impl LmFlags {
    pub fn options(&self) -> mrt::v1::lm::LmOptions {
        mrt::v1::lm::LmOptions { precision: self.precision, depth_logits: self.depth_logits }
    }

    /// The device with the compute path the flags ask for.
    pub fn target(&self, device: Option<DeviceChoice>) -> Result<Target> {
        target(device, self.kernels)
    }
}

/// What an LM benchmark runs: model size, device, chunks, threads and LM options.
#[derive(clap::Args, Clone)]
pub struct BenchRun {
    /// v1: base, large; MRT2: small, base; or a v1 size the --model-dir's mrt-live.json names
    /// (the tiny model's "tiny"): its config, with random weights like the released sizes.
    #[arg(long, default_value = "base")]
    pub size: String,
    /// The model dir whose mrt-live.json names --size (default: $MRT_MODEL_DIR).
    #[arg(long)]
    pub model_dir: Option<PathBuf>,
    #[arg(long)]
    pub device: Option<DeviceChoice>,
    #[arg(long, default_value_t = 1)]
    pub chunks: usize,
    /// CPU threads (default: one per core).
    #[arg(long)]
    pub threads: Option<usize>,
    #[command(flatten)]
    pub lm: LmFlags,
}

impl BenchRun {
    /// The v1 LM config of `--size`: base and large are built in, any other size comes from the
    /// model dir's manifest (nothing else of the model is read: the weights are random).
    pub fn config(&self) -> Result<LmConfig> {
        match self.size.as_str() {
            "base" => Ok(LmConfig::base()),
            "large" => Ok(LmConfig::large()),
            "small" => bail!("v1 has sizes base and large (small is an MRT2 size: add --model mrt2)"),
            other => {
                let paths = mrt::assets::ModelPaths::locate_with(other, self.model_dir.as_deref(), &settings())
                    .with_context(|| format!("v1 size `{other}` (base, large, or one the --model-dir's mrt-live.json names)"))?;
                Ok(paths.lm_config)
            }
        }
    }

    /// The MRT2 config of `--size`: small and base are built in; any other size is an MRT2
    /// fixture set's `config.json` in --model-dir (e.g. `--size m1 --model-dir
    /// shared/fixtures/mrt2/M1`: its sizes, random weights).
    pub fn mrt2_config(&self) -> Result<mrt::mrt2::Mrt2Config> {
        match self.size.as_str() {
            "small" => Ok(mrt::mrt2::Mrt2Config::mrt2_small()),
            "base" => Ok(mrt::mrt2::Mrt2Config::mrt2_base()),
            other => {
                let dir = self.model_dir.as_deref().with_context(|| format!("MRT2 size `{other}`: the presets are small and base; other sizes need --model-dir with an MRT2 config.json"))?;
                mrt::mrt2::Mrt2Config::from_fixture_json(dir.join("config.json")).with_context(|| format!("MRT2 size `{other}` from {}", dir.display()))
            }
        }
    }

    /// Checks the chunk count, sizes the thread pool and resolves the target.
    pub fn prepare(&self) -> Result<Target> {
        if self.chunks == 0 {
            bail!("--chunks must be at least 1");
        }
        set_threads(self.threads)?;
        self.lm.target(self.device)
    }
}

/// The asset settings from this process's environment (`MRT_MODEL_DIR`, `MRT_CACHE_DIR`, `HF_*`).
pub fn settings() -> mrt::assets::Settings {
    mrt::assets::Settings::from_vars(|k| std::env::var_os(k))
}

/// Sizes the CPU thread pool (burn-flex and the host kernels share rayon's global pool).
pub fn set_threads(threads: Option<usize>) -> Result<()> {
    if let Some(n) = threads {
        if n == 0 {
            bail!("--threads must be at least 1");
        }
        rayon::ThreadPoolBuilder::new().num_threads(n).build_global().context("sizing the thread pool")?;
    }
    Ok(())
}

pub fn pick_device(choice: Option<DeviceChoice>) -> Result<DeviceChoice> {
    match choice {
        Some(c) => Ok(c),
        None => DeviceChoice::best_compiled().context("no backend compiled in: build with --features flex, wgpu or cuda"),
    }
}

/// The device (default: the best compiled in) with our kernels (host kernels on the CPU, GPU
/// kernels on GPUs) unless `host_kernels` is off.
pub fn target(choice: Option<DeviceChoice>, host_kernels: bool) -> Result<Target> {
    Target::with_kernels(pick_device(choice)?, host_kernels).map_err(anyhow::Error::msg)
}

/// Terminal progress for downloads and conversion.
pub struct Bars(indicatif::ProgressBar);

impl Bars {
    pub fn new() -> Self {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{msg:32} {bar:30} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        Self(bar)
    }
}

impl mrt::assets::Progress for Bars {
    fn begin(&self, what: &str, total_bytes: u64) {
        self.0.reset();
        self.0.set_length(total_bytes);
        self.0.set_message(what.to_string());
    }
    fn advance(&self, bytes: u64) {
        self.0.inc(bytes);
    }
    fn finish(&self) {
        self.0.finish();
    }
    fn note(&self, text: &str) {
        self.0.println(text);
    }
}

/// Locates the model; when files are missing, fetches them (into --model-dir if given, else the
/// Hugging Face cache); then makes sure the LM is in the converted cache. Fails fast offline
/// with the list of files needed.
pub fn ensure_model(model: &ModelArgs) -> Result<mrt::assets::ModelPaths> {
    let settings = settings();
    let size = model.size(ModelFamily::V1)?;
    let paths = match mrt::assets::ModelPaths::locate_with(&size, model.model_dir.as_deref(), &settings) {
        Ok(p) => p,
        Err(mrt::assets::AssetError::Missing(_)) => {
            eprintln!("model `{size}` is not complete on disk: fetching what is missing");
            let target = model.fetch_target();
            mrt::assets::fetch_with(&size, &target, &mrt::assets::FetchOptions::default(), &settings, &Bars::new())?
        }
        Err(e) => return Err(e.into()),
    };
    convert_lm(paths)
}

/// Points `paths` at the converted LM (converting once if needed).
pub fn convert_lm(paths: mrt::assets::ModelPaths) -> Result<mrt::assets::ModelPaths> {
    Ok(mrt::assets::with_converted_lm(paths, &settings().cache_dir, &Bars::new())?)
}

/// Weights for `n` prompts: all 1 when none are given, else one per prompt.
pub fn prompt_weights(n: usize, weights: &[f32]) -> Result<Vec<f32>> {
    if let Some(w) = weights.iter().find(|w| !(w.is_finite() && **w >= 0.0)) {
        bail!("weight {w}: weights must be finite and ≥ 0");
    }
    match weights.len() {
        0 => Ok(vec![1.0; n]),
        k if k == n => Ok(weights.to_vec()),
        k => bail!("{k} weights for {n} prompts: give one --weight per prompt"),
    }
}

/// Loads the style model from `files`, saying on stderr which one it is (MRT2's own MusicCoCa,
/// or v1's for MRT2 when MRT2's files are absent) and whether text goes through MRT2's mapper
/// (`mapper`: use it where installed).
pub fn load_style(files: &mrt::style::StyleFiles, mapper: bool, device: &burn::tensor::Device) -> Result<mrt::style::StyleModel> {
    let mut files = files.clone();
    let which = match &mut files {
        mrt::style::StyleFiles::V1(p) => format!("v1's MusicCoCa ({})", p.savedmodel.display()),
        mrt::style::StyleFiles::Mrt2(p) => {
            let note = match (&p.mapper, mapper) {
                (Some(_), true) => "; text through mapper.tflite",
                (Some(_), false) => "; mapper.tflite not used (--no-mapper)",
                (None, _) => "; no mapper.tflite",
            };
            if !mapper {
                p.mapper = None;
            }
            format!("MRT2's MusicCoCa ({}{note})", p.text_encoder.parent().unwrap_or(&p.text_encoder).display())
        }
    };
    eprintln!("style model: {which}");
    mrt::style::StyleModel::load_files(&files, device).with_context(|| format!("loading {which}"))
}
