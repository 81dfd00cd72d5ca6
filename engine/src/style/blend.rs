//! Weighted blends of style embeddings (spec §3.5).
//!
//! ```text
//!  blend = Σ wᵢ·eᵢ / Σ wᵢ        (the v1 Colab's `get_style_embedding`)
//!  Σ wᵢ = 0                  →  no style: the LM sees MASK tokens (unconditional)
//!  wᵢ < 0 or not finite      →  error
//! ```
//!
//! The v1 README and `generate.py` divide once more by the number of prompts (weights normalised to
//! sum 1, then `.mean(axis=0)`), which shrinks the vector toward zero and changes its RVQ tokens; we
//! follow the Colab formula, as the spec recommends.

use super::StyleError;

/// One weighted part of a blend.
#[derive(Clone, Debug)]
pub struct Weighted<'a> {
    pub embedding: &'a [f32],
    pub weight: f32,
}

/// `Σ wᵢ·eᵢ / Σ wᵢ`, accumulated in f64. `Ok(None)` when the weights sum to zero (or there are
/// no parts): "no style". Negative or non-finite weights, embeddings of different widths and
/// non-finite embedding values are errors naming the part.
pub fn blend(parts: &[Weighted<'_>]) -> Result<Option<Vec<f32>>, StyleError> {
    let dim = match parts.first() {
        Some(p) => p.embedding.len(),
        None => return Ok(None),
    };
    let mut total = 0f64;
    for (i, p) in parts.iter().enumerate() {
        if !p.weight.is_finite() || p.weight < 0.0 {
            return Err(StyleError::BadWeight { index: i, weight: p.weight });
        }
        if p.embedding.len() != dim {
            return Err(StyleError::BadInput(format!(
                "style part {i} has {} values, part 0 has {dim}",
                p.embedding.len()
            )));
        }
        if let Some(j) = p.embedding.iter().position(|v| !v.is_finite()) {
            return Err(StyleError::BadInput(format!("style part {i} holds a non-finite value at index {j}")));
        }
        total += f64::from(p.weight);
    }
    if total == 0.0 {
        return Ok(None);
    }
    let mut acc = vec![0f64; dim];
    for p in parts.iter().filter(|p| p.weight > 0.0) {
        let w = f64::from(p.weight);
        for (a, &e) in acc.iter_mut().zip(p.embedding) {
            *a += w * f64::from(e);
        }
    }
    Ok(Some(acc.into_iter().map(|a| (a / total) as f32).collect()))
}

/// Linear interpolation `(1 − t)·a + t·b`, `t` in 0..=1 (the demo's smooth transitions).
pub fn lerp(a: &[f32], b: &[f32], t: f32) -> Result<Vec<f32>, StyleError> {
    if a.len() != b.len() {
        return Err(StyleError::BadInput(format!("cannot interpolate embeddings of {} and {} values", a.len(), b.len())));
    }
    if !(0.0..=1.0).contains(&t) {
        return Err(StyleError::BadInput(format!("interpolation position {t} is outside 0..=1")));
    }
    Ok(a.iter().zip(b).map(|(&x, &y)| (1.0 - t) * x + t * y).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(embedding: &[f32], weight: f32) -> Weighted<'_> {
        Weighted { embedding, weight }
    }

    #[test]
    fn weighted_mean_not_divided_by_count() {
        let (a, b) = ([1.0, 0.0, 4.0], [3.0, 2.0, 0.0]);
        let out = blend(&[w(&a, 2.0), w(&b, 1.0)]).unwrap().unwrap();
        // (2·a + b) / 3, not additionally / 2 (the README variant).
        assert_eq!(out, vec![5.0 / 3.0, 2.0 / 3.0, 8.0 / 3.0]);
    }

    #[test]
    fn single_prompt_is_itself_whatever_its_weight() {
        let a = [0.25, -7.5, 12.0];
        assert_eq!(blend(&[w(&a, 0.3)]).unwrap().unwrap(), a.to_vec());
        assert_eq!(blend(&[w(&a, 0.3), w(&[9.0, 9.0, 9.0], 0.0)]).unwrap().unwrap(), a.to_vec());
    }

    #[test]
    fn zero_total_weight_is_no_style() {
        let a = [1.0, 2.0];
        assert_eq!(blend(&[w(&a, 0.0), w(&a, 0.0)]).unwrap(), None);
        assert_eq!(blend(&[]).unwrap(), None);
    }

    #[test]
    fn negative_nan_and_mismatched_parts_are_rejected() {
        let (a, b) = ([1.0, 2.0], [1.0, 2.0, 3.0]);
        assert!(matches!(blend(&[w(&a, 1.0), w(&a, -0.5)]), Err(StyleError::BadWeight { index: 1, .. })));
        assert!(matches!(blend(&[w(&a, f32::NAN)]), Err(StyleError::BadWeight { index: 0, .. })));
        assert!(matches!(blend(&[w(&a, f32::INFINITY)]), Err(StyleError::BadWeight { index: 0, .. })));
        let err = blend(&[w(&a, 1.0), w(&b, 1.0)]).unwrap_err().to_string();
        assert!(err.contains("part 1 has 3 values"), "{err}");
        let err = blend(&[w(&[1.0, f32::NAN], 1.0)]).unwrap_err().to_string();
        assert!(err.contains("non-finite value at index 1"), "{err}");
    }

    #[test]
    fn lerp_endpoints_and_bounds() {
        let (a, b) = ([0.0, 4.0], [2.0, 0.0]);
        assert_eq!(lerp(&a, &b, 0.0).unwrap(), a.to_vec());
        assert_eq!(lerp(&a, &b, 1.0).unwrap(), b.to_vec());
        assert_eq!(lerp(&a, &b, 0.5).unwrap(), vec![1.0, 2.0]);
        assert!(lerp(&a, &b, 1.5).is_err());
        assert!(lerp(&a, &[1.0], 0.5).is_err());
    }
}
