//! `kernels::counters` on a whole tiny decode (flex, no GPU): the syncs, readback bytes and
//! uploads the decode loop does, counted exactly, and no dispatch counts where there are no
//! kernel launches.

mod common;

use common::lm::encoder_rows;
use mrt::bench::count_chunk;
use mrt::v1::lm::weights::HostWeights;
use mrt::v1::lm::{Depthformer, LmConfig, LmOptions, LmScratch, SamplingParams};

/// The L1 fixture's dimensions (the tiny model's): 50 frames × 16 levels, the full vocabulary.
fn tiny_config() -> LmConfig {
    LmConfig {
        d_model: 32,
        num_heads: 2,
        head_dim: 16,
        mlp_dim: 48,
        depth_mlp_dim: 48,
        encoder_layers: 2,
        temporal_layers: 2,
        depth_layers: 2,
        ..LmConfig::base()
    }
}

/// The counters are process-wide: one test at a time, model loading included.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn counts(host_kernels: bool) -> (LmConfig, mrt::bench::ChunkCounts) {
    let _one = serial();
    let c = tiny_config();
    let target = mrt::Target::with_kernels(mrt::DeviceChoice::Flex, host_kernels).unwrap();
    let model = Depthformer::from_weights_with(c.clone(), HostWeights::random(&c, 5), &target, LmOptions::default()).unwrap();
    let params = SamplingParams { seed: 3, ..SamplingParams::default() };
    let counts = count_chunk(&model, &target, &encoder_rows(&c), &params, &mut LmScratch::default()).unwrap();
    (c, counts)
}

#[test]
fn the_burn_step_path_reads_back_both_rows_logits_once_per_token() {
    let (c, n) = counts(false);
    let (frames, levels, vocab, s) = (c.chunk_frames as u64, c.num_levels as u64, c.vocab_size as u64, c.encoder_len() as u64);
    let tokens = frames * levels;
    assert_eq!(tokens, 800);
    let t = n.total;
    assert_eq!(t.syncs, tokens, "{t:?}");
    assert_eq!(t.d2h_bytes, tokens * 2 * vocab * 4, "{t:?}");
    // Encoder ids, E[BOS], the previous frame's ids per later frame, the previous level's id per
    // later level (one per CFG row).
    assert_eq!(t.uploads, 1 + 1 + (frames - 1) + frames * (levels - 1), "{t:?}");
    assert_eq!(t.h2d_bytes, 4 * (2 * s + 1 + (frames - 1) * 2 * levels + frames * (levels - 1) * 2), "{t:?}");
    assert_eq!((t.dispatches, t.burn_ops, t.fused_blocks), (None, None, None), "flex has no kernel launches to count");
    // The split chunk: every readback is a depth step's, nothing in the sampler.
    let p = n.by_part;
    assert_eq!((p.encoder.syncs, p.temporal.syncs, p.depth.syncs, p.sampling.syncs), (0, 0, tokens, 0), "{p:?}");
    assert_eq!(p.depth.d2h_bytes, t.d2h_bytes);
    assert_eq!(p.encoder.uploads + p.temporal.uploads + p.depth.uploads + p.sampling.uploads, t.uploads, "{p:?}");
    assert_eq!(p.depth.uploads, frames * (levels - 1));
}

#[test]
fn the_host_path_reads_back_only_the_encoder_output() {
    let (c, n) = counts(true);
    let t = n.total;
    assert_eq!(t.syncs, 1, "{t:?}");
    assert_eq!(t.d2h_bytes, 2 * (c.encoder_len() * c.d_model) as u64 * 4, "{t:?}");
    assert_eq!(n.by_part.encoder.syncs, 1);
    assert_eq!(t.dispatches, None);
}

/// The GPU kernels on wgpu (lavapipe in CI), issue 17's budget for the tiny v1 model: at most
/// 30,000 dispatches and 2 blocking syncs per chunk (the encoder output and the tokens). Every
/// step issues the same launches (asserted per part below), so a chunk of 4 frames (frame 0
/// eager, then replayed steps) gives the 50-frame chunk's count exactly, at a twelfth of
/// lavapipe's time.
#[cfg(feature = "wgpu")]
#[test]
fn the_gpu_kernels_decode_a_chunk_in_few_dispatches_and_two_syncs() {
    let _one = serial();
    let tiny = tiny_config();
    let c = LmConfig { chunk_frames: 4, ..tiny.clone() };
    let target = mrt::Target::new(mrt::DeviceChoice::Wgpu).unwrap();
    assert_eq!(target.compute, mrt::Compute::Gpu);
    let model = Depthformer::from_weights_with(c.clone(), HostWeights::random(&c, 5), &target, LmOptions::default()).unwrap();
    // Greedy keeps lavapipe's single-workgroup sampler short; the launches are the same.
    let params = SamplingParams { top_k: 1, seed: 3, ..SamplingParams::default() };
    let n = count_chunk(&model, &target, &encoder_rows(&c), &params, &mut LmScratch::default()).unwrap();
    let t = n.total;
    let dispatches = t.dispatches.expect("wgpu counts launches");
    let (frames, levels) = (c.chunk_frames as u64, c.num_levels as u64);
    // Per depth step: 5 per layer + logits + sample; per temporal step: 8 per layer.
    let decode = frames * levels * (5 * c.depth_layers as u64 + 2) + frames * 8 * c.temporal_layers as u64;
    let p = n.by_part;
    assert_eq!(p.temporal.dispatches, Some(frames * 8 * c.temporal_layers as u64), "{p:?}");
    // Frame 0 eagerly (depth and sampling apart), then one recorded depth step + draw replayed.
    let depth_step = 5 * c.depth_layers as u64 + 1;
    assert_eq!(p.sampling.dispatches, Some(levels), "{p:?}");
    assert_eq!(p.depth.dispatches, Some(levels * depth_step + (frames - 1) * levels * (depth_step + 1)), "{p:?}");
    assert!(dispatches >= decode, "{dispatches} dispatches per chunk ({decode} in the decode loop)");
    // The split chunk's encoder part also holds the warm-up (kernel compilation, autotuning).
    let parts = [p.temporal.dispatches, p.depth.dispatches, p.sampling.dispatches];
    assert_eq!(parts.into_iter().sum::<Option<u64>>(), Some(decode), "{p:?}");
    // Frames 1.. are alike: the tiny model's 50-frame chunk adds 46 more of them.
    let per_frame = 8 * c.temporal_layers as u64 + levels * (depth_step + 1);
    let tiny_chunk = dispatches + (tiny.chunk_frames as u64 - frames) * per_frame;
    assert!(tiny_chunk <= 30_000, "{tiny_chunk} dispatches per tiny chunk ({dispatches} for {frames} frames)");
    assert!(t.syncs <= 2, "{t:?}");
    assert_eq!(t.syncs, 2, "the encoder output and the tokens: {t:?}");
    let s = c.encoder_len() as u64;
    assert_eq!(t.d2h_bytes, 2 * s * c.d_model as u64 * 4 + (frames * levels + 2) * 4, "{t:?}");
}
