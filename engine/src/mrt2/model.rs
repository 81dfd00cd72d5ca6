//! The per-frame forward pass of MRT2: conditioning encoder → temporal step → 12 depth steps
//! with sampling.
//!
//! All buffers live in [`FrameState`], allocated once; [`Mrt2Model::step`] allocates nothing.
//!
//! Temporal step (once per frame), each layer `self-attn → cross-attn → FFN`, each sub-block
//! `x + RMS_post(f(RMS_pre(x)))`:
//! * attention without biases or positions (NoPE); the query is scaled per dimension by
//!   `1.442695041/√Dh · softplus(per_dim_scale)` for the real keys, while the sink logit uses
//!   the **unscaled** query (reference quirk);
//! * self-attention sees the sink, the current frame and at most `W` past frames; with NoPE the
//!   order of the keys does not matter, so a ring buffer of `W + 1` entries is exact;
//! * cross-attention sees the sink and the projected K/V of the current and at most `Wc` past
//!   conditioning vectors (ring of `Wc + 1`);
//! * FFN `gelu_tanh(x·W1 + b1)·W2 + b2`; no final norm.
//!
//! Depth steps (per frame, cache rebuilt): input `temporal_out` (step 0) or
//! `E[token_{k−1}]·√d_t` (step k), `depth_input_adapter`, causal self-attention without sink,
//! FFN, `final_ln`, `to_logits` for the level's valid 1024 rows only (exact, since only they can
//! be sampled), soft cap, sampler; after every step `key = fold_in(key, frame)`.

use serde::{Deserialize, Serialize};

use super::conditioning::{encode_frame, ConditioningError, EncoderScratch};
use super::config::Mrt2Config;
use super::weights::{Attention, Ffn, Mrt2Weights};
use crate::kernels::host::vmath::{gelu_in_place, softmax};
use crate::kernels::host::{dot_rows, in_pool, layer_norm, rms_norm};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::gpu_decoder::{frame_counters, inputs_len, GpuFrame, Mrt2GpuDecoder, Observed};
use crate::sampling::mrt2::{fill_gumbel, fold_in, sample_window, window_top_k, Key, SampleScratch, SamplingParams};

/// Errors of a frame step. The state is left untouched when a step fails, except after a
/// [`StepError::Device`] failure.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StepError {
    #[error(transparent)]
    Conditioning(#[from] ConditioningError),
    #[error("expected {expected} forced tokens, got {found}")]
    ForcedLength { expected: usize, found: usize },
    #[error("forced token {id} at level {level} is outside the vocabulary of {vocab}")]
    ForcedToken { level: usize, id: i32, vocab: usize },
    /// The GPU failed mid-frame (a lost device): the stream's state is no longer usable.
    #[error("GPU: {0}")]
    Device(String),
}

/// The language model: configuration and weights, and where its decoder runs.
#[derive(Debug, Clone)]
pub struct Mrt2Model {
    pub cfg: Mrt2Config,
    pub weights: Mrt2Weights,
    /// `√d_t`, the decoder embedding scale.
    embed_scale: f32,
    /// The decoder stacks on a GPU ([`Mrt2Model::on_device`]); `None`: the host kernels.
    gpu: Option<Arc<Mrt2GpuDecoder>>,
}

/// A ring of the last `cap` keys and values (NoPE: the order of the entries is irrelevant).
#[derive(Debug, Clone)]
pub struct KvRing {
    cap: usize,
    len: usize,
    next: usize,
    width: usize,
    keys: Vec<f32>,
    values: Vec<f32>,
}

impl KvRing {
    fn new(cap: usize, width: usize) -> Self {
        Self { cap, len: 0, next: 0, width, keys: vec![0.0; cap * width], values: vec![0.0; cap * width] }
    }

    /// The cursor of a ring whose entries live elsewhere (on the GPU).
    fn cursor_only(cap: usize, width: usize) -> Self {
        Self { cap, len: 0, next: 0, width, keys: Vec::new(), values: Vec::new() }
    }

    /// Advances the cursor as [`KvRing::push_slot`] does: the slot written and the fill count
    /// after the push.
    fn advance(&mut self) -> (usize, usize) {
        let i = self.next;
        self.next = (self.next + 1) % self.cap;
        self.len = (self.len + 1).min(self.cap);
        (i, self.len)
    }

    /// The slot the next entry is written to (overwriting the oldest when full).
    fn push_slot(&mut self) -> (&mut [f32], &mut [f32]) {
        let i = self.next;
        self.next = (self.next + 1) % self.cap;
        self.len = (self.len + 1).min(self.cap);
        let r = i * self.width..(i + 1) * self.width;
        (&mut self.keys[r.clone()], &mut self.values[r])
    }

    /// Number of valid entries.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True before the first entry.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn clear(&mut self) {
        self.len = 0;
        self.next = 0;
    }

    fn filled(&self) -> (&[f32], &[f32]) {
        let n = self.len * self.width;
        (&self.keys[..n], &self.values[..n])
    }
}

/// Scratch buffers of one step.
#[derive(Debug, Clone)]
struct Scratch {
    encoder: EncoderScratch,
    normed: Vec<f32>,
    q: Vec<f32>,
    qs: Vec<f32>,
    att: Vec<f32>,
    proj: Vec<f32>,
    hidden: Vec<f32>,
    probs: Vec<f32>,
    depth_in: Vec<f32>,
    depth_x: Vec<f32>,
    depth_z: Vec<f32>,
    capped: Vec<f32>,
    noise: Vec<f32>,
    sample: SampleScratch,
}

/// Everything that persists between frames of one stream, plus the step's outputs. On a GPU
/// model the rings live on the device ([`GpuFrame`]) and the host keeps their cursors.
#[derive(Debug)]
pub struct FrameState {
    /// Frames generated so far (the decoder's step counter; folded into the key).
    frame: u32,
    key: Key,
    initial_key: Key,
    /// Tokens of the previous frame (SOS before frame 0).
    prev_tokens: Vec<i32>,
    self_kv: Vec<KvRing>,
    cross_kv: Vec<KvRing>,
    /// Depth K/V cache per layer, `[levels, inner]`; rebuilt every frame.
    depth_k: Vec<Vec<f32>>,
    depth_v: Vec<Vec<f32>>,
    // Outputs of the last step.
    tokens: Vec<i32>,
    step_keys: Vec<Key>,
    encoder_out: Vec<f32>,
    temporal_input: Vec<f32>,
    temporal_output: Vec<f32>,
    raw_valid_logits: Vec<f32>,
    raw_full_logits: Option<Vec<f32>>,
    scratch: Scratch,
    times: FrameTimes,
    /// The device side of a GPU model's stream, and the host staging of its per-frame uploads.
    device: Option<DeviceFrame>,
}

#[derive(Debug)]
struct DeviceFrame {
    frame: GpuFrame,
    /// Read the temporal input/output and the raw logits back every frame (off: only the tokens).
    observe: bool,
    counters: Vec<u32>,
    /// The encoder vector, then `levels × codebook` Gumbel noise.
    inputs: Vec<f32>,
    observed: Observed,
}

/// Where the steps' time went since the last [`FrameState::take_times`] (benchmarks).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct FrameTimes {
    pub frames: u32,
    /// The conditioning encoder.
    pub encoder: Duration,
    /// The temporal stack (self- and cross-attention windows, FFN).
    pub temporal: Duration,
    /// The depth stack of all levels, without the logits.
    pub depth: Duration,
    /// The level-sliced `to_logits` products, soft cap, noise and draw of all levels.
    pub logits_sampling: Duration,
}

impl FrameState {
    /// The initial state of a stream with PRNG key `key` (previous frame = SOS, empty windows).
    pub fn new(model: &Mrt2Model, key: Key) -> Self {
        let c = &model.cfg;
        let t = &c.temporal;
        let d = &c.depth;
        let levels = c.num_levels;
        let cb = c.codebook_size;
        let window = c.self_attention_window.max(c.cross_attention_window) + 1;
        let max_inner = t.inner().max(d.inner());
        let max_model = t.d_model.max(d.d_model);
        let max_hidden = t.ffn.max(d.ffn).max(max_model);
        let ring = if model.gpu.is_some() { KvRing::cursor_only } else { KvRing::new };
        let device = model.gpu.as_ref().map(|g| DeviceFrame {
            frame: g.new_frame(),
            observe: false,
            counters: Vec::new(),
            inputs: vec![0.0; inputs_len(c)],
            observed: Observed::default(),
        });
        Self {
            frame: 0,
            key,
            initial_key: key,
            prev_tokens: vec![c.sos_id as i32; levels],
            self_kv: (0..t.layers).map(|_| ring(c.self_attention_window + 1, t.inner())).collect(),
            cross_kv: (0..t.layers).map(|_| ring(c.cross_attention_window + 1, t.inner())).collect(),
            depth_k: (0..d.layers).map(|_| vec![0.0; levels * d.inner()]).collect(),
            depth_v: (0..d.layers).map(|_| vec![0.0; levels * d.inner()]).collect(),
            tokens: vec![0; levels],
            step_keys: vec![[0, 0]; levels],
            encoder_out: vec![0.0; c.encoder_width],
            temporal_input: vec![0.0; t.d_model],
            temporal_output: vec![0.0; t.d_model],
            raw_valid_logits: vec![0.0; levels * cb],
            raw_full_logits: None,
            scratch: Scratch {
                encoder: EncoderScratch::new(c),
                normed: vec![0.0; max_model],
                q: vec![0.0; max_inner],
                qs: vec![0.0; d.head_dim.max(t.head_dim)],
                att: vec![0.0; max_inner],
                proj: vec![0.0; max_model],
                hidden: vec![0.0; max_hidden],
                probs: vec![0.0; window.max(levels) + c.num_sinks],
                depth_in: vec![0.0; t.d_model],
                depth_x: vec![0.0; d.d_model],
                depth_z: vec![0.0; d.d_model],
                capped: vec![0.0; cb],
                noise: vec![0.0; cb],
                sample: SampleScratch::new(cb),
            },
            times: FrameTimes::default(),
            device,
        }
    }

    /// On a GPU model: also read back the temporal input and output and the raw logits of every
    /// frame ([`Self::temporal_input`], [`Self::temporal_output`], [`Self::raw_valid_logits`]),
    /// which runs the frame eagerly with reads between its parts (conformance, tests). Off by
    /// default there: a frame then reads back only its tokens. The host path always has them.
    pub fn observe(&mut self, on: bool) {
        if let Some(d) = self.device.as_mut() {
            d.observe = on;
        }
    }

    /// Whether this stream's decoder runs on a GPU.
    pub fn on_gpu(&self) -> bool {
        self.device.is_some()
    }

    /// Whether this GPU stream replays a recorded frame (false on the host, while observing,
    /// before the second frame, and where the backend has no graphs).
    pub fn replaying(&self) -> bool {
        self.device.as_ref().is_some_and(|d| d.frame.recorded())
    }

    /// The time split of the steps since the last call, and a fresh count.
    pub fn take_times(&mut self) -> FrameTimes {
        std::mem::take(&mut self.times)
    }

    /// Also compute and keep the full-width raw logits (`[levels, logits_width]`) of each step.
    /// Off by default: only the valid window of each level is needed for sampling.
    /// Allocates only when switching on from off.
    pub fn keep_full_logits(&mut self, model: &Mrt2Model, on: bool) {
        if !on {
            self.raw_full_logits = None;
        } else if self.raw_full_logits.is_none() {
            self.raw_full_logits = Some(vec![0.0; model.cfg.num_levels * model.cfg.logits_width()]);
        }
    }

    /// Back to the initial state (same initial key), keeping the allocations.
    pub fn reset(&mut self, sos_id: i32) {
        self.frame = 0;
        self.key = self.initial_key;
        self.prev_tokens.fill(sos_id);
        for r in self.self_kv.iter_mut().chain(self.cross_kv.iter_mut()) {
            r.clear();
        }
    }

    /// Frames generated so far.
    pub fn frame(&self) -> u32 {
        self.frame
    }

    /// The PRNG key the next depth step will use.
    pub fn key(&self) -> Key {
        self.key
    }

    /// Tokens (unique ids `6 + 1024·level + code`) of the last step.
    pub fn tokens(&self) -> &[i32] {
        &self.tokens
    }

    /// Tokens of the previous frame (what the next temporal step consumes).
    pub fn prev_tokens(&self) -> &[i32] {
        &self.prev_tokens
    }

    /// The key used for the Gumbel draw of each level in the last step.
    pub fn step_keys(&self) -> &[Key] {
        &self.step_keys
    }

    /// The conditioning vector of the last step.
    pub fn encoder_out(&self) -> &[f32] {
        &self.encoder_out
    }

    /// The temporal stack's input of the last step.
    pub fn temporal_input(&self) -> &[f32] {
        &self.temporal_input
    }

    /// The temporal stack's output of the last step.
    pub fn temporal_output(&self) -> &[f32] {
        &self.temporal_output
    }

    /// Raw (pre-cap) logits of the valid window of each level, `[levels, codebook_size]`.
    pub fn raw_valid_logits(&self) -> &[f32] {
        &self.raw_valid_logits
    }

    /// Raw full-width logits `[levels, logits_width]`, when enabled by [`Self::keep_full_logits`].
    pub fn raw_full_logits(&self) -> Option<&[f32]> {
        self.raw_full_logits.as_deref()
    }

    /// Self- and cross-attention windows of temporal layer `layer` (fill counts, for tests).
    pub fn window_lengths(&self, layer: usize) -> (usize, usize) {
        (self.self_kv[layer].len(), self.cross_kv[layer].len())
    }
}

/// One K/V ring as saved: fill count, write cursor and the filled prefix of its buffers (each
/// f32 as `to_bits`, so a save → load round trip is exact). Entries are kept in slot order: with
/// NoPE the order is irrelevant to the maths, but it fixes the order of the float sums.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RingSnapshot {
    pub len: usize,
    pub next: usize,
    pub keys: Vec<u32>,
    pub values: Vec<u32>,
}

/// What a [`FrameState`] carries from one frame to the next (spec §3): frame counter, keys,
/// the previous frame's tokens and every temporal layer's self- and cross-attention rings. The
/// depth cache is rebuilt every frame and the step's outputs are not state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FrameSnapshot {
    pub frame: u32,
    pub key: Key,
    pub initial_key: Key,
    pub prev_tokens: Vec<i32>,
    pub self_kv: Vec<RingSnapshot>,
    pub cross_kv: Vec<RingSnapshot>,
}

impl KvRing {
    fn snapshot(&self) -> RingSnapshot {
        let (k, v) = self.filled();
        self.snapshot_of(k, v)
    }

    /// The snapshot of this cursor over entries `keys`/`values` (`[≥ len, width]`, slot order).
    fn snapshot_of(&self, keys: &[f32], values: &[f32]) -> RingSnapshot {
        let n = self.len * self.width;
        RingSnapshot { len: self.len, next: self.next, keys: keys[..n].iter().map(|x| x.to_bits()).collect(), values: values[..n].iter().map(|x| x.to_bits()).collect() }
    }

    fn check(&self, s: &RingSnapshot) -> Result<(), String> {
        // Rings fill slots 0, 1, … before wrapping: below capacity the cursor equals the count.
        let cursor_ok = if s.len < self.cap { s.next == s.len } else { s.next < self.cap };
        if s.len > self.cap || !cursor_ok {
            return Err(format!("ring of {} entries with cursor {} (capacity {})", s.len, s.next, self.cap));
        }
        if s.keys.len() != s.len * self.width || s.values.len() != s.len * self.width {
            return Err(format!("ring of {} entries holds {} keys and {} values of width {}", s.len, s.keys.len(), s.values.len(), self.width));
        }
        Ok(())
    }

    fn restore(&mut self, s: &RingSnapshot) {
        self.len = s.len;
        self.next = s.next;
        if self.keys.is_empty() {
            return; // entries on the GPU
        }
        for (d, &b) in self.keys.iter_mut().zip(&s.keys) {
            *d = f32::from_bits(b);
        }
        for (d, &b) in self.values.iter_mut().zip(&s.values) {
            *d = f32::from_bits(b);
        }
    }
}

impl FrameState {
    /// The state to save. A GPU stream reads its rings back (one read per ring); a failed read
    /// is a lost device, and panics with the device's message.
    pub fn snapshot(&self) -> FrameSnapshot {
        let (self_kv, cross_kv) = match &self.device {
            None => (self.self_kv.iter().map(KvRing::snapshot).collect(), self.cross_kv.iter().map(KvRing::snapshot).collect()),
            Some(d) => {
                let mut s = Vec::with_capacity(self.self_kv.len());
                let mut x = Vec::with_capacity(self.cross_kv.len());
                for (l, (rs, rx)) in self.self_kv.iter().zip(&self.cross_kv).enumerate() {
                    let [sk, sv, xk, xv] = d.frame.read_rings(l).unwrap_or_else(|e| panic!("reading temporal layer {l}'s rings from the GPU: {e}"));
                    s.push(rs.snapshot_of(&sk, &sv));
                    x.push(rx.snapshot_of(&xk, &xv));
                }
                (s, x)
            }
        };
        FrameSnapshot { frame: self.frame, key: self.key, initial_key: self.initial_key, prev_tokens: self.prev_tokens.clone(), self_kv, cross_kv }
    }

    /// Continues from `s` (saved by [`FrameState::snapshot`] on a model of the same sizes). Every
    /// count is checked first: on error nothing has changed.
    pub fn restore(&mut self, cfg: &Mrt2Config, s: &FrameSnapshot) -> Result<(), String> {
        let vocab = cfg.logits_width();
        if s.prev_tokens.len() != self.prev_tokens.len() {
            return Err(format!("{} previous tokens, the model has {} levels", s.prev_tokens.len(), self.prev_tokens.len()));
        }
        if let Some(id) = s.prev_tokens.iter().find(|&&id| id < 0 || id as usize >= vocab) {
            return Err(format!("previous token {id} is outside the vocabulary of {vocab}"));
        }
        for (name, rings, saved) in [("self", &self.self_kv, &s.self_kv), ("cross", &self.cross_kv, &s.cross_kv)] {
            if rings.len() != saved.len() {
                return Err(format!("{} {name}-attention windows, the model has {} temporal layers", saved.len(), rings.len()));
            }
            for (l, (r, sv)) in rings.iter().zip(saved).enumerate() {
                r.check(sv).map_err(|e| format!("layer {l} {name}-attention: {e}"))?;
            }
        }
        self.frame = s.frame;
        self.key = s.key;
        self.initial_key = s.initial_key;
        self.prev_tokens.copy_from_slice(&s.prev_tokens);
        self.tokens.copy_from_slice(&s.prev_tokens);
        for (r, sv) in self.self_kv.iter_mut().zip(&s.self_kv).chain(self.cross_kv.iter_mut().zip(&s.cross_kv)) {
            r.restore(sv);
        }
        if let Some(d) = &self.device {
            let f = |b: &[u32]| b.iter().map(|&x| f32::from_bits(x)).collect::<Vec<f32>>();
            for (l, (sv, xv)) in s.self_kv.iter().zip(&s.cross_kv).enumerate() {
                let (sk, sv_, xk, xv_) = (f(&sv.keys), f(&sv.values), f(&xv.keys), f(&xv.values));
                d.frame.write_rings(l, [&sk, &sv_, &xk, &xv_]);
            }
        }
        Ok(())
    }
}

/// SpectroStream code of a unique id: `(id − 6) mod 1024`.
pub fn token_to_code(cfg: &Mrt2Config, id: i32) -> i32 {
    (id - cfg.num_reserved as i32).rem_euclid(cfg.codebook_size as i32)
}

impl Mrt2Model {
    pub fn new(cfg: Mrt2Config, weights: Mrt2Weights) -> Self {
        let embed_scale = (cfg.temporal.d_model as f64).sqrt() as f32;
        Self { cfg, weights, embed_scale, gpu: None }
    }

    /// The decoder on `device` (wgpu or CUDA) with the shared GPU kernels, its projections at
    /// the weights' precision; streams made after this ([`FrameState::new`]) run there. The
    /// conditioning encoder and the noise stay on the host.
    pub fn on_device(mut self, device: &burn::tensor::Device) -> Result<Self, crate::kernels::gpu::GpuError> {
        let gpu = crate::kernels::gpu::Gpu::new(device)?;
        self.gpu = Some(Arc::new(Mrt2GpuDecoder::new(gpu, &self.cfg, &self.weights)?));
        Ok(self)
    }

    /// The GPU decoder, when the model runs on one.
    pub fn gpu(&self) -> Option<&Mrt2GpuDecoder> {
        self.gpu.as_deref()
    }

    /// Runs one frame: conditioning `cond_tokens` (shifted, `cond_channels` ints), sampling
    /// `params`. With `forced = Some(targets)` the depth steps consume `targets` instead of the
    /// samples and the next frame sees `targets` as the previous frame (teacher forcing); the
    /// key chain advances the same way.
    /// The step runs on a thread of rayon's pool ([`in_pool`]): its products are split over
    /// the pool's threads.
    pub fn step(&self, st: &mut FrameState, cond_tokens: &[i32], params: &SamplingParams, forced: Option<&[i32]>) -> Result<(), StepError> {
        in_pool(|| self.step_in_pool(st, cond_tokens, params, forced))
    }

    fn step_in_pool(&self, st: &mut FrameState, cond_tokens: &[i32], params: &SamplingParams, forced: Option<&[i32]>) -> Result<(), StepError> {
        let c = &self.cfg;
        let w = &self.weights;
        let vocab = c.logits_width();
        if let Some(f) = forced {
            if f.len() != c.num_levels {
                return Err(StepError::ForcedLength { expected: c.num_levels, found: f.len() });
            }
            if let Some((level, &id)) = f.iter().enumerate().find(|(_, &id)| id < 0 || id as usize >= vocab) {
                return Err(StepError::ForcedToken { level, id, vocab });
            }
        }
        // The encoder validates the tokens before anything in the state changes.
        let started = Instant::now();
        encode_frame(c, &w.conditioning, cond_tokens, &mut st.scratch.encoder, &mut st.encoder_out)?;
        if let (Some(g), true) = (&self.gpu, st.device.is_some()) {
            self.step_gpu(g, st, params, forced, started)?;
            st.prev_tokens.copy_from_slice(&st.tokens);
            st.frame = st.frame.wrapping_add(1);
            return Ok(());
        }
        let encoded = Instant::now();
        self.temporal_step(st);
        let temporal = Instant::now();
        st.times.encoder += encoded - started;
        st.times.temporal += temporal - encoded;
        st.times.frames += 1;
        self.depth_steps(st, params, forced);

        st.prev_tokens.copy_from_slice(&st.tokens);
        st.frame = st.frame.wrapping_add(1);
        Ok(())
    }

    /// The frame on the GPU after the host's encoder: the key chain and the Gumbel noise of every
    /// level (they depend only on the keys), the rings' cursors, one upload, the frame's
    /// launches and one read of the tokens.
    fn step_gpu(&self, g: &Mrt2GpuDecoder, st: &mut FrameState, params: &SamplingParams, forced: Option<&[i32]>, started: Instant) -> Result<(), StepError> {
        let c = &self.cfg;
        let (cb, w) = (c.codebook_size, c.encoder_width);
        let FrameState { frame, key, prev_tokens, self_kv, cross_kv, encoder_out, tokens, step_keys, temporal_input, temporal_output, raw_valid_logits, raw_full_logits, times, device, .. } = st;
        let d = device.as_mut().expect("checked by the caller");
        d.inputs[..w].copy_from_slice(encoder_out);
        for (level, sk) in step_keys.iter_mut().enumerate() {
            let start = (c.num_reserved + level * cb) as u64;
            fill_gumbel(*key, start, &mut d.inputs[w + level * cb..w + (level + 1) * cb]);
            *sk = *key;
            *key = fold_in(*key, *frame);
        }
        // Every layer's ring moves in step: the first one's cursor is every one's.
        let self_ring = self_kv.iter_mut().map(KvRing::advance).last().unwrap_or((0, 0));
        let cross_ring = cross_kv.iter_mut().map(KvRing::advance).last().unwrap_or((0, 0));
        frame_counters(c, self_ring, cross_ring, window_top_k(params.top_k, c.logits_width(), cb), forced, prev_tokens, &mut d.counters);
        d.inputs[w + c.num_levels * cb] = params.temperature;
        let encoded = Instant::now();
        let observe = if d.observe {
            d.observed.full = raw_full_logits.as_ref().map(|f| vec![0.0; f.len()]);
            Some(&mut d.observed)
        } else {
            None
        };
        let observing = observe.is_some();
        g.run_frame(&mut d.frame, &d.counters, &d.inputs, observe, tokens).map_err(|e| StepError::Device(format!("frame {frame} on {}: {e}", g.name())))?;
        if observing {
            let o = &d.observed;
            temporal_input.copy_from_slice(&o.temporal_input);
            temporal_output.copy_from_slice(&o.temporal_output);
            let n = raw_valid_logits.len();
            raw_valid_logits.copy_from_slice(&o.raw_valid_logits[..n]);
            if let (Some(full), Some(got)) = (raw_full_logits.as_mut(), o.full.as_ref()) {
                full.copy_from_slice(got);
            }
        }
        times.encoder += encoded - started;
        times.depth += encoded.elapsed();
        times.frames += 1;
        Ok(())
    }

    /// Adds `E[id]·√d_t` to `acc`.
    fn add_embedding(&self, id: i32, acc: &mut [f32]) {
        let d = self.cfg.temporal.d_model;
        let row = &self.weights.embedding[id as usize * d..(id as usize + 1) * d];
        for (a, &e) in acc.iter_mut().zip(row) {
            *a += e * self.embed_scale;
        }
    }

    fn temporal_step(&self, st: &mut FrameState) {
        let c = &self.cfg;
        let t = &c.temporal;
        let (dm, inner, eps) = (t.d_model, t.inner(), c.rmsnorm_eps);
        let FrameState { prev_tokens, self_kv, cross_kv, encoder_out, temporal_input, temporal_output, scratch: s, .. } = st;

        // Input: mean of the scaled embeddings of the previous frame's tokens.  [d_t]
        temporal_input.fill(0.0);
        for &id in prev_tokens.iter() {
            self.add_embedding(id, temporal_input);
        }
        let n = prev_tokens.len() as f32;
        for v in temporal_input.iter_mut() {
            *v /= n;
        }

        let x = temporal_output;
        x.copy_from_slice(temporal_input);
        let normed = &mut s.normed[..dm];
        for (l, layer) in self.weights.temporal.iter().enumerate() {
            // Self-attention over the window (current key included) + sink.
            let a = &layer.self_attention;
            rms_norm(x, &a.pre_norm, eps, normed);
            a.query.apply(normed, &mut s.q[..inner]);
            {
                let (ks, vs) = self_kv[l].push_slot(); // [H·Dh] each
                a.key.apply(normed, ks);
                a.value.apply(normed, vs);
            }
            let (keys, values) = self_kv[l].filled(); // [n, H·Dh]
            attend(a, t.heads, t.head_dim, c.num_sinks, &s.q[..inner], keys, values, &mut s.qs, &mut s.probs, &mut s.att[..inner]);
            residual_out(a, eps, &s.att[..inner], &mut s.proj[..dm], normed, x);

            // Cross-attention over the window of projected conditioning vectors + sink.
            let a = &layer.cross_attention;
            rms_norm(x, &a.pre_norm, eps, normed);
            a.query.apply(normed, &mut s.q[..inner]);
            {
                let (ks, vs) = cross_kv[l].push_slot();
                a.key.apply(encoder_out, ks);
                a.value.apply(encoder_out, vs);
            }
            let (keys, values) = cross_kv[l].filled();
            attend(a, t.heads, t.head_dim, c.num_sinks, &s.q[..inner], keys, values, &mut s.qs, &mut s.probs, &mut s.att[..inner]);
            residual_out(a, eps, &s.att[..inner], &mut s.proj[..dm], normed, x);

            ffn_block(&layer.ffn, eps, x, normed, &mut s.hidden[..t.ffn], &mut s.proj[..dm]);
        }
    }

    fn depth_steps(&self, st: &mut FrameState, params: &SamplingParams, forced: Option<&[i32]>) {
        let c = &self.cfg;
        let d = &c.depth;
        let w = &self.weights;
        let (dm, inner, eps) = (d.d_model, d.inner(), c.rmsnorm_eps);
        let cb = c.codebook_size;
        let vocab = c.logits_width();
        let FrameState {
            frame,
            key,
            depth_k,
            depth_v,
            tokens,
            step_keys,
            temporal_output,
            raw_valid_logits,
            raw_full_logits,
            scratch: s,
            times,
            ..
        } = st;

        for level in 0..c.num_levels {
            let started = Instant::now();
            // Input of this step, through the adapter.  [d_t] → [d_d]
            if level == 0 {
                s.depth_in.copy_from_slice(temporal_output);
            } else {
                s.depth_in.fill(0.0);
                self.add_embedding(tokens[level - 1], &mut s.depth_in);
            }
            match &w.depth_input_adapter {
                Some(adapter) => adapter.apply(&s.depth_in, &mut s.depth_x),
                None => s.depth_x.copy_from_slice(&s.depth_in),
            }
            let x = &mut s.depth_x;
            let normed = &mut s.normed[..dm];

            for (l, layer) in w.depth.iter().enumerate() {
                let a = &layer.self_attention;
                rms_norm(x, &a.pre_norm, eps, normed);
                a.query.apply(normed, &mut s.q[..inner]);
                let slot = level * inner..(level + 1) * inner;
                a.key.apply(normed, &mut depth_k[l][slot.clone()]);
                a.value.apply(normed, &mut depth_v[l][slot]);
                let filled = (level + 1) * inner; // causal: levels 0..=level
                attend(
                    a,
                    d.heads,
                    d.head_dim,
                    0,
                    &s.q[..inner],
                    &depth_k[l][..filled],
                    &depth_v[l][..filled],
                    &mut s.qs,
                    &mut s.probs,
                    &mut s.att[..inner],
                );
                residual_out(a, eps, &s.att[..inner], &mut s.proj[..dm], normed, x);
                ffn_block(&layer.ffn, eps, x, normed, &mut s.hidden[..d.ffn], &mut s.proj[..dm]);
            }
            layer_norm(x, &w.final_ln_scale, &w.final_ln_bias, c.layernorm_eps, &mut s.depth_z);
            let depth_done = Instant::now();
            times.depth += depth_done - started;

            // Logits of the level's valid window (and optionally of the full width).
            let start = c.num_reserved + level * cb;
            let out = &mut raw_valid_logits[level * cb..(level + 1) * cb];
            w.to_logits.apply_rows(start, &s.depth_z, out);
            if let Some(full) = raw_full_logits.as_mut() {
                w.to_logits.apply_rows(0, &s.depth_z, &mut full[level * vocab..(level + 1) * vocab]);
            }

            // Sample with the current key, then fold the frame index into it.
            for (cv, &r) in s.capped.iter_mut().zip(out.iter()) {
                *cv = soft_cap(r, c.soft_cap);
            }
            fill_gumbel(*key, start as u64, &mut s.noise);
            let j = sample_window(&s.capped, &s.noise, params, vocab, &mut s.sample);
            step_keys[level] = *key;
            *key = fold_in(*key, *frame);
            tokens[level] = match forced {
                Some(f) => f[level],
                None => (start + j) as i32,
            };
            times.logits_sampling += depth_done.elapsed();
        }
    }
}

/// The logit soft cap `cap · tanh(x / cap)`.
#[inline]
pub fn soft_cap(x: f32, cap: f32) -> f32 {
    (x / cap).tanh() * cap
}

/// `x += RMS_post(W_o · att)`; `normed` is scratch of `x.len()`.
fn residual_out(a: &Attention, eps: f32, att: &[f32], proj: &mut [f32], normed: &mut [f32], x: &mut [f32]) {
    a.output.apply(att, proj);
    rms_norm(proj, &a.post_norm, eps, normed);
    for (xv, &p) in x.iter_mut().zip(normed.iter()) {
        *xv += p;
    }
}

/// `x += RMS_post(gelu_tanh(RMS_pre(x)·W1 + b1)·W2 + b2)`; `normed` is scratch of `x.len()`.
fn ffn_block(f: &Ffn, eps: f32, x: &mut [f32], normed: &mut [f32], hidden: &mut [f32], proj: &mut [f32]) {
    rms_norm(x, &f.pre_norm, eps, normed);
    f.layer1.apply(normed, hidden); // [F]
    gelu_in_place(hidden);
    f.layer2.apply(hidden, proj); // [d]
    rms_norm(proj, &f.post_norm, eps, normed);
    for (xv, &p) in x.iter_mut().zip(normed.iter()) {
        *xv += p;
    }
}

/// Multi-head attention of one query over `keys`/`values` (`[n, H·Dh]`) and `sinks` learned
/// sinks. Real keys see the per-dimension scaled query; the sink logits use the unscaled query
/// (the reference's quirk, `magenta_rt_2.md` §1.2, confirmed by the fixtures). Not
/// `kernels::host::attend_one`: the keys of one head are strided, and the sink joins the softmax.
#[allow(clippy::too_many_arguments)]
fn attend(
    a: &Attention,
    heads: usize,
    head_dim: usize,
    sinks: usize,
    q: &[f32],
    keys: &[f32],
    values: &[f32],
    qs: &mut [f32],
    probs: &mut [f32],
    out: &mut [f32],
) {
    let inner = heads * head_dim;
    let n = keys.len() / inner;
    let p = &mut probs[..sinks + n];
    for h in 0..heads {
        let hr = h * head_dim..(h + 1) * head_dim;
        let qh = &q[hr.clone()];
        for ((o, &qv), &sc) in qs[..head_dim].iter_mut().zip(qh).zip(&a.query_scale) {
            *o = qv * sc;
        }
        for (si, pv) in p[..sinks].iter_mut().enumerate() {
            let sk = &a.sink_key[si * inner + h * head_dim..si * inner + (h + 1) * head_dim];
            dot_rows(qh, sk, std::slice::from_mut(pv));
        }
        for j in 0..n {
            let kj = &keys[j * inner + h * head_dim..j * inner + (h + 1) * head_dim];
            dot_rows(&qs[..head_dim], kj, &mut p[sinks + j..sinks + j + 1]);
        }
        softmax(p);
        let oh = &mut out[hr];
        oh.fill(0.0);
        for (si, &ps) in p[..sinks].iter().enumerate() {
            let sv = &a.sink_value[si * inner + h * head_dim..si * inner + (h + 1) * head_dim];
            for (o, &v) in oh.iter_mut().zip(sv) {
                *o += ps * v;
            }
        }
        for j in 0..n {
            let vj = &values[j * inner + h * head_dim..j * inner + (h + 1) * head_dim];
            let pj = p[sinks + j];
            for (o, &v) in oh.iter_mut().zip(vj) {
                *o += pj * v;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ring_keeps_only_the_last_cap_entries() {
        let mut r = KvRing::new(3, 1);
        for i in 0..5 {
            let (k, v) = r.push_slot();
            k[0] = i as f32;
            v[0] = -(i as f32);
        }
        assert_eq!(r.len(), 3);
        let (k, _) = r.filled();
        let mut got = k.to_vec();
        got.sort_by(f32::total_cmp);
        assert_eq!(got, vec![2.0, 3.0, 4.0]);
    }

    #[test]
    fn the_soft_cap_bounds_logits_by_the_cap() {
        assert!(soft_cap(1e6, 30.0) <= 30.0);
        assert!((soft_cap(1.0, 30.0) - 30.0 * (1.0f32 / 30.0).tanh()).abs() < 1e-7);
    }

    #[test]
    fn codes_are_ids_minus_six_modulo_the_codebook() {
        let cfg = Mrt2Config::mrt2_small();
        assert_eq!(token_to_code(&cfg, 6), 0);
        assert_eq!(token_to_code(&cfg, 6 + 1024 * 3 + 17), 17);
        assert_eq!(token_to_code(&cfg, 12293), 1023);
    }
}
