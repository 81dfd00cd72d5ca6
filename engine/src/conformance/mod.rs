//! Golden-fixture ladders: the same checks for `mrt conformance <DIR>` and `cargo test`.
//!
//! A fixture set is a directory with a `config.json` whose `"kind"` names the ladder (`"lm"`,
//! `"codec"` or `"mrt2"`). Every rung prints one row: what was compared, the largest
//! absolute difference, the tolerance from the set's README, and pass/fail.

pub mod codec;
pub mod lm;
pub mod mrt2;

use std::fmt;
use std::path::{Path, PathBuf};

use crate::Target;

/// One rung of a ladder.
#[derive(Clone, Debug)]
pub struct Check {
    pub name: String,
    /// Largest absolute difference (0 for exact integer checks that agree).
    pub max_abs_diff: f64,
    /// Human-readable tolerance, e.g. `atol 1e-4` or `exact`.
    pub tolerance: String,
    pub pass: bool,
    pub note: String,
}

#[derive(Clone, Debug, Default)]
pub struct Report {
    pub fixture: PathBuf,
    pub checks: Vec<Check>,
}

impl Report {
    pub fn passed(&self) -> bool {
        !self.checks.is_empty() && self.checks.iter().all(|c| c.pass)
    }

    pub fn failures(&self) -> Vec<&Check> {
        self.checks.iter().filter(|c| !c.pass).collect()
    }

    fn push(&mut self, name: impl Into<String>, max_abs_diff: f64, tolerance: impl Into<String>, pass: bool, note: impl Into<String>) {
        self.checks.push(Check { name: name.into(), max_abs_diff, tolerance: tolerance.into(), pass, note: note.into() });
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "conformance: {}", self.fixture.display())?;
        writeln!(f, "{:<46} {:>12} {:>18}  {:<4}  note", "check", "max |diff|", "tolerance", "")?;
        for c in &self.checks {
            writeln!(
                f,
                "{:<46} {:>12.3e} {:>18}  {:<4}  {}",
                c.name,
                c.max_abs_diff,
                c.tolerance,
                if c.pass { "PASS" } else { "FAIL" },
                c.note
            )?;
        }
        let failed = self.failures().len();
        write!(f, "{} passed, {} failed", self.checks.len() - failed, failed)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConformanceError {
    #[error("cannot read {path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("{path}: unknown fixture kind {kind:?} (expected \"lm\", \"codec\" or \"mrt2\")")]
    UnknownKind { path: PathBuf, kind: String },
    #[error("{path}: the {kind} ladder is not implemented in this build yet")]
    NotImplemented { path: PathBuf, kind: String },
    #[error(transparent)]
    Lm(#[from] crate::v1::lm::LmError),
    #[error(transparent)]
    Codec(#[from] crate::codec::CodecError),
    #[error("{path}: not an MRT2 fixture configuration")]
    Mrt2Config { path: PathBuf, #[source] source: crate::mrt2::config::ConfigError },
    #[error(transparent)]
    Mrt2Weights(#[from] crate::mrt2::WeightsError),
    #[error(transparent)]
    Mrt2Step(#[from] crate::mrt2::StepError),
    #[error(transparent)]
    Gpu(#[from] crate::kernels::gpu::GpuError),
    #[error("fixture array {path}: {reason}")]
    Fixture { path: PathBuf, reason: String },
}

/// Reads a fixture array, naming the file in the error.
pub(crate) fn read_f32(dir: &Path, name: &str) -> Result<crate::formats::npy::NpyArray<f32>, ConformanceError> {
    let p = dir.join(name);
    crate::formats::npy::read_f32(&p).map_err(|e| ConformanceError::Fixture { path: p, reason: e.to_string() })
}

pub(crate) fn read_i32(dir: &Path, name: &str) -> Result<crate::formats::npy::NpyArray<i32>, ConformanceError> {
    let p = dir.join(name);
    crate::formats::npy::read_i32(&p).map_err(|e| ConformanceError::Fixture { path: p, reason: e.to_string() })
}

pub(crate) fn fixture_err(dir: &Path, name: &str, reason: String) -> ConformanceError {
    ConformanceError::Fixture { path: dir.join(name), reason }
}

/// The `kind` a set's `config.json` names (`lm`, `codec`, `mrt2`), with the parsed JSON.
pub fn kind(dir: &Path) -> Result<(Option<String>, serde_json::Value), ConformanceError> {
    let path = dir.join("config.json");
    let text = std::fs::read_to_string(&path).map_err(|e| ConformanceError::Read { path: path.clone(), reason: e.to_string() })?;
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| ConformanceError::Read { path: path.clone(), reason: e.to_string() })?;
    Ok((json.get("kind").and_then(|k| k.as_str()).map(str::to_owned), json))
}

/// Runs the ladder that the set's `config.json` names.
pub fn run(dir: &Path, target: &Target) -> Result<Report, ConformanceError> {
    let path = dir.join("config.json");
    let (kind, json) = kind(dir)?;
    match kind.as_deref() {
        Some("lm") => lm::run(dir, &json, target),
        Some("codec") => codec::run(dir, &json, target),
        // The MRT2 step runs on the GPU kernels for a GPU target, else on the host kernels (it
        // has no burn path).
        Some("mrt2") => mrt2::run(dir, &json, target),
        other => Err(ConformanceError::UnknownKind { path, kind: other.unwrap_or("<missing>").to_owned() }),
    }
}

/// `max |a − b|` and whether every element satisfies `|a − b| ≤ atol + rtol·|b|` (NumPy allclose).
pub fn compare(actual: &[f32], expected: &[f32], atol: f64, rtol: f64) -> (f64, bool) {
    if actual.len() != expected.len() {
        return (f64::INFINITY, false);
    }
    let mut max = 0f64;
    let mut ok = true;
    for (&a, &b) in actual.iter().zip(expected) {
        let d = (f64::from(a) - f64::from(b)).abs();
        // NaN differences fail too.
        if d.is_nan() || d > atol + rtol * f64::from(b).abs() {
            ok = false;
        }
        if d > max || d.is_nan() {
            max = if d.is_nan() { f64::INFINITY } else { d };
        }
    }
    (max, ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compare_is_numpy_allclose_and_catches_nan() {
        assert_eq!(compare(&[1.0, 2.0], &[1.0, 2.0], 0.0, 0.0), (0.0, true));
        assert!(!compare(&[1.0, 2.1], &[1.0, 2.0], 1e-4, 0.0).1);
        assert!(compare(&[100.01], &[100.0], 1e-4, 1e-3).1);
        assert!(!compare(&[f32::NAN], &[0.0], 1.0, 1.0).1);
        assert!(!compare(&[0.0], &[0.0, 0.0], 1.0, 1.0).1);
    }
}
