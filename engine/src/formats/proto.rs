//! Minimal protocol-buffers wire format: enough to read (and, for tests and tiny-model files,
//! write) the few messages the official files hold — SentencePiece `ModelProto`, TensorFlow
//! `BundleEntryProto` / `BundleHeaderProto`. Fields are visited in file order; unknown fields are
//! skipped, as protobuf requires.
//!
//! ```text
//!  key = varint(field << 3 | wire type)   0 varint · 1 fixed64 · 2 length-delimited · 5 fixed32
//! ```

/// A malformed message: what was being read and at which byte.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("malformed protobuf at byte {offset}: {reason}")]
pub struct ProtoError {
    pub offset: usize,
    pub reason: String,
}

/// One field's value as stored on the wire.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'a> {
    Varint(u64),
    Fixed64(u64),
    Bytes(&'a [u8]),
    Fixed32(u32),
}

impl<'a> Value<'a> {
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::Varint(v) | Value::Fixed64(v) => Some(v),
            Value::Fixed32(v) => Some(u64::from(v)),
            Value::Bytes(_) => None,
        }
    }

    pub fn as_f32(&self) -> Option<f32> {
        match *self {
            Value::Fixed32(v) => Some(f32::from_bits(v)),
            _ => None,
        }
    }

    pub fn as_bytes(&self) -> Option<&'a [u8]> {
        match *self {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&'a str> {
        self.as_bytes().and_then(|b| std::str::from_utf8(b).ok())
    }

    pub fn as_bool(&self) -> Option<bool> {
        self.as_u64().map(|v| v != 0)
    }
}

/// Reads a varint at `*pos`, advancing it.
pub fn read_varint(buf: &[u8], pos: &mut usize) -> Result<u64, ProtoError> {
    let start = *pos;
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let Some(&b) = buf.get(*pos) else {
            return Err(ProtoError { offset: start, reason: "varint runs past the end".into() });
        };
        *pos += 1;
        value |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(ProtoError { offset: start, reason: "varint longer than 10 bytes".into() })
}

/// Iterates over `(field number, value)` pairs of one message.
pub struct Fields<'a> {
    buf: &'a [u8],
    pos: usize,
    failed: bool,
}

pub fn fields(buf: &[u8]) -> Fields<'_> {
    Fields { buf, pos: 0, failed: false }
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(u32, Value<'a>), ProtoError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.buf.len() {
            return None;
        }
        let r = self.read_one();
        self.failed = r.is_err();
        Some(r)
    }
}

impl<'a> Fields<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ProtoError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len()).ok_or_else(|| ProtoError {
            offset: self.pos,
            reason: format!("field of {n} bytes runs past the end ({} left)", self.buf.len() - self.pos),
        })?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn read_one(&mut self) -> Result<(u32, Value<'a>), ProtoError> {
        let at = self.pos;
        let key = read_varint(self.buf, &mut self.pos)?;
        let field = u32::try_from(key >> 3).map_err(|_| ProtoError { offset: at, reason: format!("field number {} too large", key >> 3) })?;
        if field == 0 {
            return Err(ProtoError { offset: at, reason: "field number 0".into() });
        }
        let value = match key & 7 {
            0 => Value::Varint(read_varint(self.buf, &mut self.pos)?),
            1 => Value::Fixed64(u64::from_le_bytes(self.take(8)?.try_into().unwrap_or_default())),
            2 => {
                let n = read_varint(self.buf, &mut self.pos)?;
                let n = usize::try_from(n).map_err(|_| ProtoError { offset: at, reason: format!("length {n} too large") })?;
                Value::Bytes(self.take(n)?)
            }
            5 => Value::Fixed32(u32::from_le_bytes(self.take(4)?.try_into().unwrap_or_default())),
            t => return Err(ProtoError { offset: at, reason: format!("unsupported wire type {t} (field {field})") }),
        };
        Ok((field, value))
    }
}

/// Repeated packed varints (`[packed = true]`) or a single unpacked one.
pub fn packed_varints(v: &Value<'_>) -> Result<Vec<u64>, ProtoError> {
    match v {
        Value::Bytes(b) => {
            let (mut pos, mut out) = (0, Vec::new());
            while pos < b.len() {
                out.push(read_varint(b, &mut pos)?);
            }
            Ok(out)
        }
        other => Ok(other.as_u64().into_iter().collect()),
    }
}

/// Builds a message field by field.
#[derive(Default, Clone, Debug)]
pub struct Writer {
    pub buf: Vec<u8>,
}

pub fn write_varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

impl Writer {
    pub fn new() -> Self {
        Self::default()
    }

    fn key(&mut self, field: u32, wire: u64) {
        write_varint(&mut self.buf, (u64::from(field) << 3) | wire);
    }

    pub fn varint(&mut self, field: u32, v: u64) -> &mut Self {
        self.key(field, 0);
        write_varint(&mut self.buf, v);
        self
    }

    pub fn fixed32(&mut self, field: u32, v: u32) -> &mut Self {
        self.key(field, 5);
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }

    pub fn f32(&mut self, field: u32, v: f32) -> &mut Self {
        self.fixed32(field, v.to_bits())
    }

    pub fn bytes(&mut self, field: u32, b: &[u8]) -> &mut Self {
        self.key(field, 2);
        write_varint(&mut self.buf, b.len() as u64);
        self.buf.extend_from_slice(b);
        self
    }

    pub fn string(&mut self, field: u32, s: &str) -> &mut Self {
        self.bytes(field, s.as_bytes())
    }

    pub fn message(&mut self, field: u32, m: &Writer) -> &mut Self {
        self.bytes(field, &m.buf)
    }

    pub fn finish(&self) -> Vec<u8> {
        self.buf.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_every_wire_type() {
        let mut inner = Writer::new();
        inner.varint(1, 300);
        let mut w = Writer::new();
        w.varint(1, u64::MAX).f32(2, -1.5).string(3, "▁hi").message(4, &inner).fixed32(5, 7);
        let buf = w.finish();
        let got: Vec<_> = fields(&buf).collect::<Result<_, _>>().unwrap();
        assert_eq!(got[0], (1, Value::Varint(u64::MAX)));
        assert_eq!(got[1].1.as_f32(), Some(-1.5));
        assert_eq!(got[2].1.as_str(), Some("▁hi"));
        let nested: Vec<_> = fields(got[3].1.as_bytes().unwrap()).collect::<Result<_, _>>().unwrap();
        assert_eq!(nested, vec![(1, Value::Varint(300))]);
        assert_eq!(got[4], (5, Value::Fixed32(7)));
    }

    #[test]
    fn packed_and_truncated() {
        let mut packed = Vec::new();
        for v in [1u64, 128, 70000] {
            write_varint(&mut packed, v);
        }
        assert_eq!(packed_varints(&Value::Bytes(&packed)).unwrap(), vec![1, 128, 70000]);
        let mut w = Writer::new();
        w.string(1, "abcdef");
        let buf = w.finish();
        let err = fields(&buf[..5]).collect::<Result<Vec<_>, _>>().unwrap_err();
        assert!(err.reason.contains("runs past the end"), "{err}");
        assert!(fields(&[0x80]).next().unwrap().is_err());
        assert!(fields(&[0x0b]).next().unwrap().is_err(), "wire type 3 (groups) is rejected");
    }
}
