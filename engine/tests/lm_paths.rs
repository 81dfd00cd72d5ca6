//! The fast incremental path against the slow teacher-forced path on random weights at the real
//! head size (64), and the sampling contract of a whole chunk.

mod common;

use mrt::conformance::compare;
use mrt::v1::lm::weights::HostWeights;
use mrt::v1::lm::{DepthLogits, Depthformer, LmConfig, LmOptions, LmScratch, SamplingParams, WeightPrecision};

fn small_config() -> LmConfig {
    common::lm::small_config(6)
}

fn model(config: &LmConfig, seed: u64) -> Depthformer {
    Depthformer::from_weights(config.clone(), HostWeights::random(config, seed), &mrt::Target::host()).unwrap()
}

fn encoder_rows(c: &LmConfig) -> Vec<i32> {
    let s = c.encoder_len();
    (0..2 * s).map(|i| if i % s >= s - 6 && i >= s { 1 } else { (2 + (i * 131) % 4096) as i32 }).collect()
}

#[test]
fn incremental_logits_equal_teacher_forced_logits_at_head_size_64() {
    // The burn path's steps (KV caches, one position per step) against its teacher-forced pass.
    let c = small_config();
    let m = model_on(&c, 5, false, LmOptions::default());
    let s = c.encoder_len();
    let encoded = m.encode(m.ids_tensor(&encoder_rows(&c), 2, s));
    let (frames, q, vocab) = (3, c.num_levels, c.vocab_size);
    let n = frames * q;
    // Different targets per row, some out of their level's range as the reference allows.
    let targets = common::lm::varied_targets(n, 977, 29000);
    let teacher = m.teacher_forced(encoded, m.ids_tensor(&targets, 2, n));
    let rows = teacher.logits.into_data().try_into_vec::<f32>().unwrap(); // [2, steps, vocab]
    // Step-major like the stepped logits: [steps, 2, vocab].
    let want: Vec<f32> = (0..n).flat_map(|t| (0..2).flat_map(move |r| (0..vocab).map(move |i| (r, t, i)))).map(|(r, t, i)| rows[(r * n + t) * vocab + i]).collect();
    let got = stepped_logits(&m, &targets, frames);
    common::lm::assert_logits_close(&got, &want, "incremental vs teacher-forced");
}

#[test]
fn a_chunk_is_deterministic_per_seed_and_chunk_index() {
    let c = small_config();
    let m = model(&c, 9);
    let ids = encoder_rows(&c);
    let p = SamplingParams { seed: 17, ..SamplingParams::default() };
    let a = m.generate_tokens(&ids, &p, 2, None, None).unwrap();
    assert_eq!(a.len(), c.chunk_frames * c.num_levels);
    assert_eq!(a, m.generate_tokens(&ids, &p, 2, None, None).unwrap(), "same seed and chunk index");
    assert_ne!(a, m.generate_tokens(&ids, &p, 3, None, None).unwrap(), "the chunk index moves the stream");
    assert!(a.iter().all(|&id| id >= 0 && (id as usize) < c.vocab_size));
}

#[test]
fn a_raised_cancel_flag_stops_the_chunk() {
    let c = small_config();
    let m = model(&c, 9);
    let ids = encoder_rows(&c);
    let p = SamplingParams::default();
    let raised = std::sync::atomic::AtomicBool::new(true);
    let err = m.generate_tokens(&ids, &p, 0, None, Some(&raised)).unwrap_err();
    assert!(matches!(err, mrt::v1::lm::LmError::Cancelled), "{err}");
    let lowered = std::sync::atomic::AtomicBool::new(false);
    assert_eq!(
        m.generate_tokens(&ids, &p, 0, None, Some(&lowered)).unwrap(),
        m.generate_tokens(&ids, &p, 0, None, None).unwrap(),
        "a lowered flag changes nothing"
    );
}

#[test]
fn top_k_one_and_temperature_zero_are_both_greedy() {
    let c = small_config();
    let m = model(&c, 4);
    let ids = encoder_rows(&c);
    let k1 = m.generate_tokens(&ids, &SamplingParams { top_k: 1, seed: 1, ..Default::default() }, 0, None, None).unwrap();
    let t0 = m.generate_tokens(&ids, &SamplingParams { temperature: 0.0, seed: 99, ..Default::default() }, 7, None, None).unwrap();
    assert_eq!(k1, t0);
}

#[test]
fn sampled_ids_stay_in_the_top_k_of_the_guided_logits() {
    let c = small_config();
    let m = model(&c, 6);
    let ids = encoder_rows(&c);
    let p = SamplingParams { top_k: 3, temperature: 3.0, seed: 5, ..Default::default() };
    let mut allowed: Vec<Vec<usize>> = Vec::new();
    let tokens = {
        let mut record = |_step: usize, guided: &[f32]| {
            let mut order: Vec<usize> = (0..guided.len()).collect();
            order.sort_by(|&a, &b| guided[b].total_cmp(&guided[a]));
            allowed.push(order[..3].to_vec());
        };
        m.generate_tokens(&ids, &p, 0, Some(&mut record), None).unwrap()
    };
    for (step, id) in tokens.iter().enumerate() {
        assert!(allowed[step].contains(&(*id as usize)), "step {step}: {id} not in {:?}", allowed[step]);
    }
}

#[test]
fn guidance_weight_zero_equals_the_conditional_row_alone() {
    let c = small_config();
    let m = model(&c, 8);
    let ids = encoder_rows(&c);
    let p = SamplingParams { guidance_weight: 0.0, top_k: 1, ..Default::default() };
    let unguided = m.generate_tokens(&ids, &p, 0, None, None).unwrap();
    // With w = 0 the uncond row must not matter: replace it and expect the same tokens.
    let mut other = ids.clone();
    let s = c.encoder_len();
    other[s..].iter_mut().for_each(|v| *v = 1);
    assert_eq!(unguided, m.generate_tokens(&other, &p, 0, None, None).unwrap());
    let bad = SamplingParams { temperature: f32::NAN, ..Default::default() };
    assert!(m.generate_tokens(&ids, &bad, 0, None, None).is_err(), "NaN temperature is rejected");
}

/// The model on the CPU with `options`, on the host kernels or (`host_kernels` off) burn ops.
fn model_on(config: &LmConfig, seed: u64, host_kernels: bool, options: LmOptions) -> Depthformer {
    let target = mrt::Target::with_kernels(mrt::DeviceChoice::Flex, host_kernels).unwrap();
    Depthformer::from_weights_with(config.clone(), HostWeights::random(config, seed), &target, options).unwrap()
}

fn model_with(config: &LmConfig, seed: u64, options: LmOptions) -> Depthformer {
    model_on(config, seed, true, options)
}

/// Logits of every step of `frames` frames through the model's stepping calls (the decode
/// loop's), teacher-forced with `targets` (`[2, frames·levels]`).
fn stepped_logits(m: &Depthformer, targets: &[i32], frames: usize) -> Vec<f32> {
    common::lm::stepped_logits(m, &encoder_rows(&m.config), targets, frames)
}

#[test]
fn host_kernels_compute_the_burn_step_path_logits() {
    let c = small_config();
    let host = model_with(&c, 5, LmOptions::default());
    let burn = model_on(&c, 5, false, LmOptions::default());
    assert!(host.compute() == mrt::Compute::Host && burn.compute() == mrt::Compute::Burn);
    let frames = c.chunk_frames;
    let targets = common::lm::varied_targets(frames * c.num_levels, 977, 29000);
    let (a, b) = (stepped_logits(&host, &targets, frames), stepped_logits(&burn, &targets, frames));
    common::lm::assert_logits_close(&a, &b, "host kernels vs burn steps");
    // And whole chunks: same greedy and sampled tokens.
    let ids = encoder_rows(&c);
    for p in [SamplingParams { top_k: 1, ..Default::default() }, SamplingParams { seed: 8, ..Default::default() }] {
        assert_eq!(host.generate_tokens(&ids, &p, 1, None, None).unwrap(), burn.generate_tokens(&ids, &p, 1, None, None).unwrap());
    }
}

#[test]
fn bf16_weights_run_the_rounded_model_and_stay_close_to_f32() {
    let c = small_config();
    let f32m = model_with(&c, 3, LmOptions::default());
    let bf16 = model_with(&c, 3, LmOptions { precision: WeightPrecision::Bf16, ..LmOptions::default() });
    let frames = 2;
    let targets = common::lm::varied_targets(frames * c.num_levels, 331, 16000);
    let a = stepped_logits(&bf16, &targets, frames);
    // The teacher-forced path of the bf16 model runs on burn with the same rounded weights.
    let s = c.encoder_len();
    let teacher = bf16.teacher_forced(bf16.encode(bf16.ids_tensor(&encoder_rows(&c), 2, s)), bf16.ids_tensor(&targets, 2, targets.len() / 2));
    let rows = teacher.logits.into_data().try_into_vec::<f32>().unwrap(); // [2, steps, vocab]
    let (v, steps) = (c.vocab_size, frames * c.num_levels);
    // Step-major like the stepped logits: [steps, 2, vocab].
    let want: Vec<f32> = (0..steps).flat_map(|t| (0..2).flat_map(move |r| (0..v).map(move |i| (r, t, i)))).map(|(r, t, i)| rows[(r * steps + t) * v + i]).collect();
    let (diff, ok) = compare(&a, &want, 1e-4, 1e-4);
    assert!(ok, "bf16 host kernels vs the bf16 model on burn: max |diff| {diff}");
    // Rounding the weights moves the logits, by about bf16's precision, not more.
    let b = stepped_logits(&f32m, &targets, frames);
    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs()));
    let diff = a.iter().zip(&b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
    assert!(diff > 0.0 && diff < 0.05 * scale, "bf16 vs f32: max |diff| {diff}, scale {scale}");
}

#[test]
fn level_logits_are_the_levels_slice_of_the_full_logits() {
    let c = small_config();
    for host_kernels in [true, false] {
        let all = model_on(&c, 2, host_kernels, LmOptions::default());
        let level = model_on(&c, 2, host_kernels, LmOptions { depth_logits: DepthLogits::Level, ..LmOptions::default() });
        let frames = 2;
        let targets: Vec<i32> = (0..2 * frames * c.num_levels).map(|i| (2 + (i * 577) % 16000) as i32).collect();
        let (full, part) = (stepped_logits(&all, &targets, frames), stepped_logits(&level, &targets, frames));
        let (v, k) = (c.vocab_size, c.codebook_size);
        assert_eq!(part.len(), frames * c.num_levels * 2 * k);
        for step in 0..frames * c.num_levels {
            let rows = level.logit_rows(step % c.num_levels);
            assert_eq!(rows, c.codec_offset + (step % c.num_levels) * k..c.codec_offset + (step % c.num_levels + 1) * k);
            for r in 0..2 {
                let got = &part[(step * 2 + r) * k..(step * 2 + r + 1) * k];
                let want = &full[(step * 2 + r) * v + rows.start..(step * 2 + r) * v + rows.end];
                let (diff, ok) = compare(got, want, 1e-5, 1e-5);
                assert!(ok, "step {step} row {r} (cpu kernels {host_kernels}): {diff}");
            }
        }
        // Every sampled id lies in its level's range.
        let tokens = level.generate_tokens(&encoder_rows(&c), &SamplingParams { seed: 4, ..Default::default() }, 0, None, None).unwrap();
        for (i, &id) in tokens.iter().enumerate() {
            assert!(level.logit_rows(i % c.num_levels).contains(&(id as usize)), "token {i}: {id}");
        }
    }
}

#[test]
fn bf16_weights_are_refused_off_the_cpu_path() {
    let c = small_config();
    let target = mrt::Target::with_kernels(mrt::DeviceChoice::Flex, false).unwrap();
    let options = LmOptions { precision: WeightPrecision::Bf16, ..LmOptions::default() };
    let err = Depthformer::from_weights_with(c.clone(), HostWeights::random(&c, 1), &target, options).err().expect("refused");
    assert!(err.to_string().contains("bf16"), "{err}");
}

#[test]
fn host_encoder_computes_the_burn_encoder() {
    // Two layers, 1006 positions (seven full query blocks of 128 and a partial one), an MLP width
    // that is not a multiple of the vector width.
    let c = LmConfig { encoder_layers: 2, mlp_dim: 100, ..small_config() };
    let host = model_with(&c, 12, LmOptions::default());
    let burn = model_on(&c, 12, false, LmOptions::default());
    let s = c.encoder_len();
    let ids = encoder_rows(&c);
    let a = host.encode_ids(&ids, 2, &mut LmScratch::default()).unwrap().into_data().try_into_vec::<f32>().unwrap();
    let b = burn.encode(burn.ids_tensor(&ids, 2, s)).into_data().try_into_vec::<f32>().unwrap();
    assert_eq!(a.len(), 2 * s * c.d_model);
    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs()));
    assert!(scale > 0.1, "encoder output is not degenerate (scale {scale})");
    // The tolerance the L1 README suggests for `encoder_out` in a float32 port (the reference's
    // own float64 re-implementation is within 1.2e-6 there, and the host encoder within 1.7e-6
    // on that fixture). These random weights give larger unscaled attention logits: two f32
    // summation orders differed by 2.7e-5 at output scale 4.9 when this was written.
    let (diff, ok) = compare(&a, &b, 1e-4, 1e-4);
    assert!(ok, "host encoder vs burn encoder: max |diff| {diff} (scale {scale})");
    // The two CFG rows differ only in the style tokens, and attention carries that everywhere.
    let d = c.d_model;
    assert!(a[..d] != a[s * d..(s + 1) * d], "rows must differ at position 0");
    // The tensor entry point runs the same host encoder.
    let t = host.encode(host.ids_tensor(&ids, 2, s)).into_data().try_into_vec::<f32>().unwrap();
    assert_eq!(a, t);
}

#[test]
fn host_encoder_refuses_ids_outside_the_vocabulary_and_wrong_lengths() {
    let c = small_config();
    let m = model_with(&c, 1, LmOptions::default());
    let mut ids = encoder_rows(&c);
    ids[17] = c.vocab_size as i32;
    let err = m.encode_ids(&ids, 2, &mut LmScratch::default()).expect_err("refused");
    assert!(err.to_string().contains(&c.vocab_size.to_string()), "{err}");
    ids[17] = -1;
    assert!(m.encode_ids(&ids, 2, &mut LmScratch::default()).is_err());
    let err = m.encode_ids(&ids[..10], 2, &mut LmScratch::default()).expect_err("refused");
    assert!(err.to_string().contains("10 values"), "{err}");
    // The decode loop reports a bad id as an error on both paths, before anything runs.
    let burn = model_on(&c, 1, false, LmOptions::default());
    let mut ids = encoder_rows(&c);
    ids[3] = -5;
    for model in [&m, &burn] {
        let err = model.generate_tokens(&ids, &SamplingParams::default(), 0, None, None).expect_err("refused");
        assert!(err.to_string().contains("-5"), "{err}");
    }
}
