//! Running the `mrt` binary as a user would, isolated from any real hub or cache, and the tiny
//! model written through it (one per test binary: each test crate compiles its own copy).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Runs `mrt args…` with a hub and caches of its own (`tag` names the test binary's scratch
/// folder); returns success and stdout + stderr.
pub fn mrt(tag: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_mrt"))
        .args(args)
        // Never reach a real hub or cache from tests.
        .env("HF_HUB_CACHE", scratch(tag, "hf-cache"))
        .env("HF_ENDPOINT", "http://127.0.0.1:9")
        .env("MRT_CACHE_DIR", scratch(tag, "mrt-cache"))
        .env_remove("MRT_MODEL_DIR")
        .env_remove("MRT_MODEL_SIZE")
        .output()
        .expect("mrt runs");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// A folder `name` under this test binary's scratch folder.
pub fn scratch(tag: &str, name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mrt-{tag}-{}", std::process::id())).join(name);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// One tiny model (v1 and MRT2) for all tests of this binary, written through `mrt dev tiny-model`.
pub fn tiny_model(tag: &str) -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = scratch(tag, "tiny-model");
        let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/fixtures");
        let (ok, text) = mrt(tag, &["dev", "tiny-model", dir.to_str().unwrap(), "--fixtures", fixtures]);
        assert!(ok, "{text}");
        dir
    })
}
