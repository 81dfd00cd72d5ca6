//! Vectorised `exp`, softmax, the tanh-GELU (plain and as a gate) and ELU of the host kernels.
//!
//! libm's `expf`/`tanhf` are scalar calls: in the encoder (softmax over 2 × heads × 1006² logits
//! and a GELU over 2012 × mlp values per layer) they cost as much as the matrix products. Here
//! `exp` is the Cephes single-precision scheme (range reduction by ln 2 split in two constants,
//! a degree-5 polynomial, exponent by bit shift; ~1 ulp on the range that matters), eight lanes
//! at a time with AVX2+FMA, chosen at run time, and the same operations one value at a time
//! elsewhere. The GELU uses `0.5·x·(1 + tanh(u)) = x / (1 + exp(−2u))`, which is the same
//! function with one `exp` and no cancellation for large |u|.

const LOG2E: f32 = std::f32::consts::LOG2_E;
/// ln 2 = C1 + C2, C1 exact in few bits (Cephes).
const C1: f32 = 0.693_359_4;
const C2: f32 = -2.121_944_4e-4;
#[allow(clippy::excessive_precision)] // Cephes' coefficients as published.
const P: [f32; 6] = [1.987_569_1e-4, 1.398_199_9e-3, 8.333_452e-3, 4.166_579_6e-2, 1.666_666_5e-1, 5.000_000_1e-1];
/// Above this `exp` overflows f32; it is clamped here (softmax inputs are ≤ 0 anyway).
const HI: f32 = 88.376_26;
/// Below this `exp` is a subnormal or zero: the result is 0.
const LO: f32 = -87.336_55;
const SQRT_2_OVER_PI: f32 = 0.797_884_6;
const GELU_C: f32 = 0.044_715;

/// `e^x`, one value (the same steps as the vector version).
#[inline]
pub fn exp(x: f32) -> f32 {
    if x.is_nan() {
        return x;
    }
    if x < LO {
        return 0.0;
    }
    let x = x.min(HI);
    let n = (x * LOG2E).round_ties_even();
    let r = (-n).mul_add(C2, (-n).mul_add(C1, x));
    let mut p = P[0];
    for &c in &P[1..] {
        p = p.mul_add(r, c);
    }
    let y = p.mul_add(r * r, r) + 1.0;
    y * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

/// `gelu_tanh(g) · l` (jax's default approximate GELU), one value.
#[inline]
pub fn gelu_mul(g: f32, l: f32) -> f32 {
    let u = SQRT_2_OVER_PI * (g + GELU_C * g * g * g);
    g * l / (1.0 + exp(-2.0 * u))
}

/// `gelu_tanh(x)` (`jax.nn.gelu(x, approximate=True)`), one value.
#[inline]
pub fn gelu(x: f32) -> f32 {
    let u = SQRT_2_OVER_PI * (x + GELU_C * x * x * x);
    x / (1.0 + exp(-2.0 * u))
}

/// ELU with α = 1 (`jax.nn.elu`), one value: `x` above 0, else `e^x − 1`. NaN stays NaN.
#[inline]
pub fn elu(x: f32) -> f32 {
    if x > 0.0 || x.is_nan() {
        x
    } else {
        exp(x) - 1.0
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::*;

    #[target_feature(enable = "avx2,fma")]
    #[inline]
    pub unsafe fn exp8(x: __m256) -> __m256 {
        let keep = _mm256_cmp_ps(x, _mm256_set1_ps(LO), _CMP_GE_OQ);
        let x = _mm256_max_ps(_mm256_min_ps(x, _mm256_set1_ps(HI)), _mm256_set1_ps(LO));
        let n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(LOG2E)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(C1), x);
        let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(C2), r);
        let mut p = _mm256_set1_ps(P[0]);
        for &c in &P[1..] {
            p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(c));
        }
        let y = _mm256_add_ps(_mm256_fmadd_ps(p, _mm256_mul_ps(r, r), r), _mm256_set1_ps(1.0));
        let e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
        _mm256_and_ps(_mm256_mul_ps(y, _mm256_castsi256_ps(e)), keep)
    }

    /// In-place softmax of `v`.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn softmax(v: &mut [f32]) {
        let n = v.len();
        let full = n / 8 * 8;
        let p = v.as_mut_ptr();
        // SAFETY (all blocks): indices < full ≤ n.
        unsafe {
            let mut m = _mm256_set1_ps(f32::NEG_INFINITY);
            let mut i = 0;
            while i < full {
                m = _mm256_max_ps(m, _mm256_loadu_ps(p.add(i)));
                i += 8;
            }
            let mut lanes = [0f32; 8];
            _mm256_storeu_ps(lanes.as_mut_ptr(), m);
            let max = lanes.iter().chain(&v[full..]).copied().fold(f32::NEG_INFINITY, f32::max);
            let mv = _mm256_set1_ps(max);
            let mut s = _mm256_setzero_ps();
            let mut i = 0;
            while i < full {
                let e = exp8(_mm256_sub_ps(_mm256_loadu_ps(p.add(i)), mv));
                _mm256_storeu_ps(p.add(i), e);
                s = _mm256_add_ps(s, e);
                i += 8;
            }
            _mm256_storeu_ps(lanes.as_mut_ptr(), s);
            let mut sum = lanes.iter().sum::<f32>();
            for x in &mut v[full..] {
                *x = exp(*x - max);
                sum += *x;
            }
            let inv = _mm256_set1_ps(1.0 / sum);
            let mut i = 0;
            while i < full {
                _mm256_storeu_ps(p.add(i), _mm256_mul_ps(_mm256_loadu_ps(p.add(i)), inv));
                i += 8;
            }
            for x in &mut v[full..] {
                *x *= 1.0 / sum;
            }
        }
    }

    /// `out[i] = elu(src[i] (+ bias[i]))`; `out` may be `src`.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn elu(src: *const f32, bias: Option<*const f32>, out: *mut f32, n: usize) {
        let full = n / 8 * 8;
        let mut i = 0;
        // SAFETY (caller): n values readable at src (and bias), writable at out.
        unsafe {
            while i < full {
                let mut x = _mm256_loadu_ps(src.add(i));
                if let Some(b) = bias {
                    x = _mm256_add_ps(x, _mm256_loadu_ps(b.add(i)));
                }
                // Lanes where x > 0 or x is NaN keep x.
                let keep = _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_NLE_UQ);
                let e = _mm256_sub_ps(exp8(_mm256_min_ps(x, _mm256_setzero_ps())), _mm256_set1_ps(1.0));
                _mm256_storeu_ps(out.add(i), _mm256_blendv_ps(e, x, keep));
                i += 8;
            }
            while i < n {
                let x = *src.add(i) + bias.map_or(0.0, |b| *b.add(i));
                *out.add(i) = super::elu(x);
                i += 1;
            }
        }
    }

    /// `v[i] = gelu_tanh(v[i])`, in place.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn gelu(v: &mut [f32]) {
        let n = v.len();
        let full = n / 8 * 8;
        let p = v.as_mut_ptr();
        let mut i = 0;
        // SAFETY: indices < full ≤ n.
        unsafe {
            while i < full {
                let g = _mm256_loadu_ps(p.add(i));
                let g3 = _mm256_mul_ps(_mm256_mul_ps(g, g), g);
                let u = _mm256_mul_ps(_mm256_set1_ps(SQRT_2_OVER_PI), _mm256_fmadd_ps(_mm256_set1_ps(GELU_C), g3, g));
                let e = exp8(_mm256_mul_ps(_mm256_set1_ps(-2.0), u));
                _mm256_storeu_ps(p.add(i), _mm256_div_ps(g, _mm256_add_ps(_mm256_set1_ps(1.0), e)));
                i += 8;
            }
        }
        for x in &mut v[full..] {
            *x = super::gelu(*x);
        }
    }

    /// `out[i] = gelu_tanh(gate[i]) · linear[i]`; `out` may be `gate` (pointers, not slices).
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn gelu_mul(gate: *const f32, linear: *const f32, out: *mut f32, n: usize) {
        let full = n / 8 * 8;
        let mut i = 0;
        // SAFETY (caller): n values readable at gate and linear, writable at out.
        unsafe {
            while i < full {
                let g = _mm256_loadu_ps(gate.add(i));
                let g3 = _mm256_mul_ps(_mm256_mul_ps(g, g), g);
                let u = _mm256_mul_ps(_mm256_set1_ps(SQRT_2_OVER_PI), _mm256_fmadd_ps(_mm256_set1_ps(GELU_C), g3, g));
                let e = exp8(_mm256_mul_ps(_mm256_set1_ps(-2.0), u));
                let num = _mm256_mul_ps(g, _mm256_loadu_ps(linear.add(i)));
                _mm256_storeu_ps(out.add(i), _mm256_div_ps(num, _mm256_add_ps(_mm256_set1_ps(1.0), e)));
                i += 8;
            }
            while i < n {
                *out.add(i) = super::gelu_mul(*gate.add(i), *linear.add(i));
                i += 1;
            }
        }
    }
}

fn vector() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// In-place softmax: `v[i] = e^(v[i] − max) / Σ`. Masked entries (−1e10, −∞) become 0.
pub fn softmax(v: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if vector() {
        // SAFETY: the CPU was just checked for AVX2 and FMA.
        return unsafe { x86::softmax(v) };
    }
    let max = v.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0f32;
    for x in v.iter_mut() {
        *x = exp(*x - max);
        sum += *x;
    }
    let inv = 1.0 / sum;
    for x in v.iter_mut() {
        *x *= inv;
    }
}

/// `out[i] = gelu_tanh(gate[i]) · linear[i]`.
pub fn gelu_mul_into(gate: &[f32], linear: &[f32], out: &mut [f32]) {
    let n = out.len();
    assert!(gate.len() == n && linear.len() == n, "gelu_mul: {} gate, {} linear, {n} out", gate.len(), linear.len());
    #[cfg(target_arch = "x86_64")]
    if vector() {
        // SAFETY: the CPU was just checked; the three slices hold n values (asserted).
        return unsafe { x86::gelu_mul(gate.as_ptr(), linear.as_ptr(), out.as_mut_ptr(), n) };
    }
    for ((o, &g), &l) in out.iter_mut().zip(gate).zip(linear) {
        *o = gelu_mul(g, l);
    }
}

/// `gate[i] = gelu_tanh(gate[i]) · linear[i]`, in place.
pub fn gelu_mul_in_place(gate: &mut [f32], linear: &[f32]) {
    let n = gate.len();
    assert_eq!(linear.len(), n, "gelu_mul: {n} gate, {} linear", linear.len());
    #[cfg(target_arch = "x86_64")]
    if vector() {
        let p = gate.as_mut_ptr();
        // SAFETY: the CPU was just checked; both slices hold n values; reading and writing the
        // same index through one pointer is allowed.
        return unsafe { x86::gelu_mul(p, linear.as_ptr(), p, n) };
    }
    for (g, &l) in gate.iter_mut().zip(linear) {
        *g = gelu_mul(*g, l);
    }
}

/// `v[i] = gelu_tanh(v[i])`, in place (an un-gated FFN's activation).
pub fn gelu_in_place(v: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if vector() {
        // SAFETY: the CPU was just checked for AVX2 and FMA.
        return unsafe { x86::gelu(v) };
    }
    for x in v.iter_mut() {
        *x = gelu(*x);
    }
}

/// `out[i] = elu(src[i])`.
pub fn elu_into(src: &[f32], out: &mut [f32]) {
    let n = out.len();
    assert_eq!(src.len(), n, "elu: {} in, {n} out", src.len());
    #[cfg(target_arch = "x86_64")]
    if vector() {
        // SAFETY: the CPU was just checked; both slices hold n values (asserted).
        return unsafe { x86::elu(src.as_ptr(), None, out.as_mut_ptr(), n) };
    }
    for (o, &x) in out.iter_mut().zip(src) {
        *o = elu(x);
    }
}

/// `out[i] = elu(src[i] + bias[i])`.
pub fn bias_elu_into(src: &[f32], bias: &[f32], out: &mut [f32]) {
    let n = out.len();
    assert!(src.len() == n && bias.len() == n, "elu: {} in, {} bias, {n} out", src.len(), bias.len());
    #[cfg(target_arch = "x86_64")]
    if vector() {
        // SAFETY: the CPU was just checked; the three slices hold n values (asserted).
        return unsafe { x86::elu(src.as_ptr(), Some(bias.as_ptr()), out.as_mut_ptr(), n) };
    }
    for ((o, &x), &b) in out.iter_mut().zip(src).zip(bias) {
        *o = elu(x + b);
    }
}

/// `v[i] = elu(v[i])`, in place.
pub fn elu_in_place(v: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if vector() {
        let p = v.as_mut_ptr();
        // SAFETY: the CPU was just checked; reading and writing the same index through one
        // pointer is allowed.
        return unsafe { x86::elu(p, None, p, v.len()) };
    }
    for x in v.iter_mut() {
        *x = elu(*x);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ulps(a: f32, b: f32) -> u32 {
        (a.to_bits() as i64 - b.to_bits() as i64).unsigned_abs() as u32
    }

    #[test]
    fn exp_is_within_two_ulp_of_libm_where_normal_and_zero_below() {
        let mut worst = 0;
        let mut x = -87.0f32;
        while x < 88.0 {
            let want = (x as f64).exp() as f32;
            worst = worst.max(ulps(exp(x), want));
            x += 0.013_7;
        }
        assert!(worst <= 2, "worst {worst} ulp");
        assert_eq!(exp(-1e10), 0.0);
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp(0.0), 1.0);
        assert!(exp(f32::NAN).is_nan());
    }

    #[test]
    fn vector_softmax_and_gelu_equal_the_scalar_steps_and_the_definitions() {
        // 37 values: the vector body and the scalar tail both run.
        let v: Vec<f32> = (0..37).map(|i| ((i * 7919) % 200) as f32 * 0.11 - 11.0).collect();
        let mut s = v.clone();
        s[5] = -1e10;
        softmax(&mut s);
        let max = v.iter().enumerate().filter(|&(i, _)| i != 5).map(|(_, &x)| x).fold(f32::MIN, f32::max);
        let z: f64 = v.iter().enumerate().filter(|&(i, _)| i != 5).map(|(_, &x)| ((x - max) as f64).exp()).sum();
        for (i, (&got, &x)) in s.iter().zip(&v).enumerate() {
            let want = if i == 5 { 0.0 } else { ((x - max) as f64).exp() / z };
            assert!((got as f64 - want).abs() <= 1e-6 * want.max(1e-30) + 1e-12, "[{i}] {got} vs {want}");
        }
        assert!((s.iter().sum::<f32>() - 1.0).abs() < 1e-6);

        let lin: Vec<f32> = (0..37).map(|i| 1.0 + i as f32 * 0.01).collect();
        let mut g = v.clone();
        gelu_mul_in_place(&mut g, &lin);
        let mut g2 = vec![0f32; 37];
        gelu_mul_into(&v, &lin, &mut g2);
        for i in 0..37 {
            let x = v[i] as f64;
            let want = 0.5 * x * (1.0 + (0.797_884_560_802_865_4 * (x + 0.044715 * x * x * x)).tanh()) * lin[i] as f64;
            assert!((g[i] as f64 - want).abs() <= 2e-6 * (1.0 + want.abs()), "gelu [{i}] {} vs {want}", g[i]);
            assert_eq!(g[i], g2[i]);
            assert!((gelu_mul(v[i], lin[i]) - g[i]).abs() <= 1e-6 * (1.0 + want.abs() as f32));
        }
    }

    #[test]
    fn vector_gelu_equals_the_scalar_steps_and_the_definition() {
        // 37 values: the vector body and the scalar tail both run.
        let v: Vec<f32> = (0..37).map(|i| ((i * 7919) % 200) as f32 * 0.11 - 11.0).collect();
        let mut g = v.clone();
        gelu_in_place(&mut g);
        for i in 0..37 {
            let x = v[i] as f64;
            let want = 0.5 * x * (1.0 + (0.797_884_560_802_865_4 * (x + 0.044715 * x * x * x)).tanh());
            assert!((g[i] as f64 - want).abs() <= 2e-6 * (1.0 + want.abs()), "gelu [{i}] {} vs {want}", g[i]);
            assert!((gelu(v[i]) - g[i]).abs() <= 1e-6 * (1.0 + want.abs() as f32), "[{i}] vector and scalar differ");
            assert!((gelu_mul(v[i], 1.0) - g[i]).abs() <= 1e-6 * (1.0 + want.abs() as f32));
        }
        assert_eq!(gelu(0.0), 0.0);
        // jax.nn.gelu(1.0, approximate=True) = 0.8411920070648193
        assert!((gelu(1.0) - 0.841_192).abs() < 1e-6);
    }

    #[test]
    fn vector_elu_equals_the_definition_and_keeps_nan() {
        // 37 values: the vector body and the scalar tail both run.
        let mut v: Vec<f32> = (0..37).map(|i| ((i * 7919) % 200) as f32 * 0.11 - 11.0).collect();
        v[3] = f32::NAN;
        v[4] = -1e-4;
        v[30] = f32::NAN;
        let bias: Vec<f32> = (0..37).map(|i| (i as f32 - 18.0) * 0.05).collect();
        let (mut a, mut b, mut c) = (vec![0f32; 37], vec![0f32; 37], v.clone());
        elu_into(&v, &mut a);
        bias_elu_into(&v, &bias, &mut b);
        elu_in_place(&mut c);
        for i in 0..37 {
            let want = |x: f64| if x > 0.0 { x } else { x.exp_m1() };
            if v[i].is_nan() {
                assert!(a[i].is_nan() && b[i].is_nan() && c[i].is_nan(), "[{i}] NaN lost");
                continue;
            }
            let (w, wb) = (want(v[i] as f64), want((v[i] + bias[i]) as f64));
            assert!((a[i] as f64 - w).abs() <= 1.5e-7 * (1.0 + w.abs()), "elu [{i}] {} vs {w}", a[i]);
            assert!((b[i] as f64 - wb).abs() <= 1.5e-7 * (1.0 + wb.abs()), "bias elu [{i}] {} vs {wb}", b[i]);
            assert_eq!(a[i].to_bits(), c[i].to_bits());
            assert_eq!(a[i].to_bits(), elu(v[i]).to_bits(), "[{i}] vector and scalar differ");
        }
    }
}
