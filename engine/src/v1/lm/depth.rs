//! The depth decoder stack: per frame, 16 positions `[temporal_out[t], E[y[t,0]], …, E[y[t,14]]]`,
//! causal self-attention with a shared 16-bucket relative bias, GeGLU; no cross-attention. Its
//! state is reset every frame (v1 `PeriodicResetDepthDecoder`).

use burn::tensor::Tensor;

use super::cache::KvCache;
use super::layers::{GeGlu, RmsNorm, SelfAttention};

#[derive(Clone, Debug)]
pub struct DepthLayer {
    pub pre_self_attention_norm: RmsNorm,
    pub self_attention: SelfAttention,
    pub pre_mlp_norm: RmsNorm,
    pub mlp: GeGlu,
}

impl DepthLayer {
    /// Whole frames (teacher forcing): `x: [b·t, q, d]`, `bias: [1, h, q, q]` causal.
    pub fn forward(&self, x: Tensor<3>, bias: Tensor<4>) -> Tensor<3> {
        let h = self.pre_self_attention_norm.forward(x.clone());
        let x = x + self.self_attention.forward(h, Some(bias));
        let h = self.pre_mlp_norm.forward(x.clone());
        x + self.mlp.forward(h)
    }

    /// One level: `x: [b, 1, d]`, `bias_row: [1, h, 1, q+1]`, the cache holding levels `0..q`.
    pub fn step(&self, x: Tensor<3>, cache: &mut KvCache, bias_row: Tensor<4>) -> Tensor<3> {
        let h = self.pre_self_attention_norm.forward(x.clone());
        let (q, k, v) = self.self_attention.project(h);
        let (keys, values) = cache.append(k, v);
        let x = x + self.self_attention.attend(q, keys, values, Some(bias_row));
        let h = self.pre_mlp_norm.forward(x.clone());
        x + self.mlp.forward(h)
    }
}
