//! MRT2's frame step on a GPU with the shared kernels ([`crate::kernels::gpu`]): the function of
//! [`super::model`]'s host step (same weights, same order), with the temporal rings, the depth
//! cache and the draw on the device. The conditioning encoder and the Gumbel noise (which depends
//! only on the key chain, never on the tokens) stay on the host; a frame is one upload of the
//! encoder vector + noise + counters, a fixed sequence of launches and one read of its 12 tokens
//! (the codec needs them every 40 ms anyway).
//!
//! ```text
//!  frame        embed_mean(prev ids)·√d_t → xt
//!  per temporal layer   gemv q|k|v (rms) · attend_window (self ring + sink) · gemv out · norm_row
//!                       gemv q (rms) · gemv k|v (encoder vector) · attend_window (cross ring + sink)
//!                       · gemv out · norm_row · gemv W1+b (rms, GELU) · gemv W2+b · norm_row
//!  per level    gemv adapter (xt → xd) · per depth layer: gemv q|k|v · attend_window (levels 0..=l)
//!               · gemv out · norm_row · gemv W1 · gemv W2 · norm_row;  norm_row LayerNorm ·
//!               gemv to_logits (the level's 1024 rows + bias) · sample_gumbel (token, E[id]·√d_t → xt)
//! ```
//!
//! The counters buffer (`pos`) holds the level (advanced by the sampler), the rings' write slot
//! and fill count (the host mirrors the rings' cursors), the forced flag and ids, and the
//! previous frame's ids: the host writes it before every frame, so every frame's launches are the
//! same and the whole frame is recorded once and replayed (frame 0 runs eagerly: the warm-up).

use std::sync::atomic::{AtomicBool, Ordering};

use burn::tensor::StreamId;
use burn::cubecl::prelude::*;

use super::config::Mrt2Config;
use super::weights::{Attention, Ffn, Linear, Mrt2Weights};
use crate::kernels::gpu::decode::{self, GELU, STORE, THREADS};
use crate::kernels::gpu::frame::{self, COPY, LAYER, RMS_ADD};
use crate::kernels::gpu::{gemv_shape, Buf, Gpu, GpuError, GpuMatrix, Graph};
use crate::kernels::{Matrix, WeightPrecision};

/// `pos` layout: level, self ring (slot, fill), cross ring (slot, fill), top-k, forced flag,
/// then `levels` forced ids and `levels` previous ids. `inputs`: the encoder vector, the
/// `levels × codebook` noise, the temperature. The sampling knobs travel as data: one recorded
/// frame serves every setting (the plugin automates them).
const POS_LEVEL: usize = 0;
const POS_SELF: usize = 1;
const POS_CROSS: usize = 3;
const POS_TOP_K: usize = 5;
const POS_FORCED: usize = 6;
const POS_FORCED_IDS: usize = 7;

/// A product with its optional bias.
struct Lin {
    m: GpuMatrix,
    bias: Option<Buf>,
}

struct Attn {
    pre: Buf,
    post: Buf,
    /// Self-attention: q | k | v from the stream; cross-attention: q only.
    q: Lin,
    /// Cross-attention: k | v from the encoder vector.
    kv: Option<Lin>,
    out: Lin,
    qscale: Buf,
    sink_k: Buf,
    sink_v: Buf,
}

struct FfnG {
    pre: Buf,
    post: Buf,
    l1: Lin,
    l2: Lin,
}

struct TemporalLayer {
    self_attn: Attn,
    cross: Attn,
    ffn: FfnG,
}

struct DepthLayer {
    attn: Attn,
    ffn: FfnG,
}

/// The MRT2 decoder stacks resident on a GPU.
pub struct Mrt2GpuDecoder {
    gpu: Gpu,
    cfg: Mrt2Config,
    pub precision: WeightPrecision,
    /// Record a frame once and replay it (`MRT_GPU_REPLAY=0`: every launch eager).
    replay: AtomicBool,
    embed_scale: f32,
    /// `[vocab, d_t]` f32.
    embedding: Buf,
    temporal: Vec<TemporalLayer>,
    adapter: Option<Lin>,
    depth: Vec<DepthLayer>,
    final_ln_scale: Buf,
    final_ln_bias: Buf,
    to_logits: Lin,
    /// One unread value: the argument where a kernel's optional buffer is absent.
    none: Buf,
}

impl std::fmt::Debug for Mrt2GpuDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mrt2GpuDecoder").field("device", &self.gpu.name).field("precision", &self.precision).finish_non_exhaustive()
    }
}

fn stacked_bias(parts: &[&Linear]) -> Option<Vec<f32>> {
    parts.iter().any(|l| l.bias.is_some()).then(|| parts.iter().flat_map(|l| l.bias.clone().unwrap_or_else(|| vec![0.0; l.out_dim])).collect())
}

impl Mrt2GpuDecoder {
    /// Uploads `weights` (each projection at its own precision: f32, bf16 or int8, as loaded).
    pub fn new(gpu: Gpu, cfg: &Mrt2Config, weights: &Mrt2Weights) -> Result<Self, GpuError> {
        for (name, s) in [("temporal", &cfg.temporal), ("depth", &cfg.depth)] {
            if s.head_dim > THREADS as usize {
                return Err(GpuError::Unsupported(format!("{name} head_dim {} is wider than the attention kernel's {THREADS} threads", s.head_dim)));
            }
        }
        let precision = weights.precision();
        let lin = |parts: &[&Linear]| -> Result<Lin, GpuError> {
            let ms: Vec<&Matrix> = parts.iter().map(|l| &l.w).collect();
            Ok(Lin { m: gpu.stacked(&ms, precision)?, bias: stacked_bias(parts).map(|b| gpu.f32s(&b)) })
        };
        let nonempty = |v: &[f32]| if v.is_empty() { gpu.zeros(1) } else { gpu.f32s(v) };
        let attn = |a: &Attention, self_attn: bool| -> Result<Attn, GpuError> {
            Ok(Attn {
                pre: gpu.f32s(&a.pre_norm),
                post: gpu.f32s(&a.post_norm),
                q: if self_attn { lin(&[&a.query, &a.key, &a.value])? } else { lin(&[&a.query])? },
                kv: if self_attn { None } else { Some(lin(&[&a.key, &a.value])?) },
                out: lin(&[&a.output])?,
                qscale: gpu.f32s(&a.query_scale),
                sink_k: nonempty(&a.sink_key),
                sink_v: nonempty(&a.sink_value),
            })
        };
        let ffn = |f: &Ffn| -> Result<FfnG, GpuError> { Ok(FfnG { pre: gpu.f32s(&f.pre_norm), post: gpu.f32s(&f.post_norm), l1: lin(&[&f.layer1])?, l2: lin(&[&f.layer2])? }) };
        let temporal = weights
            .temporal
            .iter()
            .map(|l| Ok(TemporalLayer { self_attn: attn(&l.self_attention, true)?, cross: attn(&l.cross_attention, false)?, ffn: ffn(&l.ffn)? }))
            .collect::<Result<Vec<_>, GpuError>>()?;
        let depth = weights.depth.iter().map(|l| Ok(DepthLayer { attn: attn(&l.self_attention, true)?, ffn: ffn(&l.ffn)? })).collect::<Result<Vec<_>, GpuError>>()?;
        Ok(Self {
            embed_scale: (cfg.temporal.d_model as f64).sqrt() as f32,
            embedding: gpu.f32s(&weights.embedding),
            adapter: weights.depth_input_adapter.as_ref().map(|a| lin(&[a])).transpose()?,
            final_ln_scale: gpu.f32s(&weights.final_ln_scale),
            final_ln_bias: gpu.f32s(&weights.final_ln_bias),
            to_logits: lin(&[&weights.to_logits])?,
            none: gpu.zeros(1),
            temporal,
            depth,
            precision,
            replay: AtomicBool::new(std::env::var("MRT_GPU_REPLAY").map_or(true, |v| v != "0")),
            cfg: cfg.clone(),
            gpu,
        })
    }

    /// The cubecl device's name.
    pub fn name(&self) -> &str {
        &self.gpu.name
    }

    /// Whether frames are recorded once and replayed (see the field); benchmarks compare both.
    pub fn set_replay(&self, on: bool) {
        self.replay.store(on, Ordering::Relaxed);
    }

    /// Whether frames are recorded and replayed now.
    pub fn replays(&self) -> bool {
        self.replay.load(Ordering::Relaxed)
    }

    /// The device state of a new stream: empty rings; the previous ids are written per frame.
    pub fn new_frame(&self) -> GpuFrame {
        let c = &self.cfg;
        let (t, d) = (&c.temporal, &c.depth);
        let g = &self.gpu;
        let ring = |cap: usize| (g.scratch(cap * t.inner()), g.scratch(cap * t.inner()));
        let widest = [3 * t.inner(), 3 * d.inner(), t.ffn, d.ffn].into_iter().max().unwrap_or(1);
        GpuFrame {
            pos: g.zeros(POS_FORCED_IDS + 2 * c.num_levels),
            inputs: g.scratch(inputs_len(c)),
            tokens: g.zeros(c.num_levels),
            xt: g.scratch(t.d_model),
            xd: g.scratch(d.d_model),
            wide: g.scratch(widest),
            ctx: g.scratch(t.inner().max(d.inner())),
            proj: g.scratch(t.d_model.max(d.d_model)),
            logits: g.scratch(c.num_levels * c.codebook_size),
            full: None,
            self_kv: (0..t.layers).map(|_| ring(c.self_attention_window + 1)).collect(),
            cross_kv: (0..t.layers).map(|_| ring(c.cross_attention_window + 1)).collect(),
            depth_kv: (0..d.layers).map(|_| (g.scratch(c.num_levels * d.inner()), g.scratch(c.num_levels * d.inner()))).collect(),
            gpu: g.clone(),
            stream: StreamId::current(),
            graph: None,
            recordable: true,
            frames: 0,
        }
    }

    /// `out[out_at + level·level_stride + o] (+)= W · x̂ (+ b)` (see [`decode::gemv`]);
    /// `logits`: the level's rows of `to_logits` from the counter.
    #[allow(clippy::too_many_arguments)]
    fn gemv(&self, f: &GpuFrame, x: &Buf, norm: Option<&Buf>, w: &Lin, out: &Buf, n_out: usize, out_at: usize, mode: u32, logits: bool) {
        let c = &self.cfg;
        let (row_base, level_rows, levels, level_stride) =
            if logits { (c.num_reserved as u32, c.codebook_size as u32, c.num_levels as u32, c.codebook_size as u32) } else { (0, 0, 1, 0) };
        let (lanes, rows) = gemv_shape(w.m.words);
        decode::gemv::launch(
            &self.gpu.client,
            CubeCount::Static(n_out.div_ceil(rows as usize) as u32, 1, 1),
            CubeDim::new_2d(lanes, rows),
            x.arg(),
            norm.unwrap_or(&self.none).arg(),
            w.m.buf.arg(),
            w.m.scales.arg(),
            w.bias.as_ref().unwrap_or(&self.final_ln_bias).arg(),
            out.arg(),
            f.pos.arg(),
            w.m.cols as u32,
            w.m.words as u32,
            n_out as u32,
            n_out as u32,
            out_at as u32,
            level_stride,
            c.rmsnorm_eps,
            row_base,
            level_rows,
            levels,
            1,
            norm.is_some(),
            w.m.format,
            mode,
            w.bias.is_some(),
        );
    }

    /// `out (op)= norm(y)` on one row of `d` ([`frame::norm_row`]).
    #[allow(clippy::too_many_arguments)]
    fn norm_row(&self, y: &Buf, g: &Buf, b: Option<&Buf>, out: &Buf, d: usize, eps: f32, mode: u32) {
        frame::norm_row::launch(
            &self.gpu.client,
            CubeCount::Static(1, 1, 1),
            CubeDim::new_1d(THREADS),
            y.arg(),
            g.arg(),
            b.unwrap_or(&self.none).arg(),
            out.arg(),
            d as u32,
            eps,
            mode,
        );
    }

    #[allow(clippy::too_many_arguments)]
    fn attend(&self, f: &GpuFrame, a: &Attn, kv: &(Buf, Buf), slot_at: usize, cap: usize, heads: usize, dh: usize, sinks: usize, depth: bool) {
        frame::attend_window::launch(
            &self.gpu.client,
            CubeCount::Static(heads as u32, 1, 1),
            CubeDim::new_1d(dh.next_power_of_two().clamp(32, THREADS as usize) as u32),
            f.wide.arg(),
            kv.0.arg(),
            kv.1.arg(),
            a.qscale.arg(),
            a.sink_k.arg(),
            a.sink_v.arg(),
            f.ctx.arg(),
            f.pos.arg(),
            slot_at as u32,
            cap,
            dh,
            heads,
            sinks,
            depth,
        );
    }

    /// `x += RMS_post(W_o · ctx)`.
    fn residual_out(&self, f: &GpuFrame, a: &Attn, x: &Buf, d: usize) {
        self.gemv(f, &f.ctx, None, &a.out, &f.proj, d, 0, STORE, false);
        self.norm_row(&f.proj, &a.post, None, x, d, self.cfg.rmsnorm_eps, RMS_ADD);
    }

    /// `x += RMS_post(gelu(RMS_pre(x)·W1 + b1)·W2 + b2)`.
    fn ffn(&self, f: &GpuFrame, n: &FfnG, x: &Buf, d: usize) {
        self.gemv(f, x, Some(&n.pre), &n.l1, &f.wide, n.l1.m.rows, 0, GELU, false);
        self.gemv(f, &f.wide, None, &n.l2, &f.proj, d, 0, STORE, false);
        self.norm_row(&f.proj, &n.post, None, x, d, self.cfg.rmsnorm_eps, RMS_ADD);
    }

    /// The temporal input: the mean of the previous ids' embeddings · √d_t → xt.
    fn embed_prev(&self, f: &GpuFrame) {
        let c = &self.cfg;
        decode::embed_mean::launch(
            &self.gpu.client,
            CubeCount::Static(1, 1, 1),
            CubeDim::new_1d(THREADS),
            f.pos.arg(),
            self.embedding.arg(),
            f.xt.arg(),
            c.num_levels as u32,
            c.temporal.d_model as u32,
            (POS_FORCED_IDS + c.num_levels) as u32,
            self.embed_scale,
        );
    }

    /// The temporal stack on xt.
    fn temporal_layers(&self, f: &GpuFrame) {
        let c = &self.cfg;
        let t = &c.temporal;
        let (d, inner) = (t.d_model, t.inner());
        for (i, layer) in self.temporal.iter().enumerate() {
            let a = &layer.self_attn;
            self.gemv(f, &f.xt, Some(&a.pre), &a.q, &f.wide, 3 * inner, 0, STORE, false);
            self.attend(f, a, &f.self_kv[i], POS_SELF, c.self_attention_window + 1, t.heads, t.head_dim, c.num_sinks, false);
            self.residual_out(f, a, &f.xt, d);

            let a = &layer.cross;
            self.gemv(f, &f.xt, Some(&a.pre), &a.q, &f.wide, inner, 0, STORE, false);
            let kv = a.kv.as_ref().expect("cross-attention has k|v");
            self.gemv(f, &f.inputs, None, kv, &f.wide, 2 * inner, inner, STORE, false);
            self.attend(f, a, &f.cross_kv[i], POS_CROSS, c.cross_attention_window + 1, t.heads, t.head_dim, c.num_sinks, false);
            self.residual_out(f, a, &f.xt, d);

            self.ffn(f, &layer.ffn, &f.xt, d);
        }
    }

    /// The depth stack of the counter's level on its input (xt) → the final LayerNorm's output
    /// in `proj`.
    fn depth_layers(&self, f: &GpuFrame) {
        let c = &self.cfg;
        let s = &c.depth;
        let (d, inner) = (s.d_model, s.inner());
        match &self.adapter {
            Some(a) => self.gemv(f, &f.xt, None, a, &f.xd, d, 0, STORE, false),
            None => self.norm_row(&f.xt, &self.none, None, &f.xd, d, 0.0, COPY),
        }
        for (i, layer) in self.depth.iter().enumerate() {
            let a = &layer.attn;
            self.gemv(f, &f.xd, Some(&a.pre), &a.q, &f.wide, 3 * inner, 0, STORE, false);
            self.attend(f, a, &f.depth_kv[i], POS_LEVEL, c.num_levels, s.heads, s.head_dim, 0, true);
            self.residual_out(f, a, &f.xd, d);
            self.ffn(f, &layer.ffn, &f.xd, d);
        }
        self.norm_row(&f.xd, &self.final_ln_scale, Some(&self.final_ln_bias), &f.proj, d, c.layernorm_eps, LAYER);
    }

    /// The level's logits (into `logits[level]`) and its token.
    fn logits_and_sample(&self, f: &GpuFrame) {
        let c = &self.cfg;
        let n = c.codebook_size;
        self.gemv(f, &f.proj, None, &self.to_logits, &f.logits, n, 0, STORE, true);
        frame::sample_gumbel::launch(
            &self.gpu.client,
            CubeCount::Static(1, 1, 1),
            CubeDim::new_1d(THREADS),
            f.logits.arg(),
            f.inputs.arg(),
            self.embedding.arg(),
            f.tokens.arg(),
            f.xt.arg(),
            f.pos.arg(),
            n as u32,
            c.temporal.d_model as u32,
            c.encoder_width as u32,
            c.num_levels as u32,
            c.num_reserved as u32,
            POS_TOP_K as u32,
            (inputs_len(c) - 1) as u32,
            c.soft_cap,
            crate::sampling::mrt2::large_negative(),
            self.embed_scale,
            POS_FORCED as u32,
        );
    }

    fn whole_frame(&self, f: &GpuFrame) {
        self.embed_prev(f);
        self.temporal_layers(f);
        for _ in 0..self.cfg.num_levels {
            self.depth_layers(f);
            self.logits_and_sample(f);
        }
    }

    /// Runs one frame: `pos` (the counters, [`frame_counters`]) and `inputs` (the encoder vector,
    /// `levels × codebook` Gumbel noise, the temperature; [`inputs_len`]) written, the launches issued (replayed after the
    /// first frame), the tokens read back. With `observe`, the frame runs eagerly and its
    /// temporal input and output and every level's raw logits are read back (and the full-width
    /// logits when `observe.full` is given).
    pub fn run_frame(&self, f: &mut GpuFrame, pos: &[u32], inputs: &[f32], observe: Option<&mut Observed>, tokens: &mut [i32]) -> Result<(), GpuError> {
        // Everything on the stream's own cubecl stream, whichever thread steps it: cubecl picks a
        // stream per thread, and a capture prepared, recorded and replayed on different streams
        // (a rayon pool hands the step to any of its threads) loses the ordering of the replay
        // against its writes and reads.
        let stream = f.stream;
        stream.executes(|| self.run_frame_on_stream(f, pos, inputs, observe, tokens))
    }

    fn run_frame_on_stream(&self, f: &mut GpuFrame, pos: &[u32], inputs: &[f32], observe: Option<&mut Observed>, tokens: &mut [i32]) -> Result<(), GpuError> {
        let c = &self.cfg;
        let g = &self.gpu;
        g.write_u32(&f.pos, pos);
        g.write_f32(&f.inputs, inputs);
        match observe {
            Some(o) => {
                f.graph = None;
                self.embed_prev(f);
                o.temporal_input = g.read_f32(&f.xt)?[..c.temporal.d_model].to_vec();
                self.temporal_layers(f);
                o.temporal_output = g.read_f32(&f.xt)?[..c.temporal.d_model].to_vec();
                let vocab = c.logits_width();
                if o.full.is_some() && f.full.is_none() {
                    f.full = Some(g.scratch(vocab));
                }
                for level in 0..c.num_levels {
                    self.depth_layers(f);
                    if let (Some(full), Some(buf)) = (o.full.as_mut(), f.full.as_ref()) {
                        // All rows of the level's input (levels = 1: the plain product).
                        self.gemv(f, &f.proj, None, &self.to_logits, buf, vocab, 0, STORE, false);
                        full[level * vocab..(level + 1) * vocab].copy_from_slice(&g.read_f32(buf)?[..vocab]);
                    }
                    self.logits_and_sample(f);
                }
                o.raw_valid_logits = g.read_f32(&f.logits)?;
            }
            None => {
                let replay = self.replay.load(Ordering::Relaxed) && f.recordable;
                if replay && f.graph.is_none() && f.frames >= 1 {
                    // Frames before this one were the warm-up (kernels compiled, pools filled).
                    let graph = g.record(&|| self.whole_frame(f));
                    f.recordable = graph.is_some();
                    f.graph = graph;
                }
                match &f.graph {
                    Some(graph) if replay => graph.replay()?,
                    _ => {
                        if replay && f.graph.is_none() {
                            // Before the warm-up frame; refused where there are no graphs.
                            let _ = g.client.graph_prepare();
                        }
                        self.whole_frame(f);
                    }
                }
            }
        }
        f.frames += 1;
        let ids = g.read_u32(&f.tokens)?;
        for (t, &id) in tokens.iter_mut().zip(&ids) {
            *t = id as i32;
        }
        Ok(())
    }
}

/// What an observed frame reads back.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    pub temporal_input: Vec<f32>,
    pub temporal_output: Vec<f32>,
    /// `[levels, codebook]`.
    pub raw_valid_logits: Vec<f32>,
    /// `[levels, logits_width]` when asked for (`Some` of that size).
    pub full: Option<Vec<f32>>,
}

/// The device state of one stream: counters, inputs, tokens, step rows, the temporal rings and
/// the depth cache, and the recorded frame.
pub struct GpuFrame {
    gpu: Gpu,
    /// The cubecl stream every operation on this state goes to (the creating thread's).
    stream: StreamId,
    pos: Buf,
    inputs: Buf,
    tokens: Buf,
    xt: Buf,
    xd: Buf,
    wide: Buf,
    ctx: Buf,
    proj: Buf,
    logits: Buf,
    full: Option<Buf>,
    self_kv: Vec<(Buf, Buf)>,
    cross_kv: Vec<(Buf, Buf)>,
    depth_kv: Vec<(Buf, Buf)>,
    graph: Option<Graph>,
    /// False once a recording failed (the backend has no graphs): frames then run eagerly.
    recordable: bool,
    /// Frames run on this state (the first is the warm-up; the second is recorded).
    frames: u64,
}

impl std::fmt::Debug for GpuFrame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuFrame").field("frames", &self.frames).field("recorded", &self.graph.is_some()).finish_non_exhaustive()
    }
}

impl GpuFrame {
    /// Whether a recorded frame is kept for replay.
    pub fn recorded(&self) -> bool {
        self.graph.is_some()
    }

    /// Reads temporal layer `layer`'s rings back: self keys, self values, cross keys, cross
    /// values, each `[cap, inner]` in slot order (the host rings' layout).
    pub fn read_rings(&self, layer: usize) -> Result<[Vec<f32>; 4], GpuError> {
        let g = &self.gpu;
        let (s, x) = (&self.self_kv[layer], &self.cross_kv[layer]);
        self.stream.executes(|| Ok([g.read_f32(&s.0)?, g.read_f32(&s.1)?, g.read_f32(&x.0)?, g.read_f32(&x.1)?]))
    }

    /// Writes the start of temporal layer `layer`'s rings (restoring a snapshot), same order.
    pub fn write_rings(&self, layer: usize, rings: [&[f32]; 4]) {
        let (s, x) = (&self.self_kv[layer], &self.cross_kv[layer]);
        self.stream.executes(|| {
            for (buf, v) in [&s.0, &s.1, &x.0, &x.1].into_iter().zip(rings) {
                if !v.is_empty() {
                    self.gpu.write_f32(buf, v);
                }
            }
        })
    }
}

/// Counters of one frame for [`Mrt2GpuDecoder::run_frame`]: ring slots and fill counts after
/// this frame's push, the forced ids (if any) and the previous frame's ids.
#[allow(clippy::too_many_arguments)]
pub fn frame_counters(cfg: &Mrt2Config, self_ring: (usize, usize), cross_ring: (usize, usize), top_k: usize, forced: Option<&[i32]>, prev: &[i32], out: &mut Vec<u32>) {
    out.clear();
    let top_k = top_k.min(u32::MAX as usize) as u32;
    out.extend([0, self_ring.0 as u32, self_ring.1 as u32, cross_ring.0 as u32, cross_ring.1 as u32, top_k, u32::from(forced.is_some())]);
    match forced {
        Some(f) => out.extend(f.iter().map(|&id| id as u32)),
        None => out.extend(std::iter::repeat_n(0, cfg.num_levels)),
    }
    out.extend(prev.iter().map(|&id| id as u32));
    debug_assert_eq!(out.len(), POS_FORCED_IDS + 2 * cfg.num_levels);
    debug_assert_eq!((POS_LEVEL, POS_TOP_K, POS_FORCED), (0, 5, 6));
}

/// Values of a frame's `inputs` upload: the encoder vector, the noise of every level, the
/// temperature (last).
pub fn inputs_len(c: &Mrt2Config) -> usize {
    c.encoder_width + c.num_levels * c.codebook_size + 1
}
