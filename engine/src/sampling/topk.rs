//! Choosing among logits: the maximum, and the k largest. Shared by every family's sampler.

/// First index of the maximum (`jnp.argmax`); NaN never wins.
pub fn argmax(logits: &[f32]) -> usize {
    let mut best = 0;
    let mut best_v = f32::NEG_INFINITY;
    for (i, &v) in logits.iter().enumerate() {
        if v > best_v {
            best = i;
            best_v = v;
        }
    }
    best
}

/// The ids of the `k` largest logits (ties: the lower id first; `k = 0` or `k ≥ len`: all ids)
/// into `order`, in increasing id order. Selection, then an integer sort of the k kept ids: the
/// whole vocabulary is never sorted.
pub fn top_k_ids(logits: &[f32], k: usize, order: &mut Vec<u32>) {
    let k = if k == 0 { logits.len() } else { k.min(logits.len()) };
    order.clear();
    order.extend(0..logits.len() as u32);
    if k < logits.len() {
        let by_logit_desc = |a: &u32, b: &u32| logits[*b as usize].total_cmp(&logits[*a as usize]).then(a.cmp(b));
        order.select_nth_unstable_by(k - 1, by_logit_desc);
        order.truncate(k);
        order.sort_unstable();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argmax_takes_the_first_maximum_and_never_nan() {
        assert_eq!(argmax(&[0.1, 3.0, 3.0, -1.0]), 1);
        assert_eq!(argmax(&[f32::NAN, 0.5, 0.2]), 1);
    }

    #[test]
    fn top_k_keeps_the_k_largest_in_id_order_with_ties_to_the_lower_id() {
        let logits = [0.5, 2.0, 2.0, -1.0, 3.0, 2.0];
        let mut order = Vec::new();
        top_k_ids(&logits, 3, &mut order);
        assert_eq!(order, vec![1, 2, 4]);
        top_k_ids(&logits, 0, &mut order);
        assert_eq!(order, (0..6).collect::<Vec<u32>>());
        top_k_ids(&logits, 10, &mut order);
        assert_eq!(order.len(), 6);
    }
}
