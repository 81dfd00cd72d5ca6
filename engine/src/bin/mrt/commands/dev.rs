//! `mrt dev`: developer tools.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;

#[derive(clap::Subcommand)]
pub enum DevWhat {
    /// Write the tiny test models in the official layouts (v1: L1 LM + C1 codec fixtures + a tiny
    /// random MusicCoCa; MRT2: the M1 checkpoint); use them with `--model-dir DIR --size tiny`
    /// (and `--model mrt2`).
    TinyModel {
        dir: PathBuf,
        /// The golden fixtures folder (holding lm/L1, codec/C1 and mrt2/M1).
        #[arg(long, env = "MRT_FIXTURES", default_value = "../shared/fixtures")]
        fixtures: PathBuf,
    },
}

impl DevWhat {
    pub fn run(self) -> Result<ExitCode> {
        match self {
            DevWhat::TinyModel { dir, fixtures } => {
                mrt::tiny_model::write(&dir, &fixtures)?;
                println!("tiny model written to {} (use --model-dir {} --size {})", dir.display(), dir.display(), mrt::tiny_model::TINY_SIZE);
                Ok(ExitCode::SUCCESS)
            }
        }
    }
}
