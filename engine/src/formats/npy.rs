//! Minimal NumPy `.npy` reader/writer for test fixtures and debug dumps.
//!
//! Reads format versions 1.0, 2.0 and 3.0 (little-endian, C order):
//! [`read_f32`] accepts `<f4` and `<f8` (converted), [`read_i32`] accepts `<i4`
//! and `<i8` (range-checked), [`read_u32`] accepts `<u4`, [`read_i16`] `<i2`. The writers produce version 1.0 files whose data
//! starts at a multiple of 64 bytes, exactly like `numpy.save`.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 6] = b"\x93NUMPY";
/// Maximum nesting depth accepted in a header literal.
const MAX_DEPTH: usize = 16;

/// An n-dimensional array in C order.
#[derive(Debug, Clone, PartialEq)]
pub struct NpyArray<T> {
    /// Shape (empty for a 0-d array).
    pub shape: Vec<usize>,
    /// C-order values; `data.len()` is the product of `shape`.
    pub data: Vec<T>,
}

impl<T> NpyArray<T> {
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// True when the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}

/// Parsed `.npy` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NpyHeader {
    /// Format version (major, minor).
    pub version: (u8, u8),
    /// The `descr` dtype string, e.g. `<f4`.
    pub descr: String,
    /// The `fortran_order` flag.
    pub fortran_order: bool,
    /// The `shape` tuple.
    pub shape: Vec<usize>,
    /// Byte offset of the data section.
    pub data_offset: usize,
}

/// Errors of the `.npy` reader/writer; every message names the file.
#[derive(Debug, thiserror::Error)]
pub enum NpyError {
    #[error("I/O error on {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} is not a .npy file (missing \\x93NUMPY magic)")]
    BadMagic { path: PathBuf },
    #[error("{path}: unsupported .npy format version {major}.{minor} (supported: 1.0, 2.0, 3.0)")]
    UnsupportedVersion { path: PathBuf, major: u8, minor: u8 },
    #[error("{path}: malformed .npy header: {reason}")]
    BadHeader { path: PathBuf, reason: String },
    #[error("{path}: Fortran-order arrays are not supported (dtype '{descr}', shape {shape:?})")]
    FortranOrder {
        path: PathBuf,
        descr: String,
        shape: Vec<usize>,
    },
    #[error("{path}: big-endian dtype '{descr}' is not supported")]
    BigEndian { path: PathBuf, descr: String },
    #[error("{path}: dtype '{found}' (shape {shape:?}) cannot be read as {expected}")]
    DtypeMismatch {
        path: PathBuf,
        found: String,
        shape: Vec<usize>,
        expected: &'static str,
    },
    #[error(
        "{path}: data section has {got} bytes but shape {shape:?} with dtype '{descr}' needs {expected} bytes"
    )]
    SizeMismatch {
        path: PathBuf,
        descr: String,
        shape: Vec<usize>,
        expected: usize,
        got: usize,
    },
    #[error("{path}: value {value} at flat index {index} (dtype '{descr}') does not fit in i32")]
    OutOfRange {
        path: PathBuf,
        descr: String,
        index: usize,
        value: i64,
    },
    #[error("{path}: shape {shape:?} has {expected} elements but {got} values were given")]
    ShapeMismatch {
        path: PathBuf,
        shape: Vec<usize>,
        expected: usize,
        got: usize,
    },
    #[error("{path}: shape {shape:?} is too large")]
    TooLarge { path: PathBuf, shape: Vec<usize> },
}

// ------------------------------------------------------------------ header

/// A Python literal as found in a `.npy` header.
#[derive(Debug, Clone, PartialEq)]
enum PyLit {
    Str(String),
    Bool(bool),
    None,
    Int(i64),
    Seq(Vec<PyLit>),
    Dict(Vec<(PyLit, PyLit)>),
}

struct LitParser<'a> {
    s: &'a [u8],
    pos: usize,
}

impl<'a> LitParser<'a> {
    fn new(s: &'a str) -> Self {
        LitParser {
            s: s.as_bytes(),
            pos: 0,
        }
    }

    fn skip_ws(&mut self) {
        while self.pos < self.s.len() && self.s[self.pos].is_ascii_whitespace() {
            self.pos += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.skip_ws();
        self.s.get(self.pos).copied()
    }

    fn at_end(&mut self) -> bool {
        self.peek().is_none()
    }

    fn expect(&mut self, c: u8) -> Result<(), String> {
        match self.peek() {
            Some(x) if x == c => {
                self.pos += 1;
                Ok(())
            }
            Some(x) => Err(format!(
                "expected '{}' at byte {}, found '{}'",
                c as char, self.pos, x as char
            )),
            None => Err(format!("expected '{}', found end of header", c as char)),
        }
    }

    fn value(&mut self, depth: usize) -> Result<PyLit, String> {
        if depth > MAX_DEPTH {
            return Err("literal nested too deeply".to_string());
        }
        match self.peek() {
            None => Err("unexpected end of header".to_string()),
            Some(b'\'') | Some(b'"') => self.string().map(PyLit::Str),
            Some(b'(') => self.seq(b'(', b')', depth).map(PyLit::Seq),
            Some(b'[') => self.seq(b'[', b']', depth).map(PyLit::Seq),
            Some(b'{') => self.dict(depth),
            Some(c) if c == b'-' || c == b'+' || c.is_ascii_digit() => self.int(),
            Some(c) if c.is_ascii_alphabetic() => {
                let start = self.pos;
                while self.pos < self.s.len() && self.s[self.pos].is_ascii_alphanumeric() {
                    self.pos += 1;
                }
                match &self.s[start..self.pos] {
                    b"True" => Ok(PyLit::Bool(true)),
                    b"False" => Ok(PyLit::Bool(false)),
                    b"None" => Ok(PyLit::None),
                    w => Err(format!("unexpected word {:?}", String::from_utf8_lossy(w))),
                }
            }
            Some(c) => Err(format!(
                "unexpected character '{}' at byte {}",
                c as char, self.pos
            )),
        }
    }

    fn string(&mut self) -> Result<String, String> {
        let Some(quote) = self.peek() else {
            return Err("expected a string".to_string());
        };
        self.pos += 1;
        let mut out = Vec::new();
        loop {
            match self.s.get(self.pos).copied() {
                None => return Err("unterminated string".to_string()),
                Some(b'\\') => {
                    let Some(&c) = self.s.get(self.pos + 1) else {
                        return Err("unterminated string".to_string());
                    };
                    out.push(c);
                    self.pos += 2;
                }
                Some(c) if c == quote => {
                    self.pos += 1;
                    break;
                }
                Some(c) => {
                    out.push(c);
                    self.pos += 1;
                }
            }
        }
        String::from_utf8(out).map_err(|_| "string is not valid UTF-8".to_string())
    }

    fn int(&mut self) -> Result<PyLit, String> {
        let start = self.pos;
        if matches!(self.s.get(self.pos), Some(b'-') | Some(b'+')) {
            self.pos += 1;
        }
        while self.pos < self.s.len() && self.s[self.pos].is_ascii_digit() {
            self.pos += 1;
        }
        let text = std::str::from_utf8(&self.s[start..self.pos]).map_err(|e| e.to_string())?;
        // Python 2 long suffix, e.g. `(3L, 4L)`.
        if matches!(self.s.get(self.pos), Some(b'L') | Some(b'l')) {
            self.pos += 1;
        }
        text.parse::<i64>()
            .map(PyLit::Int)
            .map_err(|_| format!("invalid integer {text:?}"))
    }

    fn seq(&mut self, open: u8, close: u8, depth: usize) -> Result<Vec<PyLit>, String> {
        self.expect(open)?;
        let mut items = Vec::new();
        loop {
            if self.peek() == Some(close) {
                self.pos += 1;
                return Ok(items);
            }
            items.push(self.value(depth + 1)?);
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(c) if c == close => {}
                _ => return Err(format!("expected ',' or '{}' in sequence", close as char)),
            }
        }
    }

    fn dict(&mut self, depth: usize) -> Result<PyLit, String> {
        self.expect(b'{')?;
        let mut items = Vec::new();
        loop {
            if self.peek() == Some(b'}') {
                self.pos += 1;
                return Ok(PyLit::Dict(items));
            }
            let k = self.value(depth + 1)?;
            self.expect(b':')?;
            let v = self.value(depth + 1)?;
            items.push((k, v));
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {}
                _ => return Err("expected ',' or '}' in dict".to_string()),
            }
        }
    }
}

fn le_u16(b: &[u8]) -> usize {
    usize::from(u16::from_le_bytes([b[0], b[1]]))
}

/// Parses the header at the start of `bytes` (a whole file or at least its header).
fn parse_header(path: &Path, bytes: &[u8]) -> Result<NpyHeader, NpyError> {
    let bad = |reason: String| NpyError::BadHeader {
        path: path.to_path_buf(),
        reason,
    };
    if bytes.len() < 8 || &bytes[..6] != MAGIC {
        return Err(NpyError::BadMagic {
            path: path.to_path_buf(),
        });
    }
    let (major, minor) = (bytes[6], bytes[7]);
    let (len_bytes, utf8) = match (major, minor) {
        (1, 0) => (2, false),
        (2, 0) => (4, false),
        (3, 0) => (4, true),
        _ => {
            return Err(NpyError::UnsupportedVersion {
                path: path.to_path_buf(),
                major,
                minor,
            })
        }
    };
    let pre = 8 + len_bytes;
    if bytes.len() < pre {
        return Err(bad("file ends inside the header length field".to_string()));
    }
    let header_len = if len_bytes == 2 {
        le_u16(&bytes[8..10])
    } else {
        let v = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
        usize::try_from(v).map_err(|_| bad(format!("header length {v} too large")))?
    };
    let data_offset = pre
        .checked_add(header_len)
        .ok_or_else(|| bad(format!("header length {header_len} too large")))?;
    let Some(raw) = bytes.get(pre..data_offset) else {
        return Err(bad(format!(
            "header length {header_len} runs past the {} available bytes",
            bytes.len()
        )));
    };
    let text = if utf8 {
        std::str::from_utf8(raw).map_err(|_| bad("header is not valid UTF-8".to_string()))?
    } else {
        if !raw.is_ascii() {
            return Err(bad("header is not ASCII".to_string()));
        }
        std::str::from_utf8(raw).map_err(|_| bad("header is not ASCII".to_string()))?
    };

    let mut p = LitParser::new(text);
    let lit = p.value(0).map_err(|e| bad(format!("{e} in {text:?}")))?;
    if !p.at_end() {
        return Err(bad(format!(
            "trailing characters after the header dict in {text:?}"
        )));
    }
    let PyLit::Dict(items) = lit else {
        return Err(bad(format!("header is not a dict: {text:?}")));
    };
    let get = |k: &str| {
        items
            .iter()
            .find(|(key, _)| matches!(key, PyLit::Str(s) if s == k))
            .map(|(_, v)| v)
    };
    let descr = match get("descr") {
        Some(PyLit::Str(s)) => s.clone(),
        Some(other) => {
            return Err(bad(format!(
            "'descr' {other:?} is not a simple dtype string (structured dtypes are not supported)"
        )))
        }
        None => return Err(bad(format!("missing 'descr' key in {text:?}"))),
    };
    let fortran_order = match get("fortran_order") {
        Some(PyLit::Bool(b)) => *b,
        Some(other) => return Err(bad(format!("'fortran_order' {other:?} is not a bool"))),
        None => return Err(bad(format!("missing 'fortran_order' key in {text:?}"))),
    };
    let shape = match get("shape") {
        Some(PyLit::Seq(dims)) => dims
            .iter()
            .map(|d| match d {
                PyLit::Int(v) => usize::try_from(*v)
                    .map_err(|_| bad(format!("negative dimension {v} in 'shape'"))),
                other => Err(bad(format!(
                    "dimension {other:?} in 'shape' is not an integer"
                ))),
            })
            .collect::<Result<Vec<usize>, NpyError>>()?,
        Some(other) => return Err(bad(format!("'shape' {other:?} is not a tuple"))),
        None => return Err(bad(format!("missing 'shape' key in {text:?}"))),
    };
    Ok(NpyHeader {
        version: (major, minor),
        descr,
        fortran_order,
        shape,
        data_offset,
    })
}

/// Reads only the header of a `.npy` file.
pub fn read_header(path: &Path) -> Result<NpyHeader, NpyError> {
    use std::io::Read;
    let io_err = |source| NpyError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = fs::File::open(path).map_err(io_err)?;
    // Any sane header is far below 1 MiB; read at most that.
    let mut head = Vec::new();
    file.take(1 << 20).read_to_end(&mut head).map_err(io_err)?;
    parse_header(path, &head)
}

// ------------------------------------------------------------------ reading

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    F4,
    F8,
    I4,
    I8,
    U4,
    I2,
}

impl Kind {
    fn size(self) -> usize {
        match self {
            Kind::F4 | Kind::I4 | Kind::U4 => 4,
            Kind::F8 | Kind::I8 => 8,
            Kind::I2 => 2,
        }
    }
}

/// Reads the file, validates header and size, and returns (header, kind, data bytes).
fn load(
    path: &Path,
    accept: &[(&str, Kind)],
    expected_name: &'static str,
) -> Result<(NpyHeader, Kind, Vec<u8>), NpyError> {
    let bytes = fs::read(path).map_err(|source| NpyError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let header = parse_header(path, &bytes)?;
    let descr = header.descr.as_str();
    if descr.starts_with('>') {
        return Err(NpyError::BigEndian {
            path: path.to_path_buf(),
            descr: header.descr.clone(),
        });
    }
    let Some(&(_, kind)) = accept.iter().find(|(d, _)| *d == descr) else {
        return Err(NpyError::DtypeMismatch {
            path: path.to_path_buf(),
            found: header.descr.clone(),
            shape: header.shape.clone(),
            expected: expected_name,
        });
    };
    if header.fortran_order {
        return Err(NpyError::FortranOrder {
            path: path.to_path_buf(),
            descr: header.descr.clone(),
            shape: header.shape.clone(),
        });
    }
    let too_large = || NpyError::TooLarge {
        path: path.to_path_buf(),
        shape: header.shape.clone(),
    };
    let count = header
        .shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(too_large)?;
    let expected = count.checked_mul(kind.size()).ok_or_else(too_large)?;
    let got = bytes.len() - header.data_offset;
    if got != expected {
        return Err(NpyError::SizeMismatch {
            path: path.to_path_buf(),
            descr: header.descr.clone(),
            shape: header.shape.clone(),
            expected,
            got,
        });
    }
    let mut bytes = bytes;
    bytes.drain(..header.data_offset);
    Ok((header, kind, bytes))
}

/// Reads a `<f4` (or `<f8`, converted) array.
pub fn read_f32(path: &Path) -> Result<NpyArray<f32>, NpyError> {
    let (header, kind, bytes) = load(
        path,
        &[("<f4", Kind::F4), ("<f8", Kind::F8)],
        "f32 (expected '<f4' or '<f8')",
    )?;
    let data = match kind {
        Kind::F8 => bytes
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32)
            .collect(),
        _ => bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
    };
    Ok(NpyArray {
        shape: header.shape,
        data,
    })
}

/// Reads a `<i4` (or `<i8`, range-checked) array.
pub fn read_i32(path: &Path) -> Result<NpyArray<i32>, NpyError> {
    let (header, kind, bytes) = load(
        path,
        &[("<i4", Kind::I4), ("<i8", Kind::I8)],
        "i32 (expected '<i4' or '<i8')",
    )?;
    let data = match kind {
        Kind::I8 => {
            let mut out = Vec::with_capacity(bytes.len() / 8);
            for (index, b) in bytes.chunks_exact(8).enumerate() {
                let value = i64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
                let v = i32::try_from(value).map_err(|_| NpyError::OutOfRange {
                    path: path.to_path_buf(),
                    descr: header.descr.clone(),
                    index,
                    value,
                })?;
                out.push(v);
            }
            out
        }
        _ => bytes
            .chunks_exact(4)
            .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
    };
    Ok(NpyArray {
        shape: header.shape,
        data,
    })
}

/// Reads a `<u4` array (raw PRNG keys).
pub fn read_u32(path: &Path) -> Result<NpyArray<u32>, NpyError> {
    let (header, _, bytes) = load(path, &[("<u4", Kind::U4)], "u32 (expected '<u4')")?;
    let data = bytes
        .chunks_exact(4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    Ok(NpyArray {
        shape: header.shape,
        data,
    })
}

/// Reads a `<i2` array (int16 PCM).
pub fn read_i16(path: &Path) -> Result<NpyArray<i16>, NpyError> {
    let (header, _, bytes) = load(path, &[("<i2", Kind::I2)], "i16 (expected '<i2')")?;
    let data = bytes.chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]])).collect();
    Ok(NpyArray {
        shape: header.shape,
        data,
    })
}

// ------------------------------------------------------------------ writing

/// Builds a version 1.0 header (version 2.0 if the dict exceeds 65535 bytes)
/// whose length makes the data start at a multiple of 64 bytes.
fn header_bytes(descr: &str, shape: &[usize]) -> Vec<u8> {
    let shape_str = match shape {
        [] => "()".to_string(),
        [d] => format!("({d},)"),
        dims => format!(
            "({})",
            dims.iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let dict = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape_str}, }}");
    // Version 1.0 stores the header length in a u16; fall back to 2.0 (u32) if needed.
    let v1 = 10 + dict.len() + 1 + 63 <= usize::from(u16::MAX);
    let pre = if v1 { 10 } else { 12 };
    let pad = (64 - (pre + dict.len() + 1) % 64) % 64;
    let header_len = dict.len() + pad + 1;
    let mut out = Vec::with_capacity(pre + header_len);
    out.extend_from_slice(MAGIC);
    if v1 {
        out.extend_from_slice(&[1, 0]);
        out.extend_from_slice(&(header_len as u16).to_le_bytes());
    } else {
        out.extend_from_slice(&[2, 0]);
        out.extend_from_slice(&(header_len as u32).to_le_bytes());
    }
    out.extend_from_slice(dict.as_bytes());
    out.resize(out.len() + pad, b' ');
    out.push(b'\n');
    out
}

fn write_raw(
    path: &Path,
    shape: &[usize],
    descr: &str,
    len: usize,
    fill: impl FnOnce(&mut Vec<u8>),
) -> Result<(), NpyError> {
    let expected = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| NpyError::TooLarge {
            path: path.to_path_buf(),
            shape: shape.to_vec(),
        })?;
    if expected != len {
        return Err(NpyError::ShapeMismatch {
            path: path.to_path_buf(),
            shape: shape.to_vec(),
            expected,
            got: len,
        });
    }
    let mut buf = header_bytes(descr, shape);
    fill(&mut buf);
    let io_err = |source| NpyError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut f = fs::File::create(path).map_err(io_err)?;
    f.write_all(&buf).map_err(io_err)?;
    f.flush().map_err(io_err)?;
    Ok(())
}

/// Writes a `<f4` array (format 1.0, C order).
pub fn write_f32(path: &Path, shape: &[usize], data: &[f32]) -> Result<(), NpyError> {
    write_raw(path, shape, "<f4", data.len(), |buf| {
        buf.reserve(data.len() * 4);
        for x in data {
            buf.extend_from_slice(&x.to_le_bytes());
        }
    })
}

/// Writes a `<i4` array (format 1.0, C order).
pub fn write_i32(path: &Path, shape: &[usize], data: &[i32]) -> Result<(), NpyError> {
    write_raw(path, shape, "<i4", data.len(), |buf| {
        buf.reserve(data.len() * 4);
        for x in data {
            buf.extend_from_slice(&x.to_le_bytes());
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/fixtures/lm/L1");

    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> Self {
            static COUNTER: AtomicU64 = AtomicU64::new(0);
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            let p = std::env::temp_dir().join(format!(
                "mrt_npy_{tag}_{}_{}_{nanos}",
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

    /// Builds a .npy file by hand: version, header dict text (padded), data.
    fn handmade(major: u8, dict: &str, data: &[u8]) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        out.push(major);
        out.push(0);
        let mut h = dict.as_bytes().to_vec();
        h.push(b'\n');
        if major == 1 {
            out.extend_from_slice(&(h.len() as u16).to_le_bytes());
        } else {
            out.extend_from_slice(&(h.len() as u32).to_le_bytes());
        }
        out.extend_from_slice(&h);
        out.extend_from_slice(data);
        out
    }

    #[test]
    fn round_trip_f32() {
        let tmp = TempDir::new("rtf");
        let data: Vec<f32> = (0..24)
            .map(|k| k as f32 * 0.37 - 3.0)
            .chain([f32::NAN, f32::INFINITY, -0.0, f32::MIN_POSITIVE])
            .collect();
        let path = tmp.0.join("a.npy");
        write_f32(&path, &[4, 7], &data).unwrap();
        let back = read_f32(&path).unwrap();
        assert_eq!(back.shape, vec![4, 7]);
        assert_eq!(back.len(), 28);
        assert!(!back.is_empty());
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&back.data), bits(&data));

        // Header layout: v1.0, data at a multiple of 64, header ends with '\n'.
        let bytes = fs::read(&path).unwrap();
        assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00");
        let hlen = le_u16(&bytes[8..10]);
        assert_eq!((10 + hlen) % 64, 0);
        assert_eq!(bytes[10 + hlen - 1], b'\n');
        assert_eq!(bytes.len(), 10 + hlen + 28 * 4);
        let text = std::str::from_utf8(&bytes[10..10 + hlen]).unwrap();
        assert!(
            text.starts_with("{'descr': '<f4', 'fortran_order': False, 'shape': (4, 7), }"),
            "{text}"
        );

        // 0-d, 1-d and empty arrays.
        let p0 = tmp.0.join("scalar.npy");
        write_f32(&p0, &[], &[1.5]).unwrap();
        let s = read_f32(&p0).unwrap();
        assert!(s.shape.is_empty());
        assert_eq!(s.data, vec![1.5]);
        let p1 = tmp.0.join("vec.npy");
        write_f32(&p1, &[5], &[1.0, 2.0, 3.0, 4.0, 5.0]).unwrap();
        assert!(String::from_utf8_lossy(&fs::read(&p1).unwrap()).contains("'shape': (5,)"));
        assert_eq!(read_f32(&p1).unwrap().shape, vec![5]);
        let pe = tmp.0.join("empty.npy");
        write_f32(&pe, &[0, 3], &[]).unwrap();
        let e = read_f32(&pe).unwrap();
        assert_eq!(e.shape, vec![0, 3]);
        assert!(e.is_empty());

        // Shape/data disagreement is refused by the writer.
        let err = write_f32(&tmp.0.join("bad.npy"), &[2, 2], &[1.0; 3]).unwrap_err();
        assert!(
            matches!(
                err,
                NpyError::ShapeMismatch {
                    expected: 4,
                    got: 3,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("bad.npy"));
    }

    #[test]
    fn round_trip_i32() {
        let tmp = TempDir::new("rti");
        let data: Vec<i32> = vec![i32::MIN, -1, 0, 1, 1023, i32::MAX];
        let path = tmp.0.join("b.npy");
        write_i32(&path, &[2, 1, 3], &data).unwrap();
        let back = read_i32(&path).unwrap();
        assert_eq!(
            back,
            NpyArray {
                shape: vec![2, 1, 3],
                data: data.clone()
            }
        );
        let h = read_header(&path).unwrap();
        assert_eq!(h.version, (1, 0));
        assert_eq!(h.descr, "<i4");
        assert!(!h.fortran_order);
        assert_eq!(h.data_offset % 64, 0);
    }

    #[test]
    fn reads_l1_fixtures() {
        let ctx = read_i32(&Path::new(FIXTURES).join("context_tokens.npy")).unwrap();
        assert_eq!(ctx.shape, vec![250, 16]);
        assert_eq!(ctx.len(), 4000);
        assert!(ctx.data[..100 * 16].iter().all(|&x| x == -1));
        assert!(ctx.data[100 * 16..].iter().all(|&x| (0..1024).contains(&x)));
        assert!(ctx.data[100 * 16..].iter().any(|&x| x > 0));

        let enc = read_f32(&Path::new(FIXTURES).join("encoder_out.npy")).unwrap();
        assert_eq!(enc.shape, vec![2, 1006, 32]);
        assert_eq!(enc.len(), 2 * 1006 * 32);
        assert!(enc.data.iter().all(|x| x.is_finite()));
        assert!(enc.data.iter().any(|&x| x != 0.0));

        // Reading a fixture with the wrong reader names both dtypes.
        let err = read_f32(&Path::new(FIXTURES).join("context_tokens.npy")).unwrap_err();
        assert!(matches!(err, NpyError::DtypeMismatch { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.contains("<i4") && msg.contains("f32") && msg.contains("context_tokens.npy"),
            "{msg}"
        );
    }

    #[test]
    fn reads_u32_arrays_and_refuses_them_as_i32() {
        let tmp = TempDir::new("u32");
        let path = tmp.0.join("k.npy");
        let data: Vec<u8> = [2_622_765_856u32, 7].iter().flat_map(|v| v.to_le_bytes()).collect();
        fs::write(&path, handmade(1, "{'descr': '<u4', 'fortran_order': False, 'shape': (2,), }", &data)).unwrap();
        let a = read_u32(&path).unwrap();
        assert_eq!((a.shape, a.data), (vec![2], vec![2_622_765_856, 7]));
        assert!(matches!(read_i32(&path), Err(NpyError::DtypeMismatch { .. })));
    }

    #[test]
    fn truncated_file_is_an_error() {
        let tmp = TempDir::new("trunc");
        let path = tmp.0.join("t.npy");
        write_f32(&path, &[3, 4], &[0.5; 12]).unwrap();
        let mut bytes = fs::read(&path).unwrap();
        bytes.truncate(bytes.len() - 5);
        fs::write(&path, &bytes).unwrap();
        let err = read_f32(&path).unwrap_err();
        match &err {
            NpyError::SizeMismatch {
                expected,
                got,
                shape,
                ..
            } => {
                assert_eq!(*expected, 48);
                assert_eq!(*got, 43);
                assert_eq!(shape, &vec![3, 4]);
            }
            other => panic!("expected SizeMismatch, got {other:?}"),
        }
        let msg = err.to_string();
        assert!(
            msg.contains("t.npy") && msg.contains("[3, 4]") && msg.contains("<f4"),
            "{msg}"
        );

        // Truncated inside the header.
        fs::write(&path, &bytes[..20]).unwrap();
        let err = read_f32(&path).unwrap_err();
        assert!(matches!(err, NpyError::BadHeader { .. }), "{err:?}");
        // Not a .npy at all / missing file.
        fs::write(&path, b"hello").unwrap();
        assert!(matches!(
            read_f32(&path).unwrap_err(),
            NpyError::BadMagic { .. }
        ));
        let err = read_i32(&tmp.0.join("missing.npy")).unwrap_err();
        assert!(matches!(err, NpyError::Io { .. }));
        assert!(err.to_string().contains("missing.npy"));
    }

    #[test]
    fn dtype_mismatch_is_an_error() {
        let tmp = TempDir::new("dtype");
        let path = tmp.0.join("f.npy");
        write_f32(&path, &[2], &[1.0, 2.0]).unwrap();
        let err = read_i32(&path).unwrap_err();
        assert!(matches!(err, NpyError::DtypeMismatch { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.contains("<f4") && msg.contains("i32") && msg.contains("f.npy"),
            "{msg}"
        );

        // Unsupported dtype.
        fs::write(
            &path,
            handmade(
                1,
                "{'descr': '|u1', 'fortran_order': False, 'shape': (2,), }",
                &[1, 2],
            ),
        )
        .unwrap();
        let err = read_i32(&path).unwrap_err();
        assert!(matches!(err, NpyError::DtypeMismatch { .. }), "{err:?}");
        assert!(err.to_string().contains("|u1"));
    }

    #[test]
    fn header_variants_and_conversions() {
        let tmp = TempDir::new("variants");
        let p = tmp.0.join("h.npy");

        // v2.0 header, double-quoted keys, no trailing comma, shape (5,) as <i8.
        let vals: [i64; 5] = [-1, 0, 7, 1023, -(1 << 31)];
        let data: Vec<u8> = vals.iter().flat_map(|v| v.to_le_bytes()).collect();
        fs::write(
            &p,
            handmade(
                2,
                "{\"descr\": \"<i8\", \"shape\": (5,), \"fortran_order\": False}",
                &data,
            ),
        )
        .unwrap();
        let a = read_i32(&p).unwrap();
        assert_eq!(a.shape, vec![5]);
        assert_eq!(a.data, vec![-1, 0, 7, 1023, i32::MIN]);

        // <i8 out of range.
        let data: Vec<u8> = [1i64, 1 << 40]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        fs::write(
            &p,
            handmade(
                1,
                "{'descr': '<i8', 'fortran_order': False, 'shape': (2,), }",
                &data,
            ),
        )
        .unwrap();
        let err = read_i32(&p).unwrap_err();
        assert!(
            matches!(
                err,
                NpyError::OutOfRange {
                    index: 1,
                    value: 1_099_511_627_776,
                    ..
                }
            ),
            "{err:?}"
        );

        // v3.0, 0-d <f8.
        fs::write(
            &p,
            handmade(
                3,
                "{'descr': '<f8', 'fortran_order': False, 'shape': (), }",
                &2.25f64.to_le_bytes(),
            ),
        )
        .unwrap();
        let a = read_f32(&p).unwrap();
        assert!(a.shape.is_empty());
        assert_eq!(a.data, vec![2.25]);

        // Fortran order.
        fs::write(
            &p,
            handmade(
                1,
                "{'descr': '<f4', 'fortran_order': True, 'shape': (1, 2), }",
                &[0; 8],
            ),
        )
        .unwrap();
        let err = read_f32(&p).unwrap_err();
        assert!(matches!(err, NpyError::FortranOrder { .. }), "{err:?}");
        assert!(err.to_string().contains("h.npy"));

        // Big endian.
        fs::write(
            &p,
            handmade(
                1,
                "{'descr': '>f4', 'fortran_order': False, 'shape': (2,), }",
                &[0; 8],
            ),
        )
        .unwrap();
        let err = read_f32(&p).unwrap_err();
        assert!(matches!(err, NpyError::BigEndian { .. }), "{err:?}");
        assert!(err.to_string().contains(">f4"));

        // Too much data is also a size mismatch.
        fs::write(
            &p,
            handmade(
                1,
                "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }",
                &[0; 12],
            ),
        )
        .unwrap();
        assert!(matches!(
            read_f32(&p).unwrap_err(),
            NpyError::SizeMismatch {
                expected: 8,
                got: 12,
                ..
            }
        ));

        // Malformed headers.
        for dict in [
            "{'descr': '<f4', 'fortran_order': False, 'shape': (2,}",
            "{'descr': '<f4', 'fortran_order': False}",
            "{'descr': '<f4', 'fortran_order': False, 'shape': (-2,), }",
            "{'descr': '<f4', 'fortran_order': 0, 'shape': (2,), }",
            "['descr']",
            "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2,), }",
            "((((((((((((((((((((((((((((((((((((((((",
        ] {
            fs::write(&p, handmade(1, dict, &[0; 8])).unwrap();
            let err = read_f32(&p).unwrap_err();
            assert!(matches!(err, NpyError::BadHeader { .. }), "{dict}: {err:?}");
            assert!(err.to_string().contains("h.npy"));
        }

        // Unsupported version.
        let mut bytes = handmade(
            1,
            "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }",
            &[0; 8],
        );
        bytes[6] = 4;
        fs::write(&p, &bytes).unwrap();
        assert!(matches!(
            read_f32(&p).unwrap_err(),
            NpyError::UnsupportedVersion { major: 4, .. }
        ));
    }
}
