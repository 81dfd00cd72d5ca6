//! The SpectroStream decoder: latent frames → STFT spectrogram, one codec frame of look-ahead.
//!
//! ```text
//!  latent [b, S, D] ─ input_layer (1×1) ─ reshape (bins, C) bin-major ─ input_layers_residual_unit
//!    ─ decoder_0 … decoder_{f−1} (fused) ─ split channels into halves as batch rows [ch·b, C/ch, …]
//!    ─ decoder_f … decoder_{n−1} (shared weights) ─ output_layer ELU + 7×7 → (re, im)
//!    ─ halves back on channels [L.re, L.im, R.re, R.im] ─ drop the first 4·lookahead STFT frames
//!    ─ spec [b, 2·ch, 4S − 4, bins]
//! ```
//!
//! The decoder is causal, so the crop means latent frame `s` is only fully rendered once frame
//! `s + 1` is in: callers append one zero frame to get `S·1920` samples from `S` frames (spec §1.1
//! step 7, fixture README `decoded.npy`). "Early splitting" of the paper; spec §2.4.

use burn::tensor::{Device, Tensor};

use super::blocks::{elu, Conv2d, DecoderBlock, Pointwise};
use super::weights::DecoderParams;
use super::{CodecConfig, CodecError};

#[derive(Clone, Debug)]
pub struct Decoder {
    in_first: Pointwise,
    in_b1: Pointwise,
    in_b2: Pointwise,
    /// Channels and bins of the reshaped input.
    channels: usize,
    bins: usize,
    residual: DecoderBlock,
    blocks: Vec<DecoderBlock>,
    /// Index of the first block that runs per half (`blocks.len()` = split before the output layer).
    split_at: usize,
    splits: usize,
    out: Conv2d,
    /// STFT frames cropped from the front (4).
    crop_frames: usize,
}

impl Decoder {
    pub fn new(config: &CodecConfig, p: &DecoderParams, device: &Device) -> Result<Self, CodecError> {
        Ok(Self {
            in_first: Pointwise::new(&p.in_first, device)?,
            in_b1: Pointwise::new(&p.in_b1, device)?,
            in_b2: Pointwise::new(&p.in_b2, device)?,
            channels: p.residual.in_channels(),
            bins: config.latent_bins(),
            residual: DecoderBlock::plain(&p.residual, device)?,
            blocks: p.blocks.iter().map(|b| DecoderBlock::transposed(b, device)).collect::<Result<_, _>>()?,
            split_at: config.fused_blocks(),
            splits: config.audio_channels,
            out: Conv2d::new(&p.out, [1, 1], device)?,
            crop_frames: config.decoder_lookahead_frames * config.stft_frames_per_frame(),
        })
    }

    /// STFT frames dropped from the front of the output (look-ahead).
    pub fn crop_frames(&self) -> usize {
        self.crop_frames
    }

    /// `[b, S, D] -> [b, 2·ch, 4·S − crop, bins]` (the layer-mode decoder of the reference).
    pub fn forward(&self, latent: Tensor<3>) -> Tensor<4> {
        let [b, s, d] = latent.dims();
        let x = latent.reshape([b * s, d]);
        let y = self.in_first.forward(x.clone()) + self.in_b2.forward(elu(self.in_b1.forward(x)));
        // [b·S, bins·C] bin-major → [b, C, S, bins].
        let mut h = y.reshape([b, s, self.bins, self.channels]).permute([0, 3, 1, 2]);
        h = self.residual.forward(h);
        for (i, block) in self.blocks.iter().enumerate() {
            if i == self.split_at {
                h = self.split(h);
            }
            h = block.forward(h);
        }
        if self.split_at == self.blocks.len() {
            h = self.split(h);
        }
        let h = self.out.forward(elu(h)); // [ch·b, 2, T, bins]
        let parts: Vec<Tensor<4>> = (0..self.splits).map(|k| h.clone().narrow(0, k * b, b)).collect();
        let spec = Tensor::cat(parts, 1); // [b, 2·ch, T, bins]
        let t = spec.dims()[2];
        spec.narrow(2, self.crop_frames.min(t), t.saturating_sub(self.crop_frames))
    }

    /// `[b, ch·c, t, f] -> [ch·b, c, t, f]`: channel halves as batch rows.
    fn split(&self, h: Tensor<4>) -> Tensor<4> {
        let c = h.dims()[1] / self.splits;
        let parts: Vec<Tensor<4>> = (0..self.splits).map(|k| h.clone().narrow(1, k * c, c)).collect();
        Tensor::cat(parts, 0)
    }
}
