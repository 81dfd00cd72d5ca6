//! safetensors files (f32, f64, f16 and bf16 tensors, all read as f32) into a
//! [`TensorStore`], and f32 stores back into bytes. The codec's files, the converted LM cache and
//! MRT2's combined checkpoint are read here.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use safetensors::{Dtype, SafeTensors};

use super::tensor::{HostTensor, TensorStore};
use super::{bf16_to_f32, f16_to_f32};

/// A file that is not readable as safetensors, or holds a tensor we cannot convert.
#[derive(Debug, thiserror::Error)]
pub enum SafetensorsError {
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, #[source] source: std::io::Error },
    #[error("{path} is not a readable safetensors file: {reason}")]
    Corrupt { path: PathBuf, reason: String },
}

/// Reads a whole file (memory-mapped).
pub fn read(path: &Path) -> Result<TensorStore, SafetensorsError> {
    read_prefix(path, "")
}

/// Reads the tensors whose names start with `prefix` (MRT2's decode-only codec out of the whole
/// checkpoint). The file is memory-mapped, not copied: only the tensors converted to f32 take
/// memory of their own.
pub fn read_prefix(path: &Path, prefix: &str) -> Result<TensorStore, SafetensorsError> {
    let io = |source| SafetensorsError::Io { path: path.to_path_buf(), source };
    let file = std::fs::File::open(path).map_err(io)?;
    // SAFETY: the map is read-only and lives only for this call; the checkpoint files are not
    // written while a model loads (the fetcher writes to a temporary name and renames).
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io)?;
    from_bytes_prefix(path, &map, prefix)
}

/// Parses a whole file held in memory; `path` only names it in errors.
pub fn from_bytes(path: &Path, bytes: &[u8]) -> Result<TensorStore, SafetensorsError> {
    from_bytes_prefix(path, bytes, "")
}

fn from_bytes_prefix(path: &Path, bytes: &[u8], prefix: &str) -> Result<TensorStore, SafetensorsError> {
    let st = SafeTensors::deserialize(bytes)
        .map_err(|e| SafetensorsError::Corrupt { path: path.to_path_buf(), reason: format!("{e}{}", diagnose(bytes)) })?;
    let mut tensors = BTreeMap::new();
    for (name, view) in st.tensors().into_iter().filter(|(n, _)| n.starts_with(prefix)) {
        let bad = |reason: String| SafetensorsError::Corrupt { path: path.to_path_buf(), reason: format!("tensor `{name}`: {reason}") };
        let raw = view.data();
        let data: Vec<f32> = match view.dtype() {
            Dtype::F32 => raw.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
            Dtype::F64 => raw
                .chunks_exact(8)
                .map(|b| f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32)
                .collect(),
            Dtype::BF16 => raw.chunks_exact(2).map(|b| bf16_to_f32(u16::from_le_bytes([b[0], b[1]]))).collect(),
            Dtype::F16 => raw.chunks_exact(2).map(|b| f16_to_f32(u16::from_le_bytes([b[0], b[1]]))).collect(),
            other => return Err(bad(format!("unsupported dtype {other:?} (expected F32, F64, F16 or BF16)"))),
        };
        let shape = view.shape().to_vec();
        if data.len() != shape.iter().product::<usize>() {
            return Err(bad(format!("{} values for shape {shape:?}", data.len())));
        }
        tensors.insert(name, HostTensor { shape, data });
    }
    Ok(TensorStore::new(path, tensors))
}

/// Serialises a store's tensors as f32 safetensors (tests, converted caches).
pub fn to_bytes(store: &TensorStore) -> Result<Vec<u8>, SafetensorsError> {
    let bytes: Vec<(String, Vec<u8>, Vec<usize>)> =
        store.iter().map(|(n, t)| (n.to_owned(), t.data.iter().flat_map(|v| v.to_le_bytes()).collect(), t.shape.clone())).collect();
    let corrupt = |e: safetensors::SafeTensorError| SafetensorsError::Corrupt { path: store.path.clone(), reason: e.to_string() };
    let views = bytes
        .iter()
        .map(|(n, b, s)| safetensors::tensor::TensorView::new(Dtype::F32, s.clone(), b).map(|v| (n.as_str(), v)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(corrupt)?;
    safetensors::serialize(views, None).map_err(corrupt)
}

/// When the safetensors crate rejects a file, names the tensors whose data lies past the end of a
/// truncated file (the crate's own message only says the buffer is incomplete).
fn diagnose(bytes: &[u8]) -> String {
    let Some(n) = bytes.get(..8).map(|b| u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])) else {
        return "; the file is shorter than the 8-byte header length".into();
    };
    let Some(header) = usize::try_from(n).ok().and_then(|n| bytes.get(8..8usize.saturating_add(n))) else {
        return format!("; the header length {n} runs past the {} bytes of the file", bytes.len());
    };
    let Ok(serde_json::Value::Object(map)) = serde_json::from_slice::<serde_json::Value>(header) else {
        return String::new();
    };
    let available = bytes.len() - 8 - header.len();
    let mut cut: Vec<(u64, String)> = map
        .iter()
        .filter(|(name, _)| name.as_str() != "__metadata__")
        .filter_map(|(name, info)| {
            let end = info.pointer("/data_offsets/1")?.as_u64()?;
            (end > available as u64).then(|| (end, name.clone()))
        })
        .collect();
    if cut.is_empty() {
        return String::new();
    }
    cut.sort();
    let names: Vec<&str> = cut.iter().map(|(_, n)| n.as_str()).collect();
    format!("; data of {} tensor(s) lies past the end of the {available} data bytes (file truncated?): {}", names.len(), names.join(", "))
}
