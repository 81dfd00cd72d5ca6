//! CUDA C++ → PTX with NVRTC, a plain library that needs no GPU and no driver.
//!
//! cudarc opens libnvrtc with `dlopen` by bare name (`libnvrtc.so`, …, `libnvrtc.so.12`), so the
//! dynamic loader's search path decides which one is found. [`load_nvrtc_from`] opens it by full
//! path first: once loaded, a later `dlopen("libnvrtc.so.12")` by cudarc resolves to the same
//! library through its soname, whatever `LD_LIBRARY_PATH` says. That is how a test points at the
//! pip wheel `nvidia-cuda-nvrtc-cu12` (its `nvidia/cuda_nvrtc/lib`) without a CUDA toolkit.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use cudarc::nvrtc::{CompileError, CompileOptions};

use super::source::{CudaArch, KernelSource};
use super::CudaRtError;

/// The file name NVRTC 12 ships as (the pip wheel and the toolkit both).
pub const NVRTC_FILE: &str = "libnvrtc.so.12";

static PRELOADED: OnceLock<PathBuf> = OnceLock::new();

/// Opens `dir/libnvrtc.so.12` (and keeps it open for the life of the process), so that cudarc's
/// later lookup by name finds it. Idempotent; a second, different folder is an error.
pub fn load_nvrtc_from(dir: &Path) -> Result<(), CudaRtError> {
    let path = dir.join(NVRTC_FILE);
    if let Some(loaded) = PRELOADED.get() {
        return if *loaded == path {
            Ok(())
        } else {
            Err(CudaRtError::NvrtcLoad {
                path,
                reason: format!("{} is already loaded from {}", NVRTC_FILE, loaded.display()),
            })
        };
    }
    if !path.is_file() {
        return Err(CudaRtError::NvrtcLoad { path, reason: "no such file".into() });
    }
    // SAFETY: loading NVRTC runs only its library initialisers, which have no preconditions.
    let lib = unsafe { libloading::Library::new(&path) }
        .map_err(|e| CudaRtError::NvrtcLoad { path: path.clone(), reason: e.to_string() })?;
    // Never unloaded: cudarc keeps function pointers into it for the life of the process.
    std::mem::forget(lib);
    let _ = PRELOADED.set(path);
    Ok(())
}

/// Whether cudarc can open NVRTC now (preloaded, or on the loader's search path).
pub fn nvrtc_available() -> bool {
    // SAFETY: only tries `dlopen` on each candidate name.
    unsafe { cudarc::nvrtc::sys::is_culib_present() }
}

/// NVRTC's version, `(major, minor)`.
pub fn nvrtc_version() -> Result<(i32, i32), CudaRtError> {
    ensure_nvrtc()?;
    let mut major = 0;
    let mut minor = 0;
    // SAFETY: both out-pointers outlive the call.
    unsafe { cudarc::nvrtc::sys::nvrtcVersion(&mut major, &mut minor) }
        .result()
        .map_err(|e| CudaRtError::Nvrtc { kernel: "(version)".into(), log: format!("{e:?}") })?;
    Ok((major, minor))
}

fn ensure_nvrtc() -> Result<(), CudaRtError> {
    if nvrtc_available() {
        Ok(())
    } else {
        Err(CudaRtError::NoNvrtc { searched: cudarc::get_lib_name_candidates("nvrtc").join(", ") })
    }
}

/// PTX for one kernel's source, for `arch` (`--gpu-architecture`, plus `-lineinfo`). Errors name
/// the kernel and carry NVRTC's log.
pub fn compile_ptx(kernel: &KernelSource, arch: &CudaArch) -> Result<String, CudaRtError> {
    compile_ptx_source(&kernel.entry, &kernel.source, arch)
}

/// PTX for a hand-written translation unit; `name` labels errors.
pub fn compile_ptx_source(
    name: &str,
    source: &str,
    arch: &CudaArch,
) -> Result<String, CudaRtError> {
    ensure_nvrtc()?;
    let options = CompileOptions {
        name: Some(format!("{name}.cu")),
        options: vec![format!("--gpu-architecture={}", arch.nvrtc_arch()), "-lineinfo".into()],
        ..Default::default()
    };
    let ptx = cudarc::nvrtc::compile_ptx_with_opts(source, options).map_err(|e| match e {
        CompileError::CompileError { log, options, .. } => CudaRtError::Nvrtc {
            kernel: name.to_string(),
            log: format!("{}\n(options: {})", log.to_string_lossy().trim_end(), options.join(" ")),
        },
        other => CudaRtError::Nvrtc { kernel: name.to_string(), log: format!("{other:?}") },
    })?;
    Ok(ptx.to_src())
}
