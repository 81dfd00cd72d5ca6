//! CubeCL kernel → CUDA C++ source, through cubecl-cpp's CUDA dialect (no LLVM, no GPU).
//!
//! A `#[cube(launch)]` kernel expands to a struct (`my_kernel::MyKernel`) that implements
//! [`CubeKernel`]: its `define()` builds the kernel's IR ([`KernelDefinition`]) from the launch
//! settings, the device's properties and the kernel's compilation arguments. cubecl-cuda hands that
//! definition to `CppCompiler<Cuda>` when its `cpp` backend is chosen; here the same compiler is
//! called directly, with device properties built from a [`CudaArch`] instead of from a live device.

use std::sync::Arc;

use burn::cubecl::cmma::MatrixLayout;
use burn::cubecl::ir::{
    features::{AtomicUsage, Plane},
    metadata::Info,
    ContiguousElements, DeviceIdentity, DeviceProperties, ElemType, FloatKind, HardwareProperties,
    MemoryDeviceProperties, MmaProperties, OpaqueType, TargetProperties, Type, UIntKind,
    VectorSize,
};
use burn::cubecl::profile::TimingMethod;
use burn::cubecl::{define_kernel, Compiler, CubeKernel};
use cubecl_cpp::cuda::mma::manual::contiguous_elements_cuda;
use cubecl_cpp::shared::{CompilationOptions, CppCompiler, CppSupportedFeatures};
use cubecl_cpp::target::Cuda;

use super::CudaRtError;

/// What source generation needs to know about the target GPU. [`CudaArch::H100`] for an offline
/// build; `CudaRt::arch` reads it from a live device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CudaArch {
    /// Compute capability × 10 (+ minor): 90 for an H100, 80 for an A100.
    pub sm: u32,
    /// Threads per warp (32 on every NVIDIA GPU so far).
    pub warp_size: u32,
    /// Shared memory one block may use, opt-in maximum, in bytes.
    pub max_shared_memory_bytes: usize,
    /// Threads per block.
    pub max_threads_per_block: u32,
    /// Streaming multiprocessors (`None` when not known).
    pub multiprocessors: Option<u32>,
    /// Device name, for messages.
    pub name: String,
}

impl CudaArch {
    /// An H100 (sm_90, 132 SMs in the SXM part, 227 KiB opt-in shared memory per block).
    pub fn h100() -> Self {
        Self {
            sm: 90,
            warp_size: 32,
            max_shared_memory_bytes: 227 * 1024,
            max_threads_per_block: 1024,
            multiprocessors: Some(132),
            name: "NVIDIA H100 (assumed)".into(),
        }
    }

    /// NVRTC's `--gpu-architecture` value: `sm_90a` from sm_90 on (the arch-specific variant, as
    /// cubecl-cuda uses), `sm_XY` below.
    pub fn nvrtc_arch(&self) -> String {
        if self.sm >= 90 {
            format!("sm_{}a", self.sm)
        } else {
            format!("sm_{}", self.sm)
        }
    }

    /// The device properties a kernel's expansion reads (plane size, supported types, features).
    /// A subset of what cubecl-cuda advertises: scalar types, plane (warp) ops, atomics, barriers
    /// and device-scope fences; no tensor-core (cmma/mma) combinations, no TMA, no clusters.
    pub fn device_properties(&self) -> DeviceProperties {
        let hardware = HardwareProperties {
            load_width: 128,
            vector_register_count: None,
            plane_size_min: self.warp_size,
            plane_size_max: self.warp_size,
            max_bindings: 1024,
            max_shared_memory_size: self.max_shared_memory_bytes,
            max_cube_count: (i32::MAX as u32, u16::MAX as u32, u16::MAX as u32),
            max_units_per_cube: self.max_threads_per_block,
            max_cube_dim: (self.max_threads_per_block, self.max_threads_per_block, 64),
            num_streaming_multiprocessors: self.multiprocessors,
            num_tensor_cores: None,
            min_tensor_cores_dim: None,
            num_cpu_cores: None,
            last_level_cache_size: None,
            max_vector_size: VectorSize::MAX,
            cube_mma_reserved_shared_memory: 0,
        };
        let mut props = DeviceProperties::new(
            Default::default(),
            MemoryDeviceProperties::new(1 << 30, 512),
            hardware,
            TimingMethod::Device,
            DeviceIdentity {
                name: self.name.clone(),
                fingerprint: format!("mrt_cuda_rt_sm{}", self.sm),
                physical: None,
            },
        );
        cubecl_cpp::register_supported_types(&mut props);
        let features = &mut props.features;
        features.memory_reinterpret = true;
        features.alignment = true;
        // `__threadfence()` publishes a block's writes at device scope.
        features.device_memory_scope = true;
        features.plane.insert(Plane::Ops);
        features.plane.insert(Plane::NonUniformControlFlow);
        if self.sm >= 60 {
            props.register_atomic_type_usage(
                Type::atomic(ElemType::Float(FloatKind::F64)),
                AtomicUsage::Add | AtomicUsage::LoadStore | AtomicUsage::Exchange,
            );
        }
        if self.sm >= 70 {
            props.register_opaque_type(OpaqueType::Barrier);
            props.features.plane.insert(Plane::Sync);
        }
        if self.sm >= 80 {
            props.features.copy_async = true;
        }
        props
    }

    /// The target properties (register layouts of the matrix ops) of CUDA.
    pub fn target_properties(&self) -> TargetProperties {
        TargetProperties {
            mma: MmaProperties {
                register_size_bits: 32,
                const_plane_size: self.warp_size,
                register_layout_a: MatrixLayout::RowMajor,
                register_layout_b: MatrixLayout::ColMajor,
                register_layout_acc: MatrixLayout::RowMajor,
                register_duplication_a: 1,
                register_duplication_b: 1,
                register_duplication_acc: 1,
                contiguous_elements: ContiguousElements::new(contiguous_elements_cuda),
            },
        }
    }

    /// Both property sets, shared, as a kernel struct's constructor takes them.
    pub fn properties(&self) -> (Arc<DeviceProperties>, Arc<TargetProperties>) {
        (Arc::new(self.device_properties()), Arc::new(self.target_properties()))
    }

    fn compilation_options(&self) -> CompilationOptions {
        CompilationOptions {
            warp_size: self.warp_size as usize,
            supports_features: CppSupportedFeatures {
                // Kernel parameters as `__grid_constant__` (sm_70+), as cubecl-cuda does.
                grid_constants: self.sm >= 70,
                dp4a: self.sm >= 61,
                ..Default::default()
            },
            amd_wmma: None,
        }
    }
}

/// A kernel's CUDA C++ source and what its launch needs.
#[derive(Clone, Debug)]
pub struct KernelSource {
    /// The `extern "C" __global__` function's name (the kernel's name plus type suffixes).
    pub entry: String,
    /// The whole translation unit, ready for NVRTC.
    pub source: String,
    /// Dynamic shared memory the launch must reserve (`sharedMemBytes`), in bytes.
    pub shared_memory_bytes: usize,
    /// The block shape the kernel was generated for (`__launch_bounds__` is its product).
    pub block: (u32, u32, u32),
    /// The kernel's last parameter, after its buffers: cubecl's `info_st`, passed by value.
    pub info: InfoParam,
    /// `info_st`'s fields in order, for [`KernelSource::info_bytes`].
    pub info_layout: InfoLayout,
}

/// `info_st`'s fields in declaration order: one array per runtime-scalar type, then `static_meta`
/// (the buffers' lengths); each array padded to a multiple of 8 bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InfoLayout {
    pub scalars: Vec<ScalarGroup>,
    /// `static_meta`: entries and bytes per entry (4 with 32-bit addresses).
    pub static_meta: Option<(usize, usize)>,
    /// Tensor shapes/strides beyond the lengths (not built by `info_bytes`).
    pub extended_meta: bool,
}

/// The runtime scalars of one type, in the kernel's parameter order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScalarGroup {
    /// cubecl's name of the type: `u32`, `f32`, `i32`, …
    pub ty: String,
    pub count: usize,
    pub elem_bytes: usize,
}

fn padded_bytes(count: usize, elem_bytes: usize) -> usize {
    (count * elem_bytes).next_multiple_of(8)
}

impl InfoLayout {
    fn of(info: &Info) -> Self {
        Self {
            scalars: info
                .scalars
                .iter()
                .map(|f| ScalarGroup {
                    ty: f.ty.to_string(),
                    count: f.count,
                    elem_bytes: f.ty.size(),
                })
                .collect(),
            static_meta: info.sized_meta.as_ref().map(|m| {
                let bytes = if m.ty == ElemType::UInt(UIntKind::U32) { 4 } else { 8 };
                (m.count, bytes)
            }),
            extended_meta: info.has_dynamic_meta || info.num_extended_meta() > 0,
        }
    }

    /// `sizeof(info_st)`.
    pub fn size(&self) -> usize {
        let scalars: usize = self.scalars.iter().map(|g| padded_bytes(g.count, g.elem_bytes)).sum();
        scalars + self.static_meta.map_or(0, |(n, b)| padded_bytes(n, b))
    }
}

/// What the kernel's `info_st` parameter (cubecl's launch metadata) holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InfoParam {
    /// No such parameter: the kernel takes its buffers only.
    None,
    /// `uint32_t static_meta[n]`: the length, in elements, of each of the `buffers` buffers in
    /// parameter order (padded to 8 bytes). [`KernelSource::length_info`] builds it.
    Lengths { buffers: usize },
    /// Runtime scalars, 64-bit lengths or tensor shapes/strides: laid out by cubecl's rules
    /// (scalars by type, then the static metadata), which this module does not build.
    Other,
}

impl InfoParam {
    fn of(info: &Info) -> Self {
        if !info.has_info() {
            return Self::None;
        }
        match &info.sized_meta {
            Some(meta)
                if info.scalars.is_empty()
                    && !info.has_dynamic_meta
                    && meta.ty == ElemType::UInt(UIntKind::U32)
                    && info.num_extended_meta() == 0 =>
            {
                Self::Lengths { buffers: meta.count }
            }
            _ => Self::Other,
        }
    }
}

impl KernelSource {
    /// The `info_st` bytes: `scalars[i]` holds group `i`'s values (`InfoLayout::scalars[i]`,
    /// native-endian, in parameter order), `lengths` each buffer's length in elements.
    pub fn info_bytes(&self, scalars: &[&[u8]], lengths: &[u64]) -> Result<Vec<u8>, CudaRtError> {
        let layout = &self.info_layout;
        let fail = |reason: String| CudaRtError::Source { kernel: self.entry.clone(), reason };
        if layout.extended_meta {
            return Err(fail(
                "the kernel takes tensor metadata, which info_bytes does not build".into(),
            ));
        }
        if scalars.len() != layout.scalars.len() {
            return Err(fail(format!(
                "{} scalar groups given, the kernel has {:?}",
                scalars.len(),
                layout.scalars
            )));
        }
        let mut out = Vec::with_capacity(layout.size());
        for (group, bytes) in layout.scalars.iter().zip(scalars) {
            if bytes.len() != group.count * group.elem_bytes {
                return Err(fail(format!("{} bytes given for {group:?}", bytes.len())));
            }
            out.extend_from_slice(bytes);
            out.resize(out.len().next_multiple_of(8), 0);
        }
        match layout.static_meta {
            Some((n, elem)) if n == lengths.len() => {
                for &len in lengths {
                    if elem == 4 {
                        let len = u32::try_from(len)
                            .map_err(|_| fail(format!("length {len} over u32")))?;
                        out.extend_from_slice(&len.to_ne_bytes());
                    } else {
                        out.extend_from_slice(&len.to_ne_bytes());
                    }
                }
                out.resize(out.len().next_multiple_of(8), 0);
            }
            None if lengths.is_empty() => {}
            other => {
                return Err(fail(format!(
                    "{} lengths given, static_meta is {other:?}",
                    lengths.len()
                )))
            }
        }
        Ok(out)
    }

    /// The `info_st` bytes for buffers of `lengths` elements (one per buffer, in parameter order),
    /// for a kernel whose [`InfoParam`] is `Lengths`.
    pub fn length_info(&self, lengths: &[u32]) -> Result<Vec<u8>, CudaRtError> {
        match self.info {
            InfoParam::Lengths { buffers } if buffers == lengths.len() => {
                let mut bytes: Vec<u8> = lengths.iter().flat_map(|n| n.to_le_bytes()).collect();
                bytes.resize(bytes.len().next_multiple_of(8), 0);
                Ok(bytes)
            }
            other => Err(CudaRtError::Source {
                kernel: self.entry.clone(),
                reason: format!("info parameter {other:?} is not {} buffer lengths", lengths.len()),
            }),
        }
    }
}

/// CUDA C++ for one CubeCL kernel, as built by its `#[cube(launch)]` struct (`my_kernel::MyKernel::new`
/// or `my_kernel::create_dummy_kernel` with the properties of [`CudaArch::properties`]).
pub fn cuda_source<K: CubeKernel>(
    kernel: &K,
    arch: &CudaArch,
) -> Result<KernelSource, CudaRtError> {
    let definition = define_kernel(kernel).map_err(|e| CudaRtError::Source {
        kernel: kernel.name().to_string(),
        reason: e.to_string(),
    })?;
    let entry = definition.settings.kernel_name.clone();
    let cube_dim = definition.settings.cube_dim;
    let block = (cube_dim.x, cube_dim.y, cube_dim.z);
    let info = InfoParam::of(&definition.info);
    let info_layout = InfoLayout::of(&definition.info);
    let compiled = CppCompiler::<Cuda>::default()
        .compile(definition, &arch.compilation_options())
        .map_err(|e| CudaRtError::Source { kernel: entry.clone(), reason: e.to_string() })?;
    Ok(KernelSource {
        entry,
        source: compiled.source,
        shared_memory_bytes: compiled.shared_memory_size,
        block,
        info,
        info_layout,
    })
}
