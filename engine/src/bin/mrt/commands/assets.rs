//! `mrt fetch` and `mrt convert`: the official weights on disk.

use std::process::ExitCode;

use anyhow::Result;

use crate::args::{convert_lm, settings, Bars, ModelArgs};

#[derive(clap::Args)]
pub struct FetchArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Also fetch the official test data (for `mrt verify`).
    #[arg(long)]
    testdata: bool,
}

#[derive(clap::Args)]
pub struct ConvertArgs {
    #[command(flatten)]
    model: ModelArgs,
}

impl FetchArgs {
    pub fn run(self) -> Result<ExitCode> {
        let target = self.model.fetch_target();
        let options = mrt::assets::FetchOptions { testdata: self.testdata };
        let paths = mrt::assets::fetch_with(&self.model.size, &target, &options, &settings(), &Bars::new())?;
        let paths = convert_lm(paths)?;
        println!("model `{}` ready: LM {} (from {})", paths.size, paths.lm_checkpoint.path.display(), paths.codec_dir.source);
        Ok(ExitCode::SUCCESS)
    }
}

impl ConvertArgs {
    pub fn run(self) -> Result<ExitCode> {
        let paths = convert_lm(self.model.locate()?)?;
        println!("LM `{}` converted: {}", paths.size, paths.lm_checkpoint.path.display());
        Ok(ExitCode::SUCCESS)
    }
}
