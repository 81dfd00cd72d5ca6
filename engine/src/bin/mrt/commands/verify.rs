//! `mrt verify --official DIR`: this engine against the official test data.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Result};

use crate::args::ModelArgs;

#[derive(clap::Args)]
pub struct Args {
    /// The folder holding `musiccoca_mv212/` and/or `ssv2_48k_stereo/` (the official `testdata/`).
    #[arg(long)]
    official: PathBuf,
    #[command(flatten)]
    model: ModelArgs,
}

impl Args {
    pub fn run(self) -> Result<ExitCode> {
        let Self { official, model } = self;
        let paths = model.locate()?;
        let target = model.target()?;
        let mut report = mrt::verify::Report::default();
        let (mc, ss) = (official.join("musiccoca_mv212"), official.join("ssv2_48k_stereo"));
        if !mc.is_dir() && !ss.is_dir() {
            bail!("{}: neither musiccoca_mv212/ nor ssv2_48k_stereo/ is there (point --official at the official testdata/ folder)", official.display());
        }
        if mc.is_dir() {
            let style = mrt::v1::system::load::load_style(&paths, &target.device)?;
            mrt::verify::verify_musiccoca(&mc, &style, &mut report)?;
        }
        if ss.is_dir() {
            let codec = mrt::codec::Codec::load(&paths.codec_dir.path, paths.codec_config.clone(), &target)?;
            mrt::verify::verify_codec(&ss, &codec, &mut report)?;
        }
        println!("device: {}", target.choice);
        println!("{report}");
        Ok(if report.passed() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
    }
}
