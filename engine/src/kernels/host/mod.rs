//! The host kernels: the CPU path of both model families.
//!
//! A decode step multiplies one or two rows (the CFG pair) by every weight matrix of a stack, so
//! on a CPU it is bound by how fast the weights stream from memory ([`gemv`]); the encoder and
//! the codec decoder are real products ([`gemm`]). Small vector ops ([`attend`], [`norm`],
//! [`vmath`]) work on host slices and allocate nothing.

pub mod attend;
pub mod gemm;
pub mod gemv;
pub mod norm;
pub mod pool;
pub mod vmath;

pub use attend::{attend_one, attend_one_t};
pub use gemm::{gemm_checked, gemm_serial};
pub use gemv::{dot_rows, simd_level, stream_sum, transpose_into, Bf16, Matrix};
pub use norm::{layer_norm, rms_norm};
pub use pool::in_pool;
