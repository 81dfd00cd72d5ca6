//! Constant tensors of a TFLite flatbuffer (`*.tflite`, file identifier `TFL3`), e.g. MRT2's
//! MusicCoCa towers; and a minimal writer for tests and tiny models.
//!
//! ```text
//!  byte 0: u32 → Model            bytes 4..8: "TFL3"
//!  Model      {0 version, 1 operator_codes, 2 subgraphs: [SubGraph], 3 description,
//!              4 buffers: [Buffer]  (buffers[0] is the empty sentinel)}
//!  OperatorCode {0 deprecated_builtin_code: byte, 1 custom_code, 2 version, 3 builtin_code: int}
//!             (the operator is max(deprecated, builtin): codes > 127 store 127 in the byte)
//!  SubGraph   {0 tensors: [Tensor], 1 inputs: [int], 2 outputs: [int], 3 operators, 4 name}
//!  Operator   {0 opcode_index: uint, 1 inputs: [int], 2 outputs: [int] (tensor indices of its
//!              subgraph, −1 = none), 3 builtin_options_type: ubyte, 4 builtin_options: table}
//!             WHILE's WhileOptions (union tag 93) {0 cond_subgraph_index, 1 body_subgraph_index}
//!  Tensor     {0 shape: [int], 1 type: byte, 2 buffer: uint, 3 name: string, …}
//!  Buffer     {0 data: [ubyte] (inline), 1 offset: ulong, 2 size: ulong}
//!             offset > 1 → data = file[offset .. offset+size] (the >2 GB "external" scheme)
//!
//!  table at t:  i32 soffset ─→ vtable at t − soffset: u16 vtable bytes · u16 table bytes ·
//!               u16 field offset per id (0 = absent, use the default)
//!  reference field at p (vector, string, table): u32 u → object at p + u (always forward)
//!  vector / string: u32 count, then elements (strings: bytes + NUL)
//! ```
//!
//! The whole file is read into memory (the MRT2 files are ≤ 420 MB) and walked once at open;
//! every offset, count and range is checked against the file, so a corrupt file is an error
//! naming the file and position, never a panic. Tensor data is copied out on request (payloads
//! are not aligned in the file). Where the engine uses it: `engine/NOTES.md`, "MusicCoCa".

use std::fs;
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};

use crate::formats::{bf16_to_f32, f16_to_f32};

/// The flatbuffer file identifier of TFLite models (bytes 4..8).
pub const FILE_IDENTIFIER: &[u8; 4] = b"TFL3";

/// TFLite `TensorType` (schema.fbs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TensorType {
    Float32,
    Float16,
    Int32,
    UInt8,
    Int64,
    String,
    Bool,
    Int16,
    Int8,
    Float64,
    BFloat16,
    Other(u8),
}

impl TensorType {
    pub fn from_code(code: u8) -> Self {
        match code {
            0 => TensorType::Float32,
            1 => TensorType::Float16,
            2 => TensorType::Int32,
            3 => TensorType::UInt8,
            4 => TensorType::Int64,
            5 => TensorType::String,
            6 => TensorType::Bool,
            7 => TensorType::Int16,
            9 => TensorType::Int8,
            10 => TensorType::Float64,
            18 => TensorType::BFloat16,
            c => TensorType::Other(c),
        }
    }

    pub fn code(self) -> u8 {
        match self {
            TensorType::Float32 => 0,
            TensorType::Float16 => 1,
            TensorType::Int32 => 2,
            TensorType::UInt8 => 3,
            TensorType::Int64 => 4,
            TensorType::String => 5,
            TensorType::Bool => 6,
            TensorType::Int16 => 7,
            TensorType::Int8 => 9,
            TensorType::Float64 => 10,
            TensorType::BFloat16 => 18,
            TensorType::Other(c) => c,
        }
    }

    /// Bytes per element for fixed-size types.
    pub fn size(self) -> Option<usize> {
        match self {
            TensorType::Float64 | TensorType::Int64 => Some(8),
            TensorType::Float32 | TensorType::Int32 => Some(4),
            TensorType::Float16 | TensorType::BFloat16 | TensorType::Int16 => Some(2),
            TensorType::UInt8 | TensorType::Int8 | TensorType::Bool => Some(1),
            TensorType::String | TensorType::Other(_) => None,
        }
    }
}

/// One tensor of one subgraph.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorEntry {
    pub subgraph: usize,
    /// Index in its subgraph's tensor list.
    pub index: usize,
    pub name: String,
    /// Dimensions; a dynamic (negative) dimension of an activation tensor reads as 0.
    pub shape: Vec<usize>,
    pub dtype: TensorType,
    /// Index into the model's buffers (0 = no data).
    pub buffer: usize,
    /// Byte length of the tensor's constant data (0 for activations).
    pub data_len: usize,
}

impl TensorEntry {
    /// Number of elements (1 for a scalar); `None` on overflow.
    pub fn elements(&self) -> Option<usize> {
        self.shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d))
    }

    /// True when the tensor carries constant data.
    pub fn is_constant(&self) -> bool {
        self.data_len > 0
    }

    /// The name up to the first `;`: the converter joins the names of every op sharing a
    /// constant (`a/key/einsum;b/value/einsum`), the first is the tensor's own.
    pub fn first_name(&self) -> &str {
        self.name.split(';').next().unwrap_or("")
    }
}

/// `BuiltinOperator` codes (schema.fbs) the engine looks for.
pub mod builtin {
    pub const FULLY_CONNECTED: i32 = 9;
    pub const GATHER: i32 = 36;
    pub const WHILE: i32 = 119;
    /// The `BuiltinOptions` union tag of `WhileOptions`.
    pub const WHILE_OPTIONS_TAG: u8 = 93;
}

/// One operator of a subgraph.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operator {
    /// `BuiltinOperator` code (see [`builtin`]); 32 (`CUSTOM`) for custom operators.
    pub builtin: i32,
    /// Tensor indices into the operator's subgraph; −1 is an absent optional input.
    pub inputs: Vec<i32>,
    pub outputs: Vec<i32>,
    /// `(cond, body)` subgraph indices of a WHILE operator.
    pub while_subgraphs: Option<(usize, usize)>,
}

/// One subgraph: its name, inputs/outputs and operators in execution order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subgraph {
    pub name: String,
    pub inputs: Vec<i32>,
    pub outputs: Vec<i32>,
    pub operators: Vec<Operator>,
    /// The subgraph's tensors within the model's flat tensor list.
    tensors: Range<usize>,
}

/// Errors of the TFLite reader/writer; each names the file, and the tensor where there is one.
#[derive(Debug, thiserror::Error)]
pub enum TfLiteError {
    #[error("I/O error on {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} is not a TFLite model: file identifier {found:?}, expected \"TFL3\"")]
    NotTfLite { path: PathBuf, found: String },
    #[error("corrupt TFLite file {path}: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("{path}: tensor {tensor:?}: {reason}")]
    Tensor { path: PathBuf, tensor: String, reason: String },
    #[error("{path}: tensor {tensor:?} {shape:?}: non-finite value {value} at flat index {index}")]
    NonFinite { path: PathBuf, tensor: String, shape: Vec<usize>, index: usize, value: f32 },
}

/// An opened TFLite model: the file bytes and its tensor table.
#[derive(Debug)]
pub struct TfLite {
    path: PathBuf,
    bytes: Vec<u8>,
    tensors: Vec<TensorEntry>,
    subgraphs: Vec<Subgraph>,
    /// Byte range of each buffer's data within `bytes` (empty for none).
    buffers: Vec<Range<usize>>,
    description: Option<String>,
}

impl TfLite {
    pub fn open(path: &Path) -> Result<Self, TfLiteError> {
        let bytes = fs::read(path).map_err(|source| TfLiteError::Io { path: path.to_path_buf(), source })?;
        Self::from_bytes(path, bytes)
    }

    /// Parses a model held in memory; `path` only labels errors.
    pub fn from_bytes(path: &Path, bytes: Vec<u8>) -> Result<Self, TfLiteError> {
        let Parsed { tensors, subgraphs, buffers, description } = parse(path, &bytes)?;
        Ok(TfLite { path: path.to_path_buf(), bytes, tensors, subgraphs, buffers, description })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `Model.description` (the converter writes "MLIR Converted.").
    pub fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }

    /// Every tensor of every subgraph, in file order.
    pub fn tensors(&self) -> impl Iterator<Item = &TensorEntry> + '_ {
        self.tensors.iter()
    }

    /// The subgraphs (0 is the main graph; WHILE bodies and conditions follow).
    pub fn subgraphs(&self) -> &[Subgraph] {
        &self.subgraphs
    }

    /// The tensors of subgraph `s` in index order (empty for a subgraph that does not exist).
    pub fn subgraph_tensors(&self, s: usize) -> &[TensorEntry] {
        self.subgraphs.get(s).and_then(|g| self.tensors.get(g.tensors.clone())).unwrap_or(&[])
    }

    /// Tensor `index` of subgraph `s` (an operator input; −1 and out-of-range give `None`).
    pub fn tensor(&self, s: usize, index: i32) -> Option<&TensorEntry> {
        usize::try_from(index).ok().and_then(|i| self.subgraph_tensors(s).get(i))
    }

    /// Tensors whose name contains `pattern`.
    pub fn find<'s>(&'s self, pattern: &'s str) -> impl Iterator<Item = &'s TensorEntry> + 's {
        self.tensors.iter().filter(move |t| t.name.contains(pattern))
    }

    /// The first tensor named exactly `name`.
    pub fn get(&self, name: &str) -> Option<&TensorEntry> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// The raw bytes of a tensor's buffer (empty for activations).
    pub fn data(&self, tensor: &TensorEntry) -> &[u8] {
        self.buffers.get(tensor.buffer).and_then(|r| self.bytes.get(r.clone())).unwrap_or(&[])
    }

    /// Reads a constant FLOAT32, FLOAT16, BFLOAT16 or FLOAT64 tensor as f32, checking its byte
    /// length against shape and type and that every value is finite.
    pub fn read_f32(&self, tensor: &TensorEntry) -> Result<Vec<f32>, TfLiteError> {
        let err = |reason: String| TfLiteError::Tensor { path: self.path.clone(), tensor: tensor.name.clone(), reason };
        let width = match tensor.dtype {
            TensorType::Float32 | TensorType::Float16 | TensorType::BFloat16 | TensorType::Float64 => {
                tensor.dtype.size().unwrap_or(4)
            }
            t => return Err(err(format!("type {t:?} is not a float type"))),
        };
        let raw = self.data(tensor);
        if raw.is_empty() {
            return Err(err(format!("no constant data (buffer {})", tensor.buffer)));
        }
        let want = tensor.elements().and_then(|n| n.checked_mul(width));
        if want != Some(raw.len()) {
            return Err(err(format!(
                "buffer {} holds {} bytes, shape {:?} of {:?} needs {}",
                tensor.buffer,
                raw.len(),
                tensor.shape,
                tensor.dtype,
                want.map_or("more than usize::MAX".to_string(), |n| n.to_string())
            )));
        }
        let values: Vec<f32> = match tensor.dtype {
            TensorType::Float32 => raw.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
            TensorType::Float16 => raw.chunks_exact(2).map(|b| f16_to_f32(u16::from_le_bytes([b[0], b[1]]))).collect(),
            TensorType::BFloat16 => raw.chunks_exact(2).map(|b| bf16_to_f32(u16::from_le_bytes([b[0], b[1]]))).collect(),
            _ => raw
                .chunks_exact(8)
                .map(|b| f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32)
                .collect(),
        };
        if let Some((index, &value)) = values.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(TfLiteError::NonFinite {
                path: self.path.clone(),
                tensor: tensor.name.clone(),
                shape: tensor.shape.clone(),
                index,
                value,
            });
        }
        Ok(values)
    }
}

// ------------------------------------------------------------------------------------------------
// Reading

/// A bounds-checked view of a flatbuffer.
struct Fb<'a> {
    buf: &'a [u8],
    path: &'a Path,
}

/// A located table: its position and its vtable's field slots.
#[derive(Clone, Copy)]
struct Table {
    pos: usize,
    vtable: usize,
    /// Number of field slots in the vtable.
    slots: usize,
    /// Inline size of the table in bytes.
    inline: usize,
}

impl<'a> Fb<'a> {
    fn corrupt(&self, reason: String) -> TfLiteError {
        TfLiteError::Corrupt { path: self.path.to_path_buf(), reason }
    }

    fn bytes(&self, pos: usize, n: usize, what: &str) -> Result<&'a [u8], TfLiteError> {
        pos.checked_add(n).and_then(|end| self.buf.get(pos..end)).ok_or_else(|| {
            self.corrupt(format!("{what} at byte {pos} (+{n}) lies past the end of the file ({} bytes)", self.buf.len()))
        })
    }

    fn u16(&self, pos: usize, what: &str) -> Result<u16, TfLiteError> {
        let b = self.bytes(pos, 2, what)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&self, pos: usize, what: &str) -> Result<u32, TfLiteError> {
        let b = self.bytes(pos, 4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&self, pos: usize, what: &str) -> Result<u64, TfLiteError> {
        let b = self.bytes(pos, 8, what)?;
        Ok(u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
    }

    /// Follows the uoffset stored at `pos`.
    fn follow(&self, pos: usize, what: &str) -> Result<usize, TfLiteError> {
        let off = self.u32(pos, what)? as usize;
        let target = pos + off; // pos ≤ buf.len() and off < 2^32: no overflow on 64-bit
        if target >= self.buf.len() {
            return Err(self.corrupt(format!("{what}: offset at byte {pos} points to {target}, past the end")));
        }
        Ok(target)
    }

    fn table(&self, pos: usize, what: &str) -> Result<Table, TfLiteError> {
        let soff = self.u32(pos, what)? as i32;
        let vtable = i64::try_from(pos).unwrap_or(i64::MAX) - i64::from(soff);
        let vtable = usize::try_from(vtable)
            .map_err(|_| self.corrupt(format!("{what}: table at byte {pos} has its vtable before the file start")))?;
        let vt_len = self.u16(vtable, what)? as usize;
        let inline = self.u16(vtable + 2, what)? as usize;
        if vt_len < 4 || !vt_len.is_multiple_of(2) {
            return Err(self.corrupt(format!("{what}: vtable at byte {vtable} has size {vt_len}")));
        }
        self.bytes(vtable, vt_len, what)?;
        self.bytes(pos, inline.max(4), what)?;
        Ok(Table { pos, vtable, slots: (vt_len - 4) / 2, inline })
    }

    /// Position of field `id` of `t`, or `None` when absent; checks `size` bytes fit the table.
    fn field(&self, t: Table, id: usize, size: usize, what: &str) -> Result<Option<usize>, TfLiteError> {
        if id >= t.slots {
            return Ok(None);
        }
        let off = self.u16(t.vtable + 4 + 2 * id, what)? as usize;
        if off == 0 {
            return Ok(None);
        }
        if off < 4 || off + size > t.inline {
            return Err(self.corrupt(format!(
                "{what}: field {id} of the table at byte {} at offset {off} (+{size}) lies outside its {} inline bytes",
                t.pos, t.inline
            )));
        }
        Ok(Some(t.pos + off))
    }

    fn field_u8(&self, t: Table, id: usize, default: u8, what: &str) -> Result<u8, TfLiteError> {
        Ok(match self.field(t, id, 1, what)? {
            Some(p) => self.bytes(p, 1, what)?[0],
            None => default,
        })
    }

    fn field_u32(&self, t: Table, id: usize, default: u32, what: &str) -> Result<u32, TfLiteError> {
        match self.field(t, id, 4, what)? {
            Some(p) => self.u32(p, what),
            None => Ok(default),
        }
    }

    fn field_u64(&self, t: Table, id: usize, what: &str) -> Result<u64, TfLiteError> {
        match self.field(t, id, 8, what)? {
            Some(p) => self.u64(p, what),
            None => Ok(0),
        }
    }

    /// A vector field: (first element position, count), with `count × elem` bytes checked.
    fn vector(&self, t: Table, id: usize, elem: usize, what: &str) -> Result<Option<(usize, usize)>, TfLiteError> {
        let Some(p) = self.field(t, id, 4, what)? else { return Ok(None) };
        let v = self.follow(p, what)?;
        let n = self.u32(v, what)? as usize;
        let total = n.checked_mul(elem).ok_or_else(|| self.corrupt(format!("{what}: vector of {n} elements")))?;
        self.bytes(v + 4, total, what)?;
        Ok(Some((v + 4, n)))
    }

    fn string(&self, t: Table, id: usize, what: &str) -> Result<Option<String>, TfLiteError> {
        let Some((start, n)) = self.vector(t, id, 1, what)? else { return Ok(None) };
        Ok(Some(String::from_utf8_lossy(&self.buf[start..start + n]).into_owned()))
    }

    /// A vector of tables.
    fn tables(&self, t: Table, id: usize, what: &str) -> Result<Vec<Table>, TfLiteError> {
        let Some((start, n)) = self.vector(t, id, 4, what)? else { return Ok(Vec::new()) };
        (0..n).map(|i| self.follow(start + 4 * i, what).and_then(|p| self.table(p, what))).collect()
    }
}

struct Parsed {
    tensors: Vec<TensorEntry>,
    subgraphs: Vec<Subgraph>,
    buffers: Vec<Range<usize>>,
    description: Option<String>,
}

impl Fb<'_> {
    /// A `[int]` vector field (absent = empty).
    fn ints(&self, t: Table, id: usize, what: &str) -> Result<Vec<i32>, TfLiteError> {
        match self.vector(t, id, 4, what)? {
            Some((start, n)) => (0..n).map(|k| self.u32(start + 4 * k, what).map(|v| v as i32)).collect(),
            None => Ok(Vec::new()),
        }
    }

    /// An optional table field.
    fn sub_table(&self, t: Table, id: usize, what: &str) -> Result<Option<Table>, TfLiteError> {
        match self.field(t, id, 4, what)? {
            Some(p) => Ok(Some(self.table(self.follow(p, what)?, what)?)),
            None => Ok(None),
        }
    }
}

fn parse(path: &Path, buf: &[u8]) -> Result<Parsed, TfLiteError> {
    let fb = Fb { buf, path };
    if buf.len() < 8 || &buf[4..8] != FILE_IDENTIFIER {
        let found = buf.get(4..8).map_or_else(|| format!("(file of {} bytes)", buf.len()), |b| String::from_utf8_lossy(b).into_owned());
        return Err(TfLiteError::NotTfLite { path: path.to_path_buf(), found });
    }
    let model = fb.table(fb.follow(0, "root offset")?, "Model")?;
    let description = fb.string(model, 3, "Model.description")?;

    let mut buffers = Vec::new();
    for (i, b) in fb.tables(model, 4, "Model.buffers")?.into_iter().enumerate() {
        let what = format!("buffer {i}");
        let offset = fb.field_u64(b, 1, &what)?;
        let range = if offset > 1 {
            let size = fb.field_u64(b, 2, &what)?;
            let end = offset.checked_add(size).filter(|&e| e <= buf.len() as u64).ok_or_else(|| {
                fb.corrupt(format!("{what}: external data at bytes {offset}..+{size} lies past the end ({} bytes)", buf.len()))
            })?;
            offset as usize..end as usize
        } else {
            match fb.vector(b, 0, 1, &what)? {
                Some((start, n)) => start..start + n,
                None => 0..0,
            }
        };
        buffers.push(range);
    }

    let mut opcodes = Vec::new();
    for (i, c) in fb.tables(model, 1, "Model.operator_codes")?.into_iter().enumerate() {
        let what = format!("operator code {i}");
        let deprecated = fb.field_u8(c, 0, 0, &what)? as i8;
        let code = fb.field_u32(c, 3, 0, &what)? as i32;
        opcodes.push(code.max(i32::from(deprecated)));
    }

    let mut tensors = Vec::new();
    let mut subgraphs = Vec::new();
    for (s, sg) in fb.tables(model, 2, "Model.subgraphs")?.into_iter().enumerate() {
        let first = tensors.len();
        for (i, t) in fb.tables(sg, 0, &format!("subgraph {s} tensors"))?.into_iter().enumerate() {
            let what = format!("subgraph {s} tensor {i}");
            let name = fb.string(t, 3, &what)?.unwrap_or_default();
            let shape = match fb.vector(t, 0, 4, &what)? {
                Some((start, n)) => {
                    (0..n).map(|k| fb.u32(start + 4 * k, &what).map(|d| usize::try_from(d as i32).unwrap_or(0))).collect::<Result<_, _>>()?
                }
                None => Vec::new(),
            };
            let dtype = TensorType::from_code(fb.field_u8(t, 1, 0, &what)?);
            let buffer = fb.field_u32(t, 2, 0, &what)? as usize;
            let data_len = buffers.get(buffer).map(|r| r.len()).ok_or_else(|| {
                fb.corrupt(format!("{what} ({name:?}) uses buffer {buffer} but the model has {}", buffers.len()))
            })?;
            tensors.push(TensorEntry { subgraph: s, index: i, name, shape, dtype, buffer, data_len });
        }
        let count = tensors.len() - first;
        let what = format!("subgraph {s}");
        let check = |v: Vec<i32>, what: &str| -> Result<Vec<i32>, TfLiteError> {
            match v.iter().find(|&&x| x < -1 || x >= count as i32) {
                Some(x) => Err(fb.corrupt(format!("{what}: tensor index {x} outside the subgraph's {count} tensors"))),
                None => Ok(v),
            }
        };
        let inputs = check(fb.ints(sg, 1, &what)?, &what)?;
        let outputs = check(fb.ints(sg, 2, &what)?, &what)?;
        let name = fb.string(sg, 4, &what)?.unwrap_or_default();
        let mut operators = Vec::new();
        for (k, op) in fb.tables(sg, 3, &what)?.into_iter().enumerate() {
            let what = format!("subgraph {s} operator {k}");
            let index = fb.field_u32(op, 0, 0, &what)? as usize;
            let builtin = *opcodes
                .get(index)
                .ok_or_else(|| fb.corrupt(format!("{what}: opcode index {index} but the model has {} operator codes", opcodes.len())))?;
            let inputs = check(fb.ints(op, 1, &what)?, &what)?;
            let outputs = check(fb.ints(op, 2, &what)?, &what)?;
            let while_subgraphs = match (builtin, fb.sub_table(op, 4, &what)?) {
                (builtin::WHILE, Some(o)) => {
                    let cond = fb.field_u32(o, 0, 0, &what)? as i32;
                    let body = fb.field_u32(o, 1, 0, &what)? as i32;
                    match (usize::try_from(cond), usize::try_from(body)) {
                        (Ok(c), Ok(b)) => Some((c, b)),
                        _ => return Err(fb.corrupt(format!("{what}: WHILE with subgraphs {cond} / {body}"))),
                    }
                }
                _ => None,
            };
            operators.push(Operator { builtin, inputs, outputs, while_subgraphs });
        }
        subgraphs.push(Subgraph { name, inputs, outputs, operators, tensors: first..tensors.len() });
    }
    let n = subgraphs.len();
    for (s, g) in subgraphs.iter().enumerate() {
        for (k, op) in g.operators.iter().enumerate() {
            if let Some((c, b)) = op.while_subgraphs.filter(|&(c, b)| c >= n || b >= n) {
                return Err(fb.corrupt(format!("subgraph {s} operator {k}: WHILE names subgraphs {c} / {b} of {n}")));
            }
        }
    }
    Ok(Parsed { tensors, subgraphs, buffers, description })
}

// ------------------------------------------------------------------------------------------------
// Writing

/// A field value for [`Builder::table`].
enum Field {
    U8(u8),
    U32(u32),
    #[cfg_attr(not(test), allow(dead_code))] // only the external-buffer test writes ulongs
    U64(u64),
    /// A reference, patched later with [`Builder::patch`].
    Ref,
}

impl Field {
    fn size(&self) -> usize {
        match self {
            Field::U8(_) => 1,
            Field::U32(_) | Field::Ref => 4,
            Field::U64(_) => 8,
        }
    }
}

/// Forward flatbuffer builder: objects are laid out front to back and references (which must
/// point forward) are patched once their target is written.
#[derive(Default)]
struct Builder {
    buf: Vec<u8>,
}

impl Builder {
    /// Zero-pads so that `len + extra` is a multiple of `align`.
    fn pad(&mut self, align: usize, extra: usize) {
        while !(self.buf.len() + extra).is_multiple_of(align) {
            self.buf.push(0);
        }
    }

    fn patch(&mut self, at: usize, target: usize) {
        let off = (target - at) as u32;
        self.buf[at..at + 4].copy_from_slice(&off.to_le_bytes());
    }

    /// Writes a vtable and then its table (fields by id); returns the table position and, per
    /// `Ref` field in order, the slot to patch. Inline layout: soffset, then the fields by
    /// decreasing size, each at its natural alignment (the table starts 8-aligned).
    fn table(&mut self, fields: &[(usize, Field)]) -> (usize, Vec<usize>) {
        let slots = fields.iter().map(|(id, _)| id + 1).max().unwrap_or(0);
        let mut order: Vec<&(usize, Field)> = fields.iter().collect();
        order.sort_by_key(|(_, f)| std::cmp::Reverse(f.size()));
        let mut offsets = vec![0u16; slots];
        let mut at = 4usize;
        for (id, f) in &order {
            at = at.next_multiple_of(f.size());
            offsets[*id] = at as u16;
            at += f.size();
        }
        let inline = at;
        self.pad(2, 0);
        let vt_len = 4 + 2 * slots;
        // The table (right after the vtable) must start 8-aligned.
        self.pad(8, vt_len);
        let vtable = self.buf.len();
        self.buf.extend_from_slice(&(vt_len as u16).to_le_bytes());
        self.buf.extend_from_slice(&(inline as u16).to_le_bytes());
        for o in &offsets {
            self.buf.extend_from_slice(&o.to_le_bytes());
        }
        let table = self.buf.len();
        self.buf.extend_from_slice(&((table - vtable) as i32).to_le_bytes());
        self.buf.resize(table + inline, 0);
        let mut refs = Vec::new();
        for (id, f) in fields {
            let p = table + offsets[*id] as usize;
            match f {
                Field::U8(v) => self.buf[p] = *v,
                Field::U32(v) => self.buf[p..p + 4].copy_from_slice(&v.to_le_bytes()),
                Field::U64(v) => self.buf[p..p + 8].copy_from_slice(&v.to_le_bytes()),
                Field::Ref => refs.push(p),
            }
        }
        (table, refs)
    }

    fn string(&mut self, s: &str) -> usize {
        self.pad(4, 0);
        let pos = self.buf.len();
        self.buf.extend_from_slice(&(s.len() as u32).to_le_bytes());
        self.buf.extend_from_slice(s.as_bytes());
        self.buf.push(0);
        pos
    }

    fn vec_i32(&mut self, v: &[i32]) -> usize {
        self.pad(4, 0);
        let pos = self.buf.len();
        self.buf.extend_from_slice(&(v.len() as u32).to_le_bytes());
        for x in v {
            self.buf.extend_from_slice(&x.to_le_bytes());
        }
        pos
    }

    /// A `[ubyte]` whose elements start 16-aligned (`force_align: 16` on `Buffer.data`).
    fn vec_bytes16(&mut self, b: &[u8]) -> usize {
        self.pad(16, 4);
        let pos = self.buf.len();
        self.buf.extend_from_slice(&(b.len() as u32).to_le_bytes());
        self.buf.extend_from_slice(b);
        pos
    }

    /// A vector of `n` references; returns its position and the slots to patch.
    fn vec_refs(&mut self, n: usize) -> (usize, Vec<usize>) {
        self.pad(4, 0);
        let pos = self.buf.len();
        self.buf.extend_from_slice(&(n as u32).to_le_bytes());
        let slots = (0..n).map(|i| pos + 4 + 4 * i).collect();
        self.buf.resize(pos + 4 + 4 * n, 0);
        (pos, slots)
    }
}

/// A tensor for [`build_tflite_graph`]: constant data (little-endian bytes) or none (an
/// activation).
#[derive(Clone, Debug)]
pub struct GraphTensor<'a> {
    pub name: &'a str,
    pub shape: &'a [usize],
    pub dtype: TensorType,
    pub data: Option<&'a [u8]>,
}

/// An operator for [`build_tflite_graph`] (a [`builtin`] code; tensor indices of its subgraph).
#[derive(Clone, Debug, Default)]
pub struct GraphOp {
    pub builtin: i32,
    pub inputs: Vec<i32>,
    pub outputs: Vec<i32>,
    /// `(cond, body)` for a WHILE: written as its `WhileOptions`.
    pub while_subgraphs: Option<(usize, usize)>,
}

/// A subgraph for [`build_tflite_graph`].
#[derive(Clone, Debug, Default)]
pub struct GraphSubgraph<'a> {
    pub name: &'a str,
    pub tensors: Vec<GraphTensor<'a>>,
    pub inputs: Vec<i32>,
    pub outputs: Vec<i32>,
    pub operators: Vec<GraphOp>,
}

/// Serialises a model holding only constant tensors: one subgraph named "main" without
/// operators, tensor i stored in buffer i + 1 (buffer 0 is the empty sentinel), data inline and
/// 16-aligned. `tensors` are (name, shape, type, little-endian bytes).
pub fn build_tflite(path: &Path, tensors: &[(&str, &[usize], TensorType, &[u8])]) -> Result<Vec<u8>, TfLiteError> {
    let tensors = tensors.iter().map(|&(name, shape, dtype, data)| GraphTensor { name, shape, dtype, data: Some(data) }).collect();
    build_tflite_graph(path, &[GraphSubgraph { name: "main", tensors, ..Default::default() }])
}

/// Serialises a model of several subgraphs with operators, as the converter lays them out:
/// every constant in a buffer of its own (numbered in order from 1, data inline and 16-aligned),
/// activations in the empty buffer 0, one operator code per distinct builtin (in order of first
/// use; `deprecated_builtin_code` = min(code, 127)). Tensor and operator indices are checked.
pub fn build_tflite_graph(path: &Path, subgraphs: &[GraphSubgraph<'_>]) -> Result<Vec<u8>, TfLiteError> {
    let bad = |tensor: &str, reason: String| TfLiteError::Tensor { path: path.to_path_buf(), tensor: tensor.to_string(), reason };
    let mut opcodes: Vec<i32> = Vec::new();
    for (s, g) in subgraphs.iter().enumerate() {
        for t in &g.tensors {
            let dims_fit = t.shape.iter().all(|&d| i32::try_from(d).is_ok());
            if let Some(data) = t.data {
                let want = t.shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d)).zip(t.dtype.size()).and_then(|(n, w)| n.checked_mul(w));
                if want != Some(data.len()) || !dims_fit {
                    return Err(bad(t.name, format!("{} bytes do not match shape {:?} of {:?}", data.len(), t.shape, t.dtype)));
                }
            } else if !dims_fit {
                return Err(bad(t.name, format!("shape {:?} does not fit i32", t.shape)));
            }
        }
        let n = g.tensors.len() as i32;
        let indices = g.inputs.iter().chain(&g.outputs).chain(g.operators.iter().flat_map(|o| o.inputs.iter().chain(&o.outputs)));
        if let Some(i) = indices.copied().find(|&i| i < -1 || i >= n) {
            return Err(bad(g.name, format!("subgraph {s}: tensor index {i} outside its {n} tensors")));
        }
        for op in &g.operators {
            if let Some((c, b)) = op.while_subgraphs.filter(|&(c, b)| c >= subgraphs.len() || b >= subgraphs.len()) {
                return Err(bad(g.name, format!("subgraph {s}: WHILE names subgraphs {c} / {b} of {}", subgraphs.len())));
            }
            if !opcodes.contains(&op.builtin) {
                opcodes.push(op.builtin);
            }
        }
    }
    let mut b = Builder::default();
    b.buf.extend_from_slice(&[0; 4]);
    b.buf.extend_from_slice(FILE_IDENTIFIER);

    let (model, r) = b.table(&[(0, Field::U32(3)), (1, Field::Ref), (2, Field::Ref), (3, Field::Ref), (4, Field::Ref)]);
    b.patch(0, model);
    let (opcodes_slot, subgraphs_slot, description, buffers_slot) = (r[0], r[1], r[2], r[3]);
    let (v, code_slots) = b.vec_refs(opcodes.len());
    b.patch(opcodes_slot, v);
    for (slot, &code) in code_slots.iter().zip(&opcodes) {
        let deprecated = code.clamp(0, 127) as u8;
        let (t, _) = b.table(&[(0, Field::U8(deprecated)), (2, Field::U32(1)), (3, Field::U32(code as u32))]);
        b.patch(*slot, t);
    }
    let s = b.string("MRT Live tflite writer");
    b.patch(description, s);

    let ints = |b: &mut Builder, slot: usize, v: &[i32]| {
        let p = b.vec_i32(v);
        b.patch(slot, p);
    };
    let (v, sg_slots) = b.vec_refs(subgraphs.len());
    b.patch(subgraphs_slot, v);
    let mut payloads: Vec<&[u8]> = Vec::new();
    for (g, slot) in subgraphs.iter().zip(sg_slots) {
        let (sg, r) = b.table(&[(0, Field::Ref), (1, Field::Ref), (2, Field::Ref), (3, Field::Ref), (4, Field::Ref)]);
        b.patch(slot, sg);
        let (v, t_slots) = b.vec_refs(g.tensors.len());
        b.patch(r[0], v);
        ints(&mut b, r[1], &g.inputs);
        ints(&mut b, r[2], &g.outputs);
        let (v, op_slots) = b.vec_refs(g.operators.len());
        b.patch(r[3], v);
        let s = b.string(g.name);
        b.patch(r[4], s);
        for (t, slot) in g.tensors.iter().zip(t_slots) {
            let buffer = match t.data {
                Some(d) => {
                    payloads.push(d);
                    payloads.len() as u32
                }
                None => 0,
            };
            let (tt, tr) = b.table(&[(0, Field::Ref), (1, Field::U8(t.dtype.code())), (2, Field::U32(buffer)), (3, Field::Ref)]);
            b.patch(slot, tt);
            let dims: Vec<i32> = t.shape.iter().map(|&d| d as i32).collect();
            ints(&mut b, tr[0], &dims);
            let s = b.string(t.name);
            b.patch(tr[1], s);
        }
        for (op, slot) in g.operators.iter().zip(op_slots) {
            let index = opcodes.iter().position(|&c| c == op.builtin).unwrap_or(0) as u32;
            let mut fields = vec![(0, Field::U32(index)), (1, Field::Ref), (2, Field::Ref)];
            if op.while_subgraphs.is_some() {
                fields.extend([(3, Field::U8(builtin::WHILE_OPTIONS_TAG)), (4, Field::Ref)]);
            }
            let (o, or) = b.table(&fields);
            b.patch(slot, o);
            ints(&mut b, or[0], &op.inputs);
            ints(&mut b, or[1], &op.outputs);
            if let Some((cond, body)) = op.while_subgraphs {
                let (w, _) = b.table(&[(0, Field::U32(cond as u32)), (1, Field::U32(body as u32))]);
                b.patch(or[2], w);
            }
        }
    }

    let (v, b_slots) = b.vec_refs(payloads.len() + 1);
    b.patch(buffers_slot, v);
    let (empty, _) = b.table(&[]);
    b.patch(b_slots[0], empty);
    for (i, data) in payloads.iter().enumerate() {
        let (t, tr) = b.table(&[(0, Field::Ref)]);
        b.patch(b_slots[i + 1], t);
        let v = b.vec_bytes16(data);
        b.patch(tr[0], v);
    }
    b.pad(16, 0);
    Ok(b.buf)
}

/// Writes a model built with [`build_tflite_graph`].
pub fn write_tflite_graph(path: &Path, subgraphs: &[GraphSubgraph<'_>]) -> Result<(), TfLiteError> {
    let buf = build_tflite_graph(path, subgraphs)?;
    fs::write(path, buf).map_err(|source| TfLiteError::Io { path: path.to_path_buf(), source })
}

/// Little-endian bytes of f32 values (for [`GraphTensor::data`]).
pub fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// Writes an f32 model with [`build_tflite`].
pub fn write_tflite(path: &Path, tensors: &[(&str, &[usize], &[f32])]) -> Result<(), TfLiteError> {
    let bytes: Vec<Vec<u8>> = tensors.iter().map(|(_, _, d)| d.iter().flat_map(|v| v.to_le_bytes()).collect()).collect();
    let typed: Vec<(&str, &[usize], TensorType, &[u8])> =
        tensors.iter().zip(&bytes).map(|((n, s, _), b)| (*n, *s, TensorType::Float32, b.as_slice())).collect();
    let buf = build_tflite(path, &typed)?;
    fs::write(path, buf).map_err(|source| TfLiteError::Io { path: path.to_path_buf(), source })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("mrt-tflite-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn round_trip() {
        let dir = tmp("rt");
        let path = dir.join("m.tflite");
        let emb: Vec<f32> = (0..12).map(|i| i as f32 * 0.25 - 1.0).collect();
        let bias = [0.5f32, -0.5, 3.0];
        let scalar = [42.0f32];
        write_tflite(
            &path,
            &[("text/token_emb", &[4, 3], &emb), ("text/layer_0/bias", &[3], &bias), ("scale", &[], &scalar)],
        )
        .unwrap();
        let m = TfLite::open(&path).unwrap();
        let all: Vec<_> = m.tensors().map(|t| (t.name.as_str(), t.shape.clone(), t.dtype, t.buffer)).collect();
        assert_eq!(
            all,
            [
                ("text/token_emb", vec![4, 3], TensorType::Float32, 1),
                ("text/layer_0/bias", vec![3], TensorType::Float32, 2),
                ("scale", vec![], TensorType::Float32, 3)
            ]
        );
        assert_eq!(m.find("text/").count(), 2);
        assert_eq!(m.find("nothing").count(), 0);
        assert_eq!(m.read_f32(m.get("text/token_emb").unwrap()).unwrap(), emb);
        assert_eq!(m.read_f32(m.find("bias").next().unwrap()).unwrap(), bias);
        assert_eq!(m.read_f32(m.get("scale").unwrap()).unwrap(), scalar);
        assert_eq!(m.description(), Some("MRT Live tflite writer"));
        // Payloads are 16-aligned in the file and the file length is a multiple of 16.
        let bytes = fs::read(&path).unwrap();
        assert_eq!(bytes.len() % 16, 0);
        let d = m.data(m.get("text/token_emb").unwrap());
        assert_eq!((d.as_ptr() as usize - m.bytes.as_ptr() as usize) % 16, 0);
    }

    #[test]
    fn subgraphs_operators_and_while_bodies_round_trip() {
        let path = Path::new("graph.tflite");
        let table = f32_bytes(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let w = f32_bytes(&[0.5; 6]);
        let bias = f32_bytes(&[-1.0, 1.0]);
        let arg = f32_bytes(&[7.0; 4]);
        let t = |name, shape, data| GraphTensor { name, shape, dtype: TensorType::Float32, data };
        let main = GraphSubgraph {
            name: "main",
            tensors: vec![
                t("x", &[1, 3], None),
                t("codebook/gather;other/op", &[2, 3], Some(&table)),
                t("ids", &[1], None),
                t("fc/weight", &[2, 3], Some(&w)),
                t("fc/bias", &[2], Some(&bias)),
                t("y", &[1, 2], None),
            ],
            inputs: vec![0],
            outputs: vec![5],
            operators: vec![
                GraphOp { builtin: builtin::GATHER, inputs: vec![1, 2], outputs: vec![0], ..Default::default() },
                GraphOp { builtin: builtin::FULLY_CONNECTED, inputs: vec![0, 3, 4], outputs: vec![5], ..Default::default() },
                GraphOp { builtin: builtin::WHILE, inputs: vec![5], outputs: vec![5], while_subgraphs: Some((1, 2)) },
            ],
        };
        let cond = GraphSubgraph { name: "cond", tensors: vec![t("c", &[], None)], ..Default::default() };
        let body = GraphSubgraph {
            name: "body",
            tensors: vec![t("jax2tf_arg_0/x", &[2, 2], Some(&arg)), t("out", &[2, 2], None)],
            operators: vec![GraphOp { builtin: 0, inputs: vec![0, 0], outputs: vec![1], ..Default::default() }],
            ..Default::default()
        };
        let m = TfLite::from_bytes(path, build_tflite_graph(path, &[main, cond, body]).unwrap()).unwrap();
        let names: Vec<&str> = m.subgraphs().iter().map(|g| g.name.as_str()).collect();
        assert_eq!(names, ["main", "cond", "body"]);
        let g = &m.subgraphs()[0];
        assert_eq!((g.inputs.as_slice(), g.outputs.as_slice()), (&[0][..], &[5][..]));
        let ops: Vec<_> = g.operators.iter().map(|o| (o.builtin, o.inputs.as_slice(), o.while_subgraphs)).collect();
        assert_eq!(ops, [(36, &[1, 2][..], None), (9, &[0, 3, 4][..], None), (119, &[5][..], Some((1, 2)))]);
        let gathered = m.tensor(0, g.operators[0].inputs[0]).unwrap();
        assert_eq!((gathered.first_name(), gathered.shape.as_slice()), ("codebook/gather", &[2, 3][..]));
        assert_eq!(m.read_f32(gathered).unwrap(), [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        assert_eq!(m.read_f32(m.tensor(0, 4).unwrap()).unwrap(), [-1.0, 1.0]);
        assert!(m.tensor(0, -1).is_none() && m.tensor(0, 6).is_none() && m.tensor(7, 0).is_none());
        assert!(!m.tensor(0, 0).unwrap().is_constant());
        let body: Vec<(&str, usize, usize)> = m.subgraph_tensors(2).iter().map(|t| (t.name.as_str(), t.subgraph, t.index)).collect();
        assert_eq!(body, [("jax2tf_arg_0/x", 2, 0), ("out", 2, 1)]);
        assert_eq!(m.read_f32(&m.subgraph_tensors(2)[0]).unwrap(), [7.0; 4]);
        assert_eq!(m.subgraphs()[2].operators[0].builtin, 0);
        assert_eq!(m.tensors().count(), 9);

        // Out-of-range indices are writer errors naming the subgraph.
        let broken = GraphSubgraph { name: "main", operators: vec![GraphOp { inputs: vec![3], ..Default::default() }], ..Default::default() };
        let err = build_tflite_graph(path, &[broken]).unwrap_err().to_string();
        assert!(err.contains("tensor index 3"), "{err}");
        let broken = GraphSubgraph {
            name: "main",
            operators: vec![GraphOp { builtin: builtin::WHILE, while_subgraphs: Some((1, 5)), ..Default::default() }],
            ..Default::default()
        };
        let err = build_tflite_graph(path, &[broken]).unwrap_err().to_string();
        assert!(err.contains("WHILE names subgraphs 1 / 5"), "{err}");
    }

    #[test]
    fn corrupt_operators_are_errors() {
        let path = Path::new("ops.tflite");
        let d = f32_bytes(&[1.0, 2.0]);
        let g = GraphSubgraph {
            name: "main",
            tensors: vec![GraphTensor { name: "w", shape: &[2], dtype: TensorType::Float32, data: Some(&d) }],
            operators: vec![GraphOp { builtin: builtin::GATHER, inputs: vec![0, -1], outputs: vec![0], ..Default::default() }],
            ..Default::default()
        };
        let good = build_tflite_graph(path, &[g]).unwrap();
        let m = TfLite::from_bytes(path, good.clone()).unwrap();
        assert_eq!(m.subgraphs()[0].operators[0].inputs, [0, -1]);
        // Find the operator's inputs vector [0, -1] and point it at tensor 5.
        let pat: Vec<u8> = [2u32, 0, u32::MAX].iter().flat_map(|v| v.to_le_bytes()).collect();
        let at = good.windows(pat.len()).position(|w| w == pat).unwrap();
        let mut bad = good.clone();
        bad[at + 4..at + 8].copy_from_slice(&5u32.to_le_bytes());
        let err = TfLite::from_bytes(path, bad).unwrap_err().to_string();
        assert!(err.contains("ops.tflite") && err.contains("operator 0") && err.contains("tensor index 5"), "{err}");
        for i in 0..good.len() {
            for x in [0x01u8, 0x80, 0xff] {
                let mut bad = good.clone();
                bad[i] ^= x;
                if let Ok(m) = TfLite::from_bytes(path, bad) {
                    for (s, g) in m.subgraphs().iter().enumerate() {
                        for op in &g.operators {
                            for &i in &op.inputs {
                                let _ = m.tensor(s, i).map(|t| m.read_f32(t));
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn half_and_other_types() {
        let path = Path::new("mem.tflite");
        let h: Vec<u8> = [0x3c00u16, 0xc000, 0x0001].iter().flat_map(|v| v.to_le_bytes()).collect();
        let bf: Vec<u8> = [0x3f80u16, 0xc020].iter().flat_map(|v| v.to_le_bytes()).collect();
        let ints: Vec<u8> = [1i32, 2].iter().flat_map(|v| v.to_le_bytes()).collect();
        let inf: Vec<u8> = [1.0f32, f32::NAN].iter().flat_map(|v| v.to_le_bytes()).collect();
        let buf = build_tflite(
            path,
            &[
                ("h", &[3], TensorType::Float16, &h),
                ("bf", &[2], TensorType::BFloat16, &bf),
                ("i", &[2], TensorType::Int32, &ints),
                ("nan", &[2], TensorType::Float32, &inf),
            ],
        )
        .unwrap();
        let m = TfLite::from_bytes(path, buf).unwrap();
        assert_eq!(m.read_f32(m.get("h").unwrap()).unwrap(), [1.0, -2.0, 2f32.powi(-24)]);
        assert_eq!(m.read_f32(m.get("bf").unwrap()).unwrap(), [1.0, -2.5]);
        assert_eq!(m.data(m.get("i").unwrap()), &ints[..]);
        let err = m.read_f32(m.get("i").unwrap()).unwrap_err().to_string();
        assert!(err.contains("\"i\"") && err.contains("not a float type"), "{err}");
        match m.read_f32(m.get("nan").unwrap()).unwrap_err() {
            TfLiteError::NonFinite { tensor, index, .. } => assert_eq!((tensor.as_str(), index), ("nan", 1)),
            e => panic!("{e}"),
        }
        let err = build_tflite(path, &[("x", &[3], TensorType::Float32, &[0; 8])]).unwrap_err().to_string();
        assert!(err.contains("\"x\""), "{err}");
    }

    #[test]
    fn wrong_identifier_and_short_files() {
        let path = Path::new("m.tflite");
        let mut buf = build_tflite(path, &[("w", &[1], TensorType::Float32, &[0; 4])]).unwrap();
        buf[4..8].copy_from_slice(b"TFL2");
        let err = TfLite::from_bytes(path, buf).unwrap_err();
        assert!(matches!(err, TfLiteError::NotTfLite { .. }), "{err}");
        assert!(err.to_string().contains("TFL2") && err.to_string().contains("m.tflite"), "{err}");
        for n in 0..8 {
            assert!(matches!(TfLite::from_bytes(path, vec![0; n]).unwrap_err(), TfLiteError::NotTfLite { .. }));
        }
    }

    #[test]
    fn corrupt_offsets_are_errors() {
        let path = Path::new("c.tflite");
        let good = build_tflite(path, &[("a", &[2, 2], TensorType::Float32, &[1; 16]), ("b", &[3], TensorType::Float32, &[2; 12])])
            .unwrap();
        // Root offset past the end.
        let mut bad = good.clone();
        bad[0..4].copy_from_slice(&(good.len() as u32 + 8).to_le_bytes());
        let err = TfLite::from_bytes(path, bad).unwrap_err().to_string();
        assert!(err.contains("c.tflite") && err.contains("past the end"), "{err}");

        // A tensor's buffer index out of range: shrink the buffers vector's count to 2, so
        // tensor "b" (buffer 2) points past it.
        let mut bad = good.clone();
        let fb = Fb { buf: &good, path };
        let model = fb.table(fb.follow(0, "").unwrap(), "").unwrap();
        let (bufs, n) = fb.vector(model, 4, 4, "").unwrap().unwrap();
        assert_eq!(n, 3);
        bad[bufs - 4..bufs].copy_from_slice(&2u32.to_le_bytes());
        let err = TfLite::from_bytes(path, bad).unwrap_err().to_string();
        assert!(err.contains("uses buffer 2 but the model has 2"), "{err}");

        // A huge vector count.
        let mut bad = good.clone();
        bad[bufs - 4..bufs].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(TfLite::from_bytes(path, bad).is_err());

        // A vtable pointing before the file start.
        let mut bad = good.clone();
        let mp = fb.follow(0, "").unwrap();
        bad[mp..mp + 4].copy_from_slice(&(i32::MAX).to_le_bytes());
        let err = TfLite::from_bytes(path, bad).unwrap_err().to_string();
        assert!(err.contains("before the file start"), "{err}");

        // Every truncation, and every single-byte corruption, is an error or a clean parse —
        // never a panic — and a clean parse never hands out data outside the file.
        for cut in 0..good.len() {
            let _ = TfLite::from_bytes(path, good[..cut].to_vec());
        }
        for i in 0..good.len() {
            for x in [0x01u8, 0x80, 0xff] {
                let mut bad = good.clone();
                bad[i] ^= x;
                if let Ok(m) = TfLite::from_bytes(path, bad) {
                    for t in m.tensors() {
                        let _ = m.read_f32(t);
                    }
                }
            }
        }
    }

    #[test]
    fn external_buffers() {
        // The >2 GB scheme: Buffer.offset/size relative to the file start, data after the
        // flatbuffer (as the converter writes with `_experimental_use_buffer_offset`).
        let path = Path::new("ext.tflite");
        let payload: Vec<u8> = [1.5f32, -2.0].iter().flat_map(|v| v.to_le_bytes()).collect();
        let mut b = Builder::default();
        b.buf.extend_from_slice(&[0; 4]);
        b.buf.extend_from_slice(FILE_IDENTIFIER);
        let (model, r) = b.table(&[(0, Field::U32(3)), (2, Field::Ref), (4, Field::Ref)]);
        b.patch(0, model);
        let (v, sg) = b.vec_refs(1);
        b.patch(r[0], v);
        let (t, sr) = b.table(&[(0, Field::Ref)]);
        b.patch(sg[0], t);
        let (v, ts) = b.vec_refs(1);
        b.patch(sr[0], v);
        let (t, tr) = b.table(&[(0, Field::Ref), (2, Field::U32(1)), (3, Field::Ref)]);
        b.patch(ts[0], t);
        let v = b.vec_i32(&[2]);
        b.patch(tr[0], v);
        let s = b.string("ext");
        b.patch(tr[1], s);
        let (v, bs) = b.vec_refs(2);
        b.patch(r[1], v);
        let (e, _) = b.table(&[]);
        b.patch(bs[0], e);
        // The flatbuffer ends after buffer 1's table; its data follows, 16-aligned.
        let flat_end = b.buf.len() + 64;
        let offset = flat_end.next_multiple_of(16);
        let (t, _) = b.table(&[(1, Field::U64(offset as u64)), (2, Field::U64(payload.len() as u64))]);
        b.patch(bs[1], t);
        assert!(b.buf.len() <= offset);
        b.buf.resize(offset, 0);
        b.buf.extend_from_slice(&payload);
        let m = TfLite::from_bytes(path, b.buf.clone()).unwrap();
        let ext = m.get("ext").unwrap();
        assert_eq!((ext.data_len, m.read_f32(ext).unwrap()), (8, vec![1.5, -2.0]));
        // External data past the end of the file.
        let mut buf = b.buf;
        buf.truncate(buf.len() - 1);
        let err = TfLite::from_bytes(path, buf).unwrap_err().to_string();
        assert!(err.contains("buffer 1: external data") && err.contains("past the end"), "{err}");
    }

    #[test]
    fn reads_converter_written_models_exactly() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/tflite");
        let expected: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
        let files = expected.as_object().unwrap();
        assert_eq!(files.len(), 3);
        for (file, tensors) in files {
            let m = TfLite::open(&dir.join(file)).unwrap();
            let want = tensors.as_array().unwrap();
            let got: Vec<&TensorEntry> = m.tensors().collect();
            assert_eq!(got.len(), want.len(), "{file}");
            for (t, e) in got.iter().zip(want) {
                let shape: Vec<usize> = e["shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect();
                assert_eq!(t.name, e["name"].as_str().unwrap(), "{file}");
                assert_eq!(t.shape, shape, "{file} {}", t.name);
                assert_eq!(u64::from(t.dtype.code()), e["type"].as_u64().unwrap(), "{file} {}", t.name);
                assert_eq!(t.buffer as u64, e["buffer"].as_u64().unwrap(), "{file} {}", t.name);
                let bits: Vec<u32> = e["bits_f32"].as_array().unwrap().iter().map(|b| b.as_u64().unwrap() as u32).collect();
                if bits.is_empty() {
                    assert!(!t.is_constant(), "{file} {}", t.name);
                } else {
                    let values: Vec<u32> = m.read_f32(t).unwrap().iter().map(|v| v.to_bits()).collect();
                    assert_eq!(values, bits, "{file} {}", t.name);
                }
            }
            // The bias constant, whatever the storage (inline f32, inline f16, external).
            let bias = m.find("add").find(|t| t.is_constant()).unwrap();
            assert_eq!(m.read_f32(bias).unwrap(), [0.5, -0.25, 0.125, 2.0], "{file}");
            assert_eq!(m.description(), Some("MLIR Converted."), "{file}");
        }
        let ext = TfLite::open(&dir.join("dense_ext.tflite")).unwrap();
        let w = ext.get("MatMul").unwrap();
        assert_eq!((w.shape.as_slice(), w.data_len), (&[4, 3][..], 48));
        // W was linspace(-1, 1, 12) as [3, 4]; the converter stores it transposed.
        let wt = ext.read_f32(w).unwrap();
        assert_eq!(wt[1], (4.0f64 * (2.0 / 11.0) - 1.0) as f32);
    }
}
