//! Cost of the plugin's audio callback for 512-sample blocks, as a fraction of the block's
//! real-time budget (512 / rate seconds).
//!
//! Measures [`MrtLive::render`], the whole body of `process()` apart from the framework's event
//! and buffer plumbing: sidechain capture and meter, transport handling, chunk playback across
//! seams, the fade envelope and the smoothed gain. The tiny test model generates in the
//! background on the worker thread (with a sidechain signal and the sidechain style on, so the
//! worker competes for the CPU as it does on stage). Blocks are paced in real time, as a host
//! would call them.
//!
//! ```text
//! cargo bench -p mrt-live --bench process [-- --rate 48000 --seconds 12 --json out.json]
//! ```

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use mrt_live::{MrtLive, Status};
use nice_plug::prelude::*;

mod common;
use common::{arg, json_path, tiny_model_dir};

const BLOCK: usize = 512;


fn main() {
    let args: Vec<String> = std::env::args().collect();
    let rate: f32 = arg(&args, "--rate", 48_000.0);
    let seconds: f32 = arg(&args, "--seconds", 12.0);
    let json: Option<PathBuf> = json_path(&args);

    let dir = tiny_model_dir("tiny");

    let mut p = MrtLive::default();
    p.mrt_params().saved.update(|s| {
        s.settings.model_dir = Some(dir.clone());
        s.settings.size = "tiny".into();
        s.settings.device = Some("flex".into());
        s.prompts[0] = "warm ambient piano".into();
    });
    // Sidechain style on: the worker re-embeds the sidechain before every chunk.
    // SAFETY: the parameter outlives the call; hosts use the same entry point.
    unsafe { p.mrt_params().sidechain_weight.as_ptr()._internal_set_normalized_value(0.5) };
    p.start(rate, ProcessMode::Realtime);
    let start = Instant::now();
    while p.shared().chunks_generated.load(Ordering::Acquire) < 1 {
        let s = p.shared();
        assert!(!matches!(s.status(), Status::Error | Status::NotInstalled), "{}: {}", s.status().label(), s.message());
        assert!(start.elapsed() < Duration::from_secs(300), "no chunk after 300 s");
        p.render(&mut [], &mut [], None, true, Some(0));
        std::thread::sleep(Duration::from_millis(5));
    }

    let budget = BLOCK as f64 / rate as f64;
    let blocks = (seconds as f64 / budget) as usize;
    let (mut l, mut r) = (vec![0.0f32; BLOCK], vec![0.0f32; BLOCK]);
    let sc: Vec<f32> = (0..BLOCK).map(|i| (i as f32 * 0.05).sin() * 0.3).collect();
    let mut times = Vec::with_capacity(blocks);
    let mut pos = 0i64;
    let t0 = Instant::now();
    for b in 0..blocks {
        let due = t0 + Duration::from_secs_f64(b as f64 * budget);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let t = Instant::now();
        p.render(&mut l, &mut r, Some((&sc, &sc)), true, Some(pos));
        times.push(t.elapsed().as_secs_f64());
        pos += BLOCK as i64;
    }
    let underruns = p.shared().underruns.load(Ordering::Relaxed);
    times.sort_by(f64::total_cmp);
    let q = |f: f64| times[((times.len() - 1) as f64 * f).round() as usize];
    let mean = times.iter().sum::<f64>() / times.len() as f64;
    let frac = |t: f64| 100.0 * t / budget;
    println!("process() for {BLOCK}-sample blocks at {rate} Hz (budget {:.3} ms), {} blocks, tiny model", budget * 1e3, times.len());
    println!("{:>8} {:>12} {:>12}", "", "µs", "% budget");
    for (name, t) in [("mean", mean), ("median", q(0.5)), ("p99", q(0.99)), ("p99.9", q(0.999)), ("max", q(1.0))] {
        println!("{name:>8} {:>12.2} {:>12.4}", t * 1e6, frac(t));
    }
    println!("underruns while measuring: {underruns}");
    if let Some(path) = json {
        let body = format!(
            "{{\"block\":{BLOCK},\"rate\":{rate},\"blocks\":{},\"budget_s\":{budget},\"mean_s\":{mean},\"median_s\":{},\"p99_s\":{},\"p999_s\":{},\"max_s\":{},\"max_fraction\":{},\"underruns\":{underruns}}}\n",
            times.len(),
            q(0.5),
            q(0.99),
            q(0.999),
            q(1.0),
            q(1.0) / budget
        );
        std::fs::write(&path, body).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
    drop(p);
    let _ = std::fs::remove_dir_all(&dir);
}
