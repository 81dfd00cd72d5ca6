//! T5 relative-position buckets and the additive attention biases built from them.
//!
//! flaxformer 399ea3a `components/relative_position_biases.py`, `_relative_position_bucket`:
//! `n = max(q_pos − k_pos, 0)` for unidirectional attention; distances below `buckets/2` get their
//! own bucket, larger ones a log-spaced bucket up to `max_distance`. The bucket arithmetic runs in
//! float32 as in the reference (`np.log(n.astype(np.float32) / max_exact + eps)`).

/// Additive value standing in for `-inf` where a key is masked (flaxformer uses `-1e10`).
pub const MASKED: f32 = -1e10;

/// Bucket of a query/key distance `n = q_pos - k_pos` (unidirectional).
pub fn bucket(n: i64, num_buckets: usize, max_distance: usize) -> usize {
    let n = n.max(0) as usize;
    let max_exact = num_buckets / 2;
    if n < max_exact {
        return n;
    }
    let ratio = (n as f32 / max_exact as f32 + f32::EPSILON).ln()
        / ((max_distance as f64 / max_exact as f64).ln() as f32);
    let large = max_exact + (ratio * (num_buckets - max_exact) as f32) as usize;
    large.min(num_buckets - 1)
}

/// Causal bias table `[heads, len, len]` (row = query position, column = key position), flattened
/// C-order: `rel[h, bucket(q - k)]` where `k <= q`, [`MASKED`] above the diagonal.
///
/// `rel_embedding` is the checkpoint's `[heads, num_buckets]` table.
pub fn causal_bias_table(rel_embedding: &[f32], heads: usize, num_buckets: usize, max_distance: usize, len: usize) -> Vec<f32> {
    let mut out = vec![MASKED; heads * len * len];
    for h in 0..heads {
        for q in 0..len {
            for k in 0..=q {
                let b = bucket(q as i64 - k as i64, num_buckets, max_distance);
                out[(h * len + q) * len + k] = rel_embedding[h * num_buckets + b];
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_distances_map_one_to_one() {
        for n in 0..50 {
            assert_eq!(bucket(n, 128, 128), n as usize);
        }
        // The depth table (16 buckets, max distance 16) is one-to-one for all 16 levels.
        for n in 0..16 {
            assert_eq!(bucket(n, 16, 16), n as usize);
        }
    }

    #[test]
    fn long_distances_are_log_spaced_and_clipped() {
        assert_eq!(bucket(-5, 32, 128), 0, "future keys fall in bucket 0 when unidirectional");
        assert_eq!(bucket(16, 32, 128), 16);
        assert_eq!(bucket(1000, 32, 128), 31);
        let b = (16..128).map(|n| bucket(n, 32, 128)).collect::<Vec<_>>();
        assert!(b.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn bias_table_is_causal() {
        let rel = [0.5f32, 1.5, -2.0, 3.0]; // 1 head, 4 buckets
        let t = causal_bias_table(&rel, 1, 4, 4, 3);
        assert_eq!(t[0], 0.5);
        assert_eq!(t[1], MASKED);
        assert_eq!(t[3], 1.5); // q=1, k=0: distance 1
        assert_eq!(t[6], bucket(2, 4, 4) as f32 * 0.0 + rel[bucket(2, 4, 4)]);
    }
}
