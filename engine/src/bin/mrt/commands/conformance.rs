//! `mrt conformance DIR`: a golden-fixture ladder.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use mrt::DeviceChoice;

#[derive(clap::Args)]
pub struct Args {
    fixture: PathBuf,
    /// flex, wgpu or cuda (default: the best compiled in).
    #[arg(long)]
    device: Option<DeviceChoice>,
}

impl Args {
    pub fn run(self) -> Result<ExitCode> {
        let target = crate::args::target(self.device, true)?;
        let report = mrt::conformance::run(&self.fixture, &target)
            .with_context(|| format!("conformance ladder for {}", self.fixture.display()))?;
        println!("device: {}", target.choice);
        println!("{report}");
        Ok(if report.passed() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
    }
}
