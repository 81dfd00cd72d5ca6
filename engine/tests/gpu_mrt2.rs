//! MRT2's frame step on the GPU kernels (wgpu over lavapipe in CI) against the host step on the
//! M1 fixture's weights: the M1 ladder through the GPU path; recorded-and-replayed frames give
//! the host's tokens, sampled and greedy, past the rings' wrap-around; forced frames; a GPU
//! snapshot continues identically on the GPU and on the host; bf16 and int8 weights match the
//! host at the same precision. Every test starts its device buffers as NaN (`poison_scratch`),
//! so a kernel reading scratch before writing it shows up.
#![cfg(feature = "wgpu")]

use std::sync::OnceLock;

use mrt::kernels::WeightPrecision;
use mrt::mrt2::{FrameState, Mrt2Model};
use mrt::sampling::mrt2::SamplingParams;

mod common;

use common::mrt2::{set_dir, M1};

fn fixture() -> &'static M1 {
    static F: OnceLock<M1> = OnceLock::new();
    F.get_or_init(common::mrt2::load)
}

/// The frame-`t` conditioning (the fixture's 32 frames, then again from the start).
fn cond(t: usize) -> &'static [i32] {
    let f = fixture();
    let cc = f.cfg.cond_channels();
    let t = t % f.frames;
    &f.cond_tokens[t * cc..(t + 1) * cc]
}

fn models(precision: WeightPrecision) -> (Mrt2Model, Mrt2Model) {
    mrt::kernels::gpu::poison_scratch(true);
    let f = fixture();
    let mut w = f.weights.clone();
    w.set_precision(precision);
    let host = Mrt2Model::new(f.cfg.clone(), w);
    let device = mrt::Target::new(mrt::DeviceChoice::Wgpu).unwrap().device;
    let gpu = host.clone().on_device(&device).expect("the decoder uploads");
    (host, gpu)
}

/// Tokens of `frames` frames from `st` on `model`, frame `t` conditioned by `cond(first + t)`.
fn run(model: &Mrt2Model, st: &mut FrameState, first: usize, frames: usize, params: &SamplingParams) -> Vec<i32> {
    let mut out = Vec::new();
    for t in first..first + frames {
        model.step(st, cond(t), params, None).unwrap();
        out.extend_from_slice(st.tokens());
    }
    out
}

#[test]
fn the_m1_ladder_passes_on_the_gpu_kernels() {
    mrt::kernels::gpu::poison_scratch(true);
    let target = mrt::Target::new(mrt::DeviceChoice::Wgpu).unwrap();
    assert_eq!(target.compute, mrt::Compute::Gpu);
    let report = mrt::conformance::run(&set_dir(), &target).expect("ladder runs");
    println!("{report}");
    assert!(report.checks.len() >= 20, "every rung ran: {report}");
    assert!(report.passed(), "failed rungs: {:#?}", report.failures());
}

#[test]
fn replayed_frames_give_the_hosts_tokens_past_the_rings_wrap() {
    let (host, gpu) = models(WeightPrecision::F32);
    let f = fixture();
    // 40 frames: the windows (5 past frames) wrap several times; the fixture's conditioning
    // starts again at frame 32.
    for params in [SamplingParams::default(), SamplingParams::greedy(), SamplingParams { temperature: 0.7, top_k: 5000 }] {
        let mut hs = FrameState::new(&host, f.init_key);
        let mut gs = FrameState::new(&gpu, f.init_key);
        assert!(gs.on_gpu() && !hs.on_gpu());
        let want = run(&host, &mut hs, 0, 40, &params);
        let got = run(&gpu, &mut gs, 0, 40, &params);
        let differ = want.iter().zip(&got).filter(|(a, b)| a != b).count();
        assert_eq!(differ, 0, "{params:?}: {differ} of {} tokens differ", want.len());
        assert!(gs.replaying(), "{params:?}: frames after the first are recorded and replayed");
        assert_eq!(hs.window_lengths(1), gs.window_lengths(1));
        assert_eq!(hs.key(), gs.key());
    }
}

#[test]
fn forced_frames_then_generation_follow_the_host() {
    let (host, gpu) = models(WeightPrecision::F32);
    let f = fixture();
    let params = SamplingParams::default();
    let mut hs = FrameState::new(&host, f.init_key);
    let mut gs = FrameState::new(&gpu, f.init_key);
    // Forced ids: level k's code 37·t + k mod 1024, in range by construction.
    for t in 0..9 {
        let forced: Vec<i32> = (0..f.cfg.num_levels).map(|k| (6 + 1024 * k + (37 * t + k) % 1024) as i32).collect();
        host.step(&mut hs, cond(t), &params, Some(&forced)).unwrap();
        gpu.step(&mut gs, cond(t), &params, Some(&forced)).unwrap();
        assert_eq!(gs.tokens(), &forced[..], "frame {t}: a forced frame's tokens are the forced ids");
        assert_eq!(gs.prev_tokens(), hs.prev_tokens());
    }
    assert_eq!(run(&host, &mut hs, 9, 8, &params), run(&gpu, &mut gs, 9, 8, &params));
}

#[test]
fn a_gpu_snapshot_continues_alike_on_the_gpu_and_on_the_host() {
    let (host, gpu) = models(WeightPrecision::F32);
    let f = fixture();
    let params = SamplingParams::default();
    let mut gs = FrameState::new(&gpu, f.init_key);
    run(&gpu, &mut gs, 0, 9, &params);
    let saved = gs.snapshot();
    assert_eq!(saved.self_kv[0].len, 6, "the window is full");
    let hs_saved = {
        let mut hs = FrameState::new(&host, f.init_key);
        run(&host, &mut hs, 0, 9, &params);
        hs.snapshot()
    };
    // The device's rings hold the host's entries (within float rounding), in the same slots.
    for (g, h) in saved.self_kv.iter().chain(&saved.cross_kv).zip(hs_saved.self_kv.iter().chain(&hs_saved.cross_kv)) {
        assert_eq!((g.len, g.next), (h.len, h.next));
        let worst = g.keys.iter().chain(&g.values).zip(h.keys.iter().chain(&h.values)).map(|(&a, &b)| (f32::from_bits(a) - f32::from_bits(b)).abs()).fold(0f32, f32::max);
        assert!(worst < 1e-4, "ring entries differ by {worst}");
    }
    let continued = run(&gpu, &mut gs, 9, 7, &params);

    let mut again = FrameState::new(&gpu, f.init_key);
    again.restore(&f.cfg, &saved).unwrap();
    assert_eq!(run(&gpu, &mut again, 9, 7, &params), continued, "restored on the GPU");

    let mut on_host = FrameState::new(&host, f.init_key);
    on_host.restore(&f.cfg, &saved).unwrap();
    assert_eq!(run(&host, &mut on_host, 9, 7, &params), continued, "restored on the host");
}

#[test]
fn bf16_and_int8_frames_match_the_host_at_the_same_precision() {
    let f = fixture();
    for precision in [WeightPrecision::Bf16, WeightPrecision::Int8] {
        let (host, gpu) = models(precision);
        let params = SamplingParams::default();
        let mut hs = FrameState::new(&host, f.init_key);
        let mut gs = FrameState::new(&gpu, f.init_key);
        gs.observe(true);
        for t in 0..8 {
            host.step(&mut hs, cond(t), &params, None).unwrap();
            gpu.step(&mut gs, cond(t), &params, None).unwrap();
            let worst = hs.raw_valid_logits().iter().zip(gs.raw_valid_logits()).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            assert!(worst < 1e-4, "{precision:?} frame {t}: logits differ by {worst}");
            assert_eq!(hs.tokens(), gs.tokens(), "{precision:?} frame {t}");
        }
    }
}

/// Temperature and top-k are data of the frame, not of the recording: changing them every frame
/// (as an automated knob does) keeps replaying the one recorded frame and keeps the host's tokens.
#[test]
fn changing_the_sampling_knobs_every_frame_keeps_the_recorded_frame() {
    let (host, gpu) = models(WeightPrecision::F32);
    let f = fixture();
    let settings = [SamplingParams::default(), SamplingParams { temperature: 0.4, top_k: 3 }, SamplingParams::greedy(), SamplingParams { temperature: 2.0, top_k: 5000 }];
    let mut hs = FrameState::new(&host, f.init_key);
    let mut gs = FrameState::new(&gpu, f.init_key);
    for t in 0..16 {
        let params = &settings[t % settings.len()];
        host.step(&mut hs, cond(t), params, None).unwrap();
        gpu.step(&mut gs, cond(t), params, None).unwrap();
        assert_eq!(hs.tokens(), gs.tokens(), "frame {t}, {params:?}");
        assert_eq!(gs.replaying(), t >= 1, "frame {t}: recorded once at frame 1, replayed since");
    }
}
