//! Classifier-free guidance and token sampling, as pure host functions.
//!
//! t5x `decoding.temperature_sample` (7781d16) with v1 `depthformer/decode.py`:
//! `guided = (1 + w)·cond − w·uncond` → `/ max(temperature, 1e-4)` → keep the top k → categorical
//! draw. Temperature 0 or top-k 1 is greedy (first index of the maximum, like `jnp.argmax`).
//!
//! The draw is an inverse-CDF sample over the k kept logits with a uniform from [`SplitMix64`]
//! keyed by `seed + chunk_index` (the reference keys `jax.random.PRNGKey(seed + chunk_index)`).
//! Bit-parity with JAX's threefry stream is not a goal; determinism per seed is.

pub use crate::sampling::topk::argmax;
use crate::sampling::rng::SplitMix64;
use crate::sampling::topk::top_k_ids;

/// t5x `MIN_TEMPERATURE`.
pub const MIN_TEMPERATURE: f32 = 1e-4;

/// Sampling knobs of one chunk. Defaults are v1 `MagentaRT()`'s (system.py).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SamplingParams {
    pub temperature: f32,
    /// 0 disables the top-k filter.
    pub top_k: usize,
    pub guidance_weight: f32,
    pub seed: u64,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self { temperature: 1.1, top_k: 40, guidance_weight: 5.0, seed: 0 }
    }
}

impl SamplingParams {
    pub fn is_greedy(&self) -> bool {
        self.top_k == 1 || self.temperature <= 0.0
    }

    /// Rejects settings that have no meaning (NaN, negative temperature or guidance).
    pub fn validate(&self) -> Result<(), String> {
        if !self.temperature.is_finite() || self.temperature < 0.0 {
            return Err(format!("temperature must be a finite number ≥ 0, got {}", self.temperature));
        }
        if !self.guidance_weight.is_finite() || self.guidance_weight < 0.0 {
            return Err(format!("guidance weight must be a finite number ≥ 0, got {}", self.guidance_weight));
        }
        Ok(())
    }

    /// The generator for chunk `chunk_index`: same seed and chunk index, same tokens.
    pub fn rng_for_chunk(&self, chunk_index: u64) -> SplitMix64 {
        SplitMix64::new(self.seed.wrapping_add(chunk_index))
    }
}

/// `out = (1 + w)·cond − w·uncond`, in f32 as the reference.
pub fn cfg_combine(cond: &[f32], uncond: &[f32], w: f32, out: &mut [f32]) {
    let a = 1.0 + w;
    for ((o, &c), &u) in out.iter_mut().zip(cond).zip(uncond) {
        *o = a * c - w * u;
    }
}

/// Reusable scratch space so the per-token draw allocates nothing.
#[derive(Default)]
pub struct Sampler {
    order: Vec<u32>,
    weights: Vec<f64>,
}

impl Sampler {
    /// Draws one id from `logits` (already guided). Errors on a non-finite logit.
    pub fn sample(&mut self, logits: &[f32], p: &SamplingParams, rng: &mut SplitMix64) -> Result<usize, usize> {
        if let Some(bad) = logits.iter().position(|v| !v.is_finite()) {
            return Err(bad);
        }
        if p.is_greedy() {
            return Ok(argmax(logits));
        }
        // The order of the kept ids does not change the distribution; index order makes the
        // draw independent of how the selection left them.
        top_k_ids(logits, p.top_k, &mut self.order);
        let inv_t = 1.0 / f64::from(p.temperature.max(MIN_TEMPERATURE));
        let top = self.order.iter().map(|&i| logits[i as usize]).fold(f32::NEG_INFINITY, f32::max);
        let top = f64::from(top);
        self.weights.clear();
        let mut total = 0.0;
        for &i in &self.order {
            let w = ((f64::from(logits[i as usize]) - top) * inv_t).exp();
            total += w;
            self.weights.push(total);
        }
        let u = rng.next_f64() * total;
        let pick = self.weights.partition_point(|&c| c <= u).min(self.order.len() - 1);
        Ok(self.order[pick] as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cfg_combine_matches_the_reference_formula() {
        let mut out = [0.0; 2];
        cfg_combine(&[1.0, -2.0], &[0.5, 1.0], 5.0, &mut out);
        assert_eq!(out, [6.0 * 1.0 - 5.0 * 0.5, 6.0 * -2.0 - 5.0 * 1.0]);
        cfg_combine(&[1.0, -2.0], &[0.5, 1.0], 0.0, &mut out);
        assert_eq!(out, [1.0, -2.0], "w = 0 disables guidance");
    }

    #[test]
    fn greedy_when_top_k_is_one_or_temperature_is_zero() {
        let logits = [0.1, 3.0, 3.0, -1.0];
        let mut s = Sampler::default();
        let mut rng = SplitMix64::new(1);
        for p in [
            SamplingParams { top_k: 1, ..Default::default() },
            SamplingParams { temperature: 0.0, ..Default::default() },
        ] {
            assert_eq!(s.sample(&logits, &p, &mut rng), Ok(1), "first index of the maximum");
        }
    }

    #[test]
    fn top_k_never_draws_outside_the_k_largest() {
        let logits: Vec<f32> = (0..100).map(|i| (i as f32 * 0.37).sin()).collect();
        let mut sorted: Vec<usize> = (0..100).collect();
        sorted.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
        let allowed = &sorted[..5];
        let p = SamplingParams { temperature: 5.0, top_k: 5, ..Default::default() };
        let (mut s, mut rng) = (Sampler::default(), SplitMix64::new(3));
        let mut seen = std::collections::HashSet::new();
        for _ in 0..2000 {
            let id = s.sample(&logits, &p, &mut rng).unwrap();
            assert!(allowed.contains(&id));
            seen.insert(id);
        }
        assert_eq!(seen.len(), 5, "a hot temperature visits every kept id");
    }

    #[test]
    fn draws_follow_the_softmax() {
        // Two candidates with logit gap ln(3): probabilities 3/4 and 1/4 at temperature 1.
        let logits = [3f32.ln(), 0.0, -50.0];
        let p = SamplingParams { temperature: 1.0, top_k: 0, ..Default::default() };
        let (mut s, mut rng) = (Sampler::default(), SplitMix64::new(11));
        let n = 20000;
        let zeros = (0..n).filter(|_| s.sample(&logits, &p, &mut rng) == Ok(0)).count();
        let frac = zeros as f64 / n as f64;
        assert!((frac - 0.75).abs() < 0.015, "P(0) = {frac}");
    }

    #[test]
    fn same_seed_and_chunk_give_the_same_draws() {
        let logits: Vec<f32> = (0..1000).map(|i| ((i * 7919) % 1000) as f32 / 300.0).collect();
        let p = SamplingParams { seed: 42, ..Default::default() };
        let draw = |chunk| {
            let (mut s, mut rng) = (Sampler::default(), p.rng_for_chunk(chunk));
            (0..50).map(|_| s.sample(&logits, &p, &mut rng).unwrap()).collect::<Vec<_>>()
        };
        assert_eq!(draw(3), draw(3));
        assert_ne!(draw(3), draw(4));
    }

    #[test]
    fn non_finite_logits_are_reported() {
        let (mut s, mut rng) = (Sampler::default(), SplitMix64::new(0));
        assert_eq!(s.sample(&[0.0, f32::NAN], &SamplingParams::default(), &mut rng), Err(1));
    }

    #[test]
    fn impossible_settings_are_rejected() {
        assert!(SamplingParams { temperature: -1.0, ..Default::default() }.validate().is_err());
        assert!(SamplingParams { guidance_weight: f32::NAN, ..Default::default() }.validate().is_err());
        assert!(SamplingParams::default().validate().is_ok());
    }
}
