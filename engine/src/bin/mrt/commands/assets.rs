//! `mrt fetch` and `mrt convert`: the official weights on disk.

use std::process::ExitCode;

use anyhow::Result;

use crate::args::{convert_lm, settings, Bars, ModelArgs, ModelFamily};

#[derive(clap::Args)]
pub struct FetchArgs {
    /// v1 or mrt2 (MRT2: `checkpoints/mrt2_<size>.safetensors` of google/magenta-realtime-2).
    #[arg(long = "model", value_enum, default_value = "v1")]
    family: ModelFamily,
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
        if self.family == ModelFamily::Mrt2 {
            if self.testdata {
                anyhow::bail!("--testdata is v1's test data: leave out --model mrt2");
            }
            let paths = mrt::assets::fetch_mrt2(&self.model.size(ModelFamily::Mrt2)?, &target, &settings(), &Bars::new())?;
            println!("MRT2 `{}` ready: {} (from {})", paths.size, paths.checkpoint.path.display(), paths.checkpoint.source);
            return Ok(ExitCode::SUCCESS);
        }
        let options = mrt::assets::FetchOptions { testdata: self.testdata };
        let paths = mrt::assets::fetch_with(&self.model.size(ModelFamily::V1)?, &target, &options, &settings(), &Bars::new())?;
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
