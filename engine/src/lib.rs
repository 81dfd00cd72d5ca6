//! MRT Live engine: Magenta RealTime v1 re-implemented on burn.
//!
//! - [`codec`]: SpectroStream, 48 kHz stereo audio ↔ RVQ codes.
//! - [`lm`]: the Depthformer language model (T5 encoder + temporal and depth decoders).
//! - [`style`]: MusicCoCa, text and audio prompts → style embedding → style tokens; blends.
//! - [`system`]: the streaming system: state, encoder ids, crossfade, `generate_chunk`.
//! - [`conformance`]: the golden-fixture ladders run by `mrt conformance` and `cargo test`.
//! - [`bench`]: `mrt bench` measurements.

pub mod assets;
pub mod bench;
pub mod codec;
pub mod conformance;
pub mod device;
pub mod lm;
pub mod npy;
pub mod proto;
pub mod rng;
pub mod style;
pub mod system;
pub mod tiny_model;
pub mod verify;
pub mod tfbundle;
pub mod tflite;

pub use device::DeviceChoice;
