//! Magenta RT v1's language model, the "Depthformer" (t5x/flaxformer encoder–decoder with a
//! temporal and a depth decoder stack). See `model.rs` for the data flow and spec §4.

pub mod cache;
pub mod checkpoint;
pub mod config;
pub mod cpu;
pub mod cpu_encoder;
pub mod decode;
pub mod depth;
pub mod encoder;
pub mod kernels;
pub mod layers;
pub mod model;
pub mod relpos;
pub mod sampling;
pub mod temporal;
pub mod vmath;
pub mod weights;

use std::path::PathBuf;

pub use config::{LmConfig, MASK_ID, PAD_ID};
pub use kernels::WeightPrecision;
pub use model::{ChunkState, DepthLogits, Depthformer, LmOptions};
pub use sampling::SamplingParams;

/// Everything that can go wrong loading or running the LM.
#[derive(Debug, thiserror::Error)]
pub enum LmError {
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, #[source] source: std::io::Error },
    #[error("bad LM config {path}: {reason}")]
    BadConfig { path: PathBuf, reason: String },
    #[error(transparent)]
    Checkpoint(#[from] checkpoint::CheckpointError),
    #[error("checkpoint {source_path} lacks tensor `{name}`")]
    MissingTensor { name: String, source_path: PathBuf },
    #[error("checkpoint {dir} has tensors this model does not use (wrong size preset?): {names:?}")]
    UnexpectedTensors { dir: PathBuf, names: Vec<String> },
    #[error("tensor `{name}` in {source_path} has shape {found:?}, expected {expected:?}")]
    ShapeMismatch { name: String, source_path: PathBuf, expected: Vec<usize>, found: Vec<usize> },
    #[error("tensor `{name}` in {source_path} holds a non-finite value at flat index {index}")]
    NonFinite { name: String, source_path: PathBuf, index: usize },
    #[error("{path} is not a usable LM safetensors file: {reason}")]
    BadSafetensors { path: PathBuf, reason: String },
    #[error("invalid sampling setting: {0}")]
    BadSampling(String),
    #[error("invalid input: {0}")]
    BadInput(String),
    #[error("the LM produced a non-finite logit at step {step} (vocabulary index {index})")]
    NonFiniteLogits { step: usize, index: usize },
    #[error("backend error: {0}")]
    Backend(String),
    /// The caller's cancel flag was raised (a plugin closing mid-chunk).
    #[error("generation cancelled")]
    Cancelled,
}
