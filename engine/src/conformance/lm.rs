//! The LM ladder of `shared/fixtures/lm/*/README.md`:
//! checkpoint → encoder ids → encoder → teacher-forced stacks and logits → the same logits through
//! the incremental path → guided logits of frame 0 and the top-8 of every step → the greedy chunk.

use std::path::Path;
use std::time::Instant;

use burn::tensor::{Int, Tensor, TensorData};

use crate::Target;
use serde_json::Value;

use super::{compare, fixture_err, read_f32, read_i32, ConformanceError, Report};
use crate::formats::zarr::T5xCheckpoint;
use crate::v1::lm::weights::HostWeights;
use crate::v1::lm::{Depthformer, LmConfig, LmOptions, SamplingParams};
use crate::v1::system::ids::encoder_ids;

/// Tolerances stated in the LM fixture README ("Suggested tolerances for a float32 port").
pub const ATOL_ACTIVATIONS: f64 = 1e-4;
pub const RTOL_ACTIVATIONS: f64 = 1e-4;
pub const ATOL_GUIDED: f64 = 5e-4;

fn host(t: Tensor<3>) -> Vec<f32> {
    t.into_data().try_into_vec::<f32>().unwrap_or_else(|e| panic!("float tensor readback failed: {e:?}"))
}

pub fn run(dir: &Path, json: &Value, target: &Target) -> Result<Report, ConformanceError> {
    let device = &target.device;
    let mut report = Report { fixture: dir.to_path_buf(), checks: Vec::new() };
    let config = LmConfig::from_json_file(&dir.join("config.json"))?;
    let (vocab, levels) = (config.vocab_size, config.num_levels);

    // 1. Checkpoint reader: every tensor, shapes and chunking as the set documents them.
    let ckpt_dir = dir.join("checkpoint");
    let started = Instant::now();
    let ckpt = T5xCheckpoint::open(&ckpt_dir).map_err(crate::v1::lm::LmError::from)?;
    let per_tensor = json.pointer("/checkpoint_chunking/per_tensor").and_then(Value::as_object);
    let mut mismatches = Vec::new();
    if let Some(per_tensor) = per_tensor {
        for (name, spec) in per_tensor {
            let want = |k: &str| -> Vec<usize> {
                spec.get(k).and_then(Value::as_array).map(|a| a.iter().filter_map(Value::as_u64).map(|v| v as usize).collect()).unwrap_or_default()
            };
            match ckpt.meta(name) {
                Some(m) if m.shape == want("shape") && m.chunks == want("chunks") => {}
                Some(m) => mismatches.push(format!("{name}: shape {:?} chunks {:?}", m.shape, m.chunks)),
                None => mismatches.push(format!("{name}: missing")),
            }
        }
    }
    let weights = HostWeights::from_t5x(&ckpt_dir, &config)?;
    let expected_tensors = json.get("num_tensors").and_then(Value::as_u64).map(|n| n as usize);
    let params: usize = ckpt.names().filter_map(|n| ckpt.meta(n)).map(|m| m.shape.iter().product::<usize>()).sum();
    let count_ok = expected_tensors.is_none_or(|n| n == ckpt.len()) && params == config.param_count();
    report.push(
        "checkpoint: tensors, shapes, chunks",
        0.0,
        "exact",
        mismatches.is_empty() && count_ok && per_tensor.is_some(),
        format!(
            "{} tensors, {params} params, read in {:.2}s{}",
            ckpt.len(),
            started.elapsed().as_secs_f64(),
            if mismatches.is_empty() { String::new() } else { format!("; mismatches: {mismatches:?}") }
        ),
    );
    let model = Depthformer::from_weights(config.clone(), weights, target)?;

    // 2. Encoder ids from the state arrays (pure id arithmetic).
    let context = read_i32(dir, "context_tokens.npy")?;
    let style = read_i32(dir, "style_tokens.npy")?;
    let want_ids = read_i32(dir, "encoder_ids.npy")?;
    let stored_levels = *context.shape.last().unwrap_or(&0);
    let ids = encoder_ids(&config, &context.data, stored_levels, Some(&style.data))
        .map_err(|e| fixture_err(dir, "context_tokens.npy", e.to_string()))?;
    let id_diff = ids.iter().zip(&want_ids.data).filter(|(a, b)| a != b).count() + ids.len().abs_diff(want_ids.data.len());
    report.push("encoder ids", id_diff as f64, "exact", id_diff == 0, format!("{} ids, {id_diff} differ", ids.len()));

    // 3. Encoder output.
    let s = config.encoder_len();
    let started = Instant::now();
    let encoded = model.encode(model.ids_tensor(&want_ids.data, 2, s));
    let want = read_f32(dir, "encoder_out.npy")?;
    let (diff, ok) = compare(&host(encoded.clone()), &want.data, ATOL_ACTIVATIONS, RTOL_ACTIVATIONS);
    report.push("encoder_out", diff, "atol 1e-4 rtol 1e-4", ok, format!("{:.0} ms", started.elapsed().as_secs_f64() * 1e3));

    // 4. Teacher-forced decoder on the documented rows.
    let rows: Vec<i32> = json
        .get("teacher_rows")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_i64).map(|v| v as i32).collect())
        .unwrap_or_else(|| vec![0, 1]);
    let targets = read_i32(dir, "teacher_targets.npy")?;
    let (r, n) = match targets.shape[..] {
        [r, n] => (r, n),
        _ => return Err(fixture_err(dir, "teacher_targets.npy", format!("expected 2-D, shape {:?}", targets.shape))),
    };
    if r != rows.len() || n % levels != 0 || n / levels > config.chunk_frames || rows.iter().any(|&i| !(0..2).contains(&i)) {
        return Err(fixture_err(dir, "teacher_targets.npy", format!("shape {:?} vs teacher_rows {rows:?}", targets.shape)));
    }
    let frames = n / levels;
    let row_index: Tensor<1, Int> = Tensor::from_data(TensorData::new(rows.clone(), [r]), device);
    let enc_rows = encoded.clone().select(0, row_index);
    let started = Instant::now();
    let out = model.teacher_forced(enc_rows.clone(), model.ids_tensor(&targets.data, r, n));
    let elapsed = started.elapsed().as_secs_f64() * 1e3;
    for (name, actual) in [("teacher_temporal_out", out.temporal), ("teacher_depth_out", out.depth)] {
        let want = read_f32(dir, &format!("{name}.npy"))?;
        let (diff, ok) = compare(&host(actual), &want.data, ATOL_ACTIVATIONS, RTOL_ACTIVATIONS);
        report.push(name, diff, "atol 1e-4 rtol 1e-4", ok, "");
    }
    let teacher_logits = read_f32(dir, "teacher_logits.npy")?;
    let (diff, ok) = compare(&host(out.logits), &teacher_logits.data, ATOL_ACTIVATIONS, RTOL_ACTIVATIONS);
    report.push("teacher_logits", diff, "atol 1e-4 rtol 1e-4", ok, format!("{r} rows × {n} steps, {elapsed:.0} ms"));

    // 5. The same logits through the incremental path the decode loop runs (host kernels on the
    // CPU, burn steps elsewhere): KV caches, one position per step.
    let started = Instant::now();
    let mut state = model.begin_chunk(enc_rows)?;
    let mut incremental = vec![0f32; r * n * vocab];
    let mut logits = Vec::new();
    for t in 0..frames {
        let prev: Option<Vec<i32>> =
            (t > 0).then(|| (0..r).flat_map(|i| targets.data[i * n + (t - 1) * levels..i * n + t * levels].to_vec()).collect());
        model.step_frame(&mut state, prev.as_deref())?;
        for q in 0..levels {
            let step = t * levels + q;
            let prev: Option<Vec<i32>> = (q > 0).then(|| (0..r).map(|i| targets.data[i * n + step - 1]).collect());
            model.step_level(&mut state, q, prev.as_deref(), &mut logits)?;
            for i in 0..r {
                incremental[(i * n + step) * vocab..(i * n + step + 1) * vocab].copy_from_slice(&logits[i * vocab..(i + 1) * vocab]);
            }
        }
    }
    let (diff, ok) = compare(&incremental, &teacher_logits.data, ATOL_ACTIVATIONS, RTOL_ACTIVATIONS);
    report.push(
        "incremental logits vs teacher_logits",
        diff,
        "atol 1e-4 rtol 1e-4",
        ok,
        format!("{:.0} ms", started.elapsed().as_secs_f64() * 1e3),
    );

    // 6. Greedy CFG chunk: guided logits of frame 0, top-8 of every step, tokens.
    let w = json.get("cfg_guidance_weight").and_then(Value::as_f64).unwrap_or(5.0) as f32;
    let params = SamplingParams { temperature: 1.1, top_k: 1, guidance_weight: w, seed: 0 };
    let first = read_f32(dir, "greedy_logits_first_frame.npy")?;
    let topk_ids = read_i32(dir, "greedy_topk_ids.npy")?;
    let topk_logits = read_f32(dir, "greedy_topk_logits.npy")?;
    let k = *topk_ids.shape.last().unwrap_or(&0);
    let steps_expected = config.chunk_tokens();
    if k == 0 || k > vocab || topk_ids.data.len() != steps_expected * k || topk_logits.data.len() != topk_ids.data.len() {
        return Err(fixture_err(dir, "greedy_topk_ids.npy", format!("shape {:?} does not hold {steps_expected} steps", topk_ids.shape)));
    }
    if let Some(bad) = topk_ids.data.iter().find(|&&i| i < 0 || i as usize >= vocab) {
        return Err(fixture_err(dir, "greedy_topk_ids.npy", format!("id {bad} outside the vocabulary ({vocab})")));
    }
    let mut first_frame = Vec::with_capacity(levels * vocab);
    let mut topk_diff = 0f64;
    let mut topk_ok = true;
    let mut id_agree = 0usize;
    let started = Instant::now();
    let tokens = {
        let mut observe = |step: usize, guided: &[f32]| {
            if step < levels {
                first_frame.extend_from_slice(guided);
            }
            let ids = &topk_ids.data[step * k..(step + 1) * k];
            let vals = &topk_logits.data[step * k..(step + 1) * k];
            let ours: Vec<f32> = ids.iter().map(|&i| guided[i as usize]).collect();
            let (dmax, ok) = compare(&ours, vals, ATOL_GUIDED, 0.0);
            topk_diff = topk_diff.max(dmax);
            topk_ok &= ok;
            let mut order: Vec<usize> = (0..guided.len()).collect();
            order.select_nth_unstable_by(k - 1, |&a, &b| guided[b].total_cmp(&guided[a]));
            order.truncate(k);
            id_agree += ids.iter().filter(|&&i| order.contains(&(i as usize))).count();
        };
        model.generate_tokens(&want_ids.data, &params, 0, Some(&mut observe), None)?
    };
    let chunk_s = started.elapsed().as_secs_f64();
    let (diff, ok) = compare(&first_frame, &first.data, ATOL_GUIDED, 0.0);
    report.push("greedy_logits_first_frame (guided)", diff, "atol 5e-4", ok, "");
    let steps = tokens.len();
    report.push(
        "greedy_topk_logits (guided, every step)",
        topk_diff,
        "atol 5e-4",
        topk_ok,
        format!("top-{k} id sets agree on {id_agree}/{}", steps * k),
    );
    let want_tokens = read_i32(dir, "greedy_tokens.npy")?;
    let differ = tokens.iter().zip(&want_tokens.data).filter(|(a, b)| a != b).count() + tokens.len().abs_diff(want_tokens.data.len());
    let first_bad = tokens.iter().zip(&want_tokens.data).position(|(a, b)| a != b);
    report.push(
        "greedy_tokens",
        differ as f64,
        "exact",
        differ == 0,
        format!(
            "{}/{} equal, chunk in {chunk_s:.2}s{}",
            steps - differ.min(steps),
            want_tokens.data.len(),
            first_bad.map(|i| format!(", first difference at step {i}")).unwrap_or_default()
        ),
    );
    Ok(report)
}

/// How far a speed option moves the greedy chunk of an LM fixture from the reference.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Agreement {
    pub fixture: String,
    pub options: LmOptions,
    /// Greedy tokens equal to the fixture's (f32 reference) at the same step.
    pub tokens_equal: usize,
    pub tokens: usize,
    /// First step whose token differs (every later step is conditioned on a different past).
    pub first_difference: Option<usize>,
    /// Max |guided logit − reference| over the steps of frame 0 up to the first differing token
    /// (their inputs are still the reference's), on the ids the option computes.
    pub logits_max_diff: f64,
    /// Reference tokens that lie in their level's codebook range (the only ids `--depth-logits
    /// level` can draw; a random-weight fixture does not respect levels).
    pub reference_in_level: usize,
}

impl std::fmt::Display for Agreement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: weights {}, depth logits {}: greedy tokens {}/{} equal to the reference, first difference {}, guided logits max |diff| {:.2e} before it; {}/{} reference tokens lie in their level's range",
            self.fixture,
            self.options.precision,
            self.options.depth_logits,
            self.tokens_equal,
            self.tokens,
            self.first_difference.map_or("none".to_owned(), |s| format!("at step {s}")),
            self.logits_max_diff,
            self.reference_in_level,
            self.tokens
        )
    }
}

/// Runs an LM fixture's greedy CFG chunk with `options` and compares it with the reference
/// tokens and frame-0 logits (informative: conformance itself always runs the exact path).
pub fn agreement(dir: &Path, target: &Target, options: LmOptions) -> Result<Agreement, ConformanceError> {
    let json: Value = {
        let path = dir.join("config.json");
        let text = std::fs::read_to_string(&path).map_err(|e| fixture_err(dir, "config.json", e.to_string()))?;
        serde_json::from_str(&text).map_err(|e| fixture_err(dir, "config.json", e.to_string()))?
    };
    let config = LmConfig::from_json_file(&dir.join("config.json"))?;
    let weights = HostWeights::from_t5x(&dir.join("checkpoint"), &config)?;
    let model = Depthformer::from_weights_with(config.clone(), weights, target, options)?;
    let want_ids = read_i32(dir, "encoder_ids.npy")?;
    let first = read_f32(dir, "greedy_logits_first_frame.npy")?;
    let want_tokens = read_i32(dir, "greedy_tokens.npy")?;
    let w = json.get("cfg_guidance_weight").and_then(Value::as_f64).unwrap_or(5.0) as f32;
    let params = SamplingParams { temperature: 1.1, top_k: 1, guidance_weight: w, seed: 0 };
    let (vocab, levels) = (config.vocab_size, config.num_levels);
    let mut frame0_diffs = Vec::with_capacity(levels);
    let tokens = {
        let mut observe = |step: usize, guided: &[f32]| {
            if step < levels {
                let rows = model.logit_rows(step);
                let want = &first.data[step * vocab + rows.start..step * vocab + rows.end];
                frame0_diffs.push(compare(guided, want, 0.0, 0.0).0);
            }
        };
        model.generate_tokens(&want_ids.data, &params, 0, Some(&mut observe), None)?
    };
    let tokens_equal = tokens.iter().zip(&want_tokens.data).filter(|(a, b)| a == b).count();
    let first_difference = tokens.iter().zip(&want_tokens.data).position(|(a, b)| a != b);
    let last = first_difference.unwrap_or(levels).min(levels - 1);
    let logits_max_diff = frame0_diffs.iter().take(last + 1).fold(0f64, |m, &d| m.max(d));
    let reference_in_level =
        want_tokens.data.iter().enumerate().filter(|&(i, &id)| (id as usize).wrapping_sub(config.codec_offset + (i % levels) * config.codebook_size) < config.codebook_size).count();
    Ok(Agreement {
        fixture: dir.display().to_string(),
        options,
        tokens_equal,
        tokens: tokens.len(),
        first_difference,
        logits_max_diff,
        reference_in_level,
    })
}
