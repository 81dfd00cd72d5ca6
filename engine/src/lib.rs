//! MRT Live engine: Google DeepMind's Magenta RealTime models re-implemented on burn plus host
//! kernels. The layers, bottom up (each imports only from those below it; `engine/NOTES.md`,
//! "Map", says where a new model family or compute path goes):
//!
//! - [`formats`]: file formats (zarr, safetensors, npy, protobuf, TF bundle, TFLite), one host
//!   tensor type and one tensor store.
//! - [`kernels`]: compute every family calls (the host kernels of the CPU path).
//! - [`sampling`]: the seeded RNG and top-k selection every family's sampler uses.
//! - [`device`]: the backend choice resolved once into a [`Target`] (device + [`Compute`] path).
//! - [`codec`]: SpectroStream, 48 kHz stereo audio ↔ RVQ codes.
//! - [`style`]: MusicCoCa, text and audio prompts → style embedding → style tokens; blends.
//! - [`v1`]: Magenta RealTime v1, the Depthformer LM and its streaming system.
//! - [`mrt2`]: Magenta RealTime 2, the frame-by-frame LM (config, weights, conditioning, step).
//! - [`stream`]: the generator enum over model families that the plugin and `mrt generate` drive.
//! - [`assets`]: finding, downloading and converting the official weights.
//! - [`conformance`], [`bench`], [`verify`]: the golden-fixture ladders, `mrt bench`, `mrt verify`.

pub mod assets;
pub mod bench;
pub mod codec;
pub mod conformance;
pub mod device;
pub mod formats;
pub mod kernels;
pub mod mrt2;
pub mod sampling;
pub mod stream;
pub mod style;
pub mod tiny_model;
pub mod v1;
pub mod verify;

pub use device::{Compute, DeviceChoice, Target};

/// An error and its chain of sources as one line, `outer: inner: cause` (what the plugin shows;
/// the CLI prints the same through anyhow's `{:#}`).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
