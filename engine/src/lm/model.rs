//! The Depthformer: shared token embedding, T5 encoder, temporal stack, depth stack, untied logits.
//!
//! ```text
//!  encoder ids [b,1006] ─ Encoder ─ encoded [b,1006,d] ──────────────┐ (cross-attn K/V, once per chunk)
//!  frame t−1 ids [b,16] ─ mean E ─ Temporal step t ─ temporal_out[t] ┘
//!        temporal_out[t], E[y[t,0]], … ─ Depth step q ─ RMS ─ logits [b, vocab] → y[t,q]
//! ```
//!
//! Two paths compute the same function: [`Depthformer::teacher_forced`] runs whole sequences
//! (the reference's `decode=False` training path) and the `*_step` methods run one position at a
//! time against preallocated caches (the reference's `decode=True` path). Tests compare them.

use burn::tensor::{Device, Int, Tensor, TensorData};

use super::cache::KvCache;
use super::checkpoint::RawTensor;
use super::depth::DepthLayer;
use super::encoder::{sinusoid_positions, EncoderLayer};
use super::layers::{CrossAttention, GeGlu, Linear, RmsNorm, SelfAttention};
use super::relpos::causal_bias_table;
use super::temporal::{CrossKv, TemporalLayer};
use super::weights::{self, HostWeights};
use super::{LmConfig, LmError};

pub struct Depthformer {
    pub config: LmConfig,
    device: Device,
    /// `[vocab, d]`, shared by encoder and decoder (no √d scaling).
    embedding: Tensor<2>,
    /// `[1, encoder_len, d]`.
    positions: Tensor<3>,
    encoder: Vec<EncoderLayer>,
    encoder_norm: RmsNorm,
    temporal: Vec<TemporalLayer>,
    /// `[1, heads, frames, frames]`: relative bias + causal mask of the temporal stack.
    temporal_bias: Tensor<4>,
    depth: Vec<DepthLayer>,
    /// `[1, heads, levels, levels]`: relative bias + causal mask of the depth stack.
    depth_bias: Tensor<4>,
    decoder_norm: RmsNorm,
    /// `[d, vocab]`, not tied to the embedding.
    logits: Linear,
}

/// Intermediate and final outputs of the teacher-forced decoder.
pub struct TeacherOutputs {
    /// `[b, frames, d]`, the temporal stack output (no norm).
    pub temporal: Tensor<3>,
    /// `[b, frames·levels, d]`, the depth stack output before `decoder_norm`.
    pub depth: Tensor<3>,
    /// `[b, frames·levels, vocab]`.
    pub logits: Tensor<3>,
}

/// Per-chunk decoding state: cross-attention K/V and the temporal and depth KV caches.
pub struct DecodeCache {
    cross: Vec<CrossKv>,
    temporal: Vec<KvCache>,
    depth: Vec<KvCache>,
    batch: usize,
}

impl DecodeCache {
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// Temporal positions decoded so far.
    pub fn frames(&self) -> usize {
        self.temporal.first().map_or(0, KvCache::len)
    }

    /// Depth positions decoded in the current frame.
    pub fn levels(&self) -> usize {
        self.depth.first().map_or(0, KvCache::len)
    }
}

fn upload<const D: usize>(t: RawTensor, device: &Device) -> Tensor<D> {
    let shape: [usize; D] = t.shape.clone().try_into().unwrap_or_else(|_| {
        // The manifest fixed every rank before any tensor was read.
        panic!("tensor {} has rank {}, manifest says {D}", t.name, t.shape.len())
    });
    Tensor::from_data(TensorData::new(t.data, shape), device)
}

/// Column blocks per linear map: twice the CPU threads on flex (so the batched matmul balances
/// over them), one on GPUs.
/// `MRT_LINEAR_BLOCKS` overrides the choice (benchmarks compare layouts with it).
fn linear_blocks(device: &Device) -> usize {
    if let Some(n) = std::env::var("MRT_LINEAR_BLOCKS").ok().and_then(|v| v.parse::<usize>().ok()) {
        return n.max(1);
    }
    if crate::device::is_flex(device) {
        2 * std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        1
    }
}

impl Depthformer {
    /// Builds the model on `device` from checked host weights, consuming them.
    pub fn from_weights(config: LmConfig, mut w: HostWeights, device: &Device) -> Result<Self, LmError> {
        let c = &config;
        let eps = c.rms_norm_eps;
        // Column blocks for the CPU (see `Linear`); one block on GPUs.
        let blocks = linear_blocks(device);
        let mut mat = |w: &mut HostWeights, n: &str| -> Result<Tensor<2>, LmError> { Ok(upload::<2>(w.take(n)?, device)) };
        let norm = |w: &mut HostWeights, n: &str| -> Result<RmsNorm, LmError> {
            Ok(RmsNorm::new(upload::<1>(w.take(n)?, device), eps))
        };
        let self_attention = |w: &mut HostWeights, mat: &mut dyn FnMut(&mut HostWeights, &str) -> Result<Tensor<2>, LmError>, p: &str| -> Result<SelfAttention, LmError> {
            let qkv = vec![mat(w, &format!("{p}.query.kernel"))?, mat(w, &format!("{p}.key.kernel"))?, mat(w, &format!("{p}.value.kernel"))?];
            Ok(SelfAttention {
                qkv: Linear::fused(qkv, blocks),
                out: Linear::new(mat(w, &format!("{p}.out.kernel"))?, blocks),
                num_heads: c.num_heads,
                head_dim: c.head_dim,
            })
        };
        let cross_attention = |w: &mut HostWeights, mat: &mut dyn FnMut(&mut HostWeights, &str) -> Result<Tensor<2>, LmError>, p: &str| -> Result<CrossAttention, LmError> {
            let query = Linear::new(mat(w, &format!("{p}.query.kernel"))?, blocks);
            let kv = vec![mat(w, &format!("{p}.key.kernel"))?, mat(w, &format!("{p}.value.kernel"))?];
            Ok(CrossAttention {
                query,
                key_value: Linear::fused(kv, blocks),
                out: Linear::new(mat(w, &format!("{p}.out.kernel"))?, blocks),
                num_heads: c.num_heads,
                head_dim: c.head_dim,
            })
        };
        let mlp = |w: &mut HostWeights, mat: &mut dyn FnMut(&mut HostWeights, &str) -> Result<Tensor<2>, LmError>, p: &str| -> Result<GeGlu, LmError> {
            let wi = vec![mat(w, &format!("{p}.wi_0.kernel"))?, mat(w, &format!("{p}.wi_1.kernel"))?];
            Ok(GeGlu { wi: Linear::fused(wi, blocks), wo: Linear::new(mat(w, &format!("{p}.wo.kernel"))?, blocks) })
        };

        let embedding = upload::<2>(w.take(weights::EMBEDDING)?, device);
        let mut encoder = Vec::with_capacity(c.encoder_layers);
        for i in 0..c.encoder_layers {
            let p = format!("encoder.layers_{i}");
            encoder.push(EncoderLayer {
                pre_attention_norm: norm(&mut w, &format!("{p}.pre_attention_layer_norm.scale"))?,
                attention: self_attention(&mut w, &mut mat, &format!("{p}.attention"))?,
                pre_mlp_norm: norm(&mut w, &format!("{p}.pre_mlp_layer_norm.scale"))?,
                mlp: mlp(&mut w, &mut mat, &format!("{p}.mlp"))?,
            });
        }
        let encoder_norm = norm(&mut w, weights::ENCODER_NORM)?;
        let mut temporal = Vec::with_capacity(c.temporal_layers);
        for i in 0..c.temporal_layers {
            let p = format!("{}.layers_{i}", weights::TEMPORAL);
            temporal.push(TemporalLayer {
                pre_self_attention_norm: norm(&mut w, &format!("{p}.pre_self_attention_layer_norm.scale"))?,
                self_attention: self_attention(&mut w, &mut mat, &format!("{p}.self_attention"))?,
                pre_cross_attention_norm: norm(&mut w, &format!("{p}.pre_cross_attention_layer_norm.scale"))?,
                cross_attention: cross_attention(&mut w, &mut mat, &format!("{p}.encoder_decoder_attention"))?,
                pre_mlp_norm: norm(&mut w, &format!("{p}.pre_mlp_layer_norm.scale"))?,
                mlp: mlp(&mut w, &mut mat, &format!("{p}.mlp"))?,
            });
        }
        let mut depth = Vec::with_capacity(c.depth_layers);
        for i in 0..c.depth_layers {
            let p = format!("{}.depth_layers_{i}", weights::DEPTH);
            depth.push(DepthLayer {
                pre_self_attention_norm: norm(&mut w, &format!("{p}.pre_self_attention_layer_norm.scale"))?,
                self_attention: self_attention(&mut w, &mut mat, &format!("{p}.self_attention"))?,
                pre_mlp_norm: norm(&mut w, &format!("{p}.pre_mlp_layer_norm.scale"))?,
                mlp: mlp(&mut w, &mut mat, &format!("{p}.mlp"))?,
            });
        }
        let bias = |w: &mut HostWeights, name: &str, buckets: usize, max_distance: usize, len: usize| -> Result<Tensor<4>, LmError> {
            let rel = w.take(name)?;
            let table = causal_bias_table(&rel.data, c.num_heads, buckets, max_distance, len);
            Ok(Tensor::from_data(TensorData::new(table, [1, c.num_heads, len, len]), device))
        };
        let temporal_bias = bias(&mut w, weights::TEMPORAL_RELPOS, c.temporal_rel_buckets, c.temporal_rel_max_distance, c.chunk_frames)?;
        let depth_bias = bias(&mut w, weights::DEPTH_RELPOS, c.depth_rel_buckets, c.depth_rel_max_distance, c.num_levels)?;
        let decoder_norm = norm(&mut w, weights::DECODER_NORM)?;
        let logits = Linear::new(mat(&mut w, weights::LOGITS)?, blocks);
        let positions = sinusoid_positions(c.encoder_len(), c.d_model, c.position_timescale, device);
        Ok(Self {
            config,
            device: device.clone(),
            embedding,
            positions,
            encoder,
            encoder_norm,
            temporal,
            temporal_bias,
            depth,
            depth_bias,
            decoder_norm,
            logits,
        })
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Embeddings of `ids: [n]` as `[n, d]`.
    pub fn embed(&self, ids: Tensor<1, Int>) -> Tensor<2> {
        self.embedding.clone().select(0, ids)
    }

    /// Embeddings of `ids: [b, s]` as `[b, s, d]`.
    fn embed2(&self, ids: Tensor<2, Int>) -> Tensor<3> {
        let [b, s] = ids.dims();
        self.embed(ids.reshape([b * s])).reshape([b, s, self.config.d_model])
    }

    /// Uploads host ids as an `[rows, cols]` int tensor.
    pub fn ids_tensor(&self, ids: &[i32], rows: usize, cols: usize) -> Tensor<2, Int> {
        Tensor::from_data(TensorData::new(ids.to_vec(), [rows, cols]), &self.device)
    }

    /// Encoder: `ids: [b, encoder_len] -> [b, encoder_len, d]` (after `encoder_norm`).
    pub fn encode(&self, ids: Tensor<2, Int>) -> Tensor<3> {
        let mut x = self.embed2(ids) + self.positions.clone();
        for layer in &self.encoder {
            x = layer.forward(x);
        }
        self.encoder_norm.forward(x)
    }

    /// Decoder over whole frames with teacher forcing. `targets: [b, frames·levels]` are the ids to
    /// predict; position i sees `[BOS] + targets[..i]` exactly as the reference's training path.
    pub fn teacher_forced(&self, encoded: Tensor<3>, targets: Tensor<2, Int>) -> TeacherOutputs {
        let c = &self.config;
        let (d, q) = (c.d_model, c.num_levels);
        let [b, n] = targets.dims();
        assert!(n % q == 0 && n / q <= c.chunk_frames, "targets length {n} must be whole frames ≤ {}", c.chunk_frames);
        let frames = n / q;
        let emb = self.embed2(targets).reshape([b, frames, q, d]); // [b, t, q, d]

        // Temporal inputs: E[BOS] for frame 0, mean of frame t−1's level embeddings after that.
        let bos = self.embed(Tensor::from_data(TensorData::new(vec![0i32], [1]), &self.device)).reshape([1, 1, d]).expand([b, 1, d]);
        let mut temporal_in = bos;
        if frames > 1 {
            let prev = emb.clone().slice([0..b, 0..frames - 1, 0..q, 0..d]).mean_dim(2).reshape([b, frames - 1, d]);
            temporal_in = Tensor::cat(vec![temporal_in, prev], 1);
        }
        let h = c.num_heads;
        let tbias = self.temporal_bias.clone().slice([0..1, 0..h, 0..frames, 0..frames]);
        let mut x = temporal_in;
        for layer in &self.temporal {
            let cross = layer.cross_kv(encoded.clone());
            x = layer.forward(x, &cross, tbias.clone());
        }
        let temporal = x; // [b, t, d]

        // Depth inputs per frame: [temporal_out[t], E[y[t,0]], …, E[y[t,q−2]]].
        let head = temporal.clone().reshape([b, frames, 1, d]);
        let tail = emb.slice([0..b, 0..frames, 0..q - 1, 0..d]);
        let mut y = Tensor::cat(vec![head, tail], 2).reshape([b * frames, q, d]);
        for layer in &self.depth {
            y = layer.forward(y, self.depth_bias.clone());
        }
        let depth = y.reshape([b, frames * q, d]);
        let logits = self.logits.forward(self.decoder_norm.forward(depth.clone()));
        TeacherOutputs { temporal, depth, logits }
    }

    /// Prepares the per-chunk decode state for `encoded: [b, encoder_len, d]`: cross-attention K/V
    /// of every temporal layer (computed once) and empty, preallocated KV caches.
    pub fn start_chunk(&self, encoded: Tensor<3>) -> DecodeCache {
        let c = &self.config;
        let b = encoded.dims()[0];
        let cache = |len| KvCache::new(b, c.num_heads, len, c.head_dim, &self.device);
        DecodeCache {
            cross: self.temporal.iter().map(|l| l.cross_kv(encoded.clone())).collect(),
            temporal: (0..self.temporal.len()).map(|_| cache(c.chunk_frames)).collect(),
            depth: (0..self.depth.len()).map(|_| cache(c.num_levels)).collect(),
            batch: b,
        }
    }

    /// Temporal input for the next frame: `E[BOS]` for frame 0, else the mean of the previous
    /// frame's level embeddings. `prev_frame: [b, levels]` ids (ignored for frame 0). `[b, 1, d]`.
    pub fn temporal_input(&self, cache: &DecodeCache, prev_frame: Option<Tensor<2, Int>>) -> Tensor<3> {
        let (b, d) = (cache.batch, self.config.d_model);
        match prev_frame {
            Some(ids) if cache.frames() > 0 => self.embed2(ids).mean_dim(1), // [b, 1, d]
            _ => self
                .embed(Tensor::from_data(TensorData::new(vec![0i32], [1]), &self.device))
                .reshape([1, 1, d])
                .expand([b, 1, d]),
        }
    }

    /// One temporal step: `x: [b, 1, d]` -> `[b, 1, d]`. Resets the depth caches for the new frame.
    pub fn temporal_step(&self, cache: &mut DecodeCache, x: Tensor<3>) -> Tensor<3> {
        let t = cache.frames();
        let h = self.config.num_heads;
        let bias = self.temporal_bias.clone().slice([0..1, 0..h, t..t + 1, 0..t + 1]);
        let mut x = x;
        for ((layer, cross), kv) in self.temporal.iter().zip(&cache.cross).zip(cache.temporal.iter_mut()) {
            x = layer.step(x, cross, kv, bias.clone());
        }
        for kv in &mut cache.depth {
            kv.reset();
        }
        x
    }

    /// One depth step: `x: [b, 1, d]` (the temporal output for level 0, else `E[y[t, q−1]]`)
    /// -> logits `[b, vocab]`.
    pub fn depth_step(&self, cache: &mut DecodeCache, x: Tensor<3>) -> Tensor<2> {
        let (pre, _) = self.depth_step_hidden(cache, x);
        pre
    }

    /// [`Self::depth_step`] that also returns the depth stack output before `decoder_norm`.
    pub fn depth_step_hidden(&self, cache: &mut DecodeCache, x: Tensor<3>) -> (Tensor<2>, Tensor<3>) {
        let q = cache.levels();
        let h = self.config.num_heads;
        let bias = self.depth_bias.clone().slice([0..1, 0..h, q..q + 1, 0..q + 1]);
        let mut y = x;
        for (layer, kv) in self.depth.iter().zip(cache.depth.iter_mut()) {
            y = layer.step(y, kv, bias.clone());
        }
        let b = cache.batch;
        let logits = self.logits.forward(self.decoder_norm.forward(y.clone()));
        (logits.reshape([b, self.config.vocab_size]), y)
    }

    /// Embedding of one id per row, `ids: [b]` -> `[b, 1, d]` (the next depth input).
    pub fn depth_input(&self, ids: Tensor<1, Int>) -> Tensor<3> {
        let b = ids.dims()[0];
        self.embed(ids).reshape([b, 1, self.config.d_model])
    }
}
