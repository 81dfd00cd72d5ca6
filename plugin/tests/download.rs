//! The editor's "Download" button path: a plugin whose model folder holds only the tiny model's
//! manifest and LM reports "not installed"; `editor::start_download` fetches the rest from a Hub
//! mirror on loopback (the engine tests' mock Hub) with progress in `Shared::download`, and the
//! worker then loads the model and generates without being told twice.

#[path = "../../engine/tests/common/mod.rs"]
mod common;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::hub::Hub;
use common::{files_under, fixtures, TempDir};
use mrt_live::params::Settings;
use mrt_live::{MrtLive, Status};
use nice_plug::prelude::*;

const TINY_CKPT: &str = "magenta-realtime/checkpoints/llm_tiny";

fn wait(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn download_button_fetches_the_missing_files_and_the_worker_loads_them() {
    let root = TempDir::new("plugin-download");
    let tiny = root.path().join("tiny");
    mrt::tiny_model::write(&tiny, &fixtures()).unwrap();
    let hub = Arc::new(Hub::from_dirs(&tiny.join("magenta-realtime"), &tiny.join("magenta-realtime-2")));
    let endpoint = hub.serve();
    // The engine reads these when it fetches and converts (this test binary has no other test).
    std::env::set_var("HF_ENDPOINT", &endpoint);
    std::env::set_var("HF_HUB_CACHE", root.path().join("hf-cache"));
    std::env::set_var("HF_HOME", root.path().join("hf-home"));
    std::env::set_var("MRT_CACHE_DIR", root.path().join("mrt-cache"));
    for v in ["MRT_MODEL_DIR", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_OFFLINE"] {
        std::env::remove_var(v);
    }

    // The model folder: the manifest and the LM checkpoint only.
    let dir = root.path().join("model");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(tiny.join("mrt-live.json"), dir.join("mrt-live.json")).unwrap();
    for (rel, p) in files_under(&tiny.join(TINY_CKPT)) {
        let d = dir.join(TINY_CKPT).join(rel);
        std::fs::create_dir_all(d.parent().unwrap()).unwrap();
        std::fs::copy(p, d).unwrap();
    }

    let settings = Settings { model_dir: Some(dir.clone()), size: "tiny".into(), device: Some("flex".into()), ..Settings::default() };
    let mut p = MrtLive::default();
    p.mrt_params().saved.update(|s| {
        s.settings = settings.clone();
        s.prompts[0] = "funk".into();
    });
    p.start(48_000.0, ProcessMode::Realtime);
    let shared = p.shared().clone();
    wait("the not-installed status", Duration::from_secs(60), || shared.status() == Status::NotInstalled);
    assert!(shared.message().contains("musiccoca") || shared.message().contains("spectrostream"), "{}", shared.message());
    assert!(hub.downloads().is_empty(), "nothing is fetched before the button");

    mrt_live::editor::start_download(shared.clone(), settings.clone());
    wait("the download to finish", Duration::from_secs(120), || !shared.download.active.load(Ordering::Acquire));
    assert!(!shared.download.failed.load(Ordering::Acquire), "download failed: {}", shared.download.line());
    assert!(shared.download.line().contains("downloaded"), "{}", shared.download.line());
    assert!(shared.download.total_bytes.load(Ordering::Relaxed) > 0, "progress reported a total");
    assert!(!hub.downloads().is_empty(), "the mirror served the missing files");

    // The worker notices (reload) and starts generating: no other action needed.
    wait("a chunk from the downloaded model", Duration::from_secs(300), || {
        assert_ne!(shared.status(), Status::Error, "{}", shared.message());
        shared.chunks_generated.load(Ordering::Acquire) >= 1
    });
    assert_eq!(shared.status(), Status::Ready, "{}", shared.message());

    // A second press has nothing to fetch.
    let served = hub.downloads().len();
    mrt_live::editor::start_download(shared.clone(), settings);
    wait("the second download to finish", Duration::from_secs(60), || !shared.download.active.load(Ordering::Acquire));
    assert!(!shared.download.failed.load(Ordering::Acquire), "{}", shared.download.line());
    assert_eq!(hub.downloads().len(), served, "complete files are not downloaded again");
    drop(p);
}
