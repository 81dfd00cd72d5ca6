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
    /// Benchmarks at the real model size with random weights.
    Bench {
        #[command(subcommand)]
        what: BenchWhat,
    },
}

#[derive(Subcommand)]
enum BenchWhat {
    /// The LM decode loop: encoder, temporal and depth steps, seconds per chunk.
    Lm {
        #[arg(long, value_enum, default_value_t = Size::Base)]
        size: Size,
        #[arg(long)]
        device: Option<DeviceChoice>,
        #[arg(long, default_value_t = 1)]
        chunks: usize,
        /// Also write the figures as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
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
        Command::Bench { what: BenchWhat::Lm { size, device, chunks, json } } => {
            if chunks == 0 {
                bail!("--chunks must be at least 1");
            }
            let choice = pick_device(device)?;
            let report = mrt::bench::bench_lm(size.name(), size.config(), choice, chunks).map_err(anyhow::Error::msg)?;
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
