//! The encoder and the cross-attention keys/values on the CPU with host buffers: the CPU path's
//! replacement for burn's encoder (same function; `tests/lm_paths.rs` compares them).
//!
//! A chunk's encoder pass is 2 × 1006 rows through every layer: GEMMs, which burn-flex runs with
//! the same `gemm` crate, but between them burn materialises each elementwise op as a fresh
//! 10–100 MB tensor and evaluates `exp`/`tanh` with scalar libm calls; on the 2-core development
//! VM that was more than half of the encoder's time (NOTES, "CPU performance"). Here each layer is
//!
//! ```text
//! h = rms(x) · s1;  qkv = h·Wqkv;  per (row, head, block of queries): softmax(q·kᵀ)·v → ctx
//! x += ctx·Wo;  h = rms(x) · s2;  [g | l] = h·Wi;  g = gelu(g) ⊙ l;  x += g·Wo'
//! ```
//!
//! with GEMM calls into buffers that live as long as the model (no per-chunk page faults), the
//! attention of 128 queries at a time so its scores stay in L2, and the vectorised `exp` of
//! [`crate::kernels::host::vmath`].

use crate::kernels::host::gemm::Parallelism;
use rayon::prelude::*;

use super::encoder::sinusoid_table;
use crate::kernels::host::vmath::{gelu_mul_in_place, softmax};
use crate::kernels::host::{gemm_checked, rms_norm};
use super::weights::LmWeights;
use super::{LmConfig, LmError};

/// A t5x kernel `[in, out]`, row-major (`y = x·W` as stored).
#[derive(Clone, Debug)]
pub struct Dense {
    pub inputs: usize,
    pub outputs: usize,
    pub w: Vec<f32>,
}

impl Dense {
    /// Kernels `[in, out_i]` fused column-wise into `[in, Σ out_i]`.
    pub fn fused(kernels: &[&[f32]], inputs: usize, outs: &[usize]) -> Self {
        let outputs: usize = outs.iter().sum();
        let mut w = Vec::with_capacity(inputs * outputs);
        for i in 0..inputs {
            for (k, &o) in kernels.iter().zip(outs) {
                w.extend_from_slice(&k[i * o..(i + 1) * o]);
            }
        }
        Self { inputs, outputs, w }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Layer {
    pub(crate) pre_attention_norm: Vec<f32>,
    /// q | k | v.
    pub(crate) qkv: Dense,
    pub(crate) out: Dense,
    pub(crate) pre_mlp_norm: Vec<f32>,
    /// wi_0 | wi_1.
    pub(crate) wi: Dense,
    pub(crate) wo: Dense,
}

/// Buffers of one encoder pass, kept between chunks by the stream that owns them (the weights
/// stay immutable and shared: two streams never wait for each other).
#[derive(Default)]
pub struct EncoderScratch {
    x: Vec<f32>,
    h: Vec<f32>,
    qkv: Vec<f32>,
    /// Attention output per head, `[b, heads, s, dh]`.
    heads: Vec<f32>,
    /// The same as `[b·s, heads·dh]`.
    ctx: Vec<f32>,
    wide: Vec<f32>,
}

fn sized(v: &mut Vec<f32>, n: usize) -> &mut [f32] {
    if v.len() < n {
        v.resize(n, 0.0);
    }
    &mut v[..n]
}

/// Queries per attention task: 128 × 1006 scores are 0.5 MB, within a core's L2.
const QUERY_BLOCK: usize = 128;

pub struct HostEncoder {
    config: LmConfig,
    pub(crate) layers: Vec<Layer>,
    pub(crate) norm: Vec<f32>,
    /// `[encoder_len, d]`.
    positions: Vec<f32>,
    /// Per temporal layer, the fused key|value kernel `[d, 2·inner]` of its cross-attention.
    pub cross_key_value: Vec<Dense>,
}

impl HostEncoder {
    /// Takes the encoder layers, the encoder norm and the temporal layers' cross-attention
    /// key/value kernels out of `w`, fused into this path's layout.
    pub fn new(config: &LmConfig, w: &mut LmWeights) -> Self {
        let c = config;
        let (d, inner) = (c.d_model, c.inner_dim());
        let layers = std::mem::take(&mut w.encoder)
            .into_iter()
            .map(|l| Layer {
                pre_attention_norm: l.pre_attention_norm,
                qkv: Dense::fused(&[&l.attention.query, &l.attention.key, &l.attention.value], d, &[inner; 3]),
                out: Dense::fused(&[&l.attention.out], inner, &[d]),
                pre_mlp_norm: l.pre_mlp_norm,
                wi: Dense::fused(&[&l.mlp.wi_0, &l.mlp.wi_1], d, &[c.mlp_dim; 2]),
                wo: Dense::fused(&[&l.mlp.wo], c.mlp_dim, &[d]),
            })
            .collect();
        let cross_key_value = w
            .temporal
            .iter_mut()
            .map(|l| {
                let (k, v) = (std::mem::take(&mut l.cross_attention.key), std::mem::take(&mut l.cross_attention.value));
                Dense::fused(&[&k, &v], d, &[inner; 2])
            })
            .collect();
        Self {
            config: c.clone(),
            layers,
            norm: std::mem::take(&mut w.encoder_norm),
            positions: sinusoid_table(c.encoder_len(), d, c.position_timescale),
            cross_key_value,
        }
    }

    /// The encoder over `ids: [batch, encoder_len]` with the `[vocab, d]` `embedding`:
    /// `[batch, encoder_len, d]` after the encoder norm.
    pub fn encode(&self, embedding: &[f32], ids: &[i32], batch: usize, scratch: &mut EncoderScratch) -> Result<Vec<f32>, LmError> {
        let c = &self.config;
        let (s, d, inner, heads, dh) = (c.encoder_len(), c.d_model, c.inner_dim(), c.num_heads, c.head_dim);
        let rows = batch * s;
        if ids.len() != rows {
            return Err(LmError::BadInput(format!("encoder ids: {} values for {batch} rows of {s}", ids.len())));
        }
        let EncoderScratch { x, h, qkv, heads: per_head, ctx, wide } = scratch;
        let x = sized(x, rows * d);
        for (r, (&id, row)) in ids.iter().zip(x.chunks_exact_mut(d)).enumerate() {
            let e = usize::try_from(id)
                .ok()
                .filter(|&i| i < c.vocab_size)
                .ok_or_else(|| LmError::BadInput(format!("encoder token id {id} outside the vocabulary (0..{})", c.vocab_size)))?;
            let pe = &self.positions[(r % s) * d..(r % s + 1) * d];
            for ((o, &a), &p) in row.iter_mut().zip(&embedding[e * d..(e + 1) * d]).zip(pe) {
                *o = a + p;
            }
        }
        let h = sized(h, rows * d);
        let qkv = sized(qkv, rows * 3 * inner);
        let per_head = sized(per_head, rows * inner);
        let ctx = sized(ctx, rows * inner);
        let wide = sized(wide, rows * 2 * c.mlp_dim);
        let eps = c.rms_norm_eps;
        for layer in &self.layers {
            norm_rows(x, &layer.pre_attention_norm, eps, h);
            matmul(rows, h, d, &layer.qkv, qkv, false);
            attention(qkv, s, heads, dh, per_head);
            // [b, heads, s, dh] → [b·s, heads·dh].
            ctx.par_chunks_mut(s * inner).zip(per_head.par_chunks(s * inner)).for_each(|(dst, src)| {
                for (p, row) in dst.chunks_exact_mut(inner).enumerate() {
                    for head in 0..heads {
                        row[head * dh..(head + 1) * dh].copy_from_slice(&src[(head * s + p) * dh..(head * s + p + 1) * dh]);
                    }
                }
            });
            matmul(rows, ctx, inner, &layer.out, x, true);
            norm_rows(x, &layer.pre_mlp_norm, eps, h);
            matmul(rows, h, d, &layer.wi, wide, false);
            let f = c.mlp_dim;
            wide.par_chunks_mut(2 * f * 16).for_each(|block| {
                for row in block.chunks_exact_mut(2 * f) {
                    let (gate, linear) = row.split_at_mut(f);
                    gelu_mul_in_place(gate, linear);
                }
            });
            matmul_strided(rows, wide, 2 * f, f, &layer.wo, x, true);
        }
        let mut out = vec![0f32; rows * d];
        norm_rows(x, &self.norm, eps, &mut out);
        Ok(out)
    }

    /// Cross-attention keys and values of every temporal layer for `encoded: [batch, s, d]`, each
    /// `[batch, heads, s, head_dim]`.
    pub fn cross_key_values(&self, encoded: &[f32], batch: usize) -> Vec<(Vec<f32>, Vec<f32>)> {
        let c = &self.config;
        let (s, d, inner, heads, dh) = (c.encoder_len(), c.d_model, c.inner_dim(), c.num_heads, c.head_dim);
        let rows = batch * s;
        assert_eq!(encoded.len(), rows * d, "encoded: {} values for {batch}×{s}×{d}", encoded.len());
        let mut kv = vec![0f32; rows * 2 * inner];
        self.cross_key_value
            .iter()
            .map(|map| {
                matmul(rows, encoded, d, map, &mut kv, false);
                let split = |offset: usize| {
                    let mut t = vec![0f32; rows * inner];
                    t.par_chunks_mut(s * dh).enumerate().for_each(|(bh, dst)| {
                        let (b, head) = (bh / heads, bh % heads);
                        for (p, o) in dst.chunks_exact_mut(dh).enumerate() {
                            let at = (b * s + p) * 2 * inner + offset + head * dh;
                            o.copy_from_slice(&kv[at..at + dh]);
                        }
                    });
                    t
                };
                (split(0), split(inner))
            })
            .collect()
    }
}

/// RMS norm of each `d`-wide row, rows split over the threads.
fn norm_rows(x: &[f32], scale: &[f32], eps: f32, out: &mut [f32]) {
    let block = scale.len() * 32;
    x.par_chunks(block).zip(out.par_chunks_mut(block)).for_each(|(x, o)| rms_norm(x, scale, eps, o));
}

/// `dst[rows, out] (+)= a[rows, in] · W` with `a` contiguous.
fn matmul(rows: usize, a: &[f32], inputs: usize, w: &Dense, dst: &mut [f32], accumulate: bool) {
    matmul_strided(rows, a, inputs, inputs, w, dst, accumulate)
}

/// `dst[rows, out] (+)= a[rows, ..in] · W` where `a`'s rows are `lda` apart.
fn matmul_strided(rows: usize, a: &[f32], lda: usize, inputs: usize, w: &Dense, dst: &mut [f32], accumulate: bool) {
    assert!(w.inputs == inputs && lda >= inputs, "matmul: {inputs} inputs (row stride {lda}) for a [{}, {}] kernel", w.inputs, w.outputs);
    let n = w.outputs;
    let (m, k) = (rows, inputs);
    gemm_checked(m, n, k, a, lda, 1, &w.w, n, 1, dst, n, accumulate, Parallelism::Rayon(0));
}


/// Unscaled, unmasked softmax attention of every (row, head) over the fused `qkv: [b·s, 3·inner]`
/// into `out: [b, heads, s, dh]`: one task per block of [`QUERY_BLOCK`] queries.
fn attention(qkv: &[f32], s: usize, heads: usize, dh: usize, out: &mut [f32]) {
    let inner = heads * dh;
    let ld = 3 * inner;
    out.par_chunks_mut(s * dh).enumerate().for_each(|(bh, out)| {
        let (b, head) = (bh / heads, bh % heads);
        let at = |row: usize, part: usize| (b * s + row) * ld + part * inner + head * dh;
        out.par_chunks_mut(QUERY_BLOCK * dh).enumerate().for_each_init(
            || vec![0f32; QUERY_BLOCK * s],
            |scores, (blk, out)| {
                let (r0, n) = (blk * QUERY_BLOCK, out.len() / dh);
                let scores = &mut scores[..n * s];
                // scores[i, j] = q_i · k_j: B[l, j] = K[j, l], so B's rows step 1, its columns ld.
                gemm_checked(n, s, dh, &qkv[at(r0, 0)..], ld, 1, &qkv[at(0, 1)..], 1, ld, scores, s, false, Parallelism::None);
                for row in scores.chunks_exact_mut(s) {
                    softmax(row);
                }
                gemm_checked(n, dh, s, scores, s, 1, &qkv[at(0, 2)..], ld, 1, out, dh, false, Parallelism::None);
            },
        );
    });
}
