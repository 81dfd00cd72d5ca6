//! The T5 1.1 building blocks: bias-free linear maps, RMSNorm, unscaled multi-head attention and
//! the tanh-GELU gated MLP. Shapes are documented as `[batch, seq, features]`.
//!
//! Upstream quirks kept on purpose (flaxformer 399ea3a, `components/dense.py`,
//! `components/attention/dense_attention.py`, `t5/t5_architecture.py`):
//! - `DenseGeneral(use_bias=False)` with kernels stored `[in, out]`, so `y = x·W` needs no transpose
//!   (q|k|v and wi_0|wi_1 are concatenated column-wise at load: one matmul each);
//! - attention logits are not divided by √head_dim (T5 folds that into the initialisation);
//! - `T5LayerNorm` has no mean subtraction and no bias, eps 1e-6;
//! - the MLP is `wo(gelu_tanh(x·wi_0) ⊙ (x·wi_1))` (jax's default approximate GELU).

use burn::tensor::activation::{gelu_approximate, softmax};
use burn::tensor::Tensor;

/// Row count from which a product is a sequence (not a decode step) for [`Linear::forward2`].
const LARGE_ROWS: usize = 64;

/// `y = x·W` with `W: [in, out]`, stored as `[blocks, in, out/blocks]` column blocks.
///
/// burn-flex runs a 2-D matmul below ~7M multiply-adds on one thread, and every decode-step
/// projection (2 rows × 768 × 768…2816) is below that: one core streams the weights while the
/// others idle. As column blocks the same product is a batched matmul, which flex spreads over
/// its threads block by block. GPUs get one block (a plain 2-D matmul).
#[derive(Clone, Debug)]
pub struct Linear {
    /// `[blocks, in, out / blocks]`.
    weight: Tensor<3>,
    in_dim: usize,
    out_dim: usize,
}

impl Linear {
    /// `weight: [in, out]`, split into `blocks` column blocks when `out` divides evenly.
    pub fn new(weight: Tensor<2>, blocks: usize) -> Self {
        let [in_dim, out_dim] = weight.dims();
        let blocks = (1..=blocks.max(1)).rev().find(|b| out_dim % b == 0 && out_dim / b >= 64).unwrap_or(1);
        let weight = if blocks == 1 {
            weight.reshape([1, in_dim, out_dim])
        } else {
            // [in, out] -> [in, B, out/B] -> [B, in, out/B]; the copy happens once, at load.
            let nb = out_dim / blocks;
            let blocked = weight.reshape([in_dim, blocks, nb]).swap_dims(0, 1);
            let data = blocked.clone().into_data();
            Tensor::from_data(data, &blocked.device())
        };
        Self { weight, in_dim, out_dim }
    }

    /// Several `[in, out_i]` kernels fused column-wise into one `[in, Σ out_i]` map, so that one
    /// matmul computes them all (q|k|v, wi_0|wi_1). Split the output with [`split_last`].
    pub fn fused(weights: Vec<Tensor<2>>, blocks: usize) -> Self {
        Self::new(Tensor::cat(weights, 1), blocks)
    }

    pub fn out_dim(&self) -> usize {
        self.out_dim
    }

    /// `[rows, in] -> [rows, out]`.
    pub fn forward2(&self, x: Tensor<2>) -> Tensor<2> {
        let [rows, _] = x.dims();
        let blocks = self.weight.dims()[0];
        if blocks == 1 {
            return x.matmul(self.weight.clone().reshape([self.in_dim, self.out_dim]));
        }
        if rows >= LARGE_ROWS {
            // Whole sequences (encoder, cross-attention K/V): each block is big enough for the
            // GEMM's own threading, which beats one thread per block here.
            let nb = self.out_dim / blocks;
            let parts = (0..blocks)
                .map(|b| x.clone().matmul(self.weight.clone().slice([b..b + 1, 0..self.in_dim, 0..nb]).reshape([self.in_dim, nb])))
                .collect();
            return Tensor::cat(parts, 1);
        }
        let y = x.reshape([1, rows, self.in_dim]).matmul(self.weight.clone()); // [B, rows, out/B]
        y.swap_dims(0, 1).reshape([rows, self.out_dim])
    }

    /// `[batch, seq, in] -> [batch, seq, out]`.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let [b, s, _] = x.dims();
        self.forward2(x.reshape([b * s, self.in_dim])).reshape([b, s, self.out_dim])
    }
}

/// Splits the last dimension of a fused projection into `parts` equal pieces.
pub fn split_last(x: Tensor<3>, parts: usize) -> Vec<Tensor<3>> {
    let [b, s, n] = x.dims();
    let w = n / parts;
    (0..parts).map(|i| x.clone().slice([0..b, 0..s, i * w..(i + 1) * w])).collect()
}

/// T5 RMSNorm: `x · scale / sqrt(mean(x²) + eps)`.
#[derive(Clone, Debug)]
pub struct RmsNorm {
    /// `[1, 1, d]`, ready to broadcast.
    pub scale: Tensor<3>,
    pub eps: f32,
}

impl RmsNorm {
    pub fn new(scale: Tensor<1>, eps: f32) -> Self {
        let d = scale.dims()[0];
        Self { scale: scale.reshape([1, 1, d]), eps }
    }

    /// `[batch, seq, d] -> [batch, seq, d]`.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let ms = x.clone().square().mean_dim(2); // [b, s, 1]
        let inv = (ms + self.eps as f64).sqrt().recip();
        x * inv * self.scale.clone()
    }
}

/// Splits `[b, s, heads·dh]` into `[b, heads, s, dh]`.
fn split_heads(x: Tensor<3>, heads: usize, head_dim: usize) -> Tensor<4> {
    let [b, s, _] = x.dims();
    x.reshape([b, s, heads, head_dim]).swap_dims(1, 2)
}

/// `softmax(q·kᵀ + bias)·v` over `q: [b, h, s, dh]`, `k, v: [b, h, t, dh]`, no logit scaling
/// (T5), then the output projection: returns `[b, s, d]`.
fn attend(out: &Linear, q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, bias: Option<Tensor<4>>) -> Tensor<3> {
    let mut logits = q.matmul(k.swap_dims(2, 3)); // [b, h, s, t]
    if let Some(bias) = bias {
        logits = logits + bias;
    }
    let ctx = softmax(logits, 3).matmul(v); // [b, h, s, dh]
    let [b, h, s, dh] = ctx.dims();
    out.forward(ctx.swap_dims(1, 2).reshape([b, s, h * dh]))
}

/// Self-attention with the q, k and v kernels (`[d, heads·head_dim]` each, head-major columns)
/// fused into one `[d, 3·heads·head_dim]` projection.
#[derive(Clone, Debug)]
pub struct SelfAttention {
    pub qkv: Linear,
    pub out: Linear,
    pub num_heads: usize,
    pub head_dim: usize,
}

impl SelfAttention {
    /// Queries, keys and values of `x: [b, s, d]`, each `[b, heads, s, head_dim]`.
    pub fn project(&self, x: Tensor<3>) -> (Tensor<4>, Tensor<4>, Tensor<4>) {
        let mut parts = split_last(self.qkv.forward(x), 3).into_iter();
        let mut next = || split_heads(parts.next().expect("three parts"), self.num_heads, self.head_dim);
        (next(), next(), next())
    }

    /// Attends `q` over cached `k, v` with an additive `bias` broadcastable to `[b, h, s, t]`.
    pub fn attend(&self, q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, bias: Option<Tensor<4>>) -> Tensor<3> {
        attend(&self.out, q, k, v, bias)
    }

    /// Over a whole sequence `x: [b, s, d] -> [b, s, d]`.
    pub fn forward(&self, x: Tensor<3>, bias: Option<Tensor<4>>) -> Tensor<3> {
        let (q, k, v) = self.project(x);
        self.attend(q, k, v, bias)
    }
}

/// Cross-attention to a fixed memory (the encoder output). Its fused key|value map lives with the
/// model (`Depthformer`), applied once per chunk by [`project_memory`]; the query is applied per step.
#[derive(Clone, Debug)]
pub struct CrossAttention {
    pub query: Linear,
    pub out: Linear,
    pub num_heads: usize,
    pub head_dim: usize,
}

impl CrossAttention {
    /// `x: [b, s, d]` attending over precomputed `k, v` -> `[b, s, d]`.
    pub fn forward(&self, x: Tensor<3>, k: Tensor<4>, v: Tensor<4>) -> Tensor<3> {
        let q = split_heads(self.query.forward(x), self.num_heads, self.head_dim);
        attend(&self.out, q, k, v, None)
    }
}

/// Keys and values of the memory `[b, t, d]` through a fused key|value map, each
/// `[b, heads, t, head_dim]`.
pub fn project_memory(key_value: &Linear, memory: Tensor<3>, heads: usize, head_dim: usize) -> (Tensor<4>, Tensor<4>) {
    let mut parts = split_last(key_value.forward(memory), 2).into_iter();
    let mut next = || split_heads(parts.next().expect("two parts"), heads, head_dim);
    (next(), next())
}

/// Gated GELU MLP: `wo(gelu_tanh(x·wi_0) ⊙ (x·wi_1))`.
/// `wi` holds `wi_0 | wi_1` fused column-wise (`[d, 2·hidden]`).
#[derive(Clone, Debug)]
pub struct GeGlu {
    pub wi: Linear,
    pub wo: Linear,
}

impl GeGlu {
    /// `[b, s, d] -> [b, s, d]`.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let mut parts = split_last(self.wi.forward(x), 2).into_iter();
        let (gate, linear) = (parts.next().expect("two parts"), parts.next().expect("two parts"));
        self.wo.forward(gelu_approximate(gate) * linear)
    }
}
