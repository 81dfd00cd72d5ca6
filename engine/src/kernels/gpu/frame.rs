//! Kernels of a frame-by-frame decoder (MRT2), beside [`super::decode`]'s products, embeddings and
//! radix select, which they share. One batch row (no CFG); every position, ring slot and level is
//! read from a small device buffer of counters (`pos`) that the host writes once per frame and
//! the sampler advances, so every frame issues the same launches (one recorded graph).
//!
//! ```text
//!  attend_window  one query per head over a window of cached keys/values (a ring of `cap`
//!                 slots, or a depth cache of positions 0..=level) plus learned sinks; the new
//!                 key/value read from the projection row and written into its slot
//!  norm_row       x += rms(y) ⊙ g (a post-norm residual), LayerNorm with bias, or a copy
//!  sample_gumbel  soft cap, top-k mask (ties kept), + Gumbel noise · T, first argmax; writes the
//!                 token (or a forced one), the next level's input E[id]·scale, advances the level
//! ```

use burn::cubecl;
use burn::cubecl::prelude::*;

use super::decode::{argmax_reduce, candidate, kth_largest, tree_reduce, SUM};

/// `norm_row` modes.
pub const RMS_ADD: u32 = 0;
pub const LAYER: u32 = 1;
pub const COPY: u32 = 2;

/// Attention of one query per head (cube `head`, one batch row) over `n` cached entries and
/// `sinks` learned sinks. `src` is the projection row `[q | k | v]` (`heads · dh` each); the
/// new key/value go to slot `pos[slot_at]`; `n = pos[slot_at + 1]` entries are attended (a
/// ring: the window's fill count after this frame's push) or, with `depth`, `n = slot + 1`
/// (causal over the levels). Real keys see the query scaled per dimension (`qscale`); the sink
/// logits use the unscaled query. Caches are `[cap, heads · dh]` (the host rings' layout).
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
pub fn attend_window(
    src: &[f32],
    keys: &mut [f32],
    values: &mut [f32],
    qscale: &[f32],
    sink_k: &[f32],
    sink_v: &[f32],
    ctx: &mut [f32],
    pos: &[u32],
    slot_at: u32,
    #[comptime] cap: usize,
    #[comptime] dh: usize,
    #[comptime] heads: usize,
    #[comptime] sinks: usize,
    #[comptime] depth: bool,
) {
    let tid = UNIT_POS as usize;
    let threads = CUBE_DIM_X as usize;
    let head = CUBE_POS_X as usize;
    let inner = heads * dh;
    let slot = pos[slot_at as usize] as usize;
    let mut n = slot + 1;
    if comptime![!depth] {
        n = pos[slot_at as usize + 1] as usize;
    }
    let hd = head * dh;
    let (q_at, k_at, v_at) = (hd, inner + hd, 2 * inner + hd);
    let mut scores = Shared::<[f32]>::new_slice(comptime![cap + sinks + 1]);

    let mut j = tid;
    while j < sinks + n {
        let mut s = 0.0f32;
        if j < sinks {
            for t in 0..dh {
                s += src[q_at + t] * sink_k[j * inner + hd + t];
            }
        } else {
            let e = j - sinks;
            if e == slot {
                for t in 0..dh {
                    s += src[q_at + t] * qscale[t] * src[k_at + t];
                }
            } else {
                for t in 0..dh {
                    s += src[q_at + t] * qscale[t] * keys[e * inner + hd + t];
                }
            }
        }
        scores[j] = s;
        j += threads;
    }
    sync_cube();
    if tid == 0 {
        let total = sinks + n;
        let mut m = scores[0];
        for j in 1..total {
            m = select(scores[j] > m, scores[j], m);
        }
        let mut sum = 0.0f32;
        for j in 0..total {
            let e = f32::exp(scores[j] - m);
            scores[j] = e;
            sum += e;
        }
        let r = 1.0f32 / sum;
        for j in 0..total {
            scores[j] *= r;
        }
    }
    sync_cube();
    let mut t = tid;
    while t < dh {
        let mut acc = 0.0f32;
        for i in 0..sinks {
            acc += scores[i] * sink_v[i * inner + hd + t];
        }
        for e in 0..n {
            let mut v = values[e * inner + hd + t];
            if e == slot {
                v = src[v_at + t];
            }
            acc += scores[sinks + e] * v;
        }
        ctx[hd + t] = acc;
        keys[slot * inner + hd + t] = src[k_at + t];
        values[slot * inner + hd + t] = src[v_at + t];
        t += threads;
    }
}

/// One row of `d` values, one cube of 256 threads: `RMS_ADD` `out += y · rsqrt(mean(y²) + eps) ⊙ g`
/// (a post-norm on the residual), `LAYER` `out = (y − mean) · rsqrt(var + eps) ⊙ g + b`, `COPY`
/// `out = y`.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
pub fn norm_row(y: &[f32], g: &[f32], b: &[f32], out: &mut [f32], d: u32, eps: f32, #[comptime] mode: u32) {
    let tid = UNIT_POS as usize;
    let threads = CUBE_DIM_X as usize;
    let d = d as usize;
    let mut red = Shared::<[f32]>::new_slice(256usize);
    let mut mean = 0.0f32;
    let mut inv = 1.0f32;
    if comptime![mode == LAYER] {
        let mut s = 0.0f32;
        let mut i = tid;
        while i < d {
            s += y[i];
            i += threads;
        }
        red[tid] = s;
        tree_reduce(&mut red, tid, threads, SUM);
        mean = red[0] / (d as f32);
        sync_cube();
    }
    if comptime![mode != COPY] {
        let mut s = 0.0f32;
        let mut i = tid;
        while i < d {
            let v = y[i] - mean;
            s += v * v;
            i += threads;
        }
        red[tid] = s;
        tree_reduce(&mut red, tid, threads, SUM);
        inv = 1.0f32 / f32::sqrt(red[0] / (d as f32) + eps);
    }
    let mut i = tid;
    while i < d {
        if comptime![mode == RMS_ADD] {
            out[i] += y[i] * inv * g[i];
        } else if comptime![mode == LAYER] {
            out[i] = (y[i] - mean) * inv * g[i] + b[i];
        } else {
            out[i] = y[i];
        }
        i += threads;
    }
}

/// One level's token, one cube of 256 threads, exactly the host's rule
/// (`sampling::mrt2::sample_window`): the level `pos[0]`'s `n` raw logits (`logits[level · n ..]`)
/// soft-capped, the k-th largest (`top_k = pos[topk_at]`, at least 1; `top_k ≥ n` keeps all) with
/// ties kept, scores
/// `(kept ? capped : neg) + noise[noise_at + level · n + i] · T` (`T = noise[temperature_at]`:
/// both knobs are data, so a recorded frame serves every setting), the first strict
/// maximum (`sampling::topk::argmax`).
/// The id is `row_base + level · n + j`, or `pos[forced_at + 1 + level]` when
/// `pos[forced_at] ≠ 0`. Writes `tokens[level]`, the next level's input `x = E[id] · scale`
/// (`d` wide; none after the last level) and `pos[0] = level + 1`.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
pub fn sample_gumbel(
    logits: &[f32],
    noise: &[f32],
    table: &[f32],
    tokens: &mut [u32],
    x: &mut [f32],
    pos: &mut [u32],
    n: u32,
    d: u32,
    noise_at: u32,
    levels: u32,
    row_base: u32,
    topk_at: u32,
    temperature_at: u32,
    cap: f32,
    neg: f32,
    scale: f32,
    forced_at: u32,
) {
    let tid = UNIT_POS as usize;
    let threads = CUBE_DIM_X as usize;
    let n = n as usize;
    let d = d as usize;
    let mut red_f = Shared::<[f32]>::new_slice(256usize);
    let mut red_i = Shared::<[u32]>::new_slice(256usize);
    let mut pick = Shared::<[u32]>::new_slice(2usize);
    let hist = Shared::<[Atomic<u32>]>::new_slice(16usize);

    let level = pos[0];
    let top_k = pos[topk_at as usize];
    let temperature = noise[temperature_at as usize];
    let at = level as usize * n;
    let all = top_k as usize >= n;
    let mut kth = f32::reinterpret(0xFF80_0000u32); // −∞: keeps every finite value
    if !all {
        kth_largest(logits, at, n, 0.0f32, cap, top_k, &hist, &mut pick, 1usize, true);
        // Back from the order key to the value (`order_key`'s inverse).
        let key = pick[0];
        let mut bits = !key;
        if key >= 0x8000_0000u32 {
            bits = key & 0x7FFF_FFFFu32;
        }
        kth = f32::reinterpret(bits);
    }
    let mut best_v = f32::reinterpret(0xFF80_0000u32);
    let mut best_i = n as u32;
    let mut i = tid;
    while i < n {
        let c = candidate(logits, at, i, n, 0.0f32, cap, 1usize, true);
        let mut s = neg;
        if c >= kth {
            s = c;
        }
        s += noise[noise_at as usize + at + i] * temperature;
        if s > best_v {
            best_v = s;
            best_i = i as u32;
        }
        i += threads;
    }
    red_f[tid] = best_v;
    red_i[tid] = best_i;
    argmax_reduce(&mut red_f, &mut red_i, tid, threads);
    // The host's argmax: the first strict maximum, id 0 when no score beats −∞.
    let mut j = red_i[0];
    if j == n as u32 {
        j = 0u32;
    }
    let mut id = row_base + level * n as u32 + j;
    if pos[forced_at as usize] != 0u32 {
        id = pos[forced_at as usize + 1 + level as usize];
    }
    if tid == 0 {
        tokens[level as usize] = id;
    }
    if level + 1 < levels {
        let mut i = tid;
        while i < d {
            x[i] = table[id as usize * d + i] * scale;
            i += threads;
        }
    }
    sync_cube();
    if tid == 0 {
        pos[0] = level + 1;
    }
}
