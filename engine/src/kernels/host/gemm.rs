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
