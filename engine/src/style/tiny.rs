//! A tiny random MusicCoCa written in the official file layouts, for tests and `mrt dev
//! tiny-model`: the same loaders read it as read the released model.
//!
//! ```text
//!  <v1>/savedmodels/musiccoca_mv212f_cpu_novocab/variables/variables.{index,data-00000-of-00001}
//!        80 leaves `_tf_var_leaves/N/.ATTRIBUTES/VARIABLE_VALUE` (params.rs map)
//!  <v1>/savedmodels/musiccoca_mv212_quant/variables/…   `variables/N/…` [d, 1024], string-sorted
//!  <v1>/vocabularies/musiccoca_mv212f_vocab.model      SentencePiece unigram, byte fallback
//!  <v2>/resources/musiccoca/audio_preprocessor.tflite  hann_window [400],
//!                                                      linear_to_mel_weight_matrix/Maximum [1025, 128]
//! ```

use std::path::{Path, PathBuf};

use super::mel::{htk_mel_matrix, periodic_hann, FFT_LENGTH, FRAME_LENGTH};
use super::model::{saved_codebook_index, StylePaths};
use super::params::{Dims, MusicCocaParams};
use super::tokenizer::write_model;
use super::StyleError;
use crate::formats::tfbundle::BundleWriter;

pub const SAVEDMODEL: &str = "savedmodels/musiccoca_mv212f_cpu_novocab";
pub const QUANTIZER: &str = "savedmodels/musiccoca_mv212_quant";
pub const VOCAB: &str = "vocabularies/musiccoca_mv212f_vocab.model";
pub const PREPROCESSOR: &str = "resources/musiccoca/audio_preprocessor.tflite";

/// The official style-model paths under a v1 and a v2 repository folder.
pub fn official_paths(v1: &Path, v2: &Path) -> StylePaths {
    StylePaths {
        savedmodel: v1.join(SAVEDMODEL),
        quantizer: v1.join(QUANTIZER),
        vocab: v1.join(VOCAB),
        preprocessor: Some(v2.join(PREPROCESSOR)),
    }
}

/// A small vocabulary of music words (scores favour whole words), with byte fallback.
pub fn tiny_vocabulary() -> Vec<u8> {
    let words = [
        "funk", "bass", "drums", "dusty", "jazz", "piano", "ambient", "techno", "house", "disco", "guitar", "synth", "warm",
        "pads", "lo", "fi", "hip", "hop", "strings", "vocals", "slow", "fast", "dark", "bright",
    ];
    let mut pieces: Vec<(String, f32)> = words.iter().map(|w| (format!("▁{w}"), -2.0)).collect();
    pieces.push(("▁".into(), -3.0));
    pieces.extend(('a'..='z').chain('0'..='9').chain([',', '-', '.']).map(|c| (c.to_string(), -4.0)));
    let refs: Vec<(&str, f32)> = pieces.iter().map(|(p, s)| (p.as_str(), *s)).collect();
    write_model(&refs, true)
}

/// The widths of the tiny model for a vocabulary of `vocab` pieces.
pub fn tiny_dims(vocab: usize) -> Dims {
    Dims { d: 32, vocab, text_layers: 2, audio_layers: 2, heads: 2, head_dim: 16, ffn: 64, pool_heads: 2, pool_head_dim: 64, patch: 16, patches: 496 }
}

fn create_parent(path: &Path) -> Result<(), StyleError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| StyleError::Weights(format!("cannot create {}: {e}", dir.display())))
}

/// Writes a tiny random MusicCoCa (seeded) under the `v1` and `v2` repository folders.
pub fn write_tiny(v1: &Path, v2: &Path, seed: u64) -> Result<StylePaths, StyleError> {
    let paths = official_paths(v1, v2);
    let vocab = tiny_vocabulary();
    create_parent(&paths.vocab)?;
    std::fs::write(&paths.vocab, &vocab).map_err(|e| StyleError::Weights(format!("cannot write {}: {e}", paths.vocab.display())))?;
    let sp = super::SentencePiece::from_bytes(&vocab, &paths.vocab)?;
    let dims = tiny_dims(sp.vocab_size());
    let params = MusicCocaParams::random(&dims, seed);
    write_v1_savedmodel(&paths.savedmodel, &params)?;
    write_quantizer(&paths.quantizer, dims.d, 12, 1024, seed ^ 0x5157)?;
    let pre = paths.preprocessor.clone().unwrap_or_default();
    write_preprocessor(&pre, 128)?;
    Ok(paths)
}

fn bundle_err(e: crate::formats::tfbundle::BundleError) -> StyleError {
    StyleError::Bundle(e)
}

/// Creates `savedmodel/variables/` and returns the bundle prefix. Also writes a `saved_model.pb`
/// holding only `saved_model_schema_version: 1`: the graph is never read (the towers are
/// rebuilt in burn), but the official layout has the file and the asset checks expect it.
fn prefix(savedmodel: &Path) -> Result<PathBuf, StyleError> {
    let p = savedmodel.join("variables").join("variables");
    create_parent(&p)?;
    let pb = savedmodel.join("saved_model.pb");
    let bytes = crate::formats::proto::Writer::new().varint(1, 1).finish();
    std::fs::write(&pb, bytes).map_err(|e| StyleError::Weights(format!("cannot write {}: {e}", pb.display())))?;
    Ok(p)
}

/// The v1 MusicCoCa SavedModel's variables (the graph itself, `saved_model.pb`, is not read).
pub fn write_v1_savedmodel(dir: &Path, params: &MusicCocaParams) -> Result<(), StyleError> {
    let mut w = BundleWriter::new(prefix(dir)?);
    for (i, leaf) in params.to_v1_leaves().iter().enumerate() {
        w.add_f32(&format!("_tf_var_leaves/{i}/.ATTRIBUTES/VARIABLE_VALUE"), &leaf.shape, &leaf.data).map_err(bundle_err)?;
    }
    w.finish().map_err(bundle_err)
}

/// Random codebooks `[dim, codes]` per level, saved in the string-sorted order of the original.
pub fn write_quantizer(dir: &Path, dim: usize, levels: usize, codes: usize, seed: u64) -> Result<(), StyleError> {
    let mut rng = crate::sampling::rng::SplitMix64::new(seed);
    // Later levels quantise smaller residuals.
    let books: Vec<Vec<f32>> = (0..levels)
        .map(|l| {
            let std = 0.6f64.powi(l as i32) * 1.5;
            (0..dim * codes).map(|_| (rng.next_normal() * std) as f32).collect()
        })
        .collect();
    let mut w = BundleWriter::new(prefix(dir)?);
    for saved in 0..levels {
        let level = (0..levels).find(|&l| saved_codebook_index(l, levels) == saved).unwrap_or(saved);
        w.add_f32(&format!("variables/{saved}/.ATTRIBUTES/VARIABLE_VALUE"), &[dim, codes], &books[level]).map_err(bundle_err)?;
    }
    w.finish().map_err(bundle_err)
}

/// An `audio_preprocessor.tflite` holding the front end's two constants.
pub fn write_preprocessor(path: &Path, mel_bins: usize) -> Result<(), StyleError> {
    create_parent(path)?;
    let window = periodic_hann(FRAME_LENGTH);
    let bins = FFT_LENGTH / 2 + 1;
    let matrix = htk_mel_matrix(mel_bins, bins, 16000.0, 0.0, 8000.0);
    crate::formats::tflite::write_tflite(
        path,
        &[("hann_window", &[FRAME_LENGTH], &window), ("linear_to_mel_weight_matrix/Maximum", &[bins, mel_bins], &matrix)],
    )
    .map_err(StyleError::from)
}
