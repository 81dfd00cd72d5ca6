//! TensorFlow checkpoint "tensor bundle" reader (and a writer for tests and tiny models): the
//! `variables/` directory of a SavedModel, e.g. Magenta RT v1's `savedmodels/musiccoca_*`.
//!
//! ```text
//!  variables/variables.index                  variables/variables.data-00000-of-00001
//!  ┌──────────────────────────────┐           ┌───────────────────────────────────────┐
//!  │ data block 0 ┐               │           │ tensor bytes, C order, little-endian, │
//!  │ data block 1 ├─ entries      │  offset,  │ packed back to back (no alignment)    │
//!  │ …            ┘  key → proto ─┼─ size ──▶ │ …                                     │
//!  │ metaindex block (empty)      │           └───────────────────────────────────────┘
//!  │ index block: sep key → handle│
//!  │ footer (48 B): metaindex + index handles (varints, zero-padded to 40 B), magic u64
//!  └──────────────────────────────┘
//!  block   = entries · restarts[u32; n] · n: u32, then trailer = type u8 (0 raw, 1 snappy)
//!            · masked crc32c(contents ‖ type) as u32
//!  entry   = varint shared · varint unshared · varint value_len · key[shared..] · value
//!  key ""  = BundleHeaderProto  {1 num_shards, 2 endianness (0 little), 3 version}
//!  key k   = BundleEntryProto   {1 dtype, 2 shape {2 dim {1 size}}, 3 shard_id, 4 offset,
//!                                5 size, 6 crc32c (fixed32, masked), 7 slices}
//! ```
//!
//! The index is an SSTable in LevelDB's table format (TF keeps its own copy in
//! `tensorflow/core/lib/io/`). It is small and read whole; tensor data is read from the shard
//! files with positioned reads, one tensor at a time, so multi-GB data files are never loaded
//! whole. Every block checksum and every tensor checksum is verified. Partitioned variables
//! (`slices`) are listed but cannot be read. How MusicCoCa uses it: `engine/NOTES.md`, "MusicCoCa".

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::formats::proto::{self, Value};
use crate::formats::{bf16_to_f32, f16_to_f32};

/// SSTable footer magic, stored as a little-endian u64 in the last 8 bytes of the index file.
pub const TABLE_MAGIC: u64 = 0xdb47_7524_8b80_fb57;
/// Footer size: two block handles padded to 40 bytes, then the magic.
const FOOTER_LEN: usize = 48;
/// Block trailer: compression type byte + masked crc32c.
const TRAILER_LEN: usize = 5;
const MASK_DELTA: u32 = 0xa282_ead8;
/// LevelDB / TF restart interval for data blocks.
const RESTART_INTERVAL: usize = 16;
/// TF's `table::Options::block_size`.
const DEFAULT_BLOCK_SIZE: usize = 262_144;

/// Masks a crc32c the way LevelDB and TF store it (a crc of data that embeds crcs stays useful).
pub fn mask_crc(crc: u32) -> u32 {
    crc.rotate_right(15).wrapping_add(MASK_DELTA)
}

/// Inverse of [`mask_crc`].
pub fn unmask_crc(masked: u32) -> u32 {
    masked.wrapping_sub(MASK_DELTA).rotate_left(15)
}

/// TensorFlow `DataType` (types.proto) of a bundle entry. Only the numeric types that matter here
/// are named; everything else is kept as its code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DType {
    Float,
    Double,
    Int32,
    UInt8,
    Int16,
    Int8,
    String,
    Int64,
    Bool,
    BFloat16,
    Half,
    Other(i32),
}

impl DType {
    pub fn from_code(code: i32) -> Self {
        match code {
            1 => DType::Float,
            2 => DType::Double,
            3 => DType::Int32,
            4 => DType::UInt8,
            5 => DType::Int16,
            6 => DType::Int8,
            7 => DType::String,
            9 => DType::Int64,
            10 => DType::Bool,
            14 => DType::BFloat16,
            19 => DType::Half,
            c => DType::Other(c),
        }
    }

    pub fn code(self) -> i32 {
        match self {
            DType::Float => 1,
            DType::Double => 2,
            DType::Int32 => 3,
            DType::UInt8 => 4,
            DType::Int16 => 5,
            DType::Int8 => 6,
            DType::String => 7,
            DType::Int64 => 9,
            DType::Bool => 10,
            DType::BFloat16 => 14,
            DType::Half => 19,
            DType::Other(c) => c,
        }
    }

    /// Bytes per element for fixed-size types (`None` for strings and unknown codes).
    pub fn size(self) -> Option<usize> {
        match self {
            DType::Double | DType::Int64 => Some(8),
            DType::Float | DType::Int32 => Some(4),
            DType::Int16 | DType::BFloat16 | DType::Half => Some(2),
            DType::UInt8 | DType::Int8 | DType::Bool => Some(1),
            DType::String | DType::Other(_) => None,
        }
    }
}

/// One tensor's index entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    pub dtype: DType,
    /// Dimensions (empty for a scalar).
    pub shape: Vec<usize>,
    pub shard: usize,
    /// Byte range in the shard's data file.
    pub offset: u64,
    pub size: u64,
    /// Masked crc32c of the tensor bytes, as stored.
    pub crc32c: u32,
    /// A partitioned variable: its data lives in separately keyed slices (unsupported).
    pub sliced: bool,
}

impl TensorInfo {
    /// Number of elements (1 for a scalar); `None` on overflow.
    pub fn elements(&self) -> Option<usize> {
        self.shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d))
    }
}

/// Errors of the bundle reader/writer; each names the file and, where there is one, the tensor.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error(
        "no TensorFlow tensor bundle at {path}: expected a SavedModel directory, its variables/ \
         directory or a variables/variables prefix ({tried} does not exist)"
    )]
    NotFound { path: PathBuf, tried: PathBuf },
    #[error("I/O error on {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("corrupt bundle index {path}: {reason}")]
    Index { path: PathBuf, reason: String },
    #[error("{path}: tensor {tensor:?}: {reason}")]
    Tensor { path: PathBuf, tensor: String, reason: String },
    #[error("{path}: checksum mismatch in {what}: stored crc32c {stored:#010x}, computed {computed:#010x}")]
    Checksum { path: PathBuf, what: String, stored: u32, computed: u32 },
    #[error("{path}: no tensor named {tensor:?}")]
    NoTensor { path: PathBuf, tensor: String },
    #[error("{path}: tensor {tensor:?} {shape:?}: non-finite value {value} at flat index {index}")]
    NonFinite { path: PathBuf, tensor: String, shape: Vec<usize>, index: usize, value: f32 },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> BundleError + '_ {
    move |source| BundleError::Io { path: path.to_path_buf(), source }
}

/// Contents of the `""` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleHeader {
    pub num_shards: usize,
    /// 0 little-endian, 1 big-endian.
    pub endianness: u64,
    pub producer: i64,
    pub min_consumer: i64,
}

/// An opened bundle: the parsed index and the open shard files.
#[derive(Debug)]
pub struct Bundle {
    index_path: PathBuf,
    header: BundleHeader,
    entries: BTreeMap<String, TensorInfo>,
    shards: Vec<(PathBuf, File)>,
}

/// The data file of one shard: `<prefix>.data-%05d-of-%05d`.
pub fn shard_path(prefix: &Path, shard: usize, num_shards: usize) -> PathBuf {
    let mut s = prefix.as_os_str().to_os_string();
    s.push(format!(".data-{shard:05}-of-{num_shards:05}"));
    PathBuf::from(s)
}

fn index_path_of(prefix: &Path) -> PathBuf {
    let mut s = prefix.as_os_str().to_os_string();
    s.push(".index");
    PathBuf::from(s)
}

/// Resolves what the user passed to a bundle prefix: a SavedModel dir, its `variables/` dir, the
/// `variables/variables` prefix or the `.index` file itself.
pub fn resolve_prefix(path: &Path) -> Result<PathBuf, BundleError> {
    let candidates: Vec<PathBuf> = if path.is_dir() {
        vec![path.join("variables").join("variables"), path.join("variables")]
    } else if let Some(stem) = path.to_str().and_then(|s| s.strip_suffix(".index")) {
        vec![PathBuf::from(stem)]
    } else {
        vec![path.to_path_buf()]
    };
    for prefix in &candidates {
        if index_path_of(prefix).is_file() {
            return Ok(prefix.clone());
        }
    }
    Err(BundleError::NotFound { path: path.to_path_buf(), tried: index_path_of(&candidates[0]) })
}

impl Bundle {
    /// Opens a bundle: parses and checks the whole index, opens every shard file.
    pub fn open(path: &Path) -> Result<Self, BundleError> {
        let prefix = resolve_prefix(path)?;
        let index_path = index_path_of(&prefix);
        let bytes = fs::read(&index_path).map_err(io_err(&index_path))?;
        let (header, entries) = parse_index(&index_path, &bytes)?;
        let mut shards = Vec::with_capacity(header.num_shards);
        for shard in 0..header.num_shards {
            let p = shard_path(&prefix, shard, header.num_shards);
            let f = File::open(&p).map_err(io_err(&p))?;
            shards.push((p, f));
        }
        Ok(Bundle { index_path, header, entries, shards })
    }

    pub fn header(&self) -> &BundleHeader {
        &self.header
    }

    pub fn index_path(&self) -> &Path {
        &self.index_path
    }

    /// Tensor names in key (bytewise) order; the header entry is not included.
    pub fn names(&self) -> impl Iterator<Item = &str> + '_ {
        self.entries.keys().map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn info(&self, name: &str) -> Option<&TensorInfo> {
        self.entries.get(name)
    }

    pub fn shape(&self, name: &str) -> Option<&[usize]> {
        self.entries.get(name).map(|e| e.shape.as_slice())
    }

    pub fn dtype(&self, name: &str) -> Option<DType> {
        self.entries.get(name).map(|e| e.dtype)
    }

    /// The tensor's stored bytes (little-endian, C order), checksum verified. For fixed-size
    /// dtypes; string tensors are read with [`Bundle::read_strings`].
    pub fn read_raw(&self, name: &str) -> Result<Vec<u8>, BundleError> {
        let (buf, info) = self.read_unchecked(name)?;
        if info.dtype == DType::String {
            return Err(BundleError::Tensor {
                path: self.index_path.clone(),
                tensor: name.to_string(),
                reason: "is a string tensor: use read_strings".into(),
            });
        }
        let computed = mask_crc(crc32c::crc32c(&buf));
        self.check_crc(name, info, computed)?;
        Ok(buf)
    }

    /// Reads a `DT_STRING` tensor (e.g. `_CHECKPOINTABLE_OBJECT_GRAPH`): the stored layout is
    /// `varint len × n · masked crc32c of the lengths (u32) · bytes`, and the entry checksum runs
    /// over the lengths as u32 (u64 when larger), that checksum, then the bytes.
    pub fn read_strings(&self, name: &str) -> Result<Vec<Vec<u8>>, BundleError> {
        let (buf, info) = self.read_unchecked(name)?;
        let path = &self.shards[info.shard].0;
        let err = |reason: String| BundleError::Tensor { path: path.clone(), tensor: name.to_string(), reason };
        if info.dtype != DType::String {
            return Err(err(format!("dtype {:?} is not a string type", info.dtype)));
        }
        let n = info.elements().ok_or_else(|| err(format!("shape {:?} overflows", info.shape)))?;
        let (mut pos, mut crc, mut lens) = (0usize, 0u32, Vec::new());
        for i in 0..n {
            let len = proto::read_varint(&buf, &mut pos).map_err(|e| err(format!("length of string {i}: {e}")))?;
            crc = match u32::try_from(len) {
                Ok(l) => crc32c::crc32c_append(crc, &l.to_le_bytes()),
                Err(_) => crc32c::crc32c_append(crc, &len.to_le_bytes()),
            };
            lens.push(len);
        }
        let stored = buf.get(pos..pos + 4).ok_or_else(|| err("the length checksum is missing".into()))?;
        let stored_len_crc = u32::from_le_bytes([stored[0], stored[1], stored[2], stored[3]]);
        if stored_len_crc != mask_crc(crc) {
            return Err(BundleError::Checksum {
                path: path.clone(),
                what: format!("string lengths of tensor {name:?}"),
                stored: stored_len_crc,
                computed: mask_crc(crc),
            });
        }
        crc = crc32c::crc32c_append(crc, stored);
        pos += 4;
        let strings_start = pos;
        let mut out = Vec::with_capacity(n);
        for (i, len) in lens.into_iter().enumerate() {
            let end = usize::try_from(len).ok().and_then(|l| pos.checked_add(l)).filter(|&e| e <= buf.len());
            let end = end.ok_or_else(|| err(format!("string {i} of {len} bytes runs past the tensor's {} bytes", buf.len())))?;
            out.push(buf[pos..end].to_vec());
            pos = end;
        }
        crc = crc32c::crc32c_append(crc, &buf[strings_start..pos]);
        if pos != buf.len() {
            return Err(err(format!("{} bytes left over after {n} strings", buf.len() - pos)));
        }
        self.check_crc(name, info, mask_crc(crc))?;
        Ok(out)
    }

    fn check_crc(&self, name: &str, info: &TensorInfo, computed: u32) -> Result<(), BundleError> {
        if computed != info.crc32c {
            return Err(BundleError::Checksum {
                path: self.shards[info.shard].0.clone(),
                what: format!("tensor {name:?}"),
                stored: info.crc32c,
                computed,
            });
        }
        Ok(())
    }

    /// A tensor's bytes, bounds-checked but not checksummed.
    fn read_unchecked(&self, name: &str) -> Result<(Vec<u8>, &TensorInfo), BundleError> {
        let info = self.entries.get(name).ok_or_else(|| BundleError::NoTensor {
            path: self.index_path.clone(),
            tensor: name.to_string(),
        })?;
        let tensor_err = |path: &Path, reason: String| BundleError::Tensor {
            path: path.to_path_buf(),
            tensor: name.to_string(),
            reason,
        };
        if info.sliced {
            return Err(tensor_err(&self.index_path, "partitioned variable (slices) is not supported".into()));
        }
        // `parse_index` checked shard < num_shards.
        let (path, file) = &self.shards[info.shard];
        let end = info.offset.checked_add(info.size);
        let file_len = file.metadata().map_err(io_err(path))?.len();
        if end.is_none_or(|e| e > file_len) {
            return Err(tensor_err(
                path,
                format!(
                    "data at bytes {}..+{} lies past the end of the file ({file_len} bytes): truncated?",
                    info.offset, info.size
                ),
            ));
        }
        let size = usize::try_from(info.size).map_err(|_| tensor_err(path, format!("size {} too large", info.size)))?;
        let mut buf = vec![0u8; size];
        file.read_exact_at(&mut buf, info.offset).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                tensor_err(path, format!("data at bytes {}..+{} is truncated", info.offset, info.size))
            } else {
                BundleError::Io { path: path.clone(), source: e }
            }
        })?;
        Ok((buf, info))
    }

    /// Reads a floating-point tensor as f32 (`DT_FLOAT`, `DT_DOUBLE`, `DT_BFLOAT16`, `DT_HALF`).
    /// Checks size against shape and dtype, the data checksum, and that every value is finite.
    pub fn read_f32(&self, name: &str) -> Result<Vec<f32>, BundleError> {
        let info = self.entries.get(name).ok_or_else(|| BundleError::NoTensor {
            path: self.index_path.clone(),
            tensor: name.to_string(),
        })?;
        let tensor_err = |reason: String| BundleError::Tensor {
            path: self.index_path.clone(),
            tensor: name.to_string(),
            reason,
        };
        let width = match info.dtype {
            DType::Float | DType::Double | DType::BFloat16 | DType::Half => info.dtype.size().unwrap_or(4),
            other => return Err(tensor_err(format!("dtype {other:?} (code {}) is not a float type", other.code()))),
        };
        let expected = info
            .elements()
            .and_then(|n| n.checked_mul(width))
            .ok_or_else(|| tensor_err(format!("shape {:?} overflows", info.shape)))?;
        if info.size != expected as u64 {
            return Err(tensor_err(format!(
                "stored size {} bytes != {} bytes for shape {:?} of {:?}",
                info.size, expected, info.shape, info.dtype
            )));
        }
        let raw = self.read_raw(name)?;
        let values: Vec<f32> = match info.dtype {
            DType::Float => raw.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
            DType::Double => raw
                .chunks_exact(8)
                .map(|b| f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32)
                .collect(),
            DType::BFloat16 => raw.chunks_exact(2).map(|b| bf16_to_f32(u16::from_le_bytes([b[0], b[1]]))).collect(),
            _ => raw.chunks_exact(2).map(|b| f16_to_f32(u16::from_le_bytes([b[0], b[1]]))).collect(),
        };
        if let Some((index, &value)) = values.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(BundleError::NonFinite {
                path: self.shards[info.shard].0.clone(),
                tensor: name.to_string(),
                shape: info.shape.clone(),
                index,
                value,
            });
        }
        Ok(values)
    }
}


// ------------------------------------------------------------------------------------------------
// SSTable reading

/// (key, value) pairs in table order.
type KeyValues = Vec<(Vec<u8>, Vec<u8>)>;

/// A block handle: the block's byte range in the file, without its trailer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Handle {
    offset: u64,
    size: u64,
}

fn read_handle(buf: &[u8], pos: &mut usize) -> Result<Handle, proto::ProtoError> {
    let offset = proto::read_varint(buf, pos)?;
    let size = proto::read_varint(buf, pos)?;
    Ok(Handle { offset, size })
}

/// Reads one block: bounds, trailer checksum, decompression.
fn read_block(path: &Path, file: &[u8], h: Handle, what: &str) -> Result<Vec<u8>, BundleError> {
    let corrupt = |reason: String| BundleError::Index { path: path.to_path_buf(), reason };
    let limit = file.len().saturating_sub(FOOTER_LEN) as u64;
    let start = usize::try_from(h.offset).ok().filter(|_| h.offset <= limit);
    let end = h.offset.checked_add(h.size).and_then(|e| e.checked_add(TRAILER_LEN as u64)).filter(|&e| e <= limit);
    let (Some(start), Some(end)) = (start, end) else {
        return Err(corrupt(format!(
            "{what} at bytes {}..+{} (plus {TRAILER_LEN}-byte trailer) lies outside the {} bytes before the footer",
            h.offset, h.size, limit
        )));
    };
    let end = end as usize;
    let contents = &file[start..end - TRAILER_LEN];
    let kind = file[end - TRAILER_LEN];
    let stored = u32::from_le_bytes([file[end - 4], file[end - 3], file[end - 2], file[end - 1]]);
    let computed = mask_crc(crc32c::crc32c_append(crc32c::crc32c(contents), &[kind]));
    if stored != computed {
        return Err(BundleError::Checksum {
            path: path.to_path_buf(),
            what: format!("{what} at byte {}", h.offset),
            stored,
            computed,
        });
    }
    match kind {
        0 => Ok(contents.to_vec()),
        1 => snap::raw::Decoder::new()
            .decompress_vec(contents)
            .map_err(|e| corrupt(format!("{what} at byte {}: bad snappy data: {e}", h.offset))),
        k => Err(corrupt(format!("{what} at byte {}: unknown compression type {k}", h.offset))),
    }
}

/// Decodes a block's entries (full keys restored from the prefix compression).
fn block_entries(path: &Path, block: &[u8], what: &str) -> Result<KeyValues, BundleError> {
    let corrupt = |reason: String| BundleError::Index { path: path.to_path_buf(), reason: format!("{what}: {reason}") };
    let word = |at: usize| u32::from_le_bytes([block[at], block[at + 1], block[at + 2], block[at + 3]]);
    if block.len() < 4 {
        return Err(corrupt(format!("{} bytes is too short for a block", block.len())));
    }
    let num_restarts = word(block.len() - 4) as usize;
    let restarts_at = num_restarts
        .checked_mul(4)
        .and_then(|n| (block.len() - 4).checked_sub(n))
        .ok_or_else(|| corrupt(format!("{num_restarts} restart points do not fit in {} bytes", block.len())))?;
    if num_restarts == 0 {
        return Err(corrupt("no restart points".into()));
    }
    let restarts: Vec<usize> = (0..num_restarts).map(|i| word(restarts_at + 4 * i) as usize).collect();

    let data = &block[..restarts_at];
    let (mut pos, mut out, mut key) = (0usize, Vec::new(), Vec::<u8>::new());
    let mut starts = Vec::new();
    let vint = |pos: &mut usize| -> Result<usize, BundleError> {
        let at = *pos;
        let v = proto::read_varint(data, pos).map_err(|e| corrupt(e.to_string()))?;
        usize::try_from(v).map_err(|_| corrupt(format!("length {v} at byte {at} too large")))
    };
    while pos < data.len() {
        starts.push(pos);
        let at = pos;
        let shared = vint(&mut pos)?;
        let unshared = vint(&mut pos)?;
        let value_len = vint(&mut pos)?;
        if shared > key.len() {
            return Err(corrupt(format!(
                "entry at byte {at} shares {shared} key bytes but the previous key has {}",
                key.len()
            )));
        }
        let key_end = pos.checked_add(unshared).filter(|&e| e <= data.len());
        let value_end = key_end.and_then(|k| k.checked_add(value_len)).filter(|&e| e <= data.len());
        let (Some(key_end), Some(value_end)) = (key_end, value_end) else {
            return Err(corrupt(format!(
                "entry at byte {at} ({unshared} key bytes, {value_len} value bytes) runs past the entries ({} bytes)",
                data.len()
            )));
        };
        key.truncate(shared);
        key.extend_from_slice(&data[pos..key_end]);
        out.push((key.clone(), data[key_end..value_end].to_vec()));
        pos = value_end;
    }
    for &r in &restarts {
        // A restart must point at an entry start, and that entry stores its key whole.
        let Ok(i) = starts.binary_search(&r) else {
            if r == 0 && data.is_empty() {
                continue;
            }
            return Err(corrupt(format!("restart point {r} is not the start of an entry")));
        };
        let mut p = starts[i];
        if vint(&mut p)? != 0 {
            return Err(corrupt(format!("entry at restart point {r} shares key bytes")));
        }
    }
    Ok(out)
}

/// Reads every (key, value) of an SSTable in order.
fn read_table(path: &Path, file: &[u8]) -> Result<KeyValues, BundleError> {
    let corrupt = |reason: String| BundleError::Index { path: path.to_path_buf(), reason };
    if file.len() < FOOTER_LEN {
        return Err(corrupt(format!("{} bytes is shorter than the {FOOTER_LEN}-byte footer", file.len())));
    }
    let footer = &file[file.len() - FOOTER_LEN..];
    let magic = u64::from_le_bytes(footer[40..48].try_into().unwrap_or_default());
    if magic != TABLE_MAGIC {
        return Err(corrupt(format!(
            "bad table magic {magic:#018x} (expected {TABLE_MAGIC:#018x}): not a TensorFlow/LevelDB table"
        )));
    }
    let mut pos = 0;
    let handles = read_handle(&footer[..40], &mut pos).and_then(|m| Ok((m, read_handle(&footer[..40], &mut pos)?)));
    let (_metaindex, index) = handles.map_err(|e| corrupt(format!("footer: {e}")))?;
    let index_block = read_block(path, file, index, "index block")?;
    let mut out: KeyValues = Vec::new();
    for (n, (_sep, value)) in block_entries(path, &index_block, "index block")?.into_iter().enumerate() {
        let mut p = 0;
        let h = read_handle(&value, &mut p).map_err(|e| corrupt(format!("index entry {n}: {e}")))?;
        let what = format!("data block {n}");
        let block = read_block(path, file, h, &what)?;
        for (k, v) in block_entries(path, &block, &what)? {
            if let Some((last, _)) = out.last() {
                if *last >= k {
                    return Err(corrupt(format!(
                        "keys out of order: {:?} after {:?}",
                        String::from_utf8_lossy(&k),
                        String::from_utf8_lossy(last)
                    )));
                }
            }
            out.push((k, v));
        }
    }
    Ok(out)
}

fn parse_header(path: &Path, value: &[u8]) -> Result<BundleHeader, BundleError> {
    let corrupt = |reason: String| BundleError::Index { path: path.to_path_buf(), reason: format!("header entry: {reason}") };
    let mut h = BundleHeader { num_shards: 0, endianness: 0, producer: 0, min_consumer: 0 };
    for f in proto::fields(value) {
        let (field, v) = f.map_err(|e| corrupt(e.to_string()))?;
        match field {
            1 => {
                let n = v.as_u64().ok_or_else(|| corrupt("num_shards is not a varint".into()))?;
                h.num_shards = usize::try_from(n).ok().filter(|&n| n <= 1 << 20).ok_or_else(|| corrupt(format!("num_shards {n}")))?;
            }
            2 => h.endianness = v.as_u64().ok_or_else(|| corrupt("endianness is not a varint".into()))?,
            3 => {
                let b = v.as_bytes().ok_or_else(|| corrupt("version is not a message".into()))?;
                for f in proto::fields(b) {
                    let (field, v) = f.map_err(|e| corrupt(e.to_string()))?;
                    match field {
                        1 => h.producer = v.as_u64().unwrap_or(0) as i64,
                        2 => h.min_consumer = v.as_u64().unwrap_or(0) as i64,
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    if h.endianness != 0 {
        return Err(corrupt(format!("endianness {} (big-endian bundles are not supported)", h.endianness)));
    }
    Ok(h)
}

fn parse_entry(value: &[u8], num_shards: usize) -> Result<TensorInfo, String> {
    let mut e = TensorInfo { dtype: DType::Other(0), shape: Vec::new(), shard: 0, offset: 0, size: 0, crc32c: 0, sliced: false };
    let int = |v: &Value<'_>, what: &str| v.as_u64().ok_or_else(|| format!("{what} has the wrong wire type"));
    for f in proto::fields(value) {
        let (field, v) = f.map_err(|e| e.to_string())?;
        match field {
            1 => e.dtype = DType::from_code(int(&v, "dtype")? as i32),
            2 => e.shape = parse_shape(v.as_bytes().ok_or("shape is not a message")?)?,
            3 => e.shard = int(&v, "shard_id")? as usize,
            4 => e.offset = int(&v, "offset")?,
            5 => e.size = int(&v, "size")?,
            6 => match v {
                Value::Fixed32(c) => e.crc32c = c,
                _ => return Err("crc32c is not a fixed32".into()),
            },
            7 => e.sliced = true,
            _ => {}
        }
    }
    if (e.offset as i64) < 0 || (e.size as i64) < 0 {
        return Err(format!("negative offset {} or size {}", e.offset as i64, e.size as i64));
    }
    if e.shard >= num_shards {
        return Err(format!("shard_id {} but the bundle has {num_shards} shard(s)", e.shard));
    }
    Ok(e)
}

fn parse_shape(buf: &[u8]) -> Result<Vec<usize>, String> {
    let mut dims = Vec::new();
    for f in proto::fields(buf) {
        let (field, v) = f.map_err(|e| format!("shape: {e}"))?;
        match field {
            2 => {
                let mut size = 0i64;
                for f in proto::fields(v.as_bytes().ok_or("shape dim is not a message")?) {
                    let (field, v) = f.map_err(|e| format!("shape dim: {e}"))?;
                    if field == 1 {
                        size = v.as_u64().ok_or("dim size is not a varint")? as i64;
                    }
                }
                dims.push(usize::try_from(size).map_err(|_| format!("dimension {size} (unknown sizes are not supported)"))?);
            }
            3 if v.as_bool() == Some(true) => return Err("shape of unknown rank".into()),
            _ => {}
        }
    }
    Ok(dims)
}

/// Parses the whole index file: header and tensor entries.
fn parse_index(path: &Path, file: &[u8]) -> Result<(BundleHeader, BTreeMap<String, TensorInfo>), BundleError> {
    let table = read_table(path, file)?;
    let mut it = table.into_iter();
    let header = match it.next() {
        Some((k, v)) if k.is_empty() => parse_header(path, &v)?,
        _ => {
            return Err(BundleError::Index {
                path: path.to_path_buf(),
                reason: "no header entry (empty key) at the start: not a tensor bundle index".into(),
            })
        }
    };
    let mut entries = BTreeMap::new();
    for (k, v) in it {
        // Slices of partitioned variables are stored under binary keys starting with a 0 byte.
        if k.first() == Some(&0) {
            continue;
        }
        let Ok(name) = String::from_utf8(k) else { continue };
        let info = parse_entry(&v, header.num_shards)
            .map_err(|reason| BundleError::Tensor { path: path.to_path_buf(), tensor: name.clone(), reason })?;
        entries.insert(name, info);
    }
    Ok((header, entries))
}

// ------------------------------------------------------------------------------------------------
// Writing

/// Builds one SSTable block.
struct BlockBuilder {
    buf: Vec<u8>,
    restarts: Vec<u32>,
    interval: usize,
    counter: usize,
    last_key: Vec<u8>,
}

impl BlockBuilder {
    fn new(interval: usize) -> Self {
        BlockBuilder { buf: Vec::new(), restarts: vec![0], interval, counter: 0, last_key: Vec::new() }
    }

    fn add(&mut self, key: &[u8], value: &[u8]) {
        let shared = if self.counter < self.interval {
            key.iter().zip(&self.last_key).take_while(|(a, b)| a == b).count()
        } else {
            self.restarts.push(self.buf.len() as u32);
            self.counter = 0;
            0
        };
        proto::write_varint(&mut self.buf, shared as u64);
        proto::write_varint(&mut self.buf, (key.len() - shared) as u64);
        proto::write_varint(&mut self.buf, value.len() as u64);
        self.buf.extend_from_slice(&key[shared..]);
        self.buf.extend_from_slice(value);
        self.last_key = key.to_vec();
        self.counter += 1;
    }

    fn size_estimate(&self) -> usize {
        self.buf.len() + 4 * self.restarts.len() + 4
    }

    fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    fn finish(self) -> Vec<u8> {
        let mut b = self.buf;
        for r in &self.restarts {
            b.extend_from_slice(&r.to_le_bytes());
        }
        b.extend_from_slice(&(self.restarts.len() as u32).to_le_bytes());
        b
    }
}

/// Appends a block with its trailer; returns its handle.
fn write_block(out: &mut Vec<u8>, contents: Vec<u8>, snappy: bool) -> Result<Handle, snap::Error> {
    let (data, kind) = if snappy { (snap::raw::Encoder::new().compress_vec(&contents)?, 1u8) } else { (contents, 0u8) };
    let h = Handle { offset: out.len() as u64, size: data.len() as u64 };
    let crc = mask_crc(crc32c::crc32c_append(crc32c::crc32c(&data), &[kind]));
    out.extend_from_slice(&data);
    out.push(kind);
    out.extend_from_slice(&crc.to_le_bytes());
    Ok(h)
}

fn encode_handle(h: Handle) -> Vec<u8> {
    let mut v = Vec::new();
    proto::write_varint(&mut v, h.offset);
    proto::write_varint(&mut v, h.size);
    v
}

/// Serialises sorted (key, value) pairs as an SSTable (restart interval 16 for data blocks, 1 for
/// the index block, as LevelDB and TF do).
fn build_table(entries: &[(Vec<u8>, Vec<u8>)], block_size: usize, snappy: bool) -> Result<Vec<u8>, snap::Error> {
    let mut out = Vec::new();
    let mut index = BlockBuilder::new(1);
    let mut block = BlockBuilder::new(RESTART_INTERVAL);
    for (i, (k, v)) in entries.iter().enumerate() {
        block.add(k, v);
        if block.size_estimate() >= block_size || i + 1 == entries.len() {
            let full = std::mem::replace(&mut block, BlockBuilder::new(RESTART_INTERVAL));
            let h = write_block(&mut out, full.finish(), snappy)?;
            // Separator: the block's last key (≥ every key in it, < the next block's first).
            index.add(k, &encode_handle(h));
        }
    }
    debug_assert!(block.is_empty());
    let metaindex = write_block(&mut out, BlockBuilder::new(RESTART_INTERVAL).finish(), snappy)?;
    let index = write_block(&mut out, index.finish(), snappy)?;
    let mut footer = encode_handle(metaindex);
    footer.extend_from_slice(&encode_handle(index));
    footer.resize(40, 0);
    footer.extend_from_slice(&TABLE_MAGIC.to_le_bytes());
    out.extend_from_slice(&footer);
    Ok(out)
}

/// Writes a valid single-shard bundle (`<prefix>.index` + `<prefix>.data-00000-of-00001`), as
/// TF's BundleWriter does: header entry first, keys sorted, data packed back to back.
#[derive(Debug, Clone)]
pub struct BundleWriter {
    prefix: PathBuf,
    block_size: usize,
    snappy: bool,
    tensors: BTreeMap<String, (DType, Vec<usize>, Vec<u8>)>,
}

impl BundleWriter {
    pub fn new(prefix: impl Into<PathBuf>) -> Self {
        BundleWriter { prefix: prefix.into(), block_size: DEFAULT_BLOCK_SIZE, snappy: false, tensors: BTreeMap::new() }
    }

    /// Target data-block size (TF: 262144). Tiny values give one block per few entries.
    pub fn block_size(mut self, bytes: usize) -> Self {
        self.block_size = bytes.max(1);
        self
    }

    /// Snappy-compress the index blocks. TF never does this, but its reader accepts it.
    pub fn snappy(mut self, on: bool) -> Self {
        self.snappy = on;
        self
    }

    /// Adds a tensor from its raw little-endian bytes.
    pub fn add_raw(&mut self, name: &str, dtype: DType, shape: &[usize], bytes: Vec<u8>) -> Result<&mut Self, BundleError> {
        let err = |reason: String| BundleError::Tensor { path: index_path_of(&self.prefix), tensor: name.to_string(), reason };
        if name.is_empty() || name.starts_with('\0') {
            return Err(err("the empty key and keys starting with NUL are reserved".into()));
        }
        let want = shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d)).zip(dtype.size()).and_then(|(n, w)| n.checked_mul(w));
        if want != Some(bytes.len()) {
            return Err(err(format!("{} bytes do not match shape {shape:?} of {dtype:?}", bytes.len())));
        }
        self.tensors.insert(name.to_string(), (dtype, shape.to_vec(), bytes));
        Ok(self)
    }

    pub fn add_f32(&mut self, name: &str, shape: &[usize], data: &[f32]) -> Result<&mut Self, BundleError> {
        self.add_raw(name, DType::Float, shape, data.iter().flat_map(|v| v.to_le_bytes()).collect())
    }

    /// Writes both files (creating the prefix's parent directory).
    pub fn finish(&self) -> Result<(), BundleError> {
        let index_path = index_path_of(&self.prefix);
        let data_path = shard_path(&self.prefix, 0, 1);
        if let Some(dir) = self.prefix.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir).map_err(io_err(dir))?;
        }
        let mut header = proto::Writer::new();
        let mut version = proto::Writer::new();
        version.varint(1, 1);
        header.varint(1, 1).message(3, &version);
        let mut entries = vec![(Vec::new(), header.finish())];
        let mut data = Vec::new();
        for (name, (dtype, shape, bytes)) in &self.tensors {
            let mut shape_msg = proto::Writer::new();
            for &d in shape {
                let mut dim = proto::Writer::new();
                dim.varint(1, d as u64);
                shape_msg.message(2, &dim);
            }
            let mut e = proto::Writer::new();
            e.varint(1, dtype.code() as u64).message(2, &shape_msg);
            if !data.is_empty() {
                e.varint(4, data.len() as u64);
            }
            if !bytes.is_empty() {
                e.varint(5, bytes.len() as u64);
            }
            e.fixed32(6, mask_crc(crc32c::crc32c(bytes)));
            data.extend_from_slice(bytes);
            entries.push((name.as_bytes().to_vec(), e.finish()));
        }
        let table = build_table(&entries, self.block_size, self.snappy)
            .map_err(|e| BundleError::Index { path: index_path.clone(), reason: format!("snappy: {e}") })?;
        fs::write(&data_path, &data).map_err(io_err(&data_path))?;
        fs::write(&index_path, &table).map_err(io_err(&index_path))?;
        Ok(())
    }
}

/// Writes a single-shard f32 bundle at `prefix` (e.g. `<savedmodel>/variables/variables`).
pub fn write_bundle(prefix: &Path, tensors: &[(&str, &[usize], &[f32])]) -> Result<(), BundleError> {
    let mut w = BundleWriter::new(prefix);
    for (name, shape, data) in tensors {
        w.add_f32(name, shape, data)?;
    }
    w.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("mrt-tfbundle-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    /// Handles of the data blocks, from the footer's index block.
    fn data_block_handles(file: &[u8]) -> Vec<Handle> {
        let footer = &file[file.len() - FOOTER_LEN..];
        let mut p = 0;
        read_handle(footer, &mut p).unwrap();
        let h = read_handle(footer, &mut p).unwrap();
        let index = read_block(Path::new("x"), file, h, "index").unwrap();
        block_entries(Path::new("x"), &index, "index")
            .unwrap()
            .iter()
            .map(|(_, v)| read_handle(v, &mut 0).unwrap())
            .collect()
    }

    fn sample(n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|i| (i as f32 - 3.0) * scale).collect()
    }

    #[test]
    fn crc_mask_round_trips() {
        // Standard CRC-32C check value.
        assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283);
        for c in [0u32, 1, 0xe306_9283, u32::MAX] {
            assert_eq!(unmask_crc(mask_crc(c)), c);
        }
        assert_eq!(mask_crc(0), MASK_DELTA);
    }

    #[test]
    fn round_trip_all_path_forms() {
        let dir = tmp("rt");
        let a = sample(6, 0.5);
        let b = sample(4, -1.25);
        let s = [7.5f32];
        write_bundle(
            &dir.join("variables/variables"),
            &[("w/.ATTRIBUTES/VARIABLE_VALUE", &[2, 3], &a), ("b", &[4], &b), ("scalar", &[], &s)],
        )
        .unwrap();
        for p in [dir.clone(), dir.join("variables"), dir.join("variables/variables"), dir.join("variables/variables.index")] {
            let bundle = Bundle::open(&p).unwrap();
            assert_eq!(bundle.names().collect::<Vec<_>>(), ["b", "scalar", "w/.ATTRIBUTES/VARIABLE_VALUE"]);
            assert_eq!(bundle.header().num_shards, 1);
            assert_eq!(bundle.shape("w/.ATTRIBUTES/VARIABLE_VALUE"), Some(&[2, 3][..]));
            assert_eq!(bundle.shape("scalar"), Some(&[][..]));
            assert_eq!(bundle.dtype("b"), Some(DType::Float));
            assert_eq!(bundle.read_f32("w/.ATTRIBUTES/VARIABLE_VALUE").unwrap(), a);
            assert_eq!(bundle.read_f32("b").unwrap(), b);
            assert_eq!(bundle.read_f32("scalar").unwrap(), s);
        }
        let err = Bundle::open(&dir.join("nope")).unwrap_err();
        assert!(matches!(err, BundleError::NotFound { .. }), "{err}");
        let bundle = Bundle::open(&dir).unwrap();
        let err = bundle.read_f32("missing").unwrap_err();
        assert!(err.to_string().contains("\"missing\""), "{err}");
    }

    #[test]
    fn other_float_dtypes_convert() {
        let dir = tmp("dtypes");
        let prefix = dir.join("v");
        let mut w = BundleWriter::new(&prefix);
        // bf16: 1.0, -2.5, 0.15625; f16: 1.0, -2.0, 2^-24 (smallest subnormal), 65504 (max)
        w.add_raw("bf", DType::BFloat16, &[3], [0x3f80u16, 0xc020, 0x3e20].iter().flat_map(|v| v.to_le_bytes()).collect())
            .unwrap();
        w.add_raw("h", DType::Half, &[4], [0x3c00u16, 0xc000, 0x0001, 0x7bff].iter().flat_map(|v| v.to_le_bytes()).collect())
            .unwrap();
        w.add_raw("d", DType::Double, &[2], [0.1f64, -3.0].iter().flat_map(|v| v.to_le_bytes()).collect()).unwrap();
        w.add_raw("i", DType::Int32, &[1], 5i32.to_le_bytes().to_vec()).unwrap();
        w.add_raw("inf", DType::Float, &[3], [1.0f32, 2.0, f32::INFINITY].iter().flat_map(|v| v.to_le_bytes()).collect())
            .unwrap();
        w.finish().unwrap();
        let b = Bundle::open(&prefix).unwrap();
        assert_eq!(b.read_f32("bf").unwrap(), [1.0, -2.5, 0.15625]);
        assert_eq!(b.read_f32("h").unwrap(), [1.0, -2.0, 2f32.powi(-24), 65504.0]);
        assert_eq!(b.read_f32("d").unwrap(), [0.1f64 as f32, -3.0]);
        assert_eq!(b.read_raw("i").unwrap(), 5i32.to_le_bytes());
        let err = b.read_f32("i").unwrap_err().to_string();
        assert!(err.contains("\"i\"") && err.contains("not a float type"), "{err}");
        match b.read_f32("inf").unwrap_err() {
            BundleError::NonFinite { tensor, index, .. } => assert_eq!((tensor.as_str(), index), ("inf", 2)),
            e => panic!("{e}"),
        }
        assert!(f16_to_f32(0xfc00).is_infinite() && f16_to_f32(0x7e00).is_nan());
        assert_eq!(f16_to_f32(0x8001), -(2f32.powi(-24)));
    }

    #[test]
    fn multi_block_prefix_compressed_index() {
        let dir = tmp("multi");
        let prefix = dir.join("variables");
        let mut w = BundleWriter::new(&prefix).block_size(200);
        let names: Vec<String> = (0..70).map(|i| format!("encoder/layer_{i:03}/mlp/kernel/.ATTRIBUTES/VARIABLE_VALUE")).collect();
        for (i, n) in names.iter().enumerate() {
            w.add_f32(n, &[i % 5 + 1], &sample(i % 5 + 1, i as f32)).unwrap();
        }
        w.finish().unwrap();
        let file = fs::read(index_path_of(&prefix)).unwrap();
        // Several data blocks, and within each block keys after the first really are stored as
        // (shared prefix length, suffix).
        let idx = data_block_handles(&file);
        assert!(idx.len() >= 5, "{} data blocks", idx.len());
        let mut compressed = 0;
        for (n, h) in idx.iter().enumerate() {
            let block = read_block(Path::new("x"), &file, *h, "b").unwrap();
            let (mut pos, mut shared) = (0, Vec::new());
            while shared.len() < block_entries(Path::new("x"), &block, "b").unwrap().len() {
                shared.push(proto::read_varint(&block, &mut pos).unwrap());
                let unshared = proto::read_varint(&block, &mut pos).unwrap();
                let value = proto::read_varint(&block, &mut pos).unwrap();
                pos += (unshared + value) as usize;
            }
            // Block 0 starts with the header entry, whose key is empty.
            let first = if n == 0 { 2 } else { 1 };
            assert!(shared[..first].iter().all(|&n| n == 0), "{shared:?}");
            assert!(shared[first..].iter().all(|&n| n >= "encoder/layer_0".len() as u64), "{shared:?}");
            compressed += shared.len().saturating_sub(first);
        }
        assert!(compressed >= 40, "{compressed} prefix-compressed keys");
        let b = Bundle::open(&prefix).unwrap();
        assert_eq!(b.names().collect::<Vec<_>>(), names);
        for (i, n) in names.iter().enumerate() {
            assert_eq!(b.read_f32(n).unwrap(), sample(i % 5 + 1, i as f32), "{n}");
        }
    }

    #[test]
    fn snappy_blocks_read_back() {
        let dir = tmp("snappy");
        let prefix = dir.join("v");
        let mut w = BundleWriter::new(&prefix).block_size(100).snappy(true);
        for i in 0..40 {
            w.add_f32(&format!("aaaaaaaaaaaaaaaaaaaaaaaa/{i:02}"), &[2], &[i as f32, -(i as f32)]).unwrap();
        }
        w.finish().unwrap();
        let file = fs::read(index_path_of(&prefix)).unwrap();
        // The data blocks really are snappy (type byte 1): what is stored is not the block itself.
        let handles = data_block_handles(&file);
        assert!(handles.len() > 1);
        let h0 = handles[0];
        assert_eq!(file[(h0.offset + h0.size) as usize], 1, "type byte of data block 0");
        let raw = read_block(Path::new("x"), &file, h0, "b").unwrap();
        assert_ne!(&file[h0.offset as usize..(h0.offset + h0.size) as usize], &raw[..]);
        let b = Bundle::open(&prefix).unwrap();
        assert_eq!(b.len(), 40);
        assert_eq!(b.read_f32("aaaaaaaaaaaaaaaaaaaaaaaa/17").unwrap(), [17.0, -17.0]);
    }

    #[test]
    fn corrupt_files_are_errors_naming_file_and_tensor() {
        let dir = tmp("corrupt");
        let prefix = dir.join("variables");
        write_bundle(&prefix, &[("first", &[4], &sample(4, 1.0)), ("second", &[8], &sample(8, 2.0))]).unwrap();
        let data = shard_path(&prefix, 0, 1);
        let index = index_path_of(&prefix);
        let good_data = fs::read(&data).unwrap();
        let good_index = fs::read(&index).unwrap();

        // Truncated data file: the second tensor lies past the end, the first still reads.
        fs::write(&data, &good_data[..good_data.len() - 3]).unwrap();
        let b = Bundle::open(&prefix).unwrap();
        assert!(b.read_f32("first").is_ok());
        let err = b.read_f32("second").unwrap_err().to_string();
        assert!(err.contains("second") && err.contains("data-00000-of-00001") && err.contains("truncated"), "{err}");

        // One flipped data byte: checksum error naming the tensor.
        let mut bad = good_data.clone();
        bad[20] ^= 0x40;
        fs::write(&data, &bad).unwrap();
        let err = Bundle::open(&prefix).unwrap().read_f32("second").unwrap_err();
        assert!(matches!(err, BundleError::Checksum { .. }), "{err}");
        assert!(err.to_string().contains("\"second\""), "{err}");
        fs::write(&data, &good_data).unwrap();

        // One flipped byte in the index data block: block checksum error naming the index file.
        let mut bad = good_index.clone();
        bad[3] ^= 0x01;
        fs::write(&index, &bad).unwrap();
        let err = Bundle::open(&prefix).unwrap_err();
        assert!(matches!(err, BundleError::Checksum { .. }), "{err}");
        assert!(err.to_string().contains("variables.index") && err.to_string().contains("data block 0"), "{err}");

        // Wrong magic.
        let mut bad = good_index.clone();
        let n = bad.len();
        bad[n - 1] ^= 0xff;
        fs::write(&index, &bad).unwrap();
        let err = Bundle::open(&prefix).unwrap_err().to_string();
        assert!(err.contains("bad table magic") && err.contains("variables.index"), "{err}");

        // Every truncation of the index is an error, never a panic.
        for cut in 0..good_index.len() {
            fs::write(&index, &good_index[..cut]).unwrap();
            assert!(Bundle::open(&prefix).is_err(), "cut at {cut}");
        }
        fs::write(&index, &good_index).unwrap();

        // Missing shard file.
        fs::remove_file(&data).unwrap();
        let err = Bundle::open(&prefix).unwrap_err().to_string();
        assert!(err.contains("data-00000-of-00001"), "{err}");
    }

    #[test]
    fn malformed_blocks_do_not_panic() {
        // Random garbage handed to the block decoder must error, never panic or loop.
        let mut state = 0x1234_5678u32;
        for len in 0..200 {
            let block: Vec<u8> = (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 17;
                    state ^= state << 5;
                    state as u8
                })
                .collect();
            let _ = block_entries(Path::new("x"), &block, "fuzz");
        }
        let err = block_entries(Path::new("x"), &[0, 0, 0, 0], "b").unwrap_err().to_string();
        assert!(err.contains("no restart points"), "{err}");
    }

    #[test]
    fn reads_tf_written_savedmodel_exactly() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/tfbundle");
        let expected: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
        let bundle = Bundle::open(&dir.join("savedmodel")).unwrap();
        assert_eq!(bundle.header().num_shards, 1);
        let names: Vec<&str> = bundle.names().collect();
        assert_eq!(
            names,
            [
                "_CHECKPOINTABLE_OBJECT_GRAPH",
                "h/.ATTRIBUTES/VARIABLE_VALUE",
                "kernel/.ATTRIBUTES/VARIABLE_VALUE",
                "sub/scale/.ATTRIBUTES/VARIABLE_VALUE"
            ]
        );
        assert_eq!(bundle.dtype("_CHECKPOINTABLE_OBJECT_GRAPH"), Some(DType::String));
        // TF's string-tensor layout and checksums: one serialized TrackableObjectGraph whose
        // attributes name every variable's checkpoint key.
        let graph = bundle.read_strings("_CHECKPOINTABLE_OBJECT_GRAPH").unwrap();
        assert_eq!(graph.len(), 1);
        for key in &names[1..] {
            assert!(graph[0].windows(key.len()).any(|w| w == key.as_bytes()), "{key}");
        }
        assert!(bundle.read_raw("_CHECKPOINTABLE_OBJECT_GRAPH").is_err());
        assert!(bundle.read_strings("kernel/.ATTRIBUTES/VARIABLE_VALUE").is_err());
        let dtypes = [("float32", DType::Float), ("bfloat16", DType::BFloat16), ("float16", DType::Half)];
        let obj = expected.as_object().unwrap();
        assert_eq!(obj.len(), 3);
        for (name, e) in obj {
            let shape: Vec<usize> = e["shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect();
            let want_dtype = dtypes.iter().find(|(n, _)| *n == e["dtype"].as_str().unwrap()).unwrap().1;
            let bits: Vec<u32> = e["bits_f32"].as_array().unwrap().iter().map(|b| b.as_u64().unwrap() as u32).collect();
            assert_eq!(bundle.shape(name), Some(&shape[..]), "{name}");
            assert_eq!(bundle.dtype(name), Some(want_dtype), "{name}");
            let got: Vec<u32> = bundle.read_f32(name).unwrap().iter().map(|v| v.to_bits()).collect();
            assert_eq!(got, bits, "{name}");
        }
        assert_eq!(bundle.read_f32("kernel/.ATTRIBUTES/VARIABLE_VALUE").unwrap(), [-1.25, -0.75, -0.25, 0.25, 0.75, 1.25]);
    }
}
