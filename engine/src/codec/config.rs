//! SpectroStream configuration: the STFT front end, the per-block strides and the stereo split.
//!
//! Widths (base depths, latent size, RVQ levels) are *not* part of the config: they come from the
//! shapes in the weight files (`weights.rs`), so one reader serves the full-size codec and the tiny
//! fixture variants. What is here cannot be read off the weights: strides, the STFT, where the stereo
//! halves are fused, the decoder look-ahead.
//!
//! The preset is MRT2's `stft_spectrostream_40ms_generic_48khz_stereo_config()`
//! (`magenta_rt/jax/spectrostream.py`, magenta/magenta-realtime 694a545), as described in
//! `shared/fixtures/codec/C1/README.md` and spec §2.

use std::path::Path;

use serde::Deserialize;

use super::CodecError;

/// Everything about the codec that is not a weight shape.
#[derive(Clone, Debug, PartialEq)]
pub struct CodecConfig {
    pub sample_rate_hz: u32,
    /// Audio channels in and out (2); each runs through the shared-weight half of the network.
    pub audio_channels: usize,
    /// STFT frame length in samples (960).
    pub frame_length: usize,
    /// STFT hop in samples (480).
    pub frame_step: usize,
    /// FFT size (960); bins `0..fft_length/2` are kept, the Nyquist bin is dropped.
    pub fft_length: usize,
    /// Encoder block strides `(time, freq)`, `encoder_0..encoder_{n-1}`; the decoder runs them in
    /// reverse (`decoder_0` has the stride of the last encoder block).
    pub ratios: Vec<[usize; 2]>,
    /// sequence-layers' `channel_recombo_block` (−2): the last `−recombo − 1` encoder blocks and
    /// the first `−recombo − 1` decoder blocks run on the fused stereo channels.
    pub channel_recombo_block: i64,
    /// Codec frames of decoder look-ahead (1); that many frames' worth of STFT frames are cropped
    /// from the front of the decoder output.
    pub decoder_lookahead_frames: usize,
}

impl CodecConfig {
    /// MRT2 / v1 SpectroStream, 48 kHz stereo, 25 Hz frames.
    pub fn spectrostream_48k_stereo() -> Self {
        Self {
            sample_rate_hz: 48_000,
            audio_channels: 2,
            frame_length: 960,
            frame_step: 480,
            fft_length: 960,
            ratios: vec![[1, 2], [1, 2], [1, 3], [1, 2], [1, 2], [2, 2], [2, 1]],
            channel_recombo_block: -2,
            decoder_lookahead_frames: 1,
        }
    }

    /// STFT bins fed to the encoder (Nyquist dropped): 480.
    pub fn num_bins(&self) -> usize {
        self.fft_length / 2
    }

    /// Product of the time strides (4): STFT frames per codec frame.
    pub fn stft_frames_per_frame(&self) -> usize {
        self.ratios.iter().map(|r| r[0]).product()
    }

    /// Product of the frequency strides (96): the encoder maps 480 bins to `num_bins / this` (5).
    pub fn freq_reduction(&self) -> usize {
        self.ratios.iter().map(|r| r[1]).product()
    }

    /// Frequency bins at the bottleneck (5).
    pub fn latent_bins(&self) -> usize {
        self.num_bins() / self.freq_reduction()
    }

    /// Audio samples per codec frame (1920 = 40 ms at 48 kHz).
    pub fn samples_per_frame(&self) -> usize {
        self.frame_step * self.stft_frames_per_frame()
    }

    /// Encoder blocks at the deep end (and decoder blocks at the front) that see the fused
    /// stereo channels (1).
    pub fn fused_blocks(&self) -> usize {
        usize::try_from(-self.channel_recombo_block - 1).unwrap_or(0)
    }

    /// Checks the invariants the model code relies on.
    pub fn validate(&self) -> Result<(), String> {
        if self.audio_channels == 0 {
            return Err("audio_channels must be at least 1".into());
        }
        if !self.fft_length.is_multiple_of(2) || self.fft_length < 2 {
            return Err(format!("fft_length {} must be even", self.fft_length));
        }
        if self.frame_length != self.fft_length {
            return Err(format!("frame_length {} must equal fft_length {}", self.frame_length, self.fft_length));
        }
        if self.frame_step == 0 || self.frame_length != 2 * self.frame_step {
            return Err(format!(
                "frame_step {} must be half of frame_length {} (50% overlap, as the synthesis window assumes)",
                self.frame_step, self.frame_length
            ));
        }
        if self.ratios.is_empty() || self.ratios.iter().any(|r| r[0] == 0 || r[1] == 0) {
            return Err(format!("ratios {:?} must be non-empty with non-zero strides", self.ratios));
        }
        if !self.num_bins().is_multiple_of(self.freq_reduction()) {
            return Err(format!(
                "{} bins are not divisible by the product of the frequency strides {}",
                self.num_bins(),
                self.freq_reduction()
            ));
        }
        if self.channel_recombo_block > -1 || self.fused_blocks() > self.ratios.len() {
            return Err(format!(
                "channel_recombo_block {} must lie in -1..=-{}",
                self.channel_recombo_block,
                self.ratios.len() + 1
            ));
        }
        Ok(())
    }

    /// Reads the `config.json` of a codec fixture set (`"kind": "codec"`). Absent fields keep the
    /// preset's values; present ones must agree with the model this code implements.
    pub fn from_json_file(path: &Path) -> Result<Self, CodecError> {
        let text = std::fs::read_to_string(path).map_err(|source| CodecError::Io { path: path.to_path_buf(), source })?;
        Self::from_json_str(&text).map_err(|reason| CodecError::BadConfig { path: path.to_path_buf(), reason })
    }

    pub fn from_json_str(text: &str) -> Result<Self, String> {
        let j: FixtureJson = serde_json::from_str(text).map_err(|e| e.to_string())?;
        if let Some(kind) = &j.kind {
            if kind != "codec" {
                return Err(format!("\"kind\" is {kind:?}, expected \"codec\""));
            }
        }
        let mut c = Self::spectrostream_48k_stereo();
        if let Some(v) = j.sample_rate {
            c.sample_rate_hz = v;
        }
        if let Some(v) = j.audio_channels {
            c.audio_channels = v;
        }
        if let Some(s) = &j.stft {
            c.frame_length = s.frame_length.unwrap_or(c.frame_length);
            c.frame_step = s.frame_step.unwrap_or(c.frame_step);
            c.fft_length = s.fft_length.unwrap_or(c.fft_length);
            if let Some(bins) = s.num_bins {
                if bins != c.num_bins() {
                    return Err(format!("stft.num_bins {bins} != fft_length/2 = {}", c.num_bins()));
                }
            }
        }
        if let Some(r) = j.ratios {
            c.ratios = r;
        }
        if let Some(v) = j.channel_recombo_block {
            c.channel_recombo_block = v;
        }
        if let Some(v) = j.decoder_lookahead_frames {
            c.decoder_lookahead_frames = v;
        }
        if let Some(splits) = j.channel_splits {
            if splits != c.audio_channels {
                return Err(format!("channel_splits {splits} != audio_channels {}", c.audio_channels));
            }
        }
        if let Some(n) = j.num_channels {
            if n != 2 * c.audio_channels {
                return Err(format!("num_channels {n} != 2 × audio_channels {}", c.audio_channels));
            }
        }
        if j.causal == Some(false) {
            return Err("only the causal codec is implemented (\"causal\": false)".into());
        }
        c.validate()?;
        if let Some(spf) = j.samples_per_frame {
            if spf != c.samples_per_frame() {
                return Err(format!("samples_per_frame {spf} != frame_step × time strides = {}", c.samples_per_frame()));
            }
        }
        if let Some(bins) = j.decoder_input_bins {
            if bins != c.latent_bins() {
                return Err(format!("decoder_input_bins {bins} != bins / frequency strides = {}", c.latent_bins()));
            }
        }
        Ok(c)
    }

    /// Reads the `codec` section of an MRT2 fixture's `config.json` (`shared/fixtures/mrt2/M1`):
    /// the STFT, channels, rate and look-ahead; the strides are the preset's (the section has
    /// none: MRT2 uses the released codec's). Widths (`num_features`, `num_quantizers`, …) are
    /// read off the weights.
    pub fn from_mrt2_value(codec: &serde_json::Value) -> Result<Self, String> {
        let j: Mrt2CodecJson = serde_json::from_value(codec.clone()).map_err(|e| format!("codec section: {e}"))?;
        let mut c = Self::spectrostream_48k_stereo();
        c.frame_length = j.stft_frame_length.unwrap_or(c.frame_length);
        c.frame_step = j.stft_frame_step.unwrap_or(c.frame_step);
        c.fft_length = j.fft_length.unwrap_or(c.fft_length);
        c.audio_channels = j.audio_channels.unwrap_or(c.audio_channels);
        c.sample_rate_hz = j.sample_rate.unwrap_or(c.sample_rate_hz);
        c.decoder_lookahead_frames = j.decoder_lookahead.unwrap_or(c.decoder_lookahead_frames);
        c.validate()?;
        let checks = [
            ("num_bins", j.num_bins, c.num_bins()),
            ("num_channels", j.num_channels, 2 * c.audio_channels),
            ("samples_per_frame", j.samples_per_frame, c.samples_per_frame()),
        ];
        for (name, got, want) in checks {
            if let Some(got) = got.filter(|&g| g != want) {
                return Err(format!("codec.{name} {got} != {want} (from the STFT, channels and strides)"));
            }
        }
        Ok(c)
    }
}

#[derive(Deserialize)]
struct Mrt2CodecJson {
    stft_frame_length: Option<usize>,
    stft_frame_step: Option<usize>,
    fft_length: Option<usize>,
    num_bins: Option<usize>,
    num_channels: Option<usize>,
    samples_per_frame: Option<usize>,
    audio_channels: Option<usize>,
    sample_rate: Option<u32>,
    decoder_lookahead: Option<usize>,
}

#[derive(Deserialize)]
struct StftJson {
    frame_length: Option<usize>,
    frame_step: Option<usize>,
    fft_length: Option<usize>,
    num_bins: Option<usize>,
}

#[derive(Deserialize)]
struct FixtureJson {
    kind: Option<String>,
    sample_rate: Option<u32>,
    audio_channels: Option<usize>,
    samples_per_frame: Option<usize>,
    stft: Option<StftJson>,
    num_channels: Option<usize>,
    ratios: Option<Vec<[usize; 2]>>,
    channel_splits: Option<usize>,
    channel_recombo_block: Option<i64>,
    causal: Option<bool>,
    decoder_input_bins: Option<usize>,
    decoder_lookahead_frames: Option<usize>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preset_has_the_published_frame_geometry() {
        let c = CodecConfig::spectrostream_48k_stereo();
        c.validate().expect("preset is valid");
        assert_eq!(c.num_bins(), 480);
        assert_eq!(c.samples_per_frame(), 1920);
        assert_eq!(c.stft_frames_per_frame(), 4);
        assert_eq!(c.latent_bins(), 5);
        assert_eq!(c.fused_blocks(), 1);
        assert_eq!(c.sample_rate_hz as usize / c.samples_per_frame(), 25);
    }

    #[test]
    fn c1_config_json_reads_as_the_preset() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/codec/C1/config.json");
        let c = CodecConfig::from_json_file(&path).expect("C1 config reads");
        assert_eq!(c, CodecConfig::spectrostream_48k_stereo());
    }

    #[test]
    fn inconsistent_json_is_rejected() {
        assert!(CodecConfig::from_json_str(r#"{"kind": "lm"}"#).is_err());
        assert!(CodecConfig::from_json_str(r#"{"samples_per_frame": 960}"#).is_err());
        assert!(CodecConfig::from_json_str(r#"{"ratios": [[1, 7]]}"#).is_err());
        assert!(CodecConfig::from_json_str(r#"{"causal": false}"#).is_err());
        let mrt2 = |t: &str| CodecConfig::from_mrt2_value(&serde_json::from_str(t).expect("json"));
        assert_eq!(mrt2(r#"{"num_bins": 480, "decoder_lookahead": 1}"#), Ok(CodecConfig::spectrostream_48k_stereo()));
        assert!(mrt2(r#"{"num_channels": 2}"#).is_err());
        assert!(mrt2(r#"{"samples_per_frame": 960}"#).is_err());
        assert!(mrt2(r#"{"stft_frame_step": 400}"#).is_err());
    }
}
