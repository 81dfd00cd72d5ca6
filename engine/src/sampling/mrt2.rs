//! MRT2's draw, reproduced bit for bit: JAX's threefry2x32 keys, `fold_in`, Gumbel noise and the
//! top-k / temperature sampler of `_sample_categorical_with_temperature`
//! (`magenta_rt/jax/depthformer.py`, `magenta-rt` 2.0.3; spec `magenta_rt_2.md` §1.4).
//!
//! ```text
//!  key ──► gumbel(key, flat index of each valid id) ─┐
//!  capped logits of the level's 1024 ids ──► top-k mask (ties kept) ──► + noise·T ──► argmax
//!  key ──► fold_in(key, frame) after every depth step
//! ```
//!
//! * `threefry2x32` is JAX's default PRNG (Threefry-2x32, 20 rounds).
//! * `fold_in(key, d) = threefry2x32(key, (0, d))`.
//! * `jax.random.gumbel(key, shape, float32)` (mode "low", `jax_threefry_partitionable=True`):
//!   the 32 random bits of flat element `i` are `b1 ^ b2` with
//!   `(b1, b2) = threefry2x32(key, (hi32(i), lo32(i)))`; they become a uniform
//!   `u = max(tiny, f·(1 − tiny) + tiny)` with `f = bitcast((bits >> 9) | 0x3F800000) − 1`, and
//!   the noise is `−log(−log(u))`.
//!
//! Every element's noise depends only on its flat index, so drawing the reference's full
//! `(1, 1, 12294)` noise and slicing the level's valid window equals drawing just the window's
//! indices, which is what [`fill_gumbel`] does.
//!
//! The sampler: logits outside the level's valid range become `−0.7·FLT_MAX`; values below the
//! k-th largest (ties kept) become `−0.7·FLT_MAX`; `score = logits + gumbel·T` (the noise is
//! scaled, the logits are not divided); the token is the first argmax.

use super::topk::{argmax, top_k_ids};

/// A raw threefry2x32 key (the reference state holds it as `uint32[1, 2]`).
pub type Key = [u32; 2];

/// The masking value of the reference (`get_large_negative_number(float32)`).
pub fn large_negative() -> f32 {
    (-0.7f64 * f32::MAX as f64) as f32
}

/// Threefry-2x32 (20 rounds) of the counter pair `x` under `key`.
pub fn threefry2x32(key: Key, x: [u32; 2]) -> [u32; 2] {
    const ROT: [[u32; 4]; 2] = [[13, 15, 26, 6], [17, 29, 16, 24]];
    let ks = [key[0], key[1], key[0] ^ key[1] ^ 0x1BD1_1BDA];
    let mut x0 = x[0].wrapping_add(ks[0]);
    let mut x1 = x[1].wrapping_add(ks[1]);
    for round in 0..5u32 {
        for &r in &ROT[(round % 2) as usize] {
            x0 = x0.wrapping_add(x1);
            x1 = x1.rotate_left(r);
            x1 ^= x0;
        }
        let i = round as usize + 1;
        x0 = x0.wrapping_add(ks[i % 3]);
        x1 = x1.wrapping_add(ks[(i + 1) % 3]).wrapping_add(round + 1);
    }
    [x0, x1]
}

/// `jax.random.fold_in(key, data)` for a 32-bit `data`.
pub fn fold_in(key: Key, data: u32) -> Key {
    threefry2x32(key, [0, data])
}

/// The 32 random bits of flat element `index` (partitionable layout).
#[inline]
pub fn random_bits(key: Key, index: u64) -> u32 {
    let [b1, b2] = threefry2x32(key, [(index >> 32) as u32, index as u32]);
    b1 ^ b2
}

/// The uniform in `[tiny, 1)` that `jax.random.uniform(minval=tiny, maxval=1)` makes of `bits`.
#[inline]
pub fn uniform_from_bits(bits: u32) -> f32 {
    let tiny = f32::MIN_POSITIVE;
    let f = f32::from_bits((bits >> 9) | 0x3F80_0000) - 1.0;
    (f * (1.0 - tiny) + tiny).max(tiny)
}

/// Gumbel noise of flat element `index`.
#[inline]
pub fn gumbel(key: Key, index: u64) -> f32 {
    -(-uniform_from_bits(random_bits(key, index)).ln()).ln()
}

/// Fills `out` with the Gumbel noise of flat elements `start .. start + out.len()`.
pub fn fill_gumbel(key: Key, start: u64, out: &mut [f32]) {
    for (j, o) in out.iter_mut().enumerate() {
        *o = gumbel(key, start + j as u64);
    }
}

/// MRT2's sampling knobs. `top_k == 1, temperature == 1` is the reference's greedy setting.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplingParams {
    pub temperature: f32,
    pub top_k: usize,
}

impl SamplingParams {
    /// Greedy through the same code path: top-k 1, T 1 (ties at the maximum are broken by the
    /// noise, exactly as in the reference).
    pub fn greedy() -> Self {
        Self { temperature: 1.0, top_k: 1 }
    }
}

impl Default for SamplingParams {
    /// The released defaults: T 1.3, top-k 40.
    fn default() -> Self {
        Self { temperature: 1.3, top_k: 40 }
    }
}

/// The k of a draw within a window of `window` ids: `top_k` clipped to `[1, logits_width]` as
/// in the reference, and at most the window (a k that covers the window keeps all of it).
pub fn window_top_k(top_k: usize, logits_width: usize, window: usize) -> usize {
    top_k.clamp(1, logits_width.max(1)).min(window)
}

/// Scratch of [`sample_window`], allocated once for a window of `n` ids.
#[derive(Debug, Clone, Default)]
pub struct SampleScratch {
    order: Vec<u32>,
    scores: Vec<f32>,
}

impl SampleScratch {
    pub fn new(n: usize) -> Self {
        Self { order: Vec::with_capacity(n), scores: vec![0.0; n] }
    }
}

/// Samples within one level's valid window; returns the index within the window.
///
/// `capped` are the soft-capped logits of the window, `noise` the Gumbel noise of the same
/// elements, `logits_width` the full vocabulary width (top-k is clipped to it as in the
/// reference). Allocates nothing when `scratch` was made for at least `capped.len()` ids.
pub fn sample_window(capped: &[f32], noise: &[f32], params: &SamplingParams, logits_width: usize, scratch: &mut SampleScratch) -> usize {
    let n = capped.len();
    assert_eq!(noise.len(), n, "sample_window: {} noise values for {n} logits", noise.len());
    let neg = large_negative();
    // The k-th largest over the full width: the window's values lie above the masked ones, so it
    // is the smallest of the window's k largest; when k covers the window every value is kept
    // (the k-th is then a masked value or the window's minimum, which keep the same set).
    top_k_ids(capped, window_top_k(params.top_k, logits_width, n), &mut scratch.order);
    let kth = scratch.order.iter().map(|&i| capped[i as usize]).fold(f32::INFINITY, f32::min);
    let t = params.temperature;
    let scores = &mut scratch.scores[..n];
    for ((s, &l), &g) in scores.iter_mut().zip(capped).zip(noise) {
        *s = if l >= kth { l } else { neg } + g * t;
    }
    argmax(scores)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Known-answer vectors of Threefry-2x32-20 from Random123 (`kat_vectors`), also used by
    /// JAX's own tests.
    #[test]
    fn threefry_matches_the_random123_known_answers() {
        assert_eq!(threefry2x32([0, 0], [0, 0]), [0x6b20_0159, 0x99ba_4efe]);
        assert_eq!(threefry2x32([0xffff_ffff, 0xffff_ffff], [0xffff_ffff, 0xffff_ffff]), [0x1cb9_96fc, 0xbb00_2be7]);
        assert_eq!(threefry2x32([0x1319_8a2e, 0x0370_7344], [0x243f_6a88, 0x85a3_08d3]), [0xc492_3a9c, 0x483d_f7a0]);
    }

    #[test]
    fn uniform_bits_map_into_tiny_to_one() {
        assert_eq!(uniform_from_bits(0), f32::MIN_POSITIVE);
        let top = uniform_from_bits(u32::MAX);
        assert!(top < 1.0 && top > 0.99999);
    }

    fn sample(capped: &[f32], noise: &[f32], temperature: f32, top_k: usize, width: usize) -> usize {
        let mut scratch = SampleScratch::new(capped.len());
        sample_window(capped, noise, &SamplingParams { temperature, top_k }, width, &mut scratch)
    }

    #[test]
    fn top_k_keeps_ties_at_the_kth_value() {
        // Values 3, 5, 5, 1 with k = 2: both 5s are kept, the noise decides between them.
        let capped = [3.0, 5.0, 5.0, 1.0];
        assert_eq!(sample(&capped, &[0.0, 0.0, 1.0, 0.0], 1.0, 2, 100), 2);
        assert_eq!(sample(&capped, &[0.0, 1.0, 0.0, 0.0], 1.0, 2, 100), 1);
        // The 3 is masked even with huge noise (it is below the k-th value).
        assert_eq!(sample(&capped, &[50.0, 0.0, 0.0, 0.0], 1.0, 2, 100), 1);
        // k = 1 keeps every tie at the maximum too.
        assert_eq!(sample(&capped, &[0.0, 0.0, 0.5, 0.0], 1.0, 1, 100), 2);
    }

    #[test]
    fn the_noise_is_multiplied_by_the_temperature_not_the_logits_divided() {
        let (capped, noise) = ([1.0, 0.0], [0.0, 0.6]);
        assert_eq!(sample(&capped, &noise, 1.0, 2, 10), 0);
        assert_eq!(sample(&capped, &noise, 2.0, 2, 10), 1);
    }

    #[test]
    fn argmax_returns_the_first_of_equal_scores() {
        assert_eq!(sample(&[2.0, 2.0, 2.0], &[0.0; 3], 0.0, 3, 10), 0);
    }

    #[test]
    fn a_top_k_larger_than_the_window_keeps_the_whole_window() {
        assert_eq!(sample(&[2.0, 0.0, 1.0], &[0.0, 3.0, 0.0], 1.0, 5000, 12294), 1);
    }

    #[test]
    fn fold_in_is_threefry_of_zero_and_the_data() {
        let key = [2_622_765_856, 4_027_185_423];
        assert_eq!(fold_in(key, 3), threefry2x32(key, [0, 3]));
        assert_ne!(fold_in(key, 0), key);
    }
}
