//! The device sampler (`kernels::gpu::decode::sample`) against the host sampler
//! (`v1::lm::sampling::Sampler`) on the same logits and the same seeded stream: the same ids,
//! draw for draw, over greedy, top-k (ties to the lower id, ±0 ordered as `f32::total_cmp`),
//! k = 0 and k ≥ n, temperatures, and classifier-free guidance; the first non-finite logit is
//! reported like the host's. Runs on wgpu (lavapipe in CI).
#![cfg(feature = "wgpu")]

use mrt::kernels::gpu::{sample_ids, Gpu};
use mrt::sampling::rng::SplitMix64;
use mrt::v1::lm::sampling::{cfg_combine, Sampler};
use mrt::v1::lm::SamplingParams;

fn gpu() -> Gpu {
    Gpu::new(&mrt::DeviceChoice::Wgpu.device().expect("wgpu is compiled in")).expect("a cubecl device")
}

/// Logits with many exact ties (multiples of 1/4) and signed zeros, or smooth ones.
fn logits(n: usize, seed: u64, ties: bool) -> Vec<f32> {
    let mut rng = SplitMix64::new(seed);
    (0..n)
        .map(|i| {
            let v = (rng.next_normal() * 2.0) as f32;
            match (ties, i % 7) {
                (true, 0) => -0.0,
                (true, 1) => 0.0,
                (true, _) => (v * 4.0).round() / 4.0,
                (false, _) => v,
            }
        })
        .collect()
}

/// Host draws and device draws of `draws` tokens from the same logits and seed.
fn both(cond: &[f32], uncond: Option<&[f32]>, p: &SamplingParams, draws: usize) -> (Vec<u32>, Vec<u32>) {
    let mut guided = cond.to_vec();
    if let Some(u) = uncond {
        cfg_combine(cond, u, p.guidance_weight, &mut guided);
    }
    let mut rng = SplitMix64::new(p.seed);
    let mut sampler = Sampler::default();
    let host: Vec<u32> = (0..draws).map(|_| sampler.sample(&guided, p, &mut rng).expect("finite") as u32).collect();
    let mut rng = SplitMix64::new(p.seed);
    let uniforms: Vec<f32> = (0..draws).map(|_| if p.is_greedy() { 0.0 } else { rng.next_f64() as f32 }).collect();
    let device = sample_ids(&gpu(), cond, uncond.map(|u| (u, p.guidance_weight)), p.top_k, p.temperature, &uniforms).expect("device draws");
    assert_eq!(device.non_finite, None);
    (host, device.ids)
}

#[test]
fn device_draws_equal_host_draws() {
    let mut cases = 0;
    for (n, ties) in [(1024, true), (1024, false), (3000, true), (29824, false)] {
        let cond = logits(n, n as u64, ties);
        let uncond = logits(n, n as u64 + 1, ties);
        for top_k in [1, 2, 40, 250, 1000.min(n - 1), n - 1, n, 0] {
            for temperature in [0.0, 0.6, 1.1, 4.0] {
                for guidance in [None, Some(5.0)] {
                    if n > 3000 && !(top_k == 40 || top_k == 0) {
                        continue; // The full vocabulary: the default k and "all" (lavapipe is slow).
                    }
                    let p = SamplingParams { temperature, top_k, guidance_weight: guidance.unwrap_or(0.0), seed: (n + top_k) as u64 };
                    let (host, device) = both(&cond, guidance.map(|_| uncond.as_slice()), &p, 24);
                    assert_eq!(device, host, "n {n}, ties {ties}, top_k {top_k}, temperature {temperature}, guidance {guidance:?}");
                    cases += 1;
                }
            }
        }
    }
    assert!(cases > 100, "{cases} cases");
}

#[test]
fn greedy_takes_the_first_maximum_and_top_k_orders_signed_zeros() {
    // All equal: the first id; +0 above −0 for k = 2 (total order), then the lower ids.
    let flat = vec![0.5f32; 300];
    let (host, device) = both(&flat, None, &SamplingParams { top_k: 1, ..Default::default() }, 3);
    assert_eq!((host, device), (vec![0; 3], vec![0; 3]));
    let zeros: Vec<f32> = (0..300).map(|i| if i % 3 == 0 { -0.0 } else { 0.0 }).collect();
    let p = SamplingParams { top_k: 2, temperature: 1.0, seed: 9, ..Default::default() };
    let (host, device) = both(&zeros, None, &p, 40);
    assert_eq!(device, host);
    assert!(host.iter().all(|&i| i == 1 || i == 2), "the two kept ids are the first +0s: {host:?}");
}

#[test]
fn a_non_finite_logit_is_reported_with_its_step_and_index() {
    let mut cond = logits(1024, 4, false);
    cond[700] = f32::NAN;
    cond[900] = f32::INFINITY;
    let mut sampler = Sampler::default();
    let host = sampler.sample(&cond, &SamplingParams::default(), &mut SplitMix64::new(0));
    assert_eq!(host, Err(700));
    let device = sample_ids(&gpu(), &cond, None, 40, 1.1, &[0.5, 0.25]).unwrap();
    assert_eq!(device.non_finite, Some((0, 700)), "the first draw, the first bad index");
}
