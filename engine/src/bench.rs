//! `mrt bench`: timings at the real model size with random weights (no download needed).
//!
//! The LM decode is memory-bound on a CPU: every depth step streams the depth layers and the
//! `[d, vocab]` logits kernel, every temporal step the temporal layers. [`LmBenchReport`] reports
//! the bytes of weights a chunk reads and the machine's measured read bandwidth, so the distance
//! to the floor (`bytes / bandwidth`) is visible next to the measured time.

use std::time::Instant;

use burn::tensor::Device;
use serde::Serialize;

use crate::kernels::counters::PartCounts;
use crate::kernels::host::stream_sum;
use crate::v1::lm::weights::HostWeights;
use crate::v1::lm::{DecodeHooks, DepthLogits, Depthformer, LmConfig, LmOptions, LmScratch, SamplingParams, StepTimes};
use crate::{Compute, Target};

#[derive(Clone, Debug, Serialize)]
pub struct LmBenchReport {
    pub size: String,
    pub device: String,
    /// Threads of the CPU pool (rayon), which burn-flex and the host kernels share.
    pub threads: usize,
    /// `host kernels (avx512)` or `burn ops`.
    pub path: String,
    pub options: LmOptions,
    pub chunks: usize,
    /// Temporal and depth steps per chunk.
    pub frames: usize,
    pub tokens: usize,
    pub load_s: f64,
    /// Encoder and the cross-attention keys/values of every temporal layer (once per chunk).
    pub encoder_ms: f64,
    pub temporal_step_ms: f64,
    /// One depth step including the logits, as the decode loop runs it.
    pub depth_step_ms: f64,
    /// Of which the logits product (host kernels only; burn runs it in the same graph).
    pub logits_ms_per_step: Option<f64>,
    /// Sampling and the host side of each depth step (CFG combine, top-k, draw).
    pub sampling_ms_per_step: f64,
    pub chunk_s: f64,
    /// GPU kernels: the chunk with every launch issued eagerly (`chunk_s` replays the recorded
    /// temporal and depth steps); `None` on other paths.
    pub eager_chunk_s: Option<f64>,
    pub real_time_factor: f64,
    pub peak_rss_bytes: Option<u64>,
    pub device_bytes_in_use: Option<u64>,
    /// Kernel launches per chunk: the same count as `dispatches_per_chunk` (kept for old readers).
    pub launches_per_chunk: Option<u64>,
    /// Kernel dispatches of one chunk as generation runs it (cubecl's launch observer); `None`
    /// on flex, where there are no kernel launches to count.
    pub dispatches_per_chunk: Option<u64>,
    /// Blocking device → host readbacks of one chunk.
    pub syncs_per_chunk: u64,
    pub d2h_bytes_per_chunk: u64,
    /// Host → device copies (ids, activations) of one chunk and their bytes.
    pub h2d_uploads_per_chunk: u64,
    pub h2d_bytes_per_chunk: u64,
    /// Host issue time (from each sync's return to the last launch before the next sync, host
    /// sampling excluded) ÷ dispatches, µs; `None` on flex.
    pub host_us_per_dispatch: Option<f64>,
    /// The same under cubecl's `DryRun` (launches compiled and dropped: no device work), µs.
    pub host_us_per_dispatch_dry_run: Option<f64>,
    /// The counted chunk's host issue time and the time it then waited in readbacks, seconds.
    pub host_issue_s_per_chunk: f64,
    pub sync_wait_s_per_chunk: f64,
    /// burn operations registered with the fusion server, and the blocks it ran (one fused
    /// kernel's worth, or one unfused operation); `None` without fusion (flex).
    pub burn_ops_per_chunk: Option<u64>,
    pub fused_blocks_per_chunk: Option<u64>,
    pub dispatches_per_temporal_step: Option<f64>,
    pub dispatches_per_depth_step: Option<f64>,
    /// The counts split by part of the loop (from a second chunk with the device drained at each
    /// part boundary, so lazily fused work lands in the part that issued it).
    pub counts_by_part: CountsByPart,
    /// The chunk time a GPU would take by the model in [`GpuPrediction`] from this run's counts
    /// (burn path, f32 weights); `None` without dispatch counts (flex).
    pub predicted_h100_chunk_s: Option<f64>,
    pub predicted_h200_chunk_s: Option<f64>,
    /// The model's assumed constants and, scaled from these counts, the released sizes.
    pub prediction: GpuPrediction,
    /// Bytes a chunk must read from memory: weights (encoder once, temporal × frames, depth and
    /// logits × tokens, at the stored precision) plus the cross-attention K/V every temporal step.
    pub bytes_per_chunk: u64,
    pub measured_read_bandwidth_gbs: f64,
    /// `bytes_per_chunk / bandwidth`: the memory floor of one chunk.
    pub floor_chunk_s: f64,
    /// Arithmetic of the encoder and the cross-attention K/V per chunk (both CFG rows), GFLOP.
    pub encoder_gflop_per_chunk: f64,
    /// Best-of-3 rate of an encoder-shaped f32 matrix product (`[2012, 768] · [768, 2048]`) on
    /// this machine's cores with the library the encoder uses, GFLOP/s.
    pub measured_gemm_gflops: f64,
    /// The floor with the encoder costed by arithmetic: encoder GFLOP / product rate, plus the
    /// decode steps' bytes (everything but the once-per-chunk encoder and cross K/V weights) /
    /// bandwidth. The encoder is compute-bound, which the memory floor does not see.
    pub roofline_floor_chunk_s: f64,
}

/// Floating-point operations of the encoder and the cross-attention K/V of one chunk with `batch`
/// CFG rows: projections, MLP and attention over the encoder length, then the K/V of every
/// temporal layer.
pub fn encoder_flops_per_chunk(c: &LmConfig, batch: u64) -> f64 {
    let (d, inner, mlp, len) = (c.d_model as f64, c.inner_dim() as f64, c.mlp_dim as f64, c.encoder_len() as f64);
    let per_token_layer = 8.0 * d * inner + 6.0 * d * mlp + 4.0 * len * inner;
    let per_token = c.encoder_layers as f64 * per_token_layer + c.temporal_layers as f64 * 4.0 * d * inner;
    batch as f64 * len * per_token
}

/// Bytes of the weights read once per chunk (encoder layers and cross-attention K/V kernels, f32).
fn once_per_chunk_weight_bytes(c: &LmConfig) -> u64 {
    let (d, inner) = (c.d_model as u64, c.inner_dim() as u64);
    let enc = c.encoder_layers as u64 * (4 * d * inner + 3 * d * c.mlp_dim as u64);
    4 * (enc + c.temporal_layers as u64 * 2 * d * inner)
}

/// Best-of-3 GFLOP/s of `[2012, 768] · [768, 2048]` in f32 on the rayon pool (the encoder's MLP
/// product at base size, with the `gemm` crate the host encoder uses).
pub fn measure_gemm_gflops() -> f64 {
    let (m, k, n) = (2012usize, 768usize, 2048usize);
    let a: Vec<f32> = (0..m * k).map(|i| ((i % 97) as f32 - 48.0) * 0.01).collect();
    let b: Vec<f32> = (0..k * n).map(|i| ((i % 89) as f32 - 44.0) * 0.01).collect();
    let mut out = vec![0f32; m * n];
    let mut best = 0f64;
    for _ in 0..3 {
        let started = Instant::now();
        for _ in 0..4 {
            crate::kernels::host::gemm_checked(m, n, k, &a, k, 1, &b, n, 1, &mut out, n, false, gemm::Parallelism::Rayon(0));
        }
        let secs = started.elapsed().as_secs_f64();
        std::hint::black_box(&out);
        best = best.max(4.0 * 2.0 * (m * k * n) as f64 / secs / 1e9);
    }
    best
}

/// Bytes of f32 weights a chunk reads: the encoder once, every temporal layer (cross-attention K/V
/// excluded: computed once per chunk) once per frame, every depth layer and the logits kernel once
/// per token.
pub fn weight_bytes_per_chunk(c: &LmConfig) -> u64 {
    bytes_per_chunk(c, &LmOptions::default(), 1) - cross_kv_bytes_per_chunk(c, 1)
}

/// Bytes of the cross-attention keys and values all temporal steps of a chunk read (`batch` rows).
fn cross_kv_bytes_per_chunk(c: &LmConfig, batch: u64) -> u64 {
    4 * batch * 2 * (c.encoder_len() * c.inner_dim()) as u64 * (c.temporal_layers * c.chunk_frames) as u64
}

/// Bytes a chunk must read under `options` with `batch` CFG rows: weights at their precision
/// (the encoder and the cross-attention K/V maps in f32, once), and the cross-attention K/V
/// activations every temporal step.
pub fn bytes_per_chunk(c: &LmConfig, options: &LmOptions, batch: u64) -> u64 {
    let (d, inner) = (c.d_model as u64, c.inner_dim() as u64);
    let wb = options.precision.bytes() as u64;
    let attn = 4 * d * inner;
    let temporal_step = c.temporal_layers as u64 * (attn + 2 * d * inner + 3 * d * c.mlp_dim as u64);
    let logit_rows = match options.depth_logits {
        DepthLogits::All => c.vocab_size,
        DepthLogits::Level => c.codebook_size,
    } as u64;
    let depth_step = c.depth_layers as u64 * (attn + 3 * d * c.depth_mlp_dim as u64) + d * logit_rows;
    once_per_chunk_weight_bytes(c)
        + wb * (temporal_step * c.chunk_frames as u64 + depth_step * c.chunk_tokens() as u64)
        + cross_kv_bytes_per_chunk(c, batch)
}

/// Best-of-3 read bandwidth from DRAM in GB/s: `threads` threads each sum their share of a
/// 2 GiB buffer (larger than any last-level cache here; this machine reports 480 MiB of L3) with
/// the vectorised [`stream_sum`].
pub fn measure_read_bandwidth(threads: usize) -> f64 {
    let n = (2usize << 30) / 4;
    let buf: Vec<f32> = (0..n).map(|i| (i & 1023) as f32).collect();
    let mut best = 0f64;
    let chunk = n.div_ceil(threads.max(1));
    for _ in 0..3 {
        let started = Instant::now();
        let total: f32 = std::thread::scope(|s| {
            let handles: Vec<_> = buf.chunks(chunk).map(|part| s.spawn(move || stream_sum(part))).collect();
            handles.into_iter().map(|h| h.join().unwrap_or(0.0)).sum()
        });
        let secs = started.elapsed().as_secs_f64();
        std::hint::black_box(total);
        best = best.max((n * 4) as f64 / secs / 1e9);
    }
    best
}

/// Peak resident set size of this process (Linux `VmHWM`).
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn sync(device: &Device) {
    // Timing needs the queue drained; a failure here only makes the numbers meaningless.
    let _ = device.sync();
}

/// Times `chunks` chunks of the real decode loop (CFG batch 2, top-k 40) with random weights,
/// through the same stepping calls as `Depthformer::generate_tokens`.
pub fn bench_lm(size: &str, config: LmConfig, target: &Target, options: LmOptions, chunks: usize) -> Result<LmBenchReport, String> {
    let device = target.device.clone();
    let threads = rayon::current_num_threads();
    let started = Instant::now();
    let model = Depthformer::from_weights_with(config.clone(), HostWeights::random(&config, 1), target, options).map_err(|e| e.to_string())?;
    sync(&device);
    let load_s = started.elapsed().as_secs_f64();

    let c = &config;
    let s = c.encoder_len();
    let mut ids = vec![0i32; 2 * s];
    for (i, id) in ids.iter_mut().enumerate() {
        *id = (c.codec_offset + (i * 7919) % (c.codebook_size * c.encoder_codec_levels)) as i32;
    }
    let params = SamplingParams { seed: 3, ..SamplingParams::default() };
    let mut scratch = LmScratch::default();
    // Warm-up: one full chunk (kernel autotuning on GPUs, page faults on CPUs).
    model.decode_chunk(&ids, &params, 0, &mut scratch, DecodeHooks::default()).map_err(|e| e.to_string())?;

    let counts = count_chunk(&model, target, &ids, &params, &mut scratch)?;

    let mut times = StepTimes::default();
    let mut total_s = 0.0;
    for chunk in 0..chunks {
        let chunk_start = Instant::now();
        let hooks = DecodeHooks { times: Some(&mut times), ..DecodeHooks::default() };
        model.decode_chunk(&ids, &params, chunk as u64, &mut scratch, hooks).map_err(|e| e.to_string())?;
        total_s += chunk_start.elapsed().as_secs_f64();
    }
    // GPU kernels: the same chunks with every launch issued eagerly, against the replayed steps.
    #[cfg(any(feature = "wgpu", feature = "cuda"))]
    let eager_chunk_s = match model.gpu_decoder() {
        Ok(gpu) if gpu.replays() => {
            gpu.set_replay(false);
            let started = Instant::now();
            for chunk in 0..chunks {
                model.decode_chunk(&ids, &params, chunk as u64, &mut scratch, DecodeHooks::default()).map_err(|e| e.to_string())?;
            }
            sync(&device);
            gpu.set_replay(true);
            Some(started.elapsed().as_secs_f64() / chunks.max(1) as f64)
        }
        _ => None,
    };
    #[cfg(not(any(feature = "wgpu", feature = "cuda")))]
    let eager_chunk_s = None;
    let (enc_s, temporal_s, depth_s, logits_s, sample_s) = (
        times.encoder.as_secs_f64(),
        times.temporal.as_secs_f64(),
        times.depth.as_secs_f64(),
        times.logits.as_secs_f64(),
        times.sampling.as_secs_f64(),
    );
    let n = chunks.max(1) as f64;
    let chunk_s = total_s / n;
    // Before the bandwidth probe, whose 2 GiB buffer would otherwise be the peak.
    let peak_rss = peak_rss_bytes();
    let bandwidth = measure_read_bandwidth(threads);
    let gemm_gflops = measure_gemm_gflops();
    let bytes = bytes_per_chunk(c, &options, 2);
    let encoder_flops = encoder_flops_per_chunk(c, 2);
    let decode_bytes = bytes - once_per_chunk_weight_bytes(c);
    let tokens = c.chunk_tokens() as f64;
    let host = model.compute() == Compute::Host;
    let path = if host { format!("host kernels ({})", crate::kernels::host::simd_level()) } else { model.compute().to_string() };
    let prediction = GpuPrediction::new(c, &options, &counts);
    Ok(LmBenchReport {
        size: size.to_owned(),
        device: target.choice.to_string(),
        threads,
        path,
        options: model.options(),
        chunks,
        frames: c.chunk_frames,
        tokens: c.chunk_tokens(),
        load_s,
        encoder_ms: enc_s / n * 1e3,
        temporal_step_ms: temporal_s / n / c.chunk_frames as f64 * 1e3,
        depth_step_ms: depth_s / n / tokens * 1e3,
        logits_ms_per_step: host.then(|| logits_s / n / tokens * 1e3),
        sampling_ms_per_step: sample_s / n / tokens * 1e3,
        chunk_s,
        eager_chunk_s,
        real_time_factor: (c.chunk_frames as f64 / 25.0) / chunk_s,
        peak_rss_bytes: peak_rss,
        device_bytes_in_use: device.memory_pool_usage().map(|u| u.bytes_reserved),
        launches_per_chunk: counts.total.dispatches,
        dispatches_per_chunk: counts.total.dispatches,
        syncs_per_chunk: counts.total.syncs,
        d2h_bytes_per_chunk: counts.total.d2h_bytes,
        h2d_uploads_per_chunk: counts.total.uploads,
        h2d_bytes_per_chunk: counts.total.h2d_bytes,
        host_us_per_dispatch: counts.total.dispatches.filter(|&n| n > 0).map(|n| counts.issue_s / n as f64 * 1e6),
        host_us_per_dispatch_dry_run: counts.dry_run_us_per_dispatch,
        host_issue_s_per_chunk: counts.issue_s,
        sync_wait_s_per_chunk: counts.wait_s,
        burn_ops_per_chunk: counts.total.burn_ops,
        fused_blocks_per_chunk: counts.total.fused_blocks,
        dispatches_per_temporal_step: counts.by_part.temporal.dispatches.map(|n| n as f64 / c.chunk_frames as f64),
        dispatches_per_depth_step: counts.by_part.depth.dispatches.map(|n| n as f64 / tokens),
        predicted_h100_chunk_s: prediction.measured.as_ref().map(|p| p.h100_chunk_s),
        predicted_h200_chunk_s: prediction.measured.as_ref().map(|p| p.h200_chunk_s),
        counts_by_part: counts.by_part,
        prediction,
        bytes_per_chunk: bytes,
        measured_read_bandwidth_gbs: bandwidth,
        floor_chunk_s: bytes as f64 / (bandwidth * 1e9),
        encoder_gflop_per_chunk: encoder_flops / 1e9,
        measured_gemm_gflops: gemm_gflops,
        roofline_floor_chunk_s: encoder_flops / (gemm_gflops * 1e9) + decode_bytes as f64 / (bandwidth * 1e9),
    })
}

/// Device work of one chunk, split by part of the decode loop.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct CountsByPart {
    /// Encoder and cross-attention K/V (once per chunk).
    pub encoder: PartCounts,
    pub temporal: PartCounts,
    /// Depth steps with the logits and their readback.
    pub depth: PartCounts,
    /// CFG combine, top-k and the draw (on the host today: no device work).
    pub sampling: PartCounts,
}

/// What [`count_chunk`] measured.
#[derive(Clone, Copy, Debug, Default)]
pub struct ChunkCounts {
    /// One chunk run as generation runs it (no timing, no barriers), after the split one.
    pub total: PartCounts,
    /// A chunk with the device drained at part boundaries (run first: it is also the warm-up).
    pub by_part: CountsByPart,
    /// Host issue time of the unsplit chunk, seconds ([`crate::kernels::counters::Snapshot::issue_s_since`]).
    pub issue_s: f64,
    /// Time it waited in readbacks after its last launches, seconds.
    pub wait_s: f64,
    /// Host issue time ÷ dispatches of a third chunk under cubecl's `DryRun` (every launch
    /// compiled and dropped, so the device executes nothing), µs; `None` on flex or when that
    /// chunk failed (its readbacks are stale buffers).
    pub dry_run_us_per_dispatch: Option<f64>,
    /// The model ran our GPU kernels (syncs per chunk do not grow with the tokens).
    pub gpu_kernels: bool,
}

/// Counts the device work of a chunk split by part (which also warms the device up), then of one
/// chunk as generation runs it: dispatches (cube devices), syncs and host↔device bytes.
pub fn count_chunk(model: &Depthformer, target: &Target, ids: &[i32], params: &SamplingParams, scratch: &mut LmScratch) -> Result<ChunkCounts, String> {
    use crate::kernels::counters::{Counting, Part};
    let device = &target.device;
    let observe = target.choice != crate::DeviceChoice::Flex;
    // The split chunk first: it also warms the device (kernel compilation, burn's autotuning of
    // the encoder's products), so the unsplit chunk below counts what every later chunk issues.
    sync(device);
    let counting = Counting::start(observe, true);
    let split_before = counting.snapshot();
    model.decode_chunk(ids, params, 0, scratch, DecodeHooks::default()).map_err(|e| e.to_string())?;
    sync(device);
    let split = counting.snapshot();
    drop(counting);

    let counting = Counting::start(observe, false);
    let before = counting.snapshot();
    model.decode_chunk(ids, params, 0, scratch, DecodeHooks::default()).map_err(|e| e.to_string())?;
    sync(device);
    counting.close_segment();
    let after = counting.snapshot();
    drop(counting);
    let part = |p| split.part_since(&split_before, Some(p));
    let dry_run_us_per_dispatch = if observe { dry_run_issue(model, device, ids, params, scratch) } else { None };
    Ok(ChunkCounts {
        total: after.part_since(&before, None),
        by_part: CountsByPart { encoder: part(Part::Encoder), temporal: part(Part::Temporal), depth: part(Part::Depth), sampling: part(Part::Sampling) },
        issue_s: after.issue_s_since(&before),
        wait_s: after.wait_s_since(&before),
        dry_run_us_per_dispatch,
        gpu_kernels: model.compute() == crate::Compute::Gpu,
    })
}

/// Host issue time per dispatch of one chunk whose launches are compiled and dropped (cubecl's
/// `DryRun`): the host side of a dispatch without the device (lavapipe runs kernels on the same
/// CPU). The sampler then reads stale buffers; a chunk that fails on them gives `None`.
#[cfg(any(feature = "wgpu", feature = "cuda"))]
fn dry_run_issue(model: &Depthformer, device: &Device, ids: &[i32], params: &SamplingParams, scratch: &mut LmScratch) -> Option<f64> {
    let counting = crate::kernels::counters::Counting::start(true, false);
    let before = counting.snapshot();
    let dry = burn::cubecl::dry_run::DryRun::new();
    let decoded = model.decode_chunk(ids, params, 0, scratch, DecodeHooks::default());
    drop(dry);
    sync(device);
    let after = counting.snapshot();
    drop(counting);
    let n = after.part_since(&before, None).dispatches?;
    (decoded.is_ok() && n > 0).then(|| after.issue_s_since(&before) / n as f64 * 1e6)
}

#[cfg(not(any(feature = "wgpu", feature = "cuda")))]
fn dry_run_issue(_: &Depthformer, _: &Device, _: &[i32], _: &SamplingParams, _: &mut LmScratch) -> Option<f64> {
    None
}

/// A model of a GPU chunk from counts, not a measurement:
/// `bytes / bandwidth + dispatches · t_gap + syncs · t_sync + encoder GFLOP / R`, with assumed
/// constants (to be replaced by H100/H200 measurements).
#[derive(Clone, Debug, Serialize)]
pub struct GpuPrediction {
    /// Assumed HBM read bandwidth, bytes/s: H100 SXM 3.35e12, H200 4.8e12.
    pub h100_bandwidth_bytes_per_s: f64,
    pub h200_bandwidth_bytes_per_s: f64,
    /// Assumed gap per dispatch issued eagerly (no graph), seconds.
    pub t_gap_s: f64,
    /// Assumed cost of one blocking host↔device sync, seconds.
    pub t_sync_s: f64,
    /// Assumed rate of the encoder's products, FLOP/s.
    pub encoder_flops_per_s: f64,
    pub note: String,
    /// The measured model from this run's counts (`None` without dispatch counts).
    pub measured: Option<PredictedChunk>,
    /// base and large with dispatches scaled per layer from this run's counts (temporal-step
    /// dispatches × their temporal layers ÷ this model's, depth likewise, the encoder part × its
    /// encoder + temporal layers ÷ this model's), syncs and readback bytes per token × their
    /// tokens, and their own bytes and encoder arithmetic.
    pub scaled: Vec<PredictedChunk>,
}

/// One predicted chunk.
#[derive(Clone, Debug, Serialize)]
pub struct PredictedChunk {
    pub size: String,
    pub dispatches: f64,
    pub syncs: f64,
    pub d2h_bytes: f64,
    /// Bytes read per chunk at f32 (the GPU path's precision): weights and cross K/V.
    pub bytes: u64,
    pub encoder_gflop: f64,
    pub h100_chunk_s: f64,
    pub h200_chunk_s: f64,
    /// `dispatches` × this machine's host issue time per dispatch under `DryRun`: the host side
    /// alone at this host's speed, which the model's `t_gap` does not see (`None` without it).
    pub host_issue_here_s: Option<f64>,
}

impl GpuPrediction {
    pub const H100_BANDWIDTH: f64 = 3.35e12;
    pub const H200_BANDWIDTH: f64 = 4.8e12;
    pub const T_GAP_S: f64 = 4e-6;
    pub const T_SYNC_S: f64 = 20e-6;
    pub const ENCODER_FLOPS_PER_S: f64 = 200e12;

    fn chunk(size: &str, c: &LmConfig, options: &LmOptions, counts: &ChunkCounts, dispatches: f64, syncs: f64, d2h_bytes: f64) -> PredictedChunk {
        // The GPU kernels hold the weights at the chosen precision; burn ops run f32.
        let gpu = if counts.gpu_kernels { *options } else { LmOptions { precision: crate::v1::lm::WeightPrecision::F32, ..*options } };
        let bytes = bytes_per_chunk(c, &gpu, 2);
        let encoder_gflop = encoder_flops_per_chunk(c, 2) / 1e9;
        let rest = dispatches * Self::T_GAP_S + syncs * Self::T_SYNC_S + encoder_gflop * 1e9 / Self::ENCODER_FLOPS_PER_S;
        PredictedChunk {
            size: size.to_owned(),
            dispatches,
            syncs,
            d2h_bytes,
            bytes,
            encoder_gflop,
            h100_chunk_s: bytes as f64 / Self::H100_BANDWIDTH + rest,
            h200_chunk_s: bytes as f64 / Self::H200_BANDWIDTH + rest,
            host_issue_here_s: counts.dry_run_us_per_dispatch.map(|us| dispatches * us / 1e6),
        }
    }

    /// The prediction for the measured model `c` and, scaled from its counts, base and large.
    pub fn new(c: &LmConfig, options: &LmOptions, counts: &ChunkCounts) -> Self {
        let t = &counts.total;
        let measured = t.dispatches.map(|n| Self::chunk("measured", c, options, counts, n as f64, t.syncs as f64, t.d2h_bytes as f64));
        let p = &counts.by_part;
        let scaled = match (p.encoder.dispatches, p.temporal.dispatches, p.depth.dispatches, t.dispatches) {
            (Some(enc), Some(temporal), Some(depth), Some(_)) => [("base", LmConfig::base()), ("large", LmConfig::large())]
                .into_iter()
                .map(|(name, target)| {
                    let ratio = |a: usize, b: usize| a as f64 / b.max(1) as f64;
                    let per_frame = temporal as f64 / c.chunk_frames as f64 * ratio(target.temporal_layers, c.temporal_layers);
                    let per_token = depth as f64 / c.chunk_tokens() as f64 * ratio(target.depth_layers, c.depth_layers);
                    let enc = enc as f64 * ratio(target.encoder_layers + target.temporal_layers, c.encoder_layers + c.temporal_layers);
                    let dispatches = enc + per_frame * target.chunk_frames as f64 + per_token * target.chunk_tokens() as f64;
                    let tokens = ratio(target.chunk_tokens(), c.chunk_tokens());
                    let vocab = ratio(target.vocab_size, c.vocab_size);
                    // GPU kernels: a fixed two syncs (encoder output, tokens); else one per token.
                    let (syncs, d2h) = if counts.gpu_kernels {
                        (t.syncs as f64, t.d2h_bytes as f64 * ratio(target.d_model, c.d_model))
                    } else {
                        (t.syncs as f64 * tokens, t.d2h_bytes as f64 * tokens * vocab)
                    };
                    Self::chunk(name, &target, options, counts, dispatches, syncs, d2h)
                })
                .collect(),
            _ => Vec::new(),
        };
        Self {
            h100_bandwidth_bytes_per_s: Self::H100_BANDWIDTH,
            h200_bandwidth_bytes_per_s: Self::H200_BANDWIDTH,
            t_gap_s: Self::T_GAP_S,
            t_sync_s: Self::T_SYNC_S,
            encoder_flops_per_s: Self::ENCODER_FLOPS_PER_S,
            note: "a model from counts with assumed constants, not a measurement".to_owned(),
            measured,
            scaled,
        }
    }
}

/// `12345` or `—` (not counted on this device).
fn count_or_dash(v: Option<u64>) -> String {
    v.map_or("— (flex: no kernel launches)".to_owned(), |n| n.to_string())
}

impl LmBenchReport {
    /// The counters and the predicted GPU times, as lines of the text report.
    fn write_counters(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "  device work of one chunk (counted):")?;
        writeln!(f, "    dispatches              {}", count_or_dash(self.dispatches_per_chunk))?;
        let p = &self.counts_by_part;
        if let (Some(t), Some(d)) = (self.dispatches_per_temporal_step, self.dispatches_per_depth_step) {
            writeln!(
                f,
                "      by part               encoder {}, temporal {} ({t:.1} / step), depth {} ({d:.1} / step), sampling {}",
                count_or_dash(p.encoder.dispatches),
                count_or_dash(p.temporal.dispatches),
                count_or_dash(p.depth.dispatches),
                count_or_dash(p.sampling.dispatches)
            )?;
        }
        if let (Some(ops), Some(blocks)) = (self.burn_ops_per_chunk, self.fused_blocks_per_chunk) {
            writeln!(f, "    burn ops / fused blocks {ops} / {blocks}")?;
        }
        writeln!(
            f,
            "    syncs (readbacks)       {}  (encoder {}, temporal {}, depth {}, sampling {})",
            self.syncs_per_chunk, p.encoder.syncs, p.temporal.syncs, p.depth.syncs, p.sampling.syncs
        )?;
        writeln!(f, "    device → host           {:.3} MB", self.d2h_bytes_per_chunk as f64 / 1e6)?;
        writeln!(f, "    host → device           {} uploads, {:.3} MB", self.h2d_uploads_per_chunk, self.h2d_bytes_per_chunk as f64 / 1e6)?;
        if let Some(us) = self.host_us_per_dispatch {
            writeln!(
                f,
                "    host issue / dispatch   {us:.2} µs  (issue {:.3} s, then waiting in readbacks {:.3} s)",
                self.host_issue_s_per_chunk, self.sync_wait_s_per_chunk
            )?;
        }
        if let Some(us) = self.host_us_per_dispatch_dry_run {
            writeln!(f, "    … under DryRun          {us:.2} µs  (launches compiled and dropped: host side only)")?;
        }
        let a = &self.prediction;
        writeln!(
            f,
            "  predicted GPU chunk (assumed: bandwidth H100 {:.2e} / H200 {:.2e} B/s, t_gap {} µs eager, t_sync {} µs, encoder {} TFLOP/s; {}):",
            a.h100_bandwidth_bytes_per_s,
            a.h200_bandwidth_bytes_per_s,
            a.t_gap_s * 1e6,
            a.t_sync_s * 1e6,
            a.encoder_flops_per_s / 1e12,
            a.note
        )?;
        match &a.measured {
            None => writeln!(f, "    — (no dispatch counts on this device)")?,
            Some(m) => {
                for p in std::iter::once(m).chain(&a.scaled) {
                    let name = if p.size == "measured" { format!("{} (this run)", self.size) } else { format!("{} (scaled)", p.size) };
                    writeln!(
                        f,
                        "    {name:<18} H100 {:.3} s, H200 {:.3} s  ({:.0} dispatches, {:.0} syncs, {:.1} GB read, {:.0} GFLOP encoder){}",
                        p.h100_chunk_s,
                        p.h200_chunk_s,
                        p.dispatches,
                        p.syncs,
                        p.bytes as f64 / 1e9,
                        p.encoder_gflop,
                        p.host_issue_here_s.map_or(String::new(), |s| format!("; host issue alone at this host's DryRun rate {s:.1} s"))
                    )?;
                }
            }
        }
        Ok(())
    }
}

impl std::fmt::Display for LmBenchReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let gb = |b: u64| b as f64 / 1e9;
        let o = &self.options;
        writeln!(
            f,
            "mrt bench lm — size {}, device {}, {}, {} threads, weights {}, depth logits {}, {} chunk(s)",
            self.size, self.device, self.path, self.threads, o.precision, o.depth_logits, self.chunks
        )?;
        writeln!(f, "  load (random weights)   {:>9.2} s", self.load_s)?;
        writeln!(f, "  encoder + cross K/V     {:>9.1} ms / chunk", self.encoder_ms)?;
        if self.path == crate::Compute::Gpu.to_string() {
            writeln!(f, "  (GPU kernels: the decode loop runs on the device in one go; its time is under the depth step)")?;
        }
        writeln!(f, "  temporal step           {:>9.2} ms  (× {})", self.temporal_step_ms, self.frames)?;
        match self.logits_ms_per_step {
            Some(l) => writeln!(f, "  depth step + logits     {:>9.3} ms  (× {}; logits {l:.3} ms)", self.depth_step_ms, self.tokens)?,
            None => writeln!(f, "  depth step + logits     {:>9.3} ms  (× {})", self.depth_step_ms, self.tokens)?,
        }
        writeln!(f, "  sampling (host)         {:>9.3} ms  (× {})", self.sampling_ms_per_step, self.tokens)?;
        writeln!(f, "  chunk                   {:>9.2} s   real-time factor {:.2}×", self.chunk_s, self.real_time_factor)?;
        if let Some(e) = self.eager_chunk_s {
            writeln!(f, "  chunk, eager launches   {:>9.2} s   (above: recorded steps replayed)", e)?;
        }
        if let Some(b) = self.peak_rss_bytes {
            writeln!(f, "  peak RSS                {:>9.2} GB", gb(b))?;
        }
        if let Some(b) = self.device_bytes_in_use {
            writeln!(f, "  device memory reserved  {:>9.2} GB", gb(b))?;
        }
        self.write_counters(f)?;
        writeln!(f, "  bytes read / chunk      {:>9.1} GB (weights + cross K/V)", gb(self.bytes_per_chunk))?;
        writeln!(f, "  measured read bandwidth {:>9.1} GB/s", self.measured_read_bandwidth_gbs)?;
        writeln!(f, "  memory floor / chunk    {:>9.2} s   (measured is {:.2}× the floor)", self.floor_chunk_s, self.chunk_s / self.floor_chunk_s)?;
        write!(
            f,
            "  roofline floor / chunk  {:>9.2} s   (encoder {:.0} GFLOP at {:.0} GFLOP/s + decode bytes; measured is {:.2}×)",
            self.roofline_floor_chunk_s,
            self.encoder_gflop_per_chunk,
            self.measured_gemm_gflops,
            self.chunk_s / self.roofline_floor_chunk_s
        )
    }
}

/// `mrt bench all`: one streaming chunk split into its parts.
#[derive(Clone, Debug, Serialize)]
pub struct AllBenchReport {
    pub lm: LmBenchReport,
    pub codec: crate::codec::bench::CodecBenchReport,
    /// LM chunk + codec decode of its 51 frames: what `generate_chunk` costs.
    pub chunk_s: f64,
    pub real_time_factor: f64,
}

/// Runs the LM and codec benchmarks on one device and combines them.
pub fn bench_all(size: &str, config: LmConfig, target: &Target, options: LmOptions, chunks: usize) -> Result<AllBenchReport, String> {
    let lm = bench_lm(size, config.clone(), target, options, chunks)?;
    let codec = crate::codec::bench::bench_codec(target, chunks.max(2))?;
    let chunk_s = lm.chunk_s + codec.decode_chunk_ms / 1e3;
    Ok(AllBenchReport { real_time_factor: (config.chunk_frames as f64 / 25.0) / chunk_s, lm, codec, chunk_s })
}

impl std::fmt::Display for AllBenchReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (l, c) = (&self.lm, &self.codec);
        let (frames, tokens) = (l.frames as f64, l.tokens as f64);
        let o = &l.options;
        writeln!(
            f,
            "mrt bench all — size {}, device {}, {}, {} threads, weights {}, depth logits {}, mean of {} chunk(s)",
            l.size, l.device, l.path, l.threads, o.precision, o.depth_logits, l.chunks
        )?;
        writeln!(f, "  {:<28} {:>10} {:>8}", "part", "s / chunk", "share")?;
        let logits = l.logits_ms_per_step.unwrap_or(0.0);
        let rows: [(&str, f64); 6] = [
            ("encoder + cross K/V", l.encoder_ms / 1e3),
            ("temporal steps", l.temporal_step_ms * frames / 1e3),
            ("depth steps (w/o logits)", (l.depth_step_ms - logits) * tokens / 1e3),
            ("logits", logits * tokens / 1e3),
            ("sampling", l.sampling_ms_per_step * tokens / 1e3),
            ("codec decode (51 frames)", c.decode_chunk_ms / 1e3),
        ];
        for (name, secs) in rows {
            if name.starts_with("logits") && l.logits_ms_per_step.is_none() {
                writeln!(f, "  {name:<28} {:>10} {:>8}", "in depth", "")?;
                continue;
            }
            writeln!(f, "  {name:<28} {secs:>10.3} {:>7.1}%", 100.0 * secs / self.chunk_s)?;
        }
        writeln!(f, "  {:<28} {:>10.3}   real-time factor {:.2}×", "chunk", self.chunk_s, self.real_time_factor)?;
        if let Some(b) = l.peak_rss_bytes {
            writeln!(f, "  peak RSS {:.2} GB", b as f64 / 1e9)?;
        }
        if let Some(b) = l.device_bytes_in_use {
            writeln!(f, "  device memory reserved {:.2} GB", b as f64 / 1e9)?;
        }
        l.write_counters(f)?;
        write!(
            f,
            "  LM memory floor {:.2} s ({:.1} GB at {:.1} GB/s): LM measured {:.2}× the floor",
            l.floor_chunk_s,
            l.bytes_per_chunk as f64 / 1e9,
            l.measured_read_bandwidth_gbs,
            l.chunk_s / l.floor_chunk_s
        )?;
        write!(
            f,
            "\n  LM roofline floor {:.2} s (encoder {:.0} GFLOP at {:.0} GFLOP/s + decode-step bytes): LM measured {:.2}× it",
            l.roofline_floor_chunk_s,
            l.encoder_gflop_per_chunk,
            l.measured_gemm_gflops,
            l.chunk_s / l.roofline_floor_chunk_s
        )
    }
}

/// `mrt bench streams`: several streams generating at once on one shared model (plugin
/// instances sharing a loaded model), against the same chunks generated one after another.
#[derive(Clone, Debug, Serialize)]
pub struct StreamsBenchReport {
    pub size: String,
    pub device: String,
    pub threads: usize,
    pub streams: usize,
    pub chunks_per_stream: usize,
    /// Every stream's chunks, one stream after another on this thread.
    pub serial_s: f64,
    /// All streams at once, one thread each.
    pub concurrent_s: f64,
    /// When each concurrent stream finished its chunks, seconds from the start.
    pub concurrent_stream_s: Vec<f64>,
}

/// Loads the v1 system at the real size with random weights once and runs `streams` streams of
/// `chunks` chunks each: first one after another, then all at once.
pub fn bench_streams(size: &str, config: LmConfig, target: &Target, options: LmOptions, streams: usize, chunks: usize) -> Result<StreamsBenchReport, String> {
    use crate::codec::weights::{random_files, CodecWeights, CodecWidths};
    use crate::codec::{Codec, CodecConfig};
    let streams = streams.max(1);
    let lm = Depthformer::from_weights_with(config.clone(), HostWeights::random(&config, 1), target, options).map_err(|e| e.to_string())?;
    let codec_config = CodecConfig::spectrostream_48k_stereo();
    let [e, d, q] = random_files(&codec_config, &CodecWidths::full_size(), 7);
    let weights = CodecWeights::from_files(&e, &d, Some(&q), &codec_config).map_err(|e| e.to_string())?;
    let codec = Codec::from_weights(codec_config, weights, target).map_err(|e| e.to_string())?;
    let system = crate::v1::system::MagentaRt::new(lm, codec).map_err(|e| e.to_string())?;
    let params = SamplingParams { seed: 3, ..SamplingParams::default() };
    let style = [3, 1, 4, 1, 5, 9];
    let run = |state: &mut crate::v1::system::StreamState| -> Result<(), String> {
        for _ in 0..chunks {
            system.generate_chunk(state, Some(&style), &params).map_err(|e| e.to_string())?;
        }
        Ok(())
    };
    // Warm-up: one chunk (page faults, the scratch of this thread's stream).
    system.generate_chunk(&mut system.init_state(), Some(&style), &params).map_err(|e| e.to_string())?;
    let started = Instant::now();
    for _ in 0..streams {
        run(&mut system.init_state())?;
    }
    let serial_s = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let finished: Vec<Result<f64, String>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..streams)
            .map(|_| {
                s.spawn(|| {
                    run(&mut system.init_state())?;
                    Ok(started.elapsed().as_secs_f64())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Err("a stream panicked".into()))).collect()
    });
    let concurrent_s = started.elapsed().as_secs_f64();
    let concurrent_stream_s = finished.into_iter().collect::<Result<Vec<_>, _>>()?;
    Ok(StreamsBenchReport {
        size: size.to_owned(),
        device: target.choice.to_string(),
        threads: rayon::current_num_threads(),
        streams,
        chunks_per_stream: chunks,
        serial_s,
        concurrent_s,
        concurrent_stream_s,
    })
}

impl std::fmt::Display for StreamsBenchReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "mrt bench streams — size {}, device {}, {} threads, {} streams × {} chunk(s) on one shared model",
            self.size, self.device, self.threads, self.streams, self.chunks_per_stream
        )?;
        writeln!(f, "  one after another   {:>8.2} s", self.serial_s)?;
        writeln!(f, "  all at once         {:>8.2} s  (ratio {:.2})", self.concurrent_s, self.concurrent_s / self.serial_s)?;
        write!(f, "  each stream done at {:?} s", self.concurrent_stream_s.iter().map(|s| (s * 100.0).round() / 100.0).collect::<Vec<_>>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The size formula is the sum of the loaded matrices' bytes (the products a frame runs:
    /// temporal once, per level the adapter, the depth stack and one level's logits rows; the
    /// host adds the conditioning product), at every precision, with and without the adapter.
    #[test]
    fn mrt2_frame_bytes_from_the_sizes_equal_the_loaded_matrices() {
        use crate::mrt2::config::{Mrt2Config, StackConfig};
        use crate::mrt2::weights::{Attention, Mrt2Weights};
        for d_depth in [48, 64] {
            let mut c = Mrt2Config::mrt2_small();
            c.encoder_width = 32;
            c.musiccoca_embedding_size = 16;
            c.temporal = StackConfig { layers: 2, d_model: 64, ffn: 96, heads: 4, head_dim: 16 };
            c.depth = StackConfig { layers: 2, d_model: d_depth, ffn: 80, heads: 3, head_dim: 16 };
            for precision in [crate::kernels::WeightPrecision::F32, crate::kernels::WeightPrecision::Bf16, crate::kernels::WeightPrecision::Int8] {
                let mut w = Mrt2Weights::random(&c, 3);
                w.set_precision(precision);
                let attn = |a: &Attention| a.query.bytes() + a.key.bytes() + a.value.bytes() + a.output.bytes();
                let temporal: usize = w.temporal.iter().map(|l| attn(&l.self_attention) + attn(&l.cross_attention) + l.ffn.layer1.bytes() + l.ffn.layer2.bytes()).sum();
                let depth: usize = w.depth.iter().map(|l| attn(&l.self_attention) + l.ffn.layer1.bytes() + l.ffn.layer2.bytes()).sum::<usize>()
                    + w.depth_input_adapter.as_ref().map_or(0, |a| a.bytes());
                let logits_level = w.to_logits.bytes() / w.to_logits.out_dim * c.codebook_size;
                let summed = (temporal + c.num_levels * (depth + logits_level)) as u64;
                assert_eq!(w.depth_input_adapter.is_some(), d_depth != 64);
                assert_eq!(mrt2_decoder_bytes_per_frame(&c, precision, w.depth_input_adapter.is_some()), summed, "{precision:?}, depth width {d_depth}");
                let model = crate::mrt2::model::Mrt2Model::new(c.clone(), w);
                assert_eq!(mrt2_bytes_per_frame(&model), summed + model.weights.conditioning.mulan_adapter.bytes() as u64);
            }
        }
    }

    #[test]
    fn encoder_arithmetic_matches_the_hand_count() {
        // NOTES.md: base 511 GFLOP (encoder 416, cross K/V 95), large 1,608 GFLOP per chunk.
        let base = encoder_flops_per_chunk(&LmConfig::base(), 2) / 1e9;
        let large = encoder_flops_per_chunk(&LmConfig::large(), 2) / 1e9;
        assert!((base - 511.0).abs() < 2.0, "{base}");
        assert!((large - 1608.0).abs() < 5.0, "{large}");
        let c = LmConfig::base();
        assert!(once_per_chunk_weight_bytes(&c) < bytes_per_chunk(&c, &LmOptions::default(), 2));
    }

    #[test]
    fn the_gpu_prediction_is_bytes_over_bandwidth_plus_dispatch_sync_and_encoder_terms() {
        use crate::kernels::counters::PartCounts;
        let c = LmConfig::base();
        let part = |n: u64, syncs: u64| PartCounts { dispatches: Some(n), syncs, ..PartCounts::default() };
        let counts = ChunkCounts {
            total: PartCounts { dispatches: Some(10_000), syncs: 800, d2h_bytes: 1000, ..PartCounts::default() },
            by_part: CountsByPart { encoder: part(100, 0), temporal: part(5_000, 0), depth: part(4_800, 800), sampling: part(0, 0) },
            ..ChunkCounts::default()
        };
        let p = GpuPrediction::new(&c, &LmOptions::default(), &counts);
        let m = p.measured.as_ref().expect("dispatches were counted");
        let bytes = bytes_per_chunk(&c, &LmOptions::default(), 2) as f64;
        let rest = 10_000.0 * 4e-6 + 800.0 * 20e-6 + encoder_flops_per_chunk(&c, 2) / 200e12;
        assert!((m.h100_chunk_s - (bytes / 3.35e12 + rest)).abs() < 1e-12, "{m:?}");
        assert!((m.h200_chunk_s - (bytes / 4.8e12 + rest)).abs() < 1e-12, "{m:?}");
        // Measured on base itself: scaling to base changes nothing.
        let base = &p.scaled[0];
        assert_eq!((base.size.as_str(), base.dispatches, base.syncs), ("base", 9_900.0, 800.0));
        // Without dispatch counts (flex) there is no prediction.
        let flex = ChunkCounts { total: PartCounts { syncs: 1, ..PartCounts::default() }, ..ChunkCounts::default() };
        let p = GpuPrediction::new(&c, &LmOptions::default(), &flex);
        assert!(p.measured.is_none() && p.scaled.is_empty());
    }

    #[test]
    fn base_chunk_reads_about_165_gb_of_f32_weights() {
        let gb = weight_bytes_per_chunk(&LmConfig::base()) as f64 / 1e9;
        assert!((150.0..220.0).contains(&gb), "{gb} GB");
    }

    #[test]
    fn bf16_and_level_logits_cut_the_bytes_a_chunk_reads() {
        let c = LmConfig::base();
        let f32_all = bytes_per_chunk(&c, &LmOptions::default(), 2);
        let bf16 = bytes_per_chunk(&c, &LmOptions { precision: crate::v1::lm::WeightPrecision::Bf16, ..LmOptions::default() }, 2);
        let level = bytes_per_chunk(&c, &LmOptions { depth_logits: DepthLogits::Level, ..LmOptions::default() }, 2);
        // The decoder weights are ~95 % of the bytes: bf16 nearly halves them.
        assert!(bf16 as f64 / f32_all as f64 > 0.5 && (bf16 as f64 / f32_all as f64) < 0.56, "{bf16} vs {f32_all}");
        // The [d, vocab] logits kernel is ~45 % of a base depth step.
        let saved = (f32_all - level) as f64;
        let want = 4.0 * 768.0 * (29824.0 - 1024.0) * 800.0;
        assert!((saved - want).abs() < 1.0, "{saved} vs {want}");
    }
}

/// `mrt bench all --model mrt2`: MRT2 frames at a preset's real size with random weights, the LM
/// step split by part, the streamed codec step, and the floors they are measured against.
#[derive(Clone, Debug, Serialize)]
pub struct Mrt2BenchReport {
    pub size: String,
    /// Threads of the CPU pool the step's products are split over.
    pub threads: usize,
    pub simd: String,
    /// Projection weights: f32 (exact) or bf16.
    pub precision: String,
    pub frames: usize,
    pub parameters: u64,
    pub load_s: f64,
    pub encoder_ms: f64,
    pub temporal_ms: f64,
    /// Depth stack, 12 levels, without the logits.
    pub depth_ms: f64,
    /// Level-sliced logits products, soft cap, noise and draw, 12 levels.
    pub logits_sampling_ms: f64,
    pub lm_ms_per_frame: f64,
    pub codec_ms_per_frame: f64,
    pub total_ms_per_frame: f64,
    /// 40 ms of audio per frame ÷ the time a frame takes (≥ 1 plays live).
    pub real_time_factor: f64,
    /// Weight bytes one LM frame streams (temporal once, depth and one level's logits rows per
    /// level, at the stored precision).
    pub lm_bytes_per_frame: u64,
    pub measured_read_bandwidth_gbs: f64,
    /// `lm_bytes_per_frame / bandwidth`: the LM's memory floor per frame.
    pub lm_floor_ms: f64,
    /// Useful codec arithmetic per frame and the rate it ran at.
    pub codec_gflop_per_frame: f64,
    pub codec_gflops: f64,
    pub peak_rss_bytes: Option<u64>,
    /// Where the LM step ran (`flex`: the host kernels).
    pub device: String,
    /// GPU runs: the device work per frame and the predicted H100/H200 frame.
    pub gpu: Option<Mrt2GpuCounts>,
}

impl std::fmt::Display for Mrt2BenchReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "MRT2 {} ({:.0} M parameters, random weights), {} weights, {} threads ({}), mean of {} frames",
            self.size,
            self.parameters as f64 / 1e6,
            self.precision,
            self.threads,
            self.simd,
            self.frames
        )?;
        writeln!(f, "  load                       {:8.2} s", self.load_s)?;
        if let Some(g) = &self.gpu {
            // On a GPU the host runs the encoder and the noise; the rest is one device frame.
            writeln!(f, "  LM on {} ({}), {}", self.device, g.device, if g.replayed { "one recorded frame replayed" } else { "eager launches" })?;
            writeln!(f, "  encoder + noise (host)     {:8.2} ms/frame", self.encoder_ms)?;
            writeln!(f, "  device frame + tokens read {:8.2} ms/frame", self.depth_ms)?;
        } else {
            writeln!(f, "  conditioning encoder       {:8.2} ms/frame", self.encoder_ms)?;
            writeln!(f, "  temporal stack             {:8.2} ms/frame", self.temporal_ms)?;
            writeln!(f, "  depth stack ×12            {:8.2} ms/frame", self.depth_ms)?;
            writeln!(f, "  logits + sampling ×12      {:8.2} ms/frame", self.logits_sampling_ms)?;
        }
        writeln!(
            f,
            "  LM                         {:8.2} ms/frame  (floor {:.2} ms: {:.0} MB per frame at {:.1} GB/s read; {:.2}× the floor)",
            self.lm_ms_per_frame,
            self.lm_floor_ms,
            self.lm_bytes_per_frame as f64 / 1e6,
            self.measured_read_bandwidth_gbs,
            self.lm_ms_per_frame / self.lm_floor_ms
        )?;
        writeln!(
            f,
            "  codec stream step          {:8.2} ms/frame  ({:.2} GFLOP/frame → {:.1} GFLOP/s)",
            self.codec_ms_per_frame, self.codec_gflop_per_frame, self.codec_gflops
        )?;
        write!(f, "  frame                      {:8.2} ms  (budget 40 ms; {:.2}× real time)", self.total_ms_per_frame, self.real_time_factor)?;
        if let Some(g) = &self.gpu {
            let opt = |v: Option<f64>| v.map_or("—".to_owned(), |v| format!("{v:.1}"));
            writeln!(f)?;
            writeln!(
                f,
                "  device work per frame (counted): {} dispatches (formula {}), {:.1} syncs, {:.0} B back, {:.1} uploads / {:.0} B; host issue {} µs per dispatch (eager, DryRun)",
                opt(g.dispatches_per_frame),
                g.expected_dispatches_per_frame,
                g.syncs_per_frame,
                g.d2h_bytes_per_frame,
                g.h2d_uploads_per_frame,
                g.h2d_bytes_per_frame,
                opt(g.host_us_per_dispatch)
            )?;
            write!(
                f,
                "  predicted GPU frame (assumed: bandwidth H100 {:.2e} / H200 {:.2e} B/s, t_gap {} µs eager, t_sync {} µs, PCIe {:.0e} B/s; {}):",
                g.h100_bandwidth_bytes_per_s,
                g.h200_bandwidth_bytes_per_s,
                g.t_gap_s * 1e6,
                g.t_sync_s * 1e6,
                g.pcie_bytes_per_s,
                g.note
            )?;
            for p in &g.predicted {
                write!(f, "\n    {:<6} {}: {} dispatches, {:.0} MB → H100 {:.2} ms, H200 {:.2} ms per frame", p.size, p.precision, p.dispatches, p.bytes as f64 / 1e6, p.h100_frame_ms, p.h200_frame_ms)?;
            }
        }
        Ok(())
    }
}

/// Weight bytes of one MRT2 frame on the host (see [`Mrt2BenchReport::lm_bytes_per_frame`]): the
/// decoder's ([`mrt2_decoder_bytes_per_frame`]) and the conditioning encoder's product.
pub fn mrt2_bytes_per_frame(model: &crate::mrt2::model::Mrt2Model) -> u64 {
    let w = &model.weights;
    mrt2_decoder_bytes_per_frame(&model.cfg, w.precision(), w.depth_input_adapter.is_some()) + w.conditioning.mulan_adapter.bytes() as u64
}

/// Launches of one MRT2 frame on the GPU kernels (`mrt2::gpu_decoder`): the temporal input,
/// 12 per temporal layer; per level the adapter (or a copy), 7 per depth layer, the final norm,
/// the logits product and the draw. Every frame issues exactly these (a test holds the count).
pub fn mrt2_gpu_dispatches_per_frame(c: &crate::mrt2::config::Mrt2Config) -> u64 {
    (1 + 12 * c.temporal.layers + c.num_levels * (1 + 7 * c.depth.layers + 3)) as u64
}

/// A predicted GPU frame of MRT2 (a model from counts with the assumed constants of
/// [`GpuPrediction`], not a measurement): `bytes / bandwidth + dispatches · t_gap + syncs · t_sync
/// + uploaded bytes / PCIe`.
#[derive(Clone, Debug, Serialize)]
pub struct PredictedFrame {
    pub size: String,
    pub precision: String,
    pub dispatches: u64,
    pub syncs: u64,
    pub h2d_bytes: u64,
    /// Weight bytes one frame streams at the precision.
    pub bytes: u64,
    pub h100_frame_ms: f64,
    pub h200_frame_ms: f64,
}

/// Assumed host → device copy rate (PCIe 4/5 x16, effective), bytes/s.
pub const PCIE_BYTES_PER_S: f64 = 25e9;

/// Weight bytes one MRT2 frame's decoder streams, from the sizes alone: the temporal stack once,
/// per level the depth input adapter (when the checkpoint has one), the depth stack and the
/// level's logits rows, at `precision` (int8 with its row scales). The GPU streams these; the
/// host adds the conditioning encoder's product.
pub fn mrt2_decoder_bytes_per_frame(c: &crate::mrt2::config::Mrt2Config, precision: crate::kernels::WeightPrecision, adapter: bool) -> u64 {
    let lin = |rows: usize, cols: usize| rows * cols * precision.bytes() + if precision == crate::kernels::WeightPrecision::Int8 { 4 * rows } else { 0 };
    let (t, d) = (&c.temporal, &c.depth);
    let temporal = t.layers * (3 * lin(t.inner(), t.d_model) + lin(t.d_model, t.inner()) + lin(t.inner(), t.d_model) + 2 * lin(t.inner(), c.encoder_width) + lin(t.d_model, t.inner()) + lin(t.ffn, t.d_model) + lin(t.d_model, t.ffn));
    let adapter = if adapter { lin(d.d_model, t.d_model) } else { 0 };
    let depth = d.layers * (3 * lin(d.inner(), d.d_model) + lin(d.d_model, d.inner()) + lin(d.ffn, d.d_model) + lin(d.d_model, d.ffn));
    (temporal + c.num_levels * (adapter + depth + lin(c.codebook_size, d.d_model))) as u64
}

fn predict_frame(size: &str, c: &crate::mrt2::config::Mrt2Config, precision: crate::kernels::WeightPrecision, adapter: bool, syncs: u64, h2d_bytes: u64) -> PredictedFrame {
    let dispatches = mrt2_gpu_dispatches_per_frame(c);
    let bytes = mrt2_decoder_bytes_per_frame(c, precision, adapter);
    let rest = dispatches as f64 * GpuPrediction::T_GAP_S + syncs as f64 * GpuPrediction::T_SYNC_S + h2d_bytes as f64 / PCIE_BYTES_PER_S;
    PredictedFrame {
        size: size.to_owned(),
        precision: precision.to_string(),
        dispatches,
        syncs,
        h2d_bytes,
        bytes,
        h100_frame_ms: (bytes as f64 / GpuPrediction::H100_BANDWIDTH + rest) * 1e3,
        h200_frame_ms: (bytes as f64 / GpuPrediction::H200_BANDWIDTH + rest) * 1e3,
    }
}

/// The device work of the timed MRT2 frames, per frame (GPU runs).
#[derive(Clone, Debug, Serialize)]
pub struct Mrt2GpuCounts {
    pub device: String,
    pub dispatches_per_frame: Option<f64>,
    /// [`mrt2_gpu_dispatches_per_frame`] for this config.
    pub expected_dispatches_per_frame: u64,
    pub syncs_per_frame: f64,
    pub d2h_bytes_per_frame: f64,
    pub h2d_uploads_per_frame: f64,
    pub h2d_bytes_per_frame: f64,
    /// Host time per dispatch of one eager frame whose launches are compiled and dropped
    /// (cubecl's `DryRun`): the host side of a launch without the device, µs (`None` if that
    /// frame failed on its stale reads).
    pub host_us_per_dispatch: Option<f64>,
    /// Whether the frames replayed a recorded frame (no: every launch eager).
    pub replayed: bool,
    /// The assumed constants: bandwidths, `t_gap`, `t_sync`, PCIe.
    pub h100_bandwidth_bytes_per_s: f64,
    pub h200_bandwidth_bytes_per_s: f64,
    pub t_gap_s: f64,
    pub t_sync_s: f64,
    pub pcie_bytes_per_s: f64,
    pub note: String,
    /// This model and the released sizes at this precision (their own dispatch counts and bytes,
    /// this run's syncs and uploads per frame scaled by their encoder width).
    pub predicted: Vec<PredictedFrame>,
}

/// Host issue time per dispatch of one eager MRT2 frame under cubecl's `DryRun` (launches
/// compiled and dropped), on a stream of its own: the frame's time minus its host encoder part,
/// over its launches.
#[cfg(any(feature = "wgpu", feature = "cuda"))]
fn mrt2_dry_run_issue(model: &crate::mrt2::model::Mrt2Model, cond: &[i32], params: &crate::sampling::mrt2::SamplingParams) -> Option<f64> {
    use crate::mrt2::model::FrameState;
    let g = model.gpu()?;
    let replays = g.replays();
    g.set_replay(false);
    let mut st = FrameState::new(model, crate::mrt2::system::key_for_seed(Some(2)));
    let warm = model.step(&mut st, cond, params, None);
    st.take_times();
    let dry = burn::cubecl::dry_run::DryRun::new();
    let t0 = Instant::now();
    let ran = model.step(&mut st, cond, params, None);
    let total = t0.elapsed();
    drop(dry);
    g.set_replay(replays);
    let host = st.take_times().encoder;
    (warm.is_ok() && ran.is_ok()).then(|| total.saturating_sub(host).as_secs_f64() * 1e6 / mrt2_gpu_dispatches_per_frame(&model.cfg) as f64)
}

#[cfg(not(any(feature = "wgpu", feature = "cuda")))]
fn mrt2_dry_run_issue(_: &crate::mrt2::model::Mrt2Model, _: &[i32], _: &crate::sampling::mrt2::SamplingParams) -> Option<f64> {
    None
}

/// Runs `frames` MRT2 frames (after 2 warm-up frames) of `cfg` (named `size`) with random weights
/// in `precision` through the LM step on `target` (the host kernels, or the GPU kernels on a
/// GPU target) and the streamed codec decode on the host.
pub fn bench_mrt2(size: &str, cfg: crate::mrt2::config::Mrt2Config, precision: crate::kernels::WeightPrecision, frames: usize, target: &Target) -> Result<Mrt2BenchReport, String> {
    use crate::codec::weights::{random_files, CodecWeights, CodecWidths};
    use crate::codec::{Codec, CodecConfig, DecoderStream};
    use crate::mrt2::conditioning::ConditionFrame;
    use crate::mrt2::config::Mrt2Config;
    use crate::mrt2::model::{FrameState, Mrt2Model};
    use crate::mrt2::weights::Mrt2Weights;

    let frames = frames.max(1);
    let started = Instant::now();
    let mut weights = Mrt2Weights::random(&cfg, 11);
    weights.set_precision(precision);
    let mut model = Mrt2Model::new(cfg.clone(), weights);
    let gpu = target.compute == crate::Compute::Gpu;
    if gpu {
        model = model.on_device(&target.device).map_err(|e| e.to_string())?;
    }
    let config = CodecConfig::spectrostream_48k_stereo();
    let [e, d, q] = random_files(&config, &CodecWidths::full_size(), 7);
    let codec_weights = CodecWeights::from_files(&e, &d, Some(&q), &config).map_err(|e| e.to_string())?;
    let codec = Codec::from_weights(config, codec_weights, &Target::host()).map_err(|e| e.to_string())?;
    let load_s = started.elapsed().as_secs_f64();

    let mut state = FrameState::new(&model, crate::mrt2::system::key_for_seed(Some(1)));
    let mut stream = DecoderStream::new(&codec, cfg.num_levels).map_err(|e| e.to_string())?;
    let mut tokens = Vec::new();
    ConditionFrame::masked(cfg.musiccoca_levels).to_tokens(cfg.token_shift, &mut tokens);
    let params = crate::sampling::mrt2::SamplingParams::default();
    let mut codes = vec![0i32; cfg.num_levels];
    let mut frame = |state: &mut FrameState, stream: &mut DecoderStream| -> Result<f64, String> {
        model.step(state, &tokens, &params, None).map_err(|e| e.to_string())?;
        for (c, &id) in codes.iter_mut().zip(state.tokens()) {
            *c = crate::mrt2::model::token_to_code(&cfg, id);
        }
        let t = Instant::now();
        stream.step(&codec, &codes).map_err(|e| e.to_string())?;
        Ok(t.elapsed().as_secs_f64() * 1e3)
    };
    // Counting from the warm-up on: the GPU frame is recorded in the second warm-up frame, and a
    // replay counts the launches its recording saw.
    let counting = crate::kernels::counters::Counting::start(gpu, false);
    for _ in 0..2 {
        frame(&mut state, &mut stream)?;
    }
    state.take_times();
    counting.restart_segment();
    let before = counting.snapshot();
    let mut codec_ms = 0.0;
    for _ in 0..frames {
        codec_ms += frame(&mut state, &mut stream)?;
    }
    let after = counting.snapshot();
    drop(counting);
    let times = state.take_times();
    let gpu_counts = gpu.then(|| {
        let t = after.part_since(&before, None);
        let n = frames as f64;
        let per = |v: u64| v as f64 / n;
        let (syncs, h2d) = (t.syncs.div_ceil(frames as u64), t.h2d_bytes.div_ceil(frames as u64));
        let released = [("small", Mrt2Config::mrt2_small()), ("base", Mrt2Config::mrt2_base())];
        let mut predicted = vec![predict_frame(size, &cfg, precision, model.weights.depth_input_adapter.is_some(), syncs, h2d)];
        for (name, c) in released {
            if c != cfg {
                // Their own sizes at this precision; the uploads grow with the encoder width.
                let h2d_scaled = (h2d + 4 * c.encoder_width as u64).saturating_sub(4 * cfg.encoder_width as u64);
                predicted.push(predict_frame(name, &c, precision, c.has_depth_input_adapter(), syncs, h2d_scaled));
            }
        }
        Mrt2GpuCounts {
            device: model.gpu().map_or_else(String::new, |g| g.name().to_owned()),
            dispatches_per_frame: t.dispatches.map(per),
            expected_dispatches_per_frame: mrt2_gpu_dispatches_per_frame(&cfg),
            syncs_per_frame: per(t.syncs),
            d2h_bytes_per_frame: per(t.d2h_bytes),
            h2d_uploads_per_frame: per(t.uploads),
            h2d_bytes_per_frame: per(t.h2d_bytes),
            replayed: state.replaying(),
            host_us_per_dispatch: mrt2_dry_run_issue(&model, &tokens, &params),
            h100_bandwidth_bytes_per_s: GpuPrediction::H100_BANDWIDTH,
            h200_bandwidth_bytes_per_s: GpuPrediction::H200_BANDWIDTH,
            t_gap_s: GpuPrediction::T_GAP_S,
            t_sync_s: GpuPrediction::T_SYNC_S,
            pcie_bytes_per_s: PCIE_BYTES_PER_S,
            note: "predicted: a model from counts with assumed constants, not a measurement".to_owned(),
            predicted,
        }
    });
    let per = |d: std::time::Duration| d.as_secs_f64() * 1e3 / frames as f64;
    let (encoder_ms, temporal_ms, depth_ms, logits_sampling_ms) = (per(times.encoder), per(times.temporal), per(times.depth), per(times.logits_sampling));
    let lm_ms_per_frame = encoder_ms + temporal_ms + depth_ms + logits_sampling_ms;
    let codec_ms_per_frame = codec_ms / frames as f64;
    let total = lm_ms_per_frame + codec_ms_per_frame;
    let threads = rayon::current_num_threads();
    let bandwidth = measure_read_bandwidth(threads);
    let bytes = mrt2_bytes_per_frame(&model);
    let codec_gflop = codec.stream_gflop_per_frame().unwrap_or(f64::NAN);
    Ok(Mrt2BenchReport {
        size: size.to_owned(),
        threads,
        simd: crate::kernels::host::simd_level().to_owned(),
        precision: precision.to_string(),
        frames,
        parameters: cfg.param_count(),
        load_s,
        encoder_ms,
        temporal_ms,
        depth_ms,
        logits_sampling_ms,
        lm_ms_per_frame,
        codec_ms_per_frame,
        total_ms_per_frame: total,
        real_time_factor: 40.0 / total,
        lm_bytes_per_frame: bytes,
        measured_read_bandwidth_gbs: bandwidth,
        lm_floor_ms: bytes as f64 / (bandwidth * 1e9) * 1e3,
        codec_gflop_per_frame: codec_gflop,
        codec_gflops: codec_gflop / (codec_ms_per_frame / 1e3),
        peak_rss_bytes: peak_rss_bytes(),
        device: target.choice.to_string(),
        gpu: gpu_counts,
    })
}
