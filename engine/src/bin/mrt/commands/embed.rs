//! `mrt embed`: style embeddings and tokens of prompts, and of their blend.

use std::process::ExitCode;

use anyhow::{Context, Result};
use mrt::style::Prompt;

use crate::args::{pick_device, prompt_weights, settings, ModelArgs, ModelFamily};

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
    /// v1 (v1's MusicCoCa, the 12 style tokens) or mrt2 (MRT2's own MusicCoCa from
    /// `resources/musiccoca/*.tflite` when present, else v1's; the 6 coarsest tokens, the finer
    /// levels masked, as the official engine sends them).
    #[arg(long = "model", value_enum, default_value = "v1")]
    family: ModelFamily,
    /// Print the whole embedding too.
    #[arg(long)]
    full: bool,
    /// MRT2: embed text without MRT2's mapper.tflite even where it is installed (the official
    /// Python's default; the C++ engine maps text).
    #[arg(long = "no-mapper")]
    no_mapper: bool,
    /// MRT2: how many style levels are sent, the coarsest first (default 6; 12 = all).
    #[arg(long = "style-levels")]
    style_levels: Option<usize>,
}

fn norm(v: &[f32]) -> f64 {
    v.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>().sqrt()
}

impl Args {
    pub fn run(self) -> Result<ExitCode> {
        let Self { prompts, weights, model, family, full, no_mapper, style_levels } = self;
        if no_mapper && family == ModelFamily::V1 {
            anyhow::bail!("--no-mapper is an MRT2 setting: add --model mrt2");
        }
        if style_levels.is_some() && family == ModelFamily::V1 {
            anyhow::bail!("--style-levels is an MRT2 setting: add --model mrt2");
        }
        let kept = super::generate::style_levels(style_levels)?;
        let prompts: Vec<Prompt> = prompts.iter().map(|p| Prompt::parse(p)).collect();
        let weights = prompt_weights(prompts.len(), &weights)?;
        // Only the style model's files: no LM or codec is needed to embed.
        let files = match family {
            ModelFamily::V1 => mrt::style::StyleFiles::V1(mrt::assets::locate_style(model.model_dir.as_deref(), &settings())?),
            ModelFamily::Mrt2 => mrt::assets::locate_mrt2_style(model.model_dir.as_deref(), &settings())?,
        };
        let device = pick_device(model.device)?.device().map_err(anyhow::Error::msg)?;
        let style = crate::args::load_style(&files, !no_mapper, &device)?;
        // What the chosen family is conditioned on.
        let shown = |tokens: Vec<i32>| -> Vec<i32> {
            match family {
                ModelFamily::V1 => tokens,
                ModelFamily::Mrt2 => {
                    tokens.iter().enumerate().map(|(i, &t)| if i < kept { t } else { -1 }).collect()
                }
            }
        };
        if family == ModelFamily::Mrt2 {
            println!("MRT2 tokens: the {kept} coarsest levels, the rest masked (-1)");
        }
        let mut embeddings = Vec::new();
        for p in &prompts {
            let e = p.embed(&style).with_context(|| format!("prompt {}", p.label()))?;
            let tokens = shown(style.tokenize(&e)?);
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
                Some(b) => println!("{:<40} norm {:>8.4}  tokens {:?}", format!("blend {weights:?}"), norm(&b), shown(style.tokenize(&b)?)),
                None => println!("blend {weights:?}: total weight 0 → no style (MASK tokens)"),
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}
