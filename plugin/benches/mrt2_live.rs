//! MRT2 inside the plugin at real size (random weights), paced in real time the way a host calls
//! `process()`: for each buffer setting, the underruns, the frames generated per second, the
//! worker's ms per frame and `process()`'s cost per 512-sample block as a share of its budget;
//! then the smallest buffer with no underrun (if any), and the resident memory at the start and
//! the end (for soaks).
//!
//! The model is `mrt2_small` (or `--size base`) with random weights in the chosen precision and
//! the full-size SpectroStream decoder with random weights, put into the plugin's model registry
//! under the key the plugin's settings name, so the worker runs exactly the code it runs with
//! the released checkpoint. Style comes from the tiny test model's MusicCoCa (its tokens only
//! condition the random LM).
//!
//! ```text
//! cargo bench -p mrt-live --bench mrt2_live -- [--size small] [--lm-weights int8]
//!     [--buffers 3,6,12,24] [--seconds 60] [--rate 48000] [--json out.json]
//! ```
//! Floor: a frame must be generated every 40 ms (25 frames/s) for zero underruns; the
//! `process()` budget of a 512-sample block at 48 kHz is 10.67 ms.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mrt::codec::weights::{random_files, CodecWeights, CodecWidths};
use mrt::codec::{Codec, CodecConfig};
use mrt::mrt2::config::Mrt2Config;
use mrt::mrt2::model::Mrt2Model;
use mrt::mrt2::system::Mrt2System;
use mrt::mrt2::weights::Mrt2Weights;
use mrt_live::registry::{self, ModelKey, Models};
use mrt_live::{MrtLive, Status};
use nice_plug::prelude::*;

mod common;
use common::{arg, json_path, tiny_model_dir};

const BLOCK: usize = 512;


/// Resident memory of this process in MB (Linux; 0 elsewhere).
fn rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok()))
        .map_or(0.0, |kb| kb / 1024.0)
}

#[derive(Debug, serde::Serialize)]
struct Run {
    buffer_frames: i32,
    buffer_ms: i32,
    seconds: f64,
    underruns: u64,
    frames_per_second: f64,
    ms_per_frame: f64,
    process_mean_share: f64,
    process_p99_share: f64,
    process_max_share: f64,
    rss_mb_start: f64,
    rss_mb_end: f64,
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let size: String = arg(&args, "--size", "small".to_string());
    let precision: mrt::kernels::WeightPrecision = arg(&args, "--lm-weights", mrt::kernels::WeightPrecision::Int8);
    let seconds: f64 = arg(&args, "--seconds", 60.0);
    let rate: f32 = arg(&args, "--rate", 48_000.0);
    let buffers: Vec<i32> = arg(&args, "--buffers", "3,6,12,24".to_string())
        .split(',')
        .map(|b| b.trim().parse().unwrap_or_else(|_| panic!("--buffers: {b:?} is not a number of frames")))
        .collect();
    let json: Option<PathBuf> = json_path(&args);

    // The tiny model's files: its style model, and a model folder for the key.
    let dir = tiny_model_dir("mrt2");

    let cfg = match size.as_str() {
        "small" => Mrt2Config::mrt2_small(),
        "base" => Mrt2Config::mrt2_base(),
        other => panic!("--size {other}: small or base"),
    };
    let built = Instant::now();
    let mut weights = Mrt2Weights::random(&cfg, 11);
    weights.set_precision(precision);
    let model = Mrt2Model::new(cfg, weights);
    let config = CodecConfig::spectrostream_48k_stereo();
    let [e, d, q] = random_files(&config, &CodecWidths::full_size(), 7);
    let codec_weights = CodecWeights::from_files(&e, &d, Some(&q), &config).expect("random codec weights");
    let codec = Codec::from_weights(config, codec_weights, &mrt::Target::host()).expect("codec");
    let system = Mrt2System { model, codec };

    let mut settings = mrt_live::params::Settings {
        family: mrt::stream::Family::Mrt2,
        model_dir: Some(dir.clone()),
        size: size.clone(),
        device: Some("flex".into()),
        ..Default::default()
    };
    settings.lm_weights = precision;
    let key = ModelKey {
        family: mrt::stream::Family::Mrt2,
        model_dir: settings.model_dir.clone(),
        size: size.clone(),
        device: mrt::DeviceChoice::Flex,
        lm: settings.lm_options(),
    };
    let style_files = mrt::assets::locate_mrt2_style(Some(&dir), &mrt_live::params::asset_settings()).expect("the tiny style model");
    let style = mrt::style::StyleModel::load_files(&style_files, &mrt::Target::host().device).expect("the tiny style model");
    let models: Arc<Models> = registry::models()
        .get_or_load(&key, || {
            Ok::<_, ()>(Models {
                generator: mrt::stream::Generator::Mrt2(system),
                style,
                device: mrt::DeviceChoice::Flex,
                description: format!("mrt2_{size} (random weights, {precision})"),
                style_id: style_files.main_path().display().to_string(),
            })
        })
        .expect("registering the random model");
    println!("mrt2_{size}, random weights, LM {precision}, built in {:.1} s; {seconds} s per buffer setting at {rate} Hz", built.elapsed().as_secs_f64());

    let budget = BLOCK as f64 / f64::from(rate);
    let mut runs = Vec::new();
    for &frames in &buffers {
        let mut p = MrtLive::default();
        p.mrt_params().saved.update(|s| {
            s.settings = settings.clone();
            s.prompts[0] = "warm ambient piano".into();
        });
        // SAFETY: the parameter outlives the call; hosts use the same entry point.
        unsafe {
            let param = &p.mrt_params().frames_ahead;
            param.as_ptr()._internal_set_normalized_value(param.preview_normalized(frames));
        }
        assert_eq!(p.mrt_params().frames_ahead.value(), frames, "buffer setting {frames} is outside 3–24");
        p.start(rate, ProcessMode::Realtime);
        let (mut l, mut r) = (vec![0f32; BLOCK], vec![0f32; BLOCK]);
        // Wait for the first frame (the worker fills its buffer as the host would let it).
        let start = Instant::now();
        while p.shared().chunks_generated.load(Ordering::Acquire) < 1 {
            let s = p.shared();
            assert!(!matches!(s.status(), Status::Error | Status::NotInstalled), "{}: {}", s.status().label(), s.message());
            assert!(start.elapsed() < Duration::from_secs(120), "no frame after 120 s");
            std::thread::sleep(Duration::from_millis(5));
        }
        // Fill the buffer before the transport starts, as a host's pre-roll would.
        let fill = Instant::now();
        while p.shared().chunks_generated.load(Ordering::Acquire) < frames as u64 && fill.elapsed() < Duration::from_secs(10) {
            p.render(&mut [], &mut [], None, false, Some(0));
            std::thread::sleep(Duration::from_millis(2));
        }
        let rss_start = rss_mb();
        let (under0, gen0) = (p.shared().underruns.load(Ordering::Relaxed), p.shared().chunks_generated.load(Ordering::Relaxed));
        let blocks = (seconds * f64::from(rate) / BLOCK as f64) as usize;
        let mut costs = Vec::with_capacity(blocks);
        let mut spf = Vec::new();
        let t0 = Instant::now();
        let mut pos = 0i64;
        for b in 0..blocks {
            let due = t0 + Duration::from_secs_f64(b as f64 * budget);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            let c = Instant::now();
            p.render(&mut l, &mut r, None, true, Some(pos));
            costs.push(c.elapsed().as_secs_f64());
            pos += BLOCK as i64;
            if b % 64 == 0 {
                spf.push(f64::from(p.shared().seconds_per_chunk()));
            }
        }
        let elapsed = t0.elapsed().as_secs_f64();
        let underruns = p.shared().underruns.load(Ordering::Relaxed) - under0;
        let generated = p.shared().chunks_generated.load(Ordering::Relaxed) - gen0;
        costs.sort_by(f64::total_cmp);
        let share = |x: f64| x / budget;
        spf.retain(|s| *s > 0.0);
        let run = Run {
            buffer_frames: frames,
            buffer_ms: frames * 40,
            seconds: elapsed,
            underruns,
            frames_per_second: generated as f64 / elapsed,
            ms_per_frame: 1e3 * spf.iter().sum::<f64>() / spf.len().max(1) as f64,
            process_mean_share: share(costs.iter().sum::<f64>() / costs.len().max(1) as f64),
            process_p99_share: share(costs[(costs.len() * 99 / 100).min(costs.len() - 1)]),
            process_max_share: share(*costs.last().unwrap_or(&0.0)),
            rss_mb_start: rss_start,
            rss_mb_end: rss_mb(),
        };
        println!(
            "buffer {:>2} frames ({:>3} ms): {:>5} underruns, {:.1} frames/s (floor 25), {:.1} ms/frame, process() mean {:.2}% / p99 {:.2}% / max {:.2}% of a 512-sample block, RSS {:.0} → {:.0} MB",
            run.buffer_frames,
            run.buffer_ms,
            run.underruns,
            run.frames_per_second,
            run.ms_per_frame,
            100.0 * run.process_mean_share,
            100.0 * run.process_p99_share,
            100.0 * run.process_max_share,
            run.rss_mb_start,
            run.rss_mb_end
        );
        runs.push(run);
        drop(p);
    }
    let smallest = runs.iter().filter(|r| r.underruns == 0).map(|r| r.buffer_frames).min();
    match smallest {
        Some(f) => println!("smallest buffer without underruns: {f} frames ({} ms)", f * 40),
        None => println!("no buffer setting ran without underruns: the worker makes {:.1} frames/s, real time needs 25", runs.iter().map(|r| r.frames_per_second).fold(0.0, f64::max)),
    }
    if let Some(path) = json {
        let report = serde_json::json!({
            "size": size,
            "lm_weights": precision.to_string(),
            "rate": rate,
            "floor_frames_per_second": 25.0,
            "process_budget_ms": budget * 1e3,
            "smallest_buffer_without_underruns": smallest,
            "runs": runs,
        });
        std::fs::write(&path, serde_json::to_string_pretty(&report).unwrap()).expect("writing the JSON report");
    }
    drop(models);
}
