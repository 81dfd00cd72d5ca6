//! LM ids from the streaming state (spec §1.1 steps 2–4; v1 `system.py` `MagentaRTT5X.generate_chunk`
//! with `utils.rvq_to_llm`).
//!
//! ```text
//! context codes [250, 16] (−1 = empty) ─ levels 0..4 ─ code + 2 + 1024·level (empty → MASK 1)
//!     ─ frame-major flatten [f0l0 f0l1 f0l2 f0l3 f1l0 …] (1000) ─┬─ + style ids (6) → cond row
//!                                                              └─ + 6 × MASK     → uncond row
//! ```

use crate::v1::lm::{LmConfig, MASK_ID};

/// Why a context or style array cannot become encoder ids.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum IdsError {
    #[error("context codes: expected {expected} values ({frames} frames × {levels} levels), got {got}")]
    ContextShape { expected: usize, frames: usize, levels: usize, got: usize },
    #[error("context code {value} at frame {frame}, level {level} is outside −1..{codebook}")]
    ContextCode { value: i32, frame: usize, level: usize, codebook: usize },
    #[error("style codes: expected at least {expected}, got {got}")]
    StyleShape { expected: usize, got: usize },
    #[error("style code {value} at level {level} is outside 0..{codebook}")]
    StyleCode { value: i32, level: usize, codebook: usize },
}

/// The two encoder rows `[cond | uncond]`, each `encoder_len` long, from `context_codes`
/// (`context_frames × stored_levels`, row-major, −1 = empty) and optional raw style codes (the
/// first `encoder_style_levels` are used; `None` = no style → MASK).
pub fn encoder_ids(
    config: &LmConfig,
    context_codes: &[i32],
    stored_levels: usize,
    style_codes: Option<&[i32]>,
) -> Result<Vec<i32>, IdsError> {
    let (frames, levels, book) = (config.context_frames, config.encoder_codec_levels, config.codebook_size);
    if context_codes.len() != frames * stored_levels || stored_levels < levels {
        return Err(IdsError::ContextShape {
            expected: frames * stored_levels.max(levels),
            frames,
            levels: stored_levels,
            got: context_codes.len(),
        });
    }
    let n = config.encoder_len();
    let mut row = Vec::with_capacity(2 * n);
    for f in 0..frames {
        for l in 0..levels {
            let code = context_codes[f * stored_levels + l];
            row.push(match code {
                -1 => MASK_ID,
                c if c >= 0 && (c as usize) < book => (config.codec_offset + book * l + c as usize) as i32,
                value => return Err(IdsError::ContextCode { value, frame: f, level: l, codebook: book }),
            });
        }
    }
    let style_levels = config.encoder_style_levels;
    match style_codes {
        None => row.extend(std::iter::repeat_n(MASK_ID, style_levels)),
        Some(s) if s.len() < style_levels => {
            return Err(IdsError::StyleShape { expected: style_levels, got: s.len() })
        }
        Some(s) => {
            for (l, &code) in s[..style_levels].iter().enumerate() {
                if code < 0 || code as usize >= book {
                    return Err(IdsError::StyleCode { value: code, level: l, codebook: book });
                }
                row.push((config.style_offset + book * l + code as usize) as i32);
            }
        }
    }
    let uncond: Vec<i32> = row[..n - style_levels].iter().copied().chain(std::iter::repeat_n(MASK_ID, style_levels)).collect();
    row.extend(uncond);
    Ok(row)
}

/// LM id → raw codec code, `max(id − 2, 0) mod 1024` (v1 `llm_to_rvq(safe=False)`): ids outside the
/// level's range are folded, as the reference does, rather than rejected.
pub fn id_to_code(config: &LmConfig, id: i32) -> i32 {
    (id - config.codec_offset as i32).max(0) % config.codebook_size as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_frames_are_mask_and_uncond_masks_the_style() {
        let c = LmConfig::base();
        let mut ctx = vec![-1; 250 * 16];
        ctx[249 * 16 + 3] = 5; // last frame, level 3
        let ids = encoder_ids(&c, &ctx, 16, Some(&[0, 1, 2, 3, 4, 5, 9, 9])).unwrap();
        assert_eq!(ids.len(), 2 * 1006);
        assert_eq!(ids[0], MASK_ID);
        assert_eq!(ids[999], 2 + 3 * 1024 + 5);
        assert_eq!(&ids[1000..1006], &[17410, 17410 + 1025, 17410 + 2050, 17410 + 3075, 17410 + 4100, 17410 + 5125]);
        assert_eq!(&ids[1006..2006], &ids[..1000]);
        assert_eq!(&ids[2006..], &[MASK_ID; 6]);
        let none = encoder_ids(&c, &ctx, 16, None).unwrap();
        assert_eq!(&none[1000..1006], &[MASK_ID; 6]);
    }

    #[test]
    fn bad_codes_are_named() {
        let c = LmConfig::base();
        let mut ctx = vec![0; 250 * 16];
        ctx[16 + 2] = 1024;
        assert_eq!(
            encoder_ids(&c, &ctx, 16, None),
            Err(IdsError::ContextCode { value: 1024, frame: 1, level: 2, codebook: 1024 })
        );
        assert!(matches!(encoder_ids(&c, &ctx[..10], 16, None), Err(IdsError::ContextShape { .. })));
        ctx[16 + 2] = 0;
        assert!(matches!(encoder_ids(&c, &ctx, 16, Some(&[0, 0, -3, 0, 0, 0])), Err(IdsError::StyleCode { level: 2, .. })));
    }

    #[test]
    fn ids_fold_back_to_codes() {
        let c = LmConfig::base();
        assert_eq!(id_to_code(&c, 2 + 1024 * 3 + 77), 77);
        assert_eq!(id_to_code(&c, 0), 0);
        assert_eq!(id_to_code(&c, 1), 0);
        assert_eq!(id_to_code(&c, 17410 + 5), (17408 + 5) % 1024);
    }
}
