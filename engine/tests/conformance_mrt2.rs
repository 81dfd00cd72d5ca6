//! The MRT2 ladder of `shared/fixtures/mrt2/M1` through the same loaders users use
//! (`mrt conformance`), the loader's strictness and fused layouts on edited copies of the fixture
//! weights, and the streaming state's guarantees (untouched after an error, bounded windows, no
//! allocation per frame; the codec step's allocations).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::OnceLock;

use mrt::codec::{Codec, CodecConfig, DecoderStream};
use mrt::formats::tensor::{HostTensor, TensorError, TensorStore};
use mrt::mrt2::{FrameState, Mrt2Config, Mrt2Model, Mrt2Weights, WeightsError};
use mrt::sampling::mrt2::{Key, SamplingParams};

mod common;

use common::mrt2::set_dir;

struct Fixture {
    model: Mrt2Model,
    cond_tokens: Vec<i32>,
    frames: usize,
    init_key: Key,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let m = common::mrt2::load();
        Fixture { model: Mrt2Model::new(m.cfg, m.weights), frames: m.frames, cond_tokens: m.cond_tokens, init_key: m.init_key }
    })
}

fn cfg() -> &'static Mrt2Config {
    &fixture().model.cfg
}

/// The frame-`t` conditioning tokens of the fixture.
fn cond(t: usize) -> &'static [i32] {
    let cc = cfg().cond_channels();
    &fixture().cond_tokens[t * cc..(t + 1) * cc]
}

#[test]
fn the_m1_ladder_passes_every_rung() {
    let dir = set_dir();
    assert!(dir.join("config.json").is_file(), "fixture set missing: {}", dir.display());
    let report = mrt::conformance::run(&dir, &mrt::Target::host()).expect("ladder runs");
    println!("{report}");
    assert!(report.checks.len() >= 20, "every rung ran (the streamed audio included): {report}");
    assert!(report.passed(), "failed rungs: {:#?}", report.failures());
}

// ---- Loader strictness and fused layouts, on edited copies of the fixture weights.

fn store() -> TensorStore {
    mrt::formats::safetensors::read(&set_dir().join("weights.safetensors")).expect("M1 weights read")
}

const SELF0: &str = "params/depthformer/decoder/temporal_body/transformer/x_layers_0/self_attention/attention/";
const CROSS0: &str = "params/depthformer/decoder/temporal_body/transformer/x_layers_0/cross_attention/attention/";
const FINAL_LN: &str = "params/depthformer/decoder/depth_body/final_ln/scale";

#[test]
fn a_missing_lm_tensor_is_an_error_naming_it() {
    let mut s = store();
    let name = format!("{SELF0}per_dim_scale");
    s.remove(&name).expect("the fixture has it");
    match Mrt2Weights::from_store(s, cfg()) {
        Err(WeightsError::Tensor(TensorError::Missing { name: n, .. })) => assert_eq!(n, name),
        other => panic!("expected Missing, got {:?}", other.map(|_| ())),
    }
}

#[test]
fn an_extra_lm_tensor_is_an_error_naming_it_but_codec_tensors_are_ignored() {
    let mut s = store();
    assert!(s.names().any(|k| k.starts_with("params/soundstream/")), "the fixture holds the codec too");
    let name = "params/depthformer/decoder/depth_body/transformer/x_layers_0/self_attention/attention/sink_key_embeddings";
    s.insert(name, HostTensor::new(vec![1, 3, 16], vec![0.0; 48]));
    match Mrt2Weights::from_store(s, cfg()) {
        Err(WeightsError::Tensor(TensorError::Unexpected { names, .. })) => assert_eq!(names, vec![name.to_owned()]),
        other => panic!("expected Unexpected, got {:?}", other.map(|_| ())),
    }
}

#[test]
fn a_misshaped_or_non_finite_tensor_is_an_error_naming_it() {
    let d = cfg().depth.d_model;
    let mut s = store();
    s.insert(FINAL_LN, HostTensor::new(vec![d - 1], vec![1.0; d - 1]));
    let e = Mrt2Weights::from_store(s, cfg()).map(|_| ()).unwrap_err();
    match &e {
        WeightsError::Tensor(TensorError::Shape { name, expected, found, .. }) => {
            assert_eq!((name.as_str(), expected.clone(), found.clone()), (FINAL_LN, format!("[{d}]"), vec![d - 1]))
        }
        other => panic!("expected Shape, got {other:?}"),
    }
    assert!(e.to_string().contains(FINAL_LN) && e.to_string().contains("weights.safetensors"), "{e}");

    let mut s = store();
    let mut t = s.get(FINAL_LN).expect("the fixture has it").clone();
    t.data[5] = f32::NAN;
    s.insert(FINAL_LN, t);
    match Mrt2Weights::from_store(s, cfg()) {
        Err(WeightsError::Tensor(TensorError::NonFinite { name, index, .. })) => assert_eq!((name.as_str(), index), (FINAL_LN, 5)),
        other => panic!("expected NonFinite, got {:?}", other.map(|_| ())),
    }
}

/// Stacks `[in, H, Dh]` kernels into a fused `[in, parts, H, Dh]` kernel.
fn fuse(parts: &[&HostTensor]) -> HostTensor {
    let shape = &parts[0].shape;
    let in_dim = shape[0];
    let inner: usize = shape[1..].iter().product();
    let mut data = Vec::with_capacity(in_dim * parts.len() * inner);
    for i in 0..in_dim {
        for p in parts {
            data.extend_from_slice(&p.data[i * inner..(i + 1) * inner]);
        }
    }
    HostTensor::new(vec![in_dim, parts.len(), shape[1], shape[2]], data)
}

#[test]
fn fused_qkv_and_kv_kernels_load_to_the_same_matrices_as_separate_ones() {
    let mut s = store();
    let mut take = |n: String| s.remove(&n).expect("the fixture has separate kernels");
    let (q, k, v) = (
        take(format!("{SELF0}query_projection/kernel")),
        take(format!("{SELF0}key_projection/kernel")),
        take(format!("{SELF0}value_projection/kernel")),
    );
    let (ck, cv) = (take(format!("{CROSS0}key_projection/kernel")), take(format!("{CROSS0}value_projection/kernel")));
    s.insert(format!("{SELF0}query_key_value_projection/kernel"), fuse(&[&q, &k, &v]));
    s.insert(format!("{CROSS0}key_value_projection/kernel"), fuse(&[&ck, &cv]));

    let fused = Mrt2Weights::from_store(s, cfg()).expect("fused layout loads");
    let sep = &fixture().model.weights;
    for (a, b) in [
        (&fused.temporal[0].self_attention, &sep.temporal[0].self_attention),
        (&fused.temporal[0].cross_attention, &sep.temporal[0].cross_attention),
    ] {
        assert_eq!((&a.query, &a.key, &a.value), (&b.query, &b.key, &b.value));
    }
}

#[test]
fn a_shared_key_value_kernel_loads_as_both_key_and_value() {
    let mut s = store();
    let k = s.remove(&format!("{CROSS0}key_projection/kernel")).expect("the fixture has it");
    s.remove(&format!("{CROSS0}value_projection/kernel")).expect("the fixture has it");
    s.insert(format!("{CROSS0}shared_key_value_projection/kernel"), k);
    let shared = Mrt2Weights::from_store(s, cfg()).expect("shared K/V layout loads");
    let (a, b) = (&shared.temporal[0].cross_attention, &fixture().model.weights.temporal[0].cross_attention);
    assert_eq!((&a.key, &a.value), (&b.key, &b.key));
}

#[test]
fn a_fused_qkv_kernel_for_cross_attention_is_an_error_naming_it() {
    // Cross-attention keys come from the conditioning width, which differs from d_t in M1.
    assert_ne!(cfg().encoder_width, cfg().temporal.d_model);
    let mut s = store();
    let (t, name) = (cfg().temporal, format!("{CROSS0}query_key_value_projection/kernel"));
    s.insert(name.clone(), HostTensor::new(vec![t.d_model, 3, t.heads, t.head_dim], vec![0.0; t.d_model * 3 * t.inner()]));
    let e = Mrt2Weights::from_store(s, cfg()).map(|_| ()).unwrap_err();
    assert!(matches!(&e, WeightsError::Layout { name: n, .. } if *n == name), "{e}");
}

// ---- The streaming state.

#[test]
fn a_step_with_an_out_of_table_condition_token_fails_and_leaves_the_state_untouched() {
    let f = fixture();
    let mut st = FrameState::new(&f.model, f.init_key);
    let mut bad = cond(0).to_vec();
    *bad.last_mut().expect("144 channels") = 10_000;
    assert!(f.model.step(&mut st, &bad, &SamplingParams::greedy(), None).is_err());
    assert_eq!((st.frame(), st.key()), (0, f.init_key));
    assert_eq!(st.window_lengths(0), (0, 0));
    assert!(st.prev_tokens().iter().all(|&id| id == cfg().sos_id as i32));
    // A wrong forced frame is refused before anything changes too.
    assert!(f.model.step(&mut st, cond(0), &SamplingParams::greedy(), Some(&[6; 3])).is_err());
    assert_eq!((st.frame(), st.window_lengths(0)), (0, (0, 0)));
}

#[test]
fn windows_stop_growing_at_w_plus_one_entries() {
    let f = fixture();
    let mut st = FrameState::new(&f.model, f.init_key);
    let c = cfg();
    for t in 0..(c.self_attention_window.max(c.cross_attention_window) + 3).min(f.frames) {
        f.model.step(&mut st, cond(t), &SamplingParams::greedy(), None).expect("fixture frames step");
        let (s, x) = st.window_lengths(c.temporal.layers - 1);
        assert_eq!(s, (t + 1).min(c.self_attention_window + 1));
        assert_eq!(x, (t + 1).min(c.cross_attention_window + 1));
    }
}

// ---- No allocation per frame: counted by a global allocator on the thread that asks.

struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    /// Allocations this thread made while counting (per thread: tests run side by side).
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

fn count_allocation() {
    if COUNTING.with(Cell::get) {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
    }
}

// SAFETY: every call forwards to the system allocator with the caller's arguments unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_allocation();
        // SAFETY: the caller's contract is System's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count_allocation();
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// A pool of two threads for one test's counted steps: in rayon's global pool a thread waiting
/// for its share could steal a job of another test running beside it and count its allocations.
fn own_pool() -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new().num_threads(2).build().expect("a thread pool")
}

/// The LM step of the set. Its products are split over rayon's pool; counted on a thread of
/// the pool (where a step runs: `Mrt2Model::step` enters it), which takes its share of every
/// product and waits for the others, so its joins are counted too. The pool is the test's own.
#[test]
fn streaming_frames_allocate_nothing_after_the_state_is_built() {
    let f = fixture();
    let mut st = FrameState::new(&f.model, f.init_key);
    let params = SamplingParams::default();
    let allocations = own_pool().install(|| {
        ALLOCATIONS.with(|n| n.set(0));
        COUNTING.with(|c| c.set(true));
        for t in 0..f.frames {
            f.model.step(&mut st, cond(t), &params, None).expect("fixture frames step");
        }
        COUNTING.with(|c| c.set(false));
        ALLOCATIONS.with(Cell::get)
    });
    assert!(st.frame() as usize == f.frames, "every frame stepped");
    assert_eq!(allocations, 0);
}

/// The codec step of the same set: the stream's buffers are all sized by its first step, and
/// its products run as our own tiles split over the pool (no `gemm` packing buffers), so every
/// later step, a `reset` and the step after it allocate nothing. Counted on a thread of the
/// test's own pool, where `DecoderStream::step` runs, as for the LM step.
#[test]
fn codec_frames_allocate_nothing_after_the_first_step_nor_on_reset() {
    let dir = set_dir();
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).expect("config.json reads")).expect("json");
    let config = CodecConfig::from_mrt2_value(&json["codec"]).expect("codec config");
    let codec = Codec::load_mrt2(&dir.join("weights.safetensors"), config, &mrt::Target::host()).expect("M1 codec loads");
    let codes = mrt::formats::npy::read_i32(&dir.join("greedy_codes.npy")).expect("greedy_codes.npy reads");
    let levels = codes.shape[1];
    let mut stream = DecoderStream::new(&codec, levels).expect("stream");
    let per_step = own_pool().install(|| {
        let mut frames = codes.data.chunks_exact(levels);
        stream.step(&codec, frames.next().expect("a frame")).expect("first step");
        let mut per_step = Vec::new();
        let mut counted = |f: &mut dyn FnMut()| {
            ALLOCATIONS.with(|n| n.set(0));
            COUNTING.with(|c| c.set(true));
            f();
            COUNTING.with(|c| c.set(false));
            per_step.push(ALLOCATIONS.with(Cell::get));
        };
        for frame in frames {
            counted(&mut || {
                stream.step(&codec, frame).expect("step");
            });
        }
        counted(&mut || stream.reset());
        counted(&mut || {
            stream.step(&codec, &codes.data[..levels]).expect("step after reset");
        });
        per_step
    });
    println!("allocations per step (counted on the stepping thread): {per_step:?}");
    assert!(per_step.len() > 3, "the set streams several frames");
    assert!(per_step.iter().all(|&n| n == 0), "a step or reset allocated: {per_step:?}");
}

/// `mrt bench agreement` on M1: f32 is the reference run (every token equal), and the narrower
/// weights move the teacher-forced logits in order (bf16 less than int8), staying close enough
/// that most greedy picks survive.
#[test]
fn narrower_weights_move_the_logits_in_order_and_f32_agrees_exactly() {
    use mrt::kernels::WeightPrecision;
    let dir = set_dir();
    let f32 = mrt::conformance::mrt2::agreement(&dir, WeightPrecision::F32).expect("f32 agreement");
    assert_eq!((f32.greedy_tokens_equal, f32.greedy_first_difference, f32.tf_argmax_equal), (f32.tokens, None, f32.tokens), "{f32}");
    let bf16 = mrt::conformance::mrt2::agreement(&dir, WeightPrecision::Bf16).expect("bf16 agreement");
    let int8 = mrt::conformance::mrt2::agreement(&dir, WeightPrecision::Int8).expect("int8 agreement");
    assert!(f32.tf_logits_max_diff < bf16.tf_logits_max_diff && bf16.tf_logits_max_diff < int8.tf_logits_max_diff, "{f32}\n{bf16}\n{int8}");
    for a in [&bf16, &int8] {
        assert!(a.tf_argmax_equal * 10 >= a.tokens * 9, "{a}");
    }
}
