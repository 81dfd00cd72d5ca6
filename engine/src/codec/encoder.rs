//! The SpectroStream encoder: STFT spectrogram → continuous latent frames at 25 Hz.
//!
//! ```text
//!  spec [b, 2·ch, T, 480] ─ split per audio channel (re, im), halves as batch rows [ch·b, 2, T, 480]
//!    ─ base_conv_first 7×7 ─ encoder_0 … encoder_{n−f−1} (shared weights, per half)
//!    ─ concat halves on channels [L | R] ─ encoder_{n−f} … encoder_{n−1} ─ bottleneck
//!    ─ flatten (bins, C) bin-major ─ output_convs ─ latent [b, T/4, D]
//! ```
//!
//! Layer semantics: `blocks.rs` and the fixture README C1 "Reference semantics" (MRT2
//! `magenta_rt/jax/spectrostream.py`, "delayed fusion" of the paper, spec §2.3).

use burn::tensor::{Device, Tensor};

use super::blocks::{elu, Conv2d, EncoderBlock, Pointwise};
use super::weights::EncoderParams;
use super::{CodecConfig, CodecError};

#[derive(Clone, Debug)]
pub struct Encoder {
    base: Conv2d,
    blocks: Vec<EncoderBlock>,
    /// Index of the first block that sees the fused channels (`blocks.len()` = fuse before the
    /// bottleneck).
    fuse_at: usize,
    splits: usize,
    bottleneck: EncoderBlock,
    out_last: Pointwise,
    out_b1: Pointwise,
    out_b2: Pointwise,
    latent: usize,
    time_stride: usize,
}

impl Encoder {
    pub fn new(config: &CodecConfig, p: &EncoderParams, device: &Device) -> Result<Self, CodecError> {
        Ok(Self {
            base: Conv2d::new(&p.base, [1, 1], device)?,
            blocks: p.blocks.iter().map(|b| EncoderBlock::new(b, device)).collect::<Result<_, _>>()?,
            fuse_at: config.ratios.len() - config.fused_blocks(),
            splits: config.audio_channels,
            bottleneck: EncoderBlock::new(&p.bottleneck, device)?,
            out_last: Pointwise::new(&p.out_last, device)?,
            out_b1: Pointwise::new(&p.out_b1, device)?,
            out_b2: Pointwise::new(&p.out_b2, device)?,
            latent: p.out_last.out_channels(),
            time_stride: config.stft_frames_per_frame(),
        })
    }

    /// Latent dimension (256 for the released codec).
    pub fn latent_dim(&self) -> usize {
        self.latent
    }

    /// `[b, 2·ch, T, bins] -> [b, T/4, latent]`; `T` a multiple of the total time stride.
    pub fn forward(&self, spec: Tensor<4>) -> Tensor<3> {
        let [b, c4, _, _] = spec.dims();
        let per = c4 / self.splits;
        // Halves as batch rows: [ch·b, 2, T, bins], rows k·b..(k+1)·b = audio channel k.
        let halves: Vec<Tensor<4>> = (0..self.splits).map(|k| spec.clone().narrow(1, k * per, per)).collect();
        let mut h = self.base.forward(Tensor::cat(halves, 0));
        for (i, block) in self.blocks.iter().enumerate() {
            if i == self.fuse_at {
                h = self.fuse(h, b);
            }
            h = block.forward(h);
        }
        if self.fuse_at == self.blocks.len() {
            h = self.fuse(h, b);
        }
        let h = self.bottleneck.forward(h);
        let [_, c, s, f] = h.dims();
        let flat = h.permute([0, 2, 3, 1]).reshape([b * s, f * c]); // [b·S, bins·C], bin-major
        let y = self.out_last.forward(flat.clone()) + self.out_b2.forward(elu(self.out_b1.forward(elu(flat))));
        y.reshape([b, s, self.latent])
    }

    /// `[ch·b, c, t, f] -> [b, ch·c, t, f]`: the halves' channels side by side, `[L | R]`.
    fn fuse(&self, h: Tensor<4>, b: usize) -> Tensor<4> {
        let parts: Vec<Tensor<4>> = (0..self.splits).map(|k| h.clone().narrow(0, k * b, b)).collect();
        Tensor::cat(parts, 1)
    }

    /// STFT frames per latent frame (4).
    pub fn time_stride(&self) -> usize {
        self.time_stride
    }
}
