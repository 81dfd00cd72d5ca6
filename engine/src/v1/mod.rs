//! Magenta RealTime v1: the Depthformer LM ([`lm`]) that samples 2 s chunks of 50 frames × 16
//! RVQ levels from 10 s of context and 6 style tokens with classifier-free guidance, and the
//! streaming system around it ([`system`]: state, encoder ids, crossfade, `generate_chunk`).
//! The codec and the style model it uses are shared (`crate::codec`, `crate::style`).

pub mod lm;
pub mod system;
