//! The `cuda-rt` path: CubeCL kernel → CUDA C++ (cubecl-cpp) → PTX (NVRTC) → the driver.
//!
//! Source generation and the NVRTC compile need no GPU: NVRTC is a plain library, taken from the
//! pip wheel `nvidia-cuda-nvrtc-cu12` (folder in `MRT_NVRTC_LIB_DIR`, set by test.sh). Those tests
//! fail, never skip, when it is missing. The launch and graph test needs a GPU and is ignored here;
//! run it on a GPU machine with `--ignored` (not yet part of scripts/gpu-bench.sh).
#![cfg(feature = "cuda-rt")]

use std::path::PathBuf;

use burn::cubecl;
use burn::cubecl::ir::{
    settings::{Dim3, ExecutionMode},
    AddressType,
};
use burn::cubecl::prelude::*;
use mrt::kernels::cuda_rt::{
    self, cuda_source, CudaArch, CudaRt, CudaRtError, InfoParam, KernelArg, KernelSource,
};

/// One block sums `block` inputs in shared memory (tree reduction), then block 0's unit 0 … every
/// block writes its sum; `scale` is baked in at expansion (comptime) and multiplies each input.
#[cube(launch)]
fn block_sum(input: &[f32], output: &mut [f32], #[comptime] block: usize, #[comptime] scale: u32) {
    let mut partial = Shared::<[f32]>::new_slice(block);
    let unit = UNIT_POS as usize;
    let base = CUBE_POS * block;
    partial[unit] = input[base + unit] * f32::cast_from(scale);
    sync_cube();
    let mut stride = CUBE_DIM_X as usize / 2;
    while stride > 0 {
        if unit < stride {
            partial[unit] += partial[unit + stride];
        }
        sync_cube();
        stride /= 2;
    }
    if unit == 0 {
        output[CUBE_POS] = partial[0];
    }
}

/// `data[i] += 1` for every element: the graph test replays it.
#[cube(launch)]
fn add_one(data: &mut [f32]) {
    let i = ABSOLUTE_POS;
    if i < data.len() {
        data[i] += 1.0;
    }
}

const BLOCK: usize = 128;
const SCALE: u32 = 3;

fn settings(block: u32) -> KernelSettings {
    KernelSettings::new(Dim3::new_1d(block), ExecutionMode::Unchecked, AddressType::U32)
}

fn block_sum_source(arch: &CudaArch) -> KernelSource {
    let (props, target) = arch.properties();
    let kernel = block_sum::BlockSum::new(
        settings(BLOCK as u32),
        props,
        target,
        BufferCompilationArg { inplace: None },
        BufferCompilationArg { inplace: None },
        BLOCK,
        SCALE,
    );
    cuda_source(&kernel, arch).expect("CUDA source for block_sum")
}

fn add_one_source(arch: &CudaArch) -> KernelSource {
    let (props, target) = arch.properties();
    let kernel = add_one::AddOne::new(
        KernelSettings::new(Dim3::new_1d(256), ExecutionMode::Checked, AddressType::U32),
        props,
        target,
        BufferCompilationArg { inplace: None },
    );
    cuda_source(&kernel, arch).expect("CUDA source for add_one")
}

/// The NVRTC folder from `MRT_NVRTC_LIB_DIR`, loaded; panics (fails the test) when unset or wrong.
fn load_nvrtc() {
    let dir = std::env::var_os("MRT_NVRTC_LIB_DIR").map(PathBuf::from).unwrap_or_else(|| {
        panic!(
            "MRT_NVRTC_LIB_DIR is not set: point it at the folder holding {} (pip install \
             nvidia-cuda-nvrtc-cu12; the folder is nvidia/cuda_nvrtc/lib of site-packages)",
            cuda_rt::nvrtc::NVRTC_FILE
        )
    });
    cuda_rt::load_nvrtc_from(&dir).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        cuda_rt::nvrtc_available(),
        "NVRTC loaded from {} but cudarc cannot open it",
        dir.display()
    );
}

#[test]
fn source_of_a_cube_kernel_is_cuda_cpp() {
    let src = block_sum_source(&CudaArch::h100());
    println!(
        "{}\n--- entry {}, shared {} B, block {:?}",
        src.source, src.entry, src.shared_memory_bytes, src.block
    );
    assert!(src.source.contains("extern \"C\" __global__"), "no kernel entry:\n{}", src.source);
    assert!(src.source.contains(&src.entry), "entry `{}` not in the source", src.entry);
    assert!(src.entry.starts_with("block_sum"), "entry name {}", src.entry);
    assert!(
        src.source.contains("__launch_bounds__(128)"),
        "block size not baked in:\n{}",
        src.source
    );
    assert!(src.source.contains("__syncthreads()"), "no block barrier:\n{}", src.source);
    assert!(src.source.contains("__shared__"), "no shared memory:\n{}", src.source);
    // The shared array: 128 f32 (512 bytes), as dynamic shared memory or a static array.
    assert!(
        src.shared_memory_bytes == BLOCK * 4 || src.source.contains(&format!("[{BLOCK}]")),
        "shared array of {BLOCK} f32 not found (shared bytes {}):\n{}",
        src.shared_memory_bytes,
        src.source
    );
    assert_eq!(src.block, (BLOCK as u32, 1, 1));
    // The comptime scale is a constant in the source, not a parameter.
    assert!(
        src.source.lines().any(|l| l.starts_with("float const") && l.ends_with(" = 3;")),
        "comptime scale 3 not baked in:\n{}",
        src.source
    );
    // The launch metadata: the two buffers' lengths, passed by value.
    assert!(src.source.contains("__grid_constant__ info_st const"), "{}", src.source);
    assert_eq!(src.info, InfoParam::Lengths { buffers: 2 });
    assert_eq!(
        src.length_info(&[512, 4]).unwrap(),
        [512u32.to_le_bytes(), 4u32.to_le_bytes()].concat()
    );
}

#[test]
fn a_checked_kernel_reads_its_length_from_the_info_struct() {
    let src = add_one_source(&CudaArch::h100());
    assert_eq!(src.info, InfoParam::Lengths { buffers: 1 });
    assert!(
        src.source.contains(".static_meta[0]"),
        "length not read from info_st:\n{}",
        src.source
    );
    assert!(src.source.contains("__launch_bounds__(256)"));
    assert_eq!(src.shared_memory_bytes, 0);
}

#[test]
fn comptime_parameters_change_the_kernel() {
    let arch = CudaArch::h100();
    let (props, target) = arch.properties();
    let a = block_sum_source(&arch);
    let b = cuda_source(
        &block_sum::BlockSum::new(
            settings(64),
            props,
            target,
            BufferCompilationArg { inplace: None },
            BufferCompilationArg { inplace: None },
            64,
            SCALE,
        ),
        &arch,
    )
    .unwrap();
    assert_ne!(a.entry, b.entry, "two comptime block sizes share an entry name");
    assert_ne!(a.source, b.source);
    assert!(b.source.contains("__launch_bounds__(64)"));
}

#[test]
fn nvrtc_compiles_generated_source_to_ptx_without_a_gpu() {
    load_nvrtc();
    let (major, minor) = cuda_rt::nvrtc_version().unwrap();
    println!("NVRTC {major}.{minor}");
    let arch = CudaArch::h100();
    for src in [add_one_source(&arch), block_sum_source(&arch)] {
        let t = std::time::Instant::now();
        let ptx = cuda_rt::compile_ptx(&src, &arch)
            .unwrap_or_else(|e| panic!("{e}\n--- source:\n{}", src.source));
        println!(
            "{}: {} B of C++ → {} B of PTX in {:.0} ms",
            src.entry,
            src.source.len(),
            ptx.len(),
            t.elapsed().as_secs_f64() * 1e3
        );
        assert!(ptx.contains(".target sm_90a"), "PTX target:\n{}", &ptx[..ptx.len().min(800)]);
        assert!(
            ptx.contains(&format!(".entry {}", src.entry)),
            "no .entry {} in the PTX",
            src.entry
        );
        if src.entry.starts_with("block_sum") {
            assert!(ptx.contains("bar.sync"), "no barrier in the PTX");
            assert!(ptx.contains(".shared"), "no shared memory in the PTX");
        }
    }
}

#[test]
fn nvrtc_errors_name_the_kernel_and_carry_the_log() {
    load_nvrtc();
    let err = cuda_rt::compile_ptx_source(
        "broken_kernel",
        "extern \"C\" __global__ void broken_kernel() { undeclared_thing = 1; }",
        &CudaArch::h100(),
    )
    .expect_err("NVRTC accepted an undeclared identifier");
    let msg = err.to_string();
    assert!(matches!(err, CudaRtError::Nvrtc { .. }), "{msg}");
    assert!(msg.contains("broken_kernel"), "{msg}");
    assert!(msg.contains("undeclared_thing"), "NVRTC's log is missing: {msg}");
}

#[test]
fn a_missing_nvrtc_folder_is_a_clear_error() {
    let err = cuda_rt::load_nvrtc_from(std::path::Path::new("/nonexistent/nvrtc")).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("/nonexistent/nvrtc/libnvrtc.so.12"), "{msg}");
}

/// On a machine without the driver, opening a device says so (on a GPU machine: it opens).
#[test]
fn opening_a_device_names_a_missing_driver() {
    match CudaRt::new(0) {
        Ok(rt) => {
            assert!(CudaRt::driver_available(), "opened {:?} without a driver?", rt.arch().name)
        }
        Err(e) => {
            assert!(!CudaRt::driver_available(), "driver present but opening failed: {e}");
            assert!(e.to_string().starts_with("libcuda.so not found: no NVIDIA driver"), "{e}");
        }
    }
}

#[test]
#[ignore = "needs an NVIDIA GPU and driver (CI has none): on a GPU machine run this test with --ignored"]
fn launch_and_graph_replay_on_the_gpu() {
    load_nvrtc();
    let rt = CudaRt::new(0).unwrap_or_else(|e| panic!("{e}"));
    let arch = rt.arch().clone();
    println!("device {} sm_{} ({} SMs)", arch.name, arch.sm, arch.multiprocessors.unwrap_or(0));

    // The reduction: 4 blocks of 128.
    let blocks = 4usize;
    let input: Vec<f32> = (0..blocks * BLOCK).map(|i| (i % 7) as f32 - 2.0).collect();
    let src = block_sum_source(&arch);
    let kernel = rt.load(&src).unwrap_or_else(|e| panic!("{e}\n{}", src.source));
    let inp = rt.upload(&input).unwrap();
    let out = rt.alloc(blocks * 4).unwrap();
    // Parameters as the generated signature lists them: the buffers, then cubecl's info struct
    // (the buffers' lengths; the unchecked reduction reads none of them).
    let info = src.length_info(&[input.len() as u32, blocks as u32]).unwrap();
    let args = [KernelArg::Buffer(&inp), KernelArg::Buffer(&out), KernelArg::Value(&info)];
    unsafe { rt.launch(&kernel, (blocks as u32, 1, 1), &args) }.unwrap();
    let got: Vec<f32> = rt.read(&out).unwrap();
    let want: Vec<f32> =
        input.chunks(BLOCK).map(|c| c.iter().map(|x| x * SCALE as f32).sum()).collect();
    assert_eq!(got, want);

    // A graph of 5 launches of add_one, replayed 10 times: +50.
    let n = 1000usize;
    let src = add_one_source(&arch);
    let add = rt.load(&src).unwrap_or_else(|e| panic!("{e}\n{}", src.source));
    let data = rt.upload(&vec![0.0f32; n]).unwrap();
    let len_info = src.length_info(&[n as u32]).unwrap();
    let args = [KernelArg::Buffer(&data), KernelArg::Value(&len_info)];
    let grid = (n.div_ceil(256) as u32, 1, 1);
    let graph = rt
        .capture(|rt| {
            for _ in 0..5 {
                unsafe { rt.launch(&add, grid, &args)? };
            }
            Ok(())
        })
        .unwrap();
    assert_eq!(graph.launches, 5);
    let before: Vec<f32> = rt.read(&data).unwrap();
    assert!(before.iter().all(|&x| x == 0.0), "capture ran the launches");
    for _ in 0..10 {
        graph.replay().unwrap();
    }
    let after: Vec<f32> = rt.read(&data).unwrap();
    assert!(after.iter().all(|&x| x == 50.0), "{:?}", &after[..8]);
}

/// The GPU decoder's own kernels (`kernels::gpu::decode`, written for wgpu/cuda) go through the
/// same route: CUDA C++ from cubecl-cpp, PTX from NVRTC, with base-model-like comptime shapes.
#[cfg(any(feature = "wgpu", feature = "cuda"))]
#[test]
fn the_decoder_kernels_compile_to_ptx() {
    use mrt::kernels::gpu::decode::{self as d, GEGLU, LANES, THREADS, TILE};
    use mrt::kernels::gpu::frame as f;
    load_nvrtc();
    let arch = CudaArch::h100();
    let (p, t) = arch.properties();
    let buf = || BufferCompilationArg { inplace: None };
    let s = |x: u32, y: u32| {
        KernelSettings::new(Dim3::new_2d(x, y), ExecutionMode::Checked, AddressType::U32)
    };
    let (batch, heads, dh, cap, s_len) = (2usize, 8usize, 64usize, 1024usize, 256usize);
    // `gemv` with the RMS folded in: 7 buffers, 10 runtime scalars, then its comptime choices.
    let gemv = |batch: usize, format: u32, mode: u32, bias: bool| {
        let b = buf;
        let k = d::gemv::Gemv::new(
            s(LANES, THREADS / LANES),
            p.clone(),
            t.clone(),
            b(), b(), b(), b(), b(), b(), b(),
            (), (), (), (), (), (), (), (), (), (),
            batch,
            true,
            format,
            mode,
            bias,
        );
        cuda_source(&k, &arch)
    };
    let sources = [
        gemv(batch, d::INT8, GEGLU, false),
        // MRT2's: a biased GELU product, the windowed attention with a sink, the row norms and
        // the Gumbel sampler (mrt2_small-like shapes: 8 heads × 128, a ring of 42).
        gemv(1, d::BF16, d::GELU, true),
        cuda_source(
            &f::attend_window::AttendWindow::new(
                s(128, 1),
                p.clone(),
                t.clone(),
                buf(), buf(), buf(), buf(), buf(), buf(), buf(), buf(),
                (),
                42,
                128,
                8,
                1,
                false,
            ),
            &arch,
        ),
        cuda_source(
            &f::norm_row::NormRow::new(s(THREADS, 1), p.clone(), t.clone(), buf(), buf(), buf(), buf(), (), (), f::LAYER),
            &arch,
        ),
        cuda_source(
            &f::sample_gumbel::SampleGumbel::new(
                s(THREADS, 1),
                p.clone(),
                t.clone(),
                buf(), buf(), buf(), buf(), buf(), buf(),
                (), (), (), (), (), (), (), (), (), (), (),
            ),
            &arch,
        ),
        cuda_source(
            &d::attend_self::AttendSelf::new(
                s(THREADS, 1),
                p.clone(),
                t.clone(),
                buf(), buf(), buf(), buf(), buf(), buf(),
                (),
                false,
                cap,
                dh,
                heads,
            ),
            &arch,
        ),
        cuda_source(
            &d::attend_cross::AttendCross::new(
                s(THREADS, 1),
                p.clone(),
                t.clone(),
                buf(), buf(), buf(), buf(),
                s_len,
                dh,
                heads,
            ),
            &arch,
        ),
        cuda_source(
            &d::cross_kv::CrossKv::new(
                s(TILE, TILE),
                p.clone(),
                t.clone(),
                buf(), buf(), buf(), buf(),
                (), (),
                s_len,
                dh,
                heads,
            ),
            &arch,
        ),
        cuda_source(
            &d::sample::Sample::new(
                s(THREADS, 1),
                p.clone(),
                t.clone(),
                buf(), buf(), buf(), buf(), buf(), buf(), buf(),
                (), (), (), (), (), (), (), (), (),
                batch,
            ),
            &arch,
        ),
    ];
    for src in sources {
        let src = src.unwrap_or_else(|e| panic!("{e}"));
        assert!(src.source.contains("extern \"C\" __global__"), "{}", src.source);
        // Runtime scalars travel in cubecl's info struct, which this module leaves to the caller.
        let t0 = std::time::Instant::now();
        let ptx = cuda_rt::compile_ptx(&src, &arch)
            .unwrap_or_else(|e| panic!("{e}\n--- source:\n{}", src.source));
        println!(
            "{}: {} B C++ → {} B PTX in {:.0} ms, shared {} B, info {:?}",
            src.entry,
            src.source.len(),
            ptx.len(),
            t0.elapsed().as_secs_f64() * 1e3,
            src.shared_memory_bytes,
            src.info
        );
        assert!(ptx.contains(&format!(".entry {}", src.entry)), "no .entry {}", src.entry);
        // The info struct as info_bytes lays it out: the C++ struct's fields in the same order
        // with the same padded counts (read from the source), and its size (NVRTC checks a
        // static_assert appended to the generated source; every field is 8-byte padded, so the
        // offsets follow from order and counts).
        let layout = &src.info_layout;
        assert!(!layout.extended_meta, "{layout:?}");
        let groups: Vec<Vec<u8>> =
            layout.scalars.iter().map(|g| vec![0u8; g.count * g.elem_bytes]).collect();
        let group_refs: Vec<&[u8]> = groups.iter().map(|g| g.as_slice()).collect();
        let lengths = vec![1u64; layout.static_meta.map_or(0, |(n, _)| n)];
        let bytes = src.info_bytes(&group_refs, &lengths).unwrap();
        assert_eq!(bytes.len(), layout.size());
        let body = src
            .source
            .split("struct info_st {")
            .nth(1)
            .expect("no info_st")
            .split("};")
            .next()
            .unwrap();
        let declared: Vec<&str> =
            body.split(';').map(str::trim).filter(|f| !f.is_empty()).collect();
        let mut expected: Vec<String> = layout
            .scalars
            .iter()
            .map(|g| {
                format!(
                    "scalars_{}[{}]",
                    g.ty,
                    (g.count * g.elem_bytes).next_multiple_of(8) / g.elem_bytes
                )
            })
            .collect();
        if let Some((n, b)) = layout.static_meta {
            expected.push(format!("static_meta[{}]", (n * b).next_multiple_of(8) / b));
        }
        assert_eq!(declared.len(), expected.len(), "{declared:?} vs {expected:?}");
        for (d, e) in declared.iter().zip(&expected) {
            assert!(d.ends_with(e.as_str()), "info_st field `{d}`, expected `{e}`");
        }
        let checks =
            format!("\nstatic_assert(sizeof(info_st) == {}, \"info_st size\");\n", bytes.len());
        println!("  info_st: {layout:?}, {} bytes", bytes.len());
        cuda_rt::compile_ptx_source(&src.entry, &(src.source.clone() + &checks), &arch)
            .unwrap_or_else(|e| panic!("info_st layout disagrees with the C++ struct: {e}"));
    }
}
