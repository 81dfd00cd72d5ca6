//! The 40 ms equal-power crossfade between chunks (v1 `audio.crossfade_ramp(n, "eqpower")` and
//! `system.py` `generate_chunk`, since commit 9c915f9).
//!
//! ```text
//!  decoded (51 frames) = [ 1920 + 94080 | tail 1920 ]
//!  chunk[0..1920] = chunk[0..1920]·ramp + previous tail·reverse(ramp)      ramp[i] = sin(i·π/(2n))
//! ```
//! The ramp is `np.sin(np.linspace(0, π/2, n, endpoint=False, dtype=float32))`: positions rounded
//! to f32, the sine rounded to f32, products and sums in f32, as NumPy computes them.

/// `ramp[i] = sin(i·π/(2n))` for `i in 0..n`, in f32 like the reference.
pub fn equal_power_ramp(n: usize) -> Vec<f32> {
    let step = std::f64::consts::FRAC_PI_2 / n as f64;
    (0..n).map(|i| (f64::from((i as f64 * step) as f32)).sin() as f32).collect()
}

/// Crossfades the head of `chunk` (one channel) with the previous chunk's tail in place:
/// `chunk[i] = chunk[i]·ramp[i] + tail[i]·ramp[n−1−i]`.
pub fn apply(chunk: &mut [f32], previous_tail: &[f32], ramp: &[f32]) {
    let n = ramp.len();
    for i in 0..n {
        let faded_in = chunk[i] * ramp[i];
        chunk[i] = faded_in + previous_tail[i] * ramp[n - 1 - i];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ramp_is_the_reference_equal_power_curve() {
        let r = equal_power_ramp(1920);
        assert_eq!(r.len(), 1920);
        assert_eq!(r[0], 0.0);
        assert!((r[960] - std::f32::consts::FRAC_1_SQRT_2).abs() < 1e-6);
        assert!(r[1919] < 1.0 && r[1919] > 0.99999);
        assert!(r.windows(2).all(|w| w[0] < w[1]));
        // Equal power: fade-in² + fade-out² stays 1 across the seam (to float precision).
        for i in 0..1920 {
            let p = r[i] * r[i] + r[1919 - i] * r[1919 - i];
            assert!((p - 1.0).abs() < 2e-3, "i {i}: {p}");
        }
    }

    #[test]
    fn apply_mixes_the_tail_out_and_the_chunk_in() {
        let ramp = equal_power_ramp(4);
        let mut chunk = vec![1.0f32; 6];
        apply(&mut chunk, &[2.0; 4], &ramp);
        assert_eq!(chunk[0], 2.0 * ramp[3]);
        assert_eq!(chunk[3], ramp[3] + 2.0 * ramp[0]);
        assert_eq!(&chunk[4..], &[1.0, 1.0], "past the crossfade the chunk is untouched");
    }
}
