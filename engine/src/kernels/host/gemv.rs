//! Host kernels for the CPU decode path: a streaming matrix–vector product over f32 or bf16
//! weights, and the small vector ops of one decode step.
//!
//! A decode step multiplies one or two rows (the CFG pair) by every weight matrix of a stack, so
//! on a CPU it is bound by how fast the weights stream from memory, not by arithmetic. The
//! product here reads each weight exactly once per call: weights are stored transposed
//! (`[out, in]`, one output per row), each output is a dot product over a contiguous row, rows are
//! split over rayon's threads, and both batch rows are served from the same load. The inner loop
//! is written for the compiler's vectoriser (16 lanes, independent accumulators) and compiled
//! three times: AVX-512, AVX2+FMA and portable, chosen once at run time.

use std::ops::Range;

use rayon::prelude::*;

use super::super::WeightPrecision;

/// One stored weight: converts to f32 in registers.
trait Elem: Copy + Send + Sync {
    fn f32(self) -> f32;
}

impl Elem for f32 {
    #[inline(always)]
    fn f32(self) -> f32 {
        self
    }
}

/// bfloat16 bits: the top half of an f32.
#[derive(Clone, Copy, Debug, PartialEq)]
#[repr(transparent)]
pub struct Bf16(pub u16);

impl Bf16 {
    /// Round to nearest, ties to even (NaN stays NaN).
    pub fn from_f32(v: f32) -> Self {
        let bits = v.to_bits();
        if v.is_nan() {
            return Self(((bits >> 16) | 0x40) as u16);
        }
        let round = 0x7fff + ((bits >> 16) & 1);
        Self((bits.wrapping_add(round) >> 16) as u16)
    }
}

impl Elem for Bf16 {
    #[inline(always)]
    fn f32(self) -> f32 {
        f32::from_bits((self.0 as u32) << 16)
    }
}

impl Elem for i8 {
    #[inline(always)]
    fn f32(self) -> f32 {
        f32::from(self)
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Store {
    F32(Vec<f32>),
    Bf16(Vec<Bf16>),
    /// Row `r` is `q[r·cols..] · scale[r]`.
    Int8 { q: Vec<i8>, scale: Vec<f32> },
}

impl Store {
    fn new(rows: usize, cols: usize, w: Vec<f32>, precision: WeightPrecision) -> Self {
        match precision {
            WeightPrecision::F32 => Store::F32(w),
            WeightPrecision::Bf16 => Store::Bf16(w.iter().map(|&v| Bf16::from_f32(v)).collect()),
            WeightPrecision::Int8 => {
                let mut q = vec![0i8; rows * cols];
                let mut scale = vec![0f32; rows];
                for ((row, qr), s) in w.chunks_exact(cols.max(1)).zip(q.chunks_exact_mut(cols.max(1))).zip(&mut scale) {
                    let max = row.iter().fold(0f32, |m, v| m.max(v.abs()));
                    *s = if max > 0.0 { max / 127.0 } else { 1.0 };
                    for (o, &v) in qr.iter_mut().zip(row) {
                        *o = (v / *s).round().clamp(-127.0, 127.0) as i8;
                    }
                }
                Store::Int8 { q, scale }
            }
        }
    }
}

/// A linear map `y = x·W` stored transposed: `rows` outputs, each a contiguous row of `cols`
/// input weights.
#[derive(Clone, Debug, PartialEq)]
pub struct Matrix {
    rows: usize,
    cols: usize,
    store: Store,
}

/// Outputs per parallel task: at least this many rows of weights, so a task streams ≥ 48 KiB.
const MIN_TASK_ROWS: usize = 16;

impl Matrix {
    /// From t5x kernels `[in, out_k]` (row-major), concatenated along the output dimension (q|k|v,
    /// wi_0|wi_1 fused into one map).
    pub fn from_kernels(kernels: &[&[f32]], cols: usize, outs: &[usize], precision: WeightPrecision) -> Self {
        let rows: usize = outs.iter().sum();
        let mut t = vec![0f32; rows * cols];
        let mut row0 = 0;
        for (k, &out) in kernels.iter().zip(outs) {
            assert_eq!(k.len(), cols * out, "kernel size");
            transpose_into(k, cols, out, &mut t[row0 * cols..(row0 + out) * cols]);
            row0 += out;
        }
        Self { rows, cols, store: Store::new(rows, cols, t, precision) }
    }

    /// From weights already stored `[rows, cols]` (one row per output), in `precision`.
    pub fn from_rows(rows: usize, cols: usize, w: Vec<f32>, precision: WeightPrecision) -> Self {
        assert_eq!(w.len(), rows * cols, "matrix of {rows}×{cols} from {} values", w.len());
        Self { rows, cols, store: Store::new(rows, cols, w, precision) }
    }

    /// The same map in `precision` (f32 → bf16 rounds to nearest even, f32 → int8 per row;
    /// widening to f32 is exact).
    pub fn to_precision(&self, precision: WeightPrecision) -> Self {
        if self.precision() == precision {
            return self.clone();
        }
        Self::from_rows(self.rows, self.cols, self.to_rows(), precision)
    }

    /// Int8 storage: the bytes `[rows, cols]` and one scale per row (row `r` is
    /// `q[r·cols..] · scale[r]`); `None` for f32 and bf16.
    pub fn int8(&self) -> Option<(&[i8], &[f32])> {
        match &self.store {
            Store::Int8 { q, scale } => Some((q, scale)),
            _ => None,
        }
    }

    /// The weights `[rows, cols]` in f32 (bf16 and int8 × scale widened exactly).
    pub fn to_rows(&self) -> Vec<f32> {
        match &self.store {
            Store::F32(v) => v.clone(),
            Store::Bf16(v) => v.iter().map(|b| b.f32()).collect(),
            Store::Int8 { q, scale } => q.chunks_exact(self.cols.max(1)).zip(scale).flat_map(|(r, &s)| r.iter().map(move |&v| f32::from(v) * s)).collect(),
        }
    }

    /// Outputs.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Inputs.
    pub fn cols(&self) -> usize {
        self.cols
    }

    pub fn precision(&self) -> WeightPrecision {
        match self.store {
            Store::F32(_) => WeightPrecision::F32,
            Store::Bf16(_) => WeightPrecision::Bf16,
            Store::Int8 { .. } => WeightPrecision::Int8,
        }
    }

    /// Bytes one full product streams (int8: the row scales too).
    pub fn bytes(&self) -> usize {
        let scales = if self.precision() == WeightPrecision::Int8 { 4 * self.rows } else { 0 };
        self.rows * self.cols * self.precision().bytes() + scales
    }

    /// The map as a t5x kernel `[in, out]` in f32 (bf16 weights widened exactly).
    pub fn to_kernel(&self) -> Vec<f32> {
        let t = self.to_rows();
        let mut k = vec![0f32; t.len()];
        transpose_into(&t, self.rows, self.cols, &mut k);
        k
    }

    /// `y[b][j] = Σ_i x[b][i] · W[i, range.start + j]` for every batch row `b`: `x` is
    /// `[batch, cols]`, `y` is `[batch, range.len()]`. Each weight is read once per pair of rows.
    pub fn gemv(&self, x: &[f32], range: Range<usize>, y: &mut [f32]) {
        let (cols, n) = (self.cols, range.len());
        assert!(range.end <= self.rows && cols > 0, "gemv range {range:?} of {} rows", self.rows);
        let batch = x.len() / cols;
        assert!(x.len() == batch * cols && y.len() == batch * n, "gemv shapes: x {} y {} for {batch}×{cols}→{n}", x.len(), y.len());
        let threads = rayon::current_num_threads().max(1);
        let task = n.div_ceil(4 * threads).max(MIN_TASK_ROWS).next_multiple_of(2);
        // Rows are processed two at a time (one weight load, two dot products).
        let mut b = 0;
        while b < batch {
            let (x0, rest) = x[b * cols..].split_at(cols);
            let (y0, yrest) = y[b * n..].split_at_mut(n);
            if b + 1 < batch {
                let x1 = &rest[..cols];
                let y1 = &mut yrest[..n];
                y0.par_chunks_mut(task).zip(y1.par_chunks_mut(task)).enumerate().for_each(|(i, (o0, o1))| {
                    let j0 = range.start + i * task;
                    match &self.store {
                        Store::F32(w) => dispatch2(x0, x1, &w[j0 * cols..(j0 + o0.len()) * cols], cols, o0, o1),
                        Store::Bf16(w) => dispatch2(x0, x1, &w[j0 * cols..(j0 + o0.len()) * cols], cols, o0, o1),
                        Store::Int8 { q, scale } => {
                            dispatch2(x0, x1, &q[j0 * cols..(j0 + o0.len()) * cols], cols, o0, o1);
                            for ((a, b), &s) in o0.iter_mut().zip(o1.iter_mut()).zip(&scale[j0..]) {
                                *a *= s;
                                *b *= s;
                            }
                        }
                    }
                });
                b += 2;
            } else {
                y0.par_chunks_mut(task).enumerate().for_each(|(i, o0)| {
                    let j0 = range.start + i * task;
                    match &self.store {
                        Store::F32(w) => dispatch1(x0, &w[j0 * cols..(j0 + o0.len()) * cols], cols, o0),
                        Store::Bf16(w) => dispatch1(x0, &w[j0 * cols..(j0 + o0.len()) * cols], cols, o0),
                        Store::Int8 { q, scale } => {
                            dispatch1(x0, &q[j0 * cols..(j0 + o0.len()) * cols], cols, o0);
                            o0.iter_mut().zip(&scale[j0..]).for_each(|(a, &s)| *a *= s);
                        }
                    }
                });
                b += 1;
            }
        }
    }
}

/// `src: [r, c]` → `dst: [c, r]`, in cache-sized tiles.
pub fn transpose_into(src: &[f32], r: usize, c: usize, dst: &mut [f32]) {
    const T: usize = 64;
    for i0 in (0..r).step_by(T) {
        for j0 in (0..c).step_by(T) {
            for i in i0..(i0 + T).min(r) {
                for j in j0..(j0 + T).min(c) {
                    dst[j * r + i] = src[i * c + j];
                }
            }
        }
    }
}

const LANES: usize = 16;

#[inline(always)]
fn fmadd<const FMA: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FMA {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

#[inline(always)]
fn hsum(v: &[f32; LANES]) -> f32 {
    let mut h = [0f32; 8];
    for i in 0..8 {
        h[i] = v[i] + v[i + 8];
    }
    ((h[0] + h[4]) + (h[1] + h[5])) + ((h[2] + h[6]) + (h[3] + h[7]))
}

/// Dot products of `B` input rows with consecutive weight rows `w` (`out[0].len()` rows of
/// `cols`), two weight rows at a time.
#[inline(always)]
fn dots<E: Elem, const B: usize, const FMA: bool>(x: [&[f32]; B], w: &[E], cols: usize, out: [&mut [f32]; B]) {
    let n = out[0].len();
    let full = cols / LANES * LANES;
    let mut j = 0;
    while j + 2 <= n {
        let (wa, wb) = (&w[j * cols..(j + 1) * cols], &w[(j + 1) * cols..(j + 2) * cols]);
        let mut acc = [[[0f32; LANES]; 2]; B];
        let mut c = 0;
        while c < full {
            let a: &[E; LANES] = wa[c..c + LANES].try_into().expect("lanes");
            let bb: &[E; LANES] = wb[c..c + LANES].try_into().expect("lanes");
            for r in 0..B {
                let xv: &[f32; LANES] = x[r][c..c + LANES].try_into().expect("lanes");
                for l in 0..LANES {
                    acc[r][0][l] = fmadd::<FMA>(xv[l], a[l].f32(), acc[r][0][l]);
                    acc[r][1][l] = fmadd::<FMA>(xv[l], bb[l].f32(), acc[r][1][l]);
                }
            }
            c += LANES;
        }
        for r in 0..B {
            let (mut s0, mut s1) = (hsum(&acc[r][0]), hsum(&acc[r][1]));
            for i in full..cols {
                s0 = fmadd::<FMA>(x[r][i], wa[i].f32(), s0);
                s1 = fmadd::<FMA>(x[r][i], wb[i].f32(), s1);
            }
            out[r][j] = s0;
            out[r][j + 1] = s1;
        }
        j += 2;
    }
    if j < n {
        let wa = &w[j * cols..(j + 1) * cols];
        for r in 0..B {
            let mut acc = [0f32; LANES];
            let mut c = 0;
            while c < full {
                for l in 0..LANES {
                    acc[l] = fmadd::<FMA>(x[r][c + l], wa[c + l].f32(), acc[l]);
                }
                c += LANES;
            }
            let mut s = hsum(&acc);
            for i in full..cols {
                s = fmadd::<FMA>(x[r][i], wa[i].f32(), s);
            }
            out[r][j] = s;
        }
    }
}

/// AVX2 + FMA kernels with explicit intrinsics (the vectoriser did not keep the portable
/// version's accumulators in registers: it ran at a third of the memory bandwidth).
#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{Bf16, Elem};

    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn hsum8(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
        _mm_cvtss_f32(s)
    }

    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn load_i8(p: *const i8) -> __m256 {
        // SAFETY (caller): 8 readable values at p; int8 → i32 → f32 is exact.
        unsafe { _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(p as *const __m128i))) }
    }

    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn load_f32(p: *const f32) -> __m256 {
        // SAFETY (caller): 8 readable values at p.
        unsafe { _mm256_loadu_ps(p) }
    }

    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn load_bf16(p: *const Bf16) -> __m256 {
        // bf16 → f32 is a 16-bit shift: widen the 8 halves to 32 bits, shift them to the top.
        // SAFETY (caller): 8 readable values at p.
        unsafe { _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128(p as *const __m128i)), 16)) }
    }

    /// How far ahead of the loads the weight stream is prefetched. On the 2-core development VM
    /// (NOTES, "CPU performance") a base depth step's products went from 9.6 to 7.3 ms (f32) and
    /// from 7.9 to 3.9 ms (bf16) with 8 KiB; 1–4 KiB gave less, 16–32 KiB the same.
    const PREFETCH_BYTES: usize = 8192;

    macro_rules! kernel {
        ($dots:ident, $group:ident, $elem:ty, $load:ident) => {
            /// `J` consecutive weight rows against `B` input rows; writes `out[b][j..j + J]`.
            #[target_feature(enable = "avx2,fma")]
            #[inline]
            unsafe fn $group<const B: usize, const J: usize>(x: &[&[f32]; B], w: &[$elem], cols: usize, out: &mut [&mut [f32]; B], j: usize) {
                let full = cols / 16 * 16;
                let mut acc = [[[_mm256_setzero_ps(); 2]; J]; B];
                let base = w[j * cols..(j + J) * cols].as_ptr();
                let mut c = 0;
                while c < full {
                    // SAFETY: c + 16 ≤ full ≤ cols, and every row slice holds cols values.
                    unsafe {
                        let mut xv = [[_mm256_setzero_ps(); 2]; B];
                        for b in 0..B {
                            xv[b] = [_mm256_loadu_ps(x[b].as_ptr().add(c)), _mm256_loadu_ps(x[b].as_ptr().add(c + 8))];
                        }
                        for r in 0..J {
                            let p = base.add(r * cols + c);
                            // Ask for the line PREFETCH_BYTES ahead in this stream now: the
                            // hardware prefetcher alone keeps too few lines in flight.
                            _mm_prefetch::<_MM_HINT_T0>((p as *const i8).wrapping_add(PREFETCH_BYTES));
                            let (w0, w1) = ($load(p), $load(p.add(8)));
                            for b in 0..B {
                                acc[b][r][0] = _mm256_fmadd_ps(xv[b][0], w0, acc[b][r][0]);
                                acc[b][r][1] = _mm256_fmadd_ps(xv[b][1], w1, acc[b][r][1]);
                            }
                        }
                    }
                    c += 16;
                }
                for b in 0..B {
                    for r in 0..J {
                        let row = &w[(j + r) * cols..(j + r + 1) * cols];
                        // SAFETY: AVX2 is enabled on this function.
                        let mut s = unsafe { hsum8(_mm256_add_ps(acc[b][r][0], acc[b][r][1])) };
                        for i in full..cols {
                            s = x[b][i].mul_add(row[i].f32(), s);
                        }
                        out[b][j + r] = s;
                    }
                }
            }

            /// Dot products of `B` input rows with the weight rows `w` (`out[0].len()` rows of `cols`).
            #[target_feature(enable = "avx2,fma")]
            pub unsafe fn $dots<const B: usize>(x: [&[f32]; B], w: &[$elem], cols: usize, mut out: [&mut [f32]; B]) {
                let n = out[0].len();
                // Four weight rows per pass for one input row, two for two: 8 accumulators.
                let mut j = 0;
                // SAFETY: AVX2 and FMA are enabled on this function (the caller checked the CPU);
                // `$group` indexes rows j..j + J < n of `w` through checked slices.
                unsafe {
                    if B == 1 {
                        while j + 4 <= n {
                            $group::<B, 4>(&x, w, cols, &mut out, j);
                            j += 4;
                        }
                    } else {
                        while j + 2 <= n {
                            $group::<B, 2>(&x, w, cols, &mut out, j);
                            j += 2;
                        }
                    }
                    while j < n {
                        $group::<B, 1>(&x, w, cols, &mut out, j);
                        j += 1;
                    }
                }
            }
        };
    }

    /// Sum of `v` with eight independent vector accumulators (a read-bandwidth probe).
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn sum(v: &[f32]) -> f32 {
        let full = v.len() / 64 * 64;
        let mut acc = [_mm256_setzero_ps(); 8];
        let mut c = 0;
        while c < full {
            for (k, a) in acc.iter_mut().enumerate() {
                // SAFETY: c + 64 ≤ full ≤ v.len().
                *a = _mm256_add_ps(*a, unsafe { _mm256_loadu_ps(v.as_ptr().add(c + 8 * k)) });
            }
            c += 64;
        }
        let mut t = _mm256_setzero_ps();
        for a in acc {
            t = _mm256_add_ps(t, a);
        }
        // SAFETY: AVX2 is enabled on this function.
        unsafe { hsum8(t) + v[full..].iter().sum::<f32>() }
    }

    kernel!(dots_f32, group_f32, f32, load_f32);
    kernel!(dots_bf16, group_bf16, Bf16, load_bf16);
    kernel!(dots_i8, group_i8, i8, load_i8);
}

/// The instruction set the kernels run with on this machine.
pub fn simd_level() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        if has_avx2_fma() {
            return "avx2+fma";
        }
        "sse2"
    }
    #[cfg(target_arch = "aarch64")]
    {
        "neon"
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        "portable"
    }
}

/// Sum of `v`, vectorised with independent accumulators: streams memory at the rate the machine
/// can read it (used to measure read bandwidth).
pub fn stream_sum(v: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        // SAFETY: the CPU was just checked for AVX2 and FMA.
        return unsafe { x86::sum(v) };
    }
    let mut acc = [0f32; 16];
    let chunks = v.chunks_exact(16);
    let rest: f32 = chunks.remainder().iter().sum();
    for c in chunks {
        for i in 0..16 {
            acc[i] += c[i];
        }
    }
    acc.iter().sum::<f32>() + rest
}

/// Weights the host kernels read.
trait Kernel: Elem {
    fn dots<const B: usize>(x: [&[f32]; B], w: &[Self], cols: usize, out: [&mut [f32]; B]);
}

fn has_avx2_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The portable kernel: with a fused multiply-add where the target has one in its baseline.
fn portable<E: Elem, const B: usize>(x: [&[f32]; B], w: &[E], cols: usize, out: [&mut [f32]; B]) {
    #[cfg(target_arch = "aarch64")]
    {
        dots::<E, B, true>(x, w, cols, out)
    }
    #[cfg(not(target_arch = "aarch64"))]
    {
        dots::<E, B, false>(x, w, cols, out)
    }
}

impl Kernel for f32 {
    fn dots<const B: usize>(x: [&[f32]; B], w: &[f32], cols: usize, out: [&mut [f32]; B]) {
        #[cfg(target_arch = "x86_64")]
        if has_avx2_fma() {
            // SAFETY: the CPU was just checked for AVX2 and FMA.
            return unsafe { x86::dots_f32::<B>(x, w, cols, out) };
        }
        portable::<f32, B>(x, w, cols, out)
    }
}

impl Kernel for Bf16 {
    fn dots<const B: usize>(x: [&[f32]; B], w: &[Bf16], cols: usize, out: [&mut [f32]; B]) {
        #[cfg(target_arch = "x86_64")]
        if has_avx2_fma() {
            // SAFETY: the CPU was just checked for AVX2 and FMA.
            return unsafe { x86::dots_bf16::<B>(x, w, cols, out) };
        }
        portable::<Bf16, B>(x, w, cols, out)
    }
}

impl Kernel for i8 {
    fn dots<const B: usize>(x: [&[f32]; B], w: &[i8], cols: usize, out: [&mut [f32]; B]) {
        #[cfg(target_arch = "x86_64")]
        if has_avx2_fma() {
            // SAFETY: the CPU was just checked for AVX2 and FMA.
            return unsafe { x86::dots_i8::<B>(x, w, cols, out) };
        }
        portable::<i8, B>(x, w, cols, out)
    }
}

fn dispatch1<E: Kernel>(x: &[f32], w: &[E], cols: usize, out: &mut [f32]) {
    E::dots::<1>([x], w, cols, [out])
}

fn dispatch2<E: Kernel>(x0: &[f32], x1: &[f32], w: &[E], cols: usize, o0: &mut [f32], o1: &mut [f32]) {
    E::dots::<2>([x0, x1], w, cols, [o0, o1])
}

/// `out[j] = x · w[j]` for each `x.len()`-wide row `j` of `w`, on the calling thread.
pub fn dot_rows(x: &[f32], w: &[f32], out: &mut [f32]) {
    let cols = x.len();
    assert_eq!(w.len(), cols * out.len(), "dot_rows: {} weights for {} rows of {cols}", w.len(), out.len());
    f32::dots::<1>([x], w, cols, [out])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(x: &[f32], k: &[f32], cols: usize, out: usize) -> Vec<f32> {
        let batch = x.len() / cols;
        let mut y = vec![0f32; batch * out];
        for b in 0..batch {
            for j in 0..out {
                y[b * out + j] = (0..cols).map(|i| x[b * cols + i] as f64 * k[i * out + j] as f64).sum::<f64>() as f32;
            }
        }
        y
    }

    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut rng = crate::sampling::rng::SplitMix64::new(seed);
        (0..n).map(|_| (rng.next_f64() * 2.0 - 1.0) as f32).collect()
    }

    #[test]
    fn gemv_matches_a_naive_product_for_odd_shapes_batches_and_ranges() {
        for &(cols, out) in &[(1, 1), (3, 5), (16, 2), (17, 33), (64, 257), (100, 1000)] {
            let k = values(cols * out, cols as u64);
            let m = Matrix::from_kernels(&[&k], cols, &[out], WeightPrecision::F32);
            for batch in 1..=3 {
                let x = values(batch * cols, 7 + batch as u64);
                let want = naive(&x, &k, cols, out);
                let mut y = vec![f32::NAN; batch * out];
                m.gemv(&x, 0..out, &mut y);
                for (i, (a, b)) in y.iter().zip(&want).enumerate() {
                    assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "{cols}×{out} batch {batch} [{i}]: {a} vs {b}");
                }
                // A sub-range of the outputs (the per-level depth logits).
                let r = out / 3..out - out / 4;
                let mut y = vec![f32::NAN; batch * r.len()];
                m.gemv(&x, r.clone(), &mut y);
                for b in 0..batch {
                    for (j, o) in r.clone().enumerate() {
                        let (a, w) = (y[b * r.len() + j], want[b * out + o]);
                        assert!((a - w).abs() <= 1e-5 * (1.0 + w.abs()), "range {r:?} [{b},{j}]");
                    }
                }
            }
        }
    }

    #[test]
    fn fused_kernels_stack_their_outputs_and_round_trip() {
        let (cols, a, b) = (5, 3, 4);
        let (ka, kb) = (values(cols * a, 1), values(cols * b, 2));
        let m = Matrix::from_kernels(&[&ka, &kb], cols, &[a, b], WeightPrecision::F32);
        let x = values(cols, 3);
        let mut y = vec![0f32; a + b];
        m.gemv(&x, 0..a + b, &mut y);
        let (wa, wb) = (naive(&x, &ka, cols, a), naive(&x, &kb, cols, b));
        for (got, want) in y.iter().zip(wa.iter().chain(&wb)) {
            assert!((got - want).abs() < 1e-5);
        }
        let k = m.to_kernel();
        for i in 0..cols {
            assert_eq!(&k[i * (a + b)..i * (a + b) + a], &ka[i * a..(i + 1) * a]);
            assert_eq!(&k[i * (a + b) + a..(i + 1) * (a + b)], &kb[i * b..(i + 1) * b]);
        }
    }

    /// int8: each row's scale is its largest |w| / 127, every weight within half a step of its
    /// value, an all-zero row stays zero; products (one and two batch rows, sub-ranges, odd
    /// widths through the vector and scalar tails) equal a plain product of the widened weights.
    #[test]
    fn int8_rows_are_scaled_symmetrically_and_products_use_the_quantized_weights() {
        for &(cols, out) in &[(1, 1), (17, 33), (64, 257), (100, 40)] {
            let mut k = values(cols * out, 11 + cols as u64);
            for i in 0..cols {
                k[i * out] = 0.0; // output 0: an all-zero row
            }
            let m = Matrix::from_kernels(&[&k], cols, &[out], WeightPrecision::Int8);
            assert_eq!(m.precision(), WeightPrecision::Int8);
            assert_eq!(m.bytes(), cols * out + 4 * out);
            let deq = m.to_kernel();
            for j in 0..out {
                let max = (0..cols).fold(0f32, |a, i| a.max(k[i * out + j].abs()));
                for i in 0..cols {
                    let (w, d) = (k[i * out + j], deq[i * out + j]);
                    assert!((w - d).abs() <= max / 127.0 * 0.5 + 1e-7, "{cols}×{out} w[{i},{j}] {w} → {d}");
                }
                assert!((0..cols).any(|i| (deq[i * out + j].abs() - max).abs() <= 1e-6 * max.max(1e-30)) || max == 0.0, "row {j} reaches ±max");
            }
            assert!((0..cols).all(|i| deq[i * out] == 0.0), "the zero row stays zero");
            for batch in 1..=2 {
                let x = values(batch * cols, 3 + batch as u64);
                let want = naive(&x, &deq, cols, out);
                let r = out / 3..out;
                let mut y = vec![f32::NAN; batch * r.len()];
                m.gemv(&x, r.clone(), &mut y);
                for b in 0..batch {
                    for (j, o) in r.clone().enumerate() {
                        let (a, w) = (y[b * r.len() + j], want[b * out + o]);
                        assert!((a - w).abs() <= 1e-5 * (1.0 + w.abs()), "{cols}×{out} batch {batch} [{b},{o}]: {a} vs {w}");
                    }
                }
            }
        }
        assert_eq!("int8".parse::<WeightPrecision>(), Ok(WeightPrecision::Int8));
        assert!("int4".parse::<WeightPrecision>().unwrap_err().contains("int8"));
    }

    #[test]
    fn bf16_rounds_to_nearest_even_and_products_use_the_rounded_weights() {
        assert_eq!(Bf16::from_f32(1.0).0, 0x3f80);
        // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties go to the even mantissa (1.0).
        assert_eq!(Bf16::from_f32(1.0 + 1.0 / 256.0).0, 0x3f80);
        assert_eq!(Bf16::from_f32(1.0 + 3.0 / 256.0).0, 0x3f82);
        assert_eq!(Bf16::from_f32(-2.5).f32(), -2.5);
        assert!(Bf16::from_f32(f32::NAN).f32().is_nan());
        assert_eq!(Bf16::from_f32(f32::INFINITY).f32(), f32::INFINITY);
        let (cols, out) = (40, 9);
        let k = values(cols * out, 5);
        let rounded: Vec<f32> = k.iter().map(|&v| Bf16::from_f32(v).f32()).collect();
        let m = Matrix::from_kernels(&[&k], cols, &[out], WeightPrecision::Bf16);
        assert_eq!(m.to_kernel(), rounded);
        assert_eq!(m.bytes(), cols * out * 2);
        let x = values(2 * cols, 6);
        let mut y = vec![0f32; 2 * out];
        m.gemv(&x, 0..out, &mut y);
        for (a, b) in y.iter().zip(naive(&x, &rounded, cols, out)) {
            assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()));
        }
    }
}
