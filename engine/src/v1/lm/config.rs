//! Depthformer configuration: the exact presets of the shipped gin files and a reader for the
//! `config.json` of a fixture set, so every dimension comes from data rather than constants.
//!
//! Presets cite `magenta_rt/depthformer/configs/mrt_merged_{base,large}.gin` (v1_legacy, 04ebaa7):
//! `NUM_TEMPORAL_LAYERS = 20` and `NUM_DEPTH_LAYERS = 4` for both sizes (the `Decoder.num_layers`
//! entries there are unused by `DepthformerDecoder`).

use std::path::Path;

use serde::Deserialize;

use super::LmError;

/// Every dimension the LM needs. Ids follow the v1 vocabulary layout: PAD/BOS 0, MASK 1,
/// codec `codec_offset + codebook_size·level + code`, style `style_offset + codebook_size·level + code`.
#[derive(Clone, Debug, PartialEq)]
pub struct LmConfig {
    pub d_model: usize,
    pub num_heads: usize,
    pub head_dim: usize,
    /// GeGLU hidden width of the encoder and temporal layers.
    pub mlp_dim: usize,
    /// GeGLU hidden width of the depth layers.
    pub depth_mlp_dim: usize,
    pub encoder_layers: usize,
    pub temporal_layers: usize,
    pub depth_layers: usize,
    /// Rows of the token embedding and columns of the logits (29824 in v1).
    pub vocab_size: usize,
    /// RVQ levels the decoder writes per frame (16).
    pub num_levels: usize,
    /// RVQ levels of the context the encoder reads (4).
    pub encoder_codec_levels: usize,
    /// Style tokens appended to the encoder input (6).
    pub encoder_style_levels: usize,
    /// Context frames fed to the encoder (250 = 10 s).
    pub context_frames: usize,
    /// Frames generated per chunk (50 = 2 s).
    pub chunk_frames: usize,
    pub codebook_size: usize,
    pub codec_offset: usize,
    pub style_offset: usize,
    pub temporal_rel_buckets: usize,
    pub temporal_rel_max_distance: usize,
    pub depth_rel_buckets: usize,
    pub depth_rel_max_distance: usize,
    pub rms_norm_eps: f32,
    /// `max_scale` of flaxformer's `FixedEmbed` sinusoid (10000).
    pub position_timescale: f64,
}

pub const PAD_ID: i32 = 0;
pub const MASK_ID: i32 = 1;

impl LmConfig {
    /// `mrt_merged_base.gin`: 348M parameters.
    pub fn base() -> Self {
        Self::with_dims(768, 12, 64, 2048, 12)
    }

    /// `mrt_merged_large.gin`: 762M parameters.
    pub fn large() -> Self {
        Self::with_dims(1024, 16, 64, 2816, 24)
    }

    fn with_dims(d_model: usize, heads: usize, head_dim: usize, mlp: usize, enc: usize) -> Self {
        Self {
            d_model,
            num_heads: heads,
            head_dim,
            mlp_dim: mlp,
            depth_mlp_dim: mlp,
            encoder_layers: enc,
            temporal_layers: 20,
            depth_layers: 4,
            vocab_size: 29824,
            num_levels: 16,
            encoder_codec_levels: 4,
            encoder_style_levels: 6,
            context_frames: 250,
            chunk_frames: 50,
            codebook_size: 1024,
            codec_offset: 2,
            style_offset: 17410,
            temporal_rel_buckets: 128,
            temporal_rel_max_distance: 128,
            depth_rel_buckets: 16,
            depth_rel_max_distance: 16,
            rms_norm_eps: 1e-6,
            position_timescale: 10_000.0,
        }
    }

    /// Reads the `config.json` of an LM fixture set (`"kind": "lm"`). Fields absent from the file
    /// keep the v1 values.
    pub fn from_json_file(path: &Path) -> Result<Self, LmError> {
        let text = std::fs::read_to_string(path).map_err(|source| LmError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_json_str(&text).map_err(|reason| LmError::BadConfig {
            path: path.to_path_buf(),
            reason,
        })
    }

    pub fn from_json_str(text: &str) -> Result<Self, String> {
        let j: FixtureJson = serde_json::from_str(text).map_err(|e| e.to_string())?;
        if let Some(kind) = &j.kind {
            if kind != "lm" {
                return Err(format!("\"kind\" is {kind:?}, expected \"lm\""));
            }
        }
        let mut c = Self::base();
        c.d_model = j.d_model;
        c.num_heads = j.num_heads;
        c.head_dim = j.head_dim;
        c.mlp_dim = j.mlp_dim;
        c.depth_mlp_dim = j.depth_mlp_dim.unwrap_or(j.mlp_dim);
        c.encoder_layers = j.encoder_layers;
        c.temporal_layers = j.temporal_layers;
        c.depth_layers = j.depth_layers;
        macro_rules! take {
            ($($field:ident),*) => { $( if let Some(v) = j.$field { c.$field = v; } )* };
        }
        take!(vocab_size, num_levels, encoder_codec_levels, encoder_style_levels, context_frames, chunk_frames);
        if let Some(eps) = j.rms_norm_eps {
            c.rms_norm_eps = eps as f32;
        }
        if let Some(pe) = j.encoder_position_embedding {
            if let Some(ts) = pe.timescale {
                c.position_timescale = ts;
            }
        }
        if let Some(r) = j.temporal_relpos {
            c.temporal_rel_buckets = r.num_buckets;
            c.temporal_rel_max_distance = r.max_distance;
        }
        if let Some(r) = j.depth_relpos {
            c.depth_rel_buckets = r.num_buckets;
            c.depth_rel_max_distance = r.max_distance;
        }
        if let Some(len) = j.encoder_len {
            if len != c.encoder_len() {
                return Err(format!(
                    "encoder_len {len} != context_frames·encoder_codec_levels + encoder_style_levels = {}",
                    c.encoder_len()
                ));
            }
        }
        if let Some(scale) = j.attention_logit_scale {
            if scale != 1.0 {
                return Err(format!("attention_logit_scale {scale} unsupported (T5 uses 1.0)"));
            }
        }
        c.validate()?;
        Ok(c)
    }

    /// Rejects impossible combinations before any tensor is allocated.
    pub fn validate(&self) -> Result<(), String> {
        let nonzero = [
            ("d_model", self.d_model),
            ("num_heads", self.num_heads),
            ("head_dim", self.head_dim),
            ("mlp_dim", self.mlp_dim),
            ("depth_mlp_dim", self.depth_mlp_dim),
            ("num_levels", self.num_levels),
            ("chunk_frames", self.chunk_frames),
            ("temporal_rel_buckets", self.temporal_rel_buckets),
            ("depth_rel_buckets", self.depth_rel_buckets),
        ];
        for (name, v) in nonzero {
            if v == 0 {
                return Err(format!("{name} must be > 0"));
            }
        }
        if !self.d_model.is_multiple_of(2) {
            return Err(format!("d_model {} must be even (split-half sinusoids)", self.d_model));
        }
        if self.encoder_codec_levels > self.num_levels {
            return Err(format!(
                "encoder_codec_levels {} > num_levels {}",
                self.encoder_codec_levels, self.num_levels
            ));
        }
        let style_end = self.style_offset + self.codebook_size * self.encoder_style_levels;
        if style_end > self.vocab_size {
            return Err(format!("style ids reach {style_end} > vocab_size {}", self.vocab_size));
        }
        Ok(())
    }

    /// Encoder input length: context frames × codec levels + style tokens (1006).
    pub fn encoder_len(&self) -> usize {
        self.context_frames * self.encoder_codec_levels + self.encoder_style_levels
    }

    /// Decoder tokens per chunk (800).
    pub fn chunk_tokens(&self) -> usize {
        self.chunk_frames * self.num_levels
    }

    pub fn inner_dim(&self) -> usize {
        self.num_heads * self.head_dim
    }

    /// Exact parameter count of the checkpoint this config describes.
    pub fn param_count(&self) -> usize {
        let d = self.d_model;
        let attn = 4 * d * self.inner_dim();
        let mlp = |h: usize| 3 * d * h;
        let encoder = self.encoder_layers * (attn + mlp(self.mlp_dim) + 2 * d) + d;
        let temporal = self.temporal_layers * (2 * attn + mlp(self.mlp_dim) + 3 * d)
            + self.num_heads * self.temporal_rel_buckets;
        let depth = self.depth_layers * (attn + mlp(self.depth_mlp_dim) + 2 * d)
            + self.num_heads * self.depth_rel_buckets;
        let vocab = 2 * self.vocab_size * d; // shared embedding + untied logits
        encoder + temporal + depth + vocab + d // + decoder_norm
    }
}

#[derive(Deserialize)]
struct FixtureJson {
    kind: Option<String>,
    d_model: usize,
    num_heads: usize,
    head_dim: usize,
    mlp_dim: usize,
    depth_mlp_dim: Option<usize>,
    encoder_layers: usize,
    temporal_layers: usize,
    depth_layers: usize,
    vocab_size: Option<usize>,
    num_levels: Option<usize>,
    encoder_codec_levels: Option<usize>,
    encoder_style_levels: Option<usize>,
    context_frames: Option<usize>,
    chunk_frames: Option<usize>,
    encoder_len: Option<usize>,
    rms_norm_eps: Option<f64>,
    attention_logit_scale: Option<f64>,
    encoder_position_embedding: Option<PositionJson>,
    temporal_relpos: Option<RelposJson>,
    depth_relpos: Option<RelposJson>,
}

#[derive(Deserialize)]
struct PositionJson {
    timescale: Option<f64>,
}

#[derive(Deserialize)]
struct RelposJson {
    num_buckets: usize,
    max_distance: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_have_the_published_parameter_counts() {
        assert_eq!(LmConfig::base().param_count(), 347_873_472);
        assert_eq!(LmConfig::large().param_count(), 761_651_456);
    }

    #[test]
    fn fixture_config_is_read_with_its_own_dimensions() {
        let path = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/fixtures/lm/L1/config.json"));
        let c = LmConfig::from_json_file(path).expect("L1 config.json must parse");
        assert_eq!((c.d_model, c.num_heads, c.head_dim, c.mlp_dim), (32, 2, 16, 48));
        assert_eq!((c.encoder_layers, c.temporal_layers, c.depth_layers), (2, 2, 2));
        assert_eq!(c.encoder_len(), 1006);
        assert_eq!(c.param_count(), 1_969_952);
    }

    #[test]
    fn impossible_settings_are_rejected() {
        let j = r#"{"kind":"lm","d_model":31,"num_heads":1,"head_dim":31,"mlp_dim":4,
            "encoder_layers":1,"temporal_layers":1,"depth_layers":1}"#;
        assert!(LmConfig::from_json_str(j).unwrap_err().contains("even"));
        let j = r#"{"kind":"codec","d_model":32,"num_heads":1,"head_dim":32,"mlp_dim":4,
            "encoder_layers":1,"temporal_layers":1,"depth_layers":1}"#;
        assert!(LmConfig::from_json_str(j).is_err());
    }
}
