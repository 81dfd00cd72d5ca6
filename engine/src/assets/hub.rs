//! Downloads from the Hugging Face Hub into the standard cache layout (or a model directory).
//!
//! We speak the few HTTP requests ourselves (ureq over rustls) instead of using the `hf-hub` crate:
//! its 0.5 sync API has no timeouts (an unreachable endpoint could hang), verifies no checksum and
//! does not read `HF_HUB_CACHE`; 1.x pulls in tokio, reqwest and the Xet client.
//!
//! Requests, per repository (`<endpoint>` = `$HF_ENDPOINT` or `https://huggingface.co`):
//!
//! 1. `GET <endpoint>/api/models/<repo>/revision/main?blobs=true` → the commit (`sha`) and every
//!    file (`siblings[].rfilename`) with its `size`, git `blobId` and, for LFS files, `lfs.sha256`.
//! 2. Only when the listing lacks a file's size or id: `HEAD <endpoint>/<repo>/resolve/<commit>/<path>`
//!    (relative redirects followed, absolute ones not) → `x-linked-etag` or `ETag`,
//!    `x-linked-size` or `Content-Length`.
//! 3. `GET <endpoint>/<repo>/resolve/<commit>/<path>` with `Range: bytes=<have>-` when a partial
//!    download exists (redirects to the CDN followed; the token is not sent to other hosts).
//!
//! Cache layout (what Python's `huggingface_hub` writes and reads):
//!
//! ```text
//! <hf cache>/models--google--magenta-realtime/
//!     blobs/<etag>                  content; etag = sha256 (LFS) or git blob sha1
//!     blobs/<etag>.incomplete       partial download (resumed with a Range request)
//!     snapshots/<commit>/<path>     relative symlink → ../../blobs/<etag> (a copy where
//!                                   symlinks are unavailable)
//!     refs/main                     <commit>, written once every wanted file is in place
//! ```
//!
//! Every download is checked against the announced size and, when the etag is a 64-hex sha256
//! (LFS) or a 40-hex git blob id, against its hash before it is renamed into place, so a
//! corrupted transfer never becomes a blob. A mismatch removes only the partial file.
//! Files named `.zarray` are downloaded after every other file, so a zarr array whose metadata
//! exists has all its chunks (which `locate` relies on).

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use serde::Deserialize;
use sha1::Digest as _;

use super::locate::{join_repo_path, Item, Kind, Plan, Role, Root};
use super::{io_err, AssetError, ModelPaths, Progress, Repo, RepoFile, Settings, AUDIO_PREPROCESSOR, CODEC_DIR, CODEC_FILES};

/// Where `fetch` puts the files.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum FetchTarget {
    /// The Hugging Face cache of the settings (shared with Python tools).
    #[default]
    HfCache,
    /// A model directory: plain files under `<dir>/magenta-realtime/` and `<dir>/magenta-realtime-2/`.
    ModelDir(PathBuf),
}

/// What to fetch besides what the size needs.
#[derive(Clone, Debug, Default)]
pub struct FetchOptions {
    /// Also fetch v1's `testdata/` (for `mrt verify`).
    pub testdata: bool,
}


/// Makes every item `size` needs present in `target`, downloading only what is not there yet,
/// then locates the model as [`ModelPaths::locate_with`] would.
///
/// When every item is already complete in the target, no request is made. When the listing
/// cannot be had (endpoint unreachable, HTTP error, or `settings.offline`), the result is what is
/// on disk: the located model, or [`AssetError::Missing`] listing what is needed, with the reason.
/// Errors after the listing (a failed or corrupt download) are returned as they are.
pub fn fetch_with(
    size: &str,
    target: &FetchTarget,
    options: &FetchOptions,
    settings: &Settings,
    progress: &dyn Progress,
) -> Result<ModelPaths, AssetError> {
    let model_dir = match target {
        FetchTarget::ModelDir(d) => Some(d.as_path()),
        FetchTarget::HfCache => None,
    };
    let plan = Plan::new(size, model_dir, settings, options.testdata)?;
    let target_root = match target {
        FetchTarget::HfCache => Root::HfCache { cache: settings.hf_cache.clone() },
        FetchTarget::ModelDir(d) => Root::ModelDir { dir: d.clone(), from_env: false },
    };
    let todo: Vec<&Item> = plan
        .items
        .iter()
        .filter(|item| match target_root.repo_base(item.repo) {
            Ok((base, _)) => item.check(&join_repo_path(&base, &item.path)).is_err(),
            Err(_) => true,
        })
        .collect();
    if todo.is_empty() {
        progress.note("every file is already present; nothing to download");
        return plan.locate();
    }
    // Without the network: what is on disk, anywhere, or exactly what is not.
    let offline = |reason: String| {
        let missing = plan.missing_items();
        if missing.is_empty() {
            progress.note(&format!("{reason}; using the files on disk"));
            plan.locate()
        } else {
            Err(plan.missing(missing, Some(reason)))
        }
    };
    if settings.offline {
        return offline("HF_HUB_OFFLINE is set, no download attempted".into());
    }
    let client = Client::new(settings);
    for repo in Repo::ALL {
        if !todo.iter().any(|i| i.repo == repo) {
            continue;
        }
        // Every item of the repo, not only the incomplete ones: refs/main will name the listed
        // commit, whose snapshot must then hold them all (files already there are skipped, blobs
        // of an older snapshot are linked, not downloaded again).
        let items: Vec<&Item> = plan.items.iter().filter(|i| i.repo == repo).collect();
        // Any failure to list (no route, refused, timeout, a proxy's 502, 401 without a token)
        // means nothing can be downloaded: report what is on disk, with the reason.
        let listing = match client.listing(repo) {
            Ok(l) => l,
            Err(e) => return offline(e.to_string()),
        };
        fetch_repo(&client, repo, &listing, &items, target, settings, progress)?;
    }
    plan.locate()
}

/// Makes MRT2 `size` present in `target` (its checkpoint, with the v2 repo's files the v1 sizes
/// use, so the new snapshot still holds them), then locates it as
/// [`super::Mrt2Paths::locate_with`]. A size a manifest defines is only located. Offline or with
/// the listing unavailable: what is on disk, else [`AssetError::Missing`] with the reason.
pub fn fetch_mrt2(size: &str, target: &FetchTarget, settings: &Settings, progress: &dyn Progress) -> Result<super::Mrt2Paths, AssetError> {
    let model_dir = match target {
        FetchTarget::ModelDir(d) => Some(d.as_path()),
        FetchTarget::HfCache => None,
    };
    let locate = || super::Mrt2Paths::locate_with(size, model_dir, settings);
    if !super::mrt2::MRT2_RELEASED_SIZES.contains(&size) {
        return locate();
    }
    let target_root = match target {
        FetchTarget::HfCache => Root::HfCache { cache: settings.hf_cache.clone() },
        FetchTarget::ModelDir(d) => Root::ModelDir { dir: d.clone(), from_env: false },
    };
    let codec_files = CODEC_FILES.iter().map(|s| s.to_string()).collect();
    let items = [
        Item::new(Repo::V2, &super::mrt2::mrt2_checkpoint(size), Kind::File, Role::Lm),
        Item::new(Repo::V2, CODEC_DIR, Kind::Files(codec_files), Role::Codec),
        Item::new(Repo::V2, AUDIO_PREPROCESSOR, Kind::File, Role::AudioPreprocessor),
        super::locate::mrt2_musiccoca_item(),
        Item::new(Repo::V2, super::MRT2_MAPPER, Kind::File, Role::Mrt2MusicCoCa),
    ];
    // The checkpoint and MRT2's own MusicCoCa with its mapper (what `generate --model mrt2` reads).
    let present = match target_root.repo_base(Repo::V2) {
        Ok((base, _)) => [&items[0], &items[3], &items[4]].iter().all(|item| item.check(&join_repo_path(&base, &item.path)).is_ok()),
        Err(_) => false,
    };
    if present {
        progress.note("the checkpoint and the style model are already present; nothing to download");
        return locate();
    }
    let offline = |reason: String| match locate() {
        Ok(p) => {
            progress.note(&format!("{reason}; using the files on disk"));
            Ok(p)
        }
        Err(AssetError::Missing(mut m)) => {
            m.fetch_error = Some(reason);
            Err(AssetError::Missing(m))
        }
        Err(e) => Err(e),
    };
    if settings.offline {
        return offline("HF_HUB_OFFLINE is set, no download attempted".into());
    }
    let client = Client::new(settings);
    let listing = match client.listing(Repo::V2) {
        Ok(l) => l,
        Err(e) => return offline(e.to_string()),
    };
    let refs: Vec<&Item> = items.iter().collect();
    fetch_repo(&client, Repo::V2, &listing, &refs, target, settings, progress)?;
    locate()
}

/// One file of the listing.
#[derive(Clone, Debug)]
pub(crate) struct Listed {
    pub path: String,
    pub size: Option<u64>,
    /// The id the resolve endpoint reports as etag: `lfs.sha256` for LFS files, else `blobId`.
    pub etag: Option<String>,
}

pub(crate) struct Listing {
    pub commit: String,
    pub files: Vec<Listed>,
}

#[derive(Deserialize)]
struct ListingJson {
    sha: String,
    #[serde(default)]
    siblings: Vec<SiblingJson>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SiblingJson {
    rfilename: String,
    size: Option<u64>,
    blob_id: Option<String>,
    lfs: Option<LfsJson>,
}

#[derive(Deserialize)]
struct LfsJson {
    sha256: Option<String>,
    size: Option<u64>,
}

/// Size and etag of one file, from the listing or a HEAD request.
struct FileMeta {
    size: u64,
    etag: String,
}

struct Client {
    /// Follows redirects (downloads).
    agent: ureq::Agent,
    /// Follows none (HEAD, where the first answer carries the metadata).
    no_redirect: ureq::Agent,
    endpoint: String,
    token: Option<String>,
    retries: usize,
}

impl Client {
    fn new(s: &Settings) -> Self {
        let build = |redirects: u32| -> ureq::Agent {
            ureq::Agent::config_builder()
                .timeout_connect(Some(s.connect_timeout))
                .timeout_resolve(Some(s.connect_timeout))
                .timeout_recv_response(Some(s.read_timeout))
                .timeout_per_read(Some(s.read_timeout))
                .http_status_as_error(false)
                .max_redirects(redirects)
                .user_agent(concat!("mrt-live/", env!("CARGO_PKG_VERSION")))
                .build()
                .into()
        };
        Self {
            agent: build(10),
            no_redirect: build(0),
            endpoint: s.endpoint.trim_end_matches('/').to_string(),
            token: s.token.clone(),
            retries: s.retries,
        }
    }

    fn request(&self, agent: &ureq::Agent, method: &str, url: &str, range_from: u64) -> Result<ureq::http::Response<ureq::Body>, AssetError> {
        let mut req = match method {
            "HEAD" => agent.head(url),
            _ => agent.get(url),
        };
        if range_from > 0 {
            req = req.header("Range", format!("bytes={range_from}-"));
        }
        if let Some(t) = &self.token {
            req = req.header("Authorization", format!("Bearer {t}"));
        }
        req.call().map_err(|e| AssetError::Network { url: url.to_string(), reason: e.to_string() })
    }

    fn listing(&self, repo: Repo) -> Result<Listing, AssetError> {
        let url = format!("{}/api/models/{}/revision/main?blobs=true", self.endpoint, repo.id());
        let mut resp = self.request(&self.agent, "GET", &url, 0)?;
        let status = resp.status().as_u16();
        let body = resp
            .body_mut()
            .with_config()
            .limit(256 << 20)
            .read_to_string()
            .map_err(|e| AssetError::Network { url: url.clone(), reason: e.to_string() })?;
        if status != 200 {
            return Err(AssetError::Http { url, status, body: snippet(&body) });
        }
        let j: ListingJson =
            serde_json::from_str(&body).map_err(|e| AssetError::BadResponse { url: url.clone(), reason: format!("listing JSON: {e}") })?;
        if j.sha.is_empty() || j.sha.contains(['/', '\\', '.']) {
            return Err(AssetError::BadResponse { url, reason: format!("commit {:?} is not usable as a directory name", j.sha) });
        }
        if let Some(bad) = j.siblings.iter().find(|s| !is_safe_repo_path(&s.rfilename)) {
            return Err(AssetError::BadResponse {
                url,
                reason: format!("file name {:?} could leave the download directory", bad.rfilename),
            });
        }
        let files = j
            .siblings
            .into_iter()
            .map(|s| {
                let (size, etag) = match s.lfs {
                    Some(lfs) => (lfs.size.or(s.size), lfs.sha256),
                    None => (s.size, s.blob_id),
                };
                Listed { path: s.rfilename, size, etag }
            })
            .collect();
        Ok(Listing { commit: j.sha, files })
    }

    fn resolve_url(&self, repo: Repo, commit: &str, path: &str) -> String {
        format!("{}/{}/resolve/{}/{}", self.endpoint, repo.id(), commit, encode_path(path))
    }

    /// HEAD on the resolve URL, following relative redirects only (as `huggingface_hub` does).
    fn head(&self, repo: Repo, commit: &str, path: &str) -> Result<FileMeta, AssetError> {
        let mut url = self.resolve_url(repo, commit, path);
        for _ in 0..10 {
            let resp = self.request(&self.no_redirect, "HEAD", &url, 0)?;
            let status = resp.status().as_u16();
            let h = |name: &str| resp.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
            if (300..400).contains(&status) {
                if let Some(loc) = h("location").filter(|l| l.starts_with('/')) {
                    url = format!("{}{loc}", origin(&self.endpoint));
                    continue;
                }
            } else if status >= 400 {
                return Err(AssetError::Http { url, status, body: String::new() });
            }
            let etag = h("x-linked-etag").or_else(|| h("etag")).map(|e| normalize_etag(&e));
            let size = h("x-linked-size").or_else(|| h("content-length")).and_then(|s| s.trim().parse::<u64>().ok());
            if let Some(c) = h("x-repo-commit") {
                if c != commit {
                    return Err(AssetError::BadResponse { url, reason: format!("x-repo-commit is {c}, asked for {commit}") });
                }
            }
            return match (etag, size) {
                (Some(etag), Some(size)) if is_safe_name(&etag) => Ok(FileMeta { size, etag }),
                (Some(etag), Some(_)) => Err(AssetError::BadResponse { url, reason: format!("etag {etag:?} is not a usable file name") }),
                (None, _) => Err(AssetError::BadResponse { url, reason: "no ETag or x-linked-etag header".into() }),
                (_, None) => Err(AssetError::BadResponse { url, reason: "no x-linked-size or Content-Length header".into() }),
            };
        }
        Err(AssetError::BadResponse { url, reason: "more than 10 relative redirects".into() })
    }

    /// Downloads `url` into `partial` until it holds `size` bytes, resuming whatever is there and
    /// retrying transfer errors.
    fn download(&self, file: &RepoFile, url: &str, partial: &Path, size: u64, progress: &dyn Progress) -> Result<(), AssetError> {
        if size == 0 {
            progress.file(file, 0, 0);
            File::create(partial).map_err(io_err(partial))?;
            return Ok(());
        }
        let mut attempt = 0;
        loop {
            let have = fs::metadata(partial).map(|m| m.len()).unwrap_or(0);
            let have = if have > size {
                // Longer than the file can be: not a prefix of it.
                File::create(partial).map_err(io_err(partial))?;
                0
            } else {
                have
            };
            if attempt == 0 {
                progress.file(file, size, have);
                progress.advance(have);
            }
            if have == size {
                return Ok(());
            }
            match self.transfer(url, partial, have, size, progress) {
                Ok(()) => return Ok(()),
                Err(Transfer::Fatal(e)) => return Err(e),
                Err(Transfer::Retry(reason)) if attempt < self.retries => {
                    attempt += 1;
                    progress.note(&format!("{file}: {reason}; resuming (retry {attempt} of {})", self.retries));
                    std::thread::sleep(Duration::from_millis(200 * attempt as u64));
                }
                Err(Transfer::Retry(reason)) => {
                    return Err(AssetError::Network {
                        url: url.to_string(),
                        reason: format!(
                            "{reason} (after {} retries; {} keeps the bytes received, the next fetch resumes from there)",
                            self.retries,
                            partial.display()
                        ),
                    })
                }
            }
        }
    }

    fn transfer(&self, url: &str, partial: &Path, have: u64, size: u64, progress: &dyn Progress) -> Result<(), Transfer> {
        let resp = self.request(&self.agent, "GET", url, have).map_err(|e| Transfer::Retry(e.to_string()))?;
        let status = resp.status().as_u16();
        let mut out = OpenOptions::new().create(true).append(true).open(partial).map_err(|e| Transfer::Fatal(io_err(partial)(e)))?;
        match status {
            206 => {
                let start = resp
                    .headers()
                    .get("content-range")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("bytes "))
                    .and_then(|v| v.split('-').next())
                    .and_then(|v| v.parse::<u64>().ok());
                if start != Some(have) {
                    return Err(Transfer::Fatal(AssetError::BadResponse {
                        url: url.to_string(),
                        reason: format!("asked for bytes {have}-, got Content-Range {start:?}"),
                    }));
                }
            }
            200 => {
                if have > 0 {
                    // The server ignored the Range header: start over.
                    out.set_len(0).map_err(|e| Transfer::Fatal(io_err(partial)(e)))?;
                    out.seek(std::io::SeekFrom::Start(0)).map_err(|e| Transfer::Fatal(io_err(partial)(e)))?;
                    progress.note(&format!("{url}: server ignored the Range request, downloading from the start"));
                }
            }
            416 => {
                // Nothing left to send for this range: the partial file is not a prefix of the file.
                out.set_len(0).map_err(|e| Transfer::Fatal(io_err(partial)(e)))?;
                return Err(Transfer::Retry(format!("HTTP 416 for bytes {have}- of {size}")));
            }
            500..=599 | 429 => return Err(Transfer::Retry(format!("HTTP {status}"))),
            _ => return Err(Transfer::Fatal(AssetError::Http { url: url.to_string(), status, body: String::new() })),
        }
        let mut reader = resp.into_body().into_reader();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let _ = out.flush();
                    return Err(Transfer::Retry(format!("transfer interrupted: {e}")));
                }
            };
            out.write_all(&buf[..n]).map_err(|e| Transfer::Fatal(io_err(partial)(e)))?;
            progress.advance(n as u64);
        }
        out.sync_all().map_err(|e| Transfer::Fatal(io_err(partial)(e)))?;
        let got = fs::metadata(partial).map(|m| m.len()).unwrap_or(0);
        if got < size {
            return Err(Transfer::Retry(format!("connection closed at byte {got} of {size}")));
        }
        Ok(())
    }
}

enum Transfer {
    /// Worth another attempt (network trouble); the partial file is kept.
    Retry(String),
    Fatal(AssetError),
}

/// Downloads the files of `items` from one repository into `target`.
fn fetch_repo(
    client: &Client,
    repo: Repo,
    listing: &Listing,
    items: &[&Item],
    target: &FetchTarget,
    settings: &Settings,
    progress: &dyn Progress,
) -> Result<(), AssetError> {
    let commit = &listing.commit;
    let mut wanted: Vec<&Listed> = Vec::new();
    for item in items {
        let files: Vec<&Listed> = listing.files.iter().filter(|f| item.wants(&f.path)).collect();
        if let super::locate::Kind::Files(names) = &item.kind {
            for n in names {
                let p = format!("{}/{n}", item.path);
                if !files.iter().any(|f| f.path == p) {
                    return Err(AssetError::NotOnServer { repo, commit: commit.clone(), path: p });
                }
            }
        }
        if files.is_empty() {
            let path = if item.is_dir() { format!("{}/", item.path) } else { item.path.clone() };
            return Err(AssetError::NotOnServer { repo, commit: commit.clone(), path });
        }
        wanted.extend(files);
    }
    // Zarr metadata last: an array with a `.zarray` then has every chunk.
    wanted.sort_by(|a, b| (a.path.ends_with("/.zarray"), &a.path).cmp(&(b.path.ends_with("/.zarray"), &b.path)));
    wanted.dedup_by(|a, b| a.path == b.path);

    let (repo_folder, base) = match target {
        FetchTarget::HfCache => {
            let folder = settings.hf_cache.join(repo.cache_folder());
            let snap = folder.join("snapshots").join(commit);
            (Some(folder), snap)
        }
        FetchTarget::ModelDir(d) => (None, d.join(repo.dir_name())),
    };
    let jobs: Vec<&Listed> = wanted
        .into_iter()
        .filter(|f| {
            let dest = join_repo_path(&base, &f.path);
            match (fs::metadata(&dest), f.size) {
                (Ok(m), Some(size)) => m.len() != size,
                (Ok(_), None) => false,
                (Err(_), _) => true,
            }
        })
        .collect();
    let total: u64 = jobs.iter().filter_map(|f| f.size).sum();
    progress.begin(&format!("{repo}@{}: {} file(s)", &commit[..commit.len().min(8)], jobs.len()), total);

    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    // Locks of model-dir downloads live in our cache, not among the user's files.
    let lock_dir = settings.cache_dir.join("locks");
    let threads = settings.parallel_downloads.clamp(1, 16).min(jobs.len().max(1));
    let mut errors: Vec<(usize, AssetError)> = Vec::new();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut errs = Vec::new();
                    while !failed.load(Ordering::Relaxed) {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(f) = jobs.get(i) else { break };
                        let r = fetch_file(client, repo, commit, f, repo_folder.as_deref(), &base, &lock_dir, progress);
                        if let Err(e) = r {
                            failed.store(true, Ordering::Relaxed);
                            errs.push((i, e));
                        }
                    }
                    errs
                })
            })
            .collect();
        for h in handles {
            match h.join() {
                Ok(e) => errors.extend(e),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
    });
    progress.finish();
    errors.sort_by_key(|(i, _)| *i);
    if let Some((_, e)) = errors.into_iter().next() {
        return Err(e);
    }
    if let Some(folder) = repo_folder {
        let refs = folder.join("refs");
        fs::create_dir_all(&refs).map_err(io_err(&refs))?;
        write_atomic(&refs.join("main"), commit.as_bytes())?;
    }
    Ok(())
}


/// Downloads one file: into `blobs/` + a snapshot link (`repo_folder` given) or straight to
/// `base/<path>` (model directory).
#[allow(clippy::too_many_arguments)]
fn fetch_file(
    client: &Client,
    repo: Repo,
    commit: &str,
    f: &Listed,
    repo_folder: Option<&Path>,
    base: &Path,
    lock_dir: &Path,
    progress: &dyn Progress,
) -> Result<(), AssetError> {
    let file = RepoFile { repo, path: f.path.clone() };
    let meta = match (&f.etag, f.size) {
        (Some(etag), Some(size)) if is_safe_name(etag) => FileMeta { etag: normalize_etag(etag), size },
        _ => client.head(repo, commit, &f.path)?,
    };
    let dest = join_repo_path(base, &f.path);
    let parent = dest.parent().unwrap_or(base).to_path_buf();
    fs::create_dir_all(&parent).map_err(io_err(&parent))?;
    let url = client.resolve_url(repo, commit, &f.path);
    match repo_folder {
        Some(folder) => {
            let blobs = folder.join("blobs");
            fs::create_dir_all(&blobs).map_err(io_err(&blobs))?;
            let blob = blobs.join(&meta.etag);
            // Whoever else fetches the same blob (another download thread: files with identical
            // content share a blob, as many `.zarray` files do; a second `mrt fetch`; a plugin
            // instance; huggingface_hub, which locks the same file) waits here, then finds it
            // complete. The lock is per open file, so threads of one process exclude each other
            // too.
            let _process = process_lock(&blob_lock_path(folder, &meta.etag))?;
            let have_blob = fs::metadata(&blob).map(|m| m.len() == meta.size).unwrap_or(false);
            if !have_blob {
                let partial = blobs.join(format!("{}.incomplete", meta.etag));
                client.download(&file, &url, &partial, meta.size, progress)?;
                verify(&file, &partial, &meta)?;
                fs::rename(&partial, &blob).map_err(io_err(&blob))?;
            } else {
                progress.file(&file, meta.size, meta.size);
                progress.advance(meta.size);
            }
            link(&blob, &dest, f.path.split('/').filter(|s| !s.is_empty()).count())?;
        }
        None => {
            let _process = process_lock(&lock_dir.join(format!("{}.lock", lock_name(&dest))))?;
            if fs::metadata(&dest).map(|m| m.len() == meta.size).unwrap_or(false) {
                // Completed by another process while this one waited.
                progress.file(&file, meta.size, meta.size);
                progress.advance(meta.size);
                progress.file_done(&file);
                return Ok(());
            }
            let mut name = dest.file_name().unwrap_or_default().to_os_string();
            name.push(".incomplete");
            let partial = dest.with_file_name(name);
            client.download(&file, &url, &partial, meta.size, progress)?;
            verify(&file, &partial, &meta)?;
            fs::rename(&partial, &dest).map_err(io_err(&dest))?;
        }
    }
    progress.file_done(&file);
    Ok(())
}

/// Checks the size and, where the etag is a content hash, the hash of a finished download.
/// On a mismatch the partial file (ours) is removed.
fn verify(file: &RepoFile, partial: &Path, meta: &FileMeta) -> Result<(), AssetError> {
    let got = fs::metadata(partial).map_err(io_err(partial))?.len();
    if got != meta.size {
        let _ = fs::remove_file(partial);
        return Err(AssetError::SizeMismatch { file: file.clone(), partial: partial.to_path_buf(), expected: meta.size, got });
    }
    let hash = match HashKind::of(&meta.etag) {
        Some(kind) => kind.file_hash(partial, got)?,
        None => return Ok(()),
    };
    if hash != meta.etag.to_ascii_lowercase() {
        let _ = fs::remove_file(partial);
        return Err(AssetError::HashMismatch {
            file: file.clone(),
            partial: partial.to_path_buf(),
            algorithm: HashKind::of(&meta.etag).map_or("", HashKind::name),
            expected: meta.etag.clone(),
            got: hash,
        });
    }
    Ok(())
}

#[derive(Clone, Copy)]
enum HashKind {
    /// LFS object id.
    Sha256,
    /// git blob id: sha1 of `blob <len>\0<content>`.
    GitSha1,
}

impl HashKind {
    fn of(etag: &str) -> Option<Self> {
        let hex = etag.bytes().all(|b| b.is_ascii_hexdigit());
        match etag.len() {
            64 if hex => Some(Self::Sha256),
            40 if hex => Some(Self::GitSha1),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Sha256 => "sha256",
            Self::GitSha1 => "git blob sha1",
        }
    }

    fn file_hash(self, path: &Path, len: u64) -> Result<String, AssetError> {
        let mut f = File::open(path).map_err(io_err(path))?;
        let mut buf = vec![0u8; 1 << 20];
        let mut sha256 = sha2::Sha256::new();
        let mut sha1 = sha1::Sha1::new();
        if let Self::GitSha1 = self {
            sha1.update(format!("blob {len}\0").as_bytes());
        }
        loop {
            let n = f.read(&mut buf).map_err(io_err(path))?;
            if n == 0 {
                break;
            }
            match self {
                Self::Sha256 => sha256.update(&buf[..n]),
                Self::GitSha1 => sha1.update(&buf[..n]),
            }
        }
        Ok(match self {
            Self::Sha256 => hex(&sha256.finalize()),
            Self::GitSha1 => hex(&sha1.finalize()),
        })
    }
}

/// Lower-case hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The git blob id of some bytes (what the Hub reports as the ETag of a non-LFS file).
pub fn git_blob_sha1(bytes: &[u8]) -> String {
    let mut h = sha1::Sha1::new();
    h.update(format!("blob {}\0", bytes.len()).as_bytes());
    h.update(bytes);
    hex(&h.finalize())
}

/// Points the snapshot entry `dest` (at `depth` path components below `snapshots/<commit>/`)
/// at `blob`, relatively, as `huggingface_hub` does.
fn link(blob: &Path, dest: &Path, depth: usize) -> Result<(), AssetError> {
    if fs::symlink_metadata(dest).is_ok() {
        if dest.exists() {
            return Ok(());
        }
        fs::remove_file(dest).map_err(io_err(dest))?; // a dangling link
    }
    #[cfg(unix)]
    {
        let mut rel = PathBuf::new();
        for _ in 0..depth.saturating_sub(1) + 2 {
            rel.push("..");
        }
        rel.push("blobs");
        rel.push(blob.file_name().unwrap_or_default());
        match std::os::unix::fs::symlink(&rel, dest) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(io_err(dest)(e)),
        }
    }
    #[cfg(not(unix))]
    {
        let _ = depth;
        fs::copy(blob, dest).map(|_| ()).map_err(io_err(dest))
    }
}

/// The lock file of a blob of the Hugging Face cache repo folder `folder`
/// (`models--org--name`): `<cache>/.locks/models--org--name/<etag>.lock`, where
/// huggingface_hub keeps its own, so the two never download the same blob at once.
pub fn blob_lock_path(folder: &Path, etag: &str) -> PathBuf {
    folder.parent().unwrap_or(folder).join(".locks").join(folder.file_name().unwrap_or_default()).join(format!("{etag}.lock"))
}

/// A file name for the lock of `path`: a 64-bit FNV-1a hash of its absolute path (the same in
/// every build) and the file's own name, short enough for any file system.
fn lock_name(path: &Path) -> String {
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let hash = abs.to_string_lossy().bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3));
    let name: String = path.file_name().unwrap_or_default().to_string_lossy().chars().filter(|c| c.is_ascii_alphanumeric() || "._-".contains(*c)).take(64).collect();
    format!("{hash:016x}-{name}")
}

/// An exclusive lock on `path` (created if needed) shared with other processes (`flock` on Unix,
/// `LockFileEx` on Windows), held until the returned file is dropped. Blocks while another
/// holds it.
pub fn process_lock(path: &Path) -> Result<fs::File, AssetError> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
    }
    let file = fs::OpenOptions::new().create(true).truncate(false).write(true).open(path).map_err(io_err(path))?;
    file.lock().map_err(io_err(path))?;
    Ok(file)
}

/// Writes a small file through a temporary name and a rename.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), AssetError> {
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    fs::write(&tmp, bytes).map_err(io_err(&tmp))?;
    fs::rename(&tmp, path).map_err(io_err(path))
}

fn normalize_etag(e: &str) -> String {
    e.trim().trim_start_matches("W/").trim_matches('"').to_string()
}

fn is_safe_name(s: &str) -> bool {
    let s = normalize_etag(s);
    !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A relative `/`-separated path without `.`/`..`/empty parts, backslashes or drive colons.
fn is_safe_repo_path(p: &str) -> bool {
    !p.is_empty() && !p.contains(['\\', ':', '\0']) && p.split('/').all(|c| !c.is_empty() && c != "." && c != "..")
}

/// `scheme://host[:port]` of a URL.
fn origin(url: &str) -> &str {
    let after = url.find("://").map_or(0, |i| i + 3);
    match url[after..].find('/') {
        Some(i) => &url[..after + i],
        None => url,
    }
}

/// Percent-encodes each segment of a repo path (keeps `/`).
fn encode_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn snippet(body: &str) -> String {
    let s: String = body.chars().take(300).collect();
    s.trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn git_blob_id_matches_git() {
        // `printf 'hello\n' | git hash-object --stdin`
        assert_eq!(git_blob_sha1(b"hello\n"), "ce013625030ba8dba906f756967f9e9ca394464a");
        assert_eq!(git_blob_sha1(b""), "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391");
    }

    #[test]
    fn urls_and_etags() {
        assert_eq!(origin("https://huggingface.co"), "https://huggingface.co");
        assert_eq!(origin("http://127.0.0.1:9/mirror"), "http://127.0.0.1:9");
        assert_eq!(encode_path("a b/c+d.zarray"), "a%20b/c%2Bd.zarray");
        assert_eq!(normalize_etag("W/\"abc\""), "abc");
        assert!(is_safe_name("\"0123abcdef\""));
        assert!(!is_safe_name("../x"));
        assert!(matches!(HashKind::of(&"a".repeat(64)), Some(HashKind::Sha256)));
        assert!(matches!(HashKind::of(&"a".repeat(40)), Some(HashKind::GitSha1)));
        assert!(HashKind::of("xyz").is_none());
        assert!(is_safe_repo_path("checkpoints/llm/target.a/0.0"));
        for bad in ["", "/etc/passwd", "a/../../x", "a//b", "./a", "a\\b", "c:x"] {
            assert!(!is_safe_repo_path(bad), "{bad}");
        }
    }
}
