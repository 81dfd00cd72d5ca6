//! MRT2's text → audio embedding mapper (`resources/musiccoca/mapper.tflite`, optional): a
//! one-step DiT-style sampler that moves a text embedding towards the audio embeddings the LM was
//! trained on. The C++ engine maps every text prompt when the file is present (audio prompts
//! skip it); the official Python keeps it behind `use_mapper` (default off). Math from DBraun's
//! parity-tested port (`DBraun/magenta-realtime` @ a367f50, `magenta_rt/nnx/musiccoca/mapper.py`),
//! map from its `convert.py`; NOTES.md "MRT2's MusicCoCa".
//!
//! ```text
//!  noise [E] ─ input_projection (FC [T·D, E]) ─ T tokens × D
//!  ctx = [context (P) | context (P) | text (E)]                       C = 2P + E
//!  L × layer:  (s₁, b₁) = ctx·cond1 + bias      h = RMSNorm(x)·norm1 · (1 + s₁) + b₁
//!              q, k, v = h·qkv (no bias); RoPE on q, k (half split, 10000^(−i/half), positions 0..T)
//!              logits = [30·tanh(q·k_sink/30) | 30·tanh(q·kᵀ/√H/30)]  (the sink takes the unscaled q)
//!              x += post(softmax(logits)·[v_sink | v])
//!              (s₂, b₂) = ctx·cond2 + bias      h = RMSNorm(x)·norm2 · (1 + s₂) + b₂
//!              x += ffn2(gelu_tanh(ffn1(h)))
//!  out = output_projection (FC [E, T·D]) · flatten(x), then L2-normalised
//! ```
//!
//! Tensors: main graph `input_projection` / `output_projection` (FC kernels and biases),
//! `arith.constant1` `[1, 1, P]` (the context); WHILE body `jax2tf_arg_2..15` (cond1 bias, kernel;
//! norm1; qkv; k_sink; v_sink; post; cond2 bias, kernel; ffn1 bias, kernel; ffn2 bias, kernel;
//! norm2). Every width is read from the shapes. It is a few MFLOP per prompt: plain host loops.

use std::path::Path;

use super::mrt2::{while_body, Graph};
use super::params::HostTensor;
use super::StyleError;
use crate::formats::tflite::TfLite;

const RMS_EPS: f32 = 1e-6;
const LOGIT_CAP: f32 = 30.0;
const ROPE_MAX_TIMESCALE: f32 = 10_000.0;

/// The seed of the mapper's noise (`np.random.RandomState(0).randn(768)`, as the official code).
pub const NOISE_SEED: u32 = 0;

/// The mapper's weights, per layer stacked `[L, …]`.
#[derive(Clone, Debug)]
pub struct Mapper {
    /// Embedding width E, tokens T, token width D, heads N × H, FFN F, context C.
    pub embed: usize,
    pub tokens: usize,
    pub width: usize,
    pub heads: usize,
    pub head_dim: usize,
    pub ffn: usize,
    pub context_dim: usize,
    pub layers: usize,
    context: Vec<f32>,
    in_w: HostTensor,
    in_b: HostTensor,
    out_w: HostTensor,
    out_b: HostTensor,
    cond1_b: HostTensor,
    cond1_w: HostTensor,
    norm1: HostTensor,
    qkv: HostTensor,
    k_sink: HostTensor,
    v_sink: HostTensor,
    post: HostTensor,
    cond2_b: HostTensor,
    cond2_w: HostTensor,
    ffn1_b: HostTensor,
    ffn1_w: HostTensor,
    ffn2_b: HostTensor,
    ffn2_w: HostTensor,
    norm2: HostTensor,
}

fn s(v: usize) -> Option<usize> {
    Some(v)
}

impl Mapper {
    /// Reads `mapper.tflite`; a missing, mis-shaped or non-finite tensor names the file and tensor.
    pub fn open(path: &Path) -> Result<Self, StyleError> {
        let model = TfLite::open(path)?;
        let g = Graph { model: &model, subgraph: 0 };
        let in_w = g.get("input_projection", &[None, None])?;
        let (td, embed) = (in_w.shape[0], in_w.shape[1]);
        let in_b = g.get("input_projection", &[s(td)])?;
        let out_w = g.get("output_projection", &[s(embed), s(td)])?;
        let out_b = g.get("output_projection", &[s(embed)])?;
        let context = g.get("arith.constant1$", &[s(1), s(1), None])?;
        let b = Graph { model: &model, subgraph: while_body(&model)? };
        let (cond, qkv) = (b.arg_shape(3)?, b.arg_shape(5)?);
        let (layers, context_dim, width, heads, head_dim) = match (cond.as_slice(), qkv.as_slice()) {
            ([l, c, 2, w], [l2, w2, 3, n, h]) if l == l2 && w == w2 => (*l, *c, *w, *n, *h),
            _ => return Err(b.err(format!("jax2tf_arg_3 {cond:?} / jax2tf_arg_5 {qkv:?}: expected [L, C, 2, D] / [L, D, 3, N, H]"))),
        };
        let ffn = b.arg_shape(12)?.get(2).copied().unwrap_or(0);
        let p = context.numel();
        if width == 0 || td % width != 0 || context_dim != 2 * p + embed || head_dim % 2 != 0 {
            return Err(g.err(format!(
                "widths do not fit: input projection [{td}, {embed}] into tokens of {width}, context {p} × 2 + {embed} vs \
                 conditioning width {context_dim}, head width {head_dim} (must be even for RoPE)"
            )));
        }
        let (l, c, d, n, h, f) = (layers, context_dim, width, heads, head_dim, ffn);
        Ok(Self {
            embed,
            tokens: td / width,
            width,
            heads,
            head_dim,
            ffn,
            context_dim,
            layers,
            context: context.data,
            in_w,
            in_b,
            out_w,
            out_b,
            cond1_b: b.arg(2, &[l, 2, d])?,
            cond1_w: b.arg(3, &[l, c, 2, d])?,
            norm1: b.arg(4, &[l, d])?,
            qkv: b.arg(5, &[l, d, 3, n, h])?,
            k_sink: b.arg(6, &[l, 1, n, h])?,
            v_sink: b.arg(7, &[l, 1, n, h])?,
            post: b.arg(8, &[l, d, n, h])?,
            cond2_b: b.arg(9, &[l, 2, d])?,
            cond2_w: b.arg(10, &[l, c, 2, d])?,
            ffn1_b: b.arg(11, &[l, f])?,
            ffn1_w: b.arg(12, &[l, d, f])?,
            ffn2_b: b.arg(13, &[l, d])?,
            ffn2_w: b.arg(14, &[l, f, d])?,
            norm2: b.arg(15, &[l, d])?,
        })
    }

    /// Maps a text embedding with `noise` (both `[E]`), L2-normalised.
    pub fn map(&self, text: &[f32], noise: &[f32]) -> Result<Vec<f32>, StyleError> {
        let (e, t, d, n, h, f, c) = (self.embed, self.tokens, self.width, self.heads, self.head_dim, self.ffn, self.context_dim);
        if text.len() != e || noise.len() != e {
            return Err(StyleError::BadInput(format!("the mapper takes {e}-d embeddings and noise, got {} and {}", text.len(), noise.len())));
        }
        let ctx: Vec<f32> = self.context.iter().chain(&self.context).chain(text).copied().collect();
        // [T·D] → T tokens of D.
        let mut x = fc(&self.in_w.data, &self.in_b.data, noise);
        let (half, nh) = (h / 2, n * h);
        let inv: Vec<f32> = (0..half).map(|i| ROPE_MAX_TIMESCALE.powf(-(i as f32) / half as f32)).collect();
        let rope = |v: &mut [f32], pos: usize| {
            for head in v.chunks_exact_mut(h) {
                for i in 0..half {
                    let (sin, cos) = (pos as f32 * inv[i]).sin_cos();
                    let (a, b) = (head[i], head[half + i]);
                    head[i] = a * cos - b * sin;
                    head[half + i] = b * cos + a * sin;
                }
            }
        };
        let cap = |v: f32| LOGIT_CAP * (v / LOGIT_CAP).tanh();
        for l in 0..self.layers {
            // Attention block.
            let (scale1, shift1) = cond(&ctx, layer(&self.cond1_w, l), layer(&self.cond1_b, l), c, d);
            let mut q = vec![0f32; t * nh];
            let mut k = vec![0f32; t * nh];
            let mut v = vec![0f32; t * nh];
            let w = layer(&self.qkv, l);
            for tok in 0..t {
                let hn = ada_norm(&x[tok * d..(tok + 1) * d], layer(&self.norm1, l), &scale1, &shift1);
                for (j, out) in [&mut q, &mut k, &mut v].into_iter().enumerate() {
                    let row = &mut out[tok * nh..(tok + 1) * nh];
                    for (i, &hv) in hn.iter().enumerate() {
                        let wrow = &w[(i * 3 + j) * nh..(i * 3 + j + 1) * nh];
                        row.iter_mut().zip(wrow).for_each(|(o, &wv)| *o += hv * wv);
                    }
                }
                rope(&mut q[tok * nh..(tok + 1) * nh], tok);
                rope(&mut k[tok * nh..(tok + 1) * nh], tok);
            }
            let (ks, vs) = (layer(&self.k_sink, l), layer(&self.v_sink, l));
            let mut ctxv = vec![0f32; t * nh];
            let root = (h as f32).sqrt();
            for head in 0..n {
                let hs = head * h..(head + 1) * h;
                for i in 0..t {
                    let qi = &q[i * nh + hs.start..i * nh + hs.end];
                    let mut p: Vec<f32> = std::iter::once(cap(dot(qi, &ks[hs.clone()])))
                        .chain((0..t).map(|j| cap(dot(qi, &k[j * nh + hs.start..j * nh + hs.end]) / root)))
                        .collect();
                    softmax(&mut p);
                    let out = &mut ctxv[i * nh + hs.start..i * nh + hs.end];
                    for (o, &sv) in out.iter_mut().zip(&vs[hs.clone()]) {
                        *o = p[0] * sv;
                    }
                    for j in 0..t {
                        let vj = &v[j * nh + hs.start..j * nh + hs.end];
                        out.iter_mut().zip(vj).for_each(|(o, &vv)| *o += p[j + 1] * vv);
                    }
                }
            }
            // post [D, N, H]: contracted over (N, H).
            let post = layer(&self.post, l);
            for tok in 0..t {
                let cv = &ctxv[tok * nh..(tok + 1) * nh];
                for o in 0..d {
                    x[tok * d + o] += dot(&post[o * nh..(o + 1) * nh], cv);
                }
            }
            // FFN block.
            let (scale2, shift2) = cond(&ctx, layer(&self.cond2_w, l), layer(&self.cond2_b, l), c, d);
            let (w1, b1, w2, b2) = (layer(&self.ffn1_w, l), layer(&self.ffn1_b, l), layer(&self.ffn2_w, l), layer(&self.ffn2_b, l));
            for tok in 0..t {
                let hn = ada_norm(&x[tok * d..(tok + 1) * d], layer(&self.norm2, l), &scale2, &shift2);
                let mut hidden = b1.to_vec();
                for (i, &hv) in hn.iter().enumerate() {
                    hidden.iter_mut().zip(&w1[i * f..(i + 1) * f]).for_each(|(o, &wv)| *o += hv * wv);
                }
                let mut out = b2.to_vec();
                for (j, hv) in hidden.into_iter().map(gelu_tanh).enumerate() {
                    out.iter_mut().zip(&w2[j * d..(j + 1) * d]).for_each(|(o, &wv)| *o += hv * wv);
                }
                x[tok * d..(tok + 1) * d].iter_mut().zip(out).for_each(|(a, b)| *a += b);
            }
        }
        let out = fc(&self.out_w.data, &self.out_b.data, &x);
        let norm = out.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>().sqrt();
        if !(norm > 0.0 && norm.is_finite()) {
            return Err(StyleError::BadInput(format!("the mapper's output has norm {norm}")));
        }
        Ok(out.iter().map(|&v| (f64::from(v) / norm) as f32).collect())
    }
}

/// Layer `l` of a stacked `[L, …]` tensor.
fn layer(t: &HostTensor, l: usize) -> &[f32] {
    let per = t.numel() / t.shape[0];
    &t.data[l * per..(l + 1) * per]
}

/// `y = W x + b`, `W [out, in]` (TFLite FULLY_CONNECTED).
fn fc(w: &[f32], b: &[f32], x: &[f32]) -> Vec<f32> {
    b.iter().enumerate().map(|(o, &bo)| bo + dot(&w[o * x.len()..(o + 1) * x.len()], x)).collect()
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn softmax(v: &mut [f32]) {
    let m = v.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for x in v.iter_mut() {
        *x = (*x - m).exp();
        sum += *x;
    }
    v.iter_mut().for_each(|x| *x /= sum);
}

/// `(scale, shift)` = `ctx [C] · W [C, 2, D] + b [2, D]`.
fn cond(ctx: &[f32], w: &[f32], b: &[f32], c: usize, d: usize) -> (Vec<f32>, Vec<f32>) {
    let mut out = b.to_vec();
    for (i, &cv) in ctx.iter().enumerate().take(c) {
        out.iter_mut().zip(&w[i * 2 * d..(i + 1) * 2 * d]).for_each(|(o, &wv)| *o += cv * wv);
    }
    let shift = out.split_off(d);
    (out, shift)
}

/// `RMSNorm(x) · gain · (1 + scale) + shift`.
fn ada_norm(x: &[f32], gain: &[f32], scale: &[f32], shift: &[f32]) -> Vec<f32> {
    let ms = x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32;
    let r = 1.0 / (ms + RMS_EPS).sqrt();
    (0..x.len()).map(|i| x[i] * r * gain[i] * (1.0 + scale[i]) + shift[i]).collect()
}

/// GELU, tanh approximation.
fn gelu_tanh(x: f32) -> f32 {
    const C: f32 = 0.797_884_6; // √(2/π)
    0.5 * x * (1.0 + (C * (x + 0.044715 * x * x * x)).tanh())
}

/// `np.random.RandomState(seed).randn(n)` (MT19937 seeded by `init_genrand`, the legacy polar
/// Box–Muller Gaussian), as f32: the mapper's noise in the official code.
pub fn numpy_randn(seed: u32, n: usize) -> Vec<f32> {
    let mut mt = Mt19937::new(seed);
    let mut out = Vec::with_capacity(n);
    let mut spare: Option<f64> = None;
    while out.len() < n {
        if let Some(g) = spare.take() {
            out.push(g as f32);
            continue;
        }
        let (x1, x2, r2) = loop {
            let x1 = 2.0 * mt.next_f64() - 1.0;
            let x2 = 2.0 * mt.next_f64() - 1.0;
            let r2 = x1 * x1 + x2 * x2;
            if r2 < 1.0 && r2 != 0.0 {
                break (x1, x2, r2);
            }
        };
        let f = (-2.0 * r2.ln() / r2).sqrt();
        spare = Some(f * x1);
        out.push((f * x2) as f32);
    }
    out
}

/// The Mersenne Twister MT19937 (Matsumoto & Nishimura), 32-bit output.
struct Mt19937 {
    state: [u32; 624],
    index: usize,
}

impl Mt19937 {
    fn new(seed: u32) -> Self {
        let mut state = [0u32; 624];
        state[0] = seed;
        for i in 1..624 {
            state[i] = 1_812_433_253u32.wrapping_mul(state[i - 1] ^ (state[i - 1] >> 30)).wrapping_add(i as u32);
        }
        Self { state, index: 624 }
    }

    fn next_u32(&mut self) -> u32 {
        if self.index >= 624 {
            for i in 0..624 {
                let y = (self.state[i] & 0x8000_0000) | (self.state[(i + 1) % 624] & 0x7fff_ffff);
                let mut v = self.state[(i + 397) % 624] ^ (y >> 1);
                if y & 1 != 0 {
                    v ^= 0x9908_b0df;
                }
                self.state[i] = v;
            }
            self.index = 0;
        }
        let mut y = self.state[self.index];
        self.index += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }

    /// A double in [0, 1) from 53 random bits (numpy's `random_double`).
    fn next_f64(&mut self) -> f64 {
        let a = self.next_u32() >> 5;
        let b = self.next_u32() >> 6;
        (f64::from(a) * 67_108_864.0 + f64::from(b)) / 9_007_199_254_740_992.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn noise_is_numpys_random_state_0_randn() {
        // np.random.RandomState(0).randn(6), printed with repr().
        let want = [1.764052345967664, 0.4001572083672233, 0.9787379841057392, 2.240893199201458, 1.8675579901499675, -0.977277879876411];
        let got = numpy_randn(0, 6);
        for (g, w) in got.iter().zip(want) {
            assert_eq!(*g, w as f32);
        }
        // MT19937's reference: the first output for init_genrand(5489) is 3499211612.
        assert_eq!(Mt19937::new(5489).next_u32(), 3_499_211_612);
    }

    #[test]
    fn gelu_and_rms_norm_pieces() {
        assert!((gelu_tanh(1.0) - 0.841_192).abs() < 1e-5);
        assert_eq!(gelu_tanh(0.0), 0.0);
        let y = ada_norm(&[3.0, 4.0], &[1.0, 2.0], &[0.0, 1.0], &[0.5, 0.0]);
        let r = 1.0 / (12.5f32 + RMS_EPS).sqrt();
        assert!((y[0] - (3.0 * r + 0.5)).abs() < 1e-6 && (y[1] - 4.0 * r * 2.0 * 2.0).abs() < 1e-6, "{y:?}");
    }
}
