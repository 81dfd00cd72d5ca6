//! `mrt dev tiny-model <DIR>`: a whole model directory in the official layouts, small enough for
//! CI — the L1 LM and C1 codec golden fixtures plus a tiny random MusicCoCa. It makes noise, not
//! music; every command (`--model-dir DIR --size tiny`) and the plugin tests load it through the
//! same code paths as the released weights.
//!
//! ```text
//!  DIR/mrt-live.json                              {"format": 1, "lm": {"tiny": {checkpoint, config}}, codec_config}
//!  DIR/magenta-realtime/checkpoints/llm_tiny/     the L1 t5x checkpoint (zarr), as published
//!  DIR/magenta-realtime/savedmodels/…             tiny MusicCoCa + style RVQ (TF tensor bundles)
//!  DIR/magenta-realtime/vocabularies/…            SentencePiece model
//!  DIR/magenta-realtime-2/resources/spectrostream/{encoder,decoder,quantizer}.safetensors   (C1)
//!  DIR/magenta-realtime-2/resources/musiccoca/audio_preprocessor.tflite
//!  DIR/magenta-realtime-2/resources/musiccoca/{text_encoder,music_encoder,pretrained_vector_quantizer}.tflite,
//!                                                 spm.model: a tiny MRT2 MusicCoCa (style::tiny_mrt2)
//!  DIR/magenta-realtime-2/checkpoints/mrt2_tiny.safetensors    the M1 MRT2 fixture (LM + codec),
//!                                                 as `mrt2_{small,base}.safetensors`; its config
//!                                                 under "mrt2" in the manifest
//! ```

use std::path::{Path, PathBuf};

use crate::assets::MANIFEST_FILE;

/// The size name the tiny model's manifest declares.
pub const TINY_SIZE: &str = "tiny";
const CHECKPOINT: &str = "checkpoints/llm_tiny";
/// The tiny MRT2 checkpoint, repo-relative in `magenta-realtime-2/`.
pub const MRT2_CHECKPOINT: &str = "checkpoints/mrt2_tiny.safetensors";

#[derive(Debug, thiserror::Error)]
pub enum TinyModelError {
    #[error("{path}: {reason}")]
    Io { path: PathBuf, reason: String },
    #[error(transparent)]
    Style(#[from] crate::style::StyleError),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TinyModelError + '_ {
    move |e| TinyModelError::Io { path: path.to_path_buf(), reason: e.to_string() }
}

fn copy_tree(from: &Path, to: &Path) -> Result<(), TinyModelError> {
    std::fs::create_dir_all(to).map_err(io(to))?;
    for entry in std::fs::read_dir(from).map_err(io(from))? {
        let entry = entry.map_err(io(from))?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        if entry.file_type().map_err(io(&src))?.is_dir() {
            copy_tree(&src, &dst)?;
        } else {
            std::fs::copy(&src, &dst).map_err(io(&src))?;
        }
    }
    Ok(())
}

fn read_json(path: &Path) -> Result<serde_json::Value, TinyModelError> {
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    serde_json::from_str(&text).map_err(|e| TinyModelError::Io { path: path.to_path_buf(), reason: format!("not JSON: {e}") })
}

/// Writes the tiny model into `dir` from the golden fixtures in `fixtures` (the folder holding
/// `lm/L1`, `codec/C1` and `mrt2/M1`). Existing files in `dir` are overwritten; nothing else is
/// touched.
pub fn write(dir: &Path, fixtures: &Path) -> Result<(), TinyModelError> {
    let (lm, codec, m1) = (fixtures.join("lm/L1"), fixtures.join("codec/C1"), fixtures.join("mrt2/M1"));
    for needed in [
        lm.join("config.json"),
        lm.join("checkpoint"),
        codec.join("config.json"),
        codec.join("decoder.safetensors"),
        m1.join("config.json"),
        m1.join("weights.safetensors"),
    ] {
        if !needed.exists() {
            return Err(TinyModelError::Io { path: needed, reason: "missing: the tiny model is built from the L1 and C1 golden fixtures".into() });
        }
    }
    let v1 = dir.join("magenta-realtime");
    let v2 = dir.join("magenta-realtime-2");
    copy_tree(&lm.join("checkpoint"), &v1.join(CHECKPOINT))?;
    let spectro = v2.join("resources/spectrostream");
    std::fs::create_dir_all(&spectro).map_err(io(&spectro))?;
    for f in ["encoder.safetensors", "decoder.safetensors", "quantizer.safetensors"] {
        std::fs::copy(codec.join(f), spectro.join(f)).map_err(io(&codec.join(f)))?;
    }
    crate::style::tiny::write_tiny(&v1, &v2, 11)?;
    crate::style::tiny_mrt2::write_tiny_mrt2(&v2.join(crate::assets::MRT2_MUSICCOCA_DIR), 12)?;
    let mrt2 = v2.join(MRT2_CHECKPOINT);
    let parent = mrt2.parent().expect("a checkpoint path has a folder");
    std::fs::create_dir_all(parent).map_err(io(parent))?;
    std::fs::copy(m1.join("weights.safetensors"), &mrt2).map_err(io(&m1.join("weights.safetensors")))?;
    let manifest = serde_json::json!({
        "format": 1,
        "lm": { TINY_SIZE: { "checkpoint": format!("magenta-realtime/{CHECKPOINT}"), "config": read_json(&lm.join("config.json"))? } },
        "codec_config": read_json(&codec.join("config.json"))?,
        "mrt2": { TINY_SIZE: { "checkpoint": format!("magenta-realtime-2/{MRT2_CHECKPOINT}"), "config": read_json(&m1.join("config.json"))? } },
    });
    let path = dir.join(MANIFEST_FILE);
    let text = serde_json::to_string_pretty(&manifest).map_err(|e| TinyModelError::Io { path: path.clone(), reason: e.to_string() })?;
    std::fs::write(&path, text).map_err(io(&path))
}
