//! SentencePiece, read from the official `.model` file (MusicCoCa's `musiccoca_mv212f_vocab.model`,
//! MRT2's `spm.model`), and MusicCoCa's text ids (spec §3.2).
//!
//! ```text
//!  text ─ lowercase ─ normalise (precompiled charsmap, longest match; user-defined pieces kept;
//!         leading/trailing/repeated spaces dropped; ' ' → '▁'; '▁' prefix)
//!       ─ unigram Viterbi over the pieces (unknown char: min score − 10; runs of unknowns merge;
//!         byte fallback spells them as <0xNN> pieces)
//!       ─ ids[..127] ─ [SOS 1] + ids + [PAD 0]… (128)      paddings: 0 real, 1 pad
//! ```
//!
//! Behaviour follows the C++ library (`normalizer.cc`, `unigram_model.cc` `EncodeOptimized`):
//! scores are f32, a later candidate replaces an earlier one only when strictly better, and
//! user-defined pieces score `bytes · max_score − 0.1` so they always win. The test models in
//! `engine/tests/data/spm` were trained, and their expected ids produced, by the Python
//! `sentencepiece` package (`make.py` there).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::formats::proto::{self, Value};

/// MusicCoCa's text length, SOS included.
pub const TEXT_LEN: usize = 128;
/// Its start-of-sequence id, prepended to every prompt.
pub const SOS_ID: i32 = 1;
/// Its padding id.
pub const PAD_ID: i32 = 0;

const UNK_PENALTY: f32 = 10.0;

#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("cannot read SentencePiece model {path}: {source}")]
    Io { path: PathBuf, #[source] source: std::io::Error },
    #[error("{path} is not a SentencePiece model: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("{path}: {what} is not supported")]
    Unsupported { path: PathBuf, what: String },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PieceType {
    Normal,
    Unknown,
    Control,
    UserDefined,
    Unused,
    Byte,
}

/// The normaliser's precompiled character map: a Darts-clone double-array trie over UTF-8 bytes
/// whose values are offsets of NUL-terminated replacements in `normalized`.
#[derive(Clone, Debug)]
struct CharsMap {
    units: Vec<u32>,
    normalized: Vec<u8>,
}

impl CharsMap {
    fn parse(blob: &[u8]) -> Result<Self, String> {
        if blob.len() < 4 {
            return Err(format!("precompiled charsmap of {} bytes has no trie size", blob.len()));
        }
        let trie_len = u32::from_le_bytes([blob[0], blob[1], blob[2], blob[3]]) as usize;
        if !trie_len.is_multiple_of(4) || 4 + trie_len > blob.len() {
            return Err(format!("precompiled charsmap: trie of {trie_len} bytes in a blob of {}", blob.len()));
        }
        let units = blob[4..4 + trie_len].chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        Ok(Self { units, normalized: blob[4 + trie_len..].to_vec() })
    }

    /// The longest entry that prefixes `key`: (replacement, bytes consumed).
    fn longest_prefix(&self, key: &[u8]) -> Option<(&[u8], usize)> {
        let unit_at = |pos: usize| self.units.get(pos).copied();
        let offset = |u: u32| ((u >> 10) << ((u & (1 << 9)) >> 6)) as usize;
        let label = |u: u32| u & ((1 << 31) | 0xff);
        let has_leaf = |u: u32| (u >> 8) & 1 == 1;
        let mut pos = offset(unit_at(0)?);
        let mut best = None;
        for (i, &b) in key.iter().enumerate() {
            pos ^= usize::from(b);
            let Some(unit) = unit_at(pos) else { break };
            if label(unit) != u32::from(b) {
                break;
            }
            pos ^= offset(unit);
            if has_leaf(unit) {
                let Some(leaf) = unit_at(pos) else { break };
                best = Some(((leaf & 0x7fff_ffff) as usize, i + 1));
            }
        }
        let (value, len) = best?;
        let rest = self.normalized.get(value..)?;
        let end = rest.iter().position(|&c| c == 0).unwrap_or(rest.len());
        Some((&rest[..end], len))
    }
}

/// A SentencePiece unigram model.
#[derive(Clone, Debug)]
pub struct SentencePiece {
    pieces: Vec<(String, f32, PieceType)>,
    index: HashMap<String, i32>,
    /// Longest piece in bytes (bounds the Viterbi's look-ahead).
    max_piece_bytes: usize,
    user_defined: Vec<String>,
    bytes: Option<[i32; 256]>,
    unk_id: i32,
    min_score: f32,
    max_score: f32,
    charsmap: Option<CharsMap>,
    add_dummy_prefix: bool,
    remove_extra_whitespaces: bool,
    escape_whitespaces: bool,
}

impl SentencePiece {
    pub fn open(path: &Path) -> Result<Self, TokenizerError> {
        let bytes = std::fs::read(path).map_err(|source| TokenizerError::Io { path: path.into(), source })?;
        Self::from_bytes(&bytes, path)
    }

    /// Parses a serialised `ModelProto`; `path` only names the source in errors.
    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<Self, TokenizerError> {
        let corrupt = |reason: String| TokenizerError::Corrupt { path: path.into(), reason };
        let unsupported = |what: String| TokenizerError::Unsupported { path: path.into(), what };
        let mut pieces = Vec::new();
        let (mut model_type, mut byte_fallback, mut unk_id, mut suffix_ws) = (1u64, false, 0i64, false);
        let (mut norm_name, mut charsmap_blob) = (String::new(), None);
        let (mut add_dummy_prefix, mut remove_extra_whitespaces, mut escape_whitespaces) = (true, true, true);
        for field in proto::fields(bytes) {
            let (num, value) = field.map_err(|e| corrupt(e.to_string()))?;
            match num {
                1 => pieces.push(parse_piece(&value).map_err(|e| corrupt(format!("piece {}: {e}", pieces.len())))?),
                2 => {
                    for f in proto::fields(value.as_bytes().ok_or_else(|| corrupt("trainer_spec is not a message".into()))?) {
                        let (n, v) = f.map_err(|e| corrupt(format!("trainer_spec: {e}")))?;
                        match n {
                            3 => model_type = v.as_u64().unwrap_or(1),
                            24 => suffix_ws = v.as_bool().unwrap_or(false),
                            35 => byte_fallback = v.as_bool().unwrap_or(false),
                            40 => unk_id = v.as_u64().map_or(0, |u| u as i64),
                            _ => {}
                        }
                    }
                }
                3 => {
                    for f in proto::fields(value.as_bytes().ok_or_else(|| corrupt("normalizer_spec is not a message".into()))?) {
                        let (n, v) = f.map_err(|e| corrupt(format!("normalizer_spec: {e}")))?;
                        match n {
                            1 => norm_name = v.as_str().unwrap_or_default().to_string(),
                            2 => charsmap_blob = v.as_bytes().map(<[u8]>::to_vec),
                            3 => add_dummy_prefix = v.as_bool().unwrap_or(true),
                            4 => remove_extra_whitespaces = v.as_bool().unwrap_or(true),
                            5 => escape_whitespaces = v.as_bool().unwrap_or(true),
                            6
                                if v.as_bytes().is_some_and(|b| !b.is_empty()) => {
                                    return Err(unsupported("a normalizer given as rule TSV instead of a precompiled charsmap".into()));
                                }
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        if model_type != 1 {
            let name = match model_type {
                2 => "BPE",
                3 => "WORD",
                4 => "CHAR",
                _ => "unknown",
            };
            return Err(unsupported(format!("model type {name} ({model_type}); only unigram models are read")));
        }
        if suffix_ws {
            return Err(unsupported("treat_whitespace_as_suffix".into()));
        }
        if pieces.is_empty() {
            return Err(corrupt("no pieces".into()));
        }
        let unk_id = i32::try_from(unk_id).ok().filter(|&u| (u as usize) < pieces.len()).ok_or_else(|| corrupt(format!("unk_id {unk_id} outside the {} pieces", pieces.len())))?;
        if pieces[unk_id as usize].2 != PieceType::Unknown {
            return Err(corrupt(format!("piece {unk_id} (unk_id) is `{}`, not of type UNKNOWN", pieces[unk_id as usize].0)));
        }
        let charsmap = match charsmap_blob {
            Some(b) if !b.is_empty() => Some(CharsMap::parse(&b).map_err(corrupt)?),
            _ if norm_name.is_empty() || norm_name == "identity" => None,
            _ => return Err(unsupported(format!("normalizer `{norm_name}` without a precompiled charsmap"))),
        };

        let mut index = HashMap::with_capacity(pieces.len());
        let (mut min_score, mut max_score) = (f32::MAX, f32::MIN);
        let mut byte_ids = [-1i32; 256];
        let mut user_defined = Vec::new();
        for (id, (piece, score, ty)) in pieces.iter().enumerate() {
            let id = id as i32;
            match ty {
                PieceType::Normal => {
                    min_score = min_score.min(*score);
                    max_score = max_score.max(*score);
                }
                PieceType::UserDefined => user_defined.push(piece.clone()),
                PieceType::Byte => {
                    let b = piece
                        .strip_prefix("<0x")
                        .and_then(|s| s.strip_suffix('>'))
                        .and_then(|h| u8::from_str_radix(h, 16).ok())
                        .ok_or_else(|| corrupt(format!("byte piece {id} is `{piece}`, not <0xNN>")))?;
                    byte_ids[usize::from(b)] = id;
                }
                _ => {}
            }
            if matches!(ty, PieceType::Normal | PieceType::UserDefined | PieceType::Unused) && index.insert(piece.clone(), id).is_some() {
                return Err(corrupt(format!("piece `{piece}` appears twice")));
            }
        }
        let bytes = if byte_fallback {
            if let Some(b) = byte_ids.iter().position(|&i| i < 0) {
                return Err(corrupt(format!("byte_fallback is set but piece <0x{b:02X}> is missing")));
            }
            Some(byte_ids)
        } else {
            None
        };
        let max_piece_bytes = index.keys().map(String::len).max().unwrap_or(1);
        Ok(Self {
            pieces,
            index,
            max_piece_bytes,
            user_defined,
            bytes,
            unk_id,
            min_score: if min_score == f32::MAX { 0.0 } else { min_score },
            max_score: if max_score == f32::MIN { 0.0 } else { max_score },
            charsmap,
            add_dummy_prefix,
            remove_extra_whitespaces,
            escape_whitespaces,
        })
    }

    pub fn vocab_size(&self) -> usize {
        self.pieces.len()
    }

    /// The piece string of `id`.
    pub fn piece(&self, id: i32) -> Option<&str> {
        self.pieces.get(usize::try_from(id).ok()?).map(|p| p.0.as_str())
    }

    /// One normalisation step at the start of `input`: (replacement, bytes consumed).
    fn normalize_prefix<'a>(&'a self, input: &'a [u8]) -> (std::borrow::Cow<'a, [u8]>, usize) {
        if let Some(u) = self.user_defined.iter().filter(|u| input.starts_with(u.as_bytes())).max_by_key(|u| u.len()) {
            return (std::borrow::Cow::Borrowed(u.as_bytes()), u.len());
        }
        if let Some((rep, len)) = self.charsmap.as_ref().and_then(|m| m.longest_prefix(input)) {
            return (std::borrow::Cow::Borrowed(rep), len);
        }
        match utf8_len(input) {
            Some(n) => (std::borrow::Cow::Borrowed(&input[..n]), n),
            None => (std::borrow::Cow::Borrowed("\u{FFFD}".as_bytes()), 1),
        }
    }

    /// The normalised text the pieces are matched against.
    pub fn normalize(&self, text: &str) -> String {
        let space: &[u8] = if self.escape_whitespaces { "▁".as_bytes() } else { b" " };
        let mut input = text.as_bytes();
        if self.remove_extra_whitespaces {
            while !input.is_empty() {
                let (rep, len) = self.normalize_prefix(input);
                if rep.as_ref() != b" " {
                    break;
                }
                input = &input[len..];
            }
        }
        let mut out: Vec<u8> = Vec::with_capacity(text.len() + 3);
        if input.is_empty() {
            return String::new();
        }
        if self.add_dummy_prefix {
            out.extend_from_slice(space);
        }
        let mut prev_space = self.remove_extra_whitespaces;
        while !input.is_empty() {
            let (rep, len) = self.normalize_prefix(input);
            let mut sp: &[u8] = &rep;
            while prev_space && sp.first() == Some(&b' ') {
                sp = &sp[1..];
            }
            if !sp.is_empty() {
                for &b in sp {
                    if self.escape_whitespaces && b == b' ' {
                        out.extend_from_slice(space);
                    } else {
                        out.push(b);
                    }
                }
                prev_space = sp.last() == Some(&b' ');
            }
            input = &input[len..];
            if !self.remove_extra_whitespaces {
                prev_space = false;
            }
        }
        if self.remove_extra_whitespaces {
            while out.ends_with(space) {
                out.truncate(out.len() - space.len());
            }
        }
        // Every replacement is UTF-8 from the model and every kept byte run a whole UTF-8 char.
        String::from_utf8_lossy(&out).into_owned()
    }

    /// SentencePiece `EncodeAsIds` (no lowercasing: that is MusicCoCa's own step).
    pub fn encode(&self, text: &str) -> Vec<i32> {
        let normalized = self.normalize(text);
        let s = normalized.as_bytes();
        if s.is_empty() {
            return Vec::new();
        }
        #[derive(Clone, Copy)]
        struct Best {
            start: usize,
            id: i32,
            score: f32,
            set: bool,
        }
        let mut best = vec![Best { start: 0, id: -1, score: 0.0, set: false }; s.len() + 1];
        best[0].set = true;
        let unk_score = self.min_score - UNK_PENALTY;
        let mut start = 0;
        while start < s.len() {
            let here = best[start].score;
            let char_len = utf8_len(&s[start..]).unwrap_or(1);
            let mut single = false;
            let consider = |end: usize, id: i32, score: f32, best: &mut Vec<Best>| {
                let cand = here + score;
                let b = &mut best[end];
                if !b.set || cand > b.score {
                    *b = Best { start, id, score: cand, set: true };
                }
            };
            for len in 1..=self.max_piece_bytes.min(s.len() - start) {
                let end = start + len;
                let Ok(piece) = std::str::from_utf8(&s[start..end]) else { continue };
                let Some(&id) = self.index.get(piece) else { continue };
                let ty = self.pieces[id as usize].2;
                if ty == PieceType::Unused {
                    continue;
                }
                let score = if ty == PieceType::UserDefined { len as f32 * self.max_score - 0.1 } else { self.pieces[id as usize].1 };
                consider(end, id, score, &mut best);
                single |= len == char_len;
            }
            if !single {
                consider(start + char_len, self.unk_id, unk_score, &mut best);
            }
            start += char_len;
        }
        let mut path = Vec::new();
        let mut end = s.len();
        while end > 0 {
            let b = best[end];
            path.push((b.start, end, b.id));
            end = b.start;
        }
        path.reverse();
        // Runs of unknown pieces merge into one.
        let mut merged: Vec<(usize, usize, i32)> = Vec::with_capacity(path.len());
        for p in path {
            match merged.last_mut() {
                Some(last) if last.2 == self.unk_id && p.2 == self.unk_id => last.1 = p.1,
                _ => merged.push(p),
            }
        }
        let mut ids = Vec::with_capacity(merged.len());
        for (a, b, id) in merged {
            match (&self.bytes, id == self.unk_id) {
                (Some(bytes), true) => ids.extend(s[a..b].iter().map(|&c| bytes[usize::from(c)])),
                _ => ids.push(id),
            }
        }
        ids
    }

    /// MusicCoCa's text input: lowercase, encode, keep 127 ids, prepend SOS, pad to 128.
    /// Returns `(ids, paddings)` with padding 1.0 where `ids` is PAD. An empty prompt is the SOS
    /// token alone, as in the reference.
    pub fn musiccoca_ids(&self, text: &str) -> (Vec<i32>, Vec<f32>) {
        let mut ids = Vec::with_capacity(TEXT_LEN);
        ids.push(SOS_ID);
        ids.extend(self.encode(&text.to_lowercase()).into_iter().take(TEXT_LEN - 1));
        let real = ids.len();
        ids.resize(TEXT_LEN, PAD_ID);
        let paddings = (0..TEXT_LEN).map(|i| if i < real { 0.0 } else { 1.0 }).collect();
        (ids, paddings)
    }
}

fn parse_piece(v: &Value<'_>) -> Result<(String, f32, PieceType), String> {
    let bytes = v.as_bytes().ok_or("not a message")?;
    let (mut piece, mut score, mut ty) = (None, 0.0f32, PieceType::Normal);
    for f in proto::fields(bytes) {
        let (n, v) = f.map_err(|e| e.to_string())?;
        match n {
            1 => piece = Some(v.as_str().ok_or("piece is not UTF-8")?.to_string()),
            2 => score = v.as_f32().ok_or("score is not a float")?,
            3 => {
                ty = match v.as_u64() {
                    Some(1) => PieceType::Normal,
                    Some(2) => PieceType::Unknown,
                    Some(3) => PieceType::Control,
                    Some(4) => PieceType::UserDefined,
                    Some(5) => PieceType::Unused,
                    Some(6) => PieceType::Byte,
                    other => return Err(format!("unknown piece type {other:?}")),
                }
            }
            _ => {}
        }
    }
    Ok((piece.ok_or("no piece string")?, score, ty))
}

/// Length of the UTF-8 character starting `s`, or `None` if it is not valid UTF-8.
fn utf8_len(s: &[u8]) -> Option<usize> {
    let n = match *s.first()? {
        b if b < 0x80 => 1,
        b if b >> 5 == 0b110 => 2,
        b if b >> 4 == 0b1110 => 3,
        b if b >> 3 == 0b11110 => 4,
        _ => return None,
    };
    std::str::from_utf8(s.get(..n)?).ok().map(|_| n)
}

/// Writes a minimal unigram `ModelProto` (identity normaliser) — for tests and tiny models.
pub fn write_model(pieces: &[(&str, f32)], byte_fallback: bool) -> Vec<u8> {
    let mut m = proto::Writer::new();
    let mut entry = |piece: &str, score: f32, ty: u64| {
        let mut p = proto::Writer::new();
        p.string(1, piece).f32(2, score).varint(3, ty);
        m.message(1, &p);
    };
    entry("<pad>", 0.0, 3);
    entry("<s>", 0.0, 3);
    entry("<unk>", 0.0, 2);
    if byte_fallback {
        for b in 0..=255u8 {
            entry(&format!("<0x{b:02X}>"), 0.0, 6);
        }
    }
    for &(piece, score) in pieces {
        entry(piece, score, 1);
    }
    let mut trainer = proto::Writer::new();
    trainer.varint(3, 1).varint(35, u64::from(byte_fallback)).varint(40, 2);
    let mut norm = proto::Writer::new();
    norm.string(1, "identity");
    m.message(2, &trainer).message(3, &norm);
    m.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/spm").join(name)
    }

    #[test]
    fn matches_the_python_library_on_both_test_models() {
        let expected: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(data("expected.json")).unwrap()).unwrap();
        let mut checked = 0;
        for model in ["tiny_unigram", "tiny_bytes"] {
            let sp = SentencePiece::open(&data(&format!("{model}.model"))).unwrap();
            for case in expected[model].as_array().unwrap() {
                let text = case["text"].as_str().unwrap();
                let want: Vec<i32> = case["ids"].as_array().unwrap().iter().map(|v| v.as_i64().unwrap() as i32).collect();
                assert_eq!(sp.encode(text), want, "{model}: {text:?} (normalised {:?})", sp.normalize(text));
                checked += 1;
            }
        }
        assert_eq!(checked, 32);
    }

    #[test]
    fn musiccoca_layout() {
        let sp = SentencePiece::open(&data("tiny_unigram.model")).unwrap();
        let (ids, pad) = sp.musiccoca_ids("Funky Bass, DUSTY drums");
        assert_eq!(&ids[..9], &[SOS_ID, 33, 6, 16, 4, 28, 34, 6, 73]);
        assert!(ids[9..].iter().all(|&i| i == PAD_ID) && ids.len() == TEXT_LEN);
        assert_eq!(pad.iter().filter(|&&p| p == 0.0).count(), 9);
        assert!(pad[9..].iter().all(|&p| p == 1.0));

        let (empty, pad) = sp.musiccoca_ids("");
        assert_eq!(empty[0], SOS_ID);
        assert!(empty[1..].iter().all(|&i| i == PAD_ID));
        assert_eq!(pad[0], 0.0);

        // Long prompts keep their first 127 ids.
        let long = "dusty drums ".repeat(100);
        let all = sp.encode(&long);
        let (ids, pad) = sp.musiccoca_ids(&long);
        assert!(all.len() > 127);
        assert_eq!(&ids[1..], &all[..127]);
        assert!(pad.iter().all(|&p| p == 0.0));
    }

    #[test]
    fn hand_written_model_and_errors() {
        let bytes = write_model(&[("▁a", -1.0), ("b", -2.0), ("▁ab", -2.5), ("a", -3.0)], true);
        let sp = SentencePiece::from_bytes(&bytes, Path::new("mem.model")).unwrap();
        assert_eq!(sp.vocab_size(), 3 + 256 + 4);
        // ▁ab (−2.5) beats ▁a + b (−3.0); 'z' is unknown and falls back to its byte.
        assert_eq!(sp.encode("ab"), vec![261]);
        assert_eq!(sp.encode("abz"), vec![261, 3 + 0x7a]);
        assert_eq!(sp.piece(261), Some("▁ab"));

        let path = Path::new("broken.model");
        let err = SentencePiece::from_bytes(&bytes[..bytes.len() - 3], path).unwrap_err().to_string();
        assert!(err.contains("broken.model") && err.contains("malformed"), "{err}");
        let err = SentencePiece::from_bytes(b"not a model at all", path).unwrap_err().to_string();
        assert!(err.contains("broken.model"), "{err}");
        let mut bpe = bytes.clone();
        let mut t = proto::Writer::new();
        t.varint(3, 2);
        bpe.extend(proto::Writer::new().message(2, &t).finish());
        let err = SentencePiece::from_bytes(&bpe, path).unwrap_err().to_string();
        assert!(err.contains("BPE"), "{err}");
        let err = SentencePiece::open(Path::new("/nonexistent/vocab.model")).unwrap_err().to_string();
        assert!(err.contains("/nonexistent/vocab.model"), "{err}");
    }
}
