//! `mrt bench lm` on the tiny model (`mrt dev tiny-model`, `--model-dir DIR --size tiny`): the
//! device-work counters and the predicted GPU time are in the JSON.

use std::path::PathBuf;
use std::process::Command;

fn mrt(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_mrt")).args(args).env_remove("MRT_MODEL_DIR").env_remove("MRT_DEVICE").env_remove("MRT_LM_KERNELS").output().expect("mrt runs");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mrt-cli-bench-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn bench_lm_on_the_tiny_model_reports_the_counters_in_json() {
    let root = scratch("tiny");
    let tiny = root.join("tiny");
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/fixtures");
    let (ok, text) = mrt(&["dev", "tiny-model", tiny.to_str().unwrap(), "--fixtures", fixtures]);
    assert!(ok, "{text}");
    let json = root.join("bench.json");
    let (ok, text) = mrt(&["bench", "lm", "--model-dir", tiny.to_str().unwrap(), "--size", "tiny", "--device", "flex", "--json", json.to_str().unwrap()]);
    assert!(ok, "{text}");
    assert!(text.contains("syncs (readbacks)") && text.contains("t_gap 4 µs eager"), "{text}");
    let j: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    for key in [
        "dispatches_per_chunk",
        "syncs_per_chunk",
        "d2h_bytes_per_chunk",
        "host_us_per_dispatch",
        "predicted_h100_chunk_s",
        "predicted_h200_chunk_s",
        "counts_by_part",
        "prediction",
        "launches_per_chunk",
        "chunk_s",
        "bytes_per_chunk",
    ] {
        assert!(j.get(key).is_some(), "no `{key}` in {j}");
    }
    assert_eq!(j["size"], "tiny");
    // flex: no kernel launches, so no dispatches, host time per dispatch or prediction.
    for key in ["dispatches_per_chunk", "host_us_per_dispatch", "predicted_h100_chunk_s", "predicted_h200_chunk_s"] {
        assert!(j[key].is_null(), "{key} = {} on flex", j[key]);
    }
    // The host kernels read back only the encoder output: [2, 1006, 32] f32.
    assert_eq!(j["syncs_per_chunk"], 1, "{j}");
    assert_eq!(j["d2h_bytes_per_chunk"], 2 * 1006 * 32 * 4, "{j}");
    assert_eq!(j["counts_by_part"]["depth"]["syncs"], 0, "{j}");
    assert_eq!(j["prediction"]["t_gap_s"], 4e-6);
    assert_eq!(j["prediction"]["t_sync_s"], 20e-6);
    assert_eq!(j["prediction"]["h100_bandwidth_bytes_per_s"], 3.35e12);
    assert_eq!(j["prediction"]["h200_bandwidth_bytes_per_s"], 4.8e12);
    assert_eq!(j["prediction"]["encoder_flops_per_s"], 200e12);
    let _ = std::fs::remove_dir_all(&root);
}

/// `mrt bench all --model mrt2` on the GPU kernels (lavapipe in CI) at the M1 fixture's sizes:
/// the counted device work per frame is the formula's (every frame the same launches), one
/// sync of the 12 tokens, the two per-frame uploads, a replayed frame, the host time per launch,
/// and the predicted H100/H200 frames of M1, small and base with the assumed constants.
#[cfg(feature = "wgpu")]
#[test]
fn bench_all_mrt2_on_the_gpu_kernels_counts_one_replayed_frame() {
    let root = scratch("mrt2-gpu");
    let json = root.join("bench.json");
    let m1 = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/fixtures/mrt2/M1");
    let (ok, text) = mrt(&["bench", "all", "--model", "mrt2", "--size", "m1", "--model-dir", m1, "--device", "wgpu", "--frames", "3", "--json", json.to_str().unwrap()]);
    assert!(ok, "{text}");
    assert!(text.contains("one recorded frame replayed") && text.contains("predicted GPU frame"), "{text}");
    let j: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let g = &j["gpu"];
    // 1 + 12 per temporal layer (2) + 12 levels × (1 + 7 per depth layer (2) + 3).
    assert_eq!(g["expected_dispatches_per_frame"], 241, "{g}");
    assert_eq!(g["dispatches_per_frame"], 241.0, "{g}");
    assert_eq!(g["syncs_per_frame"], 1.0, "{g}");
    assert_eq!(g["d2h_bytes_per_frame"], 48.0, "{g}");
    // The counters (7 + 2 × 12 words) and the encoder vector + noise + temperature
    // ((32 + 12 × 1024 + 1) floats).
    assert_eq!(g["h2d_uploads_per_frame"], 2.0, "{g}");
    assert_eq!(g["h2d_bytes_per_frame"], 4.0 * (31.0 + 32.0 + 12.0 * 1024.0 + 1.0), "{g}");
    assert_eq!(g["replayed"], true, "{g}");
    // The host side of a launch, from an eager frame under cubecl's DryRun.
    assert!(g["host_us_per_dispatch"].as_f64().is_some_and(|us| us > 0.0), "{g}");
    assert_eq!(g["t_gap_s"], 4e-6);
    let sizes: Vec<&str> = g["predicted"].as_array().unwrap().iter().map(|p| p["size"].as_str().unwrap()).collect();
    assert_eq!(sizes, ["m1", "small", "base"]);
    for p in g["predicted"].as_array().unwrap() {
        let (h100, h200) = (p["h100_frame_ms"].as_f64().unwrap(), p["h200_frame_ms"].as_f64().unwrap());
        assert!(h100 >= h200 && h200 > 0.0, "{p}");
    }
    assert_eq!(j["device"], "wgpu");

    // The host kernels: no GPU section.
    let (ok, text) = mrt(&["bench", "all", "--model", "mrt2", "--size", "m1", "--model-dir", m1, "--device", "flex", "--frames", "1", "--json", json.to_str().unwrap()]);
    assert!(ok, "{text}");
    let j: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert!(j["gpu"].is_null(), "{j}");
}
