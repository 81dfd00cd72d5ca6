//! The GPU kernels (`Compute::Gpu`, wgpu over lavapipe in CI) against the host kernels on the same
//! random weights at the real head size (64): teacher-forced step logits, f32, bf16 and int8 weights,
//! both logit modes; whole chunks (the device loop: replayed steps, the device sampler) give the
//! host's tokens, greedy and sampled; an out-of-vocabulary input is refused by name.
#![cfg(feature = "wgpu")]

mod common;

use common::lm::encoder_rows;
use mrt::v1::lm::weights::HostWeights;
use mrt::v1::lm::{DepthLogits, Depthformer, LmConfig, LmOptions, SamplingParams, WeightPrecision};

fn small_config() -> LmConfig {
    common::lm::small_config(2)
}

fn model(c: &LmConfig, gpu: bool, options: LmOptions) -> Depthformer {
    // The chunk's uninitialised buffers start as NaN here: a read before a write would show.
    mrt::kernels::gpu::poison_scratch(true);
    let target = if gpu { mrt::Target::new(mrt::DeviceChoice::Wgpu).unwrap() } else { mrt::Target::host() };
    let m = Depthformer::from_weights_with(c.clone(), HostWeights::random(c, 5), &target, options).unwrap();
    assert_eq!(m.compute(), if gpu { mrt::Compute::Gpu } else { mrt::Compute::Host });
    m
}

/// Teacher-forced step logits `[steps, 2, rows]` of `frames` frames, different targets per row.
fn stepped_logits(m: &Depthformer, frames: usize) -> Vec<f32> {
    let n = frames * m.config.num_levels;
    common::lm::stepped_logits(m, &encoder_rows(&m.config), &common::lm::varied_targets(n, 977, 29000), frames)
}

#[test]
fn gpu_step_logits_equal_the_host_kernels_f32_bf16_and_int8() {
    let c = small_config();
    for (precision, depth_logits) in [
        (WeightPrecision::F32, DepthLogits::All),
        (WeightPrecision::Bf16, DepthLogits::All),
        (WeightPrecision::Bf16, DepthLogits::Level),
        (WeightPrecision::Int8, DepthLogits::Level),
    ] {
        let options = LmOptions { precision, depth_logits };
        let want = stepped_logits(&model(&c, false, options), 2);
        let got = stepped_logits(&model(&c, true, options), 2);
        // Same weights (bf16 widened exactly on both; int8 the same bytes and row scales), f32
        // sums in another order.
        common::lm::assert_logits_close(&got, &want, &format!("{precision} / {depth_logits}: GPU vs host step logits"));
    }
}

#[test]
fn gpu_chunks_give_the_host_tokens_greedy_and_sampled() {
    let c = small_config();
    let ids = encoder_rows(&c);
    for options in [
        LmOptions::default(),
        LmOptions { precision: WeightPrecision::Bf16, depth_logits: DepthLogits::Level },
        LmOptions { precision: WeightPrecision::Int8, depth_logits: DepthLogits::Level },
    ] {
        let (host, gpu) = (model(&c, false, options), model(&c, true, options));
        for p in [
            SamplingParams { top_k: 1, seed: 1, ..SamplingParams::default() },
            SamplingParams { seed: 17, ..SamplingParams::default() },
            SamplingParams { top_k: 0, temperature: 0.8, guidance_weight: 0.0, seed: 4 },
        ] {
            let want = host.generate_tokens(&ids, &p, 2, None, None).unwrap();
            let got = gpu.generate_tokens(&ids, &p, 2, None, None).unwrap();
            assert_eq!(got.len(), c.chunk_tokens());
            let first = got.iter().zip(&want).position(|(a, b)| a != b);
            assert_eq!(first, None, "{options:?}, {p:?}: first differing token");
            // Deterministic: the same chunk again (replay of freshly recorded steps) is identical
            // (once per weight setting: lavapipe is slow).
            if p.top_k == 1 {
                assert_eq!(gpu.generate_tokens(&ids, &p, 2, None, None).unwrap(), got);
            }
        }
    }
}

#[test]
fn observed_and_replayed_chunks_agree_and_bad_ids_are_refused() {
    let c = small_config();
    // Logits of the current level only (1,024 rows, not 29,824): the same step graph, and
    // lavapipe spends most of a full-width step in the logits product.
    let gpu = model(&c, true, LmOptions { depth_logits: DepthLogits::Level, ..LmOptions::default() });
    let ids = encoder_rows(&c);
    let p = SamplingParams { seed: 8, ..SamplingParams::default() };
    // An observer reads every step's guided logits (eager launches); without one the steps replay.
    let mut seen = 0;
    let mut observe = |_: usize, guided: &[f32]| {
        assert_eq!(guided.len(), c.codebook_size);
        seen += 1;
    };
    let observed = gpu.generate_tokens(&ids, &p, 0, Some(&mut observe), None).unwrap();
    assert_eq!(seen, c.chunk_tokens());
    assert_eq!(gpu.generate_tokens(&ids, &p, 0, None, None).unwrap(), observed);
    // Generation holds one copy of the decoder on the device; burn's is uploaded by the first
    // teacher-forced pass (the reference: the L1 ladder on wgpu runs it through this path).
    assert!(!gpu.burn_decoder_resident(), "burn's decoder was uploaded for generation");
    let mut state = gpu.begin_chunk(gpu.encode(gpu.ids_tensor(&ids, 2, c.encoder_len()))).unwrap();
    gpu.step_frame(&mut state, None).unwrap();
    let err = gpu.step_level(&mut state, 1, Some(&[c.vocab_size as i32]), &mut Vec::new()).unwrap_err();
    assert!(err.to_string().contains(&format!("token id {} outside the vocabulary", c.vocab_size)), "{err}");
}
