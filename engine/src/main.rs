//! `mrt`: the MRT Live engine from the command line.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use mrt::lm::LmConfig;
use mrt::DeviceChoice;

#[derive(Parser)]
#[command(name = "mrt", version, about = "Magenta RealTime v1 on burn: conformance, benchmarks, generation")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum Size {
    Base,
    Large,
}

impl Size {
    fn config(self) -> LmConfig {
        match self {
            Size::Base => LmConfig::base(),
            Size::Large => LmConfig::large(),
        }
    }
    fn name(self) -> &'static str {
        match self {
            Size::Base => "base",
            Size::Large => "large",
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Run a golden-fixture ladder (a directory with config.json, e.g. shared/fixtures/lm/L1).
    Conformance {
        fixture: PathBuf,
        /// flex, wgpu or cuda (default: the best compiled in).
        #[arg(long)]
        device: Option<DeviceChoice>,
    },
    /// Encode audio (WAV/FLAC/MP3/OGG; resampled to 48 kHz, mono → stereo) to SpectroStream codes:
    /// an int32 .npy of shape [frames, levels], 25 frames per second.
    Encode {
        input: PathBuf,
        #[arg(short, long)]
        output: PathBuf,
        /// RVQ levels to keep (the LM reads 4 and writes 16; the codec has 64).
        #[arg(long, default_value_t = 16)]
        levels: usize,
        /// Directory with encoder.safetensors, decoder.safetensors and quantizer.safetensors
        /// (MRT2's resources/spectrostream, or a fixture set).
        #[arg(long)]
        weights: PathBuf,
        /// A codec config.json (default: the released 48 kHz stereo codec).
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long)]
        device: Option<DeviceChoice>,
    },
    /// Decode SpectroStream codes (.npy of [frames, levels] or [1, frames, levels]) to a 48 kHz
    /// stereo 32-bit float WAV.
    Decode {
        input: PathBuf,
        #[arg(short, long)]
        output: PathBuf,
        /// Use only the first N levels (default: all in the file).
        #[arg(long)]
        levels: Option<usize>,
        #[arg(long)]
        weights: PathBuf,
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long)]
        device: Option<DeviceChoice>,
    },
    /// Style embeddings of text and audio prompts: the norm and the 12 style tokens of each, and
    /// of their weighted blend (`Σ wᵢ·eᵢ / Σ wᵢ`).
    Embed {
        /// Text, or an audio file (an existing path, or a name ending in .wav/.flac/.mp3/.ogg).
        #[arg(required = true)]
        prompts: Vec<String>,
        /// One weight ≥ 0 per prompt (repeat, or comma-separate); default 1 each.
        #[arg(long = "weight", alias = "weights", value_delimiter = ',')]
        weights: Vec<f32>,
        #[command(flatten)]
        model: ModelArgs,
        /// Print the whole embedding too.
        #[arg(long)]
        full: bool,
    },
    /// Check this engine against the official test data (`testdata/musiccoca_mv212`,
    /// `testdata/ssv2_48k_stereo` of google/magenta-realtime): a table with pass/fail.
    Verify {
        /// The folder holding `musiccoca_mv212/` and/or `ssv2_48k_stereo/` (the official `testdata/`).
        #[arg(long)]
        official: PathBuf,
        #[command(flatten)]
        model: ModelArgs,
    },
    /// Generate music from weighted prompts into a WAV (48 kHz stereo, 32-bit float).
    Generate {
        /// A text prompt or an audio file (repeat for a blend); none: unconditional.
        #[arg(long = "prompt")]
        prompts: Vec<String>,
        /// One weight ≥ 0 per prompt (repeat, or comma-separate); default 1 each.
        #[arg(long = "weight", alias = "weights", value_delimiter = ',')]
        weights: Vec<f32>,
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        #[arg(long, default_value_t = 1.1)]
        temperature: f32,
        #[arg(long = "top-k", default_value_t = 40)]
        top_k: usize,
        #[arg(long = "guidance", default_value_t = 5.0)]
        guidance: f32,
        #[arg(short, long)]
        output: PathBuf,
        /// Save the streaming state here afterwards (JSON), to continue later with --resume.
        #[arg(long)]
        save_state: Option<PathBuf>,
        /// Continue from a saved state.
        #[arg(long)]
        resume: Option<PathBuf>,
        #[command(flatten)]
        model: ModelArgs,
        #[command(flatten)]
        lm: LmFlags,
    },
    /// Download what a model size needs (into the Hugging Face cache, or --model-dir), with
    /// resume and checksums, then convert the LM into the fast cache.
    Fetch {
        #[command(flatten)]
        model: ModelArgs,
        /// Also fetch the official test data (for `mrt verify`).
        #[arg(long)]
        testdata: bool,
    },
    /// Convert a located LM checkpoint (t5x zarr) once into a memory-mappable safetensors cache.
    Convert {
        #[command(flatten)]
        model: ModelArgs,
    },
    /// Developer tools.
    Dev {
        #[command(subcommand)]
        what: DevWhat,
    },
    /// Benchmarks at the real model size with random weights.
    Bench {
        #[command(subcommand)]
        what: BenchWhat,
    },
}

#[derive(Subcommand)]
enum DevWhat {
    /// Write the tiny test model (L1 LM + C1 codec fixtures + a tiny random MusicCoCa) in the
    /// official layouts; use it with `--model-dir DIR --size tiny`.
    TinyModel {
        dir: PathBuf,
        /// The golden fixtures folder (holding lm/L1 and codec/C1).
        #[arg(long, env = "MRT_FIXTURES", default_value = "../shared/fixtures")]
        fixtures: PathBuf,
    },
}

/// Which model and where.
#[derive(clap::Args, Clone)]
struct ModelArgs {
    /// base, large, or a size named in the model dir's mrt-live.json (the tiny model's is "tiny").
    #[arg(long, env = "MRT_MODEL_SIZE", default_value = "base")]
    size: String,
    /// A folder with magenta-realtime/ and magenta-realtime-2/ (default: $MRT_MODEL_DIR, then the
    /// Hugging Face cache).
    #[arg(long)]
    model_dir: Option<PathBuf>,
    /// flex (CPU), wgpu or cuda (default: the best one compiled in).
    #[arg(long, env = "MRT_DEVICE")]
    device: Option<DeviceChoice>,
}

/// How the LM runs (speed options; the defaults are the exact path).
#[derive(clap::Args, Clone)]
struct LmFlags {
    /// Decoder weights on the CPU path: f32 (exact) or bf16 (half the bytes per step).
    #[arg(long = "lm-weights", env = "MRT_LM_WEIGHTS", default_value = "f32")]
    precision: mrt::lm::WeightPrecision,
    /// Depth-step logits over the whole vocabulary (exact) or only the current level's ids.
    #[arg(long = "depth-logits", env = "MRT_DEPTH_LOGITS", default_value = "all")]
    depth_logits: mrt::lm::DepthLogits,
    /// Decode steps with the host kernels (host) or burn ops (burn) on the flex device.
    #[arg(long, env = "MRT_LM_KERNELS", default_value = "host", value_parser = ["host", "burn"])]
    kernels: String,
}

impl LmFlags {
    fn options(&self) -> mrt::lm::LmOptions {
        mrt::lm::LmOptions { precision: self.precision, depth_logits: self.depth_logits, cpu_kernels: self.kernels == "host" }
    }
}

/// What an LM benchmark runs: model size, device, chunks, threads and LM options.
#[derive(clap::Args, Clone)]
struct BenchRun {
    #[arg(long, value_enum, default_value_t = Size::Base)]
    size: Size,
    #[arg(long)]
    device: Option<DeviceChoice>,
    #[arg(long, default_value_t = 1)]
    chunks: usize,
    /// CPU threads (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
    #[command(flatten)]
    lm: LmFlags,
}

impl BenchRun {
    /// Checks the chunk count, sizes the thread pool and picks the device.
    fn prepare(&self) -> Result<DeviceChoice> {
        if self.chunks == 0 {
            bail!("--chunks must be at least 1");
        }
        set_threads(self.threads)?;
        pick_device(self.device)
    }
}

/// Sizes the CPU thread pool (burn-flex and the host kernels share rayon's global pool).
fn set_threads(threads: Option<usize>) -> Result<()> {
    if let Some(n) = threads {
        if n == 0 {
            bail!("--threads must be at least 1");
        }
        rayon::ThreadPoolBuilder::new().num_threads(n).build_global().context("sizing the thread pool")?;
    }
    Ok(())
}

impl ModelArgs {
    fn locate(&self) -> Result<mrt::assets::ModelPaths> {
        Ok(mrt::assets::ModelPaths::locate(&self.size, self.model_dir.as_deref())?)
    }

    /// Downloads go into --model-dir when given, else the Hugging Face cache.
    fn fetch_target(&self) -> mrt::assets::FetchTarget {
        match &self.model_dir {
            Some(d) => mrt::assets::FetchTarget::ModelDir(d.clone()),
            None => mrt::assets::FetchTarget::HfCache,
        }
    }

    fn device(&self) -> Result<(DeviceChoice, burn::tensor::Device)> {
        let choice = pick_device(self.device)?;
        Ok((choice, choice.device().map_err(anyhow::Error::msg)?))
    }
}

/// Terminal progress for downloads and conversion.
struct Bars(indicatif::ProgressBar);

impl Bars {
    fn new() -> Self {
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
fn ensure_model(model: &ModelArgs) -> Result<mrt::assets::ModelPaths> {
    let paths = match mrt::assets::ModelPaths::locate(&model.size, model.model_dir.as_deref()) {
        Ok(p) => p,
        Err(mrt::assets::AssetError::Missing(_)) => {
            eprintln!("model `{}` is not complete on disk: fetching what is missing", model.size);
            let target = model.fetch_target();
            mrt::assets::fetch(&model.size, &target, &mrt::assets::FetchOptions::default(), &Bars::new())?
        }
        Err(e) => return Err(e.into()),
    };
    convert_lm(paths)
}

/// Points `paths` at the converted LM (converting once if needed).
fn convert_lm(paths: mrt::assets::ModelPaths) -> Result<mrt::assets::ModelPaths> {
    let settings = mrt::assets::Settings::from_env();
    Ok(mrt::assets::with_converted_lm(paths, &settings.cache_dir, &Bars::new())?)
}

use mrt::style::Prompt;

/// Weights for `n` prompts: all 1 when none are given, else one per prompt.
fn prompt_weights(n: usize, weights: &[f32]) -> Result<Vec<f32>> {
    if let Some(w) = weights.iter().find(|w| !(w.is_finite() && **w >= 0.0)) {
        bail!("weight {w}: weights must be finite and ≥ 0");
    }
    match weights.len() {
        0 => Ok(vec![1.0; n]),
        k if k == n => Ok(weights.to_vec()),
        k => bail!("{k} weights for {n} prompts: give one --weight per prompt"),
    }
}

fn norm(v: &[f32]) -> f64 {
    v.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>().sqrt()
}

#[derive(Subcommand)]
enum BenchWhat {
    /// The LM decode loop: encoder, temporal and depth steps, seconds per chunk.
    Lm {
        #[command(flatten)]
        run: BenchRun,
        /// Also write the figures as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// How far the LM speed options move an LM fixture's greedy chunk from the reference tokens
    /// (conformance always runs the exact path).
    Agreement {
        /// LM fixture sets (`shared/fixtures/lm/*`).
        #[arg(required = true)]
        fixtures: Vec<PathBuf>,
        #[arg(long)]
        device: Option<DeviceChoice>,
        #[command(flatten)]
        lm: LmFlags,
    },
    /// One streaming chunk end to end: the LM (encoder, temporal, depth, logits, sampling) and
    /// the codec decode of its 51 frames, as a table and JSON.
    All {
        #[command(flatten)]
        run: BenchRun,
        /// Where the JSON goes.
        #[arg(long, default_value = "mrt-bench.json")]
        json: PathBuf,
    },
    /// The SpectroStream codec at its released size: decode a 51-frame × 16-level chunk, encode 2 s.
    Codec {
        #[arg(long)]
        device: Option<DeviceChoice>,
        /// Timed repetitions of each call (after one warm-up).
        #[arg(long, default_value_t = 3)]
        reps: usize,
        /// Also write the figures as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
    },
}

fn pick_device(choice: Option<DeviceChoice>) -> Result<DeviceChoice> {
    match choice {
        Some(c) => Ok(c),
        None => DeviceChoice::best_compiled().context("no backend compiled in: build with --features flex, wgpu or cuda"),
    }
}

fn load_codec(weights: &std::path::Path, config: Option<&std::path::Path>, device: Option<DeviceChoice>) -> Result<mrt::codec::Codec> {
    let config = match config {
        Some(path) => mrt::codec::CodecConfig::from_json_file(path)?,
        None => mrt::codec::CodecConfig::spectrostream_48k_stereo(),
    };
    let dev = pick_device(device)?.device().map_err(anyhow::Error::msg)?;
    Ok(mrt::codec::Codec::load(weights, config, &dev)?)
}

fn run() -> Result<ExitCode> {
    let cli = Cli::parse();
    match cli.command {
        Command::Conformance { fixture, device } => {
            let choice = pick_device(device)?;
            let dev = choice.device().map_err(anyhow::Error::msg)?;
            let report = mrt::conformance::run(&fixture, &dev)
                .with_context(|| format!("conformance ladder for {}", fixture.display()))?;
            println!("device: {choice}");
            println!("{report}");
            Ok(if report.passed() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        Command::Bench { what: BenchWhat::Agreement { fixtures, device, lm } } => {
            let dev = pick_device(device)?.device().map_err(anyhow::Error::msg)?;
            for dir in &fixtures {
                let a = mrt::conformance::lm::agreement(dir, &dev, lm.options()).with_context(|| format!("fixture {}", dir.display()))?;
                println!("{a}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench { what: BenchWhat::All { run, json } } => {
            let choice = run.prepare()?;
            let report =
                mrt::bench::bench_all(run.size.name(), run.size.config(), choice, run.lm.options(), run.chunks).map_err(anyhow::Error::msg)?;
            println!("{report}");
            std::fs::write(&json, serde_json::to_string_pretty(&report)?).with_context(|| format!("writing {}", json.display()))?;
            println!("JSON: {}", json.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench { what: BenchWhat::Lm { run, json } } => {
            let choice = run.prepare()?;
            let report =
                mrt::bench::bench_lm(run.size.name(), run.size.config(), choice, run.lm.options(), run.chunks).map_err(anyhow::Error::msg)?;
            println!("{report}");
            if let Some(path) = json {
                std::fs::write(&path, serde_json::to_string_pretty(&report)?)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Encode { input, output, levels, weights, config, device } => {
            let codec = load_codec(&weights, config.as_deref(), device)?;
            let audio = mrt::codec::audio::read(&input)?;
            let (rate, channels) = (audio.sample_rate_hz, audio.channels);
            let planar = mrt::codec::audio::conform(audio, codec.config.sample_rate_hz, codec.channels(), &input)?;
            let codes = codec.encode_audio(&planar, levels).with_context(|| format!("encoding {}", input.display()))?;
            mrt::npy::write_i32(&output, &[codes.frames, codes.levels], &codes.data)?;
            println!(
                "{}: {channels} ch at {rate} Hz → {} frames × {} levels → {}",
                input.display(),
                codes.frames,
                codes.levels,
                output.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Decode { input, output, levels, weights, config, device } => {
            let codec = load_codec(&weights, config.as_deref(), device)?;
            let codes = mrt::npy::read_i32(&input)?;
            let (frames, stored) = match codes.shape.as_slice() {
                [f, l] | [1, f, l] => (*f, *l),
                other => bail!("{}: codes must be [frames, levels] or [1, frames, levels], found {other:?}", input.display()),
            };
            let levels = levels.unwrap_or(stored);
            if levels == 0 || levels > stored {
                bail!("--levels {levels}: the file has {stored} levels");
            }
            let kept: Vec<i32> = codes.data.chunks_exact(stored.max(1)).flat_map(|row| row[..levels].to_vec()).collect();
            let audio = codec.decode_codes(&kept, frames, levels).with_context(|| format!("decoding {}", input.display()))?;
            mrt::codec::audio::write_wav(&output, &audio, codec.channels(), codec.config.sample_rate_hz)?;
            println!("{}: {frames} frames × {levels} levels → {} samples → {}", input.display(), audio.len() / codec.channels(), output.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Embed { prompts, weights, model, full } => {
            let prompts: Vec<Prompt> = prompts.iter().map(|p| Prompt::parse(p)).collect();
            let weights = prompt_weights(prompts.len(), &weights)?;
            let paths = model.locate()?;
            let (_, dev) = model.device()?;
            let style = mrt::system::load::load_style(&paths, &dev)?;
            let mut embeddings = Vec::new();
            for p in &prompts {
                let e = p.embed(&style).with_context(|| format!("prompt {}", p.label()))?;
                let tokens = style.tokenize(&e)?;
                println!("{:<40} norm {:>8.4}  tokens {:?}", p.label(), norm(&e), tokens);
                if full {
                    println!("  {e:?}");
                }
                embeddings.push(e);
            }
            if prompts.len() > 1 {
                let parts: Vec<mrt::style::Weighted<'_>> =
                    embeddings.iter().zip(&weights).map(|(e, &weight)| mrt::style::Weighted { embedding: e, weight }).collect();
                match mrt::style::blend(&parts)? {
                    Some(b) => println!("{:<40} norm {:>8.4}  tokens {:?}", format!("blend {weights:?}"), norm(&b), style.tokenize(&b)?),
                    None => println!("blend {weights:?}: total weight 0 → no style (MASK tokens)"),
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Verify { official, model } => {
            let paths = model.locate()?;
            let (choice, dev) = model.device()?;
            let mut report = mrt::verify::Report::default();
            let (mc, ss) = (official.join("musiccoca_mv212"), official.join("ssv2_48k_stereo"));
            if !mc.is_dir() && !ss.is_dir() {
                bail!("{}: neither musiccoca_mv212/ nor ssv2_48k_stereo/ is there (point --official at the official testdata/ folder)", official.display());
            }
            if mc.is_dir() {
                let style = mrt::system::load::load_style(&paths, &dev)?;
                mrt::verify::verify_musiccoca(&mc, &style, &mut report)?;
            }
            if ss.is_dir() {
                let codec = mrt::codec::Codec::load(&paths.codec_dir.path, paths.codec_config.clone(), &dev)?;
                mrt::verify::verify_codec(&ss, &codec, &mut report)?;
            }
            println!("device: {choice}");
            println!("{report}");
            Ok(if report.passed() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        Command::Generate { prompts, weights, seconds, seed, temperature, top_k, guidance, output, save_state, resume, model, lm } => {
            mrt::system::offline::frames_for(seconds, 48_000)?;
            if !(temperature.is_finite() && temperature >= 0.0) {
                bail!("--temperature {temperature}: expected a finite value ≥ 0");
            }
            if !guidance.is_finite() {
                bail!("--guidance {guidance}: expected a finite value");
            }
            let prompts: Vec<Prompt> = prompts.iter().map(|p| Prompt::parse(p)).collect();
            let weights = prompt_weights(prompts.len(), &weights)?;
            let paths = ensure_model(&model)?;
            let (choice, dev) = model.device()?;
            eprintln!("model {} ({}), device {choice}", paths.size, paths.lm_checkpoint.source);
            let system = mrt::system::load::load_generator_with(&paths, &dev, lm.options())?;
            let style_codes = if prompts.is_empty() {
                None
            } else {
                let style = mrt::system::load::load_style(&paths, &dev)?;
                let weighted: Vec<(Prompt, f32)> = prompts.into_iter().zip(weights).collect();
                mrt::style::style_codes(&style, &weighted)?
            };
            let mut state = match &resume {
                Some(p) => mrt::system::StreamState::load(p)?,
                None => system.init_state(),
            };
            let params = mrt::lm::SamplingParams { temperature, top_k, guidance_weight: guidance, seed };
            let total = (seconds / 2.0).ceil() as u64;
            let bar = indicatif::ProgressBar::new(total);
            bar.set_style(
                indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} chunks  {msg}").unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            let frames = mrt::system::offline::generate_to_wav(&system, &mut state, style_codes.as_deref(), &params, seconds, &output, |p| {
                bar.set_position(p.chunk as u64);
                bar.set_message(format!("{:.1} s of audio, {:.2}× real time", p.audio_seconds, p.realtime_factor()));
            })?;
            bar.finish();
            if let Some(p) = &save_state {
                state.save(p)?;
            }
            println!("{}: {frames} frames ({:.2} s) at 48 kHz stereo", output.display(), frames as f64 / 48_000.0);
            Ok(ExitCode::SUCCESS)
        }
        Command::Fetch { model, testdata } => {
            let target = model.fetch_target();
            let paths = mrt::assets::fetch(&model.size, &target, &mrt::assets::FetchOptions { testdata }, &Bars::new())?;
            let paths = convert_lm(paths)?;
            println!("model `{}` ready: LM {} (from {})", paths.size, paths.lm_checkpoint.path.display(), paths.codec_dir.source);
            Ok(ExitCode::SUCCESS)
        }
        Command::Convert { model } => {
            let paths = convert_lm(model.locate()?)?;
            println!("LM `{}` converted: {}", paths.size, paths.lm_checkpoint.path.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Dev { what: DevWhat::TinyModel { dir, fixtures } } => {
            mrt::tiny_model::write(&dir, &fixtures)?;
            println!("tiny model written to {} (use --model-dir {} --size {})", dir.display(), dir.display(), mrt::tiny_model::TINY_SIZE);
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench { what: BenchWhat::Codec { device, reps, json } } => {
            let choice = pick_device(device)?;
            let report = mrt::codec::bench::bench_codec(choice, reps).map_err(anyhow::Error::msg)?;
            println!("{report}");
            if let Some(path) = json {
                std::fs::write(&path, serde_json::to_string_pretty(&report)?)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
