//! Attention of one query over cached positions (T5: no scaling), the decode steps' inner loop.

use super::gemv::dot_rows;
use super::vmath::softmax;

/// One query over `len` cached positions: `out = softmax(q·kᵀ + bias)·v` (no scaling, T5).
/// `keys`, `values`: `[len, dh]`; `bias`: `len` values or none; `scores`: scratch of ≥ `len`.
pub fn attend_one(q: &[f32], keys: &[f32], values: &[f32], bias: Option<&[f32]>, scores: &mut [f32], out: &mut [f32]) {
    let dh = q.len();
    let len = keys.len() / dh;
    let scores = &mut scores[..len];
    for (s, k) in scores.iter_mut().zip(keys.chunks_exact(dh)) {
        *s = dot(q, k);
    }
    if let Some(bias) = bias {
        for (s, b) in scores.iter_mut().zip(bias) {
            *s += b;
        }
    }
    softmax(scores);
    out.fill(0.0);
    for (&p, v) in scores.iter().zip(values.chunks_exact(dh)) {
        for (o, &x) in out.iter_mut().zip(v) {
            *o += p * x;
        }
    }
}


/// One query over `len` positions with the values stored transposed: `keys: [len, dh]`,
/// `values_t: [dh, len]`; `out = softmax(q·kᵀ)·v` (no scaling, T5). Both products run on the
/// vector kernels (the cross-attention of a temporal step reads 1006 positions per head).
pub fn attend_one_t(q: &[f32], keys: &[f32], values_t: &[f32], scores: &mut [f32], out: &mut [f32]) {
    let len = keys.len() / q.len();
    let scores = &mut scores[..len];
    dot_rows(q, keys, scores);
    softmax(scores);
    dot_rows(scores, values_t, out);
}

#[inline]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let mut s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use super::super::gemv::transpose_into;

    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut rng = crate::sampling::rng::SplitMix64::new(seed);
        (0..n).map(|_| (rng.next_f64() * 2.0 - 1.0) as f32).collect()
    }

    #[test]
    fn attention_with_transposed_values_equals_the_plain_one() {
        let (dh, len) = (64, 1006);
        let q = values(dh, 1);
        let keys = values(len * dh, 2);
        let vals = values(len * dh, 3);
        let mut vt = vec![0f32; len * dh];
        transpose_into(&vals, len, dh, &mut vt);
        let (mut s1, mut s2) = (vec![0f32; len], vec![0f32; len]);
        let (mut a, mut b) = (vec![0f32; dh], vec![0f32; dh]);
        attend_one(&q, &keys, &vals, None, &mut s1, &mut a);
        attend_one_t(&q, &keys, &vt, &mut s2, &mut b);
        for (x, y) in a.iter().zip(&b) {
            assert!((x - y).abs() < 1e-5, "{x} vs {y}");
        }
        assert!(a.iter().any(|v| v.abs() > 1e-3));
    }

    #[test]
    fn attention_of_one_query_is_a_softmax_average() {
        let (dh, len) = (3, 4);
        let q = [1.0, 0.0, 0.0];
        let keys: Vec<f32> = (0..len * dh).map(|i| if i % dh == 0 { (i / dh) as f32 } else { 0.0 }).collect();
        let values: Vec<f32> = (0..len * dh).map(|i| (i / dh) as f32).collect();
        let bias = [0.0, 0.0, 0.0, -1e10];
        let mut scores = vec![0f32; len];
        let mut out = vec![0f32; dh];
        attend_one(&q, &keys, &values, Some(&bias), &mut scores, &mut out);
        // Scores 0, 1, 2 and a masked 4th: weights e^s / Σ.
        let z: f32 = (0..3).map(|s| (s as f32).exp()).sum();
        let want: f32 = (0..3).map(|s| s as f32 * (s as f32).exp() / z).sum();
        assert!(out.iter().all(|&o| (o - want).abs() < 1e-6), "{out:?} vs {want}");
    }
}
