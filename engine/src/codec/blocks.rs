//! The codec's layers on burn: causal/SAME 2-D convs, flax-style transposed convs, and the encoder
//! and decoder residual blocks. Tensors are NCHW with H = STFT time and W = frequency bins.
//!
//! Padding (fixture README C1, "Reference semantics"; sequence-layers `Conv2D`/`Conv2DTranspose`):
//! - conv, stride s, kernel k: time `(k_t − s_t, s_t − 1)` ("semicausal"), frequency total
//!   `k_f − s_f` split floor left / ceil right; output `T/s_t × F/s_f`.
//! - transposed conv: `flax.linen.ConvTranspose` = insert `s − 1` zeros between inputs, pad time
//!   `(k_t − 1, s_t − 1)`, frequency total `k_f + s_f − 2` with left `k_f − 1` if `s_f > k_f − 1`
//!   else `ceil(total / 2)`, then cross-correlate with the stored kernel (no flip).
//!
//! burn's `conv_transpose2d` is PyTorch's, i.e. the zero-inserted input correlated with the
//! *flipped* kernel under full padding `(k − 1, k − 1)`. So [`ConvTranspose2d`] flips the kernel
//! once at load, runs the full transposed conv and crops `k − 1 − left` rows/columns from the
//! front, keeping `T·s_t × F·s_f`. The test module keeps the literal zero-insertion version and
//! compares the two.

use burn::tensor::activation;
use burn::tensor::module::{avg_pool2d, conv2d, conv_transpose2d};
use burn::tensor::ops::{AvgPoolOptions, ConvOptions, ConvTransposeOptions};
use burn::tensor::{Device, Tensor, TensorData};

use super::weights::{BlockParams, ConvParams};
use super::CodecError;

/// ELU with α = 1 (`jax.nn.elu`).
pub fn elu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    activation::elu(x, 1.0)
}

/// Time padding of a semicausal conv.
fn causal_time_padding(k: usize, s: usize) -> (usize, usize) {
    (k - s, s - 1)
}

/// Frequency padding of a SAME conv: total `k − s`, floor left.
pub(super) fn same_freq_padding(k: usize, s: usize) -> (usize, usize) {
    let total = k - s;
    (total / 2, total - total / 2)
}

/// Left padding of a flax transposed conv along one axis (`(k − 1, s − 1)` in time).
pub(super) fn transposed_left_padding(k: usize, s: usize, causal: bool) -> usize {
    if causal {
        k - 1
    } else {
        let total = k + s - 2;
        if s > k - 1 {
            k - 1
        } else {
            total.div_ceil(2)
        }
    }
}

fn bias_tensor(p: &ConvParams, device: &Device) -> Tensor<1> {
    Tensor::from_data(TensorData::new(p.bias.clone(), [p.bias.len()]), device)
}

/// A 2-D conv with semicausal time and SAME frequency padding. Weight `[out, in, k_t, k_f]`.
#[derive(Clone, Debug)]
pub struct Conv2d {
    weight: Tensor<4>,
    bias: Tensor<1>,
    options: ConvOptions<2>,
}

impl Conv2d {
    pub fn new(p: &ConvParams, stride: [usize; 2], device: &Device) -> Result<Self, CodecError> {
        let [kt, kf, cin, cout] = [p.k_time(), p.k_freq(), p.in_channels(), p.out_channels()];
        if kt < stride[0] || kf < stride[1] {
            return Err(CodecError::Unsupported(format!("{}: kernel {kt}×{kf} is smaller than its stride {stride:?}", p.name)));
        }
        // HWIO → OIHW.
        let k = &p.kernel.data;
        let mut w = vec![0f32; k.len()];
        for a in 0..kt {
            for b in 0..kf {
                for i in 0..cin {
                    for o in 0..cout {
                        w[((o * cin + i) * kt + a) * kf + b] = k[((a * kf + b) * cin + i) * cout + o];
                    }
                }
            }
        }
        Ok(Self {
            weight: Tensor::from_data(TensorData::new(w, [cout, cin, kt, kf]), device),
            bias: bias_tensor(p, device),
            options: ConvOptions::new_with_padding(
                stride,
                [causal_time_padding(kt, stride[0]), same_freq_padding(kf, stride[1])],
                [1, 1],
                1,
            ),
        })
    }

    /// `[b, in, t, f] -> [b, out, t/s_t, f/s_f]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        conv2d(x, self.weight.clone(), Some(self.bias.clone()), self.options.clone())
    }
}

/// A flax `ConvTranspose` (causal in time, SAME-style in frequency) on burn's transposed conv.
/// Weight `[in, out, k_t, k_f]`, spatially flipped.
#[derive(Clone, Debug)]
pub struct ConvTranspose2d {
    weight: Tensor<4>,
    bias: Tensor<1>,
    stride: [usize; 2],
    /// Rows/columns dropped from the front of the full transposed conv: `k − 1 − left`.
    crop: [usize; 2],
}

impl ConvTranspose2d {
    pub fn new(p: &ConvParams, stride: [usize; 2], device: &Device) -> Result<Self, CodecError> {
        let [kt, kf, cin, cout] = [p.k_time(), p.k_freq(), p.in_channels(), p.out_channels()];
        let left = [transposed_left_padding(kt, stride[0], true), transposed_left_padding(kf, stride[1], false)];
        // The kept window [k − 1 − left, k − 1 − left + n·s) must lie inside the full output of
        // length (n − 1)·s + k, i.e. left ≥ s − 1; true for every kernel max(3, 2s).
        for (axis, ((&k, &s), &l)) in [kt, kf].iter().zip(&stride).zip(&left).enumerate() {
            if l + 1 < s || l > k - 1 {
                return Err(CodecError::Unsupported(format!(
                    "{}: transposed kernel {kt}×{kf} with stride {stride:?} needs padding this port does not implement (axis {axis})",
                    p.name
                )));
            }
        }
        // HWIO → [in, out, k_t, k_f], flipped in both spatial axes.
        let k = &p.kernel.data;
        let mut w = vec![0f32; k.len()];
        for a in 0..kt {
            for b in 0..kf {
                for i in 0..cin {
                    for o in 0..cout {
                        w[((i * cout + o) * kt + (kt - 1 - a)) * kf + (kf - 1 - b)] = k[((a * kf + b) * cin + i) * cout + o];
                    }
                }
            }
        }
        Ok(Self {
            weight: Tensor::from_data(TensorData::new(w, [cin, cout, kt, kf]), device),
            bias: bias_tensor(p, device),
            stride,
            crop: [kt - 1 - left[0], kf - 1 - left[1]],
        })
    }

    /// `[b, in, t, f] -> [b, out, t·s_t, f·s_f]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [_, _, t, f] = x.dims();
        let options = ConvTransposeOptions::new(self.stride, [0, 0], [0, 0], [1, 1], 1);
        let full = conv_transpose2d(x, self.weight.clone(), Some(self.bias.clone()), options);
        full.narrow(2, self.crop[0], t * self.stride[0]).narrow(3, self.crop[1], f * self.stride[1])
    }
}

/// A 1×1 conv over the last axis as a matmul: `[rows, in] -> [rows, out]`.
#[derive(Clone, Debug)]
pub struct Pointwise {
    /// `[in, out]` (the HWIO kernel with its 1×1 dropped).
    weight: Tensor<2>,
    /// `[1, out]`.
    bias: Tensor<2>,
}

impl Pointwise {
    pub fn new(p: &ConvParams, device: &Device) -> Result<Self, CodecError> {
        if p.k_time() != 1 || p.k_freq() != 1 {
            return Err(CodecError::Unsupported(format!("{}: expected a 1×1 kernel, found {:?}", p.name, p.kernel.shape)));
        }
        let (cin, cout) = (p.in_channels(), p.out_channels());
        Ok(Self {
            weight: Tensor::from_data(TensorData::new(p.kernel.data.clone(), [cin, cout]), device),
            bias: Tensor::from_data(TensorData::new(p.bias.clone(), [1, cout]), device),
        })
    }

    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        x.matmul(self.weight.clone()) + self.bias.clone()
    }
}

/// Nearest-neighbour upsampling: `[b, c, t, f] -> [b, c, t·s_t, f·s_f]`.
pub fn upsample_nearest(x: Tensor<4>, s: [usize; 2]) -> Tensor<4> {
    if s == [1, 1] {
        return x;
    }
    let [b, c, t, f] = x.dims();
    x.reshape([b, c, t, 1, f, 1]).expand([b, c, t, s[0], f, s[1]]).reshape([b, c, t * s[0], f * s[1]])
}

/// Encoder residual block: `conv_a(ELU(conv3x3(ELU(x)))) + conv1x1(avgpool_s(x))`.
#[derive(Clone, Debug)]
pub struct EncoderBlock {
    conv3x3: Conv2d,
    conv_a: Conv2d,
    shortcut: Option<Conv2d>,
    stride: [usize; 2],
}

impl EncoderBlock {
    pub fn new(p: &BlockParams, device: &Device) -> Result<Self, CodecError> {
        Ok(Self {
            conv3x3: Conv2d::new(&p.first, [1, 1], device)?,
            conv_a: Conv2d::new(&p.second, p.stride, device)?,
            shortcut: p.shortcut.as_ref().map(|s| Conv2d::new(s, [1, 1], device)).transpose()?,
            stride: p.stride,
        })
    }

    /// `[b, in, t, f] -> [b, out, t/s_t, f/s_f]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let h = self.conv_a.forward(elu(self.conv3x3.forward(elu(x.clone()))));
        let mut s = x;
        if self.stride != [1, 1] {
            // Non-overlapping windows: [s_t·i, s_t·(i+1)) × [s_f·j, s_f·(j+1)).
            s = avg_pool2d(s, AvgPoolOptions::new(self.stride));
        }
        if let Some(conv) = &self.shortcut {
            s = conv.forward(s);
        }
        h + s
    }
}

/// Decoder residual block: `conv3x3(ELU(up(ELU(x)))) + upsample_s(conv1x1(x))`, `up` the
/// transposed conv (or, in `input_layers_residual_unit`, a stride-1 conv, which is the same
/// function: both pad time (k−1, 0) and frequency (1, 1) for a 3×3 kernel).
#[derive(Clone, Debug)]
pub struct DecoderBlock {
    up: Up,
    conv3x3: Conv2d,
    shortcut: Option<Conv2d>,
    stride: [usize; 2],
}

#[derive(Clone, Debug)]
enum Up {
    Transposed(ConvTranspose2d),
    Plain(Conv2d),
}

impl DecoderBlock {
    /// A block whose first conv is transposed (`decoder_i`).
    pub fn transposed(p: &BlockParams, device: &Device) -> Result<Self, CodecError> {
        Self::with_up(p, Up::Transposed(ConvTranspose2d::new(&p.first, p.stride, device)?), device)
    }

    /// The stride-1 residual unit whose first conv is a plain conv (`input_layers_residual_unit`).
    pub fn plain(p: &BlockParams, device: &Device) -> Result<Self, CodecError> {
        if p.stride != [1, 1] {
            return Err(CodecError::Unsupported(format!("{}: a plain residual unit must have stride 1", p.first.name)));
        }
        Self::with_up(p, Up::Plain(Conv2d::new(&p.first, [1, 1], device)?), device)
    }

    fn with_up(p: &BlockParams, up: Up, device: &Device) -> Result<Self, CodecError> {
        Ok(Self {
            up,
            conv3x3: Conv2d::new(&p.second, [1, 1], device)?,
            shortcut: p.shortcut.as_ref().map(|s| Conv2d::new(s, [1, 1], device)).transpose()?,
            stride: p.stride,
        })
    }

    /// `[b, in, t, f] -> [b, out, t·s_t, f·s_f]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let a = elu(x.clone());
        let up = match &self.up {
            Up::Transposed(c) => c.forward(a),
            Up::Plain(c) => c.forward(a),
        };
        let h = self.conv3x3.forward(elu(up));
        let s = match &self.shortcut {
            Some(conv) => conv.forward(x),
            None => x,
        };
        h + upsample_nearest(s, self.stride)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::codec::weights::HostTensor;

    pub fn device() -> Device {
        crate::DeviceChoice::Flex.device().expect("flex is compiled in")
    }

    fn random(seed: u64, n: usize) -> Vec<f32> {
        let mut rng = crate::sampling::rng::SplitMix64::new(seed);
        (0..n).map(|_| rng.next_normal() as f32).collect()
    }

    fn params(kt: usize, kf: usize, cin: usize, cout: usize, seed: u64) -> ConvParams {
        ConvParams {
            name: "test".into(),
            kernel: HostTensor { shape: vec![kt, kf, cin, cout], data: random(seed, kt * kf * cin * cout) },
            bias: random(seed + 1, cout),
        }
    }

    fn host4(t: Tensor<4>) -> (Vec<usize>, Vec<f32>) {
        let dims = t.dims().to_vec();
        (dims, t.into_data().try_into_vec::<f32>().expect("f32 tensor"))
    }

    /// Direct cross-correlation of `x: [c_in, t, f]` (one batch row) with an HWIO kernel over an
    /// input already padded/dilated by `pad`, in f64.
    fn correlate(x: &[f32], cin: usize, t: usize, f: usize, p: &ConvParams, stride: [usize; 2]) -> (usize, usize, Vec<f64>) {
        let (kt, kf, cout) = (p.k_time(), p.k_freq(), p.out_channels());
        let (to, fo) = ((t - kt) / stride[0] + 1, (f - kf) / stride[1] + 1);
        let mut y = vec![0f64; cout * to * fo];
        for o in 0..cout {
            for i in 0..to {
                for j in 0..fo {
                    let mut acc = f64::from(p.bias[o]);
                    for a in 0..kt {
                        for b in 0..kf {
                            for c in 0..cin {
                                let xv = x[(c * t + i * stride[0] + a) * f + j * stride[1] + b];
                                acc += f64::from(xv) * f64::from(p.kernel.data[((a * kf + b) * cin + c) * cout + o]);
                            }
                        }
                    }
                    y[(o * to + i) * fo + j] = acc;
                }
            }
        }
        (to, fo, y)
    }

    /// Zero padding and zero insertion of `[c, t, f]`: `dil` = stride of the insertion.
    fn pad_dilate(x: &[f32], c: usize, t: usize, f: usize, dil: [usize; 2], pt: (usize, usize), pf: (usize, usize)) -> (usize, usize, Vec<f32>) {
        let (td, fd) = ((t - 1) * dil[0] + 1, (f - 1) * dil[1] + 1);
        let (tp, fp) = (td + pt.0 + pt.1, fd + pf.0 + pf.1);
        let mut y = vec![0f32; c * tp * fp];
        for ch in 0..c {
            for i in 0..t {
                for j in 0..f {
                    y[(ch * tp + pt.0 + i * dil[0]) * fp + pf.0 + j * dil[1]] = x[(ch * t + i) * f + j];
                }
            }
        }
        (tp, fp, y)
    }

    fn assert_close(got: &[f32], want: &[f64], tol: f64) {
        assert_eq!(got.len(), want.len());
        let max = got.iter().zip(want).map(|(&g, &w)| (f64::from(g) - w).abs()).fold(0f64, f64::max);
        assert!(max < tol, "max |diff| {max:e}");
    }

    #[test]
    fn strided_conv_is_semicausal_in_time_and_same_in_frequency() {
        let dev = device();
        for (kt, kf, st, sf) in [(3, 3, 1, 1), (3, 4, 1, 2), (3, 6, 1, 3), (4, 4, 2, 2), (4, 3, 2, 1), (7, 7, 1, 1)] {
            let (cin, cout, t, f) = (3, 5, 8, 12);
            let p = params(kt, kf, cin, cout, 7);
            let x = random(3, cin * t * f);
            let ours = Conv2d::new(&p, [st, sf], &dev).unwrap();
            let (dims, got) = host4(ours.forward(Tensor::from_data(TensorData::new(x.clone(), [1, cin, t, f]), &dev)));
            let (tp, fp, xp) = pad_dilate(&x, cin, t, f, [1, 1], (kt - st, st - 1), ((kf - sf) / 2, (kf - sf) - (kf - sf) / 2));
            let (to, fo, want) = correlate(&xp, cin, tp, fp, &p, [st, sf]);
            assert_eq!(dims, vec![1, cout, t / st, f / sf]);
            assert_eq!((to, fo), (t / st, f / sf));
            assert_close(&got, &want, 1e-4);
        }
    }

    #[test]
    fn transposed_conv_matches_zero_insertion_without_flip() {
        let dev = device();
        for (kt, kf, st, sf) in [(4, 3, 2, 1), (4, 4, 2, 2), (3, 4, 1, 2), (3, 6, 1, 3), (3, 3, 1, 1)] {
            let (cin, cout, t, f) = (4, 3, 5, 6);
            let p = params(kt, kf, cin, cout, 11);
            let x = random(5, cin * t * f);
            let ours = ConvTranspose2d::new(&p, [st, sf], &dev).unwrap();
            let (dims, got) = host4(ours.forward(Tensor::from_data(TensorData::new(x.clone(), [1, cin, t, f]), &dev)));
            // The README's literal recipe.
            let total = kf + sf - 2;
            let left = if sf > kf - 1 { kf - 1 } else { total.div_ceil(2) };
            let (tp, fp, xp) = pad_dilate(&x, cin, t, f, [st, sf], (kt - 1, st - 1), (left, total - left));
            let (to, fo, want) = correlate(&xp, cin, tp, fp, &p, [1, 1]);
            assert_eq!((to, fo), (t * st, f * sf));
            assert_eq!(dims, vec![1, cout, t * st, f * sf]);
            assert_close(&got, &want, 1e-4);
        }
    }

    #[test]
    fn upsampling_repeats_each_cell() {
        let dev = device();
        let x = Tensor::<4>::from_data(TensorData::new(vec![1f32, 2., 3., 4.], [1, 1, 2, 2]), &dev);
        let (dims, y) = host4(upsample_nearest(x, [2, 1]));
        assert_eq!(dims, vec![1, 1, 4, 2]);
        assert_eq!(y, vec![1., 2., 1., 2., 3., 4., 3., 4.]);
    }
}
