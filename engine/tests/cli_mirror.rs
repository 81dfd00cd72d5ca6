//! `mrt generate` and `mrt fetch` as a user runs them against a Hugging Face mirror: the tiny
//! model written by `mrt dev tiny-model` is served by the mock Hub (`common::hub`) on loopback, and
//! the binary is pointed at it with `HF_ENDPOINT`. A model directory holding only `mrt-live.json`
//! and the tiny LM checkpoint (the manifest's LM is a local path by design) must be completed
//! from the mirror, converted into `MRT_CACHE_DIR`, and then used without any further request.
//!
//! Every run gets its own `HF_HUB_CACHE`, `HF_HOME`, `MRT_CACHE_DIR` and no token, so no test
//! touches the user's caches or the real Hub.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::hub::{Hub, HubFile, V1, V2};
use common::{files_under, fixtures, TempDir};

/// The manifest's LM checkpoint inside the tiny model directory.
const TINY_CKPT: &str = "magenta-realtime/checkpoints/llm_tiny";

/// One isolated environment for the binary: its caches live under `root`.
struct Env {
    root: TempDir,
    endpoint: String,
}

struct Run {
    ok: bool,
    text: String,
    took: Duration,
}

impl Env {
    fn new(tag: &str, endpoint: &str) -> Env {
        Env { root: TempDir::new(&format!("cli-mirror-{tag}")), endpoint: endpoint.to_string() }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.root.path().join(name)
    }

    fn hf_cache(&self) -> PathBuf {
        self.path("hf-cache")
    }

    fn mrt_cache(&self) -> PathBuf {
        self.path("mrt-cache")
    }

    fn mrt(&self, args: &[&str]) -> Run {
        let hf_home = self.path("hf-home");
        let t0 = Instant::now();
        let out = Command::new(env!("CARGO_BIN_EXE_mrt"))
            .args(args)
            .env("HF_ENDPOINT", &self.endpoint)
            .env("HF_HUB_CACHE", self.hf_cache())
            .env("HF_HOME", &hf_home)
            .env("HF_TOKEN_PATH", hf_home.join("token"))
            .env("MRT_CACHE_DIR", self.mrt_cache())
            .env_remove("MRT_MODEL_DIR")
            .env_remove("HUGGINGFACE_HUB_CACHE")
            .env_remove("HF_TOKEN")
            .env_remove("HUGGING_FACE_HUB_TOKEN")
            .env_remove("HF_HUB_OFFLINE")
            .output()
            .expect("mrt runs");
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        Run { ok: out.status.success(), text, took: t0.elapsed() }
    }

    /// Writes the tiny model with the binary into `<root>/tiny` and returns that directory.
    fn tiny_model(&self) -> PathBuf {
        let dir = self.path("tiny");
        let fx = fixtures();
        let r = self.mrt(&["dev", "tiny-model", dir.to_str().unwrap(), "--fixtures", fx.to_str().unwrap()]);
        assert!(r.ok, "mrt dev tiny-model failed:\n{}", r.text);
        dir
    }
}

/// A model directory holding only the tiny model's manifest and its LM checkpoint.
fn fresh_model_dir(tiny: &Path, dest: &Path) {
    let manifest = tiny.join("mrt-live.json");
    let m: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&manifest).unwrap()).unwrap();
    assert_eq!(m["lm"]["tiny"]["checkpoint"], TINY_CKPT, "the tiny manifest's LM must be the local checkpoint: {m}");
    std::fs::create_dir_all(dest).unwrap();
    std::fs::copy(&manifest, dest.join("mrt-live.json")).unwrap();
    let ckpt = files_under(&tiny.join(TINY_CKPT));
    assert!(!ckpt.is_empty(), "{TINY_CKPT} is empty");
    for (rel, p) in ckpt {
        let d = dest.join(TINY_CKPT).join(rel);
        std::fs::create_dir_all(d.parent().unwrap()).unwrap();
        std::fs::copy(p, d).unwrap();
    }
}

/// The mock Hub serving the tiny model's two repository trees, plus files no size needs (which
/// must never be downloaded).
fn mirror(tiny: &Path) -> (Arc<Hub>, String) {
    let mut hub = Hub::from_dirs(&tiny.join("magenta-realtime"), &tiny.join("magenta-realtime-2"));
    let extras = [
        (V1, "README.md", b"# Magenta RT\n".to_vec()),
        (V1, "testdata/musiccoca_mv212/embeddings.npy", vec![1; 3000]),
        (V1, "checkpoints/llm_base_x4286_c1860k/target.decoder.decoder_norm.scale/0", vec![2; 2000]),
        (V2, "models/mrt2_small/mrt2_small.mlxfn", vec![3; 4000]),
    ];
    for (repo, path, bytes) in extras {
        let lfs = bytes.len() > 1024;
        let old = hub.repos.get_mut(repo).unwrap().files.insert(path.to_string(), HubFile { bytes, lfs });
        assert!(old.is_none(), "{repo} {path} is part of the tiny model");
    }
    let hub = Arc::new(hub);
    let endpoint = hub.serve();
    (hub, endpoint)
}

/// Where a repo's files go in a model directory.
fn local_path(model_dir: &Path, repo: &str, path: &str) -> PathBuf {
    let sub = if repo == V1 { "magenta-realtime" } else { "magenta-realtime-2" };
    model_dir.join(sub).join(path)
}

/// What size `tiny` needs from the mirror when its LM is already local: (repo, path), sorted.
fn needed(hub: &Hub) -> Vec<(String, String)> {
    let mut v = Vec::new();
    for (id, r) in &hub.repos {
        for p in r.files.keys() {
            let wanted = if id == V1 {
                p.starts_with("savedmodels/musiccoca_mv212f_cpu_novocab/")
                    || p.starts_with("savedmodels/musiccoca_mv212_quant/")
                    || p == "vocabularies/musiccoca_mv212f_vocab.model"
            } else {
                p.starts_with("resources/spectrostream/") || p == "resources/musiccoca/audio_preprocessor.tflite"
            };
            if wanted {
                v.push((id.clone(), p.clone()));
            }
        }
    }
    // The list is only as good as the tiny model: it must hold every kind of file.
    for (repo, path) in [
        (V1, "savedmodels/musiccoca_mv212f_cpu_novocab/saved_model.pb"),
        (V1, "savedmodels/musiccoca_mv212f_cpu_novocab/variables/variables.index"),
        (V1, "savedmodels/musiccoca_mv212_quant/saved_model.pb"),
        (V1, "savedmodels/musiccoca_mv212_quant/variables/variables.index"),
        (V1, "vocabularies/musiccoca_mv212f_vocab.model"),
        (V2, "resources/spectrostream/encoder.safetensors"),
        (V2, "resources/spectrostream/decoder.safetensors"),
        (V2, "resources/spectrostream/quantizer.safetensors"),
        (V2, "resources/musiccoca/audio_preprocessor.tflite"),
    ] {
        assert!(v.contains(&(repo.to_string(), path.to_string())), "the tiny model lacks {repo} {path}: {v:#?}");
    }
    for sm in ["musiccoca_mv212f_cpu_novocab", "musiccoca_mv212_quant"] {
        let shard = format!("savedmodels/{sm}/variables/variables.data-");
        assert!(v.iter().any(|(_, p)| p.starts_with(&shard)), "the tiny model lacks {shard}*");
    }
    v
}

/// Asserts the downloads logged by `hub` are exactly `want`, each once, and that every needed
/// file now sits in `model_dir` with the served bytes.
fn assert_fetched(hub: &Hub, want: &[(String, String)], model_dir: &Path) {
    let got = hub.downloads();
    let distinct: BTreeSet<(String, String)> = got.iter().cloned().collect();
    assert_eq!(distinct.len(), got.len(), "a file was downloaded twice: {got:#?}");
    assert_eq!(distinct.into_iter().collect::<Vec<_>>(), want, "downloads");
    for (repo, path) in want {
        let local = local_path(model_dir, repo, path);
        let bytes = std::fs::read(&local).unwrap_or_else(|e| panic!("{}: {e}", local.display()));
        assert!(bytes == hub.repos[repo].files[path].bytes, "{} differs from the served file", local.display());
    }
    let partial: Vec<String> = files_under(model_dir).into_iter().map(|(n, _)| n).filter(|n| n.contains(".incomplete")).collect();
    assert!(partial.is_empty(), "partial downloads left: {partial:?}");
    // No credentials leave the machine: none are configured.
    assert!(hub.requests().iter().all(|r| r.auth.is_none()), "{:#?}", hub.requests());
}

/// The converted LM safetensors files under `MRT_CACHE_DIR`.
fn converted(env: &Env) -> Vec<PathBuf> {
    let dir = env.mrt_cache().join("converted");
    if !dir.is_dir() {
        return Vec::new();
    }
    files_under(&dir).into_iter().map(|(_, p)| p).filter(|p| p.extension().is_some_and(|e| e == "safetensors")).collect()
}

fn tiny_lm_config(model_dir: &Path) -> mrt::v1::lm::LmConfig {
    let m: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(model_dir.join("mrt-live.json")).unwrap()).unwrap();
    mrt::v1::lm::LmConfig::from_json_str(&m["lm"]["tiny"]["config"].to_string()).expect("the manifest's LM config")
}

fn generate_args<'a>(model_dir: &'a str, out: &'a str) -> Vec<&'a str> {
    vec![
        "generate", "--model-dir", model_dir, "--size", "tiny", "--prompt", "funk", "--seconds", "3", "--seed", "1", "-o", out,
        "--device", "flex",
    ]
}

#[test]
fn generate_completes_a_model_dir_from_the_mirror_then_needs_no_network() {
    let setup = Env::new("setup", "http://127.0.0.1:9");
    let tiny = setup.tiny_model();
    let (hub, endpoint) = mirror(&tiny);
    let want = needed(&hub);
    let env = Env::new("generate", &endpoint);
    let model = env.path("model");
    fresh_model_dir(&tiny, &model);
    let (model_s, wav) = (model.display().to_string(), env.path("out.wav"));
    let wav_s = wav.display().to_string();

    let r = env.mrt(&generate_args(&model_s, &wav_s));
    assert!(r.ok, "{}", r.text);
    assert!(r.text.contains("fetching what is missing"), "{}", r.text);
    assert_fetched(&hub, &want, &model);
    let hf_folders: Vec<_> = std::fs::read_dir(env.hf_cache()).map(|d| d.flatten().map(|e| e.path()).collect()).unwrap_or_default();
    assert!(hf_folders.is_empty(), "a --model-dir fetch leaves the Hugging Face cache alone: {hf_folders:?}");

    let mut reader = hound::WavReader::open(&wav).unwrap();
    let spec = reader.spec();
    assert_eq!((spec.sample_rate, spec.channels), (48_000, 2));
    let samples: Vec<f32> = reader.samples::<f32>().map(Result::unwrap).collect();
    assert_eq!(samples.len(), 3 * 48_000 * 2, "3 s × 48000 frames × 2 channels");
    assert!(samples.iter().all(|v| v.is_finite()), "non-finite samples");
    assert!(samples.iter().any(|&v| v != 0.0), "silent output");

    let conv = converted(&env);
    assert_eq!(conv.len(), 1, "one converted LM under MRT_CACHE_DIR: {conv:?}");
    let weights = mrt::v1::lm::weights::HostWeights::from_safetensors(&conv[0], &tiny_lm_config(&model)).expect("the converted LM loads");
    assert!(!weights.is_empty());

    // Everything is on disk now: not a single request, and the same bytes.
    hub.clear_log();
    let wav2 = env.path("out2.wav");
    let wav2_s = wav2.display().to_string();
    let r = env.mrt(&generate_args(&model_s, &wav2_s));
    assert!(r.ok, "{}", r.text);
    assert!(hub.requests().is_empty(), "the second run made requests: {:#?}", hub.requests());
    assert!(std::fs::read(&wav).unwrap() == std::fs::read(&wav2).unwrap(), "the second run wrote other bytes");
    assert_eq!(converted(&env), conv, "the converted LM is reused");
}

#[test]
fn fetch_completes_a_model_dir_from_the_mirror() {
    let setup = Env::new("setup", "http://127.0.0.1:9");
    let tiny = setup.tiny_model();
    let (hub, endpoint) = mirror(&tiny);
    let want = needed(&hub);
    let env = Env::new("fetch", &endpoint);
    let model = env.path("model");
    fresh_model_dir(&tiny, &model);
    let model_s = model.display().to_string();

    let r = env.mrt(&["fetch", "--model-dir", &model_s, "--size", "tiny"]);
    assert!(r.ok, "{}", r.text);
    let ready = r.text.lines().find(|l| l.starts_with("model `tiny` ready: LM ")).unwrap_or_else(|| panic!("no ready line:\n{}", r.text));
    assert!(ready.contains(&env.mrt_cache().display().to_string()), "the LM is the converted one: {ready}");
    assert!(ready.contains(&format!("model dir {model_s}")), "{ready}");
    assert_fetched(&hub, &want, &model);
    assert_eq!(converted(&env).len(), 1);

    hub.clear_log();
    let r = env.mrt(&["fetch", "--model-dir", &model_s, "--size", "tiny"]);
    assert!(r.ok && r.text.contains("model `tiny` ready"), "{}", r.text);
    assert!(hub.requests().is_empty(), "a complete model dir needs no request: {:#?}", hub.requests());
}

#[test]
fn generate_without_the_mirror_fails_fast_naming_the_missing_files() {
    let setup = Env::new("setup", "http://127.0.0.1:9");
    let tiny = setup.tiny_model();
    let (stopped, stopped_endpoint) = mirror(&tiny);
    stopped.stop();
    for endpoint in [stopped_endpoint.as_str(), "http://127.0.0.1:9"] {
        let env = Env::new("offline", endpoint);
        let model = env.path("model");
        fresh_model_dir(&tiny, &model);
        let before = files_under(&model);
        let (model_s, wav) = (model.display().to_string(), env.path("never.wav"));
        let r = env.mrt(&generate_args(&model_s, &wav.display().to_string()));
        assert!(!r.ok, "{endpoint}: succeeded without the files:\n{}", r.text);
        assert!(r.took < Duration::from_secs(20), "{endpoint}: took {:?}", r.took);
        for needle in [
            "savedmodels/musiccoca_mv212f_cpu_novocab/",
            "savedmodels/musiccoca_mv212_quant/",
            "vocabularies/musiccoca_mv212f_vocab.model",
            "resources/spectrostream/",
            "resources/musiccoca/audio_preprocessor.tflite",
            "mrt fetch --size tiny",
            endpoint,
        ] {
            assert!(r.text.contains(needle), "{endpoint}: {needle:?} not in:\n{}", r.text);
        }
        assert!(!r.text.contains("checkpoints/llm_tiny"), "{endpoint}: the local LM is not missing:\n{}", r.text);
        assert!(!wav.exists());
        assert_eq!(files_under(&model), before, "{endpoint}: the model dir was changed");
    }
    assert!(stopped.requests().is_empty(), "the stopped mirror answered: {:#?}", stopped.requests());
}
