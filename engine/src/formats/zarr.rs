//! Reader for t5x checkpoints written by tensorstore as zarr v2 arrays.
//!
//! A t5x checkpoint directory (e.g. the official Magenta RealTime
//! `checkpoints/llm_base_x4286_c1860k/`) holds an optional msgpack file
//! `checkpoint` (ignored here) and one directory per parameter named
//! `target.<dotted flax path>/`. Each such directory is a zarr v2 array: a
//! `.zarray` JSON metadata file plus one file per chunk, named by the chunk's
//! grid index joined with the `dimension_separator` (`"."` -> `i.j`, `"/"` ->
//! nested directories `i/j`; 1-D arrays `i`; scalars `0`).
//!
//! Every chunk file holds the (optionally gzip/zlib compressed) C-order
//! little-endian bytes of a *full* chunk: edge chunks are stored full-size and
//! only their in-bounds part is used. A missing chunk file means the whole chunk
//! equals `fill_value`.
//!
//! Supported: dtypes `<f4`, `<f8` (converted to f32) and `bfloat16` (converted
//! to f32); compressors `gzip`, `zlib` and `null` (raw); `order` `"C"`; no
//! filters. Everything else is rejected with a [`CheckpointError`] naming the
//! offending file and value.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use flate2::read::{MultiGzDecoder, ZlibDecoder};

/// Prefix of the parameter directories of a t5x train/inference state.
const TARGET_PREFIX: &str = "target.";

/// One fully assembled parameter, C-order, converted to f32.
#[derive(Debug, Clone, PartialEq)]
pub struct RawTensor {
    /// Dotted flax path without the `target.` prefix.
    pub name: String,
    /// Array shape (empty for a scalar).
    pub shape: Vec<usize>,
    /// C-order values; `data.len()` is the product of `shape` (1 for a scalar).
    pub data: Vec<f32>,
}

impl RawTensor {
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// True when the tensor has no elements.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}

/// Element type stored in a zarr array.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZarrDtype {
    /// `<f4`: little-endian IEEE float32.
    F32,
    /// `<f8`: little-endian IEEE float64 (converted to f32 on read).
    F64,
    /// `bfloat16`: little-endian bfloat16 (converted to f32 on read).
    Bf16,
}

impl ZarrDtype {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            ZarrDtype::F32 => 4,
            ZarrDtype::F64 => 8,
            ZarrDtype::Bf16 => 2,
        }
    }

    /// The zarr `dtype` string.
    pub fn as_str(self) -> &'static str {
        match self {
            ZarrDtype::F32 => "<f4",
            ZarrDtype::F64 => "<f8",
            ZarrDtype::Bf16 => "bfloat16",
        }
    }
}

/// Chunk compression codec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZarrCompressor {
    /// `"compressor": null`: chunks are stored uncompressed.
    Raw,
    /// `{"id": "gzip"}`: RFC 1952 gzip container.
    Gzip,
    /// `{"id": "zlib"}`: RFC 1950 zlib container.
    Zlib,
}

/// Parsed and validated `.zarray` metadata of one array.
#[derive(Debug, Clone, PartialEq)]
pub struct ZarrMeta {
    /// Array shape (empty for a scalar).
    pub shape: Vec<usize>,
    /// Chunk shape (same rank as `shape`).
    pub chunks: Vec<usize>,
    dtype: ZarrDtype,
    compressor: ZarrCompressor,
    fill_value: f32,
    nested: bool,
    numel: usize,
    chunk_numel: usize,
}

impl ZarrMeta {
    /// Element type.
    pub fn dtype(&self) -> ZarrDtype {
        self.dtype
    }

    /// Chunk compressor.
    pub fn compressor(&self) -> ZarrCompressor {
        self.compressor
    }

    /// Value of elements whose chunk file is absent.
    pub fn fill_value(&self) -> f32 {
        self.fill_value
    }

    /// `'.'` (flat chunk keys `i.j`) or `'/'` (nested directories `i/j`).
    pub fn dimension_separator(&self) -> char {
        if self.nested {
            '/'
        } else {
            '.'
        }
    }

    /// Number of array elements (1 for a scalar).
    pub fn numel(&self) -> usize {
        self.numel
    }

    /// Number of elements of one full chunk.
    pub fn chunk_numel(&self) -> usize {
        self.chunk_numel
    }

    /// Parses the text of a `.zarray` file; `path` is only used in errors.
    pub fn from_json(path: &Path, text: &str) -> Result<Self, CheckpointError> {
        let bad = |reason: String| CheckpointError::BadMetadata {
            path: path.to_path_buf(),
            reason,
        };
        let unsupported = |reason: String| CheckpointError::Unsupported {
            path: path.to_path_buf(),
            reason,
        };

        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| bad(format!("invalid JSON: {e}")))?;
        let obj = value
            .as_object()
            .ok_or_else(|| bad("top-level value is not a JSON object".to_string()))?;

        match obj.get("zarr_format") {
            None => return Err(bad("missing \"zarr_format\"".to_string())),
            Some(v) if v.as_u64() == Some(2) => {}
            Some(v) => {
                return Err(unsupported(format!(
                    "zarr_format {v} (only zarr v2 is supported)"
                )))
            }
        }

        let dims = |key: &str| -> Result<Vec<usize>, CheckpointError> {
            let arr = obj
                .get(key)
                .ok_or_else(|| bad(format!("missing \"{key}\"")))?
                .as_array()
                .ok_or_else(|| bad(format!("\"{key}\" is not an array")))?;
            arr.iter()
                .map(|d| {
                    d.as_u64()
                        .and_then(|d| usize::try_from(d).ok())
                        .ok_or_else(|| {
                            bad(format!("\"{key}\" entry {d} is not a non-negative integer"))
                        })
                })
                .collect()
        };
        let shape = dims("shape")?;
        let chunks = dims("chunks")?;
        if shape.len() != chunks.len() {
            return Err(bad(format!(
                "shape {shape:?} and chunks {chunks:?} have different ranks"
            )));
        }
        if chunks.contains(&0) {
            return Err(bad(format!("chunks {chunks:?} contain a zero extent")));
        }

        let dtype = match obj.get("dtype") {
            None => return Err(bad("missing \"dtype\"".to_string())),
            Some(serde_json::Value::String(s)) => match s.as_str() {
                "<f4" => ZarrDtype::F32,
                "<f8" => ZarrDtype::F64,
                "bfloat16" => ZarrDtype::Bf16,
                other => {
                    return Err(CheckpointError::UnsupportedDtype {
                        path: path.to_path_buf(),
                        dtype: other.to_string(),
                    })
                }
            },
            Some(other) => {
                return Err(CheckpointError::UnsupportedDtype {
                    path: path.to_path_buf(),
                    dtype: other.to_string(),
                })
            }
        };

        let compressor = match obj.get("compressor") {
            None | Some(serde_json::Value::Null) => ZarrCompressor::Raw,
            Some(serde_json::Value::Object(c)) => match c.get("id").and_then(|id| id.as_str()) {
                Some("gzip") => ZarrCompressor::Gzip,
                Some("zlib") => ZarrCompressor::Zlib,
                Some(id) => {
                    return Err(CheckpointError::UnsupportedCompressor {
                        path: path.to_path_buf(),
                        compressor: id.to_string(),
                    })
                }
                None => return Err(bad("\"compressor\" has no string \"id\"".to_string())),
            },
            Some(other) => {
                return Err(bad(format!(
                    "\"compressor\" is {other}, expected an object or null"
                )))
            }
        };

        let fill_value = match obj.get("fill_value") {
            None | Some(serde_json::Value::Null) => 0.0,
            Some(serde_json::Value::Number(n)) => match n.as_f64() {
                Some(x) => x as f32,
                None => return Err(bad(format!("\"fill_value\" {n} is not representable"))),
            },
            Some(serde_json::Value::String(s)) => match s.as_str() {
                "NaN" => f32::NAN,
                "Infinity" => f32::INFINITY,
                "-Infinity" => f32::NEG_INFINITY,
                other => return Err(bad(format!("unsupported \"fill_value\" string {other:?}"))),
            },
            Some(other) => return Err(bad(format!("unsupported \"fill_value\" {other}"))),
        };

        match obj.get("order") {
            None => {}
            Some(serde_json::Value::String(s)) if s == "C" => {}
            Some(serde_json::Value::String(s)) if s == "F" => {
                return Err(unsupported(
                    "order \"F\" (Fortran order); only \"C\" is supported".to_string(),
                ))
            }
            Some(other) => return Err(bad(format!("invalid \"order\" {other}"))),
        }

        match obj.get("filters") {
            None | Some(serde_json::Value::Null) => {}
            Some(serde_json::Value::Array(a)) if a.is_empty() => {}
            Some(other) => {
                return Err(unsupported(format!(
                    "filters {other} (only null filters are supported)"
                )))
            }
        }

        let nested = match obj.get("dimension_separator") {
            None | Some(serde_json::Value::Null) => false,
            Some(serde_json::Value::String(s)) if s == "." => false,
            Some(serde_json::Value::String(s)) if s == "/" => true,
            Some(other) => return Err(bad(format!("invalid \"dimension_separator\" {other}"))),
        };

        // Element counts, checked so that every later offset computation fits.
        let too_large =
            |what: &str, dims: &[usize]| bad(format!("{what} {dims:?} is too large to address"));
        let numel = checked_product(&shape).ok_or_else(|| too_large("shape", &shape))?;
        let chunk_numel = checked_product(&chunks).ok_or_else(|| too_large("chunks", &chunks))?;
        let max_bytes = isize::MAX as usize;
        if numel.checked_mul(4).is_none_or(|b| b > max_bytes) {
            return Err(too_large("shape", &shape));
        }
        if chunk_numel
            .checked_mul(dtype.size())
            .is_none_or(|b| b > max_bytes)
        {
            return Err(too_large("chunks", &chunks));
        }

        Ok(ZarrMeta {
            shape,
            chunks,
            dtype,
            compressor,
            fill_value,
            nested,
            numel,
            chunk_numel,
        })
    }

    /// Reads and parses `<array_dir>/.zarray`.
    pub fn load(array_dir: &Path) -> Result<Self, CheckpointError> {
        let path = array_dir.join(".zarray");
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(CheckpointError::BadMetadata {
                    path,
                    reason: "file is missing (not a zarr v2 array)".to_string(),
                })
            }
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                return Err(CheckpointError::BadMetadata {
                    path,
                    reason: "file is not valid UTF-8".to_string(),
                })
            }
            Err(source) => return Err(CheckpointError::Io { path, source }),
        };
        Self::from_json(&path, &text)
    }
}

fn checked_product(dims: &[usize]) -> Option<usize> {
    dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}

/// Errors of the checkpoint reader. Every message names the file, tensor or
/// value involved.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("t5x checkpoint path {path} is not a directory")]
    NotADirectory { path: PathBuf },
    #[error("{dir} is not a t5x checkpoint: it contains no `target.*` parameter directories")]
    NoTensors { dir: PathBuf },
    #[error("I/O error on {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("checkpoint entry {path} has a name that is not valid UTF-8")]
    NonUtf8Name { path: PathBuf },
    #[error("invalid zarr metadata {path}: {reason}")]
    BadMetadata { path: PathBuf, reason: String },
    #[error("unsupported zarr array {path}: {reason}")]
    Unsupported { path: PathBuf, reason: String },
    #[error("unsupported zarr dtype {dtype} in {path} (supported: <f4, <f8, bfloat16)")]
    UnsupportedDtype { path: PathBuf, dtype: String },
    #[error("unsupported zarr compressor {compressor:?} in {path} (supported: gzip, zlib, null)")]
    UnsupportedCompressor { path: PathBuf, compressor: String },
    #[error("failed to decompress chunk file {path} of tensor `{tensor}`")]
    Decompress {
        tensor: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "chunk file {path} of tensor `{tensor}` holds {got} bytes after decompression, \
         expected {expected} bytes (one full chunk)"
    )]
    ChunkSize {
        tensor: String,
        path: PathBuf,
        expected: usize,
        got: u64,
    },
    #[error("cannot allocate {bytes} bytes for tensor `{tensor}` with shape {shape:?}")]
    TooLarge {
        tensor: String,
        shape: Vec<usize>,
        bytes: usize,
    },
    #[error("no tensor named `{name}` in the checkpoint")]
    UnknownTensor { name: String },
}

/// A t5x checkpoint directory: the zarr metadata of every `target.*` parameter.
///
/// Opening only parses metadata; [`T5xCheckpoint::read`] loads one tensor.
/// The type is `Send + Sync`, so tensors can be read from several threads
/// (see [`T5xCheckpoint::read_many`]).
#[derive(Debug, Clone)]
pub struct T5xCheckpoint {
    dir: PathBuf,
    tensors: BTreeMap<String, (PathBuf, ZarrMeta)>,
}

impl T5xCheckpoint {
    /// Opens a checkpoint directory: lists every `target.*` sub-directory and parses its `.zarray`.
    /// Names are stored WITHOUT the `target.` prefix (e.g. "encoder.layers_0.attention.key.kernel").
    pub fn open(dir: &Path) -> Result<Self, CheckpointError> {
        let md = fs::metadata(dir).map_err(|source| CheckpointError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        if !md.is_dir() {
            return Err(CheckpointError::NotADirectory {
                path: dir.to_path_buf(),
            });
        }
        let io_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| CheckpointError::Io { path, source }
        };
        let mut tensors = BTreeMap::new();
        for entry in fs::read_dir(dir).map_err(io_err(dir))? {
            let entry = entry.map_err(io_err(dir))?;
            let path = entry.path();
            let file_name = entry.file_name();
            let Some(file_name) = file_name.to_str() else {
                if file_name.to_string_lossy().starts_with(TARGET_PREFIX) {
                    return Err(CheckpointError::NonUtf8Name { path });
                }
                continue;
            };
            let Some(name) = file_name.strip_prefix(TARGET_PREFIX) else {
                continue;
            };
            // Follow symlinks; skip plain files that happen to share the prefix.
            let is_dir = fs::metadata(&path).map_err(io_err(&path))?.is_dir();
            if !is_dir {
                continue;
            }
            if name.is_empty() {
                return Err(CheckpointError::BadMetadata {
                    path,
                    reason: "empty parameter name after `target.`".to_string(),
                });
            }
            let meta = ZarrMeta::load(&path)?;
            tensors.insert(name.to_string(), (path, meta));
        }
        if tensors.is_empty() {
            return Err(CheckpointError::NoTensors {
                dir: dir.to_path_buf(),
            });
        }
        Ok(T5xCheckpoint {
            dir: dir.to_path_buf(),
            tensors,
        })
    }

    /// The checkpoint directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Parameter names (without `target.`), sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }

    /// Metadata of one parameter.
    pub fn meta(&self, name: &str) -> Option<&ZarrMeta> {
        self.tensors.get(name).map(|(_, m)| m)
    }

    /// True when the checkpoint has a parameter called `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    /// Directory of the zarr array of one parameter.
    pub fn array_dir(&self, name: &str) -> Option<&Path> {
        self.tensors.get(name).map(|(p, _)| p.as_path())
    }

    /// Number of parameters.
    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    /// Always false for an opened checkpoint (opening fails without tensors).
    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }

    /// Reads and assembles one whole array (all chunks) into C-order f32.
    pub fn read(&self, name: &str) -> Result<RawTensor, CheckpointError> {
        let (path, meta) =
            self.tensors
                .get(name)
                .ok_or_else(|| CheckpointError::UnknownTensor {
                    name: name.to_string(),
                })?;
        read_array(name, path, meta)
    }

    /// Reads several tensors using up to `threads` worker threads (0 or 1 =
    /// sequential). Results are in the order of `names`; the first error stops
    /// the remaining work and is returned.
    pub fn read_many(
        &self,
        names: &[&str],
        threads: usize,
    ) -> Result<Vec<RawTensor>, CheckpointError> {
        let threads = threads.min(names.len());
        if threads <= 1 {
            return names.iter().map(|n| self.read(n)).collect();
        }
        let next = AtomicUsize::new(0);
        let failed = AtomicBool::new(false);
        let mut parts: Vec<Vec<(usize, Result<RawTensor, CheckpointError>)>> = Vec::new();
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|_| {
                    s.spawn(|| {
                        let mut out = Vec::new();
                        while !failed.load(Ordering::Relaxed) {
                            let i = next.fetch_add(1, Ordering::Relaxed);
                            let Some(name) = names.get(i) else { break };
                            let r = self.read(name);
                            if r.is_err() {
                                failed.store(true, Ordering::Relaxed);
                            }
                            out.push((i, r));
                        }
                        out
                    })
                })
                .collect();
            for h in handles {
                match h.join() {
                    Ok(p) => parts.push(p),
                    Err(panic) => std::panic::resume_unwind(panic),
                }
            }
        });
        let mut all: Vec<(usize, Result<RawTensor, CheckpointError>)> =
            parts.into_iter().flatten().collect();
        all.sort_by_key(|(i, _)| *i);
        let mut out = Vec::with_capacity(names.len());
        for (_, r) in all {
            out.push(r?);
        }
        Ok(out)
    }
}

/// Opens a single zarr v2 array directory (with its `.zarray`) and reads it.
/// The tensor name is the directory name with any `target.` prefix removed.
pub fn read_zarr_array(array_dir: &Path) -> Result<RawTensor, CheckpointError> {
    let meta = ZarrMeta::load(array_dir)?;
    let dir_name = array_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = dir_name
        .strip_prefix(TARGET_PREFIX)
        .unwrap_or(&dir_name)
        .to_string();
    read_array(&name, array_dir, &meta)
}

/// Path of the chunk file with grid index `idx`.
fn chunk_path(dir: &Path, idx: &[usize], nested: bool) -> PathBuf {
    if nested {
        let mut p = dir.to_path_buf();
        for i in idx {
            p.push(i.to_string());
        }
        p
    } else {
        let key: Vec<String> = idx.iter().map(|i| i.to_string()).collect();
        dir.join(key.join("."))
    }
}

/// Decompresses `reader` into `out` (cleared first), reading at most
/// `expected + 1` bytes into memory. Returns the total decompressed size
/// (counting, without storing, anything beyond `expected`).
fn inflate<R: Read>(mut reader: R, expected: usize, out: &mut Vec<u8>) -> io::Result<u64> {
    out.clear();
    let limit = expected as u64 + 1;
    (&mut reader).take(limit).read_to_end(out)?;
    let mut total = out.len() as u64;
    if total > expected as u64 {
        total += io::copy(&mut reader, &mut io::sink())?;
    }
    Ok(total)
}

/// Loads one chunk file into `out` as exactly `expected` raw bytes.
/// Returns `Ok(false)` when the chunk file does not exist (chunk = fill value).
fn load_chunk(
    tensor: &str,
    path: &Path,
    compressor: ZarrCompressor,
    expected: usize,
    file_buf: &mut Vec<u8>,
    out: &mut Vec<u8>,
) -> Result<bool, CheckpointError> {
    let io_err = |source| CheckpointError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(io_err(e)),
    };
    let size_err = |got: u64| CheckpointError::ChunkSize {
        tensor: tensor.to_string(),
        path: path.to_path_buf(),
        expected,
        got,
    };
    match compressor {
        ZarrCompressor::Raw => {
            let len = file.metadata().map_err(io_err)?.len();
            if len != expected as u64 {
                return Err(size_err(len));
            }
            let got = inflate(&mut file, expected, out).map_err(io_err)?;
            if got != expected as u64 {
                return Err(size_err(got));
            }
        }
        ZarrCompressor::Gzip | ZarrCompressor::Zlib => {
            file_buf.clear();
            file.read_to_end(file_buf).map_err(io_err)?;
            let result = if compressor == ZarrCompressor::Gzip {
                inflate(MultiGzDecoder::new(file_buf.as_slice()), expected, out)
            } else {
                inflate(ZlibDecoder::new(file_buf.as_slice()), expected, out)
            };
            let got = result.map_err(|source| CheckpointError::Decompress {
                tensor: tensor.to_string(),
                path: path.to_path_buf(),
                source,
            })?;
            if got != expected as u64 {
                return Err(size_err(got));
            }
        }
    }
    Ok(true)
}

/// Converts little-endian `src` bytes of `dtype` into `dst` (same element count).
fn decode_into(dst: &mut [f32], src: &[u8], dtype: ZarrDtype) {
    match dtype {
        ZarrDtype::F32 => {
            for (o, b) in dst.iter_mut().zip(src.chunks_exact(4)) {
                *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
        }
        ZarrDtype::F64 => {
            for (o, b) in dst.iter_mut().zip(src.chunks_exact(8)) {
                *o = f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32;
            }
        }
        ZarrDtype::Bf16 => {
            for (o, b) in dst.iter_mut().zip(src.chunks_exact(2)) {
                *o = f32::from_bits(u32::from(u16::from_le_bytes([b[0], b[1]])) << 16);
            }
        }
    }
}

/// C-order strides (in elements) of `dims`.
fn strides(dims: &[usize]) -> Vec<usize> {
    let mut s = vec![1usize; dims.len()];
    for d in (0..dims.len().saturating_sub(1)).rev() {
        s[d] = s[d + 1] * dims[d + 1];
    }
    s
}

/// Advances the multi-index `idx` within `limits` (C order); false when done.
fn advance(idx: &mut [usize], limits: &[usize]) -> bool {
    for d in (0..idx.len()).rev() {
        idx[d] += 1;
        if idx[d] < limits[d] {
            return true;
        }
        idx[d] = 0;
    }
    false
}

/// Called when no chunk file of an array was found (all fill value): refuses
/// the read if the directory nevertheless holds chunk-like entries, which means
/// the declared `dimension_separator` does not match the files on disk (and the
/// array would silently read as all `fill_value`).
fn check_no_stray_chunks(dir: &Path, meta: &ZarrMeta) -> Result<(), CheckpointError> {
    let entries = fs::read_dir(dir).map_err(|source| CheckpointError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let file_name = file_name.to_string_lossy();
        if file_name.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(CheckpointError::BadMetadata {
                path: dir.join(".zarray"),
                reason: format!(
                    "no chunk file matches dimension_separator {:?}, but the array directory \
                     holds {:?}; refusing to return an all-fill-value array",
                    meta.dimension_separator(),
                    file_name
                ),
            });
        }
    }
    Ok(())
}

fn read_array(name: &str, dir: &Path, meta: &ZarrMeta) -> Result<RawTensor, CheckpointError> {
    // A scalar is handled as a 1-element 1-D array with chunk key "0".
    let (shape, chunks): (Vec<usize>, Vec<usize>) = if meta.shape.is_empty() {
        (vec![1], vec![1])
    } else {
        (meta.shape.clone(), meta.chunks.clone())
    };
    let total = meta.numel;
    let mut data: Vec<f32> = Vec::new();
    data.try_reserve_exact(total)
        .map_err(|_| CheckpointError::TooLarge {
            tensor: name.to_string(),
            shape: meta.shape.clone(),
            bytes: total.saturating_mul(4),
        })?;
    data.resize(total, 0.0);
    if total == 0 {
        return Ok(RawTensor {
            name: name.to_string(),
            shape: meta.shape.clone(),
            data,
        });
    }

    let nd = shape.len();
    let last = nd - 1;
    let elem = meta.dtype.size();
    let chunk_bytes = meta.chunk_numel * elem;
    let grid: Vec<usize> = shape
        .iter()
        .zip(&chunks)
        .map(|(&s, &c)| s.div_ceil(c))
        .collect();
    let out_strides = strides(&shape);
    let chunk_strides = strides(&chunks);

    let mut file_buf: Vec<u8> = Vec::new();
    let mut chunk_buf: Vec<u8> = Vec::new();
    chunk_buf
        .try_reserve_exact(chunk_bytes.saturating_add(1))
        .map_err(|_| CheckpointError::TooLarge {
            tensor: name.to_string(),
            shape: meta.shape.clone(),
            bytes: chunk_bytes,
        })?;

    let mut cidx = vec![0usize; nd];
    let mut origin = vec![0usize; nd];
    let mut extent = vec![0usize; nd];
    let mut row = vec![0usize; nd];
    let mut any_present = false;
    loop {
        for d in 0..nd {
            origin[d] = cidx[d] * chunks[d];
            extent[d] = chunks[d].min(shape[d] - origin[d]);
        }
        let path = chunk_path(dir, &cidx, meta.nested);
        let present = load_chunk(
            name,
            &path,
            meta.compressor,
            chunk_bytes,
            &mut file_buf,
            &mut chunk_buf,
        )?;

        // Copy the in-bounds part row by row along the last dimension.
        let row_len = extent[last];
        row.iter_mut().for_each(|r| *r = 0);
        loop {
            let mut src = 0usize;
            let mut dst = origin[last];
            for d in 0..last {
                src += row[d] * chunk_strides[d];
                dst += (origin[d] + row[d]) * out_strides[d];
            }
            let out = &mut data[dst..dst + row_len];
            if present {
                decode_into(
                    out,
                    &chunk_buf[src * elem..(src + row_len) * elem],
                    meta.dtype,
                );
            } else {
                out.fill(meta.fill_value);
            }
            if !advance(&mut row[..last], &extent[..last]) {
                break;
            }
        }

        any_present |= present;
        if !advance(&mut cidx, &grid) {
            break;
        }
    }

    if !any_present {
        check_no_stray_chunks(dir, meta)?;
    }

    Ok(RawTensor {
        name: name.to_string(),
        shape: meta.shape.clone(),
        data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::write::{GzEncoder, ZlibEncoder};
    use flate2::Compression;
    use std::io::Write;
    use std::sync::atomic::AtomicU64;

    const FIXTURE: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/fixtures/lm/L1/checkpoint"
    );

    /// A fresh, empty, uniquely named directory under the system temp dir,
    /// removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> Self {
            static COUNTER: AtomicU64 = AtomicU64::new(0);
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            let p = std::env::temp_dir().join(format!(
                "mrt_ckpt_{tag}_{}_{}_{nanos}",
                std::process::id(),
                COUNTER.fetch_add(1, Ordering::Relaxed)
            ));
            fs::create_dir_all(&p).unwrap();
            TempDir(p)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), Compression::new(1));
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    fn zlib(bytes: &[u8]) -> Vec<u8> {
        let mut e = ZlibEncoder::new(Vec::new(), Compression::default());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    fn f32_bytes(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    fn zarray(
        shape: &[usize],
        chunks: &[usize],
        dtype: &str,
        compressor: &str,
        fill: &str,
        sep: &str,
    ) -> String {
        format!(
            "{{\"chunks\":{chunks:?},\"compressor\":{compressor},\"dimension_separator\":\"{sep}\",\
             \"dtype\":\"{dtype}\",\"fill_value\":{fill},\"filters\":null,\"order\":\"C\",\
             \"shape\":{shape:?},\"zarr_format\":2}}"
        )
    }

    const GZIP: &str = "{\"id\":\"gzip\",\"level\":1}";

    /// Writes `<ckpt>/target.<name>/` with the given `.zarray` text and chunk files.
    fn write_array(
        ckpt: &Path,
        name: &str,
        zarray_text: &str,
        chunk_files: &[(String, Vec<u8>)],
    ) -> PathBuf {
        let dir = ckpt.join(format!("target.{name}"));
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(".zarray"), zarray_text).unwrap();
        for (key, bytes) in chunk_files {
            let p = dir.join(key);
            if let Some(parent) = p.parent() {
                fs::create_dir_all(parent).unwrap();
            }
            fs::write(p, bytes).unwrap();
        }
        dir
    }

    /// Splits a C-order array into full-size chunks (out-of-bounds cells get
    /// `pad`), returning (grid index, chunk values) for every chunk.
    fn make_chunks(
        shape: &[usize],
        chunks: &[usize],
        values: &[f32],
        pad: f32,
    ) -> Vec<(Vec<usize>, Vec<f32>)> {
        let grid: Vec<usize> = shape
            .iter()
            .zip(chunks)
            .map(|(s, c)| s.div_ceil(*c))
            .collect();
        let ostr = strides(shape);
        let cn: usize = chunks.iter().product();
        let mut out = Vec::new();
        let mut cidx = vec![0; shape.len()];
        loop {
            let mut buf = vec![pad; cn];
            let mut e = vec![0; shape.len()];
            for (k, slot) in buf.iter_mut().enumerate() {
                // k -> within-chunk multi-index
                let mut rem = k;
                for d in (0..shape.len()).rev() {
                    e[d] = rem % chunks[d];
                    rem /= chunks[d];
                }
                let g: Vec<usize> = (0..shape.len())
                    .map(|d| cidx[d] * chunks[d] + e[d])
                    .collect();
                if g.iter().zip(shape).all(|(a, b)| a < b) {
                    let flat: usize = g.iter().zip(&ostr).map(|(a, b)| a * b).sum();
                    *slot = values[flat];
                }
            }
            out.push((cidx.clone(), buf));
            if !advance(&mut cidx, &grid) {
                break;
            }
        }
        out
    }

    fn key(idx: &[usize], sep: &str) -> String {
        idx.iter()
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(sep)
    }

    fn values_5x7() -> Vec<f32> {
        (0..5)
            .flat_map(|i| (0..7).map(move |j| i as f32 * 10.0 + j as f32 + 0.5))
            .collect()
    }

    // ---------------------------------------------------------------- fixture

    #[test]
    fn reads_l1_fixture_checkpoint() {
        let ckpt = T5xCheckpoint::open(Path::new(FIXTURE)).expect("open fixture checkpoint");
        assert_eq!(ckpt.len(), 70);
        assert!(!ckpt.is_empty());
        let names: Vec<&str> = ckpt.names().collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        assert_eq!(names, sorted, "names must be sorted");
        assert!(names.iter().all(|n| !n.starts_with("target.")));
        assert!(ckpt.contains("encoder.layers_0.attention.key.kernel"));

        let emb = ckpt
            .meta("token_embedder.embedding")
            .expect("embedding meta");
        assert_eq!(emb.shape, vec![29824, 32]);
        assert_eq!(emb.chunks, vec![7456, 32]);
        assert_eq!(emb.dtype(), ZarrDtype::F32);
        assert_eq!(emb.compressor(), ZarrCompressor::Gzip);
        let logits = ckpt
            .meta("decoder.logits_dense.kernel")
            .expect("logits meta");
        assert_eq!(logits.shape, vec![32, 29824]);
        assert_eq!(logits.chunks, vec![32, 7456]);

        let mut n_scale = 0;
        let mut scale_not_one = false;
        for name in &names {
            let t = ckpt
                .read(name)
                .unwrap_or_else(|e| panic!("read {name}: {e}"));
            assert_eq!(&t.name, name);
            assert_eq!(t.shape, ckpt.meta(name).unwrap().shape);
            assert_eq!(t.len(), t.shape.iter().product::<usize>());
            assert!(
                t.data.iter().all(|x| x.is_finite()),
                "{name} has non-finite values"
            );
            if name.ends_with(".scale") {
                n_scale += 1;
                assert_eq!(t.shape, vec![32]);
                for &x in &t.data {
                    assert!(
                        (x - 1.0).abs() < 1.5,
                        "{name}: RMSNorm scale {x} far from 1"
                    );
                    scale_not_one |= x != 1.0;
                }
            }
        }
        assert_eq!(n_scale, 16);
        assert!(
            scale_not_one,
            "fixture scales are perturbed, not all exactly 1"
        );

        // Multi-chunk assembly, checked against a chunk decoded by hand.
        let emb = ckpt.read("token_embedder.embedding").unwrap();
        let logits = ckpt.read("decoder.logits_dense.kernel").unwrap();
        // The vocabulary matrices lie on the bfloat16 grid.
        assert!(emb.data.iter().all(|x| x.to_bits() & 0xffff == 0));
        assert!(logits.data.iter().all(|x| x.to_bits() & 0xffff == 0));
        // Not all zeros.
        assert!(emb.data.iter().any(|&x| x != 0.0));

        let raw_chunk = |array: &str, key: &str| -> Vec<f32> {
            let bytes =
                fs::read(Path::new(FIXTURE).join(format!("target.{array}")).join(key)).unwrap();
            let mut out = Vec::new();
            MultiGzDecoder::new(bytes.as_slice())
                .read_to_end(&mut out)
                .unwrap();
            out.chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect()
        };
        // token_embedder.embedding chunk 2.0 holds rows 14912..22368.
        let c = raw_chunk("token_embedder.embedding", "2.0");
        assert_eq!(c.len(), 7456 * 32);
        for r in [0usize, 1, 1000, 7455] {
            let row = 2 * 7456 + r;
            assert_eq!(&emb.data[row * 32..row * 32 + 32], &c[r * 32..r * 32 + 32]);
        }
        // decoder.logits_dense.kernel chunk 0.3 holds columns 22368..29824.
        let c = raw_chunk("decoder.logits_dense.kernel", "0.3");
        assert_eq!(c.len(), 32 * 7456);
        for i in [0usize, 5, 31] {
            for j in [0usize, 3, 7455] {
                assert_eq!(logits.data[i * 29824 + 3 * 7456 + j], c[i * 7456 + j]);
            }
        }

        // Parallel reading gives identical results.
        let some = [
            "token_embedder.embedding",
            "decoder.logits_dense.kernel",
            "encoder.encoder_norm.scale",
        ];
        let many = ckpt.read_many(&some, 3).unwrap();
        assert_eq!(many.len(), 3);
        assert_eq!(many[0], emb);
        assert_eq!(many[1], logits);
        assert_eq!(many[2], ckpt.read("encoder.encoder_norm.scale").unwrap());

        let err = ckpt.read("no.such.tensor").unwrap_err();
        assert!(matches!(err, CheckpointError::UnknownTensor { .. }));
        assert!(err.to_string().contains("no.such.tensor"));
    }

    // ------------------------------------------------------ self-made arrays

    #[test]
    fn partial_edge_chunks_and_missing_chunk() {
        let tmp = TempDir::new("edge");
        let shape = [5usize, 7];
        let chunks = [2usize, 3];
        let values = values_5x7();
        let parts = make_chunks(&shape, &chunks, &values, 999.0);
        assert_eq!(parts.len(), 9);
        for (fill_json, fill) in [("null", 0.0f32), ("2.5", 2.5), ("-3", -3.0)] {
            let sub = tmp.0.join(format!("fill_{fill}"));
            fs::create_dir_all(&sub).unwrap();
            let files: Vec<(String, Vec<u8>)> = parts
                .iter()
                .filter(|(idx, _)| idx != &vec![1, 1]) // chunk 1.1 deleted
                .map(|(idx, v)| (key(idx, "."), gzip(&f32_bytes(v))))
                .collect();
            write_array(
                &sub,
                "a.b",
                &zarray(&shape, &chunks, "<f4", GZIP, fill_json, "."),
                &files,
            );
            // Another `target.` entry that is a plain file and a non-target dir: ignored.
            fs::write(sub.join("checkpoint"), b"msgpack").unwrap();
            fs::create_dir_all(sub.join("state.step")).unwrap();

            let ckpt = T5xCheckpoint::open(&sub).unwrap();
            assert_eq!(ckpt.names().collect::<Vec<_>>(), vec!["a.b"]);
            assert_eq!(ckpt.dir(), sub.as_path());
            let t = ckpt.read("a.b").unwrap();
            assert_eq!(t.shape, vec![5, 7]);
            let mut expected = values.clone();
            for i in 2..4 {
                for j in 3..6 {
                    expected[i * 7 + j] = fill;
                }
            }
            assert_eq!(t.data, expected, "fill_value {fill_json}");
        }
    }

    #[test]
    fn nan_and_infinite_fill_values() {
        let tmp = TempDir::new("fillnan");
        for (fill_json, check) in [
            ("\"NaN\"", f32::is_nan as fn(f32) -> bool),
            ("\"Infinity\"", |x: f32| x == f32::INFINITY),
            ("\"-Infinity\"", |x: f32| x == f32::NEG_INFINITY),
        ] {
            let sub = tmp.0.join(fill_json.trim_matches('"'));
            fs::create_dir_all(&sub).unwrap();
            // Only chunk 0 of a 1-D array of 6 in chunks of 4 exists.
            let files = vec![("0".to_string(), gzip(&f32_bytes(&[1.0, 2.0, 3.0, 4.0])))];
            write_array(
                &sub,
                "v",
                &zarray(&[6], &[4], "<f4", GZIP, fill_json, "."),
                &files,
            );
            let t = T5xCheckpoint::open(&sub).unwrap().read("v").unwrap();
            assert_eq!(&t.data[..4], &[1.0, 2.0, 3.0, 4.0]);
            assert!(
                check(t.data[4]) && check(t.data[5]),
                "{fill_json}: {:?}",
                t.data
            );
        }
    }

    #[test]
    fn nested_dimension_separator_3d() {
        let tmp = TempDir::new("nested");
        let shape = [3usize, 4, 5];
        let chunks = [2usize, 3, 2];
        let values: Vec<f32> = (0..60).map(|k| k as f32 * 0.25 - 7.0).collect();
        let parts = make_chunks(&shape, &chunks, &values, -1e30);
        assert_eq!(parts.len(), 2 * 2 * 3);
        let files: Vec<(String, Vec<u8>)> = parts
            .iter()
            .map(|(idx, v)| (key(idx, "/"), gzip(&f32_bytes(v))))
            .collect();
        write_array(
            &tmp.0,
            "x",
            &zarray(&shape, &chunks, "<f4", GZIP, "null", "/"),
            &files,
        );
        assert!(tmp.0.join("target.x/1/1/2").is_file());
        let ckpt = T5xCheckpoint::open(&tmp.0).unwrap();
        assert_eq!(ckpt.meta("x").unwrap().dimension_separator(), '/');
        let t = ckpt.read("x").unwrap();
        assert_eq!(t.shape, vec![3, 4, 5]);
        assert_eq!(t.data, values);
    }

    #[test]
    fn mismatched_dimension_separator_is_an_error() {
        let tmp = TempDir::new("sepmismatch");
        let values: Vec<f32> = (0..12).map(|k| k as f32).collect();
        let parts = make_chunks(&[3, 4], &[2, 2], &values, 0.0);
        // Declared ".", stored nested.
        let nested: Vec<(String, Vec<u8>)> = parts
            .iter()
            .map(|(idx, v)| (key(idx, "/"), gzip(&f32_bytes(v))))
            .collect();
        write_array(
            &tmp.0,
            "n",
            &zarray(&[3, 4], &[2, 2], "<f4", GZIP, "null", "."),
            &nested,
        );
        // Declared "/", stored flat.
        let flat: Vec<(String, Vec<u8>)> = parts
            .iter()
            .map(|(idx, v)| (key(idx, "."), gzip(&f32_bytes(v))))
            .collect();
        write_array(
            &tmp.0,
            "f",
            &zarray(&[3, 4], &[2, 2], "<f4", GZIP, "null", "/"),
            &flat,
        );
        // All chunks absent and nothing else: legitimately all fill value.
        write_array(
            &tmp.0,
            "e",
            &zarray(&[3, 4], &[2, 2], "<f4", GZIP, "1.5", "."),
            &[],
        );
        let ckpt = T5xCheckpoint::open(&tmp.0).unwrap();
        for name in ["n", "f"] {
            let err = ckpt.read(name).unwrap_err();
            assert!(
                matches!(err, CheckpointError::BadMetadata { .. }),
                "{name}: {err:?}"
            );
            assert!(err.to_string().contains(&format!("target.{name}")), "{err}");
        }
        assert_eq!(ckpt.read("e").unwrap().data, vec![1.5; 12]);
    }

    #[test]
    fn raw_chunks_default_separator_and_zlib() {
        let tmp = TempDir::new("raw");
        let shape = [3usize, 4, 5];
        let chunks = [2usize, 4, 3];
        let values: Vec<f32> = (0..60).map(|k| (k as f32).sin()).collect();
        let parts = make_chunks(&shape, &chunks, &values, 123.0);
        // Raw, dimension_separator absent (defaults to ".").
        let files: Vec<(String, Vec<u8>)> = parts
            .iter()
            .map(|(idx, v)| (key(idx, "."), f32_bytes(v)))
            .collect();
        let text = "{\"chunks\":[2,4,3],\"compressor\":null,\"dtype\":\"<f4\",\"fill_value\":0.0,\
                    \"filters\":null,\"order\":\"C\",\"shape\":[3,4,5],\"zarr_format\":2}";
        write_array(&tmp.0, "raw", text, &files);
        // zlib-compressed copy.
        let zfiles: Vec<(String, Vec<u8>)> = parts
            .iter()
            .map(|(idx, v)| (key(idx, "."), zlib(&f32_bytes(v))))
            .collect();
        let ztext = zarray(
            &shape,
            &chunks,
            "<f4",
            "{\"id\":\"zlib\",\"level\":5}",
            "null",
            ".",
        );
        write_array(&tmp.0, "z", &ztext, &zfiles);
        // Scalar (shape []), raw.
        write_array(
            &tmp.0,
            "s",
            "{\"chunks\":[],\"compressor\":null,\"dtype\":\"<f4\",\"fill_value\":null,\"filters\":null,\
             \"order\":\"C\",\"shape\":[],\"zarr_format\":2}",
            &[("0".to_string(), f32_bytes(&[42.5]))],
        );

        let ckpt = T5xCheckpoint::open(&tmp.0).unwrap();
        assert_eq!(ckpt.len(), 3);
        assert_eq!(ckpt.meta("raw").unwrap().compressor(), ZarrCompressor::Raw);
        assert_eq!(ckpt.meta("raw").unwrap().dimension_separator(), '.');
        assert_eq!(ckpt.read("raw").unwrap().data, values);
        assert_eq!(ckpt.meta("z").unwrap().compressor(), ZarrCompressor::Zlib);
        assert_eq!(ckpt.read("z").unwrap().data, values);
        let s = ckpt.read("s").unwrap();
        assert!(s.shape.is_empty());
        assert_eq!(s.data, vec![42.5]);
        // Standalone array reader.
        let r = read_zarr_array(&tmp.0.join("target.raw")).unwrap();
        assert_eq!(r.name, "raw");
        assert_eq!(r.data, values);
    }

    #[test]
    fn bfloat16_and_f64_dtypes() {
        let tmp = TempDir::new("bf16");
        // bfloat16 bit patterns: 1.0 = 0x3f80, -2.0 = 0xc000, 0.5 = 0x3f00, 3.140625 = 0x4049.
        let bf: [u16; 6] = [0x3f80, 0xc000, 0x3f00, 0x4049, 0x0000, 0x7f80];
        let expected = [1.0f32, -2.0, 0.5, 3.140625, 0.0, f32::INFINITY];
        // shape [2,3], chunks [1,3]: two chunks.
        let files: Vec<(String, Vec<u8>)> = (0..2)
            .map(|i| {
                let b: Vec<u8> = bf[i * 3..i * 3 + 3]
                    .iter()
                    .flat_map(|x| x.to_le_bytes())
                    .collect();
                (format!("{i}.0"), gzip(&b))
            })
            .collect();
        write_array(
            &tmp.0,
            "bf",
            &zarray(&[2, 3], &[1, 3], "bfloat16", GZIP, "null", "."),
            &files,
        );
        // f64, 1-D, chunks 4 over shape 5 (edge chunk full-size).
        let f: [f64; 8] = [0.1, -1e10, 2.5, 1e-3, 7.0, 99.0, 99.0, 99.0];
        let files: Vec<(String, Vec<u8>)> = (0..2)
            .map(|i| {
                let b: Vec<u8> = f[i * 4..i * 4 + 4]
                    .iter()
                    .flat_map(|x| x.to_le_bytes())
                    .collect();
                (format!("{i}"), gzip(&b))
            })
            .collect();
        write_array(
            &tmp.0,
            "f8",
            &zarray(&[5], &[4], "<f8", GZIP, "null", "."),
            &files,
        );

        let ckpt = T5xCheckpoint::open(&tmp.0).unwrap();
        assert_eq!(ckpt.meta("bf").unwrap().dtype(), ZarrDtype::Bf16);
        let t = ckpt.read("bf").unwrap();
        assert_eq!(t.shape, vec![2, 3]);
        assert_eq!(t.data, expected);
        let t = ckpt.read("f8").unwrap();
        assert_eq!(
            t.data,
            vec![0.1f64 as f32, -1e10f64 as f32, 2.5, 1e-3f64 as f32, 7.0]
        );
    }

    // ------------------------------------------------------------ corruption

    #[test]
    fn truncated_gzip_chunk_is_an_error() {
        let tmp = TempDir::new("trunc");
        let values = values_5x7();
        let parts = make_chunks(&[5, 7], &[2, 3], &values, 0.0);
        let files: Vec<(String, Vec<u8>)> = parts
            .iter()
            .map(|(idx, v)| {
                let mut g = gzip(&f32_bytes(v));
                if idx == &vec![2, 1] {
                    g.truncate(g.len() / 2);
                }
                (key(idx, "."), g)
            })
            .collect();
        write_array(
            &tmp.0,
            "enc.w",
            &zarray(&[5, 7], &[2, 3], "<f4", GZIP, "null", "."),
            &files,
        );
        let ckpt = T5xCheckpoint::open(&tmp.0).unwrap();
        let err = ckpt.read("enc.w").unwrap_err();
        assert!(matches!(err, CheckpointError::Decompress { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains("enc.w"), "{msg}");
        assert!(msg.contains("2.1"), "{msg}");
    }

    #[test]
    fn wrong_size_chunks_are_errors() {
        let tmp = TempDir::new("size");
        // gzip chunk with one element too few (chunk [2,3] f32 = 24 bytes).
        let short = gzip(&f32_bytes(&[1.0; 5]));
        write_array(
            &tmp.0,
            "short",
            &zarray(&[2, 3], &[2, 3], "<f4", GZIP, "null", "."),
            &[("0.0".to_string(), short)],
        );
        // gzip chunk with extra bytes.
        let long = gzip(&f32_bytes(&[1.0; 7]));
        write_array(
            &tmp.0,
            "long",
            &zarray(&[2, 3], &[2, 3], "<f4", GZIP, "null", "."),
            &[("0.0".to_string(), long)],
        );
        // raw chunk of the wrong size.
        write_array(
            &tmp.0,
            "rawshort",
            &zarray(&[2, 3], &[2, 3], "<f4", "null", "null", "."),
            &[("0.0".to_string(), vec![0u8; 10])],
        );
        let ckpt = T5xCheckpoint::open(&tmp.0).unwrap();
        for (name, got) in [("short", 20u64), ("long", 28), ("rawshort", 10)] {
            let err = ckpt.read(name).unwrap_err();
            match &err {
                CheckpointError::ChunkSize {
                    tensor,
                    expected,
                    got: g,
                    path,
                } => {
                    assert_eq!(tensor, name);
                    assert_eq!(*expected, 24);
                    assert_eq!(*g, got);
                    assert!(path.ends_with("0.0"));
                }
                other => panic!("{name}: expected ChunkSize, got {other:?}"),
            }
            let msg = err.to_string();
            assert!(
                msg.contains(name) && msg.contains("24") && msg.contains(&got.to_string()),
                "{msg}"
            );
        }
    }

    #[test]
    fn bad_metadata_is_an_error() {
        // Invalid JSON.
        let tmp = TempDir::new("badjson");
        write_array(&tmp.0, "broken", "{\"shape\": [2,", &[]);
        let err = T5xCheckpoint::open(&tmp.0).unwrap_err();
        assert!(
            matches!(err, CheckpointError::BadMetadata { .. }),
            "{err:?}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains("target.broken") && msg.contains(".zarray"),
            "{msg}"
        );

        // Missing .zarray.
        let tmp = TempDir::new("nozarray");
        fs::create_dir_all(tmp.0.join("target.empty")).unwrap();
        let err = T5xCheckpoint::open(&tmp.0).unwrap_err();
        assert!(
            matches!(err, CheckpointError::BadMetadata { .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("target.empty"), "{err}");

        // Unsupported dtype.
        let tmp = TempDir::new("dtype");
        write_array(
            &tmp.0,
            "ints",
            &zarray(&[4], &[4], "<i4", GZIP, "null", "."),
            &[],
        );
        let err = T5xCheckpoint::open(&tmp.0).unwrap_err();
        assert!(
            matches!(err, CheckpointError::UnsupportedDtype { .. }),
            "{err:?}"
        );
        let msg = err.to_string();
        assert!(msg.contains("<i4") && msg.contains("target.ints"), "{msg}");

        // Unsupported compressor.
        let tmp = TempDir::new("blosc");
        write_array(
            &tmp.0,
            "b",
            &zarray(&[4], &[4], "<f4", "{\"id\":\"blosc\"}", "null", "."),
            &[],
        );
        let err = T5xCheckpoint::open(&tmp.0).unwrap_err();
        assert!(
            matches!(err, CheckpointError::UnsupportedCompressor { .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("blosc"));

        // Fortran order, filters, zarr_format 3.
        let base = zarray(&[4], &[4], "<f4", GZIP, "null", ".");
        let cases = [
            ("order", base.replace("\"order\":\"C\"", "\"order\":\"F\"")),
            (
                "filters",
                base.replace(
                    "\"filters\":null",
                    "\"filters\":[{\"id\":\"delta\",\"dtype\":\"<f4\"}]",
                ),
            ),
            (
                "zarr_format",
                base.replace("\"zarr_format\":2", "\"zarr_format\":3"),
            ),
        ];
        for (what, text) in cases {
            let tmp = TempDir::new("unsup");
            write_array(&tmp.0, "u", &text, &[]);
            let err = T5xCheckpoint::open(&tmp.0).unwrap_err();
            assert!(
                matches!(err, CheckpointError::Unsupported { .. }),
                "{what}: {err:?}"
            );
            let msg = err.to_string();
            assert!(msg.contains(what) && msg.contains("target.u"), "{msg}");
        }

        // Inconsistent ranks / zero chunk / bad fill value.
        for text in [
            zarray(&[4, 2], &[4], "<f4", GZIP, "null", "."),
            zarray(&[4], &[0], "<f4", GZIP, "null", "."),
            zarray(&[4], &[4], "<f4", GZIP, "\"abc\"", "."),
            zarray(&[4], &[4], "<f4", GZIP, "null", "-"),
        ] {
            let tmp = TempDir::new("inconsistent");
            write_array(&tmp.0, "i", &text, &[]);
            let err = T5xCheckpoint::open(&tmp.0).unwrap_err();
            assert!(
                matches!(err, CheckpointError::BadMetadata { .. }),
                "{text}: {err:?}"
            );
        }
    }

    #[test]
    fn not_a_checkpoint_directory() {
        let tmp = TempDir::new("notckpt");
        fs::create_dir_all(tmp.0.join("params.w")).unwrap();
        fs::write(tmp.0.join("checkpoint"), b"x").unwrap();
        let err = T5xCheckpoint::open(&tmp.0).unwrap_err();
        assert!(matches!(err, CheckpointError::NoTensors { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.contains("not a t5x checkpoint") && msg.contains(&tmp.0.display().to_string()),
            "{msg}"
        );

        let file = tmp.0.join("checkpoint");
        let err = T5xCheckpoint::open(&file).unwrap_err();
        assert!(
            matches!(err, CheckpointError::NotADirectory { .. }),
            "{err:?}"
        );

        let err = T5xCheckpoint::open(&tmp.0.join("does_not_exist")).unwrap_err();
        assert!(matches!(err, CheckpointError::Io { .. }), "{err:?}");
        assert!(err.to_string().contains("does_not_exist"));
    }
}
