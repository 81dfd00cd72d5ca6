//! `mrt::assets` against a Hugging Face Hub on loopback (`common::hub`: a std `TcpListener`
//! thread serving the two repositories in the Hub's protocol: listing with blob metadata, resolve
//! URLs with ETag / x-linked-etag / x-linked-size / x-repo-commit, redirects of LFS files to a
//! "CDN" path, Range requests), filled with fixture-sized files built from `shared/fixtures` (the
//! L1 LM checkpoint, the C1 codec safetensors, small dummy files for the rest).
//!
//! No test reads or sets environment variables: every call gets an explicit `Settings`.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::hub::{Hub, Logged, CKPT, V1, V2};
use common::{files_under, fixtures, TempDir};
use mrt::assets::{
    convert_with, fetch_with, AssetError, FetchOptions, FetchTarget, LmFormat, LmSize, ModelPaths, Progress, RepoFile,
    Settings, Source,
};
use mrt::v1::lm::weights::HostWeights;
use mrt::v1::lm::LmConfig;
use sha2::Digest;

fn l1_config() -> LmConfig {
    LmConfig::from_json_file(&fixtures().join("lm/L1/config.json")).expect("L1 config.json")
}

// ---------------------------------------------------------------------------------------------
// Progress recorder

#[derive(Default)]
struct Recorder {
    planned: AtomicU64,
    moved: AtomicU64,
    done: Mutex<Vec<RepoFile>>,
    notes: Mutex<Vec<String>>,
}

impl Progress for Recorder {
    fn begin(&self, _what: &str, total: u64) {
        self.planned.fetch_add(total, Ordering::Relaxed);
    }
    fn advance(&self, n: u64) {
        self.moved.fetch_add(n, Ordering::Relaxed);
    }
    fn file_done(&self, f: &RepoFile) {
        self.done.lock().unwrap().push(f.clone());
    }
    fn note(&self, t: &str) {
        self.notes.lock().unwrap().push(t.to_string());
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers

fn settings(root: &Path, endpoint: &str) -> Settings {
    let mut s = Settings::new(root.join("hf"), root.join("mrt"));
    s.endpoint = endpoint.to_string();
    s.connect_timeout = Duration::from_secs(2);
    s.read_timeout = Duration::from_secs(10);
    s.sizes.push(LmSize { name: "tiny".into(), checkpoint: CKPT.into(), config: l1_config() });
    s
}

fn hub_with(f: impl FnOnce(&mut Hub)) -> (Arc<Hub>, String) {
    let mut hub = Hub::standard();
    f(&mut hub);
    let hub = Arc::new(hub);
    let endpoint = hub.serve();
    (hub, endpoint)
}

fn downloads(hub: &Hub) -> Vec<Logged> {
    hub.requests().into_iter().filter(|r| r.method == "GET" && !r.target.starts_with("/api/")).collect()
}

/// Files a `tiny` fetch must transfer, per repo: (repo, path).
fn needed(hub: &Hub) -> Vec<(String, String)> {
    let mut v = Vec::new();
    for (id, r) in &hub.repos {
        for p in r.files.keys() {
            let wanted = p.starts_with(&format!("{CKPT}/"))
                || p.starts_with("savedmodels/musiccoca_mv212f_cpu_novocab/")
                || p.starts_with("savedmodels/musiccoca_mv212_quant/")
                || p == "vocabularies/musiccoca_mv212f_vocab.model"
                || p.starts_with("resources/spectrostream/")
                || p == "resources/musiccoca/audio_preprocessor.tflite";
            if wanted {
                v.push((id.clone(), p.clone()));
            }
        }
    }
    v
}

fn err_of<T>(r: Result<T, AssetError>) -> AssetError {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => e,
    }
}

// ---------------------------------------------------------------------------------------------
// Tests

#[test]
fn full_fetch_lays_out_the_hf_cache_and_a_second_fetch_downloads_nothing() {
    let (hub, endpoint) = hub_with(|_| {});
    let tmp = TempDir::new("full");
    let s = settings(tmp.path(), &endpoint);
    let rec = Recorder::default();
    let paths = fetch_with("tiny", &FetchTarget::HfCache, &FetchOptions::default(), &s, &rec).expect("fetch");

    // Every needed file, once, and nothing else.
    let want = needed(&hub);
    let done: Vec<(String, String)> = {
        let mut d: Vec<_> = rec.done.lock().unwrap().iter().map(|f| (f.repo.to_string(), f.path.clone())).collect();
        d.sort();
        d
    };
    assert_eq!(done, want);
    let total: u64 = want.iter().map(|(r, p)| hub.repos[r].files[p].bytes.len() as u64).sum();
    assert_eq!(rec.planned.load(Ordering::Relaxed), total);
    assert_eq!(rec.moved.load(Ordering::Relaxed), total);
    for r in downloads(&hub) {
        assert!(!r.target.contains(".tar") && !r.target.contains("mapper") && !r.target.contains("README"), "{r:?}");
    }

    // The standard layout: refs/main, blobs named by etag, relative symlinks in the snapshot.
    for (id, repo) in &hub.repos {
        let folder = s.hf_cache.join(format!("models--{}", id.replace('/', "--")));
        assert_eq!(std::fs::read_to_string(folder.join("refs/main")).unwrap(), repo.commit);
        for (rid, p) in want.iter().filter(|(r, _)| r == id) {
            let f = &hub.repos[rid].files[p];
            let blob = folder.join("blobs").join(f.etag());
            assert_eq!(std::fs::read(&blob).unwrap(), f.bytes, "{p}");
            let snap = folder.join("snapshots").join(&repo.commit).join(p);
            assert_eq!(std::fs::read(&snap).unwrap(), f.bytes, "{p}");
            #[cfg(unix)]
            {
                let target = std::fs::read_link(&snap).unwrap();
                assert!(target.is_relative() && target.starts_with(".."), "{}", target.display());
                assert_eq!(std::fs::canonicalize(&snap).unwrap(), std::fs::canonicalize(&blob).unwrap());
            }
        }
        let leftovers: Vec<_> =
            files_under(&folder.join("blobs")).into_iter().filter(|(n, _)| n.contains('.')).collect();
        assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    }

    // locate finds everything in the cache, and the checkpoint loads from it.
    let located = ModelPaths::locate_with("tiny", None, &s).expect("locate after fetch");
    for l in [&located.lm_checkpoint, &located.codec_dir, &located.musiccoca, &located.vocab, &located.audio_preprocessor] {
        assert!(matches!(l.source, Source::HfCache { .. }), "{l:?}");
    }
    assert_eq!(located.lm_checkpoint.path, paths.lm_checkpoint.path);
    assert!(located.lm_checkpoint.path.ends_with(CKPT));
    assert_eq!(located.lm_format, LmFormat::T5x);
    assert_eq!(located.lm_config, l1_config());
    assert!(located.testdata.is_none(), "testdata is only fetched on request");
    let direct = HostWeights::from_t5x(&fixtures().join("lm/L1/checkpoint"), &l1_config()).unwrap();
    let cached = HostWeights::from_t5x(&located.lm_checkpoint.path, &l1_config()).unwrap();
    assert_eq!(cached.len(), direct.len());
    let codec_bytes = std::fs::read(located.codec_dir.path.join("decoder.safetensors")).unwrap();
    assert_eq!(codec_bytes, std::fs::read(fixtures().join("codec/C1/decoder.safetensors")).unwrap());

    // Second fetch: no request at all.
    hub.clear_log();
    let rec2 = Recorder::default();
    fetch_with("tiny", &FetchTarget::HfCache, &FetchOptions::default(), &s, &rec2).expect("second fetch");
    assert!(hub.requests().is_empty(), "second fetch made requests: {:?}", hub.requests());
    assert_eq!(rec2.moved.load(Ordering::Relaxed), 0);

    // Asking for the test data fetches only that.
    let p = fetch_with("tiny", &FetchTarget::HfCache, &FetchOptions { testdata: true }, &s, &()).expect("testdata");
    assert!(p.testdata.is_some());
    let got: Vec<_> = downloads(&hub).into_iter().map(|r| r.target).collect();
    assert!(!got.is_empty() && got.iter().all(|t| t.contains("testdata")), "{got:?}");
}

#[test]
fn zarr_metadata_is_downloaded_after_every_chunk() {
    let (hub, endpoint) = hub_with(|_| {});
    let tmp = TempDir::new("order");
    let mut s = settings(tmp.path(), &endpoint);
    s.parallel_downloads = 1;
    fetch_with("tiny", &FetchTarget::HfCache, &FetchOptions::default(), &s, &()).expect("fetch");
    let ckpt: Vec<String> = downloads(&hub)
        .into_iter()
        .map(|r| r.target)
        .filter(|t| t.contains("llm_tiny_l1/") || t.contains("/cdn/google/magenta-realtime/checkpoints"))
        .collect();
    let first_zarray = ckpt.iter().position(|t| t.ends_with(".zarray")).expect("zarray requests");
    assert!(ckpt[first_zarray..].iter().all(|t| t.ends_with(".zarray")), "{ckpt:#?}");
    // Files with identical content share a blob, downloaded once (70 `.zarray` files, fewer contents).
    let distinct: HashSet<String> =
        hub.repos[V1].files.iter().filter(|(p, _)| p.ends_with("/.zarray")).map(|(_, f)| f.etag()).collect();
    assert!(distinct.len() < 70);
    assert_eq!(ckpt.len() - first_zarray, distinct.len());
    let snap = s.hf_cache.join("models--google--magenta-realtime/snapshots").join(&hub.repos[V1].commit).join(CKPT);
    let zarrays = files_under(&snap).into_iter().filter(|(n, _)| n.ends_with("/.zarray")).count();
    assert_eq!(zarrays, 70, "every snapshot entry links its blob");
}

#[test]
fn an_interrupted_download_resumes_within_the_fetch() {
    let victim = "resources/spectrostream/decoder.safetensors";
    let (hub, endpoint) = hub_with(|h| {
        h.faults.get_mut().unwrap().truncate_once.insert(format!("{V2}:{victim}"));
    });
    let tmp = TempDir::new("resume1");
    let s = settings(tmp.path(), &endpoint);
    let rec = Recorder::default();
    let paths = fetch_with("tiny", &FetchTarget::HfCache, &FetchOptions::default(), &s, &rec).expect("fetch with one retry");
    let full = &hub.repos[V2].files[victim].bytes;
    assert_eq!(std::fs::read(paths.codec_dir.path.join("decoder.safetensors")).unwrap(), *full);
    let gets: Vec<Logged> = downloads(&hub).into_iter().filter(|r| r.target.ends_with("decoder.safetensors")).collect();
    let ranges: Vec<Option<String>> = gets.iter().filter(|r| r.target.starts_with("/cdn/")).map(|r| r.range.clone()).collect();
    assert_eq!(ranges, vec![None, Some(format!("bytes={}-", full.len() / 2))], "{gets:#?}");
    assert!(rec.notes.lock().unwrap().iter().any(|n| n.contains("resuming")));
}

#[test]
fn an_interrupted_download_resumes_in_the_next_fetch() {
    let victim = "resources/spectrostream/decoder.safetensors";
    let (hub, endpoint) = hub_with(|h| {
        h.faults.get_mut().unwrap().truncate_once.insert(format!("{V2}:{victim}"));
    });
    let tmp = TempDir::new("resume2");
    let mut s = settings(tmp.path(), &endpoint);
    s.retries = 0;
    let full = hub.repos[V2].files[victim].bytes.clone();
    let err = err_of(fetch_with("tiny", &FetchTarget::HfCache, &FetchOptions::default(), &s, &())).to_string();
    assert!(err.contains("resumes"), "{err}");
    let sha = mrt::assets::hub::hex(&sha2::Sha256::digest(&full));
    let partial = s.hf_cache.join("models--google--magenta-realtime-2/blobs").join(format!("{sha}.incomplete"));
    assert_eq!(std::fs::metadata(&partial).unwrap().len(), (full.len() / 2) as u64);
    // refs/main is written only once the repo is complete.
    assert!(!s.hf_cache.join("models--google--magenta-realtime-2/refs/main").exists());

    hub.clear_log();
    let paths = fetch_with("tiny", &FetchTarget::HfCache, &FetchOptions::default(), &s, &()).expect("second fetch resumes");
    assert_eq!(std::fs::read(paths.codec_dir.path.join("decoder.safetensors")).unwrap(), full);
    let resumed: Vec<Logged> = downloads(&hub).into_iter().filter(|r| r.target.starts_with("/cdn/")).collect();
    assert_eq!(resumed.len(), 1, "only the interrupted file is fetched again: {resumed:#?}");
    assert_eq!(resumed[0].range.as_deref(), Some(format!("bytes={}-", full.len() / 2).as_str()));
    assert!(!partial.exists());
}

#[test]
fn a_corrupted_download_is_an_error_naming_the_file_and_deletes_nothing_of_the_users() {
    for (repo, victim, listing_blobs, algorithm) in [
        (V2, "resources/musiccoca/audio_preprocessor.tflite", true, "sha256"),
        // Non-LFS file, etag from a HEAD request: the git blob id is checked.
        (V1, "vocabularies/musiccoca_mv212f_vocab.model", false, "git blob sha1"),
    ] {
        let (hub, endpoint) = hub_with(|h| {
            h.listing_blobs = listing_blobs;
            h.faults.get_mut().unwrap().corrupt.insert(format!("{repo}:{victim}"));
        });
        let tmp = TempDir::new("corrupt");
        let s = settings(tmp.path(), &endpoint);
        let folder = s.hf_cache.join(format!("models--{}", repo.replace('/', "--")));
        // Something the user already had in the cache.
        std::fs::create_dir_all(folder.join("blobs")).unwrap();
        std::fs::write(folder.join("blobs/0123abcd"), b"user data").unwrap();

        let err = err_of(fetch_with("tiny", &FetchTarget::HfCache, &FetchOptions::default(), &s, &()));
        let f = &hub.repos[repo].files[victim];
        match &err {
            AssetError::HashMismatch { file, expected, got, algorithm: alg, partial } => {
                assert_eq!(file.to_string(), format!("{repo}:{victim}"));
                assert_eq!(*expected, f.etag());
                assert_ne!(got, expected);
                assert_eq!(*alg, algorithm);
                assert!(!partial.exists(), "the partial download is removed");
            }
            other => panic!("expected HashMismatch, got {other}"),
        }
        let msg = err.to_string();
        assert!(msg.contains(victim) && msg.contains(&f.etag()), "{msg}");
        assert_eq!(std::fs::read(folder.join("blobs/0123abcd")).unwrap(), b"user data");
        assert!(!folder.join("blobs").join(f.etag()).exists(), "a corrupt blob never takes its final name");
        assert!(!folder.join("refs/main").exists());
        if !listing_blobs {
            assert!(hub.requests().iter().any(|r| r.method == "HEAD"), "metadata came from HEAD requests");
        }
    }
}

#[test]
fn an_unreachable_endpoint_fails_fast_with_the_missing_message() {
    // A closed port on loopback (refused at once) and a non-routable address (connect timeout or
    // an immediate "unreachable", depending on the network).
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        format!("http://127.0.0.1:{port}")
    };
    for endpoint in [closed.as_str(), "http://10.255.255.1:81"] {
        let tmp = TempDir::new("offline");
        let s = settings(tmp.path(), endpoint);
        let t0 = Instant::now();
        let err = err_of(fetch_with("tiny", &FetchTarget::HfCache, &FetchOptions::default(), &s, &()));
        let took = t0.elapsed();
        assert!(took < Duration::from_secs(8), "{endpoint}: took {took:?}");
        let AssetError::Missing(m) = &err else { panic!("expected Missing, got {err}") };
        assert!(m.fetch_error.as_deref().unwrap_or("").contains(endpoint), "{err}");
        let msg = err.to_string();
        for needle in [
            "google/magenta-realtime checkpoints/llm_tiny_l1/",
            "google/magenta-realtime savedmodels/musiccoca_mv212f_cpu_novocab/",
            "google/magenta-realtime savedmodels/musiccoca_mv212_quant/",
            "google/magenta-realtime vocabularies/musiccoca_mv212f_vocab.model",
            "google/magenta-realtime-2 resources/spectrostream/",
            "encoder.safetensors, decoder.safetensors, quantizer.safetensors",
            "google/magenta-realtime-2 resources/musiccoca/audio_preprocessor.tflite",
            "mrt fetch --size tiny",
            "no refs/main",
            "MRT_MODEL_DIR",
        ] {
            assert!(msg.contains(needle), "{needle:?} not in:\n{msg}");
        }
        assert!(msg.contains(&s.hf_cache.display().to_string()), "{msg}");
    }

    // An endpoint that accepts and never answers: the read timeout ends it.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", silent.local_addr().unwrap());
    let held = Arc::new(Mutex::new(Vec::new()));
    let h = Arc::clone(&held);
    std::thread::spawn(move || {
        for c in silent.incoming().flatten() {
            h.lock().unwrap().push(c);
        }
    });
    let tmp = TempDir::new("silent");
    let mut s = settings(tmp.path(), &endpoint);
    s.read_timeout = Duration::from_secs(1);
    let t0 = Instant::now();
    let err = err_of(fetch_with("tiny", &FetchTarget::HfCache, &FetchOptions::default(), &s, &()));
    assert!(t0.elapsed() < Duration::from_secs(8), "took {:?}", t0.elapsed());
    assert!(matches!(&err, AssetError::Missing(m) if m.fetch_error.as_deref().unwrap_or("").contains(&endpoint)), "{err}");

    // HF_HUB_OFFLINE: no attempt at all.
    let tmp = TempDir::new("offline-flag");
    let mut s = settings(tmp.path(), "http://127.0.0.1:9");
    s.offline = true;
    let err = err_of(fetch_with("tiny", &FetchTarget::HfCache, &FetchOptions::default(), &s, &())).to_string();
    assert!(err.contains("HF_HUB_OFFLINE") && err.contains("mrt fetch --size tiny"), "{err}");
}

#[test]
fn an_unreachable_endpoint_with_everything_on_disk_still_locates() {
    let (_hub, endpoint) = hub_with(|_| {});
    let tmp = TempDir::new("offline-ok");
    let mut s = settings(tmp.path(), &endpoint);
    fetch_with("tiny", &FetchTarget::HfCache, &FetchOptions::default(), &s, &()).expect("fetch");
    s.endpoint = "http://127.0.0.1:9".into();
    // testdata is not on disk and cannot be fetched: Missing names exactly that.
    let err = err_of(fetch_with("tiny", &FetchTarget::HfCache, &FetchOptions { testdata: true }, &s, &())).to_string();
    assert!(err.contains("testdata/") && !err.contains("audio_preprocessor"), "{err}");
    fetch_with("tiny", &FetchTarget::HfCache, &FetchOptions::default(), &s, &()).expect("nothing to download");
}

#[test]
fn fetch_into_a_model_dir_writes_plain_files() {
    let (hub, endpoint) = hub_with(|_| {});
    let tmp = TempDir::new("modeldir");
    let mut s = settings(tmp.path(), &endpoint);
    s.token = Some("hf_secret".into());
    let dir = tmp.path().join("models");
    let paths = fetch_with("tiny", &FetchTarget::ModelDir(dir.clone()), &FetchOptions::default(), &s, &()).expect("fetch");
    assert_eq!(paths.lm_checkpoint.source, Source::ModelDir { dir: dir.clone(), from_env: false });
    assert_eq!(paths.codec_dir.path, dir.join("magenta-realtime-2/resources/spectrostream"));
    let on_disk: Vec<String> = files_under(&dir).into_iter().map(|(n, _)| n).collect();
    let want: Vec<String> = {
        let mut w: Vec<String> = needed(&hub)
            .into_iter()
            .map(|(r, p)| format!("{}/{p}", if r == V1 { "magenta-realtime" } else { "magenta-realtime-2" }))
            .collect();
        w.sort();
        w
    };
    assert_eq!(on_disk, want);
    assert!(!s.hf_cache.exists(), "the Hugging Face cache is left alone");
    // The token goes to the endpoint, not to the host a redirect points at.
    for r in hub.requests() {
        let want = if r.target.starts_with("/cdn/") { None } else { Some("Bearer hf_secret") };
        assert_eq!(r.auth.as_deref(), want, "{r:?}");
    }
    hub.clear_log();
    fetch_with("tiny", &FetchTarget::ModelDir(dir), &FetchOptions::default(), &s, &()).expect("second fetch");
    assert!(hub.requests().is_empty());
}

fn copy_tree(src: &Path, dst: &Path) {
    for (rel, p) in files_under(src) {
        let d = dst.join(rel);
        std::fs::create_dir_all(d.parent().unwrap()).unwrap();
        std::fs::copy(p, d).unwrap();
    }
}

fn put_codec(model_dir: &Path) {
    let d = model_dir.join("magenta-realtime-2/resources/spectrostream");
    std::fs::create_dir_all(&d).unwrap();
    for n in ["encoder", "decoder", "quantizer"] {
        std::fs::copy(fixtures().join(format!("codec/C1/{n}.safetensors")), d.join(format!("{n}.safetensors"))).unwrap();
    }
}

#[test]
fn explicit_dir_then_mrt_model_dir_then_hf_cache() {
    let (_hub, endpoint) = hub_with(|_| {});
    let tmp = TempDir::new("precedence");
    let mut s = settings(tmp.path(), &endpoint);
    fetch_with("tiny", &FetchTarget::HfCache, &FetchOptions::default(), &s, &()).expect("fill the HF cache");

    let env_dir = tmp.path().join("env");
    let explicit = tmp.path().join("explicit");
    put_codec(&env_dir);
    s.model_dir = Some(env_dir.clone());

    let p = ModelPaths::locate_with("tiny", None, &s).unwrap();
    assert_eq!(p.codec_dir.source, Source::ModelDir { dir: env_dir.clone(), from_env: true });
    assert!(matches!(p.vocab.source, Source::HfCache { .. }), "items the model dir lacks come from the cache");

    // An explicit dir replaces MRT_MODEL_DIR; an incomplete item there does not count.
    std::fs::create_dir_all(explicit.join("magenta-realtime-2/resources/spectrostream")).unwrap();
    std::fs::copy(
        fixtures().join("codec/C1/encoder.safetensors"),
        explicit.join("magenta-realtime-2/resources/spectrostream/encoder.safetensors"),
    )
    .unwrap();
    let p = ModelPaths::locate_with("tiny", Some(&explicit), &s).unwrap();
    assert!(matches!(p.codec_dir.source, Source::HfCache { .. }), "{:?}", p.codec_dir);
    put_codec(&explicit);
    let p = ModelPaths::locate_with("tiny", Some(&explicit), &s).unwrap();
    assert_eq!(p.codec_dir.source, Source::ModelDir { dir: explicit.clone(), from_env: false });

    // A manifest in the explicit dir adds a size with its own checkpoint and codec config.
    let conv = tmp.path().join("explicit/lm/tiny.safetensors");
    mrt::assets::convert::t5x_to_safetensors(&fixtures().join("lm/L1/checkpoint"), &conv, &l1_config(), "test", &()).unwrap();
    let lm_json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(fixtures().join("lm/L1/config.json")).unwrap()).unwrap();
    let codec_json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("codec/C1/config.json")).unwrap()).unwrap();
    let manifest = serde_json::json!({
        "format": 1,
        "lm": {"mini": {"checkpoint": "lm/tiny.safetensors", "config": lm_json}},
        "codec_config": codec_json,
    });
    std::fs::write(explicit.join("mrt-live.json"), manifest.to_string()).unwrap();
    let p = ModelPaths::locate_with("mini", Some(&explicit), &s).unwrap();
    assert_eq!(p.lm_format, LmFormat::Safetensors);
    assert_eq!(p.lm_checkpoint.path, conv);
    assert_eq!(p.lm_config, l1_config());
    assert_eq!(p.manifest.as_deref(), Some(explicit.join("mrt-live.json").as_path()));
    assert_eq!(p.codec_config, mrt::codec::config::CodecConfig::from_json_file(&fixtures().join("codec/C1/config.json")).unwrap());
    // The manifest's checkpoint loads.
    let w = HostWeights::from_safetensors(&p.lm_checkpoint.path, &p.lm_config).unwrap();
    assert_eq!(w.len(), 70);

    // Unknown sizes list what is known.
    let err = err_of(ModelPaths::locate_with("huge", Some(&explicit), &s)).to_string();
    assert!(err.contains("huge") && err.contains("base") && err.contains("mini"), "{err}");
    // A malformed manifest names itself.
    std::fs::write(explicit.join("mrt-live.json"), r#"{"format": 1, "lms": {}}"#).unwrap();
    let err = mrt::error_chain(&err_of(ModelPaths::locate_with("tiny", Some(&explicit), &s)));
    assert!(err.contains("mrt-live.json") && err.contains("lms"), "{err}");
    std::fs::write(explicit.join("mrt-live.json"), r#"{"format": 1, "lm": {"mini": {"checkpoint": "nope"}}}"#).unwrap();
    let err = err_of(ModelPaths::locate_with("mini", Some(&explicit), &s)).to_string();
    assert!(err.contains("lm.mini") && err.contains("config"), "{err}");
}

#[test]
fn locate_reports_incomplete_items_precisely() {
    let tmp = TempDir::new("incomplete");
    let s = settings(tmp.path(), "http://127.0.0.1:9");
    let dir = tmp.path().join("models");
    copy_tree(&fixtures().join("lm/L1/checkpoint"), &dir.join("magenta-realtime").join(CKPT));
    std::fs::remove_file(dir.join("magenta-realtime").join(CKPT).join("target.decoder.decoder_norm.scale/.zarray")).unwrap();
    let sm = dir.join("magenta-realtime/savedmodels/musiccoca_mv212_quant");
    std::fs::create_dir_all(sm.join("variables")).unwrap();
    std::fs::write(sm.join("saved_model.pb"), b"x").unwrap();
    std::fs::write(sm.join("variables/variables.index"), b"x").unwrap();
    std::fs::write(sm.join("variables/variables.data-00001-of-00002"), b"x").unwrap();
    let err = err_of(ModelPaths::locate_with("tiny", Some(&dir), &s));
    let msg = err.to_string();
    assert!(msg.contains("lacks target.decoder.decoder_norm.scale/.zarray"), "{msg}");
    assert!(msg.contains("lacks variables/variables.data-00000-of-00002"), "{msg}");
    assert!(msg.contains("absent"), "{msg}");
    assert!(msg.contains(&format!("--model-dir {}", dir.display())), "{msg}");
    let AssetError::Missing(m) = err else { unreachable!() };
    assert_eq!(m.items.len(), 6, "{msg}");
    assert!(m.items.iter().all(|i| i.looked.len() == 2), "model dir and HF cache: {msg}");
}

#[test]
fn conversion_round_trip_gives_identical_weights_and_is_reused() {
    let tmp = TempDir::new("convert");
    let s = settings(tmp.path(), "http://127.0.0.1:9");
    let dir = tmp.path().join("models");
    copy_tree(&fixtures().join("lm/L1/checkpoint"), &dir.join("magenta-realtime").join(CKPT));
    // The rest of the model, as small placeholders.
    put_codec(&dir);
    for sm in ["savedmodels/musiccoca_mv212f_cpu_novocab", "savedmodels/musiccoca_mv212_quant"] {
        let d = dir.join("magenta-realtime").join(sm);
        std::fs::create_dir_all(d.join("variables")).unwrap();
        for f in ["saved_model.pb", "variables/variables.index", "variables/variables.data-00000-of-00001"] {
            std::fs::write(d.join(f), b"x").unwrap();
        }
    }
    std::fs::create_dir_all(dir.join("magenta-realtime/vocabularies")).unwrap();
    std::fs::write(dir.join("magenta-realtime/vocabularies/musiccoca_mv212f_vocab.model"), b"x").unwrap();
    std::fs::create_dir_all(dir.join("magenta-realtime-2/resources/musiccoca")).unwrap();
    std::fs::write(dir.join("magenta-realtime-2/resources/musiccoca/audio_preprocessor.tflite"), b"x").unwrap();

    let paths = ModelPaths::locate_with("tiny", Some(&dir), &s).expect("locate");
    let rec = Recorder::default();
    let c = convert_with(&paths, &s.cache_dir, &rec).expect("convert");
    assert!(!c.reused);
    assert!(c.lm_weights.starts_with(s.cache_dir.join("converted")), "{}", c.lm_weights.display());
    assert!(c.lm_weights.file_name().unwrap().to_string_lossy().ends_with("llm_tiny_l1.v1.safetensors"));
    assert!(c.lm_weights.parent().unwrap().file_name().unwrap().to_string_lossy().starts_with("local@"));
    assert_eq!(rec.moved.load(Ordering::Relaxed), rec.planned.load(Ordering::Relaxed));
    assert_eq!(rec.planned.load(Ordering::Relaxed), 4 * l1_config().param_count() as u64);

    let config = l1_config();
    let a = HostWeights::from_t5x(&paths.lm_checkpoint.path, &config).unwrap();
    let b = HostWeights::from_safetensors(&c.lm_weights, &config).unwrap();
    assert_eq!(a.len(), b.len());
    for (name, _) in mrt::v1::lm::weights::manifest(&config) {
        let (x, y) = (a.get(&name).unwrap(), b.get(&name).unwrap());
        assert_eq!(x.shape, y.shape, "{name}");
        let same = x.data.iter().zip(&y.data).all(|(p, q)| p.to_bits() == q.to_bits());
        assert!(same && x.data.len() == y.data.len(), "{name} differs");
    }
    // 8-byte aligned data for zero-copy mapping.
    let bytes = std::fs::read(&c.lm_weights).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap());
    assert_eq!((8 + n) % 8, 0);

    // Reused while valid; rebuilt when damaged; a changed source gets a new key.
    let again = convert_with(&paths, &s.cache_dir, &()).unwrap();
    assert_eq!(again, mrt::assets::ConvertedPaths { lm_weights: c.lm_weights.clone(), reused: true });
    std::fs::write(&c.lm_weights, &bytes[..bytes.len() - 100]).unwrap();
    let rebuilt = convert_with(&paths, &s.cache_dir, &()).unwrap();
    assert!(!rebuilt.reused);
    assert_eq!(std::fs::read(&c.lm_weights).unwrap(), bytes);
    let victim = paths.lm_checkpoint.path.join("target.decoder.decoder_norm.scale/0");
    let chunk = std::fs::read(&victim).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    std::fs::write(&victim, chunk).unwrap();
    let moved = convert_with(&paths, &s.cache_dir, &()).unwrap();
    assert_ne!(moved.lm_weights, c.lm_weights, "a touched checkpoint is converted again");

    // A checkpoint that does not match the config is refused before anything is written.
    let wrong = tmp.path().join("wrong/base.safetensors");
    let e = match mrt::assets::convert::t5x_to_safetensors(&paths.lm_checkpoint.path, &wrong, &LmConfig::base(), "k", &()) {
        Ok(()) => panic!("L1 is not the base model"),
        Err(e) => e.to_string(),
    };
    assert!(e.contains("token_embedder.embedding") && e.contains("[29824, 768]"), "{e}");
    assert!(!wrong.exists() && !wrong.parent().unwrap().exists());

    // From the Hugging Face cache the key is the commit.
    let mut hf_paths = paths.clone();
    hf_paths.lm_checkpoint.source = Source::HfCache { repo: mrt::assets::Repo::V1, commit: "abc123".into() };
    let h = convert_with(&hf_paths, &s.cache_dir, &()).unwrap();
    assert!(h.lm_weights.ends_with("converted/google--magenta-realtime@abc123/llm_tiny_l1.v1.safetensors"), "{}", h.lm_weights.display());
}

#[test]
fn bad_safetensors_name_the_tensor_and_file() {
    let tmp = TempDir::new("badst");
    let config = l1_config();
    let good = tmp.path().join("good.safetensors");
    mrt::assets::convert::t5x_to_safetensors(&fixtures().join("lm/L1/checkpoint"), &good, &config, "k", &()).unwrap();
    let st_bytes = std::fs::read(&good).unwrap();
    let st = safetensors::SafeTensors::deserialize(&st_bytes).unwrap();
    type Tensors = BTreeMap<String, (Vec<usize>, Vec<u8>)>;
    let owned: Tensors =
        st.tensors().into_iter().map(|(n, v)| (n, (v.shape().to_vec(), v.data().to_vec()))).collect();
    let write = |name: &str, edit: &dyn Fn(&mut Tensors)| -> PathBuf {
        let mut m = owned.clone();
        edit(&mut m);
        let views: Vec<(String, safetensors::tensor::TensorView)> = m
            .iter()
            .map(|(n, (s, d))| (n.clone(), safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), d).unwrap()))
            .collect();
        let p = tmp.path().join(name);
        safetensors::serialize_to_file(views, None, &p).unwrap();
        p
    };
    let load = |p: &Path| match HostWeights::from_safetensors(p, &config) {
        Ok(_) => panic!("{} must not load", p.display()),
        Err(e) => e.to_string(),
    };
    let t = "encoder.layers_0.mlp.wo.kernel";

    let p = write("nan.safetensors", &|m| {
        let d = &mut m.get_mut(t).unwrap().1;
        d[4..8].copy_from_slice(&f32::NAN.to_le_bytes());
    });
    let e = load(&p);
    assert!(e.contains(t) && e.contains("nan.safetensors") && e.contains("index 1"), "{e}");

    let p = write("missing.safetensors", &|m| {
        m.remove(t);
    });
    let e = load(&p);
    assert!(e.contains(t) && e.contains("missing.safetensors"), "{e}");

    let p = write("shape.safetensors", &|m| {
        let e = m.get_mut(t).unwrap();
        e.0 = vec![e.0[1], e.0[0]];
    });
    let e = load(&p);
    assert!(e.contains(t) && e.contains("shape.safetensors") && e.contains("expected [48, 32]"), "{e}");

    let p = write("extra.safetensors", &|m| {
        m.insert("decoder.surprise".into(), (vec![1], vec![0; 4]));
    });
    let e = load(&p);
    assert!(e.contains("decoder.surprise") && e.contains("extra.safetensors"), "{e}");

    let p = tmp.path().join("truncated.safetensors");
    std::fs::write(&p, &st_bytes[..st_bytes.len() / 2]).unwrap();
    let e = load(&p);
    assert!(e.contains("truncated.safetensors"), "{e}");
}

#[test]
fn settings_new_reads_no_environment() {
    // Environment variables arrive only through Settings::from_vars; Settings::new must be deterministic.
    let s = Settings::new(PathBuf::from("/a"), PathBuf::from("/b"));
    assert_eq!(s.endpoint, "https://huggingface.co");
    assert!(s.model_dir.is_none() && s.token.is_none() && !s.offline);
    assert_eq!(s.sizes.iter().map(|z| z.name.as_str()).collect::<Vec<_>>(), ["base", "large"]);
}

#[test]
fn an_mrt2_fetch_downloads_its_checkpoint_and_keeps_the_v2_files_of_v1_sizes() {
    let ckpt = "checkpoints/mrt2_small.safetensors";
    let (hub, endpoint) = hub_with(|h| {
        let bytes = std::fs::read(fixtures().join("mrt2/M1/weights.safetensors")).expect("the M1 fixture");
        h.repos.get_mut(V2).unwrap().files.insert(ckpt.into(), common::hub::HubFile { bytes, lfs: true });
        h.repos.get_mut(V2).unwrap().files.insert("checkpoints/mrt2_base.safetensors".into(), common::hub::HubFile { bytes: vec![9; 5000], lfs: true });
    });
    let tmp = TempDir::new("mrt2-fetch");
    let s = settings(tmp.path(), &endpoint);
    let paths = mrt::assets::fetch_mrt2("small", &FetchTarget::HfCache, &s, &()).expect("fetch");
    assert_eq!(std::fs::read(&paths.checkpoint.path).unwrap(), hub.repos[V2].files[ckpt].bytes);
    let got: Vec<String> = downloads(&hub).into_iter().map(|r| r.target).collect();
    assert!(!got.iter().any(|t| t.contains("mrt2_base") || t.contains("magenta-realtime/")), "{got:#?}");
    // MRT2's own MusicCoCa and its mapper come with it, and prompts find them.
    for name in ["text_encoder.tflite", "music_encoder.tflite", "pretrained_vector_quantizer.tflite", "spm.model", "mapper.tflite"] {
        assert!(got.iter().any(|t| t.ends_with(&format!("resources/musiccoca/{name}"))), "{name}: {got:#?}");
    }
    match mrt::assets::locate_mrt2_style(None, &s).expect("MRT2's style files") {
        mrt::style::StyleFiles::Mrt2(p) => {
            assert!(p.text_encoder.ends_with("resources/musiccoca/text_encoder.tflite") && p.text_encoder.is_file(), "{p:?}");
            assert!(p.preprocessor.is_some() && p.mapper.is_some(), "{p:?}");
        }
        other => panic!("{other:?}"),
    }
    // The v1 `tiny` size still finds the v2 files in the snapshot refs/main now names.
    let v1 = fetch_with("tiny", &FetchTarget::HfCache, &FetchOptions::default(), &s, &()).expect("v1 fetch after");
    assert!(v1.codec_dir.path.join("decoder.safetensors").is_file());
    // Present now: a second fetch makes no request.
    hub.clear_log();
    mrt::assets::fetch_mrt2("small", &FetchTarget::HfCache, &s, &()).expect("second fetch");
    assert!(hub.requests().is_empty(), "{:#?}", hub.requests());
    // A size the Hub lacks is a clear error naming the file.
    let e = mrt::assets::fetch_mrt2("large", &FetchTarget::HfCache, &s, &()).unwrap_err().to_string();
    assert!(e.contains("mrt2 large"), "{e}");
}

/// Two processes fetching into one cache: a blob another holder has locked (another `mrt fetch`,
/// a plugin instance, huggingface_hub, which use the same `.locks/` file) is not touched until the
/// lock is released; then the fetch completes and the blob is whole.
#[test]
fn a_blob_locked_by_another_process_waits_for_it() {
    let (hub, endpoint) = hub_with(|_| {});
    let tmp = TempDir::new("locked");
    let s = settings(tmp.path(), &endpoint);
    let (repo, path) = needed(&hub).into_iter().next().expect("a file to fetch");
    let file = &hub.repos[&repo].files[&path];
    let folder = s.hf_cache.join(format!("models--{}", repo.replace('/', "--")));
    let blob = folder.join("blobs").join(file.etag());
    let held = mrt::assets::hub::process_lock(&mrt::assets::hub::blob_lock_path(&folder, &file.etag())).expect("lock");
    let fetch = {
        let s = s.clone();
        std::thread::spawn(move || fetch_with("tiny", &FetchTarget::HfCache, &FetchOptions::default(), &s, &Recorder::default()).map(|_| ()))
    };
    std::thread::sleep(Duration::from_millis(800));
    assert!(!fetch.is_finished(), "the fetch went past a locked blob");
    assert!(!blob.exists(), "the locked blob was written");
    drop(held);
    fetch.join().expect("fetch thread").expect("fetch after the lock is released");
    assert_eq!(std::fs::read(&blob).expect("blob").as_slice(), file.bytes.as_slice());
}
