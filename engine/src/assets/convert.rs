//! One-time conversion of the t5x LM checkpoint into a memory-mappable safetensors file.
//!
//! The published checkpoint is ~1.3 GB (base) of gzip-compressed zarr chunks: reading it costs
//! seconds of decompression at every start. [`convert`] writes it once as plain little-endian f32
//! (names = the t5x names without `target.`) under
//!
//! ```text
//! <cache>/converted/<key>/<checkpoint dir name>.v1.safetensors
//!   key = google--magenta-realtime@<commit>   (from the Hugging Face cache: snapshots never change)
//!       = local@<fingerprint>                 (elsewhere: sha256 of every file's relative path,
//!                                              size and modification time, 16 hex digits)
//! ```
//!
//! `<cache>` is `$MRT_CACHE_DIR`, else the platform cache directory + `mrt-live`. The file is
//! written under a temporary name, synced and renamed, so a crash never leaves a half file under
//! the final name. Its header metadata records the format and key; a file whose header does not
//! parse or does not match is converted again. The tensors are checked against the config (names,
//! shapes) before anything is written, and again (plus finiteness) by
//! [`HostWeights::from_safetensors`](crate::v1::lm::weights::HostWeights::from_safetensors).

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use sha2::Digest as _;

use super::locate::{LmFormat, Source};
use super::{io_err, AssetError, ModelPaths, Progress};
use crate::formats::zarr::T5xCheckpoint;
use crate::v1::lm::weights::{check_names_and_shapes, manifest};
use crate::v1::lm::{LmConfig, LmError};

/// Version of our converted layout; part of the file name, bumped when the layout changes.
pub const CONVERTED_VERSION: u32 = 1;
/// `__metadata__.format` of a converted file.
pub const CONVERTED_FORMAT: &str = "mrt-live/lm-f32";

/// The converted files of a model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConvertedPaths {
    /// The LM as one safetensors file (load with `HostWeights::from_safetensors`).
    pub lm_weights: PathBuf,
    /// True when an existing file was reused (or the checkpoint already was safetensors).
    pub reused: bool,
}


/// `paths` with the LM pointed at its converted file (converting once if needed), for loading.
pub fn with_converted_lm(mut paths: ModelPaths, cache_dir: &Path, progress: &dyn Progress) -> Result<ModelPaths, AssetError> {
    let converted = convert_with(&paths, cache_dir, progress)?;
    paths.lm_checkpoint.path = converted.lm_weights;
    paths.lm_format = LmFormat::Safetensors;
    Ok(paths)
}

/// Converts `paths`' LM checkpoint into `<cache_dir>/converted/…`, or reuses a valid earlier
/// conversion. A checkpoint that already is safetensors is returned as it is.
pub fn convert_with(paths: &ModelPaths, cache_dir: &Path, progress: &dyn Progress) -> Result<ConvertedPaths, AssetError> {
    if paths.lm_format == LmFormat::Safetensors {
        return Ok(ConvertedPaths { lm_weights: paths.lm_checkpoint.path.clone(), reused: true });
    }
    let src = &paths.lm_checkpoint.path;
    let key = match &paths.lm_checkpoint.source {
        Source::HfCache { repo, commit } => format!("{}@{commit}", repo.id().replace('/', "--")),
        Source::ModelDir { .. } => format!("local@{}", fingerprint(src)?),
    };
    let name = src.file_name().map_or_else(|| "checkpoint".into(), |n| n.to_string_lossy().into_owned());
    let dst = cache_dir.join("converted").join(&key).join(format!("{name}.v{CONVERTED_VERSION}.safetensors"));
    if check_converted(&dst, &key).is_ok() {
        progress.note(&format!("using converted LM {}", dst.display()));
        return Ok(ConvertedPaths { lm_weights: dst, reused: true });
    }
    t5x_to_safetensors(src, &dst, &paths.lm_config, &key, progress)?;
    Ok(ConvertedPaths { lm_weights: dst, reused: false })
}

/// Whether `path` is a converted file of ours for `key`: its header parses, covers the file, and
/// its metadata names our format, version and key.
pub fn check_converted(path: &Path, key: &str) -> Result<(), AssetError> {
    let bad = |reason: String| AssetError::BadConverted { path: path.to_path_buf(), reason };
    let file = File::open(path).map_err(io_err(path))?;
    // SAFETY: read-only map, used only within this function; the file is ours and only ever
    // replaced by rename, never rewritten in place.
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io_err(path))?;
    let (_, meta) = safetensors::SafeTensors::read_metadata(&map).map_err(|e| bad(e.to_string()))?;
    // `deserialize` also checks that the data offsets cover the file exactly.
    safetensors::SafeTensors::deserialize(&map).map_err(|e| bad(e.to_string()))?;
    let m = meta.metadata().clone().unwrap_or_default();
    let want = [
        ("format", CONVERTED_FORMAT.to_string()),
        ("version", CONVERTED_VERSION.to_string()),
        ("key", key.to_string()),
    ];
    for (k, v) in want {
        match m.get(k) {
            Some(got) if *got == v => {}
            got => return Err(bad(format!("metadata {k} is {got:?}, expected {v:?}"))),
        }
    }
    Ok(())
}

/// Writes every tensor of the t5x checkpoint `src` as f32 into the safetensors file `dst`
/// (through a temporary file and a rename), after checking names and shapes against `config`.
pub fn t5x_to_safetensors(src: &Path, dst: &Path, config: &LmConfig, key: &str, progress: &dyn Progress) -> Result<(), AssetError> {
    let ckpt = T5xCheckpoint::open(src).map_err(LmError::from)?;
    check_names_and_shapes(&manifest(config), ckpt.names(), |n| ckpt.meta(n).map(|m| m.shape.clone()), src, |name| {
        src.join(format!("target.{name}"))
    })
    .map_err(LmError::from)?;

    // Header: every tensor f32, laid out in name order.
    let names: Vec<&str> = ckpt.names().collect();
    let mut header = serde_json::Map::new();
    let mut metadata = BTreeMap::new();
    metadata.insert("format", CONVERTED_FORMAT.to_string());
    metadata.insert("version", CONVERTED_VERSION.to_string());
    metadata.insert("key", key.to_string());
    metadata.insert("source", src.display().to_string());
    header.insert("__metadata__".into(), serde_json::to_value(&metadata).expect("string map"));
    let mut offset = 0usize;
    for name in &names {
        let shape = &ckpt.meta(name).expect("listed").shape;
        let bytes = shape.iter().product::<usize>() * 4;
        header.insert(
            (*name).to_string(),
            serde_json::json!({"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + bytes]}),
        );
        offset += bytes;
    }
    let mut header = serde_json::to_string(&header).expect("JSON of plain values").into_bytes();
    // Pad so the data (and every f32) starts 8-byte aligned in a mapped file.
    while !(8 + header.len()).is_multiple_of(8) {
        header.push(b' ');
    }

    let parent = dst.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(parent).map_err(io_err(parent))?;
    let tmp = dst.with_extension(format!("tmp-{}", std::process::id()));
    let result = (|| -> Result<(), AssetError> {
        let file = File::create(&tmp).map_err(io_err(&tmp))?;
        let mut w = BufWriter::with_capacity(8 << 20, file);
        w.write_all(&(header.len() as u64).to_le_bytes()).map_err(io_err(&tmp))?;
        w.write_all(&header).map_err(io_err(&tmp))?;
        progress.begin(&format!("converting {} to {}", src.display(), dst.display()), offset as u64);
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        // A few tensors at a time: bounded memory, all cores decompressing.
        for batch in names.chunks(threads.max(1) * 2) {
            for t in ckpt.read_many(batch, threads).map_err(LmError::from)? {
                let mut bytes = Vec::with_capacity(t.data.len() * 4);
                for v in &t.data {
                    bytes.extend_from_slice(&v.to_le_bytes());
                }
                w.write_all(&bytes).map_err(io_err(&tmp))?;
                progress.advance(bytes.len() as u64);
            }
        }
        let file = w.into_inner().map_err(|e| io_err(&tmp)(e.into_error()))?;
        file.sync_all().map_err(io_err(&tmp))?;
        progress.finish();
        fs::rename(&tmp, dst).map_err(io_err(dst))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// sha256 over the relative path, size and modification time of every file under `dir`
/// (sorted), as 16 hex digits: changes whenever a file of the checkpoint is replaced.
pub fn fingerprint(dir: &Path) -> Result<String, AssetError> {
    let mut entries = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).map_err(io_err(&d))? {
            let e = e.map_err(io_err(&d))?;
            let path = e.path();
            let md = fs::metadata(&path).map_err(io_err(&path))?;
            if md.is_dir() {
                stack.push(path);
            } else {
                let rel = path.strip_prefix(dir).unwrap_or(&path).to_string_lossy().replace('\\', "/");
                let mtime = md
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_nanos());
                entries.push((rel, md.len(), mtime));
            }
        }
    }
    entries.sort();
    let mut h = sha2::Sha256::new();
    for (rel, len, mtime) in entries {
        h.update(format!("{rel}\0{len}\0{mtime}\n").as_bytes());
    }
    Ok(super::hub::hex(&h.finalize())[..16].to_string())
}
