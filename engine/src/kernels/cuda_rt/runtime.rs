//! The CUDA driver API through cudarc: one device, one stream, raw byte buffers, PTX modules,
//! launches, and CUDA graphs captured from a sequence of launches.

use std::ffi::c_void;
use std::sync::Arc;

use cudarc::driver::sys::{
    CUdevice_attribute, CUfunction_attribute, CUgraphInstantiate_flags, CUstreamCaptureMode,
};
use cudarc::driver::{
    CudaContext, CudaFunction, CudaGraph, CudaSlice, CudaStream, DevicePtr, DriverError,
};
use cudarc::nvrtc::Ptx;

use super::nvrtc;
use super::source::{CudaArch, KernelSource};
use super::CudaRtError;

/// Dynamic shared memory a kernel gets without opting in (`cuFuncSetAttribute`).
const DEFAULT_DYNAMIC_SHARED: usize = 48 * 1024;

fn driver(what: &'static str) -> impl FnOnce(DriverError) -> CudaRtError {
    move |source| CudaRtError::Driver { what, source }
}

/// Element types that may be copied to and from a buffer as raw bytes.
///
/// # Safety
/// Implementors have no padding and every bit pattern is a valid value.
pub unsafe trait Plain: Copy + Default + 'static {}
// SAFETY: primitive numbers: no padding, any bits valid.
unsafe impl Plain for f32 {}
// SAFETY: as above.
unsafe impl Plain for f64 {}
// SAFETY: as above.
unsafe impl Plain for u8 {}
// SAFETY: as above.
unsafe impl Plain for u16 {}
// SAFETY: as above.
unsafe impl Plain for u32 {}
// SAFETY: as above.
unsafe impl Plain for i32 {}
// SAFETY: as above.
unsafe impl Plain for u64 {}

fn as_bytes<T: Plain>(data: &[T]) -> &[u8] {
    // SAFETY: `Plain` types have no padding; any initialised value is valid as bytes.
    unsafe { std::slice::from_raw_parts(data.as_ptr().cast::<u8>(), std::mem::size_of_val(data)) }
}

/// Device memory, untyped: `len` bytes.
pub struct DeviceBuffer {
    slice: CudaSlice<u8>,
}

impl DeviceBuffer {
    pub fn len(&self) -> usize {
        self.slice.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slice.is_empty()
    }
}

/// A kernel loaded on the device: its module, its function and its launch facts.
pub struct CudaKernel {
    function: CudaFunction,
    pub entry: String,
    pub shared_memory_bytes: usize,
    pub block: (u32, u32, u32),
    /// The PTX the module was loaded from.
    pub ptx: String,
}

/// One kernel argument, in the order of the kernel's parameters.
pub enum KernelArg<'a> {
    /// A buffer: its device address is passed.
    Buffer(&'a DeviceBuffer),
    /// A value passed by copy (a scalar, or a struct's bytes in its C layout).
    Value(&'a [u8]),
}

/// A captured sequence of launches, instantiated; [`CudaGraphExec::replay`] runs it again on the
/// same buffers.
pub struct CudaGraphExec {
    graph: CudaGraph,
    /// Launches recorded at capture (each is one kernel node).
    pub launches: usize,
}

impl CudaGraphExec {
    /// Enqueues one replay on the stream it was captured on (asynchronous; see [`CudaRt::sync`]).
    pub fn replay(&self) -> Result<(), CudaRtError> {
        self.graph.launch().map_err(driver("cuGraphLaunch"))
    }
}

/// One CUDA device with one stream.
pub struct CudaRt {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    arch: CudaArch,
    /// Launches issued while capturing (for [`CudaGraphExec::launches`]).
    captured: std::cell::Cell<Option<usize>>,
}

impl CudaRt {
    /// Whether the driver library (libcuda) can be opened.
    pub fn driver_available() -> bool {
        // SAFETY: only tries `dlopen` on each candidate name.
        unsafe { cudarc::driver::sys::is_culib_present() }
    }

    /// Opens device `ordinal` (its primary context) and a stream on it.
    pub fn new(ordinal: usize) -> Result<Self, CudaRtError> {
        if !Self::driver_available() {
            return Err(CudaRtError::NoDriver {
                searched: cudarc::get_lib_name_candidates("cuda").join(", "),
            });
        }
        let count = CudaContext::device_count().map_err(driver("cuDeviceGetCount"))?;
        if ordinal >= count.max(0) as usize {
            return Err(CudaRtError::NoDevice { ordinal, count: count.max(0) as usize });
        }
        let ctx = CudaContext::new(ordinal).map_err(driver("cuCtx (primary context)"))?;
        // One stream and graphs: cudarc's per-buffer events would be recorded outside a capture
        // and waited on inside it, which a capture refuses.
        // SAFETY: every buffer of this runtime is used on `stream` only.
        unsafe { ctx.disable_event_tracking() };
        let stream = ctx.new_stream().map_err(driver("cuStreamCreate"))?;
        let attr = |a| ctx.attribute(a).map_err(driver("cuDeviceGetAttribute"));
        let (major, minor) = ctx.compute_capability().map_err(driver("cuDeviceGetAttribute"))?;
        let arch = CudaArch {
            sm: (major * 10 + minor) as u32,
            warp_size: attr(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_WARP_SIZE)? as u32,
            max_shared_memory_bytes: attr(
                CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN,
            )? as usize,
            max_threads_per_block: attr(
                CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK,
            )? as u32,
            multiprocessors: Some(attr(
                CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT,
            )? as u32),
            name: ctx.name().map_err(driver("cuDeviceGetName"))?,
        };
        Ok(Self { ctx, stream, arch, captured: std::cell::Cell::new(None) })
    }

    /// The device, as source generation and NVRTC see it.
    pub fn arch(&self) -> &CudaArch {
        &self.arch
    }

    /// `len` bytes of zeroed device memory.
    pub fn alloc(&self, len: usize) -> Result<DeviceBuffer, CudaRtError> {
        self.refuse_while_capturing("alloc")?;
        let slice = self.stream.alloc_zeros::<u8>(len).map_err(driver("cuMemAlloc"))?;
        Ok(DeviceBuffer { slice })
    }

    /// A new buffer holding `data`.
    pub fn upload<T: Plain>(&self, data: &[T]) -> Result<DeviceBuffer, CudaRtError> {
        self.refuse_while_capturing("upload")?;
        let slice = self.stream.clone_htod(as_bytes(data)).map_err(driver("cuMemcpyHtoD"))?;
        Ok(DeviceBuffer { slice })
    }

    /// Overwrites the start of `buffer` with `data` (stream-ordered).
    pub fn write<T: Plain>(
        &self,
        buffer: &mut DeviceBuffer,
        data: &[T],
    ) -> Result<(), CudaRtError> {
        self.refuse_while_capturing("write")?;
        let bytes = as_bytes(data);
        if bytes.len() > buffer.len() {
            return Err(CudaRtError::Size {
                what: "write",
                bytes: bytes.len(),
                buffer: buffer.len(),
            });
        }
        self.stream.memcpy_htod(bytes, &mut buffer.slice).map_err(driver("cuMemcpyHtoD"))
    }

    /// The whole buffer read back as `T`s (waits for the stream).
    pub fn read<T: Plain>(&self, buffer: &DeviceBuffer) -> Result<Vec<T>, CudaRtError> {
        self.refuse_while_capturing("read")?;
        let size = std::mem::size_of::<T>();
        if !buffer.len().is_multiple_of(size) {
            return Err(CudaRtError::Size { what: "read", bytes: size, buffer: buffer.len() });
        }
        let mut out = vec![T::default(); buffer.len() / size];
        // SAFETY: `out` is `buffer.len()` initialised bytes, and any bytes are a valid `Plain`.
        let dst =
            unsafe { std::slice::from_raw_parts_mut(out.as_mut_ptr().cast::<u8>(), buffer.len()) };
        self.stream.memcpy_dtoh(&buffer.slice, dst).map_err(driver("cuMemcpyDtoH"))?;
        self.sync()?;
        Ok(out)
    }

    /// Waits until everything enqueued on the stream has run.
    pub fn sync(&self) -> Result<(), CudaRtError> {
        self.stream.synchronize().map_err(driver("cuStreamSynchronize"))
    }

    /// Compiles `kernel`'s source (from [`super::cuda_source`]) with NVRTC for this device and
    /// loads it.
    pub fn load(&self, kernel: &KernelSource) -> Result<CudaKernel, CudaRtError> {
        let ptx = nvrtc::compile_ptx(kernel, &self.arch)?;
        self.load_ptx(&kernel.entry, ptx, kernel.shared_memory_bytes, kernel.block)
    }

    /// Loads PTX and looks up `entry` in it.
    pub fn load_ptx(
        &self,
        entry: &str,
        ptx: String,
        shared_memory_bytes: usize,
        block: (u32, u32, u32),
    ) -> Result<CudaKernel, CudaRtError> {
        let module = self.ctx.load_module(Ptx::from_src(ptx.clone())).map_err(|source| {
            CudaRtError::Load { kernel: entry.to_string(), what: "cuModuleLoadData", source }
        })?;
        let function = module.load_function(entry).map_err(|source| CudaRtError::Load {
            kernel: entry.to_string(),
            what: "cuModuleGetFunction",
            source,
        })?;
        if shared_memory_bytes > DEFAULT_DYNAMIC_SHARED {
            function
                .set_attribute(
                    CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                    shared_memory_bytes as i32,
                )
                .map_err(|source| CudaRtError::Load {
                    kernel: entry.to_string(),
                    what: "cuFuncSetAttribute(MAX_DYNAMIC_SHARED_SIZE_BYTES)",
                    source,
                })?;
        }
        Ok(CudaKernel { function, entry: entry.to_string(), shared_memory_bytes, block, ptx })
    }

    /// Enqueues `kernel` on `grid` blocks of its block shape, with its dynamic shared memory.
    ///
    /// # Safety
    /// `args` must match the kernel's parameters in number, order and size, and every index the
    /// kernel computes must stay inside the buffers passed: the driver checks neither.
    pub unsafe fn launch(
        &self,
        kernel: &CudaKernel,
        grid: (u32, u32, u32),
        args: &[KernelArg<'_>],
    ) -> Result<(), CudaRtError> {
        // Device addresses and by-value bytes, kept alive (and 8-byte aligned) until the call.
        let mut storage: Vec<Vec<u64>> = Vec::with_capacity(args.len());
        let mut guards = Vec::new();
        for arg in args {
            match arg {
                KernelArg::Buffer(buffer) => {
                    let (ptr, guard) = buffer.slice.device_ptr(&self.stream);
                    guards.push(guard);
                    storage.push(vec![ptr]);
                }
                KernelArg::Value(bytes) => {
                    let mut words = vec![0u64; bytes.len().div_ceil(8).max(1)];
                    // SAFETY: `words` holds at least `bytes.len()` bytes.
                    unsafe {
                        std::ptr::copy_nonoverlapping(
                            bytes.as_ptr(),
                            words.as_mut_ptr().cast::<u8>(),
                            bytes.len(),
                        )
                    };
                    storage.push(words);
                }
            }
        }
        let mut params: Vec<*mut c_void> =
            storage.iter_mut().map(|words| words.as_mut_ptr().cast::<c_void>()).collect();
        self.ctx.bind_to_thread().map_err(driver("cuCtxSetCurrent"))?;
        // SAFETY: the caller guarantees the arguments match the kernel; `params` points into
        // `storage`, alive across the call (the driver copies the values at launch).
        unsafe {
            cudarc::driver::result::launch_kernel(
                kernel.function.cu_function(),
                grid,
                kernel.block,
                kernel.shared_memory_bytes as u32,
                self.stream.cu_stream(),
                &mut params,
            )
        }
        .map_err(|source| CudaRtError::Launch { kernel: kernel.entry.clone(), source })?;
        drop(guards);
        if let Some(n) = self.captured.get() {
            self.captured.set(Some(n + 1));
        }
        Ok(())
    }

    /// Records every launch `record` enqueues on the stream into a CUDA graph
    /// (`cuStreamBeginCapture` … `cuStreamEndCapture`, `cuGraphInstantiate`, `cuGraphUpload`)
    /// instead of running it. Allocations, copies and reads are refused inside; buffers must exist
    /// before. Nothing runs until [`CudaGraphExec::replay`].
    pub fn capture(
        &self,
        record: impl FnOnce(&Self) -> Result<(), CudaRtError>,
    ) -> Result<CudaGraphExec, CudaRtError> {
        self.stream
            .begin_capture(CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL)
            .map_err(driver("cuStreamBeginCapture"))?;
        self.captured.set(Some(0));
        let recorded = record(self);
        let launches = self.captured.take().unwrap_or(0);
        // End the capture whatever happened, so the stream is usable again.
        let ended = self.stream.end_capture(CUgraphInstantiate_flags(0));
        recorded?;
        let graph = ended
            .map_err(driver("cuStreamEndCapture / cuGraphInstantiate"))?
            .ok_or(CudaRtError::EmptyCapture)?;
        graph.upload().map_err(driver("cuGraphUpload"))?;
        Ok(CudaGraphExec { graph, launches })
    }

    fn refuse_while_capturing(&self, what: &'static str) -> Result<(), CudaRtError> {
        match self.captured.get() {
            Some(_) => Err(CudaRtError::InCapture { what }),
            None => Ok(()),
        }
    }
}
