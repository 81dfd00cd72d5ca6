//! `mrt bench`: timings at the real model size with random weights (no download needed).
//!
//! The LM decode is memory-bound on a CPU: every depth step streams the depth layers and the
//! `[d, vocab]` logits kernel, every temporal step the temporal layers. [`LmBenchReport`] reports
//! the bytes of weights a chunk reads and the machine's measured read bandwidth, so the distance
//! to the floor (`bytes / bandwidth`) is visible next to the measured time.

use std::time::Instant;

use burn::tensor::{Device, Int, Tensor, TensorData};
use serde::Serialize;

use crate::lm::weights::HostWeights;
use crate::lm::{Depthformer, LmConfig, SamplingParams};
use crate::DeviceChoice;

#[derive(Clone, Debug, Serialize)]
pub struct LmBenchReport {
    pub size: String,
    pub device: String,
    pub threads: usize,
    pub chunks: usize,
    pub load_s: f64,
    pub encoder_ms: f64,
    pub temporal_step_ms: f64,
    pub depth_step_ms: f64,
    /// Sampling and the host side of each depth step (CFG combine, top-k, draw).
    pub sampling_ms_per_step: f64,
    pub chunk_s: f64,
    pub real_time_factor: f64,
    pub peak_rss_bytes: Option<u64>,
    pub device_bytes_in_use: Option<u64>,
    /// Weight bytes streamed per chunk (f32): encoder once, temporal × frames, depth+logits × tokens.
    pub weight_bytes_per_chunk: u64,
    pub measured_read_bandwidth_gbs: f64,
    /// `weight_bytes_per_chunk / bandwidth`: the memory floor of one chunk.
    pub floor_chunk_s: f64,
}

/// Bytes of f32 weights a chunk reads: the encoder once, every temporal layer (cross-attention K/V
/// excluded: computed once per chunk) once per frame, every depth layer and the logits kernel once
/// per token.
pub fn weight_bytes_per_chunk(c: &LmConfig) -> u64 {
    let (d, inner) = (c.d_model as u64, c.inner_dim() as u64);
    let attn = 4 * d * inner;
    let enc = c.encoder_layers as u64 * (attn + 3 * d * c.mlp_dim as u64);
    let temporal_step = c.temporal_layers as u64 * (attn + 2 * d * inner + 3 * d * c.mlp_dim as u64);
    let cross_kv = c.temporal_layers as u64 * 2 * d * inner;
    let depth_step = c.depth_layers as u64 * (attn + 3 * d * c.depth_mlp_dim as u64) + d * c.vocab_size as u64;
    4 * (enc + cross_kv + temporal_step * c.chunk_frames as u64 + depth_step * c.chunk_tokens() as u64)
}

/// Best-of-3 multi-threaded read bandwidth over a 1 GiB buffer, in GB/s.
pub fn measure_read_bandwidth(threads: usize) -> f64 {
    let n = (1usize << 30) / 4;
    let buf: Vec<f32> = (0..n).map(|i| (i & 1023) as f32).collect();
    let mut best = 0f64;
    for _ in 0..3 {
        let started = Instant::now();
        let chunk = n.div_ceil(threads);
        let total: f32 = std::thread::scope(|s| {
            let handles: Vec<_> = buf
                .chunks(chunk)
                .map(|part| {
                    s.spawn(move || {
                        // Eight independent accumulators let the compiler vectorise the sum.
                        let mut acc = [0f32; 8];
                        for c in part.chunks_exact(8) {
                            for i in 0..8 {
                                acc[i] += c[i];
                            }
                        }
                        acc.iter().sum::<f32>()
                    })
                })
                .collect();
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

/// Times `chunks` chunks of the real decode loop (CFG batch 2, top-k 40) with random weights.
pub fn bench_lm(size: &str, config: LmConfig, choice: DeviceChoice, chunks: usize) -> Result<LmBenchReport, String> {
    let device = choice.device()?;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let started = Instant::now();
    let model = Depthformer::from_weights(config.clone(), HostWeights::random(&config, 1), &device).map_err(|e| e.to_string())?;
    sync(&device);
    let load_s = started.elapsed().as_secs_f64();

    let c = &config;
    let s = c.encoder_len();
    let mut ids = vec![0i32; 2 * s];
    for (i, id) in ids.iter_mut().enumerate() {
        *id = (c.codec_offset + (i * 7919) % (c.codebook_size * c.encoder_codec_levels)) as i32;
    }
    let params = SamplingParams { seed: 3, ..SamplingParams::default() };
    // Warm-up: one full chunk (kernel autotuning on GPUs, page faults on CPUs).
    model.generate_tokens(&ids, &params, 0, None, None).map_err(|e| e.to_string())?;

    let (mut enc_s, mut temporal_s, mut depth_s, mut sample_s, mut total_s) = (0.0, 0.0, 0.0, 0.0, 0.0);
    let mut sampler = crate::lm::sampling::Sampler::default();
    let vocab = c.vocab_size;
    let mut guided = vec![0f32; vocab];
    for chunk in 0..chunks {
        let chunk_start = Instant::now();
        let t0 = Instant::now();
        let encoded = model.encode(model.ids_tensor(&ids, 2, s));
        let mut cache = model.start_chunk(encoded);
        sync(&device);
        enc_s += t0.elapsed().as_secs_f64();
        let mut rng = params.rng_for_chunk(chunk as u64);
        let mut tokens = vec![0i32; c.chunk_tokens()];
        for t in 0..c.chunk_frames {
            let t0 = Instant::now();
            let prev = (t > 0).then(|| {
                let frame = &tokens[(t - 1) * c.num_levels..t * c.num_levels];
                model.ids_tensor(&[frame, frame].concat(), 2, c.num_levels)
            });
            let x = model.temporal_input(&cache, prev);
            let mut input = model.temporal_step(&mut cache, x);
            sync(&device);
            temporal_s += t0.elapsed().as_secs_f64();
            for q in 0..c.num_levels {
                let t0 = Instant::now();
                let host = model.depth_step(&mut cache, input).into_data().try_into_vec::<f32>().map_err(|e| format!("{e:?}"))?;
                let t1 = Instant::now();
                depth_s += (t1 - t0).as_secs_f64();
                crate::lm::sampling::cfg_combine(&host[..vocab], &host[vocab..], params.guidance_weight, &mut guided);
                let id = sampler.sample(&guided, &params, &mut rng).map_err(|i| format!("non-finite logit {i}"))?;
                tokens[t * c.num_levels + q] = id as i32;
                let next: Tensor<1, Int> = Tensor::from_data(TensorData::new(vec![id as i32; 2], [2]), &device);
                input = model.depth_input(next);
                sample_s += t1.elapsed().as_secs_f64();
            }
        }
        total_s += chunk_start.elapsed().as_secs_f64();
    }
    let n = chunks.max(1) as f64;
    let chunk_s = total_s / n;
    let bandwidth = measure_read_bandwidth(threads);
    let bytes = weight_bytes_per_chunk(c);
    Ok(LmBenchReport {
        size: size.to_owned(),
        device: choice.to_string(),
        threads,
        chunks,
        load_s,
        encoder_ms: enc_s / n * 1e3,
        temporal_step_ms: temporal_s / n / c.chunk_frames as f64 * 1e3,
        depth_step_ms: depth_s / n / c.chunk_tokens() as f64 * 1e3,
        sampling_ms_per_step: sample_s / n / c.chunk_tokens() as f64 * 1e3,
        chunk_s,
        real_time_factor: (c.chunk_frames as f64 / 25.0) / chunk_s,
        peak_rss_bytes: peak_rss_bytes(),
        device_bytes_in_use: device.memory_pool_usage().map(|u| u.bytes_reserved),
        weight_bytes_per_chunk: bytes,
        measured_read_bandwidth_gbs: bandwidth,
        floor_chunk_s: bytes as f64 / (bandwidth * 1e9),
    })
}

impl std::fmt::Display for LmBenchReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let gb = |b: u64| b as f64 / 1e9;
        writeln!(f, "mrt bench lm — size {}, device {}, {} threads, {} chunk(s)", self.size, self.device, self.threads, self.chunks)?;
        writeln!(f, "  load (random weights)   {:>9.2} s", self.load_s)?;
        writeln!(f, "  encoder                 {:>9.1} ms / chunk", self.encoder_ms)?;
        writeln!(f, "  temporal step           {:>9.2} ms  (× 50)", self.temporal_step_ms)?;
        writeln!(f, "  depth step + logits     {:>9.3} ms  (× 800)", self.depth_step_ms)?;
        writeln!(f, "  sampling (host)         {:>9.3} ms  (× 800)", self.sampling_ms_per_step)?;
        writeln!(f, "  chunk                   {:>9.2} s   real-time factor {:.2}×", self.chunk_s, self.real_time_factor)?;
        if let Some(b) = self.peak_rss_bytes {
            writeln!(f, "  peak RSS                {:>9.2} GB", gb(b))?;
        }
        if let Some(b) = self.device_bytes_in_use {
            writeln!(f, "  device memory reserved  {:>9.2} GB", gb(b))?;
        }
        writeln!(f, "  weights read / chunk    {:>9.1} GB (f32)", gb(self.weight_bytes_per_chunk))?;
        writeln!(f, "  measured read bandwidth {:>9.1} GB/s", self.measured_read_bandwidth_gbs)?;
        write!(f, "  memory floor / chunk    {:>9.2} s   (measured is {:.2}× the floor)", self.floor_chunk_s, self.chunk_s / self.floor_chunk_s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_chunk_reads_about_165_gb_of_f32_weights() {
        let gb = weight_bytes_per_chunk(&LmConfig::base()) as f64 / 1e9;
        assert!((150.0..220.0).contains(&gb), "{gb} GB");
    }
}
