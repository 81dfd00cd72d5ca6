//! The `gemm` crate's product behind a bounds check: the host encoder's and the codec decoder's
//! matrix products (the GEMM burn-flex runs on, same version and features, built once; `flex`
//! adds its AVX-512 microkernels).

pub use ::gemm::Parallelism;

/// `dst[m, n] (+)= A[m, k] · B[k, n]` with `A[i, l] = a[i·a_rs + l·a_cs]`,
/// `B[l, j] = b[l·b_rs + j·b_cs]`, `dst[i, j] = dst[i·ld + j]`; every index is checked against
/// the slices before the unchecked call.
#[allow(clippy::too_many_arguments)]
pub fn gemm_checked(
    m: usize,
    n: usize,
    k: usize,
    a: &[f32],
    a_rs: usize,
    a_cs: usize,
    b: &[f32],
    b_rs: usize,
    b_cs: usize,
    dst: &mut [f32],
    ld: usize,
    accumulate: bool,
    par: Parallelism,
) {
    if m == 0 || n == 0 {
        return;
    }
    let last = |rows: usize, rs: usize, cols: usize, cs: usize| (rows.max(1) - 1) * rs + (cols.max(1) - 1) * cs;
    assert!(k == 0 || last(m, a_rs, k, a_cs) < a.len(), "gemm: A [{m}, {k}] outside {} values", a.len());
    assert!(k == 0 || last(k, b_rs, n, b_cs) < b.len(), "gemm: B [{k}, {n}] outside {} values", b.len());
    assert!(n <= ld && last(m, ld, n, 1) < dst.len(), "gemm: dst [{m}, {n}] (stride {ld}) outside {} values", dst.len());
    // SAFETY: every element the product reads or writes is inside its slice (asserted above), and
    // `dst` is borrowed mutably, so it overlaps neither input.
    unsafe {
        ::gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            ld as isize,
            accumulate,
            a.as_ptr(),
            a_cs as isize,
            a_rs as isize,
            b.as_ptr(),
            b_cs as isize,
            b_rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            par,
        );
    }
}

/// `dst[m, n] (+)= A[m, k] · B[k, n]` on the calling thread, allocating nothing: the product of a
/// streamed codec frame (small `m`), where the `gemm` crate's per-call packing buffers and rayon's
/// job queue would allocate on every step. `A[i, l] = a[i·a_rs + l]`, `B[l, j] = b[l·b_rs + j]`,
/// `dst[i, j] = dst[i·ld + j]`; every index is checked against the slices first.
///
/// On x86-64 with AVX2 and FMA it runs 6×16 register tiles over `k` blocks of 256 and `m` blocks
/// of 72 rows (a `[256, 16]` slice of B stays in L1 across the block's tiles, the block of A in
/// L2); elsewhere a row-times-matrix loop the compiler vectorises.
#[allow(clippy::too_many_arguments)]
pub fn gemm_serial(m: usize, n: usize, k: usize, a: &[f32], a_rs: usize, b: &[f32], b_rs: usize, dst: &mut [f32], ld: usize, accumulate: bool) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(k == 0 || (m - 1) * a_rs + k - 1 < a.len(), "gemm: A [{m}, {k}] outside {} values", a.len());
    assert!(k == 0 || (n <= b_rs || k == 1) && (k - 1) * b_rs + n - 1 < b.len(), "gemm: B [{k}, {n}] outside {} values", b.len());
    assert!(n <= ld && (m - 1) * ld + n - 1 < dst.len(), "gemm: dst [{m}, {n}] (stride {ld}) outside {} values", dst.len());
    if k == 0 {
        if !accumulate {
            dst.chunks_mut(ld).take(m).for_each(|row| row[..n].fill(0.0));
        }
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has AVX2 and FMA, and every index the kernel touches was checked above.
        unsafe { x86::gemm(m, n, k, a.as_ptr(), a_rs, b.as_ptr(), b_rs, dst.as_mut_ptr(), ld, accumulate) };
        return;
    }
    for (i, row) in dst.chunks_mut(ld).take(m).enumerate() {
        let row = &mut row[..n];
        if !accumulate {
            row.fill(0.0);
        }
        for (l, &x) in a[i * a_rs..][..k].iter().enumerate() {
            // A fused multiply-add only where the target has one in hardware (aarch64); on x86
            // without FMA `mul_add` would be a library call per element.
            #[cfg(target_arch = "aarch64")]
            row.iter_mut().zip(&b[l * b_rs..][..n]).for_each(|(o, w)| *o = x.mul_add(*w, *o));
            #[cfg(not(target_arch = "aarch64"))]
            row.iter_mut().zip(&b[l * b_rs..][..n]).for_each(|(o, w)| *o += x * *w);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    const MR: usize = 6;
    const KC: usize = 256;
    const MC: usize = 72;

    /// SAFETY (caller): AVX2 and FMA present; `a`, `b`, `c` hold every index of the product.
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn gemm(m: usize, n: usize, k: usize, a: *const f32, a_rs: usize, b: *const f32, b_rs: usize, c: *mut f32, ld: usize, accumulate: bool) {
        // SAFETY: the caller's contract (AVX2 and FMA present, every index inside the slices).
        unsafe {
            let mut p0 = 0;
            while p0 < k {
                let kc = KC.min(k - p0);
                let add = accumulate || p0 > 0;
                let mut i0 = 0;
                while i0 < m {
                    let mc = MC.min(m - i0);
                    let mut j = 0;
                    while j < n {
                        let width = if n - j >= 16 { 16 } else if n - j >= 8 { 8 } else { n - j };
                        let mut i = i0;
                        while i < i0 + mc {
                            let rows = MR.min(i0 + mc - i);
                            let (ap, bp, cp) = (a.add(i * a_rs + p0), b.add(p0 * b_rs + j), c.add(i * ld + j));
                            match (rows, width) {
                                (6, 16) => tile::<6, 2>(kc, ap, a_rs, bp, b_rs, cp, ld, add),
                                (5, 16) => tile::<5, 2>(kc, ap, a_rs, bp, b_rs, cp, ld, add),
                                (4, 16) => tile::<4, 2>(kc, ap, a_rs, bp, b_rs, cp, ld, add),
                                (3, 16) => tile::<3, 2>(kc, ap, a_rs, bp, b_rs, cp, ld, add),
                                (2, 16) => tile::<2, 2>(kc, ap, a_rs, bp, b_rs, cp, ld, add),
                                (1, 16) => tile::<1, 2>(kc, ap, a_rs, bp, b_rs, cp, ld, add),
                                (6, 8) => tile::<6, 1>(kc, ap, a_rs, bp, b_rs, cp, ld, add),
                                (5, 8) => tile::<5, 1>(kc, ap, a_rs, bp, b_rs, cp, ld, add),
                                (4, 8) => tile::<4, 1>(kc, ap, a_rs, bp, b_rs, cp, ld, add),
                                (3, 8) => tile::<3, 1>(kc, ap, a_rs, bp, b_rs, cp, ld, add),
                                (2, 8) => tile::<2, 1>(kc, ap, a_rs, bp, b_rs, cp, ld, add),
                                (1, 8) => tile::<1, 1>(kc, ap, a_rs, bp, b_rs, cp, ld, add),
                                _ => narrow(rows, width, kc, ap, a_rs, bp, b_rs, cp, ld, add),
                            }
                            i += rows;
                        }
                        j += width;
                    }
                    i0 += mc;
                }
                p0 += kc;
            }
        }
    }

    /// `R` rows × `8·V` columns of C over `kc` steps, in `R·V` accumulators.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    #[allow(clippy::too_many_arguments)]
    unsafe fn tile<const R: usize, const V: usize>(kc: usize, a: *const f32, a_rs: usize, b: *const f32, b_rs: usize, c: *mut f32, ld: usize, add: bool) {
        // SAFETY: the caller's contract (AVX2 and FMA present, every index inside the slices).
        unsafe {
            let mut acc = [[_mm256_setzero_ps(); V]; R];
            for p in 0..kc {
                let bp = b.add(p * b_rs);
                let mut w = [_mm256_setzero_ps(); V];
                for (v, w) in w.iter_mut().enumerate() {
                    *w = _mm256_loadu_ps(bp.add(8 * v));
                }
                for (r, acc) in acc.iter_mut().enumerate() {
                    let x = _mm256_broadcast_ss(&*a.add(r * a_rs + p));
                    for v in 0..V {
                        acc[v] = _mm256_fmadd_ps(x, w[v], acc[v]);
                    }
                }
            }
            for (r, acc) in acc.iter().enumerate() {
                for (v, &sum) in acc.iter().enumerate() {
                    let cp = c.add(r * ld + 8 * v);
                    let sum = if add { _mm256_add_ps(_mm256_loadu_ps(cp), sum) } else { sum };
                    _mm256_storeu_ps(cp, sum);
                }
            }
        }
    }

    /// The last `width < 8` columns (the codec's 2-column output conv): B's columns copied into a
    /// contiguous block on the stack, then one vectorised dot product per output.
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn narrow(rows: usize, width: usize, kc: usize, a: *const f32, a_rs: usize, b: *const f32, b_rs: usize, c: *mut f32, ld: usize, add: bool) {
        // SAFETY: the caller's contract (AVX2 and FMA present, every index inside the slices).
        unsafe {
            let mut cols = [0f32; 7 * KC];
            for j in 0..width {
                for p in 0..kc {
                    cols[j * KC + p] = *b.add(p * b_rs + j);
                }
            }
            let full = kc / 8 * 8;
            for r in 0..rows {
                let ar = a.add(r * a_rs);
                for j in 0..width {
                    let col = cols.as_ptr().add(j * KC);
                    let mut acc = _mm256_setzero_ps();
                    let mut p = 0;
                    while p < full {
                        acc = _mm256_fmadd_ps(_mm256_loadu_ps(ar.add(p)), _mm256_loadu_ps(col.add(p)), acc);
                        p += 8;
                    }
                    let half = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
                    let quad = _mm_add_ps(half, _mm_movehl_ps(half, half));
                    let mut sum = _mm_cvtss_f32(_mm_add_ss(quad, _mm_shuffle_ps(quad, quad, 1)));
                    for p in full..kc {
                        sum = (*ar.add(p)).mul_add(*col.add(p), sum);
                    }
                    let cp = c.add(r * ld + j);
                    *cp = if add { *cp + sum } else { sum };
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every shape class (full and partial tiles, 8- and <8-wide columns, several k blocks,
    /// strided rows, accumulate or not) against a plain triple loop in f64.
    #[test]
    fn the_serial_product_equals_a_plain_one() {
        let mut rng = crate::sampling::rng::SplitMix64::new(7);
        for &(m, n, k) in &[(1, 1, 1), (7, 16, 3), (13, 40, 300), (72, 128, 257), (150, 31, 600), (5, 8, 512), (6, 200, 70), (970, 2, 1152)] {
            for accumulate in [false, true] {
                let (a_rs, b_rs, ld) = (k + 3, n + 5, n + 2);
                let a: Vec<f32> = (0..m * a_rs).map(|_| rng.next_f64() as f32 - 0.5).collect();
                let b: Vec<f32> = (0..k * b_rs).map(|_| rng.next_f64() as f32 - 0.5).collect();
                let c0: Vec<f32> = (0..m * ld).map(|_| rng.next_f64() as f32 - 0.5).collect();
                let mut c = c0.clone();
                gemm_serial(m, n, k, &a, a_rs, &b, b_rs, &mut c, ld, accumulate);
                for i in 0..m {
                    for j in 0..ld {
                        let got = c[i * ld + j];
                        if j >= n {
                            assert_eq!(got, c0[i * ld + j], "column {j} past n={n} untouched");
                            continue;
                        }
                        let mut want: f64 = if accumulate { c0[i * ld + j].into() } else { 0.0 };
                        for l in 0..k {
                            want += f64::from(a[i * a_rs + l]) * f64::from(b[l * b_rs + j]);
                        }
                        assert!((f64::from(got) - want).abs() < 1e-4 * (k as f64).sqrt(), "[{m}×{k}]·[{k}×{n}] at ({i}, {j}): {got} vs {want}");
                    }
                }
            }
        }
    }
}
