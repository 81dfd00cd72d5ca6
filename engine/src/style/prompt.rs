//! Prompts as users give them — text, an audio file, or audio already in memory — and the style
//! codes of a weighted set of them (what `generate_chunk` takes).

use std::path::{Path, PathBuf};

use super::model::StyleModel;
use super::{blend, StyleError, Weighted};

/// One style prompt.
#[derive(Clone, Debug, PartialEq)]
pub enum Prompt {
    Text(String),
    /// An audio file of any length and rate (decoded and embedded as it streams).
    AudioFile(PathBuf),
    /// 16 kHz mono samples.
    Audio16k(Vec<f32>),
}

const AUDIO_EXTENSIONS: [&str; 7] = ["wav", "flac", "mp3", "ogg", "oga", "aif", "aiff"];

impl Prompt {
    /// Command-line reading of a prompt: an existing file, or a name with an audio extension, is
    /// an audio file (so a misspelt path is reported as missing, not embedded as text); anything
    /// else is text.
    pub fn parse(s: &str) -> Prompt {
        let path = Path::new(s);
        let audio_ext = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| AUDIO_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()));
        if path.is_file() || audio_ext {
            Prompt::AudioFile(path.to_path_buf())
        } else {
            Prompt::Text(s.to_string())
        }
    }

    /// How the prompt is named in messages.
    pub fn label(&self) -> String {
        match self {
            Prompt::Text(t) => format!("{t:?}"),
            Prompt::AudioFile(p) => p.display().to_string(),
            Prompt::Audio16k(s) => format!("{:.2} s of audio", s.len() as f64 / 16_000.0),
        }
    }

    /// The prompt's style embedding. Empty (or whitespace-only) text is refused: leave the prompt
    /// out, or give it weight 0, for no style.
    pub fn embed(&self, model: &StyleModel) -> Result<Vec<f32>, StyleError> {
        match self {
            Prompt::Text(t) if t.trim().is_empty() => {
                Err(StyleError::BadInput("an empty text prompt: give some words, or leave the prompt out for no style".into()))
            }
            Prompt::Text(t) => model.embed_text(t),
            Prompt::AudioFile(p) => super::audio::embed_file(model, p, None),
            Prompt::Audio16k(s) => model.embed_audio_16k(s, None),
        }
    }
}

/// The blended embedding of weighted prompts (`Σ wᵢ·eᵢ / Σ wᵢ`); `None` when there are no
/// prompts or every weight is 0. Prompts of weight 0 are not embedded at all.
pub fn blend_prompts(model: &StyleModel, prompts: &[(Prompt, f32)]) -> Result<Option<Vec<f32>>, StyleError> {
    let mut embeddings = Vec::with_capacity(prompts.len());
    for (i, (p, w)) in prompts.iter().enumerate() {
        if !(w.is_finite() && *w >= 0.0) {
            return Err(StyleError::BadWeight { index: i, weight: *w });
        }
        if *w > 0.0 {
            let e = p.embed(model).map_err(|e| StyleError::BadInput(format!("prompt {}: {e}", p.label())))?;
            embeddings.push((e, *w));
        }
    }
    let parts: Vec<Weighted<'_>> = embeddings.iter().map(|(e, w)| Weighted { embedding: e, weight: *w }).collect();
    blend(&parts)
}

/// The RVQ style codes of weighted prompts, as `generate_chunk` takes them (`None` = no style).
pub fn style_codes(model: &StyleModel, prompts: &[(Prompt, f32)]) -> Result<Option<Vec<i32>>, StyleError> {
    blend_prompts(model, prompts)?.map(|e| model.tokenize(&e)).transpose()
}
