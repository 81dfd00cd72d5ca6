//! Loading the whole system — LM, codec and style model — from located files
//! ([`crate::assets::ModelPaths`]).

use burn::tensor::Device;

use super::generate::MagentaRt;
use crate::assets::{LmFormat, ModelPaths};
use crate::codec::Codec;
use crate::lm::weights::HostWeights;
use crate::lm::{Depthformer, LmOptions};
use crate::style::{StyleModel, StylePaths};

/// What failed while loading, naming the part and its file.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("LM ({path}): {reason}")]
    Lm { path: std::path::PathBuf, reason: String },
    #[error("codec ({path}): {reason}")]
    Codec { path: std::path::PathBuf, reason: String },
    #[error("style model: {0}")]
    Style(String),
    #[error("{0}")]
    System(String),
}

/// The style model's files from located paths.
pub fn style_paths(paths: &ModelPaths) -> StylePaths {
    StylePaths {
        savedmodel: paths.musiccoca.path.clone(),
        quantizer: paths.musiccoca_quant.path.clone(),
        vocab: paths.vocab.path.clone(),
        preprocessor: Some(paths.audio_preprocessor.path.clone()),
    }
}

/// Loads LM + codec into a [`MagentaRt`] with the exact LM options.
pub fn load_generator(paths: &ModelPaths, device: &Device) -> Result<MagentaRt, LoadError> {
    load_generator_with(paths, device, LmOptions::default())
}

/// Loads LM + codec with LM speed `options` (bf16 weights, per-level depth logits).
pub fn load_generator_with(paths: &ModelPaths, device: &Device, options: LmOptions) -> Result<MagentaRt, LoadError> {
    let ckpt = &paths.lm_checkpoint.path;
    let lm_err = |e: crate::lm::LmError| LoadError::Lm { path: ckpt.clone(), reason: e.to_string() };
    let weights = match paths.lm_format {
        LmFormat::T5x => HostWeights::from_t5x(ckpt, &paths.lm_config),
        LmFormat::Safetensors => HostWeights::from_safetensors(ckpt, &paths.lm_config),
    }
    .map_err(lm_err)?;
    let lm = Depthformer::from_weights_with(paths.lm_config.clone(), weights, device, options).map_err(lm_err)?;
    let codec_dir = &paths.codec_dir.path;
    let codec = Codec::load(codec_dir, paths.codec_config.clone(), device)
        .map_err(|e| LoadError::Codec { path: codec_dir.clone(), reason: e.to_string() })?;
    MagentaRt::new(lm, codec).map_err(|e| LoadError::System(e.to_string()))
}

/// Loads the style model.
pub fn load_style(paths: &ModelPaths, device: &Device) -> Result<StyleModel, LoadError> {
    StyleModel::load(&style_paths(paths), device).map_err(|e| LoadError::Style(e.to_string()))
}
