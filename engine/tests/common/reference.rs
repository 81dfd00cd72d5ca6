//! Plain f64 reference math shared by the style tests (independent of the engine's kernels).

pub fn softmax(v: &mut [f64]) {
    let m = v.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let s: f64 = v.iter().map(|x| (x - m).exp()).sum();
    v.iter_mut().for_each(|x| *x = (*x - m).exp() / s);
}

/// Exact GELU through erf (Simpson's rule on a fine grid).
pub fn gelu(x: f64) -> f64 {
    let z = x / std::f64::consts::SQRT_2;
    let n = 2000;
    let h = z / n as f64;
    let f = |t: f64| (-t * t).exp();
    let mut s = f(0.0) + f(z);
    for i in 1..n {
        s += f(i as f64 * h) * if i % 2 == 1 { 4.0 } else { 2.0 };
    }
    0.5 * x * (1.0 + 2.0 / std::f64::consts::PI.sqrt() * s * h / 3.0)
}
