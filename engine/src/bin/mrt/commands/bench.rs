//! `mrt bench`: timings at the real model size with random weights.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use mrt::DeviceChoice;

use crate::args::{BenchRun, LmFlags};

#[derive(clap::Subcommand)]
pub enum BenchWhat {
    /// The LM decode loop: encoder, temporal and depth steps, seconds per chunk.
    Lm {
        #[command(flatten)]
        run: BenchRun,
        /// Also write the figures as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// How far the LM speed options move a fixture's greedy run from the reference tokens
    /// (conformance always runs the exact path). v1 LM sets take every option; MRT2 sets take
    /// `--lm-weights` (f32, bf16, int8).
    Agreement {
        /// LM or MRT2 fixture sets (`shared/fixtures/lm/*`, `shared/fixtures/mrt2/*`).
        #[arg(required = true)]
        fixtures: Vec<PathBuf>,
        #[arg(long)]
        device: Option<DeviceChoice>,
        #[command(flatten)]
        lm: LmFlags,
    },
    /// One streaming chunk end to end: the LM (encoder, temporal, depth, logits, sampling) and
    /// the codec decode of its 51 frames, as a table and JSON.
    /// MRT2 (`--model mrt2`): frames of the LM step (split by part) and the streamed codec step.
    All {
        #[command(flatten)]
        run: BenchRun,
        #[arg(long, value_enum, default_value = "v1")]
        model: crate::args::ModelFamily,
        /// MRT2: frames timed (after 2 warm-up frames).
        #[arg(long, default_value_t = 25)]
        frames: usize,
        /// Where the JSON goes.
        #[arg(long, default_value = "mrt-bench.json")]
        json: PathBuf,
    },
    /// Several streams generating at once on one shared model (as plugin instances share one),
    /// against the same chunks one after another: the model's weights are shared and immutable,
    /// each stream keeps its own buffers, so streams do not wait for each other.
    Streams {
        #[command(flatten)]
        run: BenchRun,
        /// How many streams.
        #[arg(long, default_value_t = 2)]
        streams: usize,
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

fn write_json(path: &std::path::Path, report: &impl serde::Serialize) -> Result<()> {
    std::fs::write(path, serde_json::to_string_pretty(report)?).with_context(|| format!("writing {}", path.display()))
}

impl BenchWhat {
    pub fn run(self) -> Result<ExitCode> {
        match self {
            BenchWhat::Agreement { fixtures, device, lm } => {
                let target = lm.target(device)?;
                for dir in &fixtures {
                    let context = || format!("fixture {}", dir.display());
                    if mrt::conformance::kind(dir).with_context(context)?.0.as_deref() == Some("mrt2") {
                        println!("{}", mrt::conformance::mrt2::agreement(dir, lm.precision).with_context(context)?);
                        continue;
                    }
                    let a = mrt::conformance::lm::agreement(dir, &target, lm.options()).with_context(context)?;
                    println!("{a}");
                }
            }
            BenchWhat::All { run, model: crate::args::ModelFamily::Mrt2, frames, json } => {
                if !run.lm.kernels {
                    anyhow::bail!("MRT2 has no burn path: it runs on the host kernels (CPU) or the GPU kernels (wgpu, cuda)");
                }
                let target = run.prepare()?;
                let cfg = run.mrt2_config()?;
                let report = mrt::bench::bench_mrt2(&run.size, cfg, run.lm.precision, frames, &target).map_err(anyhow::Error::msg)?;
                println!("{report}");
                write_json(&json, &report)?;
                println!("JSON: {}", json.display());
            }
            BenchWhat::All { run, json, .. } => {
                let target = run.prepare()?;
                let report = mrt::bench::bench_all(&run.size, run.config()?, &target, run.lm.options(), run.chunks).map_err(anyhow::Error::msg)?;
                println!("{report}");
                write_json(&json, &report)?;
                println!("JSON: {}", json.display());
            }
            BenchWhat::Lm { run, json } => {
                let target = run.prepare()?;
                let report = mrt::bench::bench_lm(&run.size, run.config()?, &target, run.lm.options(), run.chunks).map_err(anyhow::Error::msg)?;
                println!("{report}");
                if let Some(path) = json {
                    write_json(&path, &report)?;
                }
            }
            BenchWhat::Streams { run, streams, json } => {
                let target = run.prepare()?;
                let report = mrt::bench::bench_streams(&run.size, run.config()?, &target, run.lm.options(), streams, run.chunks)
                    .map_err(anyhow::Error::msg)?;
                println!("{report}");
                if let Some(path) = json {
                    write_json(&path, &report)?;
                }
            }
            BenchWhat::Codec { device, reps, json } => {
                let target = crate::args::target(device, true)?;
                let report = mrt::codec::bench::bench_codec(&target, reps).map_err(anyhow::Error::msg)?;
                println!("{report}");
                if let Some(path) = json {
                    write_json(&path, &report)?;
                }
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}
