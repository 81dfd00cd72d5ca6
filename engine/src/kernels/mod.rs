//! Compute that both model families call; no checkpoint names in here.
//!
//! ```text
//!  kernels/
//!  ├── mod.rs    WeightPrecision (how weights are held), re-exports of the host layout
//!  ├── counters.rs  dispatches, syncs and host↔device bytes of the device paths (`mrt bench`)
//!  ├── cuda_rt/  (feature `cuda-rt`) CubeCL kernels → CUDA C++ (cubecl-cpp) → PTX (NVRTC) →
//!  │             the CUDA driver (cudarc): launches and CUDA graphs, no LLVM, no toolkit
//!  └── host/     the CPU path: streaming GEMV over f32/bf16/int8 rows, attention of one query,
//!                norms, vectorised exp/softmax/GELU/ELU, the checked GEMM, the pool helper
//! ```
//!
//! A GPU path (`kernels/gpu/`) goes beside `host/` and reads the same [`Matrix`] layout.

pub mod counters;
#[cfg(feature = "cuda-rt")]
pub mod cuda_rt;
#[cfg(any(feature = "wgpu", feature = "cuda"))]
pub mod gpu;
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
    /// int8 with one f32 scale per output row (symmetric, `max |w| / 127`, rounded to nearest):
    /// a quarter of the bytes per step, products in f32.
    Int8,
}

impl WeightPrecision {
    pub fn bytes(self) -> usize {
        match self {
            Self::F32 => 4,
            Self::Bf16 => 2,
            Self::Int8 => 1,
        }
    }
}

impl std::fmt::Display for WeightPrecision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::F32 => "f32",
            Self::Bf16 => "bf16",
            Self::Int8 => "int8",
        })
    }
}

impl std::str::FromStr for WeightPrecision {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "f32" | "float32" => Ok(Self::F32),
            "bf16" | "bfloat16" => Ok(Self::Bf16),
            "int8" | "i8" => Ok(Self::Int8),
            other => Err(format!("unknown weight precision `{other}` (expected f32, bf16 or int8)")),
        }
    }
}
