//! The MRT2 ladder of `shared/fixtures/mrt2/*/README.md` ("Suggested ladder"): weights →
//! conditioning tokens and guidance bins → conditioning encoder → teacher-forced frames →
//! greedy streaming → the greedy codes decoded frame by frame into int16 audio → sampled
//! streaming (threefry key chain, Gumbel noise, tokens).
//!
//! Every size comes from the set's `config.json`; the tolerances are its `suggested_tolerances`
//! (tokens, codes and keys exact, audio in int16 LSB). All rungs run the host step (MRT2 has no
//! burn path); the codec is the checkpoint's decode-only SpectroStream on the host decoder,
//! streamed with [`DecoderStream`] as the reference system streams it (README step 6).

use std::path::Path;
use std::time::Instant;

use serde_json::Value;

use super::{compare, fixture_err, read_f32, read_i32, ConformanceError, Report};
use crate::codec::stream::to_int16;
use crate::codec::{Codec, CodecConfig, CodecWeights, DecoderStream};
use crate::formats::safetensors;
use crate::mrt2::conditioning::{cfg_bin_drums, cfg_bin_musiccoca_notes, encode_frame, EncoderScratch};
use crate::mrt2::model::{soft_cap, token_to_code};
use crate::mrt2::weights::{CODEC_PREFIX, LM_PREFIX};
use crate::mrt2::{FrameState, Mrt2Config, Mrt2Model, Mrt2Weights};
use crate::sampling::mrt2::{fill_gumbel, Key, SamplingParams};

/// Gumbel noise against the set's JAX draw: JAX's and libm's `log` differ by up to 1 ulp, twice
/// (`−log(−log u)`); 4e-6 is 2 ulp at |g| ≈ 16, the largest noise a float32 uniform gives. The
/// README measures 9.5e-7 for its numpy re-implementation.
pub const ATOL_GUMBEL: f64 = 4e-6;

/// The `suggested_tolerances` of a set's `config.json`.
struct Tolerances {
    encoder: f64,
    temporal: f64,
    logits: f64,
    audio_lsb: f64,
}

fn read_i16(dir: &Path, name: &str) -> Result<crate::formats::npy::NpyArray<i16>, ConformanceError> {
    let p = dir.join(name);
    crate::formats::npy::read_i16(&p).map_err(|e| ConformanceError::Fixture { path: p, reason: e.to_string() })
}

fn read_u32(dir: &Path, name: &str) -> Result<crate::formats::npy::NpyArray<u32>, ConformanceError> {
    let p = dir.join(name);
    crate::formats::npy::read_u32(&p).map_err(|e| ConformanceError::Fixture { path: p, reason: e.to_string() })
}

/// What a streaming run records, frame after frame.
#[derive(Default)]
struct Run {
    temporal_in: Vec<f32>,
    temporal_out: Vec<f32>,
    raw_valid: Vec<f32>,
    /// Full-width raw logits of the first `full_frames` frames.
    raw_full: Vec<f32>,
    tokens: Vec<i32>,
    step_keys: Vec<u32>,
}

struct Stream<'a> {
    model: &'a Mrt2Model,
    cond_tokens: &'a [i32],
    frames: usize,
    init_key: Key,
    full_frames: usize,
}

impl Stream<'_> {
    /// Streams every frame from the initial state (`forced`: teacher forcing, `[frames, levels]`).
    fn run(&self, params: SamplingParams, forced: Option<&[i32]>) -> Result<Run, ConformanceError> {
        let (c, levels) = (&self.model.cfg, self.model.cfg.num_levels);
        let cc = c.cond_channels();
        let mut st = FrameState::new(self.model, self.init_key);
        // On a GPU: read back what the rungs compare (the frames then run eagerly).
        st.observe(true);
        let mut run = Run::default();
        for t in 0..self.frames {
            st.keep_full_logits(self.model, t < self.full_frames);
            let forced_t = forced.map(|f| &f[t * levels..(t + 1) * levels]);
            self.model.step(&mut st, &self.cond_tokens[t * cc..(t + 1) * cc], &params, forced_t)?;
            run.temporal_in.extend_from_slice(st.temporal_input());
            run.temporal_out.extend_from_slice(st.temporal_output());
            run.raw_valid.extend_from_slice(st.raw_valid_logits());
            if let Some(full) = st.raw_full_logits() {
                run.raw_full.extend_from_slice(full);
            }
            run.tokens.extend_from_slice(st.tokens());
            run.step_keys.extend(st.step_keys().iter().flatten());
        }
        Ok(run)
    }
}

fn capped(c: &Mrt2Config, x: &[f32]) -> Vec<f32> {
    x.iter().map(|&v| soft_cap(v, c.soft_cap)).collect()
}

/// Number of differing elements (a length difference counts every missing one).
fn mismatches<T: PartialEq>(a: &[T], b: &[T]) -> usize {
    a.iter().zip(b).filter(|(x, y)| x != y).count() + a.len().abs_diff(b.len())
}

impl Report {
    fn push_close(&mut self, name: &str, actual: &[f32], expected: &[f32], atol: f64, note: impl Into<String>) {
        let (diff, ok) = compare(actual, expected, atol, 0.0);
        self.push(name, diff, format!("atol {atol:.2e}"), ok, note);
    }

    fn push_exact<T: PartialEq>(&mut self, name: &str, actual: &[T], expected: &[T], what: &str) {
        let n = mismatches(actual, expected);
        self.push(name, n as f64, "exact", n == 0, format!("{n} of {} {what} differ", expected.len()));
    }
}

pub fn run(dir: &Path, json: &Value, target: &crate::device::Target) -> Result<Report, ConformanceError> {
    let mut report = Report { fixture: dir.to_path_buf(), checks: Vec::new() };
    let cfg =
        Mrt2Config::from_fixture_value(json).map_err(|source| ConformanceError::Mrt2Config { path: dir.join("config.json"), source })?;
    let tol = |k: &str| {
        json.pointer(&format!("/suggested_tolerances/{k}"))
            .and_then(Value::as_f64)
            .ok_or_else(|| fixture_err(dir, "config.json", format!("suggested_tolerances.{k} is missing")))
    };
    let tol = Tolerances {
        encoder: tol("encoder_out_abs")?,
        temporal: tol("temporal_out_abs")?,
        logits: tol("logits_abs")?,
        audio_lsb: tol("audio_int16_abs_lsb")?,
    };
    let codec_config = json
        .get("codec")
        .ok_or_else(|| fixture_err(dir, "config.json", "the codec section is missing".into()))
        .and_then(|c| CodecConfig::from_mrt2_value(c).map_err(|reason| fixture_err(dir, "config.json", format!("codec: {reason}"))))?;

    // 1. Weights: every LM tensor where the loader expects it; the parameter count of the
    // config's shapes equals the file's; the codec's tensors are left to the codec.
    let started = Instant::now();
    let weights_path = dir.join("weights.safetensors");
    let store = safetensors::read(&weights_path).map_err(crate::mrt2::WeightsError::from)?;
    let file_params: usize = store.iter().filter(|(n, _)| n.starts_with(LM_PREFIX)).map(|(_, t)| t.numel()).sum();
    let lm_tensors = store.names().filter(|n| n.starts_with(LM_PREFIX)).count();
    let codec_tensors = store.names().filter(|n| n.starts_with(CODEC_PREFIX)).count();
    // The codec's tensors go to the codec (decode-only), before the LM loader takes the store.
    let codec_weights = CodecWeights::from_mrt2_store(&store, &codec_config)?;
    let weights = Mrt2Weights::from_store(store, &cfg)?;
    let counts_ok = file_params as u64 == cfg.param_count();
    report.push(
        "weights: LM tensors, shapes, parameter count",
        (file_params as f64 - cfg.param_count() as f64).abs(),
        "exact",
        counts_ok,
        format!(
            "{lm_tensors} LM tensors, {file_params} params (config: {}), {codec_tensors} codec tensors (to the codec), {:.0} ms",
            cfg.param_count(),
            started.elapsed().as_secs_f64() * 1e3
        ),
    );
    let mut model = Mrt2Model::new(cfg.clone(), weights);
    if target.compute == crate::device::Compute::Gpu {
        model = model.on_device(&target.device)?;
    }
    let c = &model.cfg;
    let cc = c.cond_channels();

    // 2. Conditioning tokens: the shift and the guidance bins (float64, half to even).
    let raw = read_i32(dir, "cond_raw.npy")?;
    let tokens = read_i32(dir, "cond_tokens.npy")?;
    let frames = match tokens.shape[..] {
        [f, w] if w == cc => f,
        _ => return Err(fixture_err(dir, "cond_tokens.npy", format!("expected [frames, {cc}], found {:?}", tokens.shape))),
    };
    let shifted: Vec<i32> = raw.data.iter().map(|&v| v + c.token_shift).collect();
    report.push_exact("conditioning: cond_raw + shift = cond_tokens", &shifted, &tokens.data, "tokens");
    let scales = read_f32(dir, "cfg_scales.npy")?;
    if scales.shape != [frames, 3] {
        return Err(fixture_err(dir, "cfg_scales.npy", format!("expected [{frames}, 3], found {:?}", scales.shape)));
    }
    let bins: Vec<i32> = scales
        .data
        .chunks_exact(3)
        .flat_map(|s| [cfg_bin_musiccoca_notes(f64::from(s[0])), cfg_bin_musiccoca_notes(f64::from(s[1])), cfg_bin_drums(f64::from(s[2]))])
        .collect();
    let raw_bins: Vec<i32> = raw.data.chunks_exact(cc).flat_map(|f| f[cc - 3..].to_vec()).collect();
    report.push_exact("conditioning: guidance bins from cfg_scales", &bins, &raw_bins, "bins");

    // 3. The conditioning encoder, frame by frame.
    let started = Instant::now();
    let mut scratch = EncoderScratch::new(c);
    let mut encoded = vec![0f32; frames * c.encoder_width];
    for (t, out) in encoded.chunks_exact_mut(c.encoder_width).enumerate() {
        encode_frame(c, &model.weights.conditioning, &tokens.data[t * cc..(t + 1) * cc], &mut scratch, out)
            .map_err(crate::mrt2::StepError::from)?;
    }
    let want = read_f32(dir, "encoder_out.npy")?;
    report.push_close(
        "encoder_out",
        &encoded,
        &want.data,
        tol.encoder,
        format!("{frames} frames, {:.1} ms", started.elapsed().as_secs_f64() * 1e3),
    );

    let key = read_u32(dir, "init_rng_key.npy")?;
    let init_key: Key = match key.data[..] {
        [a, b] => [a, b],
        _ => return Err(fixture_err(dir, "init_rng_key.npy", format!("expected 2 values, found shape {:?}", key.shape))),
    };
    let full = read_f32(dir, "tf_logits_raw_full_f0-1.npy")?;
    let stream =
        Stream { model: &model, cond_tokens: &tokens.data, frames, init_key, full_frames: full.shape.first().copied().unwrap_or(0) };

    // 4. Teacher forcing: the depth steps and the next frame consume the fixture's targets.
    let targets = read_i32(dir, "tf_target_tokens.npy")?;
    if targets.shape != [frames, c.num_levels] {
        return Err(fixture_err(dir, "tf_target_tokens.npy", format!("expected [{frames}, {}], found {:?}", c.num_levels, targets.shape)));
    }
    let started = Instant::now();
    let tf = stream.run(SamplingParams::greedy(), Some(&targets.data))?;
    let elapsed = format!("{frames} frames, {:.0} ms", started.elapsed().as_secs_f64() * 1e3);
    report.push_close("teacher-forced: temporal inputs", &tf.temporal_in, &read_f32(dir, "tf_temporal_inputs.npy")?.data, tol.temporal, "");
    report.push_close("teacher-forced: temporal out", &tf.temporal_out, &read_f32(dir, "tf_temporal_out.npy")?.data, tol.temporal, elapsed);
    report.push_close("teacher-forced: raw logits (valid)", &tf.raw_valid, &read_f32(dir, "tf_logits_raw_valid.npy")?.data, tol.logits, "");
    let capped_valid = read_f32(dir, "tf_logits_capped_valid.npy")?;
    report.push_close("teacher-forced: capped logits (valid)", &capped(c, &tf.raw_valid), &capped_valid.data, tol.logits, "");
    let full_note = format!("frames 0..{}", stream.full_frames);
    report.push_close("teacher-forced: raw logits (full width)", &tf.raw_full, &full.data, tol.logits, full_note.clone());
    let capped_full = read_f32(dir, "tf_logits_capped_full_f0-1.npy")?;
    report.push_close("teacher-forced: capped logits (full width)", &capped(c, &tf.raw_full), &capped_full.data, tol.logits, full_note);

    // 5. Greedy streaming (top-k 1, T 1): the state carried frame to frame.
    let started = Instant::now();
    let greedy = stream.run(SamplingParams::greedy(), None)?;
    let elapsed = format!("{frames} frames, {:.0} ms", started.elapsed().as_secs_f64() * 1e3);
    report.push_close("greedy: temporal inputs", &greedy.temporal_in, &read_f32(dir, "greedy_temporal_inputs.npy")?.data, tol.temporal, "");
    report.push_close("greedy: temporal out", &greedy.temporal_out, &read_f32(dir, "greedy_temporal_out.npy")?.data, tol.temporal, elapsed);
    report.push_close("greedy: raw logits (valid)", &greedy.raw_valid, &read_f32(dir, "greedy_logits_raw_valid.npy")?.data, tol.logits, "");
    report.push_exact("greedy: tokens", &greedy.tokens, &read_i32(dir, "greedy_tokens.npy")?.data, "tokens");
    let codes: Vec<i32> = greedy.tokens.iter().map(|&id| token_to_code(c, id)).collect();
    report.push_exact("greedy: codes", &codes, &read_i32(dir, "greedy_codes.npy")?.data, "codes");

    // 5b. The codec step: our greedy codes decoded frame by frame (frame 0 silent, then frame
    // t − 1's audio), converted to int16 as the system does, against the reference stream.
    let codec = Codec::from_weights(codec_config, codec_weights, &crate::Target::host())?;
    let want = read_i16(dir, "greedy_audio_int16.npy")?;
    let spf = codec.samples_per_frame();
    let ch = codec.channels();
    if want.shape != [frames, spf, ch] {
        return Err(fixture_err(dir, "greedy_audio_int16.npy", format!("expected [{frames}, {spf}, {ch}], found {:?}", want.shape)));
    }
    let started = Instant::now();
    let mut decoder = DecoderStream::new(&codec, c.num_levels)?;
    let mut pcm = vec![0i16; frames * spf * ch]; // [frame, sample, channel], the fixture's layout
    for (t, frame_codes) in codes.chunks_exact(c.num_levels).enumerate() {
        let audio = decoder.step(&codec, frame_codes)?;
        for (i, out) in pcm[t * spf * ch..(t + 1) * spf * ch].chunks_exact_mut(ch).enumerate() {
            for (k, o) in out.iter_mut().enumerate() {
                *o = to_int16(audio[k * spf + i]);
            }
        }
    }
    let elapsed = started.elapsed().as_secs_f64() * 1e3;
    let lsb = pcm.iter().zip(&want.data).map(|(&a, &b)| (i32::from(a) - i32::from(b)).abs()).max().unwrap_or(0);
    let silent = pcm[..spf * ch].iter().all(|&v| v == 0);
    let shape_ok = pcm.len() == want.data.len();
    report.push(
        "greedy: streamed audio (int16)",
        f64::from(lsb),
        format!("{} LSB", tol.audio_lsb),
        shape_ok && silent && f64::from(lsb) <= tol.audio_lsb,
        format!("{frames} frames × {spf} × {ch}, frame 0 {}, {elapsed:.0} ms", if silent { "silent" } else { "NOT silent" }),
    );

    // 6. Sampled streaming (the set's temperature and top-k): key chain, noise, tokens.
    let sp = |k: &str| json.pointer(&format!("/sampling/sampled/{k}")).and_then(Value::as_f64);
    let params = match (sp("temperature"), sp("top_k")) {
        (Some(t), Some(k)) => SamplingParams { temperature: t as f32, top_k: k as usize },
        _ => return Err(fixture_err(dir, "config.json", "sampling.sampled.{temperature, top_k} is missing".into())),
    };
    let started = Instant::now();
    let sampled = stream.run(params, None)?;
    let elapsed =
        format!("T {}, top-k {}, {frames} frames, {:.0} ms", params.temperature, params.top_k, started.elapsed().as_secs_f64() * 1e3);
    let want_keys = read_u32(dir, "sampled_step_keys.npy")?;
    report.push_exact("sampled: step keys (threefry, fold_in)", &sampled.step_keys, &want_keys.data, "key words");
    // The noise of the first frames, drawn with the fixture's own keys (one wrong key would
    // otherwise hide the noise check behind the key check).
    let want_noise = read_f32(dir, "sampled_gumbel_valid_f0-1.npy")?;
    let (cb, steps) = (c.codebook_size, want_noise.data.len() / c.codebook_size);
    let mut noise = vec![0f32; steps * cb];
    for (i, out) in noise.chunks_exact_mut(cb).enumerate() {
        let level = i % c.num_levels;
        let key = want_keys.data.get(2 * i..2 * i + 2).map_or([0, 0], |k| [k[0], k[1]]);
        fill_gumbel(key, (c.num_reserved + level * cb) as u64, out);
    }
    report.push_close("sampled: gumbel noise (valid)", &noise, &want_noise.data, ATOL_GUMBEL, format!("{} steps", steps));
    report.push_close(
        "sampled: raw logits (valid)",
        &sampled.raw_valid,
        &read_f32(dir, "sampled_logits_raw_valid.npy")?.data,
        tol.logits,
        "",
    );
    report.push_exact("sampled: tokens", &sampled.tokens, &read_i32(dir, "sampled_tokens.npy")?.data, "tokens");
    if let Some(last) = report.checks.last_mut() {
        last.note = format!("{}; {elapsed}", last.note);
    }
    Ok(report)
}

/// How far a weight precision moves an MRT2 fixture from the reference (informative: conformance
/// always runs f32): the teacher-forced raw logits' largest difference and the fraction of
/// teacher-forced steps whose greedy pick (argmax of the level's window) is unchanged, and the
/// free-running greedy tokens equal to the reference's until the first difference.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Mrt2Agreement {
    pub fixture: String,
    pub precision: String,
    pub tf_logits_max_diff: f64,
    /// Teacher-forced steps whose argmax equals the reference logits' argmax.
    pub tf_argmax_equal: usize,
    pub greedy_tokens_equal: usize,
    pub tokens: usize,
    pub greedy_first_difference: Option<usize>,
}

impl std::fmt::Display for Mrt2Agreement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({} weights): teacher-forced raw logits max |diff| {:.3e}, argmax equal {}/{}; greedy tokens equal {}/{}, first difference {}",
            self.fixture,
            self.precision,
            self.tf_logits_max_diff,
            self.tf_argmax_equal,
            self.tokens,
            self.greedy_tokens_equal,
            self.tokens,
            self.greedy_first_difference.map_or("none".to_owned(), |i| format!("at token {i}"))
        )
    }
}

/// Runs an MRT2 fixture set with its projections in `precision` (see [`Mrt2Agreement`]).
pub fn agreement(dir: &Path, precision: crate::kernels::WeightPrecision) -> Result<Mrt2Agreement, ConformanceError> {
    let (_, json) = super::kind(dir)?;
    let cfg = Mrt2Config::from_fixture_value(&json).map_err(|source| ConformanceError::Mrt2Config { path: dir.join("config.json"), source })?;
    let mut weights = Mrt2Weights::load(&dir.join("weights.safetensors"), &cfg)?;
    weights.set_precision(precision);
    let model = Mrt2Model::new(cfg.clone(), weights);
    let tokens = read_i32(dir, "cond_tokens.npy")?;
    let frames = tokens.shape.first().copied().unwrap_or(0);
    let key = read_u32(dir, "init_rng_key.npy")?;
    let init_key: Key = match key.data[..] {
        [a, b] => [a, b],
        _ => return Err(fixture_err(dir, "init_rng_key.npy", format!("expected 2 values, found shape {:?}", key.shape))),
    };
    let stream = Stream { model: &model, cond_tokens: &tokens.data, frames, init_key, full_frames: 0 };
    let targets = read_i32(dir, "tf_target_tokens.npy")?;
    let tf = stream.run(SamplingParams::greedy(), Some(&targets.data))?;
    let want = read_f32(dir, "tf_logits_raw_valid.npy")?;
    if want.data.len() != tf.raw_valid.len() {
        return Err(fixture_err(dir, "tf_logits_raw_valid.npy", format!("{} values, the run made {}", want.data.len(), tf.raw_valid.len())));
    }
    let tf_logits_max_diff = tf.raw_valid.iter().zip(&want.data).fold(0f64, |m, (a, b)| m.max(f64::from((a - b).abs())));
    let cb = cfg.codebook_size;
    let argmax = |v: &[f32]| crate::sampling::topk::argmax(v);
    let tf_argmax_equal = tf.raw_valid.chunks_exact(cb).zip(want.data.chunks_exact(cb)).filter(|(a, b)| argmax(a) == argmax(b)).count();
    let greedy = stream.run(SamplingParams::greedy(), None)?;
    let want_tokens = read_i32(dir, "greedy_tokens.npy")?;
    let greedy_first_difference = greedy.tokens.iter().zip(&want_tokens.data).position(|(a, b)| a != b);
    Ok(Mrt2Agreement {
        fixture: dir.display().to_string(),
        precision: precision.to_string(),
        tf_logits_max_diff,
        tf_argmax_equal,
        greedy_tokens_equal: greedy.tokens.iter().zip(&want_tokens.data).filter(|(a, b)| a == b).count(),
        tokens: greedy.tokens.len(),
        greedy_first_difference,
    })
}
