//! The decode steps on the CPU with host kernels ([`crate::kernels::host`]): the temporal stack, the
//! depth stack and the logits, one position at a time, with f32 or bf16 weights.
//!
//! Same function as the burn step path (`Depthformer::temporal_step` / `depth_step`), which stays
//! for GPUs and as the reference in tests; on the flex device this path replaces it because a
//! decode step is a chain of ~120 tiny products whose cost is streaming the weights, and burn's
//! per-op dispatch and packing GEMM cost several times that (see NOTES "CPU performance").
//! Cross-attention keys and values are computed once per chunk (a real GEMM over the encoder
//! output, by [`super::host_encoder`]) and handed to [`HostChunk`].

use std::ops::Range;
use std::time::{Duration, Instant};

use rayon::prelude::*;

use crate::kernels::host::vmath::gelu_mul_into;
use crate::kernels::host::{attend_one, attend_one_t, in_pool, rms_norm, transpose_into};
use crate::kernels::{Matrix, WeightPrecision};
use super::relpos::causal_bias_table;
use super::weights::{AttentionKernels, LmWeights, MlpKernels};
use super::{LmConfig, LmError};

/// Self-attention weights with q|k|v fused.
#[derive(Clone, Debug)]
pub struct HostSelfAttention {
    pub qkv: Matrix,
    pub out: Matrix,
}

#[derive(Clone, Debug)]
pub struct HostMlp {
    /// wi_0 | wi_1.
    pub wi: Matrix,
    pub wo: Matrix,
}

#[derive(Clone, Debug)]
pub struct HostTemporalLayer {
    pub pre_self_attention_norm: Vec<f32>,
    pub self_attention: HostSelfAttention,
    pub pre_cross_attention_norm: Vec<f32>,
    pub cross_query: Matrix,
    pub cross_out: Matrix,
    pub pre_mlp_norm: Vec<f32>,
    pub mlp: HostMlp,
}

#[derive(Clone, Debug)]
pub struct HostDepthLayer {
    pub pre_self_attention_norm: Vec<f32>,
    pub self_attention: HostSelfAttention,
    pub pre_mlp_norm: Vec<f32>,
    pub mlp: HostMlp,
}

/// The decoder stacks held as host matrices.
pub struct HostDecoder {
    config: LmConfig,
    pub precision: WeightPrecision,
    /// `[vocab, d]` f32 (lookups only).
    pub embedding: Vec<f32>,
    pub temporal: Vec<HostTemporalLayer>,
    pub depth: Vec<HostDepthLayer>,
    /// `[heads, frames, frames]` and `[heads, levels, levels]`, causal (see `relpos`).
    pub temporal_bias: Vec<f32>,
    pub depth_bias: Vec<f32>,
    pub decoder_norm: Vec<f32>,
    pub logits: Matrix,
}

impl HostDecoder {
    /// The decoder stacks from `w` in this path's layout (`[out, in]` rows, q|k|v and wi_0|wi_1
    /// fused, at `precision`): every temporal weight except the cross-attention key/value kernels
    /// (the encoder side applies those once per chunk, see [`super::host_encoder`]), the depth
    /// stack, the relative-position tables, the decoder norm, the logits kernel and the embedding.
    pub fn new(config: &LmConfig, w: LmWeights, precision: WeightPrecision) -> Self {
        let c = config;
        let d = c.d_model;
        let inner = c.inner_dim();
        let mat = |kernels: &[&[f32]], cols: usize, outs: &[usize]| Matrix::from_kernels(kernels, cols, outs, precision);
        let attn = |a: &AttentionKernels| HostSelfAttention {
            qkv: mat(&[&a.query, &a.key, &a.value], d, &[inner; 3]),
            out: mat(&[&a.out], inner, &[d]),
        };
        let mlp = |m: &MlpKernels, hidden: usize| HostMlp { wi: mat(&[&m.wi_0, &m.wi_1], d, &[hidden, hidden]), wo: mat(&[&m.wo], hidden, &[d]) };
        let temporal = w
            .temporal
            .into_iter()
            .map(|l| HostTemporalLayer {
                self_attention: attn(&l.self_attention),
                cross_query: mat(&[&l.cross_attention.query], d, &[inner]),
                cross_out: mat(&[&l.cross_attention.out], inner, &[d]),
                mlp: mlp(&l.mlp, c.mlp_dim),
                pre_self_attention_norm: l.pre_self_attention_norm,
                pre_cross_attention_norm: l.pre_cross_attention_norm,
                pre_mlp_norm: l.pre_mlp_norm,
            })
            .collect();
        let depth = w
            .depth
            .into_iter()
            .map(|l| HostDepthLayer {
                self_attention: attn(&l.self_attention),
                mlp: mlp(&l.mlp, c.depth_mlp_dim),
                pre_self_attention_norm: l.pre_self_attention_norm,
                pre_mlp_norm: l.pre_mlp_norm,
            })
            .collect();
        let temporal_bias = causal_bias_table(&w.temporal_relpos, c.num_heads, c.temporal_rel_buckets, c.temporal_rel_max_distance, c.chunk_frames);
        let depth_bias = causal_bias_table(&w.depth_relpos, c.num_heads, c.depth_rel_buckets, c.depth_rel_max_distance, c.num_levels);
        Self {
            config: c.clone(),
            precision,
            logits: mat(&[&w.logits], d, &[c.vocab_size]),
            embedding: w.embedding,
            temporal,
            depth,
            temporal_bias,
            depth_bias,
            decoder_norm: w.decoder_norm,
        }
    }

    /// Starts a chunk for `batch` rows with the cross-attention keys and values of every temporal
    /// layer, each `[batch, heads, encoder_len, head_dim]` flattened.
    pub fn start_chunk(&self, batch: usize, cross: Vec<(Vec<f32>, Vec<f32>)>) -> Result<HostChunk, LmError> {
        let c = &self.config;
        let (h, dh, d, s) = (c.num_heads, c.head_dim, c.d_model, c.encoder_len());
        let want = batch * h * s * dh;
        if cross.len() != self.temporal.len() || cross.iter().any(|(k, v)| k.len() != want || v.len() != want) {
            return Err(LmError::BadInput(format!("cross-attention K/V: expected {} layers of {want} values", self.temporal.len())));
        }
        // Values transposed per (row, head) to `[dh, encoder_len]`: both attention products are
        // then row dot products on the vector kernels.
        let cross = cross
            .into_iter()
            .map(|(k, v)| {
                let mut vt = vec![0f32; v.len()];
                for (src, dst) in v.chunks_exact(s * dh).zip(vt.chunks_exact_mut(s * dh)) {
                    transpose_into(src, s, dh, dst);
                }
                (k, vt)
            })
            .collect();
        let kv = |len: usize| vec![0f32; batch * h * len * dh];
        let widest = [3 * c.inner_dim(), 2 * c.mlp_dim, 2 * c.depth_mlp_dim].into_iter().max().unwrap_or(0);
        Ok(HostChunk {
            batch,
            cross,
            temporal_kv: (0..self.temporal.len()).map(|_| (kv(c.chunk_frames), kv(c.chunk_frames))).collect(),
            depth_kv: (0..self.depth.len()).map(|_| (kv(c.num_levels), kv(c.num_levels))).collect(),
            frame: 0,
            level: 0,
            logits_time: Duration::ZERO,
            x: vec![0f32; batch * d],
            h: vec![0f32; batch * d],
            wide: vec![0f32; batch * widest],
            ctx: vec![0f32; batch * c.inner_dim()],
            proj: vec![0f32; batch * d],
            gated: vec![0f32; batch * c.mlp_dim.max(c.depth_mlp_dim)],
            scores: vec![0f32; batch * h * s.max(c.chunk_frames).max(c.num_levels)],
        })
    }

    /// The temporal input of the next frame into `chunk.x`: `E[BOS]` for frame 0, else the mean of
    /// `prev_frame`'s level embeddings (`[batch, levels]` ids).
    pub fn temporal_input(&self, chunk: &mut HostChunk, prev_frame: Option<&[i32]>) -> Result<(), LmError> {
        let c = &self.config;
        let (d, q) = (c.d_model, c.num_levels);
        for b in 0..chunk.batch {
            let x = &mut chunk.x[b * d..(b + 1) * d];
            match prev_frame {
                Some(ids) if chunk.frame > 0 => {
                    x.fill(0.0);
                    for &id in &ids[b * q..(b + 1) * q] {
                        let row = self.embedding_row(id)?;
                        for (o, &e) in x.iter_mut().zip(row) {
                            *o += e;
                        }
                    }
                    for o in x.iter_mut() {
                        *o /= q as f32;
                    }
                }
                _ => x.copy_from_slice(self.embedding_row(0)?),
            }
        }
        Ok(())
    }

    fn embedding_row(&self, id: i32) -> Result<&[f32], LmError> {
        let d = self.config.d_model;
        let i = usize::try_from(id).ok().filter(|&i| i < self.config.vocab_size).ok_or_else(|| LmError::BadInput(format!("token id {id} outside the vocabulary")))?;
        Ok(&self.embedding[i * d..(i + 1) * d])
    }

    /// The depth input: `E[id]` for every row (both CFG rows continue from the same token).
    pub fn depth_input(&self, chunk: &mut HostChunk, ids: &[i32]) -> Result<(), LmError> {
        let d = self.config.d_model;
        for b in 0..chunk.batch {
            let row = self.embedding_row(ids[b.min(ids.len() - 1)])?;
            chunk.x[b * d..(b + 1) * d].copy_from_slice(row);
        }
        Ok(())
    }

    /// One temporal step on `chunk.x` (the input) → `chunk.x` (the output); resets the depth caches.
    pub fn temporal_step(&self, chunk: &mut HostChunk) {
        in_pool(|| self.temporal_step_here(chunk))
    }

    fn temporal_step_here(&self, chunk: &mut HostChunk) {
        let c = &self.config;
        let t = chunk.frame;
        assert!(t < c.chunk_frames, "temporal step {t} past the chunk ({} frames)", c.chunk_frames);
        let frames = c.chunk_frames;
        for (i, layer) in self.temporal.iter().enumerate() {
            let bias = |head: usize| &self.temporal_bias[(head * frames + t) * frames..(head * frames + t) * frames + t + 1];
            self.self_attention(chunk, &layer.pre_self_attention_norm, &layer.self_attention, Kv::Temporal(i), t, frames, &bias);
            self.cross_attention(chunk, layer, i);
            self.mlp(chunk, &layer.pre_mlp_norm, &layer.mlp);
        }
        chunk.frame += 1;
        chunk.level = 0;
    }

    /// One depth step on `chunk.x` → the logits of `rows` (all `vocab` ids, or one level's range)
    /// into `logits` (`[batch, rows.len()]`). `chunk.x` must hold the step's input.
    pub fn depth_step(&self, chunk: &mut HostChunk, rows: Range<usize>, logits: &mut [f32]) {
        in_pool(|| self.depth_step_here(chunk, rows, logits))
    }

    fn depth_step_here(&self, chunk: &mut HostChunk, rows: Range<usize>, logits: &mut [f32]) {
        let c = &self.config;
        let q = chunk.level;
        let levels = c.num_levels;
        assert!(q < levels, "depth step {q} past the frame ({levels} levels)");
        for (i, layer) in self.depth.iter().enumerate() {
            let bias = |head: usize| &self.depth_bias[(head * levels + q) * levels..(head * levels + q) * levels + q + 1];
            self.self_attention(chunk, &layer.pre_self_attention_norm, &layer.self_attention, Kv::Depth(i), q, levels, &bias);
            self.mlp(chunk, &layer.pre_mlp_norm, &layer.mlp);
        }
        chunk.level += 1;
        let n = chunk.batch * c.d_model;
        rms_norm(&chunk.x, &self.decoder_norm, c.rms_norm_eps, &mut chunk.h[..n]);
        let started = Instant::now();
        self.logits.gemv(&chunk.h[..n], rows, logits);
        chunk.logits_time += started.elapsed();
    }

    /// `x += out(attend(q, cache ∪ {k, v}))` with `q, k, v = qkv(rms(x))`, the new position at `pos`.
    #[allow(clippy::too_many_arguments)]
    fn self_attention<'a>(&'a self, chunk: &mut HostChunk, norm: &[f32], attn: &HostSelfAttention, which: Kv, pos: usize, capacity: usize, bias: &dyn Fn(usize) -> &'a [f32]) {
        let c = &self.config;
        let (b, d, h, dh, inner) = (chunk.batch, c.d_model, c.num_heads, c.head_dim, c.inner_dim());
        rms_norm(&chunk.x, norm, c.rms_norm_eps, &mut chunk.h);
        let qkv = &mut chunk.wide[..b * 3 * inner];
        attn.qkv.gemv(&chunk.h, 0..3 * inner, qkv);
        let (keys, values) = match which {
            Kv::Temporal(i) => &mut chunk.temporal_kv[i],
            Kv::Depth(i) => &mut chunk.depth_kv[i],
        };
        // Cache layout [b, h, capacity, dh]; the new key/value go to position `pos`.
        for r in 0..b {
            let row = &qkv[r * 3 * inner..(r + 1) * 3 * inner];
            for head in 0..h {
                let at = ((r * h + head) * capacity + pos) * dh;
                keys[at..at + dh].copy_from_slice(&row[inner + head * dh..inner + (head + 1) * dh]);
                values[at..at + dh].copy_from_slice(&row[2 * inner + head * dh..2 * inner + (head + 1) * dh]);
            }
        }
        for r in 0..b {
            for head in 0..h {
                let q = &qkv[r * 3 * inner + head * dh..r * 3 * inner + (head + 1) * dh];
                let base = (r * h + head) * capacity * dh;
                let len = pos + 1;
                attend_one(
                    q,
                    &keys[base..base + len * dh],
                    &values[base..base + len * dh],
                    Some(bias(head)),
                    &mut chunk.scores,
                    &mut chunk.ctx[r * inner + head * dh..r * inner + (head + 1) * dh],
                );
            }
        }
        attn.out.gemv(&chunk.ctx, 0..d, &mut chunk.proj);
        for (x, p) in chunk.x.iter_mut().zip(&chunk.proj) {
            *x += p;
        }
    }

    /// `x += out(attend(query(rms(x)), cross K/V))`, heads in parallel.
    fn cross_attention(&self, chunk: &mut HostChunk, layer: &HostTemporalLayer, i: usize) {
        let c = &self.config;
        let (b, d, dh, inner, s) = (chunk.batch, c.d_model, c.head_dim, c.inner_dim(), c.encoder_len());
        rms_norm(&chunk.x, &layer.pre_cross_attention_norm, c.rms_norm_eps, &mut chunk.h);
        let queries = &mut chunk.wide[..b * inner];
        layer.cross_query.gemv(&chunk.h, 0..inner, queries);
        let queries = &chunk.wide[..b * inner];
        let (keys, values) = (&chunk.cross[i].0, &chunk.cross[i].1);
        // Each (row, head) is one task: ctx is [b, inner] = [b·h, dh], the same order.
        chunk.ctx.par_chunks_mut(dh).zip(chunk.scores.par_chunks_mut(s)).enumerate().for_each(|(rh, (out, scores))| {
            let q = &queries[rh * dh..(rh + 1) * dh];
            let at = rh * s * dh;
            attend_one_t(q, &keys[at..at + s * dh], &values[at..at + s * dh], scores, out);
        });
        layer.cross_out.gemv(&chunk.ctx, 0..d, &mut chunk.proj);
        for (x, p) in chunk.x.iter_mut().zip(&chunk.proj) {
            *x += p;
        }
    }

    /// `x += wo(gelu(x·wi_0) ⊙ x·wi_1)` on `rms(x)`.
    fn mlp(&self, chunk: &mut HostChunk, norm: &[f32], mlp: &HostMlp) {
        let c = &self.config;
        let (b, d) = (chunk.batch, c.d_model);
        let hidden = mlp.wi.rows() / 2;
        rms_norm(&chunk.x, norm, c.rms_norm_eps, &mut chunk.h);
        let wide = &mut chunk.wide[..b * 2 * hidden];
        mlp.wi.gemv(&chunk.h, 0..2 * hidden, wide);
        let gated = &mut chunk.gated[..b * hidden];
        for r in 0..b {
            let row = &wide[r * 2 * hidden..(r + 1) * 2 * hidden];
            let (gate, linear) = row.split_at(hidden);
            gelu_mul_into(gate, linear, &mut gated[r * hidden..(r + 1) * hidden]);
        }
        mlp.wo.gemv(gated, 0..d, &mut chunk.proj);
        for (x, p) in chunk.x.iter_mut().zip(&chunk.proj) {
            *x += p;
        }
    }
}


#[derive(Clone, Copy)]
enum Kv {
    Temporal(usize),
    Depth(usize),
}

/// Per-chunk state of the CPU path: cross-attention K/V, KV caches and scratch rows. Allocated
/// once per chunk; no step allocates.
pub struct HostChunk {
    pub batch: usize,
    /// Per temporal layer: keys `[b, h, encoder_len, dh]`, values transposed `[b, h, dh, encoder_len]`.
    cross: Vec<(Vec<f32>, Vec<f32>)>,
    temporal_kv: Vec<(Vec<f32>, Vec<f32>)>,
    depth_kv: Vec<(Vec<f32>, Vec<f32>)>,
    frame: usize,
    level: usize,
    /// Time spent in the logits product so far (benchmarks split it from the depth layers).
    pub logits_time: Duration,
    /// The residual stream `[batch, d]`: the step input before a step, its output after.
    pub x: Vec<f32>,
    h: Vec<f32>,
    wide: Vec<f32>,
    ctx: Vec<f32>,
    proj: Vec<f32>,
    gated: Vec<f32>,
    scores: Vec<f32>,
}
