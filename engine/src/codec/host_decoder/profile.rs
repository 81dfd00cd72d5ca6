//! The work of a [`HostDecoder`] call, counted off its layers (benchmarks: GFLOP/s, and the
//! `gemm` shape that a floor measurement should time).

use super::{Block, HostConv, HostDecoder, Pointwise};

impl HostConv {
    /// Adds the useful FLOPs of [`HostConv::forward`] on `b × [t, f]` (the junk columns of the
    /// padded width not counted) and its largest `gemm` call to `p`.
    fn profile(&self, b: usize, t: usize, f: usize, p: &mut Profile) {
        let w = self.pads.width(f);
        for phase in self.phases.iter().filter(|ph| ph.nf > 0) {
            for _ in &phase.time_taps {
                let k = phase.nf * self.cin;
                p.flops += 2.0 * (b * t * f * k * self.cout) as f64;
                p.consider(GemmShape { m: t * w, n: self.cout, k, a_rs: self.cin }, b);
            }
        }
    }
}

/// A `gemm` call of the decoder: `[m, k]` (rows `a_rs` apart, overlapping for the shifted
/// products) × `[k, n]`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct GemmShape {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub a_rs: usize,
}

impl GemmShape {
    pub fn flops(&self) -> f64 {
        2.0 * (self.m * self.n * self.k) as f64
    }
}

/// The work of one decoder call: useful FLOPs and every `gemm` shape with its number of calls.
#[derive(Clone, Debug, Default)]
pub struct Profile {
    pub flops: f64,
    pub gemms: Vec<(GemmShape, usize)>,
}

impl Profile {
    fn consider(&mut self, shape: GemmShape, calls: usize) {
        match self.gemms.iter_mut().find(|(s, _)| *s == shape) {
            Some((_, n)) => *n += calls,
            None => self.gemms.push((shape, calls)),
        }
    }

    /// The shape with the most FLOPs over all its calls, and its number of calls.
    pub fn top(&self) -> Option<(GemmShape, usize)> {
        self.gemms.iter().copied().max_by(|a, b| (a.0.flops() * a.1 as f64).total_cmp(&(b.0.flops() * b.1 as f64)))
    }
}

impl HostDecoder {
    /// The work of decoding `frames` latent frames of one clip ([`HostDecoder::forward_into`]).
    pub fn profile(&self, frames: usize) -> Profile {
        let mut p = Profile::default();
        let point = |pw: &Pointwise, rows: usize, p: &mut Profile| p.flops += 2.0 * (rows * pw.cin * pw.cout) as f64;
        for pw in [&self.in_b1, &self.in_b2, &self.in_first] {
            point(pw, frames, &mut p);
        }
        let (mut b, mut t, mut f) = (1, frames, self.bins);
        let block = |blk: &Block, b: usize, t: usize, f: usize, p: &mut Profile| {
            let (to, fo) = (t * blk.stride[0], f * blk.stride[1]);
            blk.up.profile(b, t, f, p);
            blk.conv.profile(b, to, fo, p);
            if let Some(sc) = &blk.shortcut {
                point(sc, b * t * f, p);
            }
            (to, fo)
        };
        (t, f) = block(&self.residual, b, t, f, &mut p);
        for (i, blk) in self.blocks.iter().enumerate() {
            if i == self.split_at {
                b *= self.splits;
            }
            (t, f) = block(blk, b, t, f, &mut p);
        }
        if self.split_at == self.blocks.len() {
            b *= self.splits;
        }
        self.out.profile(b, t, f, &mut p);
        p
    }

}

#[cfg(test)]
mod tests {
    use crate::codec::weights::{random_files, CodecWeights, CodecWidths};
    use crate::codec::{CodecConfig, HostDecoder};

    #[test]
    fn the_work_grows_with_the_frames_and_the_top_gemm_is_a_real_one() {
        let config = CodecConfig::spectrostream_48k_stereo();
        let [e, d, q] = random_files(&config, &CodecWidths::full_size(), 3);
        let w = CodecWeights::from_files(&e, &d, Some(&q), &config).expect("random full-size weights load");
        let dec = HostDecoder::new(&config, &w.decoder).expect("host decoder");
        let (one, five) = (dec.profile(1), dec.profile(5));
        println!("full size: {:.3} GFLOP per frame, top gemm {:?}", one.flops / 1e9, one.top());
        assert!((five.flops - 5.0 * one.flops).abs() < 1e-6 * five.flops);
        let (top, calls) = one.top().expect("a gemm");
        assert!(calls >= 1 && top.flops() * calls as f64 <= one.flops * 1.05, "{top:?} × {calls}");
    }
}
