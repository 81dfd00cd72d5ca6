//! `mrt embed`: style embeddings and tokens of prompts, and of their blend.

use std::process::ExitCode;

use anyhow::{Context, Result};
use mrt::style::Prompt;

use crate::args::{prompt_weights, ModelArgs};

#[derive(clap::Args)]
pub struct Args {
    /// Text, or an audio file (an existing path, or a name ending in .wav/.flac/.mp3/.ogg).
    #[arg(required = true)]
    prompts: Vec<String>,
    /// One weight ≥ 0 per prompt (repeat, or comma-separate); default 1 each.
    #[arg(long = "weight", alias = "weights", value_delimiter = ',')]
    weights: Vec<f32>,
    #[command(flatten)]
    model: ModelArgs,
    /// Print the whole embedding too.
    #[arg(long)]
    full: bool,
}

fn norm(v: &[f32]) -> f64 {
    v.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>().sqrt()
}

impl Args {
    pub fn run(self) -> Result<ExitCode> {
        let Self { prompts, weights, model, full } = self;
        let prompts: Vec<Prompt> = prompts.iter().map(|p| Prompt::parse(p)).collect();
        let weights = prompt_weights(prompts.len(), &weights)?;
        let paths = model.locate()?;
        let target = model.target()?;
        let style = mrt::v1::system::load::load_style(&paths, &target.device)?;
        let mut embeddings = Vec::new();
        for p in &prompts {
            let e = p.embed(&style).with_context(|| format!("prompt {}", p.label()))?;
            let tokens = style.tokenize(&e)?;
            println!("{:<40} norm {:>8.4}  tokens {:?}", p.label(), norm(&e), tokens);
            if full {
                println!("  {e:?}");
            }
            embeddings.push(e);
        }
        if prompts.len() > 1 {
            let parts: Vec<mrt::style::Weighted<'_>> =
                embeddings.iter().zip(&weights).map(|(e, &weight)| mrt::style::Weighted { embedding: e, weight }).collect();
            match mrt::style::blend(&parts)? {
                Some(b) => println!("{:<40} norm {:>8.4}  tokens {:?}", format!("blend {weights:?}"), norm(&b), style.tokenize(&b)?),
                None => println!("blend {weights:?}: total weight 0 → no style (MASK tokens)"),
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}
