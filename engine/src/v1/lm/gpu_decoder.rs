//! The decode steps on a GPU with our own kernels ([`crate::kernels::gpu`]): the same function as
//! [`super::host_decoder`] (same weights, same layout, same order of the steps), with the state on
//! the device and the token drawn there, so a chunk costs one upload of the encoder output, a
//! fixed sequence of launches and one read of its 800 tokens.
//!
//! ```text
//!  per temporal step, per layer   gemv qkv · attend_self · gemv out(+x) · gemv cross-q ·
//!                                 attend_cross · gemv cross-out(+x) · gemv wi(GeGLU) · gemv wo(+x)
//!  per depth step, per layer      gemv qkv · attend_self · gemv out(+x) · gemv wi(GeGLU) · gemv wo(+x)
//!  per depth step                 gemv logits (decoder norm folded, the level's rows) · sample
//! ```
//!
//! Positions come from a device step counter that `sample` advances, so the launches of every
//! depth step (and of every temporal step) are identical. The host draws the chunk's uniforms up
//! front from the same seeded stream as the host sampler (one per token), which is what makes the
//! device's draws the host's.
//!
//! Two ways to drive it: [`GpuDecoder::run_chunk`] (the whole chunk on the device; an observer
//! costs one read of the guided logits per step) and the stepping API of
//! [`super::Depthformer::step_frame`]/[`super::Depthformer::step_level`] (teacher-forced inputs
//! from the host, logits read back per step: conformance and tests).

use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};

use burn::cubecl::prelude::*;

use crate::kernels::gpu::decode::{self, THREADS, TILE};
use crate::kernels::gpu::{gemv_shape, Buf, Gpu, GpuError, GpuMatrix, Graph, ADD, GEGLU, STORE};
use crate::kernels::WeightPrecision;
use super::host_decoder::HostDecoder;
use super::host_encoder::HostEncoder;
use super::sampling::{SamplingParams, MIN_TEMPERATURE};
use super::{LmConfig, LmError};

struct SelfAttn {
    norm: Buf,
    qkv: GpuMatrix,
    out: GpuMatrix,
}

struct Mlp {
    norm: Buf,
    wi: GpuMatrix,
    wo: GpuMatrix,
}

struct TemporalLayer {
    attn: SelfAttn,
    cross_norm: Buf,
    cross_query: GpuMatrix,
    cross_out: GpuMatrix,
    /// `[d, 2·inner]` f32 (the kernel layout): keys | values from the encoder output.
    cross_kv: Buf,
    mlp: Mlp,
}

struct DepthLayer {
    attn: SelfAttn,
    mlp: Mlp,
}

/// The decoder stacks resident on the device.
pub struct GpuDecoder {
    gpu: Gpu,
    config: LmConfig,
    pub precision: WeightPrecision,
    /// Record one temporal and one depth step per chunk and replay them (CUDA graphs, wgpu's
    /// software graphs); off: every launch issued eagerly. `MRT_GPU_REPLAY=0` turns it off.
    replay: AtomicBool,
    /// `[vocab, d]` f32.
    embedding: Buf,
    temporal: Vec<TemporalLayer>,
    depth: Vec<DepthLayer>,
    temporal_bias: Buf,
    depth_bias: Buf,
    decoder_norm: Buf,
    logits: GpuMatrix,
}

fn gpu_err(e: GpuError) -> LmError {
    LmError::Backend(e.to_string())
}

fn to_ids(ids: &[i32], vocab: usize) -> Result<Vec<u32>, LmError> {
    ids.iter()
        .map(|&id| usize::try_from(id).ok().filter(|&i| i < vocab).map(|i| i as u32).ok_or_else(|| LmError::BadInput(format!("token id {id} outside the vocabulary"))))
        .collect()
}

impl GpuDecoder {
    /// Uploads the host decoder's stacks at `precision` (f32 or bf16) and the encoder side's
    /// cross-attention key/value kernels.
    pub fn new(gpu: Gpu, config: &LmConfig, host: &HostDecoder, encoder: &HostEncoder, precision: WeightPrecision) -> Result<Self, LmError> {
        let c = config;
        if c.head_dim > THREADS as usize {
            return Err(LmError::BadInput(format!("head_dim {} is wider than the GPU attention kernel's {THREADS} threads", c.head_dim)));
        }
        let m = |x: &crate::kernels::Matrix| gpu.matrix(x, precision).map_err(gpu_err);
        let attn = |a: &super::host_decoder::HostSelfAttention, norm: &[f32]| -> Result<SelfAttn, LmError> { Ok(SelfAttn { norm: gpu.f32s(norm), qkv: m(&a.qkv)?, out: m(&a.out)? }) };
        let mlp = |x: &super::host_decoder::HostMlp, norm: &[f32]| -> Result<Mlp, LmError> { Ok(Mlp { norm: gpu.f32s(norm), wi: m(&x.wi)?, wo: m(&x.wo)? }) };
        if encoder.cross_key_value.len() != host.temporal.len() {
            return Err(LmError::BadInput(format!("{} cross-attention kernels for {} temporal layers", encoder.cross_key_value.len(), host.temporal.len())));
        }
        let temporal = host
            .temporal
            .iter()
            .zip(&encoder.cross_key_value)
            .map(|(l, kv)| {
                Ok(TemporalLayer {
                    attn: attn(&l.self_attention, &l.pre_self_attention_norm)?,
                    cross_norm: gpu.f32s(&l.pre_cross_attention_norm),
                    cross_query: m(&l.cross_query)?,
                    cross_out: m(&l.cross_out)?,
                    cross_kv: gpu.f32s(&kv.w),
                    mlp: mlp(&l.mlp, &l.pre_mlp_norm)?,
                })
            })
            .collect::<Result<Vec<_>, LmError>>()?;
        let depth = host
            .depth
            .iter()
            .map(|l| Ok(DepthLayer { attn: attn(&l.self_attention, &l.pre_self_attention_norm)?, mlp: mlp(&l.mlp, &l.pre_mlp_norm)? }))
            .collect::<Result<Vec<_>, LmError>>()?;
        Ok(Self {
            embedding: gpu.f32s(&host.embedding),
            temporal_bias: gpu.f32s(&host.temporal_bias),
            depth_bias: gpu.f32s(&host.depth_bias),
            decoder_norm: gpu.f32s(&host.decoder_norm),
            logits: m(&host.logits)?,
            temporal,
            depth,
            precision,
            replay: AtomicBool::new(std::env::var("MRT_GPU_REPLAY").map_or(true, |v| v != "0")),
            config: c.clone(),
            gpu,
        })
    }

    /// Whether chunks record and replay their steps (see the field); benchmarks compare both.
    pub fn set_replay(&self, on: bool) {
        self.replay.store(on, Ordering::Relaxed);
    }

    /// Whether chunks record and replay their steps now.
    pub fn replays(&self) -> bool {
        self.replay.load(Ordering::Relaxed)
    }

    /// The cubecl device's name.
    pub fn name(&self) -> &str {
        &self.gpu.name
    }

    /// Starts a chunk of `batch` rows from the encoder output `[batch, encoder_len, d]` (host
    /// values): uploads it and computes every temporal layer's cross-attention keys and values on
    /// the device. `rows`: the logits rows a depth step computes (all, or a level's range with
    /// `level_rows` per level).
    pub fn start_chunk(&self, batch: usize, encoded: &[f32], rows: LogitRows) -> Result<GpuChunk, LmError> {
        let c = &self.config;
        let (d, h, dh, s, inner) = (c.d_model, c.num_heads, c.head_dim, c.encoder_len(), c.inner_dim());
        if !(1..=2).contains(&batch) || encoded.len() != batch * s * d {
            return Err(LmError::BadInput(format!("encoder output: {} values for {batch} rows of {s} × {d} (1 or 2 rows)", encoded.len())));
        }
        let g = &self.gpu;
        let steps = c.chunk_tokens();
        let enc = g.f32s(encoded);
        // Every buffer below but the counter and the tokens (whose first two words are the
        // non-finite status) is written before it is read: the cross keys/values here, a cache
        // position by the step that owns it (attention reads positions ≤ its own), the rows by
        // the launch before their reader, x by the BOS embedding.
        let kv = |len: usize| g.scratch(batch * h * len * dh);
        let mut cross = Vec::with_capacity(self.temporal.len());
        let m_rows = batch * s;
        for layer in &self.temporal {
            let (k, v) = (kv(s), kv(s));
            decode::cross_kv::launch(
                &g.client,
                CubeCount::Static((2 * inner).div_ceil(TILE as usize) as u32, m_rows.div_ceil(TILE as usize) as u32, 1),
                CubeDim::new_2d(TILE, TILE),
                enc.arg(),
                layer.cross_kv.arg(),
                k.arg(),
                v.arg(),
                m_rows as u32,
                d as u32,
                s,
                dh,
                h,
            );
            cross.push((k, v));
        }
        let widest = [3 * inner, c.mlp_dim, c.depth_mlp_dim, inner].into_iter().max().unwrap_or(0);
        Ok(GpuChunk {
            batch,
            frame: 0,
            level: 0,
            rows,
            counter: g.zeros(1),
            tokens: g.zeros(steps + 2),
            uniforms: g.scratch(steps),
            x: g.scratch(batch * d),
            wide: g.scratch(batch * widest),
            ctx: g.scratch(batch * inner),
            logits: g.scratch(batch * rows.len),
            guided: g.scratch(rows.len),
            ids: g.scratch(batch * c.num_levels),
            temporal_kv: self.temporal.iter().map(|_| (kv(c.chunk_frames), kv(c.chunk_frames))).collect(),
            depth_kv: self.depth.iter().map(|_| (kv(c.num_levels), kv(c.num_levels))).collect(),
            cross,
        })
    }

    /// `out (+)= W · rms(x)` (or `W · x` without `norm`), `n_out` outputs per row.
    #[allow(clippy::too_many_arguments)]
    fn gemv(&self, chunk: &GpuChunk, x: &Buf, norm: Option<&Buf>, w: &GpuMatrix, out: &Buf, n_out: usize, out_stride: usize, mode: u32, logits: bool) {
        let c = &self.config;
        let (row_base, level_rows, levels) = if logits { (chunk.rows.start as u32, chunk.rows.level_rows as u32, c.num_levels as u32) } else { (0, 0, 1) };
        let (lanes, rows) = gemv_shape(w.words);
        decode::gemv::launch(
            &self.gpu.client,
            CubeCount::Static(n_out.div_ceil(rows as usize) as u32, 1, 1),
            CubeDim::new_2d(lanes, rows),
            x.arg(),
            // Not read without `rms`; a distinct buffer keeps the bindings unaliased.
            norm.unwrap_or(&self.decoder_norm).arg(),
            w.buf.arg(),
            w.scales.arg(),
            // No biases in v1's decoder: not read (a distinct buffer, as for `norm`).
            self.depth_bias.arg(),
            out.arg(),
            chunk.counter.arg(),
            w.cols as u32,
            w.words as u32,
            n_out as u32,
            out_stride as u32,
            0,
            0,
            c.rms_norm_eps,
            row_base,
            level_rows,
            levels,
            chunk.batch,
            norm.is_some(),
            w.format,
            mode,
            false,
        );
    }

    /// `x += out(attend(qkv(rms(x))))` over the cache `kv` at the counter's position.
    fn self_attention(&self, chunk: &GpuChunk, attn: &SelfAttn, kv: &(Buf, Buf), bias: &Buf, depth: bool) {
        let c = &self.config;
        let (b, d, h, dh, inner) = (chunk.batch, c.d_model, c.num_heads, c.head_dim, c.inner_dim());
        self.gemv(chunk, &chunk.x, Some(&attn.norm), &attn.qkv, &chunk.wide, 3 * inner, 3 * inner, STORE, false);
        let cap = if depth { c.num_levels } else { c.chunk_frames };
        decode::attend_self::launch(
            &self.gpu.client,
            CubeCount::Static((b * h) as u32, 1, 1),
            CubeDim::new_1d(64),
            chunk.wide.arg(),
            kv.0.arg(),
            kv.1.arg(),
            bias.arg(),
            chunk.ctx.arg(),
            chunk.counter.arg(),
            c.num_levels as u32,
            depth,
            cap,
            dh,
            h,
        );
        self.gemv(chunk, &chunk.ctx, None, &attn.out, &chunk.x, d, d, ADD, false);
    }

    fn mlp(&self, chunk: &GpuChunk, mlp: &Mlp) {
        let d = self.config.d_model;
        let hidden = mlp.wi.rows / 2;
        self.gemv(chunk, &chunk.x, Some(&mlp.norm), &mlp.wi, &chunk.wide, hidden, hidden, GEGLU, false);
        self.gemv(chunk, &chunk.wide, None, &mlp.wo, &chunk.x, d, d, ADD, false);
    }

    /// One temporal step on `chunk.x` (its input) → `chunk.x`, at the counter's frame.
    fn temporal_step(&self, chunk: &GpuChunk) {
        let c = &self.config;
        let (b, d, h, dh, inner, s) = (chunk.batch, c.d_model, c.num_heads, c.head_dim, c.inner_dim(), c.encoder_len());
        for (i, layer) in self.temporal.iter().enumerate() {
            self.self_attention(chunk, &layer.attn, &chunk.temporal_kv[i], &self.temporal_bias, false);
            self.gemv(chunk, &chunk.x, Some(&layer.cross_norm), &layer.cross_query, &chunk.wide, inner, inner, STORE, false);
            decode::attend_cross::launch(
                &self.gpu.client,
                CubeCount::Static((b * h) as u32, 1, 1),
                CubeDim::new_1d(THREADS),
                chunk.wide.arg(),
                chunk.cross[i].0.arg(),
                chunk.cross[i].1.arg(),
                chunk.ctx.arg(),
                s,
                dh,
                h,
            );
            self.gemv(chunk, &chunk.ctx, None, &layer.cross_out, &chunk.x, d, d, ADD, false);
            self.mlp(chunk, &layer.mlp);
        }
    }

    /// One depth step on `chunk.x` → the logits of the counter's level into `chunk.logits`.
    fn depth_step(&self, chunk: &GpuChunk) {
        for (i, layer) in self.depth.iter().enumerate() {
            self.self_attention(chunk, &layer.attn, &chunk.depth_kv[i], &self.depth_bias, true);
            self.mlp(chunk, &layer.mlp);
        }
        let n = chunk.rows.len;
        self.gemv(chunk, &chunk.x, Some(&self.decoder_norm), &self.logits, &chunk.logits, n, n, STORE, true);
    }

    /// `x[b] = mean E[ids[b]]` from host ids (`per_row` ids per row).
    fn embed(&self, chunk: &GpuChunk, ids: &[u32], per_row: usize) {
        self.gpu.write_u32(&chunk.ids, ids);
        decode::embed_mean::launch(
            &self.gpu.client,
            CubeCount::Static(chunk.batch as u32, 1, 1),
            CubeDim::new_1d(THREADS),
            chunk.ids.arg(),
            self.embedding.arg(),
            chunk.x.arg(),
            per_row as u32,
            self.config.d_model as u32,
            0,
            1.0,
        );
    }

    /// Stepping API: the temporal step of the next frame, its input `E[BOS]` (frame 0) or the
    /// mean of `prev_frame`'s embeddings (`[batch, levels]` ids).
    pub fn step_frame(&self, chunk: &mut GpuChunk, prev_frame: Option<&[i32]>) -> Result<(), LmError> {
        let c = &self.config;
        if chunk.frame >= c.chunk_frames {
            return Err(LmError::BadInput(format!("temporal step {} past the chunk ({} frames)", chunk.frame, c.chunk_frames)));
        }
        self.gpu.write_u32(&chunk.counter, &[(chunk.frame * c.num_levels) as u32]);
        match prev_frame {
            Some(ids) if chunk.frame > 0 => {
                if ids.len() != chunk.batch * c.num_levels {
                    return Err(LmError::BadInput(format!("previous frame: {} ids for {} rows of {}", ids.len(), chunk.batch, c.num_levels)));
                }
                self.embed(chunk, &to_ids(ids, c.vocab_size)?, c.num_levels);
            }
            _ => self.embed(chunk, &vec![0; chunk.batch], 1),
        }
        self.temporal_step(chunk);
        chunk.frame += 1;
        chunk.level = 0;
        Ok(())
    }

    /// Stepping API: the next depth step (input: the frame's temporal output, or `E[prev]` per
    /// row), its logits read back into `logits` (`[batch, rows]`).
    pub fn step_level(&self, chunk: &mut GpuChunk, prev: Option<&[i32]>, logits: &mut Vec<f32>) -> Result<(), LmError> {
        let c = &self.config;
        if chunk.frame == 0 || chunk.level >= c.num_levels {
            return Err(LmError::BadInput(format!("depth step {} of frame {} out of order", chunk.level, chunk.frame)));
        }
        self.gpu.write_u32(&chunk.counter, &[((chunk.frame - 1) * c.num_levels + chunk.level) as u32]);
        if let Some(ids) = prev {
            let per_row: Vec<i32> = (0..chunk.batch).map(|r| ids[r.min(ids.len() - 1)]).collect();
            self.embed(chunk, &to_ids(&per_row, c.vocab_size)?, 1);
        }
        self.depth_step(chunk);
        chunk.level += 1;
        *logits = self.gpu.read_f32(&chunk.logits).map_err(gpu_err)?;
        Ok(())
    }

    /// One draw on the device (see [`decode::sample`]).
    fn sample(&self, chunk: &GpuChunk, params: &SamplingParams, greedy: bool, inv_t: f32) {
        let c = &self.config;
        decode::sample::launch(
            &self.gpu.client,
            CubeCount::Static(1, 1, 1),
            CubeDim::new_1d(THREADS),
            chunk.logits.arg(),
            chunk.uniforms.arg(),
            self.embedding.arg(),
            chunk.tokens.arg(),
            chunk.x.arg(),
            chunk.guided.arg(),
            chunk.counter.arg(),
            chunk.rows.len as u32,
            c.d_model as u32,
            c.num_levels as u32,
            chunk.rows.start as u32,
            chunk.rows.level_rows as u32,
            params.top_k.min(u32::MAX as usize) as u32,
            inv_t,
            if chunk.batch == 2 { params.guidance_weight } else { 0.0 },
            u32::from(greedy),
            chunk.batch,
        );
    }

    /// Records one temporal step and one depth step + draw (`graph_prepare` was called before
    /// the warm-up frame). `None` where the backend has no graphs or a capture is refused: the
    /// chunk then goes on eagerly.
    fn capture(&self, chunk: &GpuChunk, depth_and_sample: &dyn Fn()) -> Option<(Graph, Graph)> {
        let temporal = self.gpu.record(&|| self.temporal_step(chunk))?;
        self.gpu.client.graph_prepare().ok()?;
        let depth = self.gpu.record(depth_and_sample)?;
        Some((temporal, depth))
    }

    /// The whole chunk on the device: `uniforms` (one per token, unused when greedy) from the host
    /// stream; per frame a temporal step, per level a depth step and a draw; one read of the
    /// tokens at the end. `observe` gets every step's guided logits (one read each).
    pub fn run_chunk(
        &self,
        chunk: &mut GpuChunk,
        params: &SamplingParams,
        uniforms: &[f32],
        mut observe: Option<super::StepObserver<'_>>,
        cancel: Option<&AtomicBool>,
        mut part: impl FnMut(crate::kernels::counters::Part),
    ) -> Result<Vec<i32>, LmError> {
        use crate::kernels::counters::Part;
        let c = &self.config;
        let (frames, levels, steps) = (c.chunk_frames, c.num_levels, c.chunk_tokens());
        if chunk.frame != 0 || uniforms.len() != steps {
            return Err(LmError::BadInput(format!("run_chunk: a fresh chunk and {steps} uniforms (got frame {}, {} uniforms)", chunk.frame, uniforms.len())));
        }
        let g = &self.gpu;
        g.write_f32(&chunk.uniforms, uniforms);
        g.write_u32(&chunk.counter, &[0]);
        self.embed(chunk, &vec![0; chunk.batch], 1);
        let greedy = params.is_greedy();
        let inv_t = (1.0 / f64::from(params.temperature.max(MIN_TEMPERATURE))) as f32;
        let depth_and_sample = || {
            self.depth_step(chunk);
            self.sample(chunk, params, greedy, inv_t);
        };
        // Frame 0 runs eagerly (it compiles the kernels and fills the memory pools: the warm-up
        // a capture needs); then, with replay, one temporal step and one depth step + draw are
        // recorded and replayed for every later step. Positions come from the counter, so the
        // recorded launches are every step's.
        // Without graphs on this backend (`graph_prepare` refused) the chunk runs eagerly.
        let replay = self.replay.load(Ordering::Relaxed) && observe.is_none() && g.client.graph_prepare().is_ok();
        let mut graphs = None;
        for t in 0..frames {
            if cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
                return Err(LmError::Cancelled);
            }
            if t == 1 && replay {
                graphs = self.capture(chunk, &depth_and_sample);
            }
            part(Part::Temporal);
            match &graphs {
                Some((temporal, _)) => temporal.replay().map_err(gpu_err)?,
                None => self.temporal_step(chunk),
            }
            for q in 0..levels {
                part(Part::Depth);
                match &graphs {
                    // One graph: its launches count as the depth step's.
                    Some((_, depth)) => depth.replay().map_err(gpu_err)?,
                    None => {
                        self.depth_step(chunk);
                        part(Part::Sampling);
                        self.sample(chunk, params, greedy, inv_t);
                    }
                }
                if let Some(obs) = observe.as_mut() {
                    let guided = g.read_f32(&chunk.guided).map_err(gpu_err)?;
                    obs(t * levels + q, &guided);
                }
            }
        }
        chunk.frame = frames;
        part(Part::Other);
        let out = g.read_u32(&chunk.tokens).map_err(gpu_err)?;
        let (status, tokens) = out.split_at(2);
        if status[0] != 0 {
            return Err(LmError::NonFiniteLogits { step: status[0] as usize - 1, index: status[1] as usize });
        }
        Ok(tokens.iter().map(|&t| t as i32).collect())
    }
}

/// The logits rows a depth step computes: all `len` ids from `start`, or one level's
/// (`start + level · level_rows`, `len` of them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogitRows {
    pub start: usize,
    pub len: usize,
    pub level_rows: usize,
}

impl LogitRows {
    /// From the host path's rule for `level` 0 (`Depthformer::logit_rows(0)`) and level 1.
    pub fn from_ranges(level0: Range<usize>, level1: Range<usize>) -> Self {
        Self { start: level0.start, len: level0.len(), level_rows: level1.start - level0.start }
    }
}

/// Per-chunk device state: counter, tokens (+ status), uniforms, scratch rows, KV caches and
/// the cross-attention keys/values.
pub struct GpuChunk {
    pub batch: usize,
    frame: usize,
    level: usize,
    rows: LogitRows,
    counter: Buf,
    tokens: Buf,
    uniforms: Buf,
    x: Buf,
    wide: Buf,
    ctx: Buf,
    logits: Buf,
    guided: Buf,
    ids: Buf,
    temporal_kv: Vec<(Buf, Buf)>,
    depth_kv: Vec<(Buf, Buf)>,
    cross: Vec<(Buf, Buf)>,
}
