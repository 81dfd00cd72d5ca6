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
}

fn pick_device(choice: Option<DeviceChoice>) -> Result<DeviceChoice> {
    match choice {
        Some(c) => Ok(c),
        None => DeviceChoice::best_compiled().context("no backend compiled in: build with --features flex, wgpu or cuda"),
    }
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
