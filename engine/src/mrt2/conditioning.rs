//! Per-frame conditioning: the token layout, guidance binning, and the conditioning encoder
//! (MusicCoCa branch + regular branch, averaged, LayerNorm). The piano-roll values come from the
//! note tracker in [`super::notes`].
//!
//! ```text
//!  12 MusicCoCa ids ──► Σ_k Emul[x_k + 1031·k] ──► ·W_adapter ──┐
//!                                                               ├─► (m + r)/2 ──► LayerNorm ──► [w]
//!  132 regular ids ──► mean_c Ereg[x_c + offset_c] ─────────────┘
//! ```
//!
//! Token layout of one frame (raw values, before the +7 shift):
//! `[0, 12)` MusicCoCa RVQ tokens (0..1023, −1 masked), `[12, 140)` piano-roll state per MIDI
//! pitch (−1 masked, 0 off, 1 sustain, 2 onset, 3 on/model decides), `140` drum flag
//! (−1 auto, 0 none, 1 play), `141, 142` guidance bins (MusicCoCa, notes; 0..40), `143`
//! drum-guidance bin (0..8). The model input is `raw + 7` (6 reserved ids + the dropout id), so
//! a masked value becomes id 6.
//!
//! The encoder indexes flat tables exactly like the reference, **without** a per-channel bounds
//! check: MusicCoCa row `x_k + 1031·k`, regular row `x_c + offset_c` (offsets = exclusive cumsum
//! of the per-channel vocabularies). Guidance bin 40 (scale 7.0) therefore reads the first row of
//! the next channel's block, and drum-guidance bin 8 a padding row; both are what the reference
//! computes. Only an index outside the whole table is refused.

use super::config::Mrt2Config;
use super::notes::NUM_PITCHES;
use super::weights::ConditioningWeights;
use crate::kernels::host::layer_norm;

/// Errors of the conditioning encoder.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConditioningError {
    #[error("expected {expected} conditioning tokens, got {found}")]
    Length { expected: usize, found: usize },
    #[error("conditioning token {value} at channel {channel} indexes row {row} outside the {rows}-row table")]
    OutOfTable { channel: usize, value: i32, row: i64, rows: usize },
}

/// `system.discretize_cfg` of the reference: `clamp(int(round((clamp(v, −1, 7) + 1) / step)),
/// 0, max_bin)` in float64 with Python's round-half-to-even. A NaN scale behaves as Python's
/// `max(-1.0, min(7.0, nan))`, which yields 7.0.
pub fn discretize_cfg(value: f64, step: f64, max_bin: i32) -> i32 {
    // Python: min(7.0, v) returns 7.0 unless v < 7.0; max(-1.0, m) returns -1.0 unless m > -1.0.
    let m = if value < 7.0 { value } else { 7.0 };
    let clamped = if m > -1.0 { m } else { -1.0 };
    let bin = ((clamped - (-1.0)) / step).round_ties_even() as i64;
    bin.clamp(0, max_bin as i64) as i32
}

/// Guidance bin of the MusicCoCa (prompt) or notes scale: step 0.2, bins 0..40.
pub fn cfg_bin_musiccoca_notes(scale: f64) -> i32 {
    discretize_cfg(scale, 0.2, 40)
}

/// Guidance bin of the drum scale: step 1.0, bins 0..8.
pub fn cfg_bin_drums(scale: f64) -> i32 {
    discretize_cfg(scale, 1.0, 8)
}

/// The drum flag channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DrumFlag {
    /// −1: the model decides.
    #[default]
    Auto,
    /// 0: no drums ("Filter Drums").
    Off,
    /// 1: play drums.
    On,
}

impl DrumFlag {
    /// The raw channel value (−1, 0, 1).
    pub fn raw(self) -> i32 {
        match self {
            DrumFlag::Auto => -1,
            DrumFlag::Off => 0,
            DrumFlag::On => 1,
        }
    }
}

/// One frame's conditioning in raw values; [`ConditionFrame::to_tokens`] makes the model input.
#[derive(Debug, Clone, PartialEq)]
pub struct ConditionFrame {
    /// MusicCoCa RVQ tokens, −1 = masked.
    pub musiccoca: Vec<i32>,
    /// Piano-roll state per pitch (−1, 0, 1, 2, 3).
    pub pianoroll: [i32; NUM_PITCHES],
    pub drums: DrumFlag,
    /// Guidance scales (MusicCoCa/prompt, notes, drums), binned by [`discretize_cfg`].
    pub cfg_musiccoca: f64,
    pub cfg_notes: f64,
    pub cfg_drums: f64,
}

impl ConditionFrame {
    /// Everything masked, guidance at the AUv3 defaults (prompt 3, notes 1, drums 1).
    pub fn masked(musiccoca_levels: usize) -> Self {
        Self {
            musiccoca: vec![-1; musiccoca_levels],
            pianoroll: [-1; NUM_PITCHES],
            drums: DrumFlag::Auto,
            cfg_musiccoca: 3.0,
            cfg_notes: 1.0,
            cfg_drums: 1.0,
        }
    }

    /// Sets the MusicCoCa tokens the way the C++ engine does: the `kept` coarsest levels from
    /// `tokens`, the finer tail masked (−1). The engine keeps 6 of 12
    /// (`kMusicCoCaMaskedTailLevels = 6` in `core/include/magentart/mlx_engine.h`).
    pub fn set_musiccoca_coarse(&mut self, tokens: &[i32], kept: usize) {
        for (i, m) in self.musiccoca.iter_mut().enumerate() {
            *m = if i < kept { tokens.get(i).copied().unwrap_or(-1) } else { -1 };
        }
    }

    /// Raw channel values in model order (before the shift).
    pub fn raw_values(&self, out: &mut Vec<i32>) {
        out.clear();
        out.extend_from_slice(&self.musiccoca);
        out.extend_from_slice(&self.pianoroll);
        out.push(self.drums.raw());
        out.push(cfg_bin_musiccoca_notes(self.cfg_musiccoca));
        out.push(cfg_bin_musiccoca_notes(self.cfg_notes));
        out.push(cfg_bin_drums(self.cfg_drums));
    }

    /// The model input: raw values + `shift` (7).
    pub fn to_tokens(&self, shift: i32, out: &mut Vec<i32>) {
        self.raw_values(out);
        for v in out.iter_mut() {
            *v += shift;
        }
    }
}

/// Scratch space of the conditioning encoder (allocated once).
#[derive(Debug, Clone)]
pub struct EncoderScratch {
    mulan_sum: Vec<f32>,
    mulan_proj: Vec<f32>,
    regular: Vec<f32>,
    offsets: Vec<usize>,
}

impl EncoderScratch {
    pub fn new(cfg: &Mrt2Config) -> Self {
        let mut offsets = Vec::with_capacity(cfg.regular_channels());
        let mut acc = 0usize;
        for &v in &cfg.regular_vocab_per_channel {
            offsets.push(acc);
            acc += v;
        }
        Self {
            mulan_sum: vec![0.0; cfg.musiccoca_embedding_size],
            mulan_proj: vec![0.0; cfg.encoder_width],
            regular: vec![0.0; cfg.encoder_width],
            offsets,
        }
    }

    /// Start row of each regular channel in the flat table.
    pub fn regular_offsets(&self) -> &[usize] {
        &self.offsets
    }
}

/// Checks that every token of a frame lands inside its flat table (no per-channel check, as in
/// the reference).
pub fn check_tokens(cfg: &Mrt2Config, tokens: &[i32]) -> Result<(), ConditioningError> {
    if tokens.len() != cfg.cond_channels() {
        return Err(ConditioningError::Length { expected: cfg.cond_channels(), found: tokens.len() });
    }
    let nm = cfg.musiccoca_levels;
    let mut offset = 0i64;
    for (c, &x) in tokens.iter().enumerate() {
        let (row, rows) = if c < nm {
            (x as i64 + (cfg.musiccoca_per_level_vocab * c) as i64, cfg.musiccoca_rows())
        } else {
            let r = x as i64 + offset;
            offset += cfg.regular_vocab_per_channel[c - nm] as i64;
            (r, cfg.regular_table_rows)
        };
        if row < 0 || row >= rows as i64 {
            return Err(ConditioningError::OutOfTable { channel: c, value: x, row, rows });
        }
    }
    Ok(())
}

/// Encodes one frame of shifted tokens into a conditioning vector `out` (`encoder_width`):
/// `LayerNorm((Σ_k Emul[x_k + per_level·k] · W  +  mean_c Ereg[x_c + offset_c]) / 2)`.
pub fn encode_frame(
    cfg: &Mrt2Config,
    w: &ConditioningWeights,
    tokens: &[i32],
    scratch: &mut EncoderScratch,
    out: &mut [f32],
) -> Result<(), ConditioningError> {
    check_tokens(cfg, tokens)?;
    let e = cfg.musiccoca_embedding_size;
    let wd = cfg.encoder_width;
    let nm = cfg.musiccoca_levels;

    scratch.mulan_sum.fill(0.0);
    for (k, &x) in tokens[..nm].iter().enumerate() {
        let row = x as usize + cfg.musiccoca_per_level_vocab * k;
        for (s, &v) in scratch.mulan_sum.iter_mut().zip(&w.mulan_table[row * e..(row + 1) * e]) {
            *s += v;
        }
    }
    w.mulan_adapter.apply(&scratch.mulan_sum, &mut scratch.mulan_proj);

    scratch.regular.fill(0.0);
    for (c, &x) in tokens[nm..].iter().enumerate() {
        let row = x as usize + scratch.offsets[c];
        for (s, &v) in scratch.regular.iter_mut().zip(&w.regular_table[row * wd..(row + 1) * wd]) {
            *s += v;
        }
    }
    let channels = cfg.regular_channels() as f32;
    for ((o, &m), &r) in out.iter_mut().zip(&scratch.mulan_proj).zip(&scratch.regular) {
        *o = (m + r / channels) / 2.0;
    }
    // LayerNorm in place through the projection buffer.
    scratch.mulan_proj.copy_from_slice(out);
    layer_norm(&scratch.mulan_proj, &w.ln_scale, &w.ln_bias, cfg.layernorm_eps, out);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cfg_binning_rounds_half_to_even_in_float64() {
        // 1.1 / 0.2 = 5.500000000000001 in float64 -> 6.
        assert_eq!(cfg_bin_musiccoca_notes(0.1), 6);
        assert_eq!(cfg_bin_musiccoca_notes(3.0), 20);
        assert_eq!(cfg_bin_musiccoca_notes(7.0), 40);
        assert_eq!(cfg_bin_musiccoca_notes(100.0), 40);
        assert_eq!(cfg_bin_musiccoca_notes(-5.0), 0);
        // Exact halves go to the even bin: (0.5 + 1) / 1.0 = 1.5 -> 2; (1.5 + 1) = 2.5 -> 2.
        assert_eq!(cfg_bin_drums(0.5), 2);
        assert_eq!(cfg_bin_drums(1.5), 2);
        assert_eq!(cfg_bin_drums(7.0), 8);
        assert_eq!(cfg_bin_drums(f64::NAN), 8);
    }

    #[test]
    fn the_condition_frame_shifts_raw_values_by_seven() {
        let mut f = ConditionFrame::masked(12);
        f.musiccoca[0] = 5;
        f.pianoroll[60] = 2;
        f.drums = DrumFlag::Off;
        let mut tokens = Vec::new();
        f.to_tokens(7, &mut tokens);
        assert_eq!(tokens.len(), 144);
        assert_eq!(tokens[0], 12);
        assert_eq!(tokens[1], 6);
        assert_eq!(tokens[12 + 60], 9);
        assert_eq!(tokens[140], 7);
        assert_eq!(&tokens[141..], &[27, 17, 9]); // bins 20, 10, 2
    }

    #[test]
    fn the_engine_style_musiccoca_setter_keeps_the_coarse_levels_and_masks_the_tail() {
        let mut f = ConditionFrame::masked(12);
        let tokens: Vec<i32> = (100..112).collect();
        f.set_musiccoca_coarse(&tokens, 6);
        assert_eq!(f.musiccoca, vec![100, 101, 102, 103, 104, 105, -1, -1, -1, -1, -1, -1]);
    }

    #[test]
    fn tokens_are_checked_against_the_whole_table_not_per_channel() {
        let cfg = Mrt2Config::mrt2_small();
        let mut tokens = vec![6i32; 144];
        // CFG bin 40 -> 47 is beyond its 47-entry channel but inside the table: accepted.
        tokens[141] = 47;
        tokens[143] = 15;
        assert!(check_tokens(&cfg, &tokens).is_ok());
        // Drum-guidance token 25 -> row 1536: outside the table.
        tokens[143] = 25;
        assert!(matches!(check_tokens(&cfg, &tokens), Err(ConditioningError::OutOfTable { channel: 143, .. })));
        tokens[143] = 6;
        tokens[0] = -1;
        assert!(check_tokens(&cfg, &tokens).is_err());
    }
}
