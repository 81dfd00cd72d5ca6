//! The T5 encoder (flaxformer `t5_architecture.Encoder`): token embedding + split-half sinusoids,
//! bidirectional self-attention without relative bias, pre-RMSNorm residual layers, final norm.
//!
//! ```text
//! ids [b, 1006] ─ E[ids] + PE ─┬─ (RMS ─ SelfAttn ─ +) ─ (RMS ─ GeGLU ─ +) ×N ─ RMS ─ [b, 1006, d]
//! ```

use burn::tensor::{Device, Tensor, TensorData};

use super::layers::{GeGlu, RmsNorm, SelfAttention};

#[derive(Clone, Debug)]
pub struct EncoderLayer {
    pub pre_attention_norm: RmsNorm,
    pub attention: SelfAttention,
    pub pre_mlp_norm: RmsNorm,
    pub mlp: GeGlu,
}

impl EncoderLayer {
    /// `[b, s, d] -> [b, s, d]`.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let h = self.pre_attention_norm.forward(x.clone());
        let x = x + self.attention.forward(h, None);
        let h = self.pre_mlp_norm.forward(x.clone());
        x + self.mlp.forward(h)
    }
}

/// flaxformer `FixedEmbed` (`sinusoidal_init`): `PE[p, i] = sin(p·div[i])`,
/// `PE[p, half + i] = cos(p·div[i])`, `div[i] = exp(−i·ln(timescale)/(half − 1))`, computed in
/// float64 as NumPy does and stored as float32. Returns `[1, len, d]`.
pub fn sinusoid_positions(len: usize, d: usize, timescale: f64, device: &Device) -> Tensor<3> {
    Tensor::from_data(TensorData::new(sinusoid_table(len, d, timescale), [1, len, d]), device)
}

/// [`sinusoid_positions`] as a host table `[len, d]`.
pub fn sinusoid_table(len: usize, d: usize, timescale: f64) -> Vec<f32> {
    let half = d / 2;
    let scale = if half > 1 { -timescale.ln() / (half as f64 - 1.0) } else { 0.0 };
    let mut pe = vec![0f32; len * d];
    for p in 0..len {
        for i in 0..half {
            let angle = p as f64 * (i as f64 * scale).exp();
            pe[p * d + i] = angle.sin() as f32;
            pe[p * d + half + i] = angle.cos() as f32;
        }
    }
    pe
}
