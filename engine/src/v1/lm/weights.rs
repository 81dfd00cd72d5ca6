//! The name map between the official t5x checkpoint and our modules, as data.
//!
//! [`manifest`] lists every tensor a config expects (430 for the real base checkpoint, spec §4.10)
//! with its shape. [`HostWeights`] holds tensors read from a checkpoint (or made up for benchmarks)
//! and checks them against the manifest: a missing, extra or mis-shaped tensor is an error naming it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::formats::tensor::{HostTensor, TensorError, TensorStore};
use crate::formats::zarr::T5xCheckpoint;
use super::{LmConfig, LmError};

pub const EMBEDDING: &str = "token_embedder.embedding";
pub const LOGITS: &str = "decoder.logits_dense.kernel";
pub const ENCODER_NORM: &str = "encoder.encoder_norm.scale";
pub const DECODER_NORM: &str = "decoder.decoder_norm.scale";
pub const TEMPORAL: &str = "decoder.decoder.temporal_decoder";
pub const DEPTH: &str = "decoder.decoder.depth_decoder";
pub const TEMPORAL_RELPOS: &str = "decoder.decoder.temporal_decoder.relpos_bias.rel_embedding";
pub const DEPTH_RELPOS: &str = "decoder.decoder.depth_decoder.relpos_bias_depth.rel_embedding";

/// Every tensor name (without the `target.` prefix) and shape the config expects.
pub fn manifest(c: &LmConfig) -> Vec<(String, Vec<usize>)> {
    let (d, inner) = (c.d_model, c.inner_dim());
    let mut m: Vec<(String, Vec<usize>)> = Vec::new();
    let attn = |m: &mut Vec<(String, Vec<usize>)>, prefix: &str| {
        for p in ["query", "key", "value"] {
            m.push((format!("{prefix}.{p}.kernel"), vec![d, inner]));
        }
        m.push((format!("{prefix}.out.kernel"), vec![inner, d]));
    };
    let mlp = |m: &mut Vec<(String, Vec<usize>)>, prefix: &str, hidden: usize| {
        m.push((format!("{prefix}.wi_0.kernel"), vec![d, hidden]));
        m.push((format!("{prefix}.wi_1.kernel"), vec![d, hidden]));
        m.push((format!("{prefix}.wo.kernel"), vec![hidden, d]));
    };
    let norm = |m: &mut Vec<(String, Vec<usize>)>, name: String| m.push((name, vec![d]));

    m.push((EMBEDDING.into(), vec![c.vocab_size, d]));
    for i in 0..c.encoder_layers {
        let p = format!("encoder.layers_{i}");
        attn(&mut m, &format!("{p}.attention"));
        mlp(&mut m, &format!("{p}.mlp"), c.mlp_dim);
        norm(&mut m, format!("{p}.pre_attention_layer_norm.scale"));
        norm(&mut m, format!("{p}.pre_mlp_layer_norm.scale"));
    }
    norm(&mut m, ENCODER_NORM.into());
    for i in 0..c.temporal_layers {
        let p = format!("{TEMPORAL}.layers_{i}");
        attn(&mut m, &format!("{p}.self_attention"));
        attn(&mut m, &format!("{p}.encoder_decoder_attention"));
        mlp(&mut m, &format!("{p}.mlp"), c.mlp_dim);
        for n in ["pre_self_attention_layer_norm", "pre_cross_attention_layer_norm", "pre_mlp_layer_norm"] {
            norm(&mut m, format!("{p}.{n}.scale"));
        }
    }
    m.push((TEMPORAL_RELPOS.into(), vec![c.num_heads, c.temporal_rel_buckets]));
    for i in 0..c.depth_layers {
        let p = format!("{DEPTH}.depth_layers_{i}");
        attn(&mut m, &format!("{p}.self_attention"));
        mlp(&mut m, &format!("{p}.mlp"), c.depth_mlp_dim);
        norm(&mut m, format!("{p}.pre_self_attention_layer_norm.scale"));
        norm(&mut m, format!("{p}.pre_mlp_layer_norm.scale"));
    }
    m.push((DEPTH_RELPOS.into(), vec![c.num_heads, c.depth_rel_buckets]));
    norm(&mut m, DECODER_NORM.into());
    m.push((LOGITS.into(), vec![d, c.vocab_size]));
    m
}

/// Host-side weights keyed by checkpoint name, already checked against the manifest (names,
/// shapes, finite values): a [`TensorStore`] whose every tensor the manifest names.
pub struct HostWeights {
    store: TensorStore,
}

impl HostWeights {
    /// Reads every tensor of a t5x checkpoint directory and checks names and shapes.
    pub fn from_t5x(dir: &Path, config: &LmConfig) -> Result<Self, LmError> {
        let ckpt = T5xCheckpoint::open(dir)?;
        let expected = manifest(config);
        check_names_and_shapes(&expected, ckpt.names(), |n| ckpt.meta(n).map(|m| m.shape.clone()), dir, |name| {
            dir.join(format!("target.{name}"))
        })?;
        let names: Vec<&str> = expected.iter().map(|(n, _)| n.as_str()).collect();
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let mut tensors = BTreeMap::new();
        for t in ckpt.read_many(&names, threads)? {
            if let Some(index) = t.data.iter().position(|v| !v.is_finite()) {
                return Err(TensorError::NonFinite { path: dir.join(format!("target.{}", t.name)), name: t.name, index }.into());
            }
            tensors.insert(t.name, HostTensor::new(t.shape, t.data));
        }
        Ok(Self { store: TensorStore::new(dir, tensors) })
    }

    /// Reads a safetensors file with t5x tensor names (no `target.` prefix), as written by
    /// `assets::convert`, through a memory map, with the checks of [`HostWeights::from_t5x`]:
    /// a missing, extra, mis-shaped, non-f32 or non-finite tensor is an error naming it and the file.
    pub fn from_safetensors(path: &Path, config: &LmConfig) -> Result<Self, LmError> {
        let file = std::fs::File::open(path).map_err(|source| LmError::Io { path: path.to_path_buf(), source })?;
        // SAFETY: the map is read-only and only read while this function runs; every value is
        // copied out before it returns. A file truncated concurrently by another process could
        // fault, as with any mmap reader; our cache writes files under a temporary name and
        // renames them, never rewriting one in place.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|source| LmError::Io { path: path.to_path_buf(), source })?;
        let st = safetensors::SafeTensors::deserialize(&map)
            .map_err(|source| LmError::Safetensors { path: path.to_path_buf(), source })?;
        let expected = manifest(config);
        let names = st.names();
        let shape_of = |n: &str| st.tensor(n).ok().map(|v| v.shape().to_vec());
        check_names_and_shapes(&expected, names.iter().copied(), shape_of, path, |_| path.to_path_buf())?;
        let mut tensors = BTreeMap::new();
        for (name, shape) in expected {
            let view = st.tensor(&name).map_err(|source| LmError::SafetensorsTensor { path: path.to_path_buf(), name: name.clone(), source })?;
            if view.dtype() != safetensors::Dtype::F32 {
                return Err(LmError::BadSafetensors {
                    path: path.to_path_buf(),
                    reason: format!("tensor `{name}` has dtype {:?}, expected F32", view.dtype()),
                });
            }
            let data: Vec<f32> =
                view.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
            if let Some(index) = data.iter().position(|v| !v.is_finite()) {
                return Err(TensorError::NonFinite { name, path: path.to_path_buf(), index }.into());
            }
            tensors.insert(name, HostTensor::new(shape, data));
        }
        Ok(Self { store: TensorStore::new(path, tensors) })
    }

    /// Deterministic random weights at the config's real size (benchmarks): N(0, 1/fan_in) kernels,
    /// unit-ish norm scales, N(0,1) embeddings and relative biases.
    pub fn random(config: &LmConfig, seed: u64) -> Self {
        let mut rng = crate::sampling::rng::SplitMix64::new(seed);
        let mut tensors = BTreeMap::new();
        for (name, shape) in manifest(config) {
            let n: usize = shape.iter().product();
            let std = if name.ends_with(".scale") {
                0.0
            } else if name == EMBEDDING || name.ends_with("rel_embedding") {
                1.0
            } else {
                1.0 / (shape[0] as f64).sqrt()
            };
            let data: Vec<f32> = if std == 0.0 {
                vec![1.0; n]
            } else {
                (0..n).map(|_| (rng.next_normal() * std) as f32).collect()
            };
            tensors.insert(name, HostTensor::new(shape, data));
        }
        Self { store: TensorStore::new("<random>", tensors) }
    }

    /// Removes and returns one tensor; its presence and shape were checked at construction.
    pub fn take(&mut self, name: &str) -> Result<HostTensor, LmError> {
        let shape: Vec<Option<usize>> = self.store.get(name).map(|t| t.shape.iter().map(|&d| Some(d)).collect()).unwrap_or_default();
        Ok(self.store.take(name, &shape)?)
    }

    pub fn get(&self, name: &str) -> Option<&HostTensor> {
        self.store.get(name)
    }

    /// Where the weights came from, for error messages.
    pub fn source(&self) -> &Path {
        &self.store.path
    }

    pub fn len(&self) -> usize {
        self.store.len()
    }

    pub fn is_empty(&self) -> bool {
        self.store.is_empty()
    }

    /// Errors naming every tensor no loader took.
    pub fn finish(&self) -> Result<(), LmError> {
        Ok(self.store.check_all_used("")?)
    }
}

/// One attention block's t5x kernels: q, k, v `[d, inner]`, out `[inner, d]`, row-major as stored.
#[derive(Clone, Debug, Default)]
pub struct AttentionKernels {
    pub query: Vec<f32>,
    pub key: Vec<f32>,
    pub value: Vec<f32>,
    pub out: Vec<f32>,
}

/// A gated-GELU MLP's kernels: wi_0, wi_1 `[d, hidden]`, wo `[hidden, d]`.
#[derive(Clone, Debug, Default)]
pub struct MlpKernels {
    pub wi_0: Vec<f32>,
    pub wi_1: Vec<f32>,
    pub wo: Vec<f32>,
}

#[derive(Clone, Debug)]
pub struct EncoderLayerWeights {
    pub pre_attention_norm: Vec<f32>,
    pub attention: AttentionKernels,
    pub pre_mlp_norm: Vec<f32>,
    pub mlp: MlpKernels,
}

#[derive(Clone, Debug)]
pub struct TemporalLayerWeights {
    pub pre_self_attention_norm: Vec<f32>,
    pub self_attention: AttentionKernels,
    pub pre_cross_attention_norm: Vec<f32>,
    /// Query and out are used per step; key and value once per chunk, over the encoder output.
    pub cross_attention: AttentionKernels,
    pub pre_mlp_norm: Vec<f32>,
    pub mlp: MlpKernels,
}

#[derive(Clone, Debug)]
pub struct DepthLayerWeights {
    pub pre_self_attention_norm: Vec<f32>,
    pub self_attention: AttentionKernels,
    pub pre_mlp_norm: Vec<f32>,
    pub mlp: MlpKernels,
}

/// The whole LM by role, as the checkpoint stores it: what [`LmWeights::load`] makes from the
/// checked tensors, and what every path (host encoder and decoder, burn reference, GPU) is built
/// from. The checkpoint's names appear only in [`manifest`] and [`LmWeights::load`].
#[derive(Clone, Debug)]
pub struct LmWeights {
    /// `[vocab, d]`, shared by encoder and decoder (no √d scaling).
    pub embedding: Vec<f32>,
    pub encoder: Vec<EncoderLayerWeights>,
    pub encoder_norm: Vec<f32>,
    pub temporal: Vec<TemporalLayerWeights>,
    /// `[heads, buckets]` relative-position embeddings.
    pub temporal_relpos: Vec<f32>,
    pub depth: Vec<DepthLayerWeights>,
    pub depth_relpos: Vec<f32>,
    pub decoder_norm: Vec<f32>,
    /// `[d, vocab]`, not tied to the embedding.
    pub logits: Vec<f32>,
}

impl LmWeights {
    /// Takes every tensor of the manifest out of `w` by role; a tensor left over is an error.
    pub fn load(config: &LmConfig, mut w: HostWeights) -> Result<Self, LmError> {
        let c = config;
        let mut v = |n: &str| -> Result<Vec<f32>, LmError> { Ok(w.take(n)?.data) };
        let attention = |v: &mut dyn FnMut(&str) -> Result<Vec<f32>, LmError>, p: &str| -> Result<AttentionKernels, LmError> {
            Ok(AttentionKernels {
                query: v(&format!("{p}.query.kernel"))?,
                key: v(&format!("{p}.key.kernel"))?,
                value: v(&format!("{p}.value.kernel"))?,
                out: v(&format!("{p}.out.kernel"))?,
            })
        };
        let mlp = |v: &mut dyn FnMut(&str) -> Result<Vec<f32>, LmError>, p: &str| -> Result<MlpKernels, LmError> {
            Ok(MlpKernels { wi_0: v(&format!("{p}.wi_0.kernel"))?, wi_1: v(&format!("{p}.wi_1.kernel"))?, wo: v(&format!("{p}.wo.kernel"))? })
        };
        let embedding = v(EMBEDDING)?;
        let mut encoder = Vec::with_capacity(c.encoder_layers);
        for i in 0..c.encoder_layers {
            let p = format!("encoder.layers_{i}");
            encoder.push(EncoderLayerWeights {
                pre_attention_norm: v(&format!("{p}.pre_attention_layer_norm.scale"))?,
                attention: attention(&mut v, &format!("{p}.attention"))?,
                pre_mlp_norm: v(&format!("{p}.pre_mlp_layer_norm.scale"))?,
                mlp: mlp(&mut v, &format!("{p}.mlp"))?,
            });
        }
        let encoder_norm = v(ENCODER_NORM)?;
        let mut temporal = Vec::with_capacity(c.temporal_layers);
        for i in 0..c.temporal_layers {
            let p = format!("{TEMPORAL}.layers_{i}");
            temporal.push(TemporalLayerWeights {
                pre_self_attention_norm: v(&format!("{p}.pre_self_attention_layer_norm.scale"))?,
                self_attention: attention(&mut v, &format!("{p}.self_attention"))?,
                pre_cross_attention_norm: v(&format!("{p}.pre_cross_attention_layer_norm.scale"))?,
                cross_attention: attention(&mut v, &format!("{p}.encoder_decoder_attention"))?,
                pre_mlp_norm: v(&format!("{p}.pre_mlp_layer_norm.scale"))?,
                mlp: mlp(&mut v, &format!("{p}.mlp"))?,
            });
        }
        let temporal_relpos = v(TEMPORAL_RELPOS)?;
        let mut depth = Vec::with_capacity(c.depth_layers);
        for i in 0..c.depth_layers {
            let p = format!("{DEPTH}.depth_layers_{i}");
            depth.push(DepthLayerWeights {
                pre_self_attention_norm: v(&format!("{p}.pre_self_attention_layer_norm.scale"))?,
                self_attention: attention(&mut v, &format!("{p}.self_attention"))?,
                pre_mlp_norm: v(&format!("{p}.pre_mlp_layer_norm.scale"))?,
                mlp: mlp(&mut v, &format!("{p}.mlp"))?,
            });
        }
        let depth_relpos = v(DEPTH_RELPOS)?;
        let decoder_norm = v(DECODER_NORM)?;
        let logits = v(LOGITS)?;
        w.finish()?;
        Ok(Self { embedding, encoder, encoder_norm, temporal, temporal_relpos, depth, depth_relpos, decoder_norm, logits })
    }
}

/// The checks shared by every loader: no tensor outside `expected`, none missing, every shape
/// as expected. `shape_of` reads a tensor's shape from the source; `tensor_path` names the file
/// or directory of one tensor in errors.
pub(crate) fn check_names_and_shapes<'a>(
    expected: &[(String, Vec<usize>)],
    names: impl Iterator<Item = &'a str>,
    shape_of: impl Fn(&str) -> Option<Vec<usize>>,
    source: &Path,
    tensor_path: impl Fn(&str) -> PathBuf,
) -> Result<(), TensorError> {
    let known: std::collections::HashSet<&str> = expected.iter().map(|(n, _)| n.as_str()).collect();
    let mut unexpected: Vec<String> = names.filter(|n| !known.contains(n)).map(str::to_owned).collect();
    if !unexpected.is_empty() {
        unexpected.sort();
        return Err(TensorError::Unexpected { path: source.to_path_buf(), names: unexpected });
    }
    for (name, shape) in expected {
        let found = shape_of(name).ok_or_else(|| TensorError::Missing { name: name.clone(), path: source.to_path_buf() })?;
        if &found != shape {
            return Err(TensorError::Shape {
                name: name.clone(),
                path: tensor_path(name),
                expected: format!("{shape:?}"),
                found,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_manifest_has_the_430_tensors_of_the_real_checkpoint() {
        let m = manifest(&LmConfig::base());
        assert_eq!(m.len(), 430);
        let total: usize = m.iter().map(|(_, s)| s.iter().product::<usize>()).sum();
        assert_eq!(total, LmConfig::base().param_count());
        let names: std::collections::HashSet<_> = m.iter().map(|(n, _)| n.clone()).collect();
        assert_eq!(names.len(), 430, "names are unique");
    }
}
