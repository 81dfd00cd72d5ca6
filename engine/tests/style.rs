//! MusicCoCa on a tiny random model written in the official file layouts: the burn towers against
//! a direct f64 transcription of the recipe, the style RVQ against brute force (with the
//! string-sorted codebook order), audio clipping, blends and the error paths.

// A direct transcription indexes by design.
#![allow(clippy::needless_range_loop)]

mod common;
use common::reference::{gelu, softmax};
use std::path::PathBuf;

use mrt::style::params::{HostTensor, MusicCocaParams, NormParams, PoolParams, StackParams, TextEmbedding};
use mrt::style::{self, tiny, StyleError, StyleModel};
use mrt::DeviceChoice;

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mrt-style-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn tiny_model(name: &str) -> (PathBuf, StyleModel, MusicCocaParams) {
    let dir = temp_dir(name);
    let paths = tiny::write_tiny(&dir.join("v1"), &dir.join("v2"), 7).unwrap();
    let device = DeviceChoice::Flex.device().unwrap();
    let model = StyleModel::load(&paths, &device).unwrap();
    let params = style::model::read_v1_params(&paths.savedmodel).unwrap();
    (dir, model, params)
}

// ---- an independent f64 transcription of the towers ------------------------------------------

fn ln(x: &[f64], p: &NormParams, l: Option<usize>) -> Vec<f64> {
    let d = x.len();
    let off = l.map_or(0, |l| l * d);
    let mean = x.iter().sum::<f64>() / d as f64;
    let var = x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / d as f64;
    (0..d)
        .map(|i| (x[i] - mean) / (var + 1e-6).sqrt() * (1.0 + f64::from(p.scale.data[off + i])) + f64::from(p.bias.data[off + i]))
        .collect()
}

/// `x [n, d] · w[l] [d, out] + b[l] [out]`.
fn dense(x: &[Vec<f64>], w: &HostTensor, b: &HostTensor, l: usize, out: usize) -> Vec<Vec<f64>> {
    let d = x[0].len();
    x.iter()
        .map(|row| {
            (0..out)
                .map(|j| f64::from(b.data[l * out + j]) + (0..d).map(|i| row[i] * f64::from(w.data[l * d * out + i * out + j])).sum::<f64>())
                .collect()
        })
        .collect()
}

fn stack(mut x: Vec<Vec<f64>>, p: &StackParams) -> Vec<Vec<f64>> {
    let (layers, d, h, dh) = (p.key_w.shape[0], p.key_w.shape[1], p.key_w.shape[2], p.key_w.shape[3]);
    let f = p.ffn1_w.shape[2];
    let n = x.len();
    for l in 0..layers {
        let normed: Vec<Vec<f64>> = x.iter().map(|r| ln(r, &p.attn_norm, Some(l))).collect();
        let q = dense(&normed, &p.query_w, &p.query_b, l, h * dh);
        let k = dense(&normed, &p.key_w, &p.key_b, l, h * dh);
        let v = dense(&normed, &p.value_w, &p.value_b, l, h * dh);
        let mut ctx = vec![vec![0.0; h * dh]; n];
        for head in 0..h {
            for i in 0..n {
                let mut logits: Vec<f64> = (0..n)
                    .map(|j| {
                        let dot: f64 = (0..dh).map(|e| q[i][head * dh + e] * k[j][head * dh + e]).sum::<f64>() / (dh as f64).sqrt();
                        50.0 * (dot / 50.0).tanh()
                    })
                    .collect();
                softmax(&mut logits);
                for e in 0..dh {
                    ctx[i][head * dh + e] = (0..n).map(|j| logits[j] * v[j][head * dh + e]).sum();
                }
            }
        }
        for i in 0..n {
            for o in 0..d {
                let post: f64 = (0..h * dh).map(|c| ctx[i][c] * f64::from(p.post_w.data[l * d * h * dh + o * h * dh + c])).sum();
                x[i][o] += post + f64::from(p.post_b.data[l * d + o]);
            }
        }
        let normed: Vec<Vec<f64>> = x.iter().map(|r| ln(r, &p.ff_norm, Some(l))).collect();
        let hidden: Vec<Vec<f64>> = dense(&normed, &p.ffn1_w, &p.ffn1_b, l, f).into_iter().map(|r| r.into_iter().map(gelu).collect()).collect();
        let out = dense(&hidden, &p.ffn2_w, &p.ffn2_b, l, d);
        for i in 0..n {
            for o in 0..d {
                x[i][o] += out[i][o];
            }
        }
    }
    x
}

fn pool(x: &[Vec<f64>], p: &PoolParams) -> Vec<f64> {
    let (d, h, dp) = (p.key_w.shape[0], p.key_w.shape[1], p.key_w.shape[2]);
    let query = vec![p.query.data.iter().map(|&v| f64::from(v)).collect::<Vec<f64>>()];
    let mut q = dense(&query, &p.query_w, &p.query_b, 0, h * dp).remove(0);
    for (c, qc) in q.iter_mut().enumerate() {
        let s = f64::from(p.per_dim_scale.data[c % dp]);
        *qc *= std::f64::consts::LOG2_E / (dp as f64).sqrt() * (1.0 + s.exp()).ln();
    }
    let k = dense(x, &p.key_w, &p.key_b, 0, h * dp);
    let v = dense(x, &p.value_w, &p.value_b, 0, h * dp);
    let mut ctx = vec![0.0; h * dp];
    for head in 0..h {
        let mut logits: Vec<f64> = (0..x.len()).map(|j| (0..dp).map(|e| q[head * dp + e] * k[j][head * dp + e]).sum()).collect();
        softmax(&mut logits);
        for e in 0..dp {
            ctx[head * dp + e] = (0..x.len()).map(|j| logits[j] * v[j][head * dp + e]).sum();
        }
    }
    let out: Vec<f64> =
        (0..d).map(|o| f64::from(p.post_b.data[o]) + (0..h * dp).map(|c| ctx[c] * f64::from(p.post_w.data[o * h * dp + c])).sum::<f64>()).collect();
    ln(&out, &p.norm, None)
}

fn reference_text(params: &MusicCocaParams, ids: &[i32]) -> Vec<f64> {
    let t = &params.text;
    let TextEmbedding::Softmax(softmax_w) = &t.embedding else { panic!("v1 params have the softmax embedding") };
    let (d, vocab) = (softmax_w.shape[0], softmax_w.shape[1]);
    let half = d / 2;
    let x: Vec<Vec<f64>> = ids
        .iter()
        .enumerate()
        .map(|(pos, &id)| {
            (0..d)
                .map(|c| {
                    let emb = f64::from(softmax_w.data[c * vocab + id as usize]) * (d as f64).sqrt();
                    let i = c % half;
                    let angle = pos as f64 * (-(i as f64) * 10000f64.ln() / (half as f64 - 1.0)).exp();
                    emb + if c < half { angle.sin() } else { angle.cos() }
                })
                .collect()
        })
        .collect();
    let x = stack(x, &t.layers);
    let x: Vec<Vec<f64>> = x.iter().map(|r| ln(r, &t.exit_norm, None)).collect();
    pool(&x, &t.pool)
}

fn reference_audio(params: &MusicCocaParams, mel: &[f32], mel_bins: usize) -> Vec<f64> {
    let a = &params.audio;
    let d = a.patch_w.shape[1];
    let (p, mp) = (16, mel_bins / 16);
    let patches = a.pos_emb.shape[0];
    let x: Vec<Vec<f64>> = (0..patches)
        .map(|n| {
            let (tp, m) = (n / mp, n % mp);
            let patch: Vec<f64> = (0..p * p).map(|c| f64::from(mel[(tp * p + c / p) * mel_bins + m * p + c % p])).collect();
            (0..d)
                .map(|o| {
                    f64::from(a.patch_b.data[o])
                        + f64::from(a.pos_emb.data[n * d + o])
                        + (0..p * p).map(|c| patch[c] * f64::from(a.patch_w.data[c * d + o])).sum::<f64>()
                })
                .collect()
        })
        .collect();
    let x = stack(x, &a.layers);
    let x: Vec<Vec<f64>> = x.iter().map(|r| ln(r, &a.exit_norm, None)).collect();
    pool(&x, &a.pool)
}

fn max_rel(ours: &[f32], want: &[f64]) -> f64 {
    let scale = want.iter().map(|v| v.abs()).fold(0.0, f64::max);
    ours.iter().zip(want).map(|(&a, &b)| (f64::from(a) - b).abs()).fold(0.0, f64::max) / scale
}

#[test]
fn text_tower_matches_the_direct_transcription() {
    let (dir, model, params) = tiny_model("text");
    for prompt in ["funky bass, dusty drums", "", "Ambient PIANO 123 ünïcode"] {
        let ours = model.embed_text(prompt).unwrap();
        assert_eq!(ours.len(), 32);
        let (ids, pad) = model.tokenizer().musiccoca_ids(prompt);
        let real = pad.iter().filter(|&&p| p == 0.0).count();
        let want = reference_text(&params, &ids[..real]);
        let err = max_rel(&ours, &want);
        assert!(err < 1e-4, "{prompt:?}: max relative error {err}");
    }
    // Deterministic and prompt-dependent.
    assert_eq!(model.embed_text("jazz").unwrap(), model.embed_text("JAZZ").unwrap());
    assert_ne!(model.embed_text("jazz").unwrap(), model.embed_text("techno").unwrap());
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn audio_tower_matches_the_direct_transcription() {
    let (dir, model, params) = tiny_model("audio");
    let fe = style::model::read_front_end(&dir.join("v2").join(tiny::PREPROCESSOR)).unwrap();
    let mut rng = mrt::sampling::rng::SplitMix64::new(3);
    let clip: Vec<f32> = (0..160_000).map(|n| (0.2 * (n as f64 * 0.05).sin() + 0.1 * rng.next_normal()) as f32).collect();
    let mel = fe.compute(&clip);
    let want = reference_audio(&params, &mel, 128);
    let ours = model.embed_audio_16k(&clip, None).unwrap();
    let err = max_rel(&ours, &want);
    assert!(err < 1e-4, "max relative error {err}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn audio_clipping_follows_the_reference() {
    let (dir, model, _) = tiny_model("clips");
    let mut rng = mrt::sampling::rng::SplitMix64::new(9);
    let signal: Vec<f32> = (0..400_000).map(|_| (0.1 * rng.next_normal()) as f32).collect();
    let clip = |from: usize| -> Vec<f32> {
        let mut c: Vec<f32> = signal[from..(from + 160_000).min(signal.len())].to_vec();
        c.resize(160_000, 0.0);
        c
    };
    let one = |c: &[f32]| model.embed_audio_16k(c, None).unwrap();
    // 25 s, hop 10 s: clips at 0, 10, 20 s, the last zero-padded, averaged.
    let parts = [one(&clip(0)), one(&clip(160_000)), one(&clip(320_000))];
    let mean: Vec<f32> = (0..32).map(|i| parts.iter().map(|p| p[i]).sum::<f32>() / 3.0).collect();
    let got = model.embed_audio_16k(&signal, None).unwrap();
    assert!(got.iter().zip(&mean).all(|(a, b)| (a - b).abs() < 1e-5), "{got:?} vs {mean:?}");
    // Fed in odd pieces, the same.
    let mut acc = style::ClipAccumulator::new(&model, None).unwrap();
    for piece in signal.chunks(12_345) {
        acc.push(piece).unwrap();
    }
    assert_eq!(acc.finish().unwrap(), got);
    // Hop 5 s over 25 s: 5 clips (0, 5, 10, 15, 20 s).
    let parts: Vec<Vec<f32>> = [0, 80_000, 160_000, 240_000, 320_000].iter().map(|&s| one(&clip(s))).collect();
    let got = model.embed_audio_16k(&signal, Some(80_000)).unwrap();
    for i in 0..32 {
        let m = parts.iter().map(|p| p[i]).sum::<f32>() / 5.0;
        assert!((got[i] - m).abs() < 1e-5);
    }
    // 0.1 s: one zero-padded clip. Silence: a finite embedding.
    let short = &signal[..1600];
    assert_eq!(model.embed_audio_16k(short, None).unwrap(), one(&clip_of(short)));
    assert!(model.embed_audio_16k(&vec![0.0; 160_000], None).unwrap().iter().all(|v| v.is_finite()));
    // Empty and NaN audio are errors that say what is wrong.
    assert!(model.embed_audio_16k(&[], None).unwrap_err().to_string().contains("no audio samples"));
    let mut bad = signal[..20_000].to_vec();
    bad[16_000] = f32::NAN;
    let err = model.embed_audio_16k(&bad, None).unwrap_err().to_string();
    assert!(err.contains("sample 16000") && err.contains("1.000 s"), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}

fn clip_of(s: &[f32]) -> Vec<f32> {
    let mut c = s.to_vec();
    c.resize(160_000, 0.0);
    c
}

#[test]
fn audio_files_stream_and_errors_name_the_file() {
    let (dir, model, _) = tiny_model("files");
    let mut rng = mrt::sampling::rng::SplitMix64::new(4);
    let signal: Vec<f32> = (0..200_000).map(|_| (0.1 * rng.next_normal()) as f32).collect();
    // A 16 kHz stereo file with identical channels equals the in-memory mono signal.
    let wav = dir.join("ref.wav");
    let spec = hound::WavSpec { channels: 2, sample_rate: 16_000, bits_per_sample: 32, sample_format: hound::SampleFormat::Float };
    let mut w = hound::WavWriter::create(&wav, spec).unwrap();
    for &s in &signal {
        w.write_sample(s).unwrap();
        w.write_sample(s).unwrap();
    }
    w.finalize().unwrap();
    let from_file = style::audio::embed_file(&model, &wav, None).unwrap();
    let direct = model.embed_audio_16k(&signal, None).unwrap();
    assert!(from_file.iter().zip(&direct).all(|(a, b)| (a - b).abs() < 1e-6));
    // At 48 kHz the resampled file gives nearly the same embedding.
    let wav48 = dir.join("ref48.wav");
    let mut w = hound::WavWriter::create(&wav48, hound::WavSpec { channels: 1, sample_rate: 48_000, ..spec }).unwrap();
    for i in 0..600_000 {
        w.write_sample((0.3 * (i as f64 * 2.0 * std::f64::consts::PI * 220.0 / 48_000.0).sin()) as f32).unwrap();
    }
    w.finalize().unwrap();
    let e48 = style::audio::embed_file(&model, &wav48, None).unwrap();
    let tone: Vec<f32> = (0..200_000).map(|i| (0.3 * (i as f64 * 2.0 * std::f64::consts::PI * 220.0 / 16_000.0).sin()) as f32).collect();
    let e16 = model.embed_audio_16k(&tone, None).unwrap();
    let cos = e48.iter().zip(&e16).map(|(a, b)| a * b).sum::<f32>()
        / (e48.iter().map(|a| a * a).sum::<f32>().sqrt() * e16.iter().map(|a| a * a).sum::<f32>().sqrt());
    assert!(cos > 0.999, "cosine {cos}");

    let missing = dir.join("missing.wav");
    let err = style::audio::embed_file(&model, &missing, None).unwrap_err().to_string();
    assert!(err.contains("missing.wav"), "{err}");
    let junk = dir.join("junk.wav");
    std::fs::write(&junk, b"definitely not audio").unwrap();
    let err = style::audio::embed_file(&model, &junk, None).unwrap_err().to_string();
    assert!(err.contains("junk.wav"), "{err}");
    let nan = dir.join("nan.wav");
    let mut w = hound::WavWriter::create(&nan, hound::WavSpec { channels: 1, ..spec }).unwrap();
    for i in 0..1000 {
        w.write_sample(if i == 500 { f32::NAN } else { 0.0 }).unwrap();
    }
    w.finalize().unwrap();
    let err = style::audio::embed_file(&model, &nan, None).unwrap_err().to_string();
    assert!(err.contains("nan.wav") && err.contains("500"), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn style_tokens_are_brute_force_rvq_with_the_string_sorted_codebooks() {
    let (dir, model, _) = tiny_model("rvq");
    let quant = dir.join("v1").join(tiny::QUANTIZER);
    let bundle = mrt::formats::tfbundle::Bundle::open(&quant).unwrap();
    // Level k lives in saved variable [0,1,4,5,6,7,8,9,10,11,2,3][k].
    let order = [0, 1, 4, 5, 6, 7, 8, 9, 10, 11, 2, 3];
    for (k, &v) in order.iter().enumerate() {
        assert_eq!(style::model::saved_codebook_index(k, 12), v);
    }
    let books: Vec<Vec<f32>> =
        order.iter().map(|v| bundle.read_f32(&format!("variables/{v}/.ATTRIBUTES/VARIABLE_VALUE")).unwrap()).collect();
    let emb = model.embed_text("funk bass").unwrap();
    let tokens = model.tokenize(&emb).unwrap();
    assert_eq!(tokens.len(), 12);
    let mut r: Vec<f64> = emb.iter().map(|&v| f64::from(v)).collect();
    for (k, book) in books.iter().enumerate() {
        // book is [dim 32, codes 1024]
        let dist = |c: usize| (0..32).map(|i| (r[i] - f64::from(book[i * 1024 + c])).powi(2)).sum::<f64>();
        let best = (0..1024).min_by(|&a, &b| dist(a).total_cmp(&dist(b))).unwrap();
        assert_eq!(tokens[k], best as i32, "level {k}");
        for i in 0..32 {
            r[i] -= f64::from(book[i * 1024 + best]);
        }
    }
    assert!(model.tokenize(&emb[..5]).is_err());
    assert!(model.tokenize(&[f32::NAN; 32]).unwrap_err().to_string().contains("not finite"));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn broken_files_are_named_errors() {
    let dir = temp_dir("broken");
    let paths = tiny::write_tiny(&dir.join("v1"), &dir.join("v2"), 1).unwrap();
    let device = DeviceChoice::Flex.device().unwrap();
    // A wrong leaf shape names the leaf and its role.
    let mut params = style::model::read_v1_params(&paths.savedmodel).unwrap();
    params.text.exit_norm.scale = HostTensor::new(vec![31], vec![0.0; 31]);
    let bad = dir.join("bad_savedmodel");
    tiny::write_v1_savedmodel(&bad, &params).unwrap();
    let err = style::model::read_v1_params(&bad).unwrap_err().to_string();
    assert!(err.contains("leaf 63") && err.contains("text exit_stack/ln/scale") && err.contains("[31]"), "{err}");
    // A missing vocabulary names the file.
    let mut p = paths.clone();
    p.vocab = dir.join("nope.model");
    let err = StyleModel::load(&p, &device).unwrap_err().to_string();
    assert!(err.contains("nope.model"), "{err}");
    // Without the preprocessor, text still works and audio says what is missing.
    let mut p = paths.clone();
    p.preprocessor = None;
    let m = StyleModel::load(&p, &device).unwrap();
    assert!(m.embed_text("jazz").is_ok());
    let err = m.embed_audio_16k(&[0.0; 100], None).unwrap_err().to_string();
    assert!(err.contains("audio_preprocessor.tflite"), "{err}");
    // A truncated data file names the file.
    let data = paths.savedmodel.join("variables/variables.data-00000-of-00001");
    let bytes = std::fs::read(&data).unwrap();
    std::fs::write(&data, &bytes[..bytes.len() / 2]).unwrap();
    let err = StyleModel::load(&paths, &device).unwrap_err().to_string();
    assert!(err.contains("variables"), "{err}");
    assert!(matches!(StyleModel::load(&paths, &device), Err(StyleError::Bundle(_))));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn blending_prompts_and_no_style() {
    let (dir, model, _) = tiny_model("blend");
    let (a, b) = (model.embed_text("funk").unwrap(), model.embed_text("ambient piano").unwrap());
    let mix = style::blend(&[style::Weighted { embedding: &a, weight: 2.0 }, style::Weighted { embedding: &b, weight: 1.0 }]).unwrap().unwrap();
    for i in 0..a.len() {
        assert!((mix[i] - (2.0 * a[i] + b[i]) / 3.0).abs() < 1e-6);
    }
    assert_eq!(style::blend(&[style::Weighted { embedding: &a, weight: 0.0 }]).unwrap(), None);
    assert!(model.tokenize(&mix).is_ok());
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn prompts_parse_and_weighted_prompts_give_codes() {
    let (dir, model, _) = tiny_model("prompts");
    assert_eq!(style::Prompt::parse("funky bass"), style::Prompt::Text("funky bass".into()));
    assert_eq!(style::Prompt::parse("missing.WAV"), style::Prompt::AudioFile("missing.WAV".into()));
    let file = dir.join("ref");
    std::fs::write(&file, b"x").unwrap();
    assert_eq!(style::Prompt::parse(file.to_str().unwrap()), style::Prompt::AudioFile(file.clone()));

    let text = style::Prompt::Text("funk".into());
    let audio = style::Prompt::Audio16k(vec![0.1; 16_000]);
    let alone = model.tokenize(&model.embed_text("funk").unwrap()).unwrap();
    // A zero-weight prompt is not even embedded: a broken file with weight 0 is no error.
    let broken = style::Prompt::AudioFile(dir.join("nope.wav"));
    assert_eq!(style::style_codes(&model, &[(text.clone(), 1.0), (broken.clone(), 0.0)]).unwrap(), Some(alone));
    let err = style::style_codes(&model, &[(text.clone(), 1.0), (broken, 0.5)]).unwrap_err().to_string();
    assert!(err.contains("nope.wav"), "{err}");
    assert_eq!(style::style_codes(&model, &[(text.clone(), 0.0)]).unwrap(), None);
    assert_eq!(style::style_codes(&model, &[]).unwrap(), None);
    assert!(style::style_codes(&model, &[(text.clone(), -1.0)]).is_err());
    assert!(style::style_codes(&model, &[(style::Prompt::Text(" ".into()), 1.0)]).unwrap_err().to_string().contains("empty text prompt"));
    let mixed = style::style_codes(&model, &[(text, 1.0), (audio, 1.0)]).unwrap().unwrap();
    assert_eq!(mixed.len(), 12);
    std::fs::remove_dir_all(dir).unwrap();
}
