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

use std::ops::Range;
use std::sync::OnceLock;

use burn::tensor::{Device, Int, Tensor, TensorData};

use super::cache::KvCache;
use super::checkpoint::RawTensor;
use super::cpu::{CpuChunk, CpuDecoder, CpuMlp, CpuSelfAttention};
use super::cpu_encoder::{CpuEncoder, Dense};
use super::depth::DepthLayer;
use super::encoder::{sinusoid_positions, EncoderLayer};
use super::kernels::{Matrix, WeightPrecision};
use super::layers::{project_memory, CrossAttention, GeGlu, Linear, RmsNorm, SelfAttention};
use super::temporal::{CrossKv, TemporalLayer};
use super::weights::{self, HostWeights};
use super::{LmConfig, LmError};

pub struct Depthformer {
    pub config: LmConfig,
    options: LmOptions,
    device: Device,
    /// `[vocab, d]`, shared by encoder and decoder (no √d scaling).
    embedding: Tensor<2>,
    /// `[1, encoder_len, d]`.
    positions: Tensor<3>,
    /// The encoder and cross-attention K/V maps on burn: built at load off the CPU path, on first
    /// use on it (only the teacher-forced path and the burn step methods need them there).
    burn_encoder: OnceLock<BurnEncoder>,
    /// The encoder and cross-attention K/V maps with host buffers (the CPU path).
    cpu_encoder: Option<CpuEncoder>,
    /// The decoder stacks on burn: built at load on GPUs, on first use on the CPU path (only the
    /// teacher-forced path and the burn step methods need them there).
    decoder: OnceLock<BurnDecoder>,
    /// The decoder stacks as host matrices (the CPU path).
    cpu: Option<CpuDecoder>,
    /// Column blocks of burn's linear maps (see `Linear`).
    blocks: usize,
}

/// An RMSNorm on `device` from its host scale vector.
fn host_norm(scale: &[f32], c: &LmConfig, device: &Device) -> RmsNorm {
    RmsNorm::new(Tensor::<1>::from_data(TensorData::new(scale.to_vec(), [scale.len()]), device), c.rms_norm_eps)
}

/// The encoder stack, its final norm and the temporal layers' cross-attention key|value maps on
/// burn.
struct BurnEncoder {
    layers: Vec<EncoderLayer>,
    norm: RmsNorm,
    /// Per temporal layer, the fused key|value map of its cross-attention (applied once per chunk).
    cross_key_value: Vec<Linear>,
}

impl BurnEncoder {
    /// Uploads the host encoder's weights.
    fn from_cpu(cpu: &CpuEncoder, c: &LmConfig, device: &Device, blocks: usize) -> Self {
        let norm = |v: &[f32]| host_norm(v, c, device);
        let linear = |m: &Dense| Linear::new(Tensor::from_data(TensorData::new(m.w.clone(), [m.inputs, m.outputs]), device), blocks);
        Self {
            layers: cpu
                .layers
                .iter()
                .map(|l| EncoderLayer {
                    pre_attention_norm: norm(&l.pre_attention_norm),
                    attention: SelfAttention { qkv: linear(&l.qkv), out: linear(&l.out), num_heads: c.num_heads, head_dim: c.head_dim },
                    pre_mlp_norm: norm(&l.pre_mlp_norm),
                    mlp: GeGlu { wi: linear(&l.wi), wo: linear(&l.wo) },
                })
                .collect(),
            norm: norm(&cpu.norm),
            cross_key_value: cpu.cross_key_value.iter().map(linear).collect(),
        }
    }
}

/// The temporal and depth stacks, the decoder norm and the logits on burn.
struct BurnDecoder {
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

impl BurnDecoder {
    /// Uploads the host decoder's weights (bf16 weights widen exactly).
    fn from_cpu(cpu: &CpuDecoder, c: &LmConfig, device: &Device, blocks: usize) -> Self {
        let norm = |v: &[f32]| host_norm(v, c, device);
        let linear = |m: &Matrix| {
            Linear::new(Tensor::from_data(TensorData::new(m.to_kernel(), [m.cols(), m.rows()]), device), blocks)
        };
        let attn = |a: &CpuSelfAttention| SelfAttention {
            qkv: linear(&a.qkv),
            out: linear(&a.out),
            num_heads: c.num_heads,
            head_dim: c.head_dim,
        };
        let mlp = |m: &CpuMlp| GeGlu { wi: linear(&m.wi), wo: linear(&m.wo) };
        let bias = |t: &[f32], len: usize| Tensor::<4>::from_data(TensorData::new(t.to_vec(), [1, c.num_heads, len, len]), device);
        Self {
            temporal: cpu
                .temporal
                .iter()
                .map(|l| TemporalLayer {
                    pre_self_attention_norm: norm(&l.pre_self_attention_norm),
                    self_attention: attn(&l.self_attention),
                    pre_cross_attention_norm: norm(&l.pre_cross_attention_norm),
                    cross_attention: CrossAttention {
                        query: linear(&l.cross_query),
                        out: linear(&l.cross_out),
                        num_heads: c.num_heads,
                        head_dim: c.head_dim,
                    },
                    pre_mlp_norm: norm(&l.pre_mlp_norm),
                    mlp: mlp(&l.mlp),
                })
                .collect(),
            temporal_bias: bias(&cpu.temporal_bias, c.chunk_frames),
            depth: cpu
                .depth
                .iter()
                .map(|l| DepthLayer {
                    pre_self_attention_norm: norm(&l.pre_self_attention_norm),
                    self_attention: attn(&l.self_attention),
                    pre_mlp_norm: norm(&l.pre_mlp_norm),
                    mlp: mlp(&l.mlp),
                })
                .collect(),
            depth_bias: bias(&cpu.depth_bias, c.num_levels),
            decoder_norm: norm(&cpu.decoder_norm),
            logits: linear(&cpu.logits),
        }
    }
}

/// Which depth-step logits are computed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DepthLogits {
    /// The whole vocabulary, as the reference (conformance always runs this).
    #[default]
    All,
    /// Only the current RVQ level's `codebook_size` ids: the `[d, vocab]` logits kernel is most
    /// of a depth step's weights, so this is a speed option. Ids outside the level, which a
    /// trained model essentially never samples, can then not be drawn.
    Level,
}

impl std::str::FromStr for DepthLogits {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "all" | "full" => Ok(Self::All),
            "level" => Ok(Self::Level),
            other => Err(format!("unknown depth-logits mode `{other}` (expected all or level)")),
        }
    }
}

impl std::fmt::Display for DepthLogits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::All => "all",
            Self::Level => "level",
        })
    }
}

/// How the LM runs. The defaults are the exact path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LmOptions {
    /// Decoder weights on the CPU path (GPUs run f32).
    pub precision: WeightPrecision,
    pub depth_logits: DepthLogits,
    /// Decode steps with the host kernels on the flex device (`false`: burn ops, for comparison).
    pub cpu_kernels: bool,
}

impl Default for LmOptions {
    fn default() -> Self {
        Self { precision: WeightPrecision::F32, depth_logits: DepthLogits::All, cpu_kernels: true }
    }
}

impl LmOptions {
    /// The defaults with `MRT_LM_WEIGHTS` (f32|bf16), `MRT_DEPTH_LOGITS` (all|level) and
    /// `MRT_LM_KERNELS` (host|burn) applied, as the `mrt` flags read them. A value that is not one
    /// of those is an error naming the variable.
    pub fn from_env() -> Result<Self, String> {
        let mut o = Self::default();
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        if let Some(v) = var("MRT_LM_WEIGHTS") {
            o.precision = v.trim().parse().map_err(|e| format!("MRT_LM_WEIGHTS: {e}"))?;
        }
        if let Some(v) = var("MRT_DEPTH_LOGITS") {
            o.depth_logits = v.trim().parse().map_err(|e| format!("MRT_DEPTH_LOGITS: {e}"))?;
        }
        if let Some(v) = var("MRT_LM_KERNELS") {
            o.cpu_kernels = match v.trim() {
                "host" => true,
                "burn" => false,
                other => return Err(format!("MRT_LM_KERNELS: unknown value `{other}` (expected host or burn)")),
            };
        }
        Ok(o)
    }
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

/// Per-chunk decoding state of the burn step path: cross-attention K/V and the temporal and
/// depth KV caches.
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

/// One chunk being decoded, on whichever path the model runs ([`Depthformer::begin_chunk`]).
pub enum ChunkState {
    Burn {
        cache: DecodeCache,
        /// The next depth step's input.
        input: Option<Tensor<3>>,
    },
    Cpu(CpuChunk),
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
    /// Builds the model on `device` from checked host weights, consuming them, with the default
    /// (exact) options.
    pub fn from_weights(config: LmConfig, w: HostWeights, device: &Device) -> Result<Self, LmError> {
        Self::from_weights_with(config, w, device, LmOptions::default())
    }

    /// Builds the model with `options`. The host kernels run on the flex device; elsewhere the
    /// decoder runs on burn, in f32.
    pub fn from_weights_with(config: LmConfig, mut w: HostWeights, device: &Device, options: LmOptions) -> Result<Self, LmError> {
        let c = &config;
        let eps = c.rms_norm_eps;
        let cpu_path = options.cpu_kernels && crate::device::is_flex(device);
        if options.precision != WeightPrecision::F32 && !cpu_path {
            return Err(LmError::BadInput(format!(
                "{} weights are implemented for the CPU path (flex device with host kernels); this device runs f32",
                options.precision
            )));
        }
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
        let mlp = |w: &mut HostWeights, mat: &mut dyn FnMut(&mut HostWeights, &str) -> Result<Tensor<2>, LmError>, p: &str| -> Result<GeGlu, LmError> {
            let wi = vec![mat(w, &format!("{p}.wi_0.kernel"))?, mat(w, &format!("{p}.wi_1.kernel"))?];
            Ok(GeGlu { wi: Linear::fused(wi, blocks), wo: Linear::new(mat(w, &format!("{p}.wo.kernel"))?, blocks) })
        };

        let embedding_raw = w.take(weights::EMBEDDING)?;
        let embedding_host = embedding_raw.data.clone();
        let embedding = upload::<2>(embedding_raw, device);
        let burn_encoder = OnceLock::new();
        let cpu_encoder = if cpu_path {
            Some(CpuEncoder::from_weights(c, &mut w)?)
        } else {
            let mut layers = Vec::with_capacity(c.encoder_layers);
            for i in 0..c.encoder_layers {
                let p = format!("encoder.layers_{i}");
                layers.push(EncoderLayer {
                    pre_attention_norm: norm(&mut w, &format!("{p}.pre_attention_layer_norm.scale"))?,
                    attention: self_attention(&mut w, &mut mat, &format!("{p}.attention"))?,
                    pre_mlp_norm: norm(&mut w, &format!("{p}.pre_mlp_layer_norm.scale"))?,
                    mlp: mlp(&mut w, &mut mat, &format!("{p}.mlp"))?,
                });
            }
            let encoder_norm = norm(&mut w, weights::ENCODER_NORM)?;
            let mut cross_key_value = Vec::with_capacity(c.temporal_layers);
            for i in 0..c.temporal_layers {
                let p = format!("{}.layers_{i}.encoder_decoder_attention", weights::TEMPORAL);
                let kv = vec![mat(&mut w, &format!("{p}.key.kernel"))?, mat(&mut w, &format!("{p}.value.kernel"))?];
                cross_key_value.push(Linear::fused(kv, blocks));
            }
            let _ = burn_encoder.set(BurnEncoder { layers, norm: encoder_norm, cross_key_value });
            None
        };
        // The decoder stacks go through the host layout on every device (one name map); GPUs
        // upload them in f32 and drop the host copy.
        let precision = if cpu_path { options.precision } else { WeightPrecision::F32 };
        let host = CpuDecoder::from_weights(c, &mut w, embedding_host, precision)?;
        let decoder = OnceLock::new();
        let cpu = if cpu_path {
            Some(host)
        } else {
            let _ = decoder.set(BurnDecoder::from_cpu(&host, c, device, blocks));
            None
        };
        let positions = sinusoid_positions(c.encoder_len(), c.d_model, c.position_timescale, device);
        Ok(Self {
            config,
            options,
            device: device.clone(),
            embedding,
            positions,
            burn_encoder,
            cpu_encoder,
            decoder,
            cpu,
            blocks,
        })
    }

    /// The options the model was built with.
    pub fn options(&self) -> LmOptions {
        self.options
    }

    /// Whether decode steps run with the host kernels.
    pub fn uses_cpu_kernels(&self) -> bool {
        self.cpu.is_some()
    }

    /// The host decoder, when decode steps run with the host kernels.
    pub fn cpu_decoder(&self) -> Option<&CpuDecoder> {
        self.cpu.as_ref()
    }

    fn decoder(&self) -> &BurnDecoder {
        self.decoder.get_or_init(|| {
            let cpu = self.cpu.as_ref().expect("the burn decoder is built at load unless the host decoder exists");
            BurnDecoder::from_cpu(cpu, &self.config, &self.device, self.blocks)
        })
    }

    fn burn_encoder(&self) -> &BurnEncoder {
        self.burn_encoder.get_or_init(|| {
            let cpu = self.cpu_encoder.as_ref().expect("the burn encoder is built at load unless the host encoder exists");
            BurnEncoder::from_cpu(cpu, &self.config, &self.device, self.blocks)
        })
    }

    fn cross_kv(&self, layer: usize, encoded: Tensor<3>) -> CrossKv {
        let map = &self.burn_encoder().cross_key_value[layer];
        let (keys, values) = project_memory(map, encoded, self.config.num_heads, self.config.head_dim);
        CrossKv { keys, values }
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
    ///
    /// On the CPU path this runs the host encoder ([`CpuEncoder`]); an id outside the vocabulary
    /// then panics like burn's lookup does (use [`Self::encode_ids`] for an error instead).
    pub fn encode(&self, ids: Tensor<2, Int>) -> Tensor<3> {
        if self.cpu_encoder.is_some() {
            let b = ids.dims()[0];
            let host = ids.into_data().convert::<i32>().try_into_vec::<i32>().expect("int ids");
            return self.encode_ids(&host, b).unwrap_or_else(|e| panic!("encoder: {e}"));
        }
        let enc = self.burn_encoder();
        let mut x = self.embed2(ids) + self.positions.clone();
        for layer in &enc.layers {
            x = layer.forward(x);
        }
        enc.norm.forward(x)
    }

    /// The encoder over host ids `[batch, encoder_len]` on the model's path.
    pub fn encode_ids(&self, ids: &[i32], batch: usize) -> Result<Tensor<3>, LmError> {
        let (s, d) = (self.config.encoder_len(), self.config.d_model);
        if ids.len() != batch * s {
            return Err(LmError::BadInput(format!("encoder ids: {} values for {batch} rows of {s}", ids.len())));
        }
        let vocab = self.config.vocab_size;
        if let Some(&id) = ids.iter().find(|&&id| usize::try_from(id).map_or(true, |i| i >= vocab)) {
            return Err(LmError::BadInput(format!("encoder token id {id} outside the vocabulary (0..{vocab})")));
        }
        match (&self.cpu_encoder, &self.cpu) {
            (Some(enc), Some(cpu)) => {
                let out = enc.encode(&cpu.embedding, ids, batch)?;
                Ok(Tensor::from_data(TensorData::new(out, [batch, s, d]), &self.device))
            }
            _ => Ok(self.encode(self.ids_tensor(ids, batch, s))),
        }
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
        let dec = self.decoder();
        let tbias = dec.temporal_bias.clone().slice([0..1, 0..h, 0..frames, 0..frames]);
        let mut x = temporal_in;
        for (i, layer) in dec.temporal.iter().enumerate() {
            let cross = self.cross_kv(i, encoded.clone());
            x = layer.forward(x, &cross, tbias.clone());
        }
        let temporal = x; // [b, t, d]

        // Depth inputs per frame: [temporal_out[t], E[y[t,0]], …, E[y[t,q−2]]].
        let head = temporal.clone().reshape([b, frames, 1, d]);
        let tail = emb.slice([0..b, 0..frames, 0..q - 1, 0..d]);
        let mut y = Tensor::cat(vec![head, tail], 2).reshape([b * frames, q, d]);
        for layer in &dec.depth {
            y = layer.forward(y, dec.depth_bias.clone());
        }
        let depth = y.reshape([b, frames * q, d]);
        let logits = dec.logits.forward(dec.decoder_norm.forward(depth.clone()));
        TeacherOutputs { temporal, depth, logits }
    }

    /// Prepares the per-chunk decode state for `encoded: [b, encoder_len, d]`: cross-attention K/V
    /// of every temporal layer (computed once) and empty, preallocated KV caches.
    pub fn start_chunk(&self, encoded: Tensor<3>) -> DecodeCache {
        let c = &self.config;
        let b = encoded.dims()[0];
        let cache = |len| KvCache::new(b, c.num_heads, len, c.head_dim, &self.device);
        DecodeCache {
            cross: (0..c.temporal_layers).map(|i| self.cross_kv(i, encoded.clone())).collect(),
            temporal: (0..c.temporal_layers).map(|_| cache(c.chunk_frames)).collect(),
            depth: (0..c.depth_layers).map(|_| cache(c.num_levels)).collect(),
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
        let dec = self.decoder();
        let bias = dec.temporal_bias.clone().slice([0..1, 0..h, t..t + 1, 0..t + 1]);
        let mut x = x;
        for ((layer, cross), kv) in dec.temporal.iter().zip(&cache.cross).zip(cache.temporal.iter_mut()) {
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
        let dec = self.decoder();
        let bias = dec.depth_bias.clone().slice([0..1, 0..h, q..q + 1, 0..q + 1]);
        let mut y = x;
        for (layer, kv) in dec.depth.iter().zip(cache.depth.iter_mut()) {
            y = layer.step(y, kv, bias.clone());
        }
        let b = cache.batch;
        let logits = dec.logits.forward(dec.decoder_norm.forward(y.clone()));
        (logits.reshape([b, self.config.vocab_size]), y)
    }

    /// Embedding of one id per row, `ids: [b]` -> `[b, 1, d]` (the next depth input).
    pub fn depth_input(&self, ids: Tensor<1, Int>) -> Tensor<3> {
        let b = ids.dims()[0];
        self.embed(ids).reshape([b, 1, self.config.d_model])
    }

    /// The vocabulary rows a depth step at `level` computes under the model's [`DepthLogits`].
    pub fn logit_rows(&self, level: usize) -> Range<usize> {
        let c = &self.config;
        match self.options.depth_logits {
            DepthLogits::All => 0..c.vocab_size,
            DepthLogits::Level => {
                let start = c.codec_offset + level * c.codebook_size;
                start..start + c.codebook_size
            }
        }
    }

    /// Starts decoding a chunk for `encoded: [b, encoder_len, d]` on the model's path: the
    /// cross-attention keys and values of every temporal layer are computed here, once.
    pub fn begin_chunk(&self, encoded: Tensor<3>) -> Result<ChunkState, LmError> {
        let Some(cpu) = &self.cpu else {
            return Ok(ChunkState::Burn { cache: self.start_chunk(encoded), input: None });
        };
        let b = encoded.dims()[0];
        let cross = match &self.cpu_encoder {
            Some(enc) => {
                let host = encoded.into_data().try_into_vec::<f32>().map_err(|e| LmError::Backend(format!("{e:?}")))?;
                enc.cross_key_values(&host, b)
            }
            None => {
                let host = |t: Tensor<4>| t.into_data().try_into_vec::<f32>().map_err(|e| LmError::Backend(format!("{e:?}")));
                let mut cross = Vec::with_capacity(self.config.temporal_layers);
                for i in 0..self.config.temporal_layers {
                    let kv = self.cross_kv(i, encoded.clone());
                    cross.push((host(kv.keys)?, host(kv.values)?));
                }
                cross
            }
        };
        Ok(ChunkState::Cpu(cpu.start_chunk(b, cross)?))
    }

    /// The next frame's temporal step. `prev_frame`: the previous frame's ids, `[b, levels]`
    /// (ignored for frame 0, whose input is `E[BOS]`).
    pub fn step_frame(&self, state: &mut ChunkState, prev_frame: Option<&[i32]>) -> Result<(), LmError> {
        match state {
            ChunkState::Burn { cache, input } => {
                let levels = self.config.num_levels;
                let prev = prev_frame.map(|ids| self.ids_tensor(ids, ids.len() / levels, levels));
                let x = self.temporal_input(cache, prev);
                *input = Some(self.temporal_step(cache, x));
                Ok(())
            }
            ChunkState::Cpu(chunk) => {
                let cpu = self.cpu.as_ref().ok_or_else(|| LmError::BadInput("CPU chunk on a model without host kernels".into()))?;
                cpu.temporal_input(chunk, prev_frame)?;
                cpu.temporal_step(chunk);
                Ok(())
            }
        }
    }

    /// The next depth step: its input is the frame's temporal output for level 0, else the
    /// embedding of `prev` (the previous level's id, one per row or one for all rows). Writes the
    /// logits of [`Self::logit_rows`] for `level`, `[b, rows]`, into `logits` (resized).
    pub fn step_level(&self, state: &mut ChunkState, level: usize, prev: Option<&[i32]>, logits: &mut Vec<f32>) -> Result<(), LmError> {
        let rows = self.logit_rows(level);
        match state {
            ChunkState::Burn { cache, input } => {
                let b = cache.batch();
                let x = match prev {
                    Some(ids) => {
                        let per_row: Vec<i32> = (0..b).map(|r| ids[r.min(ids.len() - 1)]).collect();
                        self.depth_input(Tensor::from_data(TensorData::new(per_row, [b]), &self.device))
                    }
                    None => input.take().ok_or_else(|| LmError::BadInput("depth step before the frame's temporal step".into()))?,
                };
                let all = self.depth_step(cache, x).into_data().try_into_vec::<f32>().map_err(|e| LmError::Backend(format!("{e:?}")))?;
                let vocab = self.config.vocab_size;
                logits.clear();
                for r in 0..b {
                    logits.extend_from_slice(&all[r * vocab + rows.start..r * vocab + rows.end]);
                }
                Ok(())
            }
            ChunkState::Cpu(chunk) => {
                let cpu = self.cpu.as_ref().ok_or_else(|| LmError::BadInput("CPU chunk on a model without host kernels".into()))?;
                if let Some(ids) = prev {
                    cpu.depth_input(chunk, ids)?;
                }
                logits.resize(chunk.batch * rows.len(), 0.0);
                cpu.depth_step(chunk, rows, logits);
                Ok(())
            }
        }
    }
}
