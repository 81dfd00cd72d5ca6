//! A Hugging Face Hub on loopback: a std `TcpListener` thread serving the two Magenta RT
//! repositories in the Hub's protocol (listing with blob metadata, resolve URLs with ETag /
//! x-linked-etag / x-linked-size / x-repo-commit, redirects of LFS files to a "CDN" path, Range
//! requests), with a request log and injectable faults (truncated or corrupted bodies).
//!
//! [`Hub::standard`] holds fixture-sized files built from `shared/fixtures` (the L1 LM checkpoint,
//! the C1 codec safetensors, small dummy files for the rest); [`Hub::from_dirs`] serves real
//! directories, e.g. those of the tiny model written by `mrt dev tiny-model`.

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use sha2::Digest;

use super::{files_under, fixtures};

pub const V1: &str = "google/magenta-realtime";
pub const V2: &str = "google/magenta-realtime-2";
/// Where [`Hub::standard`] puts the L1 checkpoint in the v1 repo.
pub const CKPT: &str = "checkpoints/llm_tiny_l1";

/// Whether the Hub stores a file in LFS (as the real repositories do for everything but small
/// text files).
fn is_lfs(rel: &str, len: usize) -> bool {
    !rel.ends_with(".zarray") && len > 1024
}

/// Undoes the client's percent-encoding of a path.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = (b[i] == b'%' && i + 2 < b.len())
            .then(|| std::str::from_utf8(&b[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok()))
            .flatten();
        match hex {
            Some(v) => {
                out.push(v);
                i += 3;
            }
            None => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub struct HubFile {
    pub bytes: Vec<u8>,
    pub lfs: bool,
}

impl HubFile {
    pub fn sha256(&self) -> String {
        mrt::assets::hub::hex(&sha2::Sha256::digest(&self.bytes))
    }
    pub fn etag(&self) -> String {
        if self.lfs {
            self.sha256()
        } else {
            mrt::assets::hub::git_blob_sha1(&self.bytes)
        }
    }
}

pub struct HubRepo {
    pub commit: String,
    pub files: BTreeMap<String, HubFile>,
}

#[derive(Clone, Debug)]
pub struct Logged {
    pub method: String,
    pub target: String,
    pub range: Option<String>,
    pub auth: Option<String>,
}

#[derive(Default)]
pub struct Faults {
    /// `repo:path`: the next body of this file stops after half its bytes and the connection closes.
    pub truncate_once: HashSet<String>,
    /// `repo:path`: served with one byte changed (headers still announce the true hash).
    pub corrupt: HashSet<String>,
}

pub struct Hub {
    pub repos: BTreeMap<String, HubRepo>,
    /// Whether the listing carries sizes and blob ids (else the client must HEAD each file).
    pub listing_blobs: bool,
    pub faults: Mutex<Faults>,
    log: Mutex<Vec<Logged>>,
    port: AtomicU64,
    stopped: AtomicBool,
    server: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Hub {
    pub fn standard() -> Hub {
        let mut v1 = BTreeMap::new();
        for (rel, p) in files_under(&fixtures().join("lm/L1/checkpoint")) {
            let bytes = std::fs::read(p).unwrap();
            let lfs = is_lfs(&rel, bytes.len());
            v1.insert(format!("{CKPT}/{rel}"), HubFile { bytes, lfs });
        }
        // Not needed by any size: must not be downloaded.
        v1.insert(format!("{CKPT}.tar"), HubFile { bytes: vec![7; 5000], lfs: true });
        v1.insert("README.md".into(), HubFile { bytes: b"# Magenta RT\n".to_vec(), lfs: false });
        for dir in ["savedmodels/musiccoca_mv212f_cpu_novocab", "savedmodels/musiccoca_mv212_quant"] {
            v1.insert(format!("{dir}/saved_model.pb"), HubFile { bytes: format!("pb of {dir}").repeat(200).into_bytes(), lfs: true });
            v1.insert(format!("{dir}/variables/variables.index"), HubFile { bytes: format!("index {dir}").into_bytes(), lfs: false });
            v1.insert(
                format!("{dir}/variables/variables.data-00000-of-00001"),
                HubFile { bytes: (0..30_000u32).map(|i| (i * 7 % 251) as u8).collect(), lfs: true },
            );
        }
        v1.insert("vocabularies/musiccoca_mv212f_vocab.model".into(), HubFile { bytes: b"\x0a\x05hello".repeat(50), lfs: false });
        v1.insert("testdata/musiccoca_mv212/embedding.npy".into(), HubFile { bytes: vec![1; 3000], lfs: true });

        let mut v2 = BTreeMap::new();
        for n in ["encoder", "decoder", "quantizer"] {
            let bytes = std::fs::read(fixtures().join(format!("codec/C1/{n}.safetensors"))).unwrap();
            v2.insert(format!("resources/spectrostream/{n}.safetensors"), HubFile { bytes, lfs: true });
        }
        v2.insert(
            "resources/musiccoca/audio_preprocessor.tflite".into(),
            HubFile { bytes: (0..20_000u32).map(|i| (i % 253) as u8).collect(), lfs: true },
        );
        v2.insert("resources/musiccoca/mapper.tflite".into(), HubFile { bytes: vec![3; 4000], lfs: true });
        // MRT2's own MusicCoCa (what `fetch --model mrt2` downloads besides the checkpoint).
        for (i, name) in ["text_encoder.tflite", "music_encoder.tflite", "pretrained_vector_quantizer.tflite", "spm.model"].into_iter().enumerate() {
            v2.insert(format!("resources/musiccoca/{name}"), HubFile { bytes: vec![10 + i as u8; 3000], lfs: true });
        }

        Hub::with_repos(v1, v2)
    }

    /// A Hub serving the files under `v1_dir` as google/magenta-realtime and those under `v2_dir`
    /// as google/magenta-realtime-2 (paths relative to each, `/`-separated), e.g. the
    /// `magenta-realtime/` and `magenta-realtime-2/` folders of a model directory. Files over
    /// 1 KiB are LFS files (redirected to the "CDN", sha256 etag), as in [`Hub::standard`].
    pub fn from_dirs(v1_dir: &Path, v2_dir: &Path) -> Hub {
        let read = |dir: &Path| -> BTreeMap<String, HubFile> {
            let files = files_under(dir);
            assert!(!files.is_empty(), "{}: no files to serve", dir.display());
            files
                .into_iter()
                .map(|(rel, p)| {
                    let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
                    let lfs = is_lfs(&rel, bytes.len());
                    (rel, HubFile { bytes, lfs })
                })
                .collect()
        };
        Hub::with_repos(read(v1_dir), read(v2_dir))
    }

    fn with_repos(v1: BTreeMap<String, HubFile>, v2: BTreeMap<String, HubFile>) -> Hub {
        let mut repos = BTreeMap::new();
        repos.insert(V1.to_string(), HubRepo { commit: "1111111111111111111111111111111111111111".into(), files: v1 });
        repos.insert(V2.to_string(), HubRepo { commit: "2222222222222222222222222222222222222222".into(), files: v2 });
        Hub {
            repos,
            listing_blobs: true,
            faults: Mutex::default(),
            log: Mutex::default(),
            port: AtomicU64::new(0),
            stopped: AtomicBool::new(false),
            server: Mutex::default(),
        }
    }

    /// Starts serving on a loopback port; returns the endpoint URL. The thread lives as long as the
    /// test process, or until [`Hub::stop`].
    pub fn serve(self: &Arc<Self>) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        self.port.store(port as u64, Ordering::Relaxed);
        let hub = Arc::clone(self);
        let server = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if hub.stopped.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let hub = Arc::clone(&hub);
                std::thread::spawn(move || {
                    let _ = hub.handle(conn);
                });
            }
        });
        *self.server.lock().unwrap() = Some(server);
        format!("http://127.0.0.1:{port}")
    }

    /// Stops accepting connections and closes the listening socket: afterwards the endpoint
    /// refuses connections. Requests already accepted are still answered.
    pub fn stop(&self) {
        let Some(server) = self.server.lock().unwrap().take() else { panic!("stop: the hub is not serving") };
        self.stopped.store(true, Ordering::SeqCst);
        // Wake the accept loop, which then sees the flag and drops the listener.
        let port = self.port.load(Ordering::Relaxed) as u16;
        let _ = TcpStream::connect(("127.0.0.1", port));
        server.join().expect("the hub's accept loop ended cleanly");
    }

    pub fn requests(&self) -> Vec<Logged> {
        self.log.lock().unwrap().clone()
    }

    /// `(repo, path)` of every file whose download was asked for (a GET of its resolve URL; the
    /// redirect to the "CDN" that follows for LFS files is not counted again), in request order.
    pub fn downloads(&self) -> Vec<(String, String)> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == "GET")
            .filter_map(|r| {
                let path = r.target.split('?').next().unwrap_or("");
                let mut it = path.trim_start_matches('/').splitn(5, '/');
                let (org, name, kw, _rev, file) = (it.next()?, it.next()?, it.next()?, it.next()?, it.next()?);
                (kw == "resolve").then(|| (format!("{org}/{name}"), percent_decode(file)))
            })
            .collect()
    }

    pub fn clear_log(&self) {
        self.log.lock().unwrap().clear();
    }

    fn handle(&self, conn: TcpStream) -> std::io::Result<()> {
        let mut reader = BufReader::new(conn.try_clone()?);
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let mut parts = line.split_whitespace();
        let (method, target) = (parts.next().unwrap_or("").to_string(), parts.next().unwrap_or("").to_string());
        let mut headers = BTreeMap::new();
        loop {
            let mut h = String::new();
            reader.read_line(&mut h)?;
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
            }
        }
        let range = headers.get("range").cloned();
        let auth = headers.get("authorization").cloned();
        self.log.lock().unwrap().push(Logged { method: method.clone(), target: target.clone(), range: range.clone(), auth });
        let mut out = conn;
        let head = method == "HEAD";
        let (path, query) = target.split_once('?').unwrap_or((&target, ""));

        // Listing.
        if let Some(rest) = path.strip_prefix("/api/models/") {
            let Some((repo_id, rev)) = rest.split_once("/revision/") else { return respond(&mut out, 404, &[], b"", head) };
            let Some(repo) = self.repos.get(repo_id) else { return respond(&mut out, 404, &[], b"{\"error\":\"Repository not found\"}", head) };
            assert_eq!(rev, "main");
            let blobs = self.listing_blobs && query.contains("blobs=true");
            let siblings: Vec<serde_json::Value> = repo
                .files
                .iter()
                .map(|(p, f)| {
                    if !blobs {
                        return serde_json::json!({ "rfilename": p });
                    }
                    let mut s = serde_json::json!({
                        "rfilename": p, "size": f.bytes.len(),
                        "blobId": if f.lfs { "f".repeat(40) } else { f.etag() },
                    });
                    if f.lfs {
                        s["lfs"] = serde_json::json!({ "sha256": f.sha256(), "size": f.bytes.len(), "pointerSize": 134 });
                    }
                    s
                })
                .collect();
            let body = serde_json::json!({ "id": repo_id, "sha": repo.commit, "siblings": siblings }).to_string();
            return respond(&mut out, 200, &[("Content-Type", "application/json".into())], body.as_bytes(), head);
        }

        // The "CDN": /cdn/<org>/<name>/<path in repo>.
        if let Some(rest) = path.strip_prefix("/cdn/") {
            let mut it = rest.splitn(3, '/');
            let (org, name, file) = (it.next().unwrap_or(""), it.next().unwrap_or(""), it.next().unwrap_or(""));
            let repo_id = format!("{org}/{name}");
            let Some(f) = self.repos.get(&repo_id).and_then(|r| r.files.get(file)) else { return respond(&mut out, 404, &[], b"", head) };
            return self.send_file(&mut out, &repo_id, file, f, range.as_deref(), vec![], head);
        }

        // Resolve: /<org>/<name>/resolve/<rev>/<path>.
        let mut it = path.trim_start_matches('/').splitn(5, '/');
        let (org, name, kw, rev, file) =
            (it.next().unwrap_or(""), it.next().unwrap_or(""), it.next().unwrap_or(""), it.next().unwrap_or(""), it.next().unwrap_or(""));
        let repo_id = format!("{org}/{name}");
        let Some(repo) = self.repos.get(&repo_id) else { return respond(&mut out, 404, &[], b"", head) };
        if kw != "resolve" || (rev != repo.commit && rev != "main") {
            return respond(&mut out, 404, &[], b"", head);
        }
        let Some(f) = repo.files.get(file) else {
            return respond(&mut out, 404, &[("X-Error-Code", "EntryNotFound".into())], b"Entry not found", head);
        };
        let commit = ("X-Repo-Commit", repo.commit.clone());
        if f.lfs {
            let port = self.port.load(Ordering::Relaxed);
            let headers = [
                commit,
                ("X-Linked-Etag", format!("\"{}\"", f.sha256())),
                ("X-Linked-Size", f.bytes.len().to_string()),
                ("ETag", format!("\"{}\"", "f".repeat(40))),
                ("Location", format!("http://127.0.0.1:{port}/cdn/{repo_id}/{file}")),
            ];
            return respond(&mut out, 302, &headers, b"", head);
        }
        self.send_file(&mut out, &repo_id, file, f, range.as_deref(), vec![commit, ("ETag", format!("\"{}\"", f.etag()))], head)
    }

    #[allow(clippy::too_many_arguments)]
    fn send_file(
        &self,
        out: &mut TcpStream,
        repo: &str,
        file: &str,
        f: &HubFile,
        range: Option<&str>,
        mut headers: Vec<(&str, String)>,
        head: bool,
    ) -> std::io::Result<()> {
        let key = format!("{repo}:{file}");
        let mut bytes = f.bytes.clone();
        let (truncate, corrupt) = {
            let mut faults = self.faults.lock().unwrap();
            let t = !head && faults.truncate_once.remove(&key);
            (t, faults.corrupt.contains(&key))
        };
        if corrupt {
            let i = bytes.len() / 3;
            bytes[i] ^= 0x5a;
        }
        let total = bytes.len();
        let start = range
            .and_then(|r| r.strip_prefix("bytes="))
            .and_then(|r| r.split('-').next())
            .and_then(|s| s.parse::<usize>().ok());
        let (status, body) = match start {
            Some(s) if s >= total => return respond(out, 416, &[("Content-Range", format!("bytes */{total}"))], b"", head),
            Some(s) => {
                headers.push(("Content-Range", format!("bytes {s}-{}/{total}", total - 1)));
                (206, &bytes[s..])
            }
            None => (200, &bytes[..]),
        };
        if truncate {
            write!(out, "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n", body.len())?;
            for (k, v) in &headers {
                write!(out, "{k}: {v}\r\n")?;
            }
            write!(out, "\r\n")?;
            out.write_all(&body[..body.len() / 2])?;
            out.flush()?;
            return out.shutdown(std::net::Shutdown::Both);
        }
        respond(out, status, &headers, body, head)
    }
}

fn respond(out: &mut TcpStream, status: u16, headers: &[(&str, String)], body: &[u8], head: bool) -> std::io::Result<()> {
    write!(out, "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n", body.len())?;
    for (k, v) in headers {
        write!(out, "{k}: {v}\r\n")?;
    }
    write!(out, "\r\n")?;
    if !head {
        out.write_all(body)?;
    }
    out.flush()
}
