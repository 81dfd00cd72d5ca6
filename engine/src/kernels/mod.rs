//! Compute that both model families call; no checkpoint names in here.
//!
//! ```text
//!  kernels/
//!  ├── mod.rs    WeightPrecision (how weights are held), re-exports of the host layout
//!  └── host/     the CPU path: streaming GEMV over f32/bf16 rows, attention of one query,
//!                norms, vectorised exp/softmax/GELU/ELU, the checked GEMM, the pool helper
//! ```
//!
//! A GPU path (`kernels/gpu/`) goes beside `host/` and reads the same [`Matrix`] layout.

pub mod host;

pub use host::gemv::{Bf16, Matrix};

/// How the decoder's weights are held in memory on the CPU path.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WeightPrecision {
    /// As in the checkpoint: exact.
    #[default]
    F32,
    /// bfloat16, rounded to nearest even at load: half the bytes per step, products in f32.
    Bf16,
}

impl WeightPrecision {
    pub fn bytes(self) -> usize {
        match self {
            Self::F32 => 4,
            Self::Bf16 => 2,
        }
    }
}

impl std::fmt::Display for WeightPrecision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::F32 => "f32",
            Self::Bf16 => "bf16",
        })
    }
}

impl std::str::FromStr for WeightPrecision {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "f32" | "float32" => Ok(Self::F32),
            "bf16" | "bfloat16" => Ok(Self::Bf16),
            other => Err(format!("unknown weight precision `{other}` (expected f32 or bf16)")),
        }
    }
}
