//! `mrt`: the MRT Live engine from the command line. This file parses and dispatches; each
//! command lives in `commands/`, the shared flags in `args.rs`.

mod args;
mod commands;
mod midi;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use commands::{assets, bench, codec, conformance, dev, embed, generate, verify};

#[derive(Parser)]
#[command(name = "mrt", version, about = "Magenta RealTime v1 on burn: conformance, benchmarks, generation")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a golden-fixture ladder (a directory with config.json, e.g. shared/fixtures/lm/L1).
    Conformance(conformance::Args),
    /// Encode audio (WAV/FLAC/MP3/OGG; resampled to 48 kHz, mono → stereo) to SpectroStream codes:
    /// an int32 .npy of shape [frames, levels], 25 frames per second.
    Encode(codec::EncodeArgs),
    /// Decode SpectroStream codes (.npy of [frames, levels] or [1, frames, levels]) to a 48 kHz
    /// stereo 32-bit float WAV.
    Decode(codec::DecodeArgs),
    /// Style embeddings of text and audio prompts: the norm and the 12 style tokens of each, and
    /// of their weighted blend (`Σ wᵢ·eᵢ / Σ wᵢ`).
    Embed(embed::Args),
    /// Check this engine against the official test data (`testdata/musiccoca_mv212`,
    /// `testdata/ssv2_48k_stereo` of google/magenta-realtime): a table with pass/fail.
    Verify(verify::Args),
    /// Generate music from weighted prompts into a WAV (48 kHz stereo, 32-bit float).
    Generate(Box<generate::Args>),
    /// Download what a model size needs (into the Hugging Face cache, or --model-dir), with
    /// resume and checksums, then convert the LM into the fast cache.
    Fetch(assets::FetchArgs),
    /// Convert a located LM checkpoint (t5x zarr) once into a memory-mappable safetensors cache.
    Convert(assets::ConvertArgs),
    /// Developer tools.
    Dev {
        #[command(subcommand)]
        what: dev::DevWhat,
    },
    /// Benchmarks at the real model size with random weights.
    Bench {
        #[command(subcommand)]
        what: bench::BenchWhat,
    },
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Conformance(a) => a.run(),
        Command::Encode(a) => a.run(),
        Command::Decode(a) => a.run(),
        Command::Embed(a) => a.run(),
        Command::Verify(a) => a.run(),
        Command::Generate(a) => a.run(),
        Command::Fetch(a) => a.run(),
        Command::Convert(a) => a.run(),
        Command::Dev { what } => what.run(),
        Command::Bench { what } => what.run(),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
