//! MusicCoCa, the style model (spec §3): text and audio prompts → 768-d style embedding →
//! 12 RVQ style codes, of which the LM reads the first 6; weighted blends of prompts.

pub mod blend;
pub mod tokenizer;

pub use blend::{blend, lerp, Weighted};
pub use tokenizer::{SentencePiece, TokenizerError};

/// Why a style could not be computed.
#[derive(Debug, thiserror::Error)]
pub enum StyleError {
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    #[error("style weight {weight} of prompt {index} is not a finite value ≥ 0")]
    BadWeight { index: usize, weight: f32 },
    #[error("invalid style input: {0}")]
    BadInput(String),
}
