//! The MRT2 golden fixture set M1 as the MRT2 tests load it.

use std::path::PathBuf;

use mrt::mrt2::{Mrt2Config, Mrt2Weights};
use mrt::sampling::mrt2::Key;

/// `shared/fixtures/mrt2/M1`.
pub fn set_dir() -> PathBuf {
    super::fixtures().join("mrt2/M1")
}

/// M1's config, weights (through the user's loader), conditioning tokens `[frames, channels]`
/// and initial key.
pub struct M1 {
    pub cfg: Mrt2Config,
    pub weights: Mrt2Weights,
    pub cond_tokens: Vec<i32>,
    pub frames: usize,
    pub init_key: Key,
}

pub fn load() -> M1 {
    let dir = set_dir();
    assert!(dir.join("config.json").is_file(), "fixture set missing: {}", dir.display());
    let cfg = Mrt2Config::from_fixture_json(dir.join("config.json")).expect("M1 config reads");
    let weights = Mrt2Weights::load(&dir.join("weights.safetensors"), &cfg).expect("M1 weights load");
    let cond = mrt::formats::npy::read_i32(&dir.join("cond_tokens.npy")).expect("cond_tokens.npy reads");
    let key = mrt::formats::npy::read_u32(&dir.join("init_rng_key.npy")).expect("init_rng_key.npy reads");
    assert_eq!(cond.shape[1], cfg.cond_channels());
    M1 { frames: cond.shape[0], cond_tokens: cond.data, init_key: [key.data[0], key.data[1]], cfg, weights }
}
