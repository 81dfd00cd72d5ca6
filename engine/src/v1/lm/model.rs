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
use super::host_decoder::{HostChunk, HostDecoder, HostMlp, HostSelfAttention};
use super::host_encoder::{Dense, EncoderScratch, HostEncoder};
#[cfg(any(feature = "wgpu", feature = "cuda"))]
use super::gpu_decoder::{GpuChunk, GpuDecoder, LogitRows};
use super::depth::DepthLayer;
use super::encoder::{sinusoid_positions, EncoderLayer};
use crate::kernels::counters::{read_back, upload};
use crate::kernels::{Matrix, WeightPrecision};
use super::layers::{project_memory, CrossAttention, GeGlu, Linear, RmsNorm, SelfAttention};
use super::temporal::{CrossKv, TemporalLayer};
use super::weights::{HostWeights, LmWeights};
use crate::device::{Compute, Target};
use super::{LmConfig, LmError};

pub struct Depthformer {
    pub config: LmConfig,
    options: LmOptions,
    device: Device,
    path: LmPath,
}

/// How the LM computes, chosen at load from the [`Compute`] of its [`Target`] (the codec's
/// `DecoderPath` has the same shape). A GPU decoder becomes a third variant.
#[allow(clippy::large_enum_variant)] // One per loaded model, built once and never moved after.
enum LmPath {
    /// Host kernels on the CPU. The burn reference (teacher-forced pass, burn steps) is built from
    /// the same host weights on first use: conformance and the tests use it.
    Host { encoder: HostEncoder, decoder: HostDecoder, reference: OnceLock<BurnStacks> },
    /// burn ops on the device, f32.
    Burn(BurnStacks),
    /// Our decode kernels on a GPU ([`GpuDecoder`]); the encoder on burn. burn's decoder (the
    /// teacher-forced reference: conformance, tests) is uploaded from `host` on first use, so
    /// generation holds one copy of the decoder's weights on the device, not two.
    #[cfg(any(feature = "wgpu", feature = "cuda"))]
    Gpu { stacks: BurnStacks, decoder: GpuDecoder, host: HostDecoder },
}

/// The whole model as burn modules.
struct BurnStacks {
    /// `[vocab, d]`, shared by encoder and decoder (no √d scaling).
    embedding: Tensor<2>,
    /// `[1, encoder_len, d]`.
    positions: Tensor<3>,
    encoder: BurnEncoder,
    /// Set at load, except on the GPU path (built on first use there).
    decoder: OnceLock<BurnDecoder>,
}

impl BurnStacks {
    /// Uploads the host layout (bf16 weights widen exactly); the decoder stacks too when
    /// `with_decoder`.
    fn from_host(encoder: &HostEncoder, decoder: &HostDecoder, with_decoder: bool, c: &LmConfig, device: &Device, blocks: usize) -> Self {
        let stacks = OnceLock::new();
        if with_decoder {
            let _ = stacks.set(BurnDecoder::from_host(decoder, c, device, blocks));
        }
        Self {
            embedding: Tensor::from_data(TensorData::new(decoder.embedding.clone(), [c.vocab_size, c.d_model]), device),
            positions: sinusoid_positions(c.encoder_len(), c.d_model, c.position_timescale, device),
            encoder: BurnEncoder::from_host(encoder, c, device, blocks),
            decoder: stacks,
        }
    }
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
    fn from_host(cpu: &HostEncoder, c: &LmConfig, device: &Device, blocks: usize) -> Self {
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
    fn from_host(cpu: &HostDecoder, c: &LmConfig, device: &Device, blocks: usize) -> Self {
        let norm = |v: &[f32]| host_norm(v, c, device);
        let linear = |m: &Matrix| {
            Linear::new(Tensor::from_data(TensorData::new(m.to_kernel(), [m.cols(), m.rows()]), device), blocks)
        };
        let attn = |a: &HostSelfAttention| SelfAttention {
            qkv: linear(&a.qkv),
            out: linear(&a.out),
            num_heads: c.num_heads,
            head_dim: c.head_dim,
        };
        let mlp = |m: &HostMlp| GeGlu { wi: linear(&m.wi), wo: linear(&m.wo) };
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
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
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

/// LM speed options (the defaults are the exact path). Where the LM computes is the
/// [`Target`]'s [`Compute`], not an option.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct LmOptions {
    /// Decoder weights on the host path (the burn path runs f32).
    pub precision: WeightPrecision,
    pub depth_logits: DepthLogits,
}

impl LmOptions {
    /// The one rule of which options a path supports: reduced-precision weights exist for our
    /// kernels (host and GPU), not for burn's ops. The CLI reports the error; the plugin falls
    /// back to f32 and says so.
    pub fn check(&self, compute: Compute) -> Result<(), String> {
        let supported = match compute {
            Compute::Host | Compute::Gpu => true,
            Compute::Burn => self.precision == WeightPrecision::F32,
        };
        if !supported {
            return Err(format!("{} weights are not implemented for {compute} (host and GPU kernels: f32, bf16, int8; burn ops: f32)", self.precision));
        }
        Ok(())
    }
}

/// Buffers one stream keeps between chunks (the host encoder's activations): the weights stay
/// immutable and shared, so two streams on one model never wait for each other.
#[derive(Default)]
pub struct LmScratch {
    encoder: EncoderScratch,
}

impl std::fmt::Debug for LmScratch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LmScratch")
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
/// depth KV caches. The burn steps are reached through the one stepping API
/// ([`Depthformer::begin_chunk`], [`Depthformer::step_frame`], [`Depthformer::step_level`]).
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
#[allow(clippy::large_enum_variant)] // One per chunk, built once and stepped in place.
pub enum ChunkState {
    Burn {
        cache: DecodeCache,
        /// The next depth step's input.
        input: Option<Tensor<3>>,
    },
    Host(HostChunk),
    #[cfg(any(feature = "wgpu", feature = "cuda"))]
    Gpu(GpuChunk),
}

/// Column blocks per linear map of the burn path: twice the CPU threads on the CPU (so the
/// batched matmul balances over them), one on GPUs.
fn linear_blocks(target: &Target) -> usize {
    if target.choice == crate::DeviceChoice::Flex {
        2 * std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        1
    }
}

impl Depthformer {
    /// Builds the model on `target` from checked host weights, consuming them, with the default
    /// (exact) options.
    pub fn from_weights(config: LmConfig, w: HostWeights, target: &Target) -> Result<Self, LmError> {
        Self::from_weights_with(config, w, target, LmOptions::default())
    }

    /// Builds the model with `options` on the path `target.compute` names. Every path is built
    /// from the one loader's [`LmWeights`]; the burn path uploads the host layout in f32.
    pub fn from_weights_with(config: LmConfig, w: HostWeights, target: &Target, options: LmOptions) -> Result<Self, LmError> {
        options.check(target.compute).map_err(LmError::BadInput)?;
        let c = &config;
        let mut weights = LmWeights::load(c, w)?;
        let encoder = HostEncoder::new(c, &mut weights);
        let decoder = HostDecoder::new(c, weights, options.precision);
        let path = match target.compute {
            Compute::Host => LmPath::Host { encoder, decoder, reference: OnceLock::new() },
            Compute::Burn => LmPath::Burn(BurnStacks::from_host(&encoder, &decoder, true, c, &target.device, linear_blocks(target))),
            #[cfg(any(feature = "wgpu", feature = "cuda"))]
            Compute::Gpu => {
                let gpu = crate::kernels::gpu::Gpu::new(&target.device).map_err(|e| LmError::Backend(e.to_string()))?;
                let fast = GpuDecoder::new(gpu, c, &decoder, &encoder, options.precision)?;
                let stacks = BurnStacks::from_host(&encoder, &decoder, false, c, &target.device, linear_blocks(target));
                LmPath::Gpu { stacks, decoder: fast, host: decoder }
            }
            #[cfg(not(any(feature = "wgpu", feature = "cuda")))]
            Compute::Gpu => return Err(LmError::Backend("GPU kernels need a GPU backend (features wgpu or cuda)".into())),
        };
        Ok(Self { config, options, device: target.device.clone(), path })
    }

    /// The options the model was built with.
    pub fn options(&self) -> LmOptions {
        self.options
    }

    /// The path the model computes on.
    pub fn compute(&self) -> Compute {
        match self.path {
            LmPath::Host { .. } => Compute::Host,
            LmPath::Burn(_) => Compute::Burn,
            #[cfg(any(feature = "wgpu", feature = "cuda"))]
            LmPath::Gpu { .. } => Compute::Gpu,
        }
    }

    /// The host decoder, when decode steps run with the host kernels.
    pub fn host_decoder(&self) -> Option<&HostDecoder> {
        match &self.path {
            LmPath::Host { decoder, .. } => Some(decoder),
            _ => None,
        }
    }

    /// The burn modules: the path's own, or the reference built from the host weights.
    fn burn(&self) -> &BurnStacks {
        match &self.path {
            LmPath::Burn(b) => b,
            #[cfg(any(feature = "wgpu", feature = "cuda"))]
            LmPath::Gpu { stacks, .. } => stacks,
            LmPath::Host { encoder, decoder, reference } => {
                let target = Target { choice: crate::DeviceChoice::Flex, device: self.device.clone(), compute: Compute::Burn };
                reference.get_or_init(|| BurnStacks::from_host(encoder, decoder, true, &self.config, &self.device, linear_blocks(&target)))
            }
        }
    }

    /// Whether burn's decoder stacks are on the device: always on the burn path, on the GPU path
    /// only once the teacher-forced reference ran (generation never needs them), on the host
    /// path once the burn reference was built.
    pub fn burn_decoder_resident(&self) -> bool {
        match &self.path {
            LmPath::Burn(b) => b.decoder.get().is_some(),
            #[cfg(any(feature = "wgpu", feature = "cuda"))]
            LmPath::Gpu { stacks, .. } => stacks.decoder.get().is_some(),
            LmPath::Host { reference, .. } => reference.get().is_some_and(|r| r.decoder.get().is_some()),
        }
    }

    /// burn's decoder stacks: built at load (burn path, host reference) or, on the GPU path, on
    /// first use from the host decoder kept for it.
    fn burn_decoder(&self) -> &BurnDecoder {
        let stacks = self.burn();
        match &self.path {
            #[cfg(any(feature = "wgpu", feature = "cuda"))]
            LmPath::Gpu { host, .. } => stacks.decoder.get_or_init(|| BurnDecoder::from_host(host, &self.config, &self.device, 1)),
            _ => stacks.decoder.get().expect("the burn and host paths build burn's decoder with its stacks"),
        }
    }

    fn cross_kv(&self, layer: usize, encoded: Tensor<3>) -> CrossKv {
        let map = &self.burn().encoder.cross_key_value[layer];
        let (keys, values) = project_memory(map, encoded, self.config.num_heads, self.config.head_dim);
        CrossKv { keys, values }
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Embeddings of `ids: [n]` as `[n, d]`.
    pub fn embed(&self, ids: Tensor<1, Int>) -> Tensor<2> {
        self.burn().embedding.clone().select(0, ids)
    }

    /// Embeddings of `ids: [b, s]` as `[b, s, d]`.
    fn embed2(&self, ids: Tensor<2, Int>) -> Tensor<3> {
        let [b, s] = ids.dims();
        self.embed(ids.reshape([b * s])).reshape([b, s, self.config.d_model])
    }

    /// Uploads host ids as an `[rows, cols]` int tensor.
    pub fn ids_tensor(&self, ids: &[i32], rows: usize, cols: usize) -> Tensor<2, Int> {
        upload(TensorData::new(ids.to_vec(), [rows, cols]), &self.device)
    }

    /// Encoder: `ids: [b, encoder_len] -> [b, encoder_len, d]` (after `encoder_norm`).
    ///
    /// On the host path this runs the host encoder ([`HostEncoder`]) with fresh buffers; an id
    /// outside the vocabulary then panics like burn's lookup does (use [`Self::encode_ids`] for an
    /// error instead).
    pub fn encode(&self, ids: Tensor<2, Int>) -> Tensor<3> {
        if let LmPath::Host { .. } = self.path {
            let b = ids.dims()[0];
            let host = read_back(ids).convert::<i32>().try_into_vec::<i32>().expect("int ids");
            return self.encode_ids(&host, b, &mut LmScratch::default()).unwrap_or_else(|e| panic!("encoder: {e}"));
        }
        self.encode_burn(ids)
    }

    /// The burn encoder (the path's own, or the reference).
    fn encode_burn(&self, ids: Tensor<2, Int>) -> Tensor<3> {
        let burn = self.burn();
        let mut x = self.embed2(ids) + burn.positions.clone();
        for layer in &burn.encoder.layers {
            x = layer.forward(x);
        }
        burn.encoder.norm.forward(x)
    }

    /// The encoder over host ids `[batch, encoder_len]` on the model's path; the host path keeps
    /// its buffers in `scratch` (one per stream).
    pub fn encode_ids(&self, ids: &[i32], batch: usize, scratch: &mut LmScratch) -> Result<Tensor<3>, LmError> {
        let (s, d) = (self.config.encoder_len(), self.config.d_model);
        if ids.len() != batch * s {
            return Err(LmError::BadInput(format!("encoder ids: {} values for {batch} rows of {s}", ids.len())));
        }
        let vocab = self.config.vocab_size;
        if let Some(&id) = ids.iter().find(|&&id| usize::try_from(id).map_or(true, |i| i >= vocab)) {
            return Err(LmError::BadInput(format!("encoder token id {id} outside the vocabulary (0..{vocab})")));
        }
        match &self.path {
            LmPath::Host { encoder, decoder, .. } => {
                let out = encoder.encode(&decoder.embedding, ids, batch, &mut scratch.encoder)?;
                Ok(upload(TensorData::new(out, [batch, s, d]), &self.device))
            }
            _ => Ok(self.encode_burn(self.ids_tensor(ids, batch, s))),
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
        let dec = self.burn_decoder();
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
    pub(crate) fn start_chunk(&self, encoded: Tensor<3>) -> DecodeCache {
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
    pub(crate) fn temporal_input(&self, cache: &DecodeCache, prev_frame: Option<Tensor<2, Int>>) -> Tensor<3> {
        let (b, d) = (cache.batch, self.config.d_model);
        match prev_frame {
            Some(ids) if cache.frames() > 0 => self.embed2(ids).mean_dim(1), // [b, 1, d]
            _ => self
                .embed(upload(TensorData::new(vec![0i32], [1]), &self.device))
                .reshape([1, 1, d])
                .expand([b, 1, d]),
        }
    }

    /// One temporal step: `x: [b, 1, d]` -> `[b, 1, d]`. Resets the depth caches for the new frame.
    pub(crate) fn temporal_step(&self, cache: &mut DecodeCache, x: Tensor<3>) -> Tensor<3> {
        let t = cache.frames();
        let h = self.config.num_heads;
        let dec = self.burn_decoder();
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
    pub(crate) fn depth_step(&self, cache: &mut DecodeCache, x: Tensor<3>) -> Tensor<2> {
        let (pre, _) = self.depth_step_hidden(cache, x);
        pre
    }

    /// [`Self::depth_step`] that also returns the depth stack output before `decoder_norm`.
    pub(crate) fn depth_step_hidden(&self, cache: &mut DecodeCache, x: Tensor<3>) -> (Tensor<2>, Tensor<3>) {
        let q = cache.levels();
        let h = self.config.num_heads;
        let dec = self.burn_decoder();
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
    pub(crate) fn depth_input(&self, ids: Tensor<1, Int>) -> Tensor<3> {
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
        #[cfg(any(feature = "wgpu", feature = "cuda"))]
        if let LmPath::Gpu { decoder, .. } = &self.path {
            let b = encoded.dims()[0];
            let host = read_back(encoded).try_into_vec::<f32>().map_err(|e| LmError::Backend(format!("{e:?}")))?;
            let rows = LogitRows::from_ranges(self.logit_rows(0), self.logit_rows(1));
            return Ok(ChunkState::Gpu(decoder.start_chunk(b, &host, rows)?));
        }
        let LmPath::Host { encoder, decoder, .. } = &self.path else {
            return Ok(ChunkState::Burn { cache: self.start_chunk(encoded), input: None });
        };
        let b = encoded.dims()[0];
        let host = read_back(encoded).try_into_vec::<f32>().map_err(|e| LmError::Backend(format!("{e:?}")))?;
        Ok(ChunkState::Host(decoder.start_chunk(b, encoder.cross_key_values(&host, b))?))
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
            ChunkState::Host(chunk) => {
                let cpu = self.host_decoder().ok_or_else(|| LmError::BadInput("a host chunk on a model without host kernels".into()))?;
                cpu.temporal_input(chunk, prev_frame)?;
                cpu.temporal_step(chunk);
                Ok(())
            }
            #[cfg(any(feature = "wgpu", feature = "cuda"))]
            ChunkState::Gpu(chunk) => self.gpu_decoder()?.step_frame(chunk, prev_frame),
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
                        self.depth_input(upload(TensorData::new(per_row, [b]), &self.device))
                    }
                    None => input.take().ok_or_else(|| LmError::BadInput("depth step before the frame's temporal step".into()))?,
                };
                let all = read_back(self.depth_step(cache, x)).try_into_vec::<f32>().map_err(|e| LmError::Backend(format!("{e:?}")))?;
                let vocab = self.config.vocab_size;
                logits.clear();
                for r in 0..b {
                    logits.extend_from_slice(&all[r * vocab + rows.start..r * vocab + rows.end]);
                }
                Ok(())
            }
            ChunkState::Host(chunk) => {
                let cpu = self.host_decoder().ok_or_else(|| LmError::BadInput("a host chunk on a model without host kernels".into()))?;
                if let Some(ids) = prev {
                    cpu.depth_input(chunk, ids)?;
                }
                logits.resize(chunk.batch * rows.len(), 0.0);
                cpu.depth_step(chunk, rows, logits);
                Ok(())
            }
            #[cfg(any(feature = "wgpu", feature = "cuda"))]
            ChunkState::Gpu(chunk) => {
                let _ = level;
                self.gpu_decoder()?.step_level(chunk, prev, logits)
            }
        }
    }

    /// The GPU decoder, when decode steps run with the GPU kernels.
    #[cfg(any(feature = "wgpu", feature = "cuda"))]
    pub fn gpu_decoder(&self) -> Result<&GpuDecoder, LmError> {
        match &self.path {
            LmPath::Gpu { decoder, .. } => Ok(decoder),
            _ => Err(LmError::BadInput("a GPU chunk on a model without GPU kernels".into())),
        }
    }
}
