//! One 2 s chunk of tokens: encoder once, then 50 temporal and 800 depth steps with classifier-free
//! guidance, exactly the step order of the reference's `decode=True` path.
//!
//! Differences from t5x, on purpose:
//! - t5x's `temperature_sample` treats `eos_id = 1` (MASK) as end of sequence (seqio's
//!   `PassThroughVocabulary` has no EOS, so t5x falls back to 1) and stops early, padding with 0.
//!   Magenta RT then decodes those zeros as code 0. We always sample all 800 tokens: an id of 1 is
//!   just an out-of-range id, mapped to a code like any other (`max(id − 2, 0) mod 1024`). With
//!   trained weights MASK is never a likely output; the fixtures reject inputs that hit it.
//! - With guidance weight 0 only the conditional row is run (the guided logits are identical).

use std::sync::atomic::{AtomicBool, Ordering};

use super::model::Depthformer;
use super::sampling::{cfg_combine, SamplingParams, Sampler};
use super::LmError;

/// Called after every sampled token with the step index and the guided logits the sampler saw
/// (the whole vocabulary, or the level's ids under `DepthLogits::Level`).
pub type StepObserver<'a> = &'a mut dyn FnMut(usize, &[f32]);

impl Depthformer {
    /// Samples one chunk (`chunk_frames × num_levels` ids, frame-major) from the encoder rows
    /// `encoder_ids = [cond | uncond]`, each `encoder_len` long. When `cancel` is raised the
    /// chunk stops at the next frame with [`LmError::Cancelled`].
    pub fn generate_tokens(
        &self,
        encoder_ids: &[i32],
        params: &SamplingParams,
        chunk_index: u64,
        mut observer: Option<StepObserver<'_>>,
        cancel: Option<&AtomicBool>,
    ) -> Result<Vec<i32>, LmError> {
        params.validate().map_err(LmError::BadSampling)?;
        let c = &self.config;
        let s = c.encoder_len();
        if encoder_ids.len() != 2 * s {
            return Err(LmError::BadInput(format!("encoder ids: expected 2 × {s}, got {}", encoder_ids.len())));
        }
        let (frames, levels, vocab) = (c.chunk_frames, c.num_levels, c.vocab_size);
        let guided_rows = params.guidance_weight != 0.0;
        let b = if guided_rows { 2 } else { 1 };
        let mut state = self.begin_chunk(self.encode_ids(&encoder_ids[..b * s], b)?)?;

        let mut rng = params.rng_for_chunk(chunk_index);
        let mut sampler = Sampler::default();
        let mut guided = vec![0f32; vocab];
        let mut logits = Vec::with_capacity(b * vocab);
        let mut tokens = vec![0i32; frames * levels];
        let mut prev_frame = vec![0i32; b * levels];
        for t in 0..frames {
            if cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
                return Err(LmError::Cancelled);
            }
            if t > 0 {
                let frame = &tokens[(t - 1) * levels..t * levels];
                for row in prev_frame.chunks_exact_mut(levels) {
                    row.copy_from_slice(frame);
                }
            }
            self.step_frame(&mut state, (t > 0).then_some(prev_frame.as_slice()))?;
            for q in 0..levels {
                let step = t * levels + q;
                let prev = (q > 0).then(|| [tokens[step - 1]]);
                self.step_level(&mut state, q, prev.as_ref().map(|p| p.as_slice()), &mut logits)?;
                let rows = self.logit_rows(q);
                let n = rows.len();
                let guided = &mut guided[..n];
                if guided_rows {
                    cfg_combine(&logits[..n], &logits[n..2 * n], params.guidance_weight, guided);
                } else {
                    guided.copy_from_slice(&logits[..n]);
                }
                let id = rows.start
                    + sampler
                        .sample(guided, params, &mut rng)
                        .map_err(|index| LmError::NonFiniteLogits { step, index: rows.start + index })?;
                if let Some(obs) = observer.as_mut() {
                    obs(step, guided);
                }
                // Both rows continue from the conditional row's token (v1 decode.py state callback).
                tokens[step] = id as i32;
            }
        }
        Ok(tokens)
    }
}
