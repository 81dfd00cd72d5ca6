//! MusicCoCa, the style model (spec §3): text and audio prompts → 768-d style embedding →
//! 12 RVQ style codes, of which the LM reads the first 6; weighted blends of prompts.
//!
//! - [`tokenizer`]: SentencePiece from the official `.model` file, MusicCoCa's 128 text ids.
//! - [`mel`]: the log-mel front end (constants from MRT2's `audio_preprocessor.tflite`).
//! - [`params`]: the towers' parameters and their place among the v1 SavedModel's 80 leaves.
//! - [`towers`]: the text and audio transformers with attention pooling, on burn.
//! - [`model`]: [`StyleModel`]: loading, text/audio embeddings, the style RVQ.
//! - [`mrt2`]: MRT2's own MusicCoCa, read from its TFLite files into the same parameters.
//! - [`mapper`]: MRT2's optional text → audio embedding mapper (`mapper.tflite`).
//! - [`audio`]: audio prompt files, streamed to 16 kHz mono clips with bounded memory.
//! - [`prompt`]: prompts (text, audio file, audio) and the style codes of weighted prompts.
//! - [`blend`]: weighted blends `Σ wᵢ·eᵢ / Σ wᵢ`.

pub mod audio;
pub mod blend;
pub mod mapper;
pub mod mel;
pub mod model;
pub mod mrt2;
pub mod params;
pub mod prompt;
pub mod tokenizer;
pub mod tiny;
pub mod tiny_mrt2;
pub mod towers;

pub use blend::{blend, lerp, Weighted};
pub use model::{ClipAccumulator, StyleFiles, StyleModel, StylePaths};
pub use mrt2::Mrt2StylePaths;
pub use prompt::{blend_prompts, style_codes, Prompt};
pub use tokenizer::{SentencePiece, TokenizerError};

/// Why a style could not be computed.
#[derive(Debug, thiserror::Error)]
pub enum StyleError {
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    #[error("MusicCoCa weights: {0}")]
    Weights(String),
    #[error(transparent)]
    Bundle(#[from] crate::formats::tfbundle::BundleError),
    #[error(transparent)]
    TfLite(#[from] crate::formats::tflite::TfLiteError),
    #[error(transparent)]
    Tensor(#[from] crate::formats::tensor::TensorError),
    #[error("style weight {weight} of prompt {index} is not a finite value ≥ 0")]
    BadWeight { index: usize, weight: f32 },
    #[error("invalid style input: {0}")]
    BadInput(String),
    #[error("{path}: {reason}")]
    Audio { path: std::path::PathBuf, reason: String },
}
