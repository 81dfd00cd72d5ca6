//! The SpectroStream decoder on the host: the CPU path's replacement for [`super::Decoder`]'s
//! burn ops, the same function (tests compare the two).
//!
//! burn-flex runs the decoder's convs at ~75 GFLOP/s on this project's 2-core machine (2.5 s for
//! the ~200 GFLOP of a 51-frame chunk); its transposed convs work on the zero-inserted input. Here
//! activations are channels-last (`[batch, time, freq, channels]`, the layout the input layer
//! produces) and every conv, plain or transposed, is a few large `gemm` calls:
//!
//! - **Polyphase transposed convs.** Output row `s·u + r` of a stride-`s` transposed conv only
//!   meets the kernel taps `a` with `(r + a − left) ≡ 0 (mod s)`, each reading input row
//!   `u + (r + a − left)/s`. Each of the `s_t·s_f` phases is therefore a small plain conv over the
//!   undilated input: no multiply by an inserted zero. A stride-1 conv is the one-phase case.
//! - **Convs as shifted products.** The input is zero-padded into `[time + pad, W, channels]`,
//!   `W = freq + pad`. Computing the output on the padded width too, output row `q = u·W + v`
//!   reads input row `q + dt·W + df` for tap `(dt, df)`: a matrix product whose left operand is the
//!   padded buffer itself, offset. The frequency taps of one time tap are consecutive rows, so they
//!   form one product with `K = taps_f · channels`. The `W − freq` junk columns per row are computed
//!   and dropped (40 % extra at 5 bins, < 2 % from 120 bins up).
//! - The ELU before each conv is applied while padding; bias, nearest upsampling and the residual
//!   sum are one pass. Buffers are kept between calls (no page faults per chunk).

use crate::kernels::host::gemm::Parallelism;
use rayon::prelude::*;

use super::blocks::{same_freq_padding, transposed_left_padding};
use super::weights::{BlockParams, ConvParams, DecoderParams};
use super::{CodecConfig, CodecError};
use crate::kernels::host::{gemm_checked, gemm_serial};
use crate::kernels::host::vmath;

mod profile;
pub use profile::{GemmShape, Profile};

/// Zero margins around the input of a conv: rows before/after in time, columns left/right in
/// frequency.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Pads {
    top: usize,
    bottom: usize,
    left: usize,
    right: usize,
}

impl Pads {
    fn width(&self, f: usize) -> usize {
        f + self.left + self.right
    }

    /// Padded rows per batch item, with one row of `W` slack at the end: the last junk outputs
    /// of the shifted products read up to `left + right` rows past the padded block.
    fn rows(&self, t: usize, f: usize) -> usize {
        (t + self.top + self.bottom + 1) * self.width(f)
    }
}

/// One output phase `(r_t, r_f)` of a conv: output `(s_t·u + r_t, s_f·v + r_f)` is the bias plus
/// `Σ_taps input(u + dt, v + df0 + j) · W[a, b_j]`.
#[derive(Clone, Debug)]
struct Phase {
    rt: usize,
    rf: usize,
    /// Frequency offset of the first tap and the number of taps (offsets `df0 .. df0 + nf`).
    df0: isize,
    nf: usize,
    /// Per time tap: its offset and its `[nf·in, out]` kernel (the frequency taps stacked).
    time_taps: Vec<(isize, Vec<f32>)>,
}

/// A conv (plain stride 1, or flax-transposed with stride `s`) as phases of shifted products.
#[derive(Clone, Debug)]
struct HostConv {
    cin: usize,
    cout: usize,
    stride: [usize; 2],
    phases: Vec<Phase>,
    bias: Vec<f32>,
    pads: Pads,
}

/// `(tap, offset)` of the taps of phase `r` along one axis: tap `a` reads input
/// `u + (r + a − left)/s` when the division is exact.
fn axis_taps(k: usize, s: usize, left: usize, r: usize) -> Vec<(usize, isize)> {
    let s = s as isize;
    (0..k)
        .filter_map(|a| {
            let n = (r + a) as isize - left as isize;
            (n.rem_euclid(s) == 0).then_some((a, n.div_euclid(s)))
        })
        .collect()
}

impl HostConv {
    /// A stride-1 conv, semicausal in time (`k_t − 1` rows before), SAME in frequency.
    fn plain(p: &ConvParams) -> Result<Self, CodecError> {
        let (kt, kf) = (p.k_time(), p.k_freq());
        Self::new(p, [1, 1], [kt - 1, same_freq_padding(kf, 1).0])
    }

    /// A flax `ConvTranspose`, causal in time, with the stride's output length.
    fn transposed(p: &ConvParams, stride: [usize; 2]) -> Result<Self, CodecError> {
        let (kt, kf) = (p.k_time(), p.k_freq());
        if kt < stride[0] || kf < stride[1] {
            return Err(CodecError::Unsupported(format!("{}: transposed kernel {kt}×{kf} is smaller than its stride {stride:?}", p.name)));
        }
        Self::new(p, stride, [transposed_left_padding(kt, stride[0], true), transposed_left_padding(kf, stride[1], false)])
    }

    /// `left`: the left padding of the (dilated) input along each axis in the reference recipe.
    fn new(p: &ConvParams, stride: [usize; 2], left: [usize; 2]) -> Result<Self, CodecError> {
        let [kt, kf, cin, cout] = [p.k_time(), p.k_freq(), p.in_channels(), p.out_channels()];
        if p.bias.len() != cout {
            return Err(CodecError::Unsupported(format!("{}: {} biases for {cout} outputs", p.name, p.bias.len())));
        }
        let k = &p.kernel.data;
        let tap = |a: usize, b: usize| &k[(a * kf + b) * cin * cout..][..cin * cout];
        let mut phases = Vec::with_capacity(stride[0] * stride[1]);
        let (mut lo_t, mut hi_t, mut lo_f, mut hi_f) = (0isize, 0isize, 0isize, 0isize);
        for rt in 0..stride[0] {
            let ts = axis_taps(kt, stride[0], left[0], rt);
            for rf in 0..stride[1] {
                let fs = axis_taps(kf, stride[1], left[1], rf);
                // Consecutive offsets: taps b₀, b₀ + s, … read v + d₀, v + d₀ + 1, ….
                let df0 = fs.first().map_or(0, |&(_, d)| d);
                debug_assert!(fs.iter().enumerate().all(|(j, &(_, d))| d == df0 + j as isize));
                let time_taps = ts
                    .iter()
                    .map(|&(a, dt)| {
                        let mut w = Vec::with_capacity(fs.len() * cin * cout);
                        for &(b, _) in &fs {
                            w.extend_from_slice(tap(a, b));
                        }
                        (dt, w)
                    })
                    .collect::<Vec<_>>();
                if !fs.is_empty() {
                    for &(dt, _) in &time_taps {
                        (lo_t, hi_t) = (lo_t.min(dt), hi_t.max(dt));
                    }
                    (lo_f, hi_f) = (lo_f.min(df0), hi_f.max(df0 + fs.len() as isize - 1));
                }
                phases.push(Phase { rt, rf, df0, nf: fs.len(), time_taps });
            }
        }
        let pads = Pads { top: (-lo_t) as usize, bottom: hi_t as usize, left: (-lo_f) as usize, right: hi_f as usize };
        Ok(Self { cin, cout, stride, phases, bias: p.bias.clone(), pads })
    }

    /// `padded` (from [`pad`] with `self.pads`, `b × [t, f, in]` inside) → `out: [b, t·s_t, f·s_f, out]`.
    #[allow(clippy::too_many_arguments)] // One layer's geometry and its buffers.
    fn forward(&self, padded: &[f32], b: usize, t: usize, f: usize, out: &mut Vec<f32>, phase_buf: &mut Vec<f32>, stream: bool) {
        let (cin, cout) = (self.cin, self.cout);
        let w = self.pads.width(f);
        let rows = self.pads.rows(t, f);
        let (to, fo) = (t * self.stride[0], f * self.stride[1]);
        let m = t * w;
        let ph = grow(phase_buf, m * cout);
        let out = grow(out, b * to * fo * cout);
        for (item, out) in out.chunks_exact_mut(to * fo * cout).enumerate() {
            let input = &padded[item * rows * cin..][..rows * cin];
            for phase in &self.phases {
                ph.par_chunks_mut(cout * 256).for_each(|rows| {
                    for row in rows.chunks_exact_mut(cout) {
                        row.copy_from_slice(&self.bias);
                    }
                });
                for (dt, kernel) in &phase.time_taps {
                    if phase.nf == 0 {
                        break;
                    }
                    let start = (self.pads.top as isize + dt) as usize * w + (self.pads.left as isize + phase.df0) as usize;
                    let k = phase.nf * cin;
                    product(stream, m, cout, k, &input[start * cin..], cin, kernel, ph);
                }
                // Scatter the valid columns into the phase's rows and columns of the output.
                let (st, sf, rt, rf) = (self.stride[0], self.stride[1], phase.rt, phase.rf);
                let ph = &*ph;
                out.par_chunks_mut(st * fo * cout).enumerate().for_each(|(u, dst)| {
                    let dst = &mut dst[rt * fo * cout..][..fo * cout];
                    for v in 0..f {
                        dst[(v * sf + rf) * cout..][..cout].copy_from_slice(&ph[(u * w + v) * cout..][..cout]);
                    }
                });
            }
        }
    }
}

/// A 1×1 conv: `[rows, in] → [rows, out]`.
#[derive(Clone, Debug)]
struct Pointwise {
    cin: usize,
    cout: usize,
    kernel: Vec<f32>,
    bias: Vec<f32>,
}

impl Pointwise {
    fn new(p: &ConvParams) -> Result<Self, CodecError> {
        if p.k_time() != 1 || p.k_freq() != 1 {
            return Err(CodecError::Unsupported(format!("{}: expected a 1×1 kernel, found {:?}", p.name, p.kernel.shape)));
        }
        Ok(Self { cin: p.in_channels(), cout: p.out_channels(), kernel: p.kernel.data.clone(), bias: p.bias.clone() })
    }

    /// `out (+)= x · W + bias` over `rows` rows.
    fn forward(&self, x: &[f32], rows: usize, out: &mut [f32], accumulate: bool, stream: bool) {
        let out = &mut out[..rows * self.cout];
        out.par_chunks_mut(self.cout * 256).for_each(|chunk| {
            for row in chunk.chunks_exact_mut(self.cout) {
                if accumulate {
                    row.iter_mut().zip(&self.bias).for_each(|(o, b)| *o += b);
                } else {
                    row.copy_from_slice(&self.bias);
                }
            }
        });
        product(stream, rows, self.cout, self.cin, x, self.cin, &self.kernel, out);
    }
}

/// `dst[m, n] += A[m, k] · B[k, n]` (A rows at stride `a_rs`, B and dst dense): the `gemm`
/// crate, or for a stream's step ([`Scratch::stream`]) [`gemm_serial`] on blocks of rows split
/// over the pool, which allocates nothing when called from a thread of the pool.
#[allow(clippy::too_many_arguments)]
fn product(stream: bool, m: usize, n: usize, k: usize, a: &[f32], a_rs: usize, b: &[f32], dst: &mut [f32]) {
    if stream {
        let task = m.div_ceil(rayon::current_num_threads().max(1)).next_multiple_of(6);
        if task >= m {
            gemm_serial(m, n, k, a, a_rs, b, n, dst, n, true);
            return;
        }
        dst[..m * n].par_chunks_mut(task * n).enumerate().for_each(|(i, d)| {
            gemm_serial(d.len() / n, n, k, &a[i * task * a_rs..], a_rs, b, n, d, n, true);
        });
    } else {
        gemm_checked(m, n, k, a, a_rs, 1, b, n, 1, dst, n, true, Parallelism::Rayon(0));
    }
}

/// `v[..n]`, grown (never shrunk) to hold `n` values; the contents are stale.
fn grow(v: &mut Vec<f32>, n: usize) -> &mut [f32] {
    if v.len() < n {
        v.resize(n, 0.0);
    }
    &mut v[..n]
}

/// `src: b × [t, f, c]` → `dst: b × [rows, c]` zero-padded by `pads` (see [`Pads::rows`]), with
/// ELU applied on the way.
///
/// With `history` (`b × [top, W, c]`, a stream's state) the `top` rows before the input are the
/// previous call's last padded rows instead of zeros, and they are then replaced by this call's
/// last `top` rows: every conv here is causal in time (`bottom` = 0), so this is all a conv
/// needs to continue a sequence exactly.
#[allow(clippy::too_many_arguments)] // One layer's geometry and the stream's buffers.
fn pad_elu(src: &[f32], b: usize, t: usize, f: usize, c: usize, pads: Pads, dst: &mut Vec<f32>, history: Option<&mut Vec<f32>>) {
    let w = pads.width(f);
    let per_item = pads.rows(t, f) / w; // padded time rows per item, slack included
    let dst = grow(dst, b * per_item * w * c);
    let block = pads.top * w * c; // history values per item
    let history = history.map(|h| grow(h, b * block));
    let past = history.as_deref();
    dst.par_chunks_mut(w * c).enumerate().for_each(|(i, row)| {
        let (item, r) = (i / per_item, i % per_item);
        if r < pads.top {
            match past {
                Some(h) => row.copy_from_slice(&h[item * block + r * w * c..][..w * c]),
                None => row.fill(0.0),
            }
            return;
        }
        if r >= pads.top + t {
            row.fill(0.0);
            return;
        }
        let (lo, hi) = row.split_at_mut(pads.left * c);
        lo.fill(0.0);
        let (mid, hi) = hi.split_at_mut(f * c);
        hi.fill(0.0);
        vmath::elu_into(&src[(item * t + r - pads.top) * f * c..][..f * c], mid);
    });
    if let Some(h) = history {
        debug_assert_eq!(pads.bottom, 0, "a streamed conv must be causal in time");
        if block > 0 {
            for (item, h) in h.chunks_exact_mut(block).enumerate() {
                // Padded rows t .. t + top of this item: the newest `top` rows, history included.
                h.copy_from_slice(&dst[(item * per_item + t) * w * c..][..block]);
            }
        }
    }
}

/// A decoder residual block: `conv(ELU(up(ELU(x)))) + upsample(shortcut(x))`.
#[derive(Clone, Debug)]
struct Block {
    up: HostConv,
    conv: HostConv,
    shortcut: Option<Pointwise>,
    stride: [usize; 2],
}

impl Block {
    fn new(p: &BlockParams, transposed: bool) -> Result<Self, CodecError> {
        let up = if transposed {
            HostConv::transposed(&p.first, p.stride)?
        } else {
            if p.stride != [1, 1] {
                return Err(CodecError::Unsupported(format!("{}: a plain residual unit must have stride 1", p.first.name)));
            }
            HostConv::plain(&p.first)?
        };
        Ok(Self { up, conv: HostConv::plain(&p.second)?, shortcut: p.shortcut.as_ref().map(Pointwise::new).transpose()?, stride: p.stride })
    }

    fn out_channels(&self) -> usize {
        self.conv.cout
    }

    /// `s.x: [b, t, f, in]` → `s.x: [b, t·s_t, f·s_f, out]`; returns the new `(t, f)`. With
    /// `history` (a stream's state of this block) the input continues the previous call's.
    fn forward(&self, s: &mut Scratch, b: usize, t: usize, f: usize, history: Option<&mut [Vec<f32>; 2]>) -> (usize, usize) {
        let (cin, cout) = (self.up.cin, self.out_channels());
        let (to, fo) = (t * self.stride[0], f * self.stride[1]);
        let [h_up, h_conv] = match history {
            Some([a, b]) => [Some(a), Some(b)],
            None => [None, None],
        };
        let stream = s.stream;
        pad_elu(&s.x, b, t, f, cin, self.up.pads, &mut s.pad, h_up);
        self.up.forward(&s.pad, b, t, f, &mut s.y, &mut s.phase, stream);
        pad_elu(&s.y, b, to, fo, cout, self.conv.pads, &mut s.pad, h_conv);
        self.conv.forward(&s.pad, b, to, fo, &mut s.y, &mut s.phase, stream);
        let short: &[f32] = match &self.shortcut {
            Some(sc) => {
                let out = grow(&mut s.short, b * t * f * cout);
                sc.forward(&s.x, b * t * f, out, false, stream);
                out
            }
            None => &s.x[..b * t * f * cout],
        };
        let [st, sf] = self.stride;
        s.y[..b * to * fo * cout].par_chunks_mut(fo * cout).enumerate().for_each(|(i, row)| {
            let (item, tt) = (i / to, i % to);
            let src = &short[(item * t + tt / st) * f * cout..][..f * cout];
            for (v, dst) in row.chunks_exact_mut(cout).enumerate() {
                dst.iter_mut().zip(&src[(v / sf) * cout..][..cout]).for_each(|(d, x)| *d += x);
            }
        });
        std::mem::swap(&mut s.x, &mut s.y);
        (to, fo)
    }
}

/// What a frame-by-frame decode carries from one call to the next: per conv, its last `k_t − 1`
/// padded (ELU'd) input rows, `[items, k_t − 1, W, channels]`. Empty until first used (zeros,
/// the whole-clip decode's padding, are what the buffers grow with); [`History::reset`] zeroes it.
#[derive(Debug, Default)]
pub struct History {
    residual: [Vec<f32>; 2],
    blocks: Vec<[Vec<f32>; 2]>,
    out: Vec<f32>,
}

impl History {
    /// Back to the state before the first frame, keeping the buffers.
    pub fn reset(&mut self) {
        for v in self.residual.iter_mut().chain(self.blocks.iter_mut().flatten()).chain([&mut self.out]) {
            v.fill(0.0);
        }
    }

    /// Every buffer in a fixed order (residual unit, each block's two, output conv); empty
    /// before the first frame. What a saved stream keeps.
    pub fn buffers(&self) -> Vec<&[f32]> {
        if self.blocks.is_empty() && self.out.is_empty() && self.residual.iter().all(Vec::is_empty) {
            return Vec::new();
        }
        self.residual.iter().chain(self.blocks.iter().flatten()).chain([&self.out]).map(Vec::as_slice).collect()
    }

    /// The inverse of [`History::buffers`]: `bufs` is empty (before the first frame) or holds
    /// `3 + 2·blocks` buffers. Returns false (and changes nothing) for any other count.
    pub fn restore(&mut self, mut bufs: Vec<Vec<f32>>, blocks: usize) -> bool {
        if bufs.is_empty() {
            *self = History::default();
            return true;
        }
        if bufs.len() != 3 + 2 * blocks {
            return false;
        }
        let out = bufs.pop().expect("checked: at least 3 buffers");
        let mut it = bufs.into_iter();
        let mut next = || it.next().expect("checked: 2 + 2·blocks buffers left");
        self.residual = [next(), next()];
        self.blocks = (0..blocks).map(|_| [next(), next()]).collect();
        self.out = out;
        true
    }
}

/// Buffers reused between calls, owned by the caller's stream.
#[derive(Debug, Default)]
pub struct Scratch {
    /// A stream's step: products with [`gemm_serial`] ([`Scratch::stream`]).
    stream: bool,
    x: Vec<f32>,
    y: Vec<f32>,
    pad: Vec<f32>,
    phase: Vec<f32>,
    short: Vec<f32>,
}

impl Scratch {
    /// Buffers for a stream's steps: the products run as [`gemm_serial`] on blocks of rows
    /// (no packing buffers), so a step run inside the pool allocates nothing once the buffers
    /// have grown.
    pub fn stream() -> Self {
        Self { stream: true, ..Self::default() }
    }
}

/// The decoder network on the host: latent `[b, S, D]` → spectrogram `[b, 2·ch, 4·S − crop, bins]`,
/// exactly [`super::Decoder::forward`].
#[derive(Debug)]
pub struct HostDecoder {
    in_first: Pointwise,
    in_b1: Pointwise,
    in_b2: Pointwise,
    bins: usize,
    residual: Block,
    blocks: Vec<Block>,
    split_at: usize,
    splits: usize,
    out: HostConv,
    crop_frames: usize,
}

impl HostDecoder {
    /// Upsampling blocks (the count a stream's [`History`] holds pairs for).
    pub fn num_blocks(&self) -> usize {
        self.blocks.len()
    }

    pub fn new(config: &CodecConfig, p: &DecoderParams) -> Result<Self, CodecError> {
        let channels = p.residual.first.in_channels();
        let bins = config.latent_bins();
        let in_b2 = Pointwise::new(&p.in_b2)?;
        if in_b2.cout != channels * bins {
            return Err(CodecError::Unsupported(format!(
                "{}: {} outputs do not reshape to {bins} bins × {channels} channels",
                p.in_b2.name, in_b2.cout
            )));
        }
        Ok(Self {
            in_first: Pointwise::new(&p.in_first)?,
            in_b1: Pointwise::new(&p.in_b1)?,
            in_b2,
            bins,
            residual: Block::new(&p.residual, false)?,
            blocks: p.blocks.iter().map(|b| Block::new(b, true)).collect::<Result<_, _>>()?,
            split_at: config.fused_blocks(),
            splits: config.audio_channels,
            out: HostConv::plain(&p.out)?,
            crop_frames: config.decoder_lookahead_frames * config.stft_frames_per_frame(),
        })
    }

    pub fn latent_dim(&self) -> usize {
        self.in_first.cin
    }

    /// `latent: [b, frames, D]` → `(spec [b, 2·ch, t, bins], t)`, `t = 4·frames − crop`.
    pub fn forward(&self, latent: &[f32], b: usize, frames: usize, s: &mut Scratch) -> Result<(Vec<f32>, usize), CodecError> {
        let mut spec = Vec::new();
        let t = self.forward_into(latent, b, frames, s, None, self.crop_frames, &mut spec)?;
        Ok((spec, t))
    }

    /// STFT frames per codec frame of the output (4).
    pub fn frames_per_latent(&self) -> usize {
        self.blocks.iter().map(|b| b.stride[0]).product()
    }

    /// STFT frames dropped from the front of a whole-clip decode (the look-ahead, 4).
    pub fn crop_frames(&self) -> usize {
        self.crop_frames
    }

    /// [`HostDecoder::forward`] into `spec` (grown, never shrunk: `spec[..b·2·ch·t·bins]` is the
    /// result) with the first `crop` output frames dropped, returning `t`. With `history` the
    /// latent frames continue the sequence of the previous call made with it (a stream's state:
    /// every conv is causal in time and keeps its last input rows there; the transposed convs
    /// produce all `s_t` output rows of an input row at once, so nothing else is pending).
    #[allow(clippy::too_many_arguments)] // The buffers of one call, all owned by the caller's stream.
    pub(super) fn forward_into(
        &self,
        latent: &[f32],
        b: usize,
        frames: usize,
        s: &mut Scratch,
        mut history: Option<&mut History>,
        crop: usize,
        spec: &mut Vec<f32>,
    ) -> Result<usize, CodecError> {
        let d = self.latent_dim();
        if b == 0 || frames == 0 || latent.len() != b * frames * d {
            return Err(CodecError::BadInput(format!("{} latent values are not {b} clips × {frames} frames × {d}", latent.len())));
        }
        if let Some(h) = &mut history {
            h.blocks.resize_with(self.blocks.len(), Default::default);
        }
        // Input layer: x·W_first + b_first + ELU(x·W_b1 + b_b1)·W_b2 + b_b2 = [b, S, bins, C].
        let rows = b * frames;
        let width = self.in_b2.cout;
        let hidden = grow(&mut s.short, rows * self.in_b1.cout);
        let stream = s.stream;
        self.in_b1.forward(latent, rows, hidden, false, stream);
        vmath::elu_in_place(hidden);
        let x = grow(&mut s.x, rows * width);
        self.in_b2.forward(hidden, rows, x, false, stream);
        self.in_first.forward(latent, rows, x, true, stream);
        let (mut t, mut f, mut batch) = (frames, self.bins, b);
        (t, f) = self.residual.forward(s, batch, t, f, history.as_deref_mut().map(|h| &mut h.residual));
        let mut c = self.residual.out_channels();
        for (i, block) in self.blocks.iter().enumerate() {
            if i == self.split_at {
                batch = self.split(s, batch, t, f, c);
            }
            (t, f) = block.forward(s, batch, t, f, history.as_deref_mut().map(|h| &mut h.blocks[i]));
            c = block.out_channels();
        }
        if self.split_at == self.blocks.len() {
            batch = self.split(s, batch, t, f, c);
        }
        let c = self.out.cin;
        pad_elu(&s.x, batch, t, f, c, self.out.pads, &mut s.pad, history.map(|h| &mut h.out));
        self.out.forward(&s.pad, batch, t, f, &mut s.y, &mut s.phase, stream); // [ch·b, t, f, 2]
        // Halves back on channels, look-ahead frames dropped: [b, 2·ch, t − crop, f].
        let parts = self.out.cout;
        let crop = crop.min(t);
        let kept = t - crop;
        let spec = grow(spec, b * self.splits * parts * kept * f);
        let y = &s.y;
        spec.par_chunks_mut((kept * f).max(1)).enumerate().for_each(|(i, plane)| {
            let (r, ch) = (i / (self.splits * parts), i % (self.splits * parts));
            let (k, j) = (ch / parts, ch % parts);
            let item = k * b + r;
            for (tt, row) in plane.chunks_exact_mut(f).enumerate() {
                let src = &y[((item * t + tt + crop) * f) * parts..][..f * parts];
                for (v, o) in row.iter_mut().enumerate() {
                    *o = src[v * parts + j];
                }
            }
        });
        Ok(kept)
    }

    /// `s.x: [b, t, f, splits·c]` → `[splits·b, t, f, c]`, half `k` of item `r` at row `k·b + r`.
    fn split(&self, s: &mut Scratch, b: usize, t: usize, f: usize, channels: usize) -> usize {
        let c = channels / self.splits;
        let n = b * t * f * channels;
        let y = grow(&mut s.y, n);
        let x = &s.x[..n];
        y.par_chunks_mut(t * f * c).enumerate().for_each(|(i, dst)| {
            let (k, r) = (i / b, i % b);
            for (p, d) in dst.chunks_exact_mut(c).enumerate() {
                d.copy_from_slice(&x[((r * t * f) + p) * channels + k * c..][..c]);
            }
        });
        std::mem::swap(&mut s.x, &mut s.y);
        b * self.splits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_cover_every_tap_once_with_consecutive_offsets() {
        for (k, s, left) in [(4, 2, 3), (4, 2, 2), (6, 3, 4), (3, 1, 1), (3, 1, 2), (7, 1, 3), (4, 1, 1)] {
            let mut seen = vec![0; k];
            for r in 0..s {
                let taps = axis_taps(k, s, left, r);
                assert!(!taps.is_empty(), "k {k} s {s} r {r}");
                for (j, &(a, d)) in taps.iter().enumerate() {
                    seen[a] += 1;
                    assert_eq!(d, taps[0].1 + j as isize);
                    assert_eq!((r + a) as isize - left as isize, d * s as isize);
                }
            }
            assert!(seen.iter().all(|&n| n == 1), "k {k} s {s}: {seen:?}");
        }
    }

    /// The host decoder equals burn's [`super::super::Decoder`] (itself checked against the
    /// reference by the C1 ladder) on random weights: the released layout at the C1 fixture's
    /// widths, two fused blocks, and a mono codec with other strides.
    #[test]
    fn host_decoder_equals_the_burn_decoder() {
        use burn::tensor::{Tensor, TensorData};

        use crate::codec::weights::{random_files, CodecWeights, CodecWidths};
        use crate::codec::Decoder;

        let device = crate::DeviceChoice::Flex.device().expect("flex is compiled in");
        let stereo = CodecConfig::spectrostream_48k_stereo();
        let fused2 = CodecConfig { channel_recombo_block: -3, ..stereo.clone() };
        let mono = CodecConfig { audio_channels: 1, ratios: vec![[1, 2], [2, 3], [2, 1], [1, 2]], ..stereo.clone() };
        let odd = CodecWidths { encoder_base: 3, decoder_base: 5, latent: 12, levels: 2, codebook_size: 8, mults: vec![2, 1, 3, 1] };
        for (name, config, widths, batch, frames) in
            [("stereo", &stereo, CodecWidths::c1(), 2, 5), ("fused 2", &fused2, CodecWidths::c1(), 1, 4), ("mono", &mono, odd, 2, 3)]
        {
            let [e, d, q] = random_files(config, &widths, 17);
            let weights = CodecWeights::from_files(&e, &d, Some(&q), config).expect("random weights load");
            let burn = Decoder::new(config, &weights.decoder, &device).expect("burn decoder");
            let host = HostDecoder::new(config, &weights.decoder).expect("host decoder");
            let dim = host.latent_dim();
            let mut rng = crate::sampling::rng::SplitMix64::new(5);
            let latent: Vec<f32> = (0..batch * frames * dim).map(|_| rng.next_normal() as f32).collect();
            let want = burn.forward(Tensor::<3>::from_data(TensorData::new(latent.clone(), [batch, frames, dim]), &device));
            let want_dims = want.dims();
            let want = want.into_data().try_into_vec::<f32>().expect("f32");
            // Twice: the second call reuses the scratch buffers, which must not leak state.
            let mut scratch = Scratch::default();
            for call in 0..2 {
                let (got, t) = host.forward(&latent, batch, frames, &mut scratch).expect("host forward");
                assert_eq!(t, want_dims[2], "{name}: frames");
                assert_eq!(got.len(), want.len(), "{name}: size");
                let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
                let diff = got.iter().zip(&want).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
                println!("{name} call {call}: {want_dims:?}, max |diff| {diff:e} at scale {scale:e}");
                assert!(scale > 0.0 && diff <= 1e-5 * scale.max(1.0), "{name} call {call}: max |diff| {diff:e} at scale {scale:e}");
            }
        }
    }
}
