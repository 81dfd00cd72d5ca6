//! The decode kernels, written once in CubeCL (WGSL on wgpu, CUDA C++/PTX on CUDA): a few launches
//! per layer, every position read from a device step counter so that every step of a chunk issues
//! the same launches with the same arguments (the precondition for graph capture and replay).
//!
//! ```text
//!  gemv          y (+)= W · rms(x)   RMS folded in (recomputed by every cube), f32, bf16 or int8
//!                                    rows; epilogues: store, add (residual), GeGLU (gate ⊙ linear)
//!  attend_self   one query per (row, head) over the cached positions 0..=pos, + bias row, and the
//!                new key/value written into the cache at pos
//!  attend_cross  one query per (row, head) over the encoder's keys/values
//!  cross_kv      the cross-attention keys/values of one layer from the encoder output (a tiled
//!                GEMM, once per chunk)
//!  embed_mean    x[b] = mean of E[ids[b, ..n]] (E[BOS], teacher-forced inputs)
//!  sample        CFG, top-k, temperature and the draw with the host's uniform; writes the token,
//!                the next step's input (E[id], or at the frame's last level the temporal input)
//!                and advances the counter
//! ```
//!
//! Weights are `u32` words: an f32's bits, two bf16 (element `2j` in the low half of word `j`,
//! widened exactly with `<< 16`) or four int8 (element `4j + k` in byte `k`, times its row's
//! scale after the sum, as the host kernels do). Activations, accumulators and the sampler run in f32.

// The `#[cube]` expansion refers to `cubecl::…`.
use burn::cubecl;
use burn::cubecl::prelude::*;

/// Threads of the reduction kernels (`gemv` uses `LANES × ROWS`; the tree reductions assume 256).
pub const THREADS: u32 = 256;
/// `gemv`: the most lanes per output row (the launcher picks fewer for narrow rows; lanes × rows
/// per cube = [`THREADS`]).
pub const LANES: u32 = 32;
/// `cross_kv`: the GEMM tile edge.
pub const TILE: u32 = 16;

/// `gemv` weight formats: a u32 word holds one f32, two bf16 or four int8 (row-scaled).
pub const F32: u32 = 0;
pub const BF16: u32 = 1;
pub const INT8: u32 = 2;

/// `gemv` epilogues.
pub const STORE: u32 = 0;
pub const ADD: u32 = 1;
pub const GEGLU: u32 = 2;
/// `gelu_tanh(W·x + b)` (an un-gated FFN's first product).
pub const GELU: u32 = 3;

/// [`tree_reduce`] operators.
pub const SUM: u32 = 0;
pub const MAX: u32 = 1;
pub const MIN: u32 = 2;

/// Reduces `red[..threads]` (a power of two up to 256) into `red[0]` with `op` (`SUM`, `MAX` or
/// `MIN`). Every thread of the cube calls it after writing its `red[tid]`; it begins and ends
/// with a barrier.
#[cube]
pub fn tree_reduce<T: Numeric>(red: &mut Shared<[T]>, tid: usize, threads: usize, #[comptime] op: u32) {
    sync_cube();
    let mut half = threads / 2;
    while half > 0 {
        if tid < half {
            let a = red[tid];
            let b = red[tid + half];
            if comptime![op == SUM] {
                red[tid] = a + b;
            } else if comptime![op == MAX] {
                red[tid] = select(b > a, b, a);
            } else {
                red[tid] = select(b < a, b, a);
            }
        }
        sync_cube();
        half /= 2;
    }
}

/// Reduces the per-thread pairs `(red_v[tid], red_i[tid])` (a power of two of them, up to 256)
/// into `red_v[0]`, `red_i[0]`: the largest value, the lowest index among equal ones. Every thread
/// of the cube calls it after writing its pair; it begins and ends with a barrier.
#[cube]
pub fn argmax_reduce(red_v: &mut Shared<[f32]>, red_i: &mut Shared<[u32]>, tid: usize, threads: usize) {
    sync_cube();
    let mut half = threads / 2;
    while half > 0 {
        if tid < half {
            let v = red_v[tid + half];
            let o = red_i[tid + half];
            if v > red_v[tid] || (v == red_v[tid] && o < red_i[tid]) {
                red_v[tid] = v;
                red_i[tid] = o;
            }
        }
        sync_cube();
        half /= 2;
    }
}

/// Element `k` of a weight word, widened exactly: the f32 itself, bf16 half `k` (`<< 16`), or
/// int8 byte `k` (shifted to the top and back, sign-extended; the row scale comes after the sum).
#[cube]
fn unpack(word: u32, k: u32, #[comptime] format: u32) -> f32 {
    let mut v = f32::reinterpret(word);
    if comptime![format == BF16] {
        v = f32::reinterpret((word << (16u32 - 16u32 * k)) & 0xFFFF_0000u32);
    } else if comptime![format == INT8] {
        v = f32::cast_from(i32::reinterpret(word << (24u32 - 8u32 * k)) >> 24i32);
    }
    v
}

/// `gelu_tanh(g) · l`, the host's formula (`kernels::host::vmath::gelu_mul`).
#[cube]
pub fn gelu_mul(g: f32, l: f32) -> f32 {
    let u = 0.797_884_6f32 * (g + 0.044_715f32 * g * g * g);
    g * l / (1.0f32 + f32::exp(-2.0f32 * u))
}

/// `out[at(b, o)] (+)= Σ_i W[row(o), i] · x̂[b, i] (+ bias[row(o)])` for `o < n_out`, with
/// `x̂ = rms(x) ⊙ norm` when `rms`, else `x`. `row(o) = row_base + level · level_rows + o` with
/// `level = counter % levels` (a level's logits rows; `levels = 1` for a plain product), and
/// `at(b, o) = out_at + level · out_level_stride + b · out_stride + o`. GeGLU reads rows `o` (gate)
/// and `o + n_out` (linear); GELU applies `gelu_tanh` after the bias.
/// Cubes: `ceil(n_out / rows)`, cube dim `(lanes, rows)` with `lanes · rows = 256`.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
pub fn gemv(
    x: &[f32],
    norm: &[f32],
    w: &[u32],
    scales: &[f32],
    bias: &[f32],
    out: &mut [f32],
    counter: &[u32],
    cols: u32,
    words: u32,
    n_out: u32,
    out_stride: u32,
    out_at: u32,
    out_level_stride: u32,
    eps: f32,
    row_base: u32,
    level_rows: u32,
    levels: u32,
    #[comptime] batch: usize,
    #[comptime] rms: bool,
    #[comptime] format: u32,
    #[comptime] mode: u32,
    #[comptime] has_bias: bool,
) {
    let tid = UNIT_POS as usize;
    let lane = UNIT_POS_X as usize;
    let lanes = CUBE_DIM_X as usize;
    let threads = (CUBE_DIM_X * CUBE_DIM_Y) as usize;
    let cols = cols as usize;
    let words = words as usize;
    let mut red = Shared::<[f32]>::new_slice(1024usize);
    let mut inv = Shared::<[f32]>::new_slice(2usize);

    if comptime![rms] {
        for b in 0..batch {
            let mut s = 0.0f32;
            let mut i = tid;
            while i < cols {
                let v = x[b * cols + i];
                s += v * v;
                i += threads;
            }
            red[b * 256 + tid] = s;
        }
        sync_cube();
        let mut half = threads / 2;
        while half > 0 {
            if tid < half {
                for b in 0..batch {
                    red[b * 256 + tid] += red[b * 256 + tid + half];
                }
            }
            sync_cube();
            half /= 2;
        }
        if tid == 0 {
            for b in 0..batch {
                inv[b] = 1.0f32 / f32::sqrt(red[b * 256] / (cols as f32) + eps);
            }
        }
        sync_cube();
    }

    let o = CUBE_POS_X as usize * CUBE_DIM_Y as usize + UNIT_POS_Y as usize;
    let live = o < n_out as usize;
    let level = counter[0] % levels;
    let first = (row_base + level * level_rows) as usize;
    let row_a = (first + o) * words;
    let row_b = (first + o + n_out as usize) * words;
    let mut a0 = 0.0f32;
    let mut a1 = 0.0f32;
    let mut l0 = 0.0f32;
    let mut l1 = 0.0f32;
    if live {
        let mut j = lane;
        while j < words {
            // Elements of word j: one (f32), two (bf16) or four (int8).
            let wa = w[row_a + j];
            let mut wb = 0u32;
            if comptime![mode == GEGLU] {
                wb = w[row_b + j];
            }
            // Word j holds elements `per · j + k` (`per` = 1, 2 or 4 by format).
            let per = comptime![if format == INT8 { 4usize } else if format == BF16 { 2usize } else { 1usize }];
            #[unroll]
            for k in 0..per {
                let i = per * j + k;
                if i < cols {
                    let ga = unpack(wa, k as u32, format);
                    let la = unpack(wb, k as u32, format);
                    let mut x0 = x[i];
                    if comptime![rms] {
                        x0 = x0 * inv[0] * norm[i];
                    }
                    a0 += ga * x0;
                    if comptime![mode == GEGLU] {
                        l0 += la * x0;
                    }
                    if comptime![batch == 2] {
                        let mut x1 = x[cols + i];
                        if comptime![rms] {
                            x1 = x1 * inv[1] * norm[i];
                        }
                        a1 += ga * x1;
                        if comptime![mode == GEGLU] {
                            l1 += la * x1;
                        }
                    }
                }
            }
            j += lanes;
        }
    }
    // Sum the lanes of each row: slots [acc][row][lane].
    let slot = UNIT_POS_Y as usize * lanes + lane;
    red[slot] = a0;
    red[threads + slot] = a1;
    red[2 * threads + slot] = l0;
    red[3 * threads + slot] = l1;
    sync_cube();
    let mut half = lanes / 2;
    while half > 0 {
        if lane < half {
            red[slot] += red[slot + half];
            red[threads + slot] += red[threads + slot + half];
            red[2 * threads + slot] += red[2 * threads + slot + half];
            red[3 * threads + slot] += red[3 * threads + slot + half];
        }
        sync_cube();
        half /= 2;
    }
    if live && lane == 0 {
        let stride = out_stride as usize;
        // Int8 rows carry a scale each (the gate's and the linear row's for GeGLU).
        let mut scale_a = 1.0f32;
        let mut scale_b = 1.0f32;
        if comptime![format == INT8] {
            scale_a = scales[first + o];
            if comptime![mode == GEGLU] {
                scale_b = scales[first + o + n_out as usize];
            }
        }
        let mut b_add = 0.0f32;
        if comptime![has_bias] {
            b_add = bias[first + o];
        }
        let base = (out_at + level * out_level_stride) as usize;
        for b in 0..batch {
            let mut acc = red[b * threads + slot] * scale_a;
            if comptime![has_bias] {
                acc += b_add;
            }
            let at = base + b * stride + o;
            if comptime![mode == GEGLU] {
                out[at] = gelu_mul(acc, red[(2 + b) * threads + slot] * scale_b);
            } else if comptime![mode == GELU] {
                out[at] = gelu_mul(acc, 1.0f32);
            } else if comptime![mode == ADD] {
                out[at] += acc;
            } else {
                out[at] = acc;
            }
        }
    }
}

/// Self-attention of one position: cube `b · heads + head` attends with the query of `qkv[b]`
/// (`[q | k | v]`, each `heads · dh`) over the cache positions `0..pos` and the new key/value
/// (`pos = counter / levels` for the temporal stack, `counter % levels` for the depth stack),
/// adds the causal bias row `bias[head, pos, ..]`, writes the context into `ctx[b]` and the new
/// key/value into the cache `[b, heads, cap, dh]` at `pos`. Cube dim 64.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
pub fn attend_self(
    qkv: &[f32],
    keys: &mut [f32],
    values: &mut [f32],
    bias: &[f32],
    ctx: &mut [f32],
    counter: &[u32],
    levels: u32,
    #[comptime] depth: bool,
    #[comptime] cap: usize,
    #[comptime] dh: usize,
    #[comptime] heads: usize,
) {
    let tid = UNIT_POS as usize;
    let threads = CUBE_DIM_X as usize;
    let bh = CUBE_POS_X as usize;
    let b = bh / heads;
    let head = bh % heads;
    let inner = heads * dh;
    let mut pos = (counter[0] / levels) as usize;
    if comptime![depth] {
        pos = (counter[0] % levels) as usize;
    }
    let q_at = b * 3 * inner + head * dh;
    let k_at = q_at + inner;
    let v_at = q_at + 2 * inner;
    let base = bh * cap * dh;
    let mut scores = Shared::<[f32]>::new_slice(cap);

    let mut j = tid;
    while j <= pos {
        let mut s = 0.0f32;
        if j < pos {
            for t in 0..dh {
                s += qkv[q_at + t] * keys[base + j * dh + t];
            }
        } else {
            for t in 0..dh {
                s += qkv[q_at + t] * qkv[k_at + t];
            }
        }
        scores[j] = s + bias[(head * cap + pos) * cap + j];
        j += threads;
    }
    sync_cube();
    if tid == 0 {
        let mut m = scores[0];
        for j in 1..pos + 1 {
            m = select(scores[j] > m, scores[j], m);
        }
        let mut sum = 0.0f32;
        for j in 0..pos + 1 {
            let e = f32::exp(scores[j] - m);
            scores[j] = e;
            sum += e;
        }
        let r = 1.0f32 / sum;
        for j in 0..pos + 1 {
            scores[j] *= r;
        }
    }
    sync_cube();
    let mut t = tid;
    while t < dh {
        let mut acc = 0.0f32;
        for j in 0..pos {
            acc += scores[j] * values[base + j * dh + t];
        }
        let v_new = qkv[v_at + t];
        acc += scores[pos] * v_new;
        ctx[b * inner + head * dh + t] = acc;
        keys[base + pos * dh + t] = qkv[k_at + t];
        values[base + pos * dh + t] = v_new;
        t += threads;
    }
}

/// Cross-attention of one position: cube `b · heads + head`, query `q[b, head]`, keys and values
/// `[b, heads, s_len, dh]`, context into `ctx[b, head]`. Cube dim 256.
#[cube(launch)]
pub fn attend_cross(q: &[f32], keys: &[f32], values: &[f32], ctx: &mut [f32], #[comptime] s_len: usize, #[comptime] dh: usize, #[comptime] heads: usize) {
    let tid = UNIT_POS as usize;
    let threads = CUBE_DIM_X as usize;
    let bh = CUBE_POS_X as usize;
    let b = bh / heads;
    let head = bh % heads;
    let inner = heads * dh;
    let q_at = b * inner + head * dh;
    let base = bh * s_len * dh;
    let mut scores = Shared::<[f32]>::new_slice(s_len);
    let mut red = Shared::<[f32]>::new_slice(256usize);

    let mut m = f32::reinterpret(0xFF80_0000u32);
    let mut j = tid;
    while j < s_len {
        let mut s = 0.0f32;
        for t in 0..dh {
            s += q[q_at + t] * keys[base + j * dh + t];
        }
        scores[j] = s;
        m = select(s > m, s, m);
        j += threads;
    }
    red[tid] = m;
    tree_reduce(&mut red, tid, threads, MAX);
    let top = red[0];
    sync_cube();
    let mut sum = 0.0f32;
    let mut j = tid;
    while j < s_len {
        let e = f32::exp(scores[j] - top);
        scores[j] = e;
        sum += e;
        j += threads;
    }
    red[tid] = sum;
    tree_reduce(&mut red, tid, threads, SUM);
    let r = 1.0f32 / red[0];
    sync_cube();
    // Groups of dh threads split the positions; then the groups are summed in order.
    let groups = threads / dh;
    let g = tid / dh;
    let c = tid % dh;
    let mut acc = 0.0f32;
    if g < groups {
        let mut j = g;
        while j < s_len {
            acc += scores[j] * values[base + j * dh + c];
            j += groups;
        }
    }
    red[tid] = acc;
    sync_cube();
    if tid < dh {
        let mut total = 0.0f32;
        for k in 0..groups {
            total += red[k * dh + tid];
        }
        ctx[b * inner + head * dh + tid] = total * r;
    }
}

/// The cross-attention keys and values of one layer: `[B·s_len, d] · W[d, 2·inner]` (the kernel
/// layout, `[in, out]`), written as keys and values `[b, heads, s_len, dh]`. Tiled GEMM, cube dim
/// `(TILE, TILE)`, cubes `(ceil(2·inner / TILE), ceil(B·s_len / TILE))`.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
pub fn cross_kv(encoded: &[f32], w: &[f32], keys: &mut [f32], values: &mut [f32], m_rows: u32, d: u32, #[comptime] s_len: usize, #[comptime] dh: usize, #[comptime] heads: usize) {
    let tile = 16usize;
    let tx = UNIT_POS_X as usize;
    let ty = UNIT_POS_Y as usize;
    let n = CUBE_POS_X as usize * tile + tx;
    let m = CUBE_POS_Y as usize * tile + ty;
    let inner = heads * dh;
    let outs = 2 * inner;
    let d = d as usize;
    let m_rows = m_rows as usize;
    let mut a_tile = Shared::<[f32]>::new_slice(256usize);
    let mut w_tile = Shared::<[f32]>::new_slice(256usize);
    let mut acc = 0.0f32;
    let mut k0 = 0usize;
    while k0 < d {
        // a_tile[ty][tx] = A[m, k0 + tx]; w_tile[ty][tx] = W[k0 + ty, n].
        let am = CUBE_POS_Y as usize * tile + ty;
        let mut av = 0.0f32;
        if am < m_rows && k0 + tx < d {
            av = encoded[am * d + k0 + tx];
        }
        a_tile[ty * tile + tx] = av;
        let mut wv = 0.0f32;
        if k0 + ty < d && n < outs {
            wv = w[(k0 + ty) * outs + n];
        }
        w_tile[ty * tile + tx] = wv;
        sync_cube();
        for k in 0..16usize {
            acc += a_tile[ty * tile + k] * w_tile[k * tile + tx];
        }
        sync_cube();
        k0 += tile;
    }
    if m < m_rows && n < outs {
        let b = m / s_len;
        let p = m % s_len;
        let col = n % inner;
        let head = col / dh;
        let c = col % dh;
        let at = ((b * heads + head) * s_len + p) * dh + c;
        if n < inner {
            keys[at] = acc;
        } else {
            values[at] = acc;
        }
    }
}

/// `x[b] = (Σ_j E[ids[ids_at + b·n + j]] · scale) / n` for every row `b` (cube `b`, cube dim
/// 256): `E[BOS]` for frame 0, a teacher-forced depth input (`n = 1`), the temporal input from
/// given ids (MRT2: `scale = √d`, multiplied before the sum as the host does).
#[cube(launch)]
pub fn embed_mean(ids: &[u32], table: &[f32], x: &mut [f32], n: u32, d: u32, ids_at: u32, scale: f32) {
    let b = CUBE_POS_X as usize;
    let n = n as usize;
    let d = d as usize;
    let ids_at = ids_at as usize;
    let mut i = UNIT_POS as usize;
    while i < d {
        let mut acc = 0.0f32;
        for j in 0..n {
            acc += table[ids[ids_at + b * n + j] as usize * d + i] * scale;
        }
        x[b * d + i] = acc / (n as f32);
        i += CUBE_DIM_X as usize;
    }
}

/// A float's bits mapped so that unsigned order is `f32::total_cmp` order.
#[cube]
pub fn order_key(v: f32) -> u32 {
    let bits = u32::reinterpret(v);
    let mut key = bits | 0x8000_0000u32;
    if bits >= 0x8000_0000u32 {
        key = !bits;
    }
    key
}

/// The guided logit of candidate `i`: `(1 + w)·cond − w·uncond`, or `cond` with one row.
#[cube]
pub fn guided_at(logits: &[f32], i: usize, n: usize, w: f32, #[comptime] batch: usize) -> f32 {
    let c = logits[i];
    let mut g = c;
    if comptime![batch == 2] {
        g = (1.0f32 + w) * c - w * logits[n + i];
    }
    g
}

/// Candidate `i` of a sampler: the guided logit (`capped == false`, see [`guided_at`]) or the
/// soft-capped logit `cap · tanh(values[at + i] / cap)`.
#[cube]
pub fn candidate(values: &[f32], at: usize, i: usize, n: usize, w: f32, cap: f32, #[comptime] batch: usize, #[comptime] capped: bool) -> f32 {
    let mut v = values[at + i];
    if comptime![capped] {
        v = f32::tanh(v / cap) * cap;
    } else {
        v = guided_at(values, i, n, w, batch);
    }
    v
}

/// The `k`-th largest of the `n` candidates (`1 ≤ k < n`) by radix select over their total-order
/// keys, 4 bits a round from the top (8 rounds): among the keys equal to the digits decided so
/// far, each round counts the next digit's 16 values (per thread, then 16 shared atomic adds per
/// thread) and keeps the digit holding the `need`-th largest. Leaves that key in `pick[0]` and
/// in `pick[1]` how many of the keys equal to it are within the k largest (k − #(key > it)).
/// Every thread of the cube calls it.
#[cube]
#[allow(clippy::too_many_arguments)]
pub fn kth_largest(
    values: &[f32],
    at: usize,
    n: usize,
    w: f32,
    cap: f32,
    k: u32,
    hist: &Shared<[Atomic<u32>]>,
    pick: &mut Shared<[u32]>,
    #[comptime] batch: usize,
    #[comptime] capped: bool,
) {
    let tid = UNIT_POS as usize;
    let threads = CUBE_DIM_X as usize;
    let mut thr = 0u32;
    let mut need = k;
    let mut mask = 0u32;
    let mut round = 0u32;
    while round < 8 {
        let shift = 28 - 4 * round;
        if tid < 16 {
            hist[tid].store(0u32);
        }
        sync_cube();
        let mut count = Array::<u32>::new(16usize);
        for b in 0..16usize {
            count[b] = 0u32;
        }
        let mut i = tid;
        while i < n {
            let key = order_key(candidate(values, at, i, n, w, cap, batch, capped));
            if (key & mask) == thr {
                let digit = ((key >> shift) & 15u32) as usize;
                count[digit] += 1u32;
            }
            i += threads;
        }
        for b in 0..16usize {
            if count[b] > 0u32 {
                hist[b].fetch_add(count[b]);
            }
        }
        sync_cube();
        if tid == 0 {
            let mut digit = 0u32;
            let mut above = 0u32;
            let mut found = false;
            for s in 0..16u32 {
                let b = 15u32 - s;
                if !found {
                    let c = hist[b as usize].load();
                    if above + c >= need {
                        digit = b;
                        found = true;
                    } else {
                        above += c;
                    }
                }
            }
            pick[0] = thr | (digit << shift);
            pick[1] = need - above;
        }
        sync_cube();
        thr = pick[0];
        need = pick[1];
        mask |= 15u32 << shift;
        sync_cube();
        round += 1;
    }
}

/// One token per launch, single cube of 256 threads, exactly the host sampler's rule
/// (`v1::lm::sampling::Sampler::sample`): guided logits of the step's candidates
/// (`logits: [batch, n]`, candidate `i` is id `row_base + level · level_rows + i`), greedy = first
/// index of the maximum; else the k largest (ties to the lower id, `f32::total_cmp` order; `top_k`
/// 0 or ≥ n keeps all), `exp((g − top) · inv_t)` summed in id order and the first id whose running
/// sum exceeds `u · total`, with `u = uniforms[step]` drawn on the host. Writes `tokens[step]`,
/// the guided logits (`guided[..n]`, for observers), the next input `x[b]` for every row (`E[id]`,
/// or at the frame's last level the mean of the frame's embeddings), the first non-finite logit
/// into `tokens[0..2]` (`[step + 1, id]`, once; the tokens follow), and advances the counter.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
pub fn sample(
    logits: &[f32],
    uniforms: &[f32],
    table: &[f32],
    tokens: &mut [u32],
    x: &mut [f32],
    guided: &mut [f32],
    counter: &mut [u32],
    n: u32,
    d: u32,
    levels: u32,
    row_base: u32,
    level_rows: u32,
    top_k: u32,
    inv_t: f32,
    w: f32,
    greedy: u32,
    #[comptime] batch: usize,
) {
    let tid = UNIT_POS as usize;
    let threads = CUBE_DIM_X as usize;
    let n = n as usize;
    let d = d as usize;
    let mut red_f = Shared::<[f32]>::new_slice(256usize);
    let mut red_u = Shared::<[u32]>::new_slice(256usize);
    let mut red_i = Shared::<[u32]>::new_slice(256usize);
    let mut pick_s = Shared::<[u32]>::new_slice(2usize);
    let hist = Shared::<[Atomic<u32>]>::new_slice(16usize);
    let mut tgt = Shared::<[f32]>::new_slice(1usize);

    let step = counter[0];
    let level = step % levels;
    let start = row_base + level * level_rows;

    // Guided logits, the first non-finite one, and the maximum (first index on ties) in one pass.
    let mut bad = n as u32;
    let mut best_v = f32::reinterpret(0xFF80_0000u32); // −∞ (WGSL has no literal for it)
    let mut best_i = 0u32;
    let mut i = tid;
    while i < n {
        let g = guided_at(logits, i, n, w, batch);
        guided[i] = g;
        if (g.is_nan() || g.is_inf()) && (i as u32) < bad {
            bad = i as u32;
        }
        if g > best_v {
            best_v = g;
            best_i = i as u32;
        }
        i += threads;
    }
    red_u[tid] = bad;
    red_f[tid] = best_v;
    red_i[tid] = best_i;
    tree_reduce(&mut red_u, tid, threads, MIN);
    argmax_reduce(&mut red_f, &mut red_i, tid, threads);
    let first_bad = red_u[0];
    let top = red_f[0];
    let argmax = red_i[0];
    sync_cube();
    if tid == 0 && first_bad < n as u32 && tokens[0] == 0 {
        tokens[0] = step + 1;
        tokens[1] = start + first_bad;
    }

    if greedy == 1u32 {
        if tid == 0 {
            pick_s[0] = argmax;
        }
    } else {
        // The k-th largest key (`thr`) and how many of the keys equal to it are kept (`need`,
        // the lowest ids first).
        let all = top_k == 0 || top_k as usize >= n;
        let mut thr = 0u32;
        let mut need = top_k;
        if !all {
            kth_largest(logits, 0, n, w, 1.0f32, top_k, &hist, &mut pick_s, batch, false);
            thr = pick_s[0];
            need = pick_s[1];
        }
        // Contiguous blocks of ids per thread, so running sums follow the id order.
        let chunk = n.div_ceil(threads);
        let lo = select(tid * chunk < n, tid * chunk, n);
        let hi = select(lo + chunk < n, lo + chunk, n);
        let mut ties = 0u32;
        if !all {
            for i in lo..hi {
                if order_key(guided_at(logits, i, n, w, batch)) == thr {
                    ties += 1;
                }
            }
        }
        red_u[tid] = ties;
        sync_cube();
        if tid == 0 {
            let mut run = 0u32;
            for t in 0..threads {
                let c = red_u[t];
                red_u[t] = run;
                run += c;
            }
        }
        sync_cube();
        let mut tie_rank = red_u[tid];
        let mut sum = 0.0f32;
        let mut last = 0u32;
        let mut any = 0u32;
        for i in lo..hi {
            let g = guided_at(logits, i, n, w, batch);
            let key = order_key(g);
            let mut keep = all || key > thr;
            if !all && key == thr {
                keep = tie_rank < need;
                tie_rank += 1;
            }
            if keep {
                sum += f32::exp((g - top) * inv_t);
                last = i as u32;
                any = 1;
            }
        }
        red_f[tid] = sum;
        red_i[tid] = select(any == 1, last, 0u32);
        sync_cube();
        if tid == 0 {
            // Exclusive running sums in id order; the total; the last kept id.
            let mut run = 0.0f32;
            let mut last_kept = 0u32;
            for t in 0..threads {
                let c = red_f[t];
                red_f[t] = run;
                run += c;
                last_kept = select(red_i[t] > last_kept, red_i[t], last_kept);
            }
            red_i[0] = last_kept;
            tgt[0] = run * uniforms[step as usize];
        }
        sync_cube();
        let target = tgt[0];
        let last_kept = red_i[0];
        // Each thread looks for the first crossing in its block; the lowest id found wins.
        let mut found = n as u32;
        let mut run = red_f[tid];
        let mut tie_rank = red_u[tid];
        for i in lo..hi {
            let g = guided_at(logits, i, n, w, batch);
            let key = order_key(g);
            let mut keep = all || key > thr;
            if !all && key == thr {
                keep = tie_rank < need;
                tie_rank += 1;
            }
            if keep && found == n as u32 {
                run += f32::exp((g - top) * inv_t);
                if run > target {
                    found = i as u32;
                }
            }
        }
        sync_cube();
        red_u[tid] = found;
        tree_reduce(&mut red_u, tid, threads, MIN);
        if tid == 0 {
            let mut p = red_u[0];
            if p == n as u32 {
                p = last_kept;
            }
            pick_s[0] = p;
        }
    }
    sync_cube();
    let id = start + pick_s[0];
    if tid == 0 {
        tokens[2 + step as usize] = id;
    }
    // The next step's input: E[id], or after the frame's last level the mean of its embeddings.
    let frame_start = (step - level) as usize;
    let last_level = level + 1 == levels;
    let mut i = tid;
    while i < d {
        let mut v = table[id as usize * d + i];
        if last_level {
            let mut acc = 0.0f32;
            for j in 0..(levels - 1) as usize {
                acc += table[tokens[2 + frame_start + j] as usize * d + i];
            }
            acc += v;
            v = acc / (levels as f32);
        }
        for b in 0..batch {
            x[b * d + i] = v;
        }
        i += threads;
    }
    sync_cube();
    if tid == 0 {
        counter[0] = step + 1;
    }
}
