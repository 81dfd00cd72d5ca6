//! The GPU path: our own CubeCL kernels on the device's cubecl client (the one burn's tensors use),
//! reached without burn's op graph. Generic over the model family: buffers, weights in the host
//! [`Matrix`] layout uploaded as f32 or packed bf16 words, and one launcher per kernel of
//! [`decode`]. The v1 decoder (`v1::lm::gpu_decoder`) strings them together.
//!
//! ```text
//!  burn Device ── Cube(cubecl::Device) ── client()  (shared with burn: same queue, same memory pools)
//!  Matrix [out, in] ── GpuMatrix (u32 words: f32 bits | two bf16)
//!  Buf ── a handle and its length in elements
//! ```

pub mod decode;
pub mod frame;

use std::sync::atomic::{AtomicBool, Ordering};

use burn::backend::DispatchDevice;
use burn::cubecl::prelude::*;
use burn::cubecl::server::Handle;
use burn::tensor::Device;

use crate::kernels::counters;
use crate::kernels::{Matrix, WeightPrecision};

pub use decode::{ADD, GEGLU, STORE};

/// Why the GPU path cannot run.
#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    #[error("the GPU decoder needs a cubecl device (wgpu or CUDA); {0} has none")]
    NotCube(String),
    #[error("{0}")]
    Unsupported(String),
    #[error("device read: {0}")]
    Read(String),
}

/// A device buffer of `len` elements.
#[derive(Clone, Debug)]
pub struct Buf {
    pub handle: Handle,
    pub len: usize,
}

impl Buf {
    /// The kernel argument over the whole buffer.
    pub fn arg(&self) -> BufferArg {
        // SAFETY: `len` is the element count the buffer was created with.
        unsafe { BufferArg::from_raw_parts(self.handle.clone(), self.len) }
    }
}


/// A weight matrix `[rows, cols]` (the host's `[out, in]` layout) on the device.
#[derive(Clone, Debug)]
pub struct GpuMatrix {
    pub rows: usize,
    pub cols: usize,
    /// u32 words per row: `cols` (f32), `ceil(cols / 2)` (bf16) or `ceil(cols / 4)` (int8).
    pub words: usize,
    /// `decode::F32`, `BF16` or `INT8`.
    pub format: u32,
    pub buf: Buf,
    /// Int8: one scale per row; otherwise one unread value (a binding of its own).
    pub scales: Buf,
}

/// The device and its client.
#[derive(Clone)]
pub struct Gpu {
    pub client: Client,
    pub name: String,
}

impl Gpu {
    /// The cubecl client behind a burn device.
    pub fn new(device: &Device) -> Result<Self, GpuError> {
        match device.as_dispatch() {
            DispatchDevice::Cube(d) => Ok(Self { client: d.client(), name: format!("{d:?}") }),
            #[allow(unreachable_patterns)]
            _ => Err(GpuError::NotCube(format!("{device:?}"))),
        }
    }

    pub fn f32s(&self, v: &[f32]) -> Buf {
        counters::note_upload(std::mem::size_of_val(v));
        Buf { handle: self.client.create_from_slice(f32::as_bytes(v)), len: v.len() }
    }

    pub fn u32s(&self, v: &[u32]) -> Buf {
        counters::note_upload(std::mem::size_of_val(v));
        Buf { handle: self.client.create_from_slice(u32::as_bytes(v)), len: v.len() }
    }

    /// Uninitialised scratch of `len` f32 (or u32) elements, for buffers every reader finds
    /// written (caches, the cross keys/values, per-step rows): no host memset and no upload, which
    /// for base's cross keys/values alone would be 247 MB per chunk.
    pub fn scratch(&self, len: usize) -> Buf {
        let len = len.max(1);
        if POISON_SCRATCH.load(Ordering::Relaxed) {
            let nan = f32::NAN.to_bits().to_le_bytes();
            return Buf { handle: self.client.create_from_slice(&nan.repeat(len)), len };
        }
        Buf { handle: self.client.empty(4 * len), len }
    }

    /// Zeroed scratch of `len` f32 (or u32) elements (an upload of zeros, counted as one).
    pub fn zeros(&self, len: usize) -> Buf {
        let len = len.max(1);
        counters::note_upload(4 * len);
        Buf { handle: self.client.create_from_slice(&vec![0u8; 4 * len]), len }
    }

    /// Overwrites the start of `buf` with `v` (queued in order with the launches; no sync).
    pub fn write_u32(&self, buf: &Buf, v: &[u32]) {
        self.write_bytes(buf, u32::as_bytes(v));
    }

    pub fn write_f32(&self, buf: &Buf, v: &[f32]) {
        self.write_bytes(buf, f32::as_bytes(v));
    }

    /// `bytes` (whole 4-byte elements) over the start of `buf`: one copy into the queued write.
    fn write_bytes(&self, buf: &Buf, bytes: &[u8]) {
        let n = bytes.len() / 4;
        assert!(n <= buf.len, "write of {n} values into a buffer of {}", buf.len);
        counters::note_upload(bytes.len());
        let handle = buf.handle.clone().offset_end(((buf.len - n) * 4) as u64);
        self.client.write(&handle, burn::cubecl::bytes::Bytes::from_bytes_vec(bytes.to_vec()));
    }

    /// Reads `buf` back: one blocking sync, counted.
    pub fn read_u32(&self, buf: &Buf) -> Result<Vec<u32>, GpuError> {
        let bytes = counters::time_sync(4 * buf.len, || self.client.read_one(buf.handle.clone())).map_err(|e| GpuError::Read(format!("{e:?}")))?;
        Ok(u32::from_bytes(&bytes)[..buf.len].to_vec())
    }

    pub fn read_f32(&self, buf: &Buf) -> Result<Vec<f32>, GpuError> {
        Ok(self.read_u32(buf)?.into_iter().map(f32::from_bits).collect())
    }

    /// `m` at `precision`. Int8 keeps the host's quantization (`Matrix::to_precision`: the same
    /// bytes and row scales the host kernels use).
    pub fn matrix(&self, m: &Matrix, precision: WeightPrecision) -> Result<GpuMatrix, GpuError> {
        self.stacked(&[m], precision)
    }

    /// The rows of `parts` one after the other (q | k | v as one product), at `precision`; every
    /// part has the same number of columns.
    pub fn stacked(&self, parts: &[&Matrix], precision: WeightPrecision) -> Result<GpuMatrix, GpuError> {
        let cols = parts.first().map_or(0, |m| m.cols());
        if let Some(m) = parts.iter().find(|m| m.cols() != cols) {
            return Err(GpuError::Unsupported(format!("stacking a {}×{} matrix under {cols} columns", m.rows(), m.cols())));
        }
        let rows: usize = parts.iter().map(|m| m.rows()).sum();
        // Packs `per` elements into each u32 word, element `per·j + k` at bit `k · 32/per`.
        let pack = |per: usize, bits: &mut dyn Iterator<Item = u32>| {
            let words = cols.div_ceil(per);
            let mut data = vec![0u32; rows * words];
            for (n, v) in bits.enumerate() {
                let (r, i) = (n / cols, n % cols);
                data[r * words + i / per] |= v << (32 / per * (i % per));
            }
            (words, data)
        };
        let values = || parts.iter().flat_map(|m| m.to_rows());
        let (format, (words, data), scales) = match precision {
            WeightPrecision::F32 => (decode::F32, pack(1, &mut values().map(f32::to_bits)), None),
            WeightPrecision::Bf16 => (decode::BF16, pack(2, &mut values().map(|v| u32::from(crate::kernels::Bf16::from_f32(v).0))), None),
            WeightPrecision::Int8 => {
                let m8: Vec<Matrix> = parts.iter().map(|m| m.to_precision(WeightPrecision::Int8)).collect();
                let mut q = Vec::with_capacity(rows * cols);
                let mut scale = Vec::with_capacity(rows);
                for m in &m8 {
                    let Some((mq, ms)) = m.int8() else {
                        return Err(GpuError::Unsupported(format!("a {}×{} matrix did not convert to int8", m.rows(), m.cols())));
                    };
                    q.extend_from_slice(mq);
                    scale.extend_from_slice(ms);
                }
                (decode::INT8, pack(4, &mut q.iter().map(|&v| u32::from(v as u8))), Some(self.f32s(&scale)))
            }
        };
        let scales = scales.unwrap_or_else(|| self.zeros(1));
        Ok(GpuMatrix { rows, cols, words, format, buf: self.u32s(&data), scales })
    }
}

impl Gpu {
    /// Records the launches of `body` as a graph (a CUDA graph; cubecl's software graph on
    /// wgpu) without running them; `None` where the backend has no graphs or refuses. The
    /// launches are counted per replay, not here (as many as the counters saw recorded: count
    /// from before the recording, or replays count none).
    pub fn record(&self, body: &dyn Fn()) -> Option<Graph> {
        self.client.start_capture().ok()?;
        counters::recording(true);
        body();
        let launches = counters::recording(false);
        let graph = self.client.stop_capture().ok()?;
        Some(Graph { graph, launches })
    }
}

/// A recorded sequence of launches and how many there are (counted per replay).
pub struct Graph {
    graph: burn::cubecl::client::Graph,
    pub launches: u64,
}

impl Graph {
    /// Runs the recorded launches again, in order on the client's stream.
    pub fn replay(&self) -> Result<(), GpuError> {
        // SAFETY: a graph's buffers are weights and state that its owner keeps alive for as long
        // as it keeps the graph (the decoders drop their graphs first), used only from the
        // recording thread's stream.
        unsafe { self.graph.replay() }.map_err(|e| GpuError::Read(format!("graph replay: {e:?}")))?;
        counters::note_dispatches(self.launches);
        Ok(())
    }
}

/// `gemv`'s cube: lanes per output row (a power of two, about 8 words each, at most 32) and rows
/// per cube, 256 threads in all. Narrow rows (small models) get more rows per cube, so fewer
/// cubes recompute the RMS and fewer barriers run per output.
pub fn gemv_shape(words: usize) -> (u32, u32) {
    let lanes = (words.div_ceil(8)).next_power_of_two().clamp(1, decode::LANES as usize) as u32;
    (lanes, decode::THREADS / lanes)
}

static POISON_SCRATCH: AtomicBool = AtomicBool::new(false);

/// For tests: [`Gpu::scratch`] buffers start as NaN (process-wide), so that a kernel reading one
/// before anything wrote it shows up as non-finite logits or different tokens.
pub fn poison_scratch(on: bool) {
    POISON_SCRATCH.store(on, Ordering::Relaxed);
}

/// What the device sampler picked for a run of draws ([`sample_ids`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Draws {
    pub ids: Vec<u32>,
    /// The first non-finite guided logit: `(draw, index)`.
    pub non_finite: Option<(usize, usize)>,
}

/// The sampler kernel alone, for parity with the host sampler: `uniforms.len()` draws from the
/// same guided logits (`cond`, and `uncond` with guidance weight `w` when given), one per launch
/// as in a chunk, the `i`-th with `uniforms[i]`. `top_k`, `temperature`: as in the sampling
/// settings (`greedy` when `top_k == 1` or `temperature ≤ 0`).
pub fn sample_ids(gpu: &Gpu, cond: &[f32], uncond: Option<(&[f32], f32)>, top_k: usize, temperature: f32, uniforms: &[f32]) -> Result<Draws, GpuError> {
    let n = cond.len();
    let (batch, w, rows) = match uncond {
        Some((u, w)) => {
            assert_eq!(u.len(), n, "cond and uncond logits differ in length");
            (2, w, [cond, u].concat())
        }
        None => (1, 0.0, cond.to_vec()),
    };
    let logits = gpu.f32s(&rows);
    let steps = uniforms.len();
    let us = gpu.f32s(uniforms);
    let table = gpu.zeros(n);
    let tokens = gpu.zeros(steps + 2);
    let x = gpu.zeros(batch);
    let guided = gpu.zeros(n);
    let counter = gpu.zeros(1);
    let greedy = top_k == 1 || temperature <= 0.0;
    let inv_t = (1.0 / f64::from(temperature.max(1e-4))) as f32;
    for _ in 0..steps {
        decode::sample::launch(
            &gpu.client,
            CubeCount::Static(1, 1, 1),
            CubeDim::new_1d(decode::THREADS),
            logits.arg(),
            us.arg(),
            table.arg(),
            tokens.arg(),
            x.arg(),
            guided.arg(),
            counter.arg(),
            n as u32,
            1,
            1,
            0,
            0,
            top_k.min(u32::MAX as usize) as u32,
            inv_t,
            w,
            u32::from(greedy),
            batch,
        );
    }
    let out = gpu.read_u32(&tokens)?;
    let non_finite = (out[0] != 0).then(|| (out[0] as usize - 1, out[1] as usize));
    Ok(Draws { ids: out[2..].to_vec(), non_finite })
}
