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
use std::time::{Duration, Instant};

use crate::kernels::counters::{self, Part};

use super::model::{ChunkState, Depthformer, LmScratch};
use super::sampling::{cfg_combine, SamplingParams, Sampler};
use super::LmError;

/// Called after every sampled token with the step index and the guided logits the sampler saw
/// (the whole vocabulary, or the level's ids under `DepthLogits::Level`).
pub type StepObserver<'a> = &'a mut dyn FnMut(usize, &[f32]);

/// What a caller of [`Depthformer::decode_chunk`] can hook into the loop.
#[derive(Default)]
pub struct DecodeHooks<'a> {
    pub observer: Option<StepObserver<'a>>,
    /// Raised: the chunk stops at the next frame with [`LmError::Cancelled`].
    pub cancel: Option<&'a AtomicBool>,
    /// Accumulates each part's time (benchmarks); the device is drained between parts, so this
    /// slows a GPU down and is off in generation.
    pub times: Option<&'a mut StepTimes>,
}

/// Time spent in each part of the decode loop, summed over chunks.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct StepTimes {
    /// Encoder and the cross-attention keys/values (once per chunk).
    pub encoder: Duration,
    pub temporal: Duration,
    /// Depth steps including the logits product.
    pub depth: Duration,
    /// Of `depth`, the logits product (host path only; burn runs it in the same graph).
    pub logits: Duration,
    /// CFG combine, top-k and the draw on the host.
    pub sampling: Duration,
}

impl Depthformer {
    /// Samples one chunk (`chunk_frames × num_levels` ids, frame-major) from the encoder rows
    /// `encoder_ids = [cond | uncond]`, each `encoder_len` long, with fresh buffers. When `cancel`
    /// is raised the chunk stops at the next frame with [`LmError::Cancelled`].
    pub fn generate_tokens<'a>(
        &self,
        encoder_ids: &[i32],
        params: &SamplingParams,
        chunk_index: u64,
        observer: Option<StepObserver<'a>>,
        cancel: Option<&'a AtomicBool>,
    ) -> Result<Vec<i32>, LmError> {
        self.decode_chunk(encoder_ids, params, chunk_index, &mut LmScratch::default(), DecodeHooks { observer, cancel, times: None })
    }

    /// The decode loop: encoder once, then per frame a temporal step and per level a depth step
    /// and a draw. `generate`, `mrt bench` and the conformance ladder all run this loop.
    pub fn decode_chunk(
        &self,
        encoder_ids: &[i32],
        params: &SamplingParams,
        chunk_index: u64,
        scratch: &mut LmScratch,
        mut hooks: DecodeHooks<'_>,
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
        let timing = hooks.times.is_some();
        // Drains the device before a part's clock stops (only when timing).
        let lap = |started: Instant| {
            if timing {
                let _ = self.device().sync();
            }
            started.elapsed()
        };
        let mut times = StepTimes::default();
        let device = self.device();
        counters::enter(Part::Encoder, device);
        let t0 = Instant::now();
        let mut state = self.begin_chunk(self.encode_ids(&encoder_ids[..b * s], b, scratch)?)?;
        times.encoder += lap(t0);

        let mut rng = params.rng_for_chunk(chunk_index);
        // GPU kernels: the whole chunk on the device, the host's uniforms drawn up front (one per
        // token, none when greedy: the host sampler's exact use of the stream).
        #[cfg(any(feature = "wgpu", feature = "cuda"))]
        if let ChunkState::Gpu(chunk) = &mut state {
            let greedy = params.is_greedy();
            let uniforms: Vec<f32> = (0..frames * levels).map(|_| if greedy { 0.0 } else { rng.next_f64() as f32 }).collect();
            let t0 = Instant::now();
            let mut observer = hooks.observer.take();
            let observe = observer.as_mut().map(|o| &mut **o as super::StepObserver<'_>);
            let tokens = self.gpu_decoder()?.run_chunk(chunk, params, &uniforms, observe, hooks.cancel, |part| counters::enter(part, device))?;
            let _ = device.sync();
            times.depth += t0.elapsed();
            if let Some(out) = hooks.times {
                out.encoder += times.encoder;
                out.depth += times.depth;
            }
            return Ok(tokens);
        }
        let mut sampler = Sampler::default();
        let mut guided = vec![0f32; vocab];
        let mut logits = Vec::with_capacity(b * vocab);
        let mut tokens = vec![0i32; frames * levels];
        let mut prev_frame = vec![0i32; b * levels];
        for t in 0..frames {
            if hooks.cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
                return Err(LmError::Cancelled);
            }
            if t > 0 {
                let frame = &tokens[(t - 1) * levels..t * levels];
                for row in prev_frame.chunks_exact_mut(levels) {
                    row.copy_from_slice(frame);
                }
            }
            counters::enter(Part::Temporal, device);
            let t0 = Instant::now();
            self.step_frame(&mut state, (t > 0).then_some(prev_frame.as_slice()))?;
            times.temporal += lap(t0);
            for q in 0..levels {
                let step = t * levels + q;
                let prev = (q > 0).then(|| [tokens[step - 1]]);
                counters::enter(Part::Depth, device);
                let t0 = Instant::now();
                self.step_level(&mut state, q, prev.as_ref().map(|p| p.as_slice()), &mut logits)?;
                let t1 = Instant::now();
                times.depth += lap(t0);
                counters::enter(Part::Sampling, device);
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
                times.sampling += t1.elapsed();
                if let Some(obs) = hooks.observer.as_mut() {
                    obs(step, guided);
                }
                // Both rows continue from the conditional row's token (v1 decode.py state callback).
                tokens[step] = id as i32;
            }
        }
        counters::enter(Part::Other, device);
        if let ChunkState::Host(chunk) = &state {
            times.logits = chunk.logits_time;
        }
        if let Some(out) = hooks.times {
            out.encoder += times.encoder;
            out.temporal += times.temporal;
            out.depth += times.depth;
            out.logits += times.logits;
            out.sampling += times.sampling;
        }
        Ok(tokens)
    }
}
