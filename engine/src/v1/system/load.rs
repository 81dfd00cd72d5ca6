//! Loading the whole system — LM, codec and style model — from located files
//! ([`crate::assets::ModelPaths`]).

use burn::tensor::Device;

use super::generate::MagentaRt;
use crate::assets::{LmFormat, ModelPaths};
use crate::codec::Codec;
use crate::Target;
use crate::v1::lm::weights::HostWeights;
use crate::v1::lm::{Depthformer, LmOptions};
use crate::style::{StyleModel, StylePaths};

/// What failed while loading, naming the part and its file; the cause is the error's
/// [`source`](std::error::Error::source) (format the chain at the edge: [`crate::error_chain`],
/// or anyhow's `{:#}`).
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("LM ({path})")]
    Lm { path: std::path::PathBuf, #[source] source: crate::v1::lm::LmError },
    #[error("codec ({path})")]
    Codec { path: std::path::PathBuf, #[source] source: crate::codec::CodecError },
    #[error("style model")]
    Style(#[source] crate::style::StyleError),
    #[error("the LM and the codec")]
    System(#[source] super::SystemError),
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
pub fn load_generator(paths: &ModelPaths, target: &Target) -> Result<MagentaRt, LoadError> {
    load_generator_with(paths, target, LmOptions::default())
}

/// Loads LM + codec with LM speed `options` (bf16 weights, per-level depth logits).
pub fn load_generator_with(paths: &ModelPaths, target: &Target, options: LmOptions) -> Result<MagentaRt, LoadError> {
    let ckpt = &paths.lm_checkpoint.path;
    let lm_err = |source: crate::v1::lm::LmError| LoadError::Lm { path: ckpt.clone(), source };
    let weights = match paths.lm_format {
        LmFormat::T5x => HostWeights::from_t5x(ckpt, &paths.lm_config),
        LmFormat::Safetensors => HostWeights::from_safetensors(ckpt, &paths.lm_config),
    }
    .map_err(lm_err)?;
    let lm = Depthformer::from_weights_with(paths.lm_config.clone(), weights, target, options).map_err(lm_err)?;
    let codec_dir = &paths.codec_dir.path;
    let codec = Codec::load(codec_dir, paths.codec_config.clone(), target)
        .map_err(|source| LoadError::Codec { path: codec_dir.clone(), source })?;
    MagentaRt::new(lm, codec).map_err(LoadError::System)
}

/// Loads the style model.
pub fn load_style(paths: &ModelPaths, device: &Device) -> Result<StyleModel, LoadError> {
    StyleModel::load(&style_paths(paths), device).map_err(LoadError::Style)
}
