//! Magenta RealTime 2 (MRT2): the frame-by-frame language model of `magenta-rt` 2.0.3.
//!
//! Where v1 generates 2 s chunks, MRT2 emits one 40 ms frame of 12 SpectroStream RVQ tokens per
//! step, conditioned per frame on MusicCoCa style tokens, a MIDI piano-roll state, a drum flag
//! and guidance bins (guidance is conditioning, not a CFG batch). One step
//! ([`model::Mrt2Model::step`]) runs on the host kernels in f32 and reproduces the reference JAX
//! code (`shared/spec/magenta_rt_2.md`, fixtures `shared/fixtures/mrt2/`, checked by
//! `conformance::mrt2`):
//!
//! ```text
//!  notes (NoteTracker) ─┐
//!  style tokens, drums, │ 144 ids            conditioning window (W + 1)
//!  guidance bins ───────┴─► conditioning ──► [w] ─────────────┐
//!                           encoder                           ▼ cross-attn K/V
//!  previous frame's ──► mean E[id]·√d_t ──► temporal stack ──────────► temporal_out [d_t]
//!  12 tokens (SOS at     [d_t]               (self-attn over W + 1 frames + sink,  │
//!  frame 0)                                   cross-attn + sink, FFN) × L_t        │
//!        ▲                                                                         ▼
//!        │        12 depth steps: adapter → (causal self-attn, FFN) × L_d → final_ln
//!        │        → to_logits (the level's 1024 rows) → soft cap → top-k + Gumbel·T → token
//!        │        (step k > 0 consumes E[token k−1]·√d_t; key = fold_in(key, frame))
//!        └──────────────────────────── 12 tokens ──► codes (id − 6) mod 1024 ──► codec
//! ```
//!
//! - [`config`]: sizes, the fixture `config.json` reader, the `mrt2_small` / `mrt2_base` presets.
//! - [`weights`]: the official safetensors layout → host structs (the only place with names).
//! - [`conditioning`]: token layout, guidance bins, the conditioning encoder.
//! - [`notes`]: the MIDI note tracker (latched onsets, onset mode, unmask width).
//! - [`model`]: the per-stream [`model::FrameState`] and the per-frame step.
//! - [`system`]: [`Mrt2System`], the LM step plus the codec's frame-by-frame decode, with seeds,
//!   a saved state and prefill; what `stream::Generator::Mrt2` drives.
//!
//! The sampler (threefry keys, Gumbel noise, top-k) is `crate::sampling::mrt2`.

pub mod conditioning;
pub mod gpu_decoder;
pub mod config;
pub mod model;
pub mod notes;
pub mod system;
pub mod weights;

pub use config::Mrt2Config;
pub use model::{FrameState, Mrt2Model, StepError};
pub use system::{Mrt2Error, Mrt2State, Mrt2System};
pub use weights::{Mrt2Weights, WeightsError};
