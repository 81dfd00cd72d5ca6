//! MRT2's checkpoint names and the one loader into host-layout structs.
//!
//! The checkpoints (`checkpoints/mrt2_{small,base}.safetensors`) and the fixtures store Flax
//! parameter paths joined with `/`. Every tensor name of the official layout appears in this file
//! and nowhere else. Matrices are stored transposed, `[out, in]` row-major, for
//! [`crate::kernels::host::dot_rows`].
//!
//! Key families handled (prefix `params/depthformer/`):
//! * `encoder/body/layers_1/branched_mulan_embedder/mulan_embedder/mulan_dequantizer/embedding`
//!   `[levels·per_level, E]` and `.../mulan_embedder/depth_input_adapter/kernel` `[E, w]`;
//! * `encoder/body/layers_1/branched_regular_embedder/regular_embedder/embedding` `[rows, w]`;
//! * `encoder/body/encoder_ln/{scale,bias}` `[w]`;
//! * `decoder/decoder_embedding/embedding/embedding` `[12294, d_t]`;
//! * `decoder/{temporal_body,depth_body}/transformer/x_layers_{i}/{self_attention,cross_attention}/`
//!   `attention/{query,key,value}_projection/kernel` `[in, H, Dh]`, or the fused
//!   `attention/query_key_value_projection/kernel` `[in, 3, H, Dh]`, or
//!   `attention/query_projection/kernel` + `attention/key_value_projection/kernel`
//!   `[in_kv, 2, H, Dh]`, or `attention/query_projection/kernel` +
//!   `attention/shared_key_value_projection/kernel` `[in_kv, H, Dh]` (K = V): the variants
//!   `mlx/load_weights.py::_load_attention_weights` accepts;
//!   `attention/per_dim_scale` `[Dh]`, `attention/sink_{key,value}_embeddings` `[n, H, Dh]`
//!   (temporal only), `output_projection/kernel` `[d, H, Dh]`, `{pre,post}_norm/scale` `[d]`;
//! * `.../x_layers_{i}/ffn/{ffn_layer1,ffn_layer2}/{kernel,bias}`, `.../ffn/{pre,post}_norm/scale`;
//! * `decoder/depth_body/depth_input_adapter/kernel` `[d_t, d_d]` (absent when `d_t == d_d`),
//!   `decoder/depth_body/final_ln/{scale,bias}` `[d_d]`,
//!   `decoder/depth_body/to_logits/{kernel,bias}` `[d_d, 12294]`, `[12294]`.
//!
//! Keys under `params/soundstream/` (the codec's) and any key outside `params/depthformer/` are
//! ignored. A missing, mis-shaped or non-finite LM tensor, or an unused key under
//! `params/depthformer/`, is an error that names the file and the tensor
//! ([`TensorStore`]'s checks).

use std::path::Path;

use super::config::{Mrt2Config, StackConfig};
use crate::formats::safetensors::{self, SafetensorsError};
use crate::formats::tensor::{TensorError, TensorStore};
use crate::kernels::host::{transpose_into, Matrix};
use crate::kernels::WeightPrecision;
use crate::sampling::rng::SplitMix64;

/// Prefix of every language-model tensor.
pub const LM_PREFIX: &str = "params/depthformer/";
/// Prefix of the codec's tensors in the same file (not read here).
pub const CODEC_PREFIX: &str = "params/soundstream/";

/// Errors of the weight loader; each names the file and the tensor at fault.
#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    #[error(transparent)]
    Read(#[from] SafetensorsError),
    #[error(transparent)]
    Tensor(#[from] TensorError),
    #[error("tensor `{name}` in {path}: {reason}")]
    Layout { path: std::path::PathBuf, name: String, reason: String },
    #[error("{path} has no depth_input_adapter but the temporal width {d_t} differs from the depth width {d_d}")]
    AdapterRequired { path: std::path::PathBuf, d_t: usize, d_d: usize },
}

/// A dense layer stored `[out, in]` (one row per output, f32 or bf16; the shared host GEMV's
/// [`Matrix`]), with an optional bias.
#[derive(Debug, Clone, PartialEq)]
pub struct Linear {
    pub out_dim: usize,
    pub in_dim: usize,
    pub w: Matrix,
    pub bias: Option<Vec<f32>>,
}

impl Linear {
    /// From `[out, in]` f32 weights.
    pub fn new(out_dim: usize, in_dim: usize, w: Vec<f32>, bias: Option<Vec<f32>>) -> Self {
        Self { out_dim, in_dim, w: Matrix::from_rows(out_dim, in_dim, w, WeightPrecision::F32), bias }
    }

    /// `out[j] = W[start + j]·x + b[start + j]` for `j < out.len()`: all outputs, or a slice of
    /// them (one level's logits). Split over rayon's threads.
    pub fn apply_rows(&self, start: usize, x: &[f32], out: &mut [f32]) {
        let n = out.len();
        self.w.gemv(x, start..start + n, out);
        if let Some(b) = &self.bias {
            out.iter_mut().zip(&b[start..start + n]).for_each(|(o, &b)| *o += b);
        }
    }

    /// `out = W·x + b` over every output.
    pub fn apply(&self, x: &[f32], out: &mut [f32]) {
        self.apply_rows(0, x, out);
    }

    /// Weight bytes one full product streams.
    pub fn bytes(&self) -> usize {
        self.w.bytes()
    }

    fn set_precision(&mut self, precision: WeightPrecision) {
        self.w = self.w.to_precision(precision);
    }
}

/// One attention sub-block (self- or cross-attention) with its norms.
#[derive(Debug, Clone)]
pub struct Attention {
    /// `[H·Dh, d_model]`.
    pub query: Linear,
    /// `[H·Dh, d_kv]` (`d_kv` is the encoder width for cross-attention).
    pub key: Linear,
    pub value: Linear,
    /// Raw `per_dim_scale` `[Dh]`.
    pub per_dim_scale: Vec<f32>,
    /// Derived: `1.442695041 / sqrt(Dh) · softplus(per_dim_scale)` `[Dh]`.
    pub query_scale: Vec<f32>,
    /// `[n_sinks, H, Dh]` flattened; empty without sinks.
    pub sink_key: Vec<f32>,
    pub sink_value: Vec<f32>,
    /// `[d_model, H·Dh]` (the official kernel `[d, H, Dh]` is already in this layout).
    pub output: Linear,
    pub pre_norm: Vec<f32>,
    pub post_norm: Vec<f32>,
}

/// The un-gated FFN sub-block with its norms.
#[derive(Debug, Clone)]
pub struct Ffn {
    /// `[F, d]` with bias `[F]`.
    pub layer1: Linear,
    /// `[d, F]` with bias `[d]`.
    pub layer2: Linear,
    pub pre_norm: Vec<f32>,
    pub post_norm: Vec<f32>,
}

/// A temporal transformer layer: self-attention, cross-attention, FFN.
#[derive(Debug, Clone)]
pub struct TemporalLayer {
    pub self_attention: Attention,
    pub cross_attention: Attention,
    pub ffn: Ffn,
}

/// A depth transformer layer: causal self-attention (no sink), FFN.
#[derive(Debug, Clone)]
pub struct DepthLayer {
    pub self_attention: Attention,
    pub ffn: Ffn,
}

/// Weights of the per-frame conditioning encoder.
#[derive(Debug, Clone)]
pub struct ConditioningWeights {
    /// MusicCoCa dequantizer `[levels·per_level, E]` row-major (row = embedding).
    pub mulan_table: Vec<f32>,
    /// `[w, E]`.
    pub mulan_adapter: Linear,
    /// Regular multi-channel table `[rows, w]` row-major.
    pub regular_table: Vec<f32>,
    pub ln_scale: Vec<f32>,
    pub ln_bias: Vec<f32>,
}

/// All language-model weights, host layout.
#[derive(Debug, Clone)]
pub struct Mrt2Weights {
    pub conditioning: ConditioningWeights,
    /// Decoder embedding `[12294, d_t]` row-major (unscaled; the model multiplies by √d_t).
    pub embedding: Vec<f32>,
    pub temporal: Vec<TemporalLayer>,
    /// `[d_d, d_t]`; `None` when the widths are equal (identity adapter).
    pub depth_input_adapter: Option<Linear>,
    pub depth: Vec<DepthLayer>,
    pub final_ln_scale: Vec<f32>,
    pub final_ln_bias: Vec<f32>,
    /// `[12294, d_d]` with bias `[12294]`.
    pub to_logits: Linear,
}

/// `jax.nn.softplus`: `log(1 + exp(x))`, computed stably as `max(x, 0) + log1p(exp(−|x|))`.
pub fn softplus(x: f32) -> f32 {
    x.max(0.0) + (-x.abs()).exp().ln_1p()
}

/// The store, taking tensors with their checks and transposing kernels.
struct Reader {
    store: TensorStore,
    /// Instead of the store: every tensor asked for is drawn uniform in ±0.05 (scales of norms
    /// around 1), for benchmarks at the real sizes without the real files.
    random: Option<SplitMix64>,
}

impl Reader {
    fn has(&self, name: &str) -> bool {
        self.store.contains(name)
    }

    fn get(&mut self, name: &str, shape: &[usize]) -> Result<Vec<f32>, WeightsError> {
        if let Some(rng) = &mut self.random {
            let n: usize = shape.iter().product();
            let center = if name.ends_with("/scale") { 1.0 } else { 0.0 };
            return Ok((0..n).map(|_| center + (rng.next_f64() as f32 - 0.5) * 0.1).collect());
        }
        Ok(self.store.take_exact(name, shape)?.data)
    }

    /// A kernel `[in, out...]` (the trailing dims flattened) transposed to `[out, in]`.
    fn kernel_t(&mut self, name: &str, shape: &[usize]) -> Result<Linear, WeightsError> {
        let k = self.get(name, shape)?;
        let in_dim = shape[0];
        let out_dim: usize = shape[1..].iter().product();
        let mut w = vec![0.0; k.len()];
        transpose_into(&k, in_dim, out_dim, &mut w);
        Ok(Linear::new(out_dim, in_dim, w, None))
    }

    /// A Dense layer `prefix/kernel` `[in, out]` (+ `prefix/bias` `[out]` when `bias`).
    fn dense(&mut self, prefix: &str, in_dim: usize, out_dim: usize, bias: bool) -> Result<Linear, WeightsError> {
        let mut l = self.kernel_t(&format!("{prefix}/kernel"), &[in_dim, out_dim])?;
        if bias {
            l.bias = Some(self.get(&format!("{prefix}/bias"), &[out_dim])?);
        }
        Ok(l)
    }

    /// Loads one attention sub-block under `p` (`.../self_attention/` or `.../cross_attention/`).
    fn attention(&mut self, p: &str, s: &StackConfig, kv_in: usize, sinks: usize) -> Result<Attention, WeightsError> {
        let (h, dh, dm) = (s.heads, s.head_dim, s.d_model);
        let a = format!("{p}attention/");
        let (qkv, kv, shared) = (
            format!("{a}query_key_value_projection/kernel"),
            format!("{a}key_value_projection/kernel"),
            format!("{a}shared_key_value_projection/kernel"),
        );
        let (query, key, value) = if self.has(&qkv) {
            if kv_in != dm {
                return Err(WeightsError::Layout {
                    path: self.store.path.clone(),
                    name: qkv,
                    reason: format!("a fused Q/K/V kernel needs the key input width {kv_in} to equal the model width {dm}"),
                });
            }
            let f = self.get(&qkv, &[dm, 3, h, dh])?;
            (split(&f, dm, 3, 0, h * dh), split(&f, dm, 3, 1, h * dh), split(&f, dm, 3, 2, h * dh))
        } else if self.has(&kv) {
            let q = self.kernel_t(&format!("{a}query_projection/kernel"), &[dm, h, dh])?;
            let f = self.get(&kv, &[kv_in, 2, h, dh])?;
            (q, split(&f, kv_in, 2, 0, h * dh), split(&f, kv_in, 2, 1, h * dh))
        } else if self.has(&shared) {
            let q = self.kernel_t(&format!("{a}query_projection/kernel"), &[dm, h, dh])?;
            let kv = self.kernel_t(&shared, &[kv_in, h, dh])?;
            (q, kv.clone(), kv)
        } else {
            (
                self.kernel_t(&format!("{a}query_projection/kernel"), &[dm, h, dh])?,
                self.kernel_t(&format!("{a}key_projection/kernel"), &[kv_in, h, dh])?,
                self.kernel_t(&format!("{a}value_projection/kernel"), &[kv_in, h, dh])?,
            )
        };
        let per_dim_scale = self.get(&format!("{a}per_dim_scale"), &[dh])?;
        // `1.442695041` = 1/softplus(0): with per_dim_scale 0 the query is scaled by 1/sqrt(Dh).
        // Computed in f64 and rounded once, as the reference's Python constant is. The literal is
        // the reference's (not `LOG2_E`, which differs in the 10th digit).
        #[allow(clippy::approx_constant)]
        let base = (1.442_695_041_f64 / (dh as f64).sqrt()) as f32;
        let query_scale = per_dim_scale.iter().map(|&x| base * softplus(x)).collect();
        let (sink_key, sink_value) = if sinks > 0 {
            (
                self.get(&format!("{a}sink_key_embeddings"), &[sinks, h, dh])?,
                self.get(&format!("{a}sink_value_embeddings"), &[sinks, h, dh])?,
            )
        } else {
            (Vec::new(), Vec::new())
        };
        // The output kernel is [d, H, Dh]: already [out, in].
        let out_w = self.get(&format!("{p}output_projection/kernel"), &[dm, h, dh])?;
        Ok(Attention {
            query,
            key,
            value,
            per_dim_scale,
            query_scale,
            sink_key,
            sink_value,
            output: Linear::new(dm, h * dh, out_w, None),
            pre_norm: self.get(&format!("{p}pre_norm/scale"), &[dm])?,
            post_norm: self.get(&format!("{p}post_norm/scale"), &[dm])?,
        })
    }

    /// Loads one FFN sub-block under `p` (`.../ffn/`).
    fn ffn(&mut self, p: &str, s: &StackConfig) -> Result<Ffn, WeightsError> {
        Ok(Ffn {
            layer1: self.dense(&format!("{p}ffn_layer1"), s.d_model, s.ffn, true)?,
            layer2: self.dense(&format!("{p}ffn_layer2"), s.ffn, s.d_model, true)?,
            pre_norm: self.get(&format!("{p}pre_norm/scale"), &[s.d_model])?,
            post_norm: self.get(&format!("{p}post_norm/scale"), &[s.d_model])?,
        })
    }
}

/// Part `which` of a fused kernel `[in, parts, inner]` as a `[inner, in]` matrix.
fn split(fused: &[f32], in_dim: usize, parts: usize, which: usize, inner: usize) -> Linear {
    let mut w = vec![0.0f32; inner * in_dim];
    for i in 0..in_dim {
        let src = &fused[(i * parts + which) * inner..(i * parts + which + 1) * inner];
        for (o, &x) in src.iter().enumerate() {
            w[o * in_dim + i] = x;
        }
    }
    Linear::new(inner, in_dim, w, None)
}

impl Mrt2Weights {
    /// Loads the LM weights of `cfg` from a safetensors file (the official checkpoint or a
    /// fixture set's `weights.safetensors`).
    pub fn load(path: &Path, cfg: &Mrt2Config) -> Result<Self, WeightsError> {
        Self::from_store(safetensors::read(path)?, cfg)
    }

    /// Loads the LM weights of `cfg` from the bytes of a safetensors file; `path` only names it in
    /// errors.
    pub fn from_bytes(path: &Path, bytes: &[u8], cfg: &Mrt2Config) -> Result<Self, WeightsError> {
        Self::from_store(safetensors::from_bytes(path, bytes)?, cfg)
    }

    /// Takes the LM tensors of `cfg` out of `store`; every tensor under [`LM_PREFIX`] must be
    /// used, the others are left alone.
    pub fn from_store(store: TensorStore, cfg: &Mrt2Config) -> Result<Self, WeightsError> {
        let mut r = Reader { store, random: None };
        let w = Self::read(&mut r, cfg)?;
        r.store.check_all_used(LM_PREFIX)?;
        Ok(w)
    }

    /// Random weights of `cfg`'s shapes (separate Q/K/V projections), for benchmarks.
    pub fn random(cfg: &Mrt2Config, seed: u64) -> Self {
        let mut r = Reader { store: TensorStore::new("(random weights)", Default::default()), random: Some(SplitMix64::new(seed)) };
        Self::read(&mut r, cfg).expect("random weights have every tensor")
    }

    /// Every projection's weights in `precision` (bf16 halves the bytes a frame streams; the
    /// products stay f32). Tables, norms and biases stay f32.
    pub fn set_precision(&mut self, precision: WeightPrecision) {
        for l in self.linears_mut() {
            l.set_precision(precision);
        }
    }

    /// The precision of the projections.
    pub fn precision(&self) -> WeightPrecision {
        self.to_logits.w.precision()
    }

    fn linears_mut(&mut self) -> Vec<&mut Linear> {
        let mut out: Vec<&mut Linear> = vec![&mut self.conditioning.mulan_adapter, &mut self.to_logits];
        out.extend(self.depth_input_adapter.as_mut());
        fn attn(a: &mut Attention) -> [&mut Linear; 4] {
            let Attention { query, key, value, output, .. } = a;
            [query, key, value, output]
        }
        for layer in &mut self.temporal {
            let TemporalLayer { self_attention, cross_attention, ffn } = layer;
            out.extend(attn(self_attention));
            out.extend(attn(cross_attention));
            out.extend([&mut ffn.layer1, &mut ffn.layer2]);
        }
        for layer in &mut self.depth {
            let DepthLayer { self_attention, ffn } = layer;
            out.extend(attn(self_attention));
            out.extend([&mut ffn.layer1, &mut ffn.layer2]);
        }
        out
    }

    fn read(r: &mut Reader, cfg: &Mrt2Config) -> Result<Self, WeightsError> {
        let enc = format!("{LM_PREFIX}encoder/body/");
        let mulan = format!("{enc}layers_1/branched_mulan_embedder/mulan_embedder/");
        let (e, wdt) = (cfg.musiccoca_embedding_size, cfg.encoder_width);
        let conditioning = ConditioningWeights {
            mulan_table: r.get(&format!("{mulan}mulan_dequantizer/embedding"), &[cfg.musiccoca_rows(), e])?,
            mulan_adapter: r.dense(&format!("{mulan}depth_input_adapter"), e, wdt, false)?,
            regular_table: r
                .get(&format!("{enc}layers_1/branched_regular_embedder/regular_embedder/embedding"), &[cfg.regular_table_rows, wdt])?,
            ln_scale: r.get(&format!("{enc}encoder_ln/scale"), &[wdt])?,
            ln_bias: r.get(&format!("{enc}encoder_ln/bias"), &[wdt])?,
        };

        let dec = format!("{LM_PREFIX}decoder/");
        let (t, d, v) = (&cfg.temporal, &cfg.depth, cfg.logits_width());
        let embedding = r.get(&format!("{dec}decoder_embedding/embedding/embedding"), &[v, t.d_model])?;
        let mut temporal = Vec::with_capacity(t.layers);
        for i in 0..t.layers {
            let p = format!("{dec}temporal_body/transformer/x_layers_{i}/");
            temporal.push(TemporalLayer {
                self_attention: r.attention(&format!("{p}self_attention/"), t, t.d_model, cfg.num_sinks)?,
                cross_attention: r.attention(&format!("{p}cross_attention/"), t, cfg.encoder_width, cfg.num_sinks)?,
                ffn: r.ffn(&format!("{p}ffn/"), t)?,
            });
        }

        let depth_prefix = format!("{dec}depth_body/");
        let adapter = format!("{depth_prefix}depth_input_adapter");
        // The adapter is the identity (no tensor) when the widths are equal; a file that has one
        // anyway is read with it.
        let depth_input_adapter = if r.has(&format!("{adapter}/kernel")) || cfg.has_depth_input_adapter() {
            Some(r.dense(&adapter, t.d_model, d.d_model, false)?)
        } else {
            None
        };
        if depth_input_adapter.is_none() && t.d_model != d.d_model {
            return Err(WeightsError::AdapterRequired { path: r.store.path.clone(), d_t: t.d_model, d_d: d.d_model });
        }
        let mut depth = Vec::with_capacity(d.layers);
        for i in 0..d.layers {
            let p = format!("{depth_prefix}transformer/x_layers_{i}/");
            depth.push(DepthLayer {
                self_attention: r.attention(&format!("{p}self_attention/"), d, d.d_model, 0)?,
                ffn: r.ffn(&format!("{p}ffn/"), d)?,
            });
        }
        Ok(Self {
            conditioning,
            embedding,
            temporal,
            depth_input_adapter,
            depth,
            final_ln_scale: r.get(&format!("{depth_prefix}final_ln/scale"), &[d.d_model])?,
            final_ln_bias: r.get(&format!("{depth_prefix}final_ln/bias"), &[d.d_model])?,
            to_logits: r.dense(&format!("{depth_prefix}to_logits"), d.d_model, v, true)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fused_kernel_splits_into_out_by_in_parts() {
        // [in = 2, parts = 2, inner = 3]: part p of input i holds 10·i + 3·p + o.
        let fused: Vec<f32> = (0..2).flat_map(|i| (0..2).flat_map(move |p| (0..3).map(move |o| (10 * i + 3 * p + o) as f32))).collect();
        let k = split(&fused, 2, 2, 1, 3);
        assert_eq!((k.out_dim, k.in_dim), (3, 2));
        assert_eq!(k.w.to_rows(), vec![3.0, 13.0, 4.0, 14.0, 5.0, 15.0]);
    }

    #[test]
    fn softplus_matches_log_one_plus_exp_and_does_not_overflow() {
        for x in [-20.0f32, -1.0, 0.0, 0.5, 3.0] {
            let exact = (1.0f64 + (x as f64).exp()).ln() as f32;
            assert!((softplus(x) - exact).abs() < 1e-6, "{x}");
        }
        assert_eq!(softplus(200.0), 200.0);
    }
}
