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

/// LayerNorm with scale and bias of each `d`-wide row of `x` into `out` (flax `nn.LayerNorm`:
/// biased variance over the features): `(x − mean) · (1 / sqrt(var + eps)) · scale + bias`.
pub fn layer_norm(x: &[f32], scale: &[f32], bias: &[f32], eps: f32, out: &mut [f32]) {
    let d = scale.len();
    assert_eq!(bias.len(), d, "layer_norm: {} scales, {} biases", d, bias.len());
    for (row, o) in x.chunks_exact(d).zip(out.chunks_exact_mut(d)) {
        let mean = row.iter().sum::<f32>() / d as f32;
        let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / d as f32;
        let inv = 1.0 / (var + eps).sqrt();
        for (((o, &v), &s), &b) in o.iter_mut().zip(row).zip(scale).zip(bias) {
            *o = (v - mean) * inv * s + b;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rms_norm_multiplies_by_the_scale_directly() {
        let mut out = [0.0; 2];
        rms_norm(&[3.0, 4.0], &[2.0, 1.0], 0.0, &mut out);
        let r = 12.5f32.sqrt();
        assert!((out[0] - 6.0 / r).abs() < 1e-6 && (out[1] - 4.0 / r).abs() < 1e-6, "{out:?}");
    }

    #[test]
    fn layer_norm_centres_scales_and_shifts_each_row() {
        let mut out = [0.0; 4];
        layer_norm(&[1.0, 3.0, -2.0, 2.0], &[1.0, 2.0], &[0.5, 0.0], 0.0, &mut out);
        // Row 1: mean 2, var 1 → [-1, 1]; row 2: mean 0, var 4 → [-1, 1]; then ·[1, 2] + [0.5, 0].
        for (o, w) in out.iter().zip([-0.5, 2.0, -0.5, 2.0]) {
            assert!((o - w).abs() < 1e-6, "{out:?}");
        }
        // eps keeps a constant row finite.
        let mut out = [0.0; 2];
        layer_norm(&[5.0, 5.0], &[1.0, 1.0], &[0.0, 0.0], 1e-6, &mut out);
        assert_eq!(out, [0.0, 0.0]);
    }
}
