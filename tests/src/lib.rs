//! Host-level tests live here (a CLAP host driving the bundled plugin). See `tests/README.md`.
