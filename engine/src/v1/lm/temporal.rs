//! The temporal decoder stack: one step per 25 Hz frame, causal self-attention with a shared
//! 128-bucket relative bias, cross-attention to the encoder output, GeGLU; no final norm.
//!
//! Input of frame t is the mean of the 16 level embeddings of frame t−1 (`E[0]` for t = 0):
//! v1 `depthformer/modules.py` `_to_temporal_embedded_inputs` + `gather_mode='mean'`.

use burn::tensor::Tensor;

use super::cache::KvCache;
use super::layers::{CrossAttention, GeGlu, RmsNorm, SelfAttention};

#[derive(Clone, Debug)]
pub struct TemporalLayer {
    pub pre_self_attention_norm: RmsNorm,
    pub self_attention: SelfAttention,
    pub pre_cross_attention_norm: RmsNorm,
    pub cross_attention: CrossAttention,
    pub pre_mlp_norm: RmsNorm,
    pub mlp: GeGlu,
}

/// Cross-attention keys and values of one layer, `[b, h, encoder_len, dh]`, computed once per chunk.
#[derive(Clone, Debug)]
pub struct CrossKv {
    pub keys: Tensor<4>,
    pub values: Tensor<4>,
}

impl TemporalLayer {
    /// Whole sequence (teacher forcing): `x: [b, t, d]`, `bias: [1, h, t, t]` causal.
    pub fn forward(&self, x: Tensor<3>, cross: &CrossKv, bias: Tensor<4>) -> Tensor<3> {
        let h = self.pre_self_attention_norm.forward(x.clone());
        let x = x + self.self_attention.forward(h, Some(bias));
        self.cross_and_mlp(x, cross)
    }

    /// One frame: `x: [b, 1, d]`, `bias_row: [1, h, 1, t+1]`, the cache holding frames `0..t`.
    pub fn step(&self, x: Tensor<3>, cross: &CrossKv, cache: &mut KvCache, bias_row: Tensor<4>) -> Tensor<3> {
        let h = self.pre_self_attention_norm.forward(x.clone());
        let (q, k, v) = self.self_attention.project(h);
        let (keys, values) = cache.append(k, v);
        let x = x + self.self_attention.attend(q, keys, values, Some(bias_row));
        self.cross_and_mlp(x, cross)
    }

    fn cross_and_mlp(&self, x: Tensor<3>, cross: &CrossKv) -> Tensor<3> {
        let h = self.pre_cross_attention_norm.forward(x.clone());
        let x = x + self.cross_attention.forward(h, cross.keys.clone(), cross.values.clone());
        let h = self.pre_mlp_norm.forward(x.clone());
        x + self.mlp.forward(h)
    }
}
