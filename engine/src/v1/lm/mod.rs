//! Magenta RT v1's language model, the "Depthformer" (t5x/flaxformer encoder–decoder with a
//! temporal and a depth decoder stack). See `model.rs` for the data flow and spec §4.

pub mod cache;
pub mod config;
pub mod host_decoder;
pub mod host_encoder;
pub mod decode;
pub mod depth;
pub mod encoder;
#[cfg(any(feature = "wgpu", feature = "cuda"))]
pub mod gpu_decoder;
pub mod layers;
pub mod model;
pub mod relpos;
pub mod sampling;
pub mod temporal;
pub mod weights;

use std::path::PathBuf;

pub use config::{LmConfig, MASK_ID, PAD_ID};
pub use crate::kernels::WeightPrecision;
pub use decode::{DecodeHooks, StepObserver, StepTimes};
pub use model::{ChunkState, DepthLogits, Depthformer, LmOptions, LmScratch};
pub use sampling::SamplingParams;

/// Everything that can go wrong loading or running the LM.
#[derive(Debug, thiserror::Error)]
pub enum LmError {
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, #[source] source: std::io::Error },
    #[error("bad LM config {path}: {reason}")]
    BadConfig { path: PathBuf, reason: String },
    #[error(transparent)]
    Checkpoint(#[from] crate::formats::zarr::CheckpointError),
    #[error(transparent)]
    Tensor(#[from] crate::formats::tensor::TensorError),
    #[error("{path} is not a usable LM safetensors file: {reason}")]
    BadSafetensors { path: PathBuf, reason: String },
    #[error("{path} is not a readable safetensors file")]
    Safetensors { path: PathBuf, #[source] source: safetensors::SafeTensorError },
    #[error("{path}: tensor `{name}` cannot be read")]
    SafetensorsTensor { path: PathBuf, name: String, #[source] source: safetensors::SafeTensorError },
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
