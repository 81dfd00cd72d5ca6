//! The streaming system around the models (v1 `system.py`): encoder ids from state, the state
//! itself, the chunk crossfade and `generate_chunk`.

pub mod crossfade;
pub mod generate;
pub mod ids;
pub mod load;
pub mod offline;
pub mod state;

pub use generate::{Chunk, MagentaRt, SystemError};
pub use state::StreamState;
