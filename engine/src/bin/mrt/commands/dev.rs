//! `mrt dev`: developer tools.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Result};

#[derive(clap::Subcommand)]
pub enum DevWhat {
    /// Write the tiny test models in the official layouts (v1: L1 LM + C1 codec fixtures + a tiny
    /// random MusicCoCa; MRT2: the M1 checkpoint); use them with `--model-dir DIR --size tiny`
    /// (and `--model mrt2`).
    TinyModel {
        dir: PathBuf,
        /// The golden fixtures folder (holding lm/L1, codec/C1 and mrt2/M1). Default: a
        /// `shared/fixtures` beside or above the current directory or this executable.
        #[arg(long, env = "MRT_FIXTURES")]
        fixtures: Option<PathBuf>,
    },
}

impl DevWhat {
    pub fn run(self) -> Result<ExitCode> {
        match self {
            DevWhat::TinyModel { dir, fixtures } => {
                let fixtures = match fixtures {
                    Some(f) => f,
                    None => find_fixtures()?,
                };
                mrt::tiny_model::write(&dir, &fixtures)?;
                println!("tiny model written to {} (use --model-dir {} --size {})", dir.display(), dir.display(), mrt::tiny_model::TINY_SIZE);
                Ok(ExitCode::SUCCESS)
            }
        }
    }
}

/// The first `shared/fixtures` holding the sets the tiny models are made of, looking in each
/// ancestor of the current directory and of this executable (a checkout's `target/*/mrt` finds
/// the `../shared/fixtures` of its repository wherever it is run from).
fn find_fixtures() -> Result<PathBuf> {
    let mut starts = Vec::new();
    starts.extend(std::env::current_dir().ok());
    starts.extend(std::env::current_exe().ok().and_then(|e| e.parent().map(Path::to_path_buf)));
    for start in &starts {
        for dir in start.ancestors() {
            for candidate in [dir.join("shared/fixtures"), dir.join("../shared/fixtures")] {
                if ["lm/L1", "codec/C1", "mrt2/M1"].iter().all(|set| candidate.join(set).join("config.json").is_file()) {
                    return Ok(candidate);
                }
            }
        }
    }
    bail!(
        "no golden fixtures folder (with lm/L1, codec/C1 and mrt2/M1) found above {}; give --fixtures DIR or MRT_FIXTURES",
        starts.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(" or ")
    )
}
