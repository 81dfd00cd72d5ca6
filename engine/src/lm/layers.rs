//! The T5 1.1 building blocks: bias-free linear maps, RMSNorm, unscaled multi-head attention and
//! the tanh-GELU gated MLP. Shapes are documented as `[batch, seq, features]`.
//!
//! Upstream quirks kept on purpose (flaxformer 399ea3a, `components/dense.py`,
//! `components/attention/dense_attention.py`, `t5/t5_architecture.py`):
//! - `DenseGeneral(use_bias=False)` with kernels stored `[in, out]`, so `y = x·W` needs no transpose;
//! - attention logits are not divided by √head_dim (T5 folds that into the initialisation);
//! - `T5LayerNorm` has no mean subtraction and no bias, eps 1e-6;
//! - the MLP is `wo(gelu_tanh(x·wi_0) ⊙ (x·wi_1))` (jax's default approximate GELU).

use burn::tensor::activation::{gelu_approximate, softmax};
use burn::tensor::Tensor;

/// `y = x·W` with `W: [in, out]`.
#[derive(Clone, Debug)]
pub struct Linear {
    pub weight: Tensor<2>,
}

impl Linear {
    /// `[batch, seq, in] -> [batch, seq, out]`.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let [b, s, d_in] = x.dims();
        let d_out = self.weight.dims()[1];
        x.reshape([b * s, d_in]).matmul(self.weight.clone()).reshape([b, s, d_out])
    }

    /// `[rows, in] -> [rows, out]`.
    pub fn forward2(&self, x: Tensor<2>) -> Tensor<2> {
        x.matmul(self.weight.clone())
    }
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

/// Multi-head attention with separate q/k/v/out kernels (`[d, heads·head_dim]`, head-major
/// columns) and no scaling of the logits.
#[derive(Clone, Debug)]
pub struct Attention {
    pub query: Linear,
    pub key: Linear,
    pub value: Linear,
    pub out: Linear,
    pub num_heads: usize,
    pub head_dim: usize,
}

impl Attention {
    /// `[b, s, d] -> [b, heads, s, head_dim]`.
    fn split_heads(&self, x: Tensor<3>) -> Tensor<4> {
        let [b, s, _] = x.dims();
        x.reshape([b, s, self.num_heads, self.head_dim]).swap_dims(1, 2)
    }

    /// Keys and values of `x: [b, t, d]`, each `[b, heads, t, head_dim]`.
    pub fn project_kv(&self, x: Tensor<3>) -> (Tensor<4>, Tensor<4>) {
        (self.split_heads(self.key.forward(x.clone())), self.split_heads(self.value.forward(x)))
    }

    /// Queries of `x: [b, s, d]` as `[b, heads, s, head_dim]`.
    pub fn project_q(&self, x: Tensor<3>) -> Tensor<4> {
        self.split_heads(self.query.forward(x))
    }

    /// Attends `q: [b, h, s, dh]` over `k, v: [b, h, t, dh]` with an additive `bias`
    /// broadcastable to `[b, h, s, t]`; returns the projected output `[b, s, d]`.
    pub fn attend(&self, q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, bias: Option<Tensor<4>>) -> Tensor<3> {
        let mut logits = q.matmul(k.swap_dims(2, 3)); // [b, h, s, t], unscaled (T5)
        if let Some(bias) = bias {
            logits = logits + bias;
        }
        let probs = softmax(logits, 3);
        let ctx = probs.matmul(v); // [b, h, s, dh]
        let [b, h, s, dh] = ctx.dims();
        self.out.forward(ctx.swap_dims(1, 2).reshape([b, s, h * dh]))
    }

    /// Self- or cross-attention over a whole sequence.
    pub fn forward(&self, x: Tensor<3>, memory: Tensor<3>, bias: Option<Tensor<4>>) -> Tensor<3> {
        let q = self.project_q(x);
        let (k, v) = self.project_kv(memory);
        self.attend(q, k, v, bias)
    }
}

/// Gated GELU MLP: `wo(gelu_tanh(x·wi_0) ⊙ (x·wi_1))`.
#[derive(Clone, Debug)]
pub struct GeGlu {
    pub wi_0: Linear,
    pub wi_1: Linear,
    pub wo: Linear,
}

impl GeGlu {
    /// `[b, s, d] -> [b, s, d]`.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let gate = gelu_approximate(self.wi_0.forward(x.clone()));
        self.wo.forward(gate * self.wi_1.forward(x))
    }
}
