//! Residual vector quantisation of the codec latent, on the host.
//!
//! ```text
//!  r = embedding
//!  for level k < levels:  code_k = argmin_j (−2 r·c_kj + c_kj·c_kj)   (first index on ties)
//!                         r −= c_k[code_k]
//!  dequantise(codes) = Σ_k c_k[code_k]   over the first `levels` levels
//! ```
//!
//! The distance is the reference's (MRT2 `quantizer` / v1 `inference_encoding_with_tf_function`:
//! ‖r‖² is dropped since it does not change the argmin). Dot products accumulate in f64 so the
//! decision only flips where the fixture's recorded margin is itself at f32 rounding level; the
//! residual stays f32 like the reference's. Encoding is a handful of small matrix–vector products
//! per frame, so it stays on the host and is split over threads when there is enough of it.

use super::weights::CodebookParams;
use super::CodecError;

/// The codebooks `[levels, codebook_size, dim]` and their squared row norms.
#[derive(Clone, Debug)]
pub struct Rvq {
    levels: usize,
    codebook_size: usize,
    dim: usize,
    codebooks: Vec<f32>,
    /// `c·c` per row, `[levels, codebook_size]`.
    norms: Vec<f64>,
}

/// The outcome of one frame's encoding: codes and, per level, the gap between the two smallest
/// distances (small = fragile decision).
#[derive(Clone, Debug, PartialEq)]
pub struct FrameCodes {
    pub codes: Vec<i32>,
    pub margins: Vec<f64>,
}

impl Rvq {
    pub fn new(p: CodebookParams) -> Self {
        let norms = p.data.chunks_exact(p.dim).map(|row| row.iter().map(|&v| f64::from(v) * f64::from(v)).sum()).collect();
        Self { levels: p.levels, codebook_size: p.codebook_size, dim: p.dim, codebooks: p.data, norms }
    }

    /// RVQ depth available (64 for the released codec).
    pub fn levels(&self) -> usize {
        self.levels
    }

    pub fn codebook_size(&self) -> usize {
        self.codebook_size
    }

    /// Latent dimension (256 for the released codec).
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Row `code` of codebook `level`.
    pub fn codeword(&self, level: usize, code: usize) -> &[f32] {
        &self.codebooks[(level * self.codebook_size + code) * self.dim..][..self.dim]
    }

    fn check_levels(&self, levels: usize) -> Result<(), CodecError> {
        if levels == 0 || levels > self.levels {
            return Err(CodecError::BadInput(format!("{levels} RVQ levels requested; the codebooks have 1..={}", self.levels)));
        }
        Ok(())
    }

    /// Encodes one latent frame (`dim` values) with the first `levels` codebooks.
    pub fn encode_frame(&self, embedding: &[f32], levels: usize) -> FrameCodes {
        let mut r = embedding.to_vec();
        let mut codes = Vec::with_capacity(levels);
        let mut margins = Vec::with_capacity(levels);
        for k in 0..levels {
            let (mut best, mut best_d, mut second_d) = (0usize, f64::INFINITY, f64::INFINITY);
            for j in 0..self.codebook_size {
                let c = self.codeword(k, j);
                let dot = dot_f64(&r, c);
                let d = -2.0 * dot + self.norms[k * self.codebook_size + j];
                if d < best_d {
                    second_d = best_d;
                    best_d = d;
                    best = j;
                } else if d < second_d {
                    second_d = d;
                }
            }
            for (v, &c) in r.iter_mut().zip(self.codeword(k, best)) {
                *v -= c;
            }
            codes.push(best as i32);
            margins.push(second_d - best_d);
        }
        FrameCodes { codes, margins }
    }

    /// Encodes `[frames, dim]` embeddings into `[frames, levels]` codes (frame-major), with the
    /// decision margins in the same layout.
    pub fn encode_with_margins(&self, embeddings: &[f32], levels: usize) -> Result<(Vec<i32>, Vec<f64>), CodecError> {
        self.check_levels(levels)?;
        if !embeddings.len().is_multiple_of(self.dim) {
            return Err(CodecError::BadInput(format!("{} embedding values are not a whole number of {}-d frames", embeddings.len(), self.dim)));
        }
        if let Some(i) = embeddings.iter().position(|v| !v.is_finite()) {
            return Err(CodecError::BadInput(format!("embedding value {i} is not finite")));
        }
        let frames = embeddings.len() / self.dim;
        let work = frames * levels * self.codebook_size * self.dim;
        let threads = if work < 1 << 22 { 1 } else { std::thread::available_parallelism().map_or(1, |n| n.get()).min(frames) };
        let per = frames.div_ceil(threads.max(1)).max(1);
        let results: Vec<FrameCodes> = std::thread::scope(|s| {
            let handles: Vec<_> = embeddings
                .chunks(per * self.dim)
                .map(|chunk| s.spawn(move || chunk.chunks_exact(self.dim).map(|e| self.encode_frame(e, levels)).collect::<Vec<_>>()))
                .collect();
            handles.into_iter().flat_map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))).collect()
        });
        let mut codes = Vec::with_capacity(frames * levels);
        let mut margins = Vec::with_capacity(frames * levels);
        for r in results {
            codes.extend(r.codes);
            margins.extend(r.margins);
        }
        Ok((codes, margins))
    }

    /// Encodes `[frames, dim]` embeddings into `[frames, levels]` codes (frame-major).
    pub fn encode(&self, embeddings: &[f32], levels: usize) -> Result<Vec<i32>, CodecError> {
        self.encode_with_margins(embeddings, levels).map(|(c, _)| c)
    }

    /// Dequantises `[frames, stored_levels]` codes with their first `levels` levels into
    /// `[frames, dim]` embeddings.
    pub fn decode(&self, codes: &[i32], stored_levels: usize, levels: usize) -> Result<Vec<f32>, CodecError> {
        self.check_levels(levels)?;
        if stored_levels < levels || stored_levels == 0 || !codes.len().is_multiple_of(stored_levels) {
            return Err(CodecError::BadInput(format!(
                "{} codes in rows of {stored_levels} levels cannot provide {levels} levels",
                codes.len()
            )));
        }
        let frames = codes.len() / stored_levels;
        let mut out = vec![0f32; frames * self.dim];
        for (f, (row, out)) in codes.chunks_exact(stored_levels).zip(out.chunks_exact_mut(self.dim)).enumerate() {
            self.decode_frame_into(&row[..levels], out).map_err(|(k, code)| {
                CodecError::BadInput(format!("code {code} at frame {f}, level {k} is outside 0..{}", self.codebook_size))
            })?;
        }
        Ok(out)
    }

    /// Dequantises one frame's codes (levels `0..codes.len()`) into `out` (`dim` values), summing
    /// in f64 level by level. Every code is checked before `out` is written; a bad one comes back
    /// as `(level, code)`. No allocation.
    pub fn decode_frame_into(&self, codes: &[i32], out: &mut [f32]) -> Result<(), (usize, i32)> {
        assert!(codes.len() <= self.levels && out.len() == self.dim, "decode_frame_into: {} codes, {} outputs", codes.len(), out.len());
        if let Some((k, &code)) = codes.iter().enumerate().find(|(_, &c)| usize::try_from(c).map_or(true, |j| j >= self.codebook_size)) {
            return Err((k, code));
        }
        for (i, o) in out.iter_mut().enumerate() {
            let mut a = 0f64;
            for (k, &code) in codes.iter().enumerate() {
                a += f64::from(self.codebooks[(k * self.codebook_size + code as usize) * self.dim + i]);
            }
            *o = a as f32;
        }
        Ok(())
    }
}

/// `a·b` accumulated in f64 over eight independent lanes, so the compiler can vectorise it
/// (a single running sum is a serial dependency chain it may not reorder).
fn dot_f64(a: &[f32], b: &[f32]) -> f64 {
    let mut acc = [0f64; 8];
    let (ac, bc) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f64 = ac.remainder().iter().zip(bc.remainder()).map(|(&x, &y)| f64::from(x) * f64::from(y)).sum();
    for (x, y) in ac.zip(bc) {
        for i in 0..8 {
            acc[i] += f64::from(x[i]) * f64::from(y[i]);
        }
    }
    acc.iter().sum::<f64>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rvq() -> Rvq {
        // Two levels, three 2-d codewords each.
        Rvq::new(CodebookParams {
            levels: 2,
            codebook_size: 3,
            dim: 2,
            data: vec![1., 0., 0., 1., -1., 0., 0.1, 0., 0., 0.1, 0., -0.1],
        })
    }

    #[test]
    fn encoding_picks_the_nearest_codeword_level_by_level() {
        let q = rvq();
        let (codes, margins) = q.encode_with_margins(&[0.9, 0.12, -1.0, -0.1], 2).unwrap();
        assert_eq!(codes, vec![0, 1, 2, 2]);
        assert!(margins.iter().all(|&m| m > 0.0));
        let back = q.decode(&codes, 2, 2).unwrap();
        assert_eq!(back, vec![1.0, 0.1, -1.0, -0.1]);
        assert_eq!(q.decode(&codes, 2, 1).unwrap(), vec![1.0, 0.0, -1.0, 0.0]);
    }

    #[test]
    fn the_lane_dot_product_equals_the_plain_one() {
        let a: Vec<f32> = (0..37).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..37).map(|i| (i as f32 * 0.11).cos()).collect();
        let plain: f64 = a.iter().zip(&b).map(|(&x, &y)| f64::from(x) * f64::from(y)).sum();
        assert!((dot_f64(&a, &b) - plain).abs() < 1e-12);
    }

    #[test]
    fn ties_go_to_the_first_index() {
        let q = rvq();
        // Equidistant from codewords 0 and 1 of level 0.
        assert_eq!(q.encode(&[0.5, 0.5], 1).unwrap(), vec![0]);
    }

    #[test]
    fn bad_requests_are_errors() {
        let q = rvq();
        assert!(q.encode(&[0.0; 2], 3).is_err());
        assert!(q.encode(&[0.0; 3], 1).is_err());
        assert!(q.encode(&[f32::NAN, 0.0], 1).is_err());
        assert!(q.decode(&[0, 3], 2, 2).is_err());
        assert!(q.decode(&[0, -1], 2, 2).is_err());
        assert!(q.decode(&[0, 1], 1, 2).is_err());
    }
}
