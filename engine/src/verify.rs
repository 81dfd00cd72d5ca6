//! `mrt verify --official`: this engine against the official v1 test data (HF
//! `google/magenta-realtime` `testdata/`), with the bounds of the official end-to-end tests.
//!
//! ```text
//!  testdata/musiccoca_mv212/  inputs.txt (one prompt a line)  embeddings.npy [N, 768]  tokens.npy [N, 12]
//!                             audio.npy [M, samples] (16 kHz mono)  embeddings_audio.npy [M, 768]
//!  testdata/ssv2_48k_stereo/  audio.npy [B, 2, n] (48 kHz)  tokens.npy [B, frames, 64]  audio_rt.npy [B, 2, n]
//! ```
//!
//! Pass: every text and audio prompt's embedding at cosine ≥ 0.999 to the reference, the style
//! RVQ of the reference embeddings equal to `tokens.npy`, codec tokens exact and the decoded
//! round trip within 1e-4 (`spectrostream_end2end_test.py`). Token agreement of our own
//! embeddings is reported, not required (a 1e-5 wobble may flip a late RVQ level).

use std::fmt;
use std::path::{Path, PathBuf};

use crate::codec::Codec;
use crate::formats::npy;
use crate::style::StyleModel;

pub const COSINE_BOUND: f64 = 0.999;
pub const AUDIO_BOUND: f64 = 1e-4;

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("{path}: {reason}")]
    Data { path: PathBuf, reason: String },
    #[error("{0}")]
    Engine(String),
}

/// One line of the table.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub check: String,
    pub measured: String,
    pub bound: String,
    pub pass: bool,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Report {
    pub rows: Vec<Row>,
}

impl Report {
    pub fn passed(&self) -> bool {
        !self.rows.is_empty() && self.rows.iter().all(|r| r.pass)
    }

    fn push(&mut self, check: impl Into<String>, measured: impl Into<String>, bound: impl Into<String>, pass: bool) {
        self.rows.push(Row { check: check.into(), measured: measured.into(), bound: bound.into(), pass });
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let w0 = self.rows.iter().map(|r| r.check.chars().count()).max().unwrap_or(5).max(5);
        let w1 = self.rows.iter().map(|r| r.measured.chars().count()).max().unwrap_or(8).max(8);
        let w2 = self.rows.iter().map(|r| r.bound.chars().count()).max().unwrap_or(5).max(5);
        writeln!(f, "{:<w0$}  {:<w1$}  {:<w2$}  result", "check", "measured", "bound")?;
        for r in &self.rows {
            writeln!(f, "{:<w0$}  {:<w1$}  {:<w2$}  {}", r.check, r.measured, r.bound, if r.pass { "pass" } else { "FAIL" })?;
        }
        let failed = self.rows.iter().filter(|r| !r.pass).count();
        write!(f, "{} checks, {} failed: {}", self.rows.len(), failed, if self.passed() { "PASS" } else { "FAIL" })
    }
}

fn data_err(path: &Path, reason: impl Into<String>) -> VerifyError {
    VerifyError::Data { path: path.to_path_buf(), reason: reason.into() }
}

fn f32s(path: &Path) -> Result<(Vec<usize>, Vec<f32>), VerifyError> {
    let a = npy::read_f32(path).map_err(|e| data_err(path, e.to_string()))?;
    Ok((a.shape, a.data))
}

fn i32s(path: &Path) -> Result<(Vec<usize>, Vec<i32>), VerifyError> {
    let a = npy::read_i32(path).map_err(|e| data_err(path, e.to_string()))?;
    Ok((a.shape, a.data))
}

pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(&x, &y)| f64::from(x) * f64::from(y)).sum();
    let na: f64 = a.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>().sqrt();
    if na == 0.0 || nb == 0.0 {
        return if na == nb { 1.0 } else { 0.0 };
    }
    dot / (na * nb)
}

fn max_abs(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(&x, &y)| (f64::from(x) - f64::from(y)).abs()).fold(0.0, f64::max)
}

/// The MusicCoCa part (`testdata/musiccoca_mv212`).
pub fn verify_musiccoca(dir: &Path, model: &StyleModel, report: &mut Report) -> Result<(), VerifyError> {
    let d = model.dim();
    let inputs_path = dir.join("inputs.txt");
    let text = std::fs::read_to_string(&inputs_path).map_err(|e| data_err(&inputs_path, e.to_string()))?;
    let prompts: Vec<&str> = text.trim().lines().collect();
    let emb_path = dir.join("embeddings.npy");
    let (shape, refs) = f32s(&emb_path)?;
    if shape != [prompts.len(), d] {
        return Err(data_err(&emb_path, format!("shape {shape:?}, expected [{}, {d}] ({} prompts in inputs.txt)", prompts.len(), prompts.len())));
    }
    let tok_path = dir.join("tokens.npy");
    let (tshape, ref_tokens) = i32s(&tok_path)?;
    let levels = model.levels();
    if tshape != [prompts.len(), levels] {
        return Err(data_err(&tok_path, format!("shape {tshape:?}, expected [{}, {levels}]", prompts.len())));
    }
    // The quantiser alone: reference embeddings → reference tokens, exactly.
    let mut rvq_equal = 0;
    for (i, e) in refs.chunks_exact(d).enumerate() {
        let t = model.tokenize(e).map_err(|e| VerifyError::Engine(e.to_string()))?;
        rvq_equal += usize::from(t == ref_tokens[i * levels..(i + 1) * levels]);
    }
    report.push("style RVQ of reference embeddings", format!("{rvq_equal}/{} prompts exact", prompts.len()), "all exact", rvq_equal == prompts.len());
    let mut agree = 0;
    for (i, prompt) in prompts.iter().enumerate() {
        let ours = model.embed_text(prompt).map_err(|e| VerifyError::Engine(format!("prompt {prompt:?}: {e}")))?;
        let want = &refs[i * d..(i + 1) * d];
        let cos = cosine(&ours, want);
        let tokens = model.tokenize(&ours).map_err(|e| VerifyError::Engine(e.to_string()))?;
        let same = tokens.iter().zip(&ref_tokens[i * levels..(i + 1) * levels]).filter(|(a, b)| a == b).count();
        agree += same;
        report.push(
            format!("text {prompt:?}"),
            format!("cos {cos:.6}, max|Δ| {:.2e}, tokens {same}/{levels}", max_abs(&ours, want)),
            format!("cos ≥ {COSINE_BOUND}"),
            cos >= COSINE_BOUND,
        );
    }
    report.push(
        "text token agreement (informational)",
        format!("{agree}/{} ({:.1} %)", prompts.len() * levels, 100.0 * agree as f64 / (prompts.len() * levels).max(1) as f64),
        "reported",
        true,
    );

    let audio_path = dir.join("audio.npy");
    if audio_path.exists() {
        let (ashape, audio) = f32s(&audio_path)?;
        let (clips, n) = match ashape.as_slice() {
            [m, n] => (*m, *n),
            [n] => (1, *n),
            other => return Err(data_err(&audio_path, format!("shape {other:?}, expected [clips, samples]"))),
        };
        let ea_path = dir.join("embeddings_audio.npy");
        let (eshape, eref) = f32s(&ea_path)?;
        if eshape.iter().product::<usize>() != clips * d {
            return Err(data_err(&ea_path, format!("shape {eshape:?}, expected [{clips}, {d}]")));
        }
        for c in 0..clips {
            let ours = model.embed_audio_16k(&audio[c * n..(c + 1) * n], None).map_err(|e| VerifyError::Engine(e.to_string()))?;
            let want = &eref[c * d..(c + 1) * d];
            let cos = cosine(&ours, want);
            report.push(
                format!("audio clip {c} ({:.2} s)", n as f64 / 16000.0),
                format!("cos {cos:.6}, max|Δ| {:.2e}", max_abs(&ours, want)),
                format!("cos ≥ {COSINE_BOUND}"),
                cos >= COSINE_BOUND,
            );
        }
    }
    Ok(())
}

/// The SpectroStream part (`testdata/ssv2_48k_stereo`).
pub fn verify_codec(dir: &Path, codec: &Codec, report: &mut Report) -> Result<(), VerifyError> {
    let audio_path = dir.join("audio.npy");
    let (ashape, audio) = f32s(&audio_path)?;
    let [b, ch, n] = ashape[..] else {
        return Err(data_err(&audio_path, format!("shape {ashape:?}, expected [batch, 2, samples]")));
    };
    let tok_path = dir.join("tokens.npy");
    let (tshape, ref_tokens) = i32s(&tok_path)?;
    let [tb, frames, levels] = tshape[..] else {
        return Err(data_err(&tok_path, format!("shape {tshape:?}, expected [batch, frames, levels]")));
    };
    if tb != b || ch != codec.channels() {
        return Err(data_err(&tok_path, format!("{tb} token rows for {b} clips of {ch} channels (the codec has {})", codec.channels())));
    }
    let rt_path = dir.join("audio_rt.npy");
    let (rshape, rt_ref) = f32s(&rt_path)?;
    if rshape != ashape {
        return Err(data_err(&rt_path, format!("shape {rshape:?}, expected {ashape:?}")));
    }
    for i in 0..b {
        let planar = &audio[i * ch * n..(i + 1) * ch * n];
        let codes = codec.encode_audio(planar, levels).map_err(|e| VerifyError::Engine(e.to_string()))?;
        let want = &ref_tokens[i * frames * levels..(i + 1) * frames * levels];
        let equal = codes.data.iter().zip(want).filter(|(a, b)| a == b).count();
        let exact = codes.frames == frames && codes.data == want;
        report.push(
            format!("codec tokens, clip {i}"),
            format!("{equal}/{} equal ({} frames)", frames * levels, codes.frames),
            "exact",
            exact,
        );
        let decoded = codec.decode_codes(want, frames, levels).map_err(|e| VerifyError::Engine(e.to_string()))?;
        let rt = &rt_ref[i * ch * n..(i + 1) * ch * n];
        let err = if decoded.len() == rt.len() { max_abs(&decoded, rt) } else { f64::INFINITY };
        report.push(format!("codec round trip, clip {i}"), format!("max|Δ| {err:.2e}"), format!("≤ {AUDIO_BOUND:e}"), err <= AUDIO_BOUND);
    }
    Ok(())
}
