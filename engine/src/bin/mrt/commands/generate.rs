//! `mrt generate`: music from weighted prompts into a WAV.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Result};
use mrt::style::Prompt;

use crate::args::{ensure_model, prompt_weights, LmFlags, ModelArgs};

#[derive(clap::Args)]
pub struct Args {
    /// A text prompt or an audio file (repeat for a blend); none: unconditional.
    #[arg(long = "prompt")]
    prompts: Vec<String>,
    /// One weight ≥ 0 per prompt (repeat, or comma-separate); default 1 each.
    #[arg(long = "weight", alias = "weights", value_delimiter = ',')]
    weights: Vec<f32>,
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long, default_value_t = 1.1)]
    temperature: f32,
    #[arg(long = "top-k", default_value_t = 40)]
    top_k: usize,
    #[arg(long = "guidance", default_value_t = 5.0)]
    guidance: f32,
    #[arg(short, long)]
    output: PathBuf,
    /// Save the streaming state here afterwards (JSON), to continue later with --resume.
    #[arg(long)]
    save_state: Option<PathBuf>,
    /// Continue from a saved state.
    #[arg(long)]
    resume: Option<PathBuf>,
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    lm: LmFlags,
}

impl Args {
    pub fn run(self) -> Result<ExitCode> {
        let Self { prompts, weights, seconds, seed, temperature, top_k, guidance, output, save_state, resume, model, lm } = self;
        mrt::v1::system::offline::frames_for(seconds, 48_000)?;
        if !(temperature.is_finite() && temperature >= 0.0) {
            bail!("--temperature {temperature}: expected a finite value ≥ 0");
        }
        if !guidance.is_finite() {
            bail!("--guidance {guidance}: expected a finite value");
        }
        let prompts: Vec<Prompt> = prompts.iter().map(|p| Prompt::parse(p)).collect();
        let weights = prompt_weights(prompts.len(), &weights)?;
        let paths = ensure_model(&model)?;
        let target = lm.target(model.device)?;
        eprintln!("model {} ({}), device {}", paths.size, paths.lm_checkpoint.source, target.choice);
        let generator = mrt::stream::Generator::V1(mrt::v1::system::load::load_generator_with(&paths, &target, lm.options())?);
        let style_codes = if prompts.is_empty() {
            None
        } else {
            let style = mrt::v1::system::load::load_style(&paths, &target.device)?;
            let weighted: Vec<(Prompt, f32)> = prompts.into_iter().zip(weights).collect();
            mrt::style::style_codes(&style, &weighted)?
        };
        let mut state = match &resume {
            Some(p) => {
                let state = mrt::stream::StreamState::load(p)?;
                if !generator.fits(&state) {
                    bail!("{}: the saved {} state does not fit the {} model `{}`", p.display(), state.family(), generator.family(), paths.size);
                }
                state
            }
            None => generator.init_state(),
        };
        let sampling = mrt::v1::lm::SamplingParams { temperature, top_k, guidance_weight: guidance, seed };
        let controls = mrt::stream::Controls { style: style_codes.as_deref(), sampling, ..Default::default() };
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} chunks  {msg}").unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        let frames = mrt::v1::system::offline::generate_to_wav(&generator, &mut state, &controls, seconds, &output, |p| {
            bar.set_length(p.chunks as u64);
            bar.set_position(p.chunk as u64);
            bar.set_message(format!("{:.1} s of audio, {:.2}× real time", p.audio_seconds, p.realtime_factor()));
        })?;
        bar.finish();
        if let Some(p) = &save_state {
            state.save(p)?;
        }
        println!("{}: {frames} frames ({:.2} s) at 48 kHz stereo", output.display(), frames as f64 / 48_000.0);
        Ok(ExitCode::SUCCESS)
    }
}
