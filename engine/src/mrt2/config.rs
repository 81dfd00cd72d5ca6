//! Model sizes of MRT2: read from a fixture set's `config.json`, or taken from the official
//! presets.
//!
//! The presets come from `magenta/magenta-realtime` branch `main`:
//! * `magenta_rt/config.py`: the `ModelSpec`s `S`, `M_SHALLOW_TPU_OPTIMIZED`, `L_TPU_OPTIMIZED`,
//!   `L_SHALLOW_TPU_OPTIMIZED`, `L_SHALLOW_TPU_OPTIMIZED_6`, `XXL_SHALLOW` and the `TokensConfig`s
//!   `MUSICCOCA` (12 levels × 1024 codes, 768-d embedding, dropout token),
//!   `PIANOROLL_WITH_ONSETS` (128 channels, 4 codes), `DRUM_PIANOROLL` (1 channel, 2 codes),
//!   `CFG_CONDITIONING_MUSICCOCA_NOTES` (2 channels, 41 codes, no dropout token),
//!   `CFG_CONDITIONING_DRUMS` (1 channel, 9 codes, no dropout token) and `SPECTROSTREAM`
//!   (12 of 64 levels × 1024 codes, no dropout token); `NUM_RESERVED_TOKENS = 6`.
//! * `magenta_rt/jax/model.py`: `MagentaRT2ModelBase` (`mrt2_base`: encoder
//!   `L_SHALLOW_TPU_OPTIMIZED`, temporal `XXL_SHALLOW`, depth `L_SHALLOW_TPU_OPTIMIZED_6`,
//!   windows 25/25, 1 attention sink) and `MagentaRT2ModelSmall` (`mrt2_small`: encoder `S`,
//!   temporal `L_TPU_OPTIMIZED`, depth `M_SHALLOW_TPU_OPTIMIZED`, windows 41/41). The
//!   conditioning width is the *encoder* spec's `model_dims` (the encoder body is the identity,
//!   only its embedders and `encoder_ln` have weights). `soft_cap_logits=30.0`, `sos_id=0`.
//! * `magenta_rt/jax/transformer.py`: `MultiChannelEmbedding` rounds its flat table up to a
//!   multiple of 128 rows (`round_num_embeddings_to_multiple_of_128=True`).

use std::path::{Path, PathBuf};

use serde_json::Value;

/// Errors while reading a configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: invalid JSON")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("config field '{0}' is missing or has the wrong type")]
    Field(String),
    #[error("config is inconsistent: {0}")]
    Invalid(String),
}

/// Sizes of one transformer stack (temporal or depth).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StackConfig {
    pub layers: usize,
    pub d_model: usize,
    pub ffn: usize,
    pub heads: usize,
    pub head_dim: usize,
}

impl StackConfig {
    /// Width of the concatenated heads (`heads · head_dim`); need not equal `d_model`.
    pub fn inner(&self) -> usize {
        self.heads * self.head_dim
    }
}

/// Every size the MRT2 language model needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Mrt2Config {
    /// Width of the conditioning vectors (the encoder's `model_dims`).
    pub encoder_width: usize,
    /// MusicCoCa RVQ levels in the conditioning (12).
    pub musiccoca_levels: usize,
    /// Rows per MusicCoCa level in the dequantizer table (1024 + 6 reserved + 1 dropout = 1031).
    pub musiccoca_per_level_vocab: usize,
    /// MusicCoCa embedding size (768 in the real models).
    pub musiccoca_embedding_size: usize,
    /// Vocabulary of each regular conditioning channel (piano roll, drum flag, guidance bins).
    pub regular_vocab_per_channel: Vec<usize>,
    /// Rows of the regular embedding table (the sum of the vocabularies rounded up to 128).
    pub regular_table_rows: usize,
    /// Shift added to raw conditioning values (6 reserved + 1 dropout token = 7).
    pub token_shift: i32,
    /// Temporal (frame-level) transformer.
    pub temporal: StackConfig,
    /// Past frames the temporal self-attention sees besides the current one.
    pub self_attention_window: usize,
    /// Past conditioning vectors the temporal cross-attention sees besides the current one.
    pub cross_attention_window: usize,
    /// Learned attention sinks per temporal attention (self and cross).
    pub num_sinks: usize,
    /// Depth (per-frame, over RVQ levels) transformer.
    pub depth: StackConfig,
    /// RVQ levels generated per frame (12).
    pub num_levels: usize,
    /// Codes per RVQ level (1024).
    pub codebook_size: usize,
    /// Reserved ids before the first code (6); id 0 is SOS.
    pub num_reserved: usize,
    /// Start-of-sequence id used as the previous frame of frame 0.
    pub sos_id: usize,
    /// Logit soft cap `c·tanh(x/c)`.
    pub soft_cap: f32,
    /// Epsilon of every RMSNorm.
    pub rmsnorm_eps: f32,
    /// Epsilon of the LayerNorms (`encoder_ln`, `final_ln`).
    pub layernorm_eps: f32,
}

/// The official vocabulary of the regular conditioning channels: 128 piano-roll pitches
/// (4 states + 6 reserved + 1 dropout), the drum flag (2 + 7), the two guidance bins (41 + 6)
/// and the drum-guidance bin (9 + 6).
pub fn official_regular_vocab() -> Vec<usize> {
    let mut v = vec![11usize; 128];
    v.push(9);
    v.push(47);
    v.push(47);
    v.push(15);
    v
}

fn round_up_128(n: usize) -> usize {
    n.div_ceil(128) * 128
}

impl Mrt2Config {
    /// `mrt2_small` (`MagentaRT2ModelSmall` in `magenta_rt/jax/model.py`).
    pub fn mrt2_small() -> Self {
        Self::official(
            256,                                                                           // ModelSpec S.model_dims
            StackConfig { layers: 12, d_model: 1024, ffn: 4096, heads: 8, head_dim: 128 }, // L_TPU_OPTIMIZED
            StackConfig { layers: 2, d_model: 768, ffn: 3072, heads: 6, head_dim: 128 },   // M_SHALLOW_TPU_OPTIMIZED
            41,
        )
    }

    /// `mrt2_base` (`MagentaRT2ModelBase` in `magenta_rt/jax/model.py`).
    pub fn mrt2_base() -> Self {
        Self::official(
            1024,                                                                           // L_SHALLOW_TPU_OPTIMIZED.model_dims
            StackConfig { layers: 20, d_model: 3072, ffn: 8192, heads: 24, head_dim: 128 }, // XXL_SHALLOW
            StackConfig { layers: 6, d_model: 1024, ffn: 4096, heads: 8, head_dim: 128 },   // L_SHALLOW_TPU_OPTIMIZED_6
            25,
        )
    }

    fn official(encoder_width: usize, temporal: StackConfig, depth: StackConfig, window: usize) -> Self {
        let regular = official_regular_vocab();
        let rows = round_up_128(regular.iter().sum());
        Self {
            encoder_width,
            musiccoca_levels: 12,
            musiccoca_per_level_vocab: 1024 + 6 + 1,
            musiccoca_embedding_size: 768,
            regular_vocab_per_channel: regular,
            regular_table_rows: rows,
            token_shift: 7,
            temporal,
            self_attention_window: window,
            cross_attention_window: window,
            num_sinks: 1,
            depth,
            num_levels: 12,
            codebook_size: 1024,
            num_reserved: 6,
            sos_id: 0,
            soft_cap: 30.0,
            rmsnorm_eps: 1e-6,
            layernorm_eps: 1e-6,
        }
    }

    /// Reads a fixture set's `config.json` (the `encoder`, `temporal`, `depth`, `vocab` and
    /// `soft_cap` sections).
    pub fn from_fixture_json(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io { path: path.to_path_buf(), source })?;
        let v: Value = serde_json::from_str(&text).map_err(|source| ConfigError::Json { path: path.to_path_buf(), source })?;
        Self::from_fixture_value(&v)
    }

    /// Same as [`Self::from_fixture_json`] from an already parsed document.
    pub fn from_fixture_value(v: &Value) -> Result<Self, ConfigError> {
        let u = |p: &str| -> Result<usize, ConfigError> {
            v.pointer(p).and_then(Value::as_u64).map(|x| x as usize).ok_or_else(|| ConfigError::Field(p.to_string()))
        };
        let f = |p: &str| -> Result<f32, ConfigError> {
            v.pointer(p).and_then(Value::as_f64).map(|x| x as f32).ok_or_else(|| ConfigError::Field(p.to_string()))
        };
        let regular: Vec<usize> = v
            .pointer("/encoder/regular_vocab_per_channel")
            .and_then(Value::as_array)
            .ok_or_else(|| ConfigError::Field("/encoder/regular_vocab_per_channel".into()))?
            .iter()
            .map(|x| x.as_u64().map(|x| x as usize))
            .collect::<Option<_>>()
            .ok_or_else(|| ConfigError::Field("/encoder/regular_vocab_per_channel".into()))?;
        let stack = |s: &str| -> Result<StackConfig, ConfigError> {
            Ok(StackConfig {
                layers: u(&format!("/{s}/layers"))?,
                d_model: u(&format!("/{s}/d_model"))?,
                ffn: u(&format!("/{s}/ffn"))?,
                heads: u(&format!("/{s}/heads"))?,
                head_dim: u(&format!("/{s}/head_dim"))?,
            })
        };
        let cfg = Self {
            encoder_width: u("/encoder/width")?,
            musiccoca_levels: u("/encoder/musiccoca_levels")?,
            musiccoca_per_level_vocab: u("/encoder/musiccoca_per_level_vocab")?,
            musiccoca_embedding_size: u("/encoder/musiccoca_embedding_size")?,
            regular_table_rows: u("/encoder/regular_table_rows_padded")?,
            regular_vocab_per_channel: regular,
            token_shift: u("/encoder/token_shift")? as i32,
            temporal: stack("temporal")?,
            self_attention_window: u("/temporal/self_attention_window_past")?,
            cross_attention_window: u("/temporal/cross_attention_window_past")?,
            num_sinks: u("/temporal/num_sink_embeddings")?,
            depth: stack("depth")?,
            num_levels: u("/vocab/num_levels")?,
            codebook_size: u("/vocab/codebook_size")?,
            num_reserved: u("/vocab/num_reserved")?,
            sos_id: u("/vocab/sos_id")?,
            soft_cap: f("/soft_cap")?,
            rmsnorm_eps: f("/temporal/rmsnorm_eps")?,
            layernorm_eps: f("/encoder/layernorm_eps")?,
        };
        if u("/vocab/logits_width")? != cfg.logits_width() {
            return Err(ConfigError::Invalid(format!(
                "logits_width {} != num_reserved + num_levels·codebook_size = {}",
                u("/vocab/logits_width")?,
                cfg.logits_width()
            )));
        }
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks the internal consistency of the sizes.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        if self.regular_table_rows < self.regular_rows_used() {
            return bad(format!("regular table has {} rows, the channels need {}", self.regular_table_rows, self.regular_rows_used()));
        }
        for (name, s) in [("temporal", &self.temporal), ("depth", &self.depth)] {
            if s.layers == 0 || s.d_model == 0 || s.heads == 0 || s.head_dim == 0 || s.ffn == 0 {
                return bad(format!("{name} stack has a zero size: {s:?}"));
            }
        }
        if self.num_levels == 0 || self.codebook_size == 0 {
            return bad("no levels or empty codebook".into());
        }
        if self.sos_id >= self.logits_width() {
            return bad(format!("sos id {} outside the vocabulary", self.sos_id));
        }
        Ok(())
    }

    /// Width of the logits and rows of the decoder embedding (`6 + 12·1024 = 12294`).
    pub fn logits_width(&self) -> usize {
        self.num_reserved + self.num_levels * self.codebook_size
    }

    /// Rows of the MusicCoCa dequantizer table (`12·1031 = 12372`).
    pub fn musiccoca_rows(&self) -> usize {
        self.musiccoca_levels * self.musiccoca_per_level_vocab
    }

    /// Rows of the regular table that the channel layout uses (1526 in the official layout).
    pub fn regular_rows_used(&self) -> usize {
        self.regular_vocab_per_channel.iter().sum()
    }

    /// Number of regular conditioning channels (132).
    pub fn regular_channels(&self) -> usize {
        self.regular_vocab_per_channel.len()
    }

    /// Number of int tokens per conditioning frame (12 MusicCoCa + 132 regular = 144).
    pub fn cond_channels(&self) -> usize {
        self.musiccoca_levels + self.regular_channels()
    }

    /// Whether the depth stack has a `depth_input_adapter` Dense (it is the identity when the
    /// temporal and depth widths are equal, see `depthformer_config` in `jax/model.py`).
    pub fn has_depth_input_adapter(&self) -> bool {
        self.temporal.d_model != self.depth.d_model
    }

    /// Number of language-model parameters (`params/depthformer/...`), derived from the shapes
    /// the reference code creates:
    ///
    /// * encoder: `mulan_dequantizer` `[levels·per_level, E]`, `mulan_embedder/depth_input_adapter`
    ///   `[E, w]` (no bias), `regular_embedder` `[rows_padded, w]`, `encoder_ln` scale + bias `[w]`;
    /// * decoder embedding `[12294, d_t]`;
    /// * per temporal layer: self-attention Q/K/V `[d_t, H, Dh]`, `per_dim_scale [Dh]`, sink key
    ///   and value `[n_sink, H, Dh]`, output `[d_t, H, Dh]`, pre/post RMSNorm `[d_t]`;
    ///   cross-attention the same but K/V `[w, H, Dh]`; FFN `[d_t, F] + [F] + [F, d_t] + [d_t]`
    ///   and pre/post RMSNorm `[d_t]`;
    /// * depth: `depth_input_adapter [d_t, d_d]` (when the widths differ), per layer the
    ///   self-attention without sinks and the FFN, `final_ln` scale + bias `[d_d]`,
    ///   `to_logits` `[d_d, 12294] + [12294]`.
    pub fn param_count(&self) -> u64 {
        let t = &self.temporal;
        let d = &self.depth;
        let w = self.encoder_width as u64;
        let e = self.musiccoca_embedding_size as u64;
        let v = self.logits_width() as u64;

        let encoder = self.musiccoca_rows() as u64 * e + e * w + self.regular_table_rows as u64 * w + 2 * w;

        let attention = |s: &StackConfig, kv_in: u64, sinks: u64| -> u64 {
            let dm = s.d_model as u64;
            let inner = s.inner() as u64;
            dm * inner // query
                + 2 * kv_in * inner // key, value
                + s.head_dim as u64 // per_dim_scale
                + 2 * sinks * inner // sink key, sink value
                + dm * inner // output projection
                + 2 * dm // pre and post norm
        };
        let ffn = |s: &StackConfig| -> u64 {
            let dm = s.d_model as u64;
            let f = s.ffn as u64;
            dm * f + f + f * dm + dm + 2 * dm
        };
        let sinks = self.num_sinks as u64;
        let temporal_layer = attention(t, t.d_model as u64, sinks) + attention(t, w, sinks) + ffn(t);
        let depth_layer = attention(d, d.d_model as u64, 0) + ffn(d);
        let adapter = if self.has_depth_input_adapter() { (t.d_model * d.d_model) as u64 } else { 0 };
        let decoder = v * t.d_model as u64
            + t.layers as u64 * temporal_layer
            + adapter
            + d.layers as u64 * depth_layer
            + 2 * d.d_model as u64
            + d.d_model as u64 * v
            + v;
        encoder + decoder
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_official_regular_layout_uses_1526_rows_padded_to_1536() {
        let c = Mrt2Config::mrt2_small();
        assert_eq!(c.regular_channels(), 132);
        assert_eq!(c.regular_rows_used(), 1526);
        assert_eq!(c.regular_table_rows, 1536);
        assert_eq!(c.cond_channels(), 144);
        assert_eq!(c.musiccoca_rows(), 12372);
        assert_eq!(c.logits_width(), 12294);
    }

    /// Pinned from the shapes listed in `param_count`'s documentation; evaluated by hand for
    /// mrt2_small (temporal layer 15 219 968 × 12, embedding 12 589 056, depth 24 411 910,
    /// encoder 10 092 032) and, by the same formula, mrt2_base (temporal layer 113 288 448 × 20).
    /// Both agree with the spec's "~230 M" and "~2.4 B" (`shared/spec/magenta_rt_2.md`); the
    /// formula itself equals the tensor count of the fixture checkpoints
    /// (`tests/conformance_mrt2.rs`).
    #[test]
    fn the_presets_have_the_parameter_counts_of_the_reference_shapes() {
        let small = Mrt2Config::mrt2_small().param_count();
        let base = Mrt2Config::mrt2_base().param_count();
        assert_eq!(small, 229_732_614);
        assert_eq!(base, 2_406_701_830);
        assert!((225_000_000..235_000_000).contains(&small));
        assert!((2_350_000_000..2_450_000_000).contains(&base));
    }

    #[test]
    fn both_presets_have_a_depth_input_adapter() {
        assert!(Mrt2Config::mrt2_small().has_depth_input_adapter());
        assert!(Mrt2Config::mrt2_base().has_depth_input_adapter());
    }

    #[test]
    fn a_fixture_config_missing_a_size_is_an_error_naming_it() {
        let v: Value = serde_json::json!({"encoder": {"width": 32}});
        let e = Mrt2Config::from_fixture_value(&v).unwrap_err();
        assert!(e.to_string().contains("regular_vocab_per_channel"), "{e}");
    }
}
