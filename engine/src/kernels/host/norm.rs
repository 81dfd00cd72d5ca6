//! Normalisations of the host kernels.

/// T5 RMSNorm of each `d`-wide row of `x` into `out`: `x · (1 / sqrt(mean(x²) + eps)) · scale`.
pub fn rms_norm(x: &[f32], scale: &[f32], eps: f32, out: &mut [f32]) {
    let d = scale.len();
    for (row, o) in x.chunks_exact(d).zip(out.chunks_exact_mut(d)) {
        let ms = row.iter().map(|v| v * v).sum::<f32>() / d as f32;
        let inv = 1.0 / (ms + eps).sqrt();
        for ((o, &v), &s) in o.iter_mut().zip(row).zip(scale) {
            *o = v * inv * s;
        }
    }
}
