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

use burn::tensor::{Int, Tensor, TensorData};

use super::model::Depthformer;
use super::sampling::{cfg_combine, SamplingParams, Sampler};
use super::LmError;

/// Called after every sampled token with the step index and the guided logits the sampler saw.
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
        let ids = self.ids_tensor(&encoder_ids[..b * s], b, s);
        let mut cache = self.start_chunk(self.encode(ids));

        let mut rng = params.rng_for_chunk(chunk_index);
        let mut sampler = Sampler::default();
        let mut guided = vec![0f32; vocab];
        let mut tokens = vec![0i32; frames * levels];
        let device = self.device().clone();
        for t in 0..frames {
            if cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
                return Err(LmError::Cancelled);
            }
            let prev = (t > 0).then(|| {
                let frame = &tokens[(t - 1) * levels..t * levels];
                let rows: Vec<i32> = (0..b).flat_map(|_| frame.iter().copied()).collect();
                self.ids_tensor(&rows, b, levels)
            });
            let x = self.temporal_input(&cache, prev);
            let mut input = self.temporal_step(&mut cache, x);
            for q in 0..levels {
                let logits = self.depth_step(&mut cache, input);
                // The only host readback of the step: one row of logits per batch row.
                let host = logits.into_data().try_into_vec::<f32>().map_err(|e| LmError::Backend(format!("{e:?}")))?;
                if guided_rows {
                    cfg_combine(&host[..vocab], &host[vocab..2 * vocab], params.guidance_weight, &mut guided);
                } else {
                    guided.copy_from_slice(&host[..vocab]);
                }
                let step = t * levels + q;
                let id = sampler
                    .sample(&guided, params, &mut rng)
                    .map_err(|index| LmError::NonFiniteLogits { step, index })?;
                if let Some(obs) = observer.as_mut() {
                    obs(step, &guided);
                }
                tokens[step] = id as i32;
                // Both rows continue from the conditional row's token (v1 decode.py state callback).
                let next: Tensor<1, Int> = Tensor::from_data(TensorData::new(vec![id as i32; b], [b]), &device);
                input = self.depth_input(next);
            }
        }
        Ok(tokens)
    }
}
