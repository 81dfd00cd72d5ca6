//! The streaming system around the models (v1 `system.py`). For now: encoder ids from state.

pub mod ids;
