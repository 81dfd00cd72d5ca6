//! CUDA without LLVM (feature `cuda-rt`): CubeCL kernels → CUDA C++ → PTX → the driver.
//!
//! ```text
//!  cuda_rt/
//!  ├── source.rs   a `#[cube(launch)]` kernel's IR → CUDA C++ with cubecl-cpp (CudaArch: the
//!  │               device properties the expansion reads); no GPU, no NVRTC needed
//!  ├── nvrtc.rs    CUDA C++ → PTX with NVRTC (dlopen; no GPU needed), loading it from a folder
//!  └── runtime.rs  CudaRt: libcuda through cudarc (dlopen): buffers, modules, launches, graphs
//! ```
//!
//! The `cuda` feature (burn's CUDA backend) pulls cubecl-cuda, whose LLVM backend is always built
//! and whose build downloads an LLVM bundle. This path uses the same kernel source (cubecl's IR)
//! but only cubecl-cpp's C++ emitter and cudarc's driver and NVRTC bindings, both opened at run
//! time: it builds with no CUDA toolkit, no LLVM and no network.

pub mod nvrtc;
pub mod runtime;
pub mod source;

use std::path::PathBuf;

pub use nvrtc::{compile_ptx, compile_ptx_source, load_nvrtc_from, nvrtc_available, nvrtc_version};
pub use runtime::{CudaGraphExec, CudaKernel, CudaRt, DeviceBuffer, KernelArg, Plain};
pub use source::{cuda_source, CudaArch, InfoLayout, InfoParam, KernelSource, ScalarGroup};

/// What can go wrong on the CUDA path; each names the library, kernel or call involved.
#[derive(Debug, thiserror::Error)]
pub enum CudaRtError {
    #[error("libcuda.so not found: no NVIDIA driver (looked for {searched})")]
    NoDriver { searched: String },
    #[error("CUDA device {ordinal} does not exist ({count} device(s) found)")]
    NoDevice { ordinal: usize, count: usize },
    #[error(
        "libnvrtc not found (looked for {searched}); install the nvidia-cuda-nvrtc-cu12 wheel \
         and load it with load_nvrtc_from(<wheel>/nvidia/cuda_nvrtc/lib), or put it on \
         LD_LIBRARY_PATH"
    )]
    NoNvrtc { searched: String },
    #[error("cannot load NVRTC from {}: {reason}", path.display())]
    NvrtcLoad { path: PathBuf, reason: String },
    #[error("CUDA source generation failed for kernel `{kernel}`: {reason}")]
    Source { kernel: String, reason: String },
    #[error("NVRTC failed to compile kernel `{kernel}`:\n{log}")]
    Nvrtc { kernel: String, log: String },
    #[error("loading kernel `{kernel}` failed in {what}: {source}")]
    Load {
        kernel: String,
        what: &'static str,
        #[source]
        source: cudarc::driver::DriverError,
    },
    #[error("launching kernel `{kernel}` failed: {source}")]
    Launch {
        kernel: String,
        #[source]
        source: cudarc::driver::DriverError,
    },
    #[error("{what} failed: {source}")]
    Driver {
        what: &'static str,
        #[source]
        source: cudarc::driver::DriverError,
    },
    #[error("{what} of {bytes} bytes does not fit a buffer of {buffer} bytes")]
    Size { what: &'static str, bytes: usize, buffer: usize },
    #[error("{what} is not allowed while a CUDA graph is being captured")]
    InCapture { what: &'static str },
    #[error("the CUDA graph capture recorded nothing")]
    EmptyCapture,
}
