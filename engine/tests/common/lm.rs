//! The LM's stepping API driven with teacher-forced targets (the path tests compare).

use mrt::v1::lm::{Depthformer, LmConfig};

/// A small v1 LM at the real head size (64) and the full vocabulary, `chunk_frames` frames.
pub fn small_config(chunk_frames: usize) -> LmConfig {
    LmConfig {
        d_model: 128,
        num_heads: 2,
        head_dim: 64,
        mlp_dim: 96,
        depth_mlp_dim: 80,
        encoder_layers: 1,
        temporal_layers: 2,
        depth_layers: 2,
        chunk_frames,
        ..LmConfig::base()
    }
}

/// Encoder ids `[2, encoder_len]`: codec-range ids, the same in both CFG rows.
pub fn encoder_rows(c: &LmConfig) -> Vec<i32> {
    let s = c.encoder_len();
    (0..2 * s).map(|i| (2 + (i * 131) % 4096) as i32).collect()
}

/// Step logits `[steps, 2, rows]` of `frames` frames from `encoder_ids` (`[2, encoder_len]`), with
/// `targets` (`[2, n]`, one row per CFG row) as every step's previous token.
pub fn stepped_logits(m: &Depthformer, encoder_ids: &[i32], targets: &[i32], frames: usize) -> Vec<f32> {
    let c = &m.config;
    let (q, s) = (c.num_levels, c.encoder_len());
    let n = targets.len() / 2;
    let mut state = m.begin_chunk(m.encode(m.ids_tensor(encoder_ids, 2, s))).unwrap();
    let (mut out, mut logits) = (Vec::new(), Vec::new());
    for t in 0..frames {
        let prev: Vec<i32> = (0..2).flat_map(|r| targets[r * n + t.saturating_sub(1) * q..r * n + t.max(1) * q].to_vec()).collect();
        m.step_frame(&mut state, (t > 0).then_some(prev.as_slice())).unwrap();
        for l in 0..q {
            let step = t * q + l;
            let prev = (l > 0).then(|| [targets[step - 1], targets[n + step - 1]]);
            m.step_level(&mut state, l, prev.as_ref().map(|p| p.as_slice()), &mut logits).unwrap();
            out.extend_from_slice(&logits);
        }
    }
    out
}

/// Teacher-forcing targets `[2, n]`, different per row and step, some outside their level's
/// range as the reference allows: `2 + (i · stride) mod modulo`.
pub fn varied_targets(n: usize, stride: usize, modulo: usize) -> Vec<i32> {
    (0..2 * n).map(|i| (2 + (i * stride) % modulo) as i32).collect()
}

/// Asserts that `want` is not degenerate (some |logit| > 0.1) and that `got` matches it within
/// 1e-4 (absolute and relative): the same model on another path, f32 sums in another order.
pub fn assert_logits_close(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    let scale = want.iter().fold(0f32, |a, v| a.max(v.abs()));
    assert!(scale > 0.1, "{what}: logits are not degenerate (scale {scale})");
    let (diff, ok) = mrt::conformance::compare(got, want, 1e-4, 1e-4);
    assert!(ok, "{what}: max |diff| {diff} (scale {scale})");
}
