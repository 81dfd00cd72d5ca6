//! MRT2's own MusicCoCa on tiny random TFLite files in the official layouts: the text tower
//! against a direct f64 transcription of the exported graph's math on the raw file tensors, the
//! music tower against the v1-form parameters it was written from, the quantizer against brute
//! force on its raw tables, and the error paths (missing, mis-shaped, non-finite tensors, the
//! quantizer's ‖c‖² check, vocabulary pairing).

// A direct transcription indexes by design.
#![allow(clippy::needless_range_loop)]

mod common;
use common::reference::{gelu, softmax};
use std::path::{Path, PathBuf};

use mrt::formats::tflite::{self, builtin, GraphOp, GraphSubgraph, GraphTensor, TensorType, TfLite};
use mrt::style::params::{MusicCocaParams, TextEmbedding};
use mrt::style::{self, tiny, tiny_mrt2, Mrt2StylePaths, StyleModel};
use mrt::DeviceChoice;

const SEED: u64 = 5;

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mrt-style-mrt2-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The tiny files; the towers' tests leave the mapper out (its own tests take it).
fn tiny_files(name: &str) -> (PathBuf, Mrt2StylePaths) {
    let dir = temp_dir(name);
    let paths = tiny_mrt2::write_tiny_mrt2(&dir.join("musiccoca"), SEED).unwrap();
    assert!(paths.mapper.as_ref().is_some_and(|p| p.is_file()), "the tiny model has a mapper");
    (dir, Mrt2StylePaths { mapper: None, ..paths })
}

fn load(paths: &Mrt2StylePaths) -> Result<StyleModel, style::StyleError> {
    StyleModel::load_mrt2(paths, &DeviceChoice::Flex.device().unwrap())
}

// ---- the exported graph's math, straight from the file's tensors --------------------------------

/// Raw constants of one subgraph by exact first name segment.
struct Raw(TfLite, usize);

impl Raw {
    fn get(&self, name: &str) -> (Vec<usize>, Vec<f64>) {
        let t = self.0.subgraph_tensors(self.1).iter().find(|t| t.is_constant() && t.first_name() == name).unwrap_or_else(|| panic!("{name}"));
        (t.shape.clone(), self.0.read_f32(t).unwrap().into_iter().map(f64::from).collect())
    }

    fn v(&self, name: &str) -> Vec<f64> {
        self.get(name).1
    }
}

/// `y = W x + b` with `W [out, in]` (TFLite FULLY_CONNECTED).
fn fc(w: &[f64], b: &[f64], x: &[f64]) -> Vec<f64> {
    let n = x.len();
    (0..b.len()).map(|o| b[o] + (0..n).map(|i| w[o * n + i] * x[i]).sum::<f64>()).collect()
}

/// LayerNorm with the gain as stored (the exporter folded Praxis' `1 + scale`).
fn ln(x: &[f64], gain: &[f64], bias: &[f64]) -> Vec<f64> {
    let d = x.len() as f64;
    let mean = x.iter().sum::<f64>() / d;
    let var = x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / d;
    x.iter().enumerate().map(|(i, v)| (v - mean) / (var + 1e-6).sqrt() * gain[i] + bias[i]).collect()
}

/// The text tower as the exported graph computes it: table + positions, unrolled pre-LN layers
/// (query scale folded in, logits capped at 50), exit LN, the attention pooler with its stored
/// query, its LN.
fn reference_text(path: &Path, ids: &[usize], heads: usize) -> Vec<f64> {
    let r = Raw(TfLite::open(path).unwrap(), 0);
    let (tshape, table) = r.get("text_encoder/emb");
    let d = tshape[1];
    let pos = r.v("text_encoder/position_emb");
    let mut x: Vec<Vec<f64>> = ids.iter().enumerate().map(|(p, &id)| (0..d).map(|c| table[id * d + c] + pos[p * d + c]).collect()).collect();
    let n = x.len();
    let mut l = 0;
    while r.0.subgraph_tensors(0).iter().any(|t| t.first_name().starts_with(&format!("encoder/x_layers_{l}/"))) {
        let p = format!("encoder/x_layers_{l}/");
        let g = |s: &str| r.v(&format!("{p}{s}"));
        let h: Vec<Vec<f64>> = x.iter().map(|row| ln(row, &g("layer_norm/broadcast_in_dim1"), &g("layer_norm/broadcast_in_dim"))).collect();
        let q: Vec<Vec<f64>> = h.iter().map(|row| fc(&g("self_attention/query/einsum_scale_query/mul"), &g("self_attention/query/add_scale_query/mul"), row)).collect();
        let k: Vec<Vec<f64>> = h.iter().map(|row| fc(&g("self_attention/key/einsum"), &g("self_attention/key/add"), row)).collect();
        let v: Vec<Vec<f64>> = h.iter().map(|row| fc(&g("self_attention/value/einsum"), &g("self_attention/value/add"), row)).collect();
        let hd = q[0].len();
        let dh = hd / heads;
        let mut ctx = vec![vec![0.0; hd]; n];
        for head in 0..heads {
            for i in 0..n {
                let mut w: Vec<f64> = (0..n)
                    .map(|j| 50.0 * ((0..dh).map(|e| q[i][head * dh + e] * k[j][head * dh + e]).sum::<f64>() / 50.0).tanh())
                    .collect();
                softmax(&mut w);
                for e in 0..dh {
                    ctx[i][head * dh + e] = (0..n).map(|j| w[j] * v[j][head * dh + e]).sum();
                }
            }
        }
        for i in 0..n {
            let out = fc(&g("self_attention/post/einsum"), &g("self_attention/post/add"), &ctx[i]);
            x[i].iter_mut().zip(out).for_each(|(a, b)| *a += b);
            let h2 = ln(&x[i], &g("ff_layer/layer_norm/broadcast_in_dim1"), &g("ff_layer/layer_norm/broadcast_in_dim"));
            let f1: Vec<f64> = fc(&g("ff_layer/ffn_layer1/linear/einsum"), &g("ff_layer/ffn_layer1/bias/add"), &h2).into_iter().map(gelu).collect();
            let f2 = fc(&g("ff_layer/ffn_layer2/linear/einsum"), &g("ff_layer/ffn_layer2/bias/add"), &f1);
            x[i].iter_mut().zip(f2).for_each(|(a, b)| *a += b);
        }
        l += 1;
    }
    assert_eq!(l, 2, "the tiny text tower has 2 layers");
    let x: Vec<Vec<f64>> = x.iter().map(|row| ln(row, &r.v("encoder/exit_stack/ln/broadcast_in_dim1"), &r.v("encoder/exit_stack/ln/broadcast_in_dim"))).collect();
    let s = "contrastive_txt_pooler/pool_attn";
    let (qshape, query) = r.get(&format!("{s}/per_dim_scale/qk_einsum"));
    let (hp, dp) = (qshape[1], qshape[3]);
    let k: Vec<Vec<f64>> = x.iter().map(|row| fc(&r.v(&format!("{s}/key/einsum")), &r.v(&format!("{s}/key/add")), row)).collect();
    let v: Vec<Vec<f64>> = x.iter().map(|row| fc(&r.v(&format!("{s}/value/einsum")), &r.v(&format!("{s}/value/add")), row)).collect();
    let mut ctx = vec![0.0; hp * dp];
    for head in 0..hp {
        let mut w: Vec<f64> = (0..n).map(|j| (0..dp).map(|e| query[head * dp + e] * k[j][head * dp + e]).sum()).collect();
        softmax(&mut w);
        for e in 0..dp {
            ctx[head * dp + e] = (0..n).map(|j| w[j] * v[j][head * dp + e]).sum();
        }
    }
    let out = fc(&r.v(&format!("{s}/post/einsum")), &r.v(&format!("{s}/post/add")), &ctx);
    ln(&out, &r.v("contrastive_txt_pooler/pool_attn_ln/broadcast_in_dim1"), &r.v("contrastive_txt_pooler/pool_attn_ln/broadcast_in_dim"))
}

fn max_rel(ours: &[f32], want: &[f64]) -> f64 {
    let scale = want.iter().map(|v| v.abs()).fold(0.0, f64::max);
    ours.iter().zip(want).map(|(&a, &b)| (f64::from(a) - b).abs()).fold(0.0, f64::max) / scale
}

#[test]
fn text_tower_matches_the_exported_graphs_math() {
    let (dir, paths) = tiny_files("text");
    let model = load(&paths).unwrap();
    assert_eq!((model.dim(), model.levels(), model.codebook_size()), (32, 12, 1024));
    for prompt in ["funky bass, dusty drums", "", "Ambient PIANO 123 ünïcode"] {
        let ours = model.embed_text(prompt).unwrap();
        assert_eq!(ours.len(), 32);
        // MRT2's tokenization: lower(), the spm ids (first 127), SOS = 1 first, pads dropped.
        let (ids, pad) = model.tokenizer().musiccoca_ids(prompt);
        assert_eq!(ids[0], 1);
        let real: Vec<usize> = ids.iter().zip(&pad).filter(|(_, &p)| p == 0.0).map(|(&i, _)| i as usize).collect();
        let want = reference_text(&paths.text_encoder, &real, 2);
        let err = max_rel(&ours, &want);
        assert!(err < 1e-4, "{prompt:?}: max relative error {err}");
    }
    assert_eq!(model.embed_text("jazz").unwrap(), model.embed_text("JAZZ").unwrap());
    assert_ne!(model.embed_text("jazz").unwrap(), model.embed_text("techno").unwrap());
    // The widths come from the file: the learned table is the vocabulary's size.
    let params = style::mrt2::read_params(&paths).unwrap();
    let TextEmbedding::Learned { table, positions } = &params.text.embedding else { panic!("MRT2 has a learned table") };
    assert_eq!((table.shape.as_slice(), positions.shape.as_slice()), (&[model.tokenizer().vocab_size(), 32][..], &[128, 32][..]));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn music_tower_is_read_from_the_while_body_and_matches_the_written_parameters() {
    let (dir, paths) = tiny_files("music");
    let (audio, heads) = style::mrt2::read_music_encoder(&paths.music_encoder).unwrap();
    let vocab = style::SentencePiece::open(&paths.vocab).unwrap().vocab_size();
    let written = MusicCocaParams::random(&tiny::tiny_dims(vocab), SEED);
    // Widths read from the WHILE body's stacked args: [L, d, H, Dh], [L, d, F].
    assert_eq!(heads, 2);
    assert_eq!(audio.layers.key_w.shape, [2, 32, 2, 16]);
    assert_eq!(audio.layers.ffn1_w.shape, [2, 32, 64]);
    assert_eq!((audio.patch_w.shape.as_slice(), audio.pos_emb.shape.as_slice()), (&[256, 32][..], &[496, 32][..]));
    // The loop weights are v1's leaves as they are.
    assert_eq!(audio.layers, written.audio.layers);
    assert_eq!(audio.patch_w, written.audio.patch_w);
    assert_eq!(audio.exit_norm.bias, written.audio.exit_norm.bias);
    // And the tower computes what the v1-form parameters compute.
    let device = DeviceChoice::Flex.device().unwrap();
    let mrt2 = load(&paths).unwrap();
    let pre = dir.join("v2").join(tiny::PREPROCESSOR);
    tiny::write_preprocessor(&pre, 128).unwrap();
    let fe = style::model::read_front_end(&pre).unwrap();
    let v1 = StyleModel::from_parts(
        written,
        style::SentencePiece::open(&paths.vocab).unwrap(),
        style::mrt2::read_quantizer(&paths.quantizer).unwrap(),
        Ok(fe),
        &device,
    )
    .unwrap();
    let mut rng = mrt::sampling::rng::SplitMix64::new(3);
    let clip: Vec<f32> = (0..160_000).map(|n| (0.2 * (n as f64 * 0.05).sin() + 0.1 * rng.next_normal()) as f32).collect();
    let (a, b) = (mrt2.embed_audio_16k(&clip, None).unwrap(), v1.embed_audio_16k(&clip, None).unwrap());
    let want: Vec<f64> = b.iter().map(|&v| f64::from(v)).collect();
    let err = max_rel(&a, &want);
    assert!(err < 1e-5, "max relative error {err}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn style_tokens_are_brute_force_rvq_on_the_quantizers_tables() {
    let (dir, paths) = tiny_files("rvq");
    let model = load(&paths).unwrap();
    let r = Raw(TfLite::open(&paths.quantizer).unwrap(), 0);
    let mut books: Vec<Vec<f64>> = (0..11).map(|l| r.v(&format!("rvq/stage_{l}/codebook"))).collect();
    books.push(r.v("rvq/stage_11/distances/MatMul").iter().map(|w| -0.5 * w).collect());
    let brute = |emb: &[f32]| -> Vec<i32> {
        let mut res: Vec<f64> = emb.iter().map(|&v| f64::from(v)).collect();
        books
            .iter()
            .map(|book| {
                let dist = |c: usize| (0..32).map(|i| (res[i] - book[c * 32 + i]).powi(2)).sum::<f64>();
                let best = (0..1024).min_by(|&a, &b| dist(a).total_cmp(&dist(b))).unwrap();
                (0..32).for_each(|i| res[i] -= book[best * 32 + i]);
                best as i32
            })
            .collect()
    };
    for prompt in ["funk bass", "ambient pads"] {
        let emb = model.embed_text(prompt).unwrap();
        assert_eq!(model.tokenize(&emb).unwrap(), brute(&emb), "{prompt}");
    }
    // A sum of one code per level at the first levels is found again.
    let emb: Vec<f32> = (0..32).map(|i| (books[0][17 * 32 + i] + books[1][900 * 32 + i]) as f32).collect();
    let tokens = model.tokenize(&emb).unwrap();
    assert_eq!(tokens, brute(&emb));
    assert_eq!(&tokens[..2], &[17, 900]);
    std::fs::remove_dir_all(dir).unwrap();
}

// ---- the mapper ---------------------------------------------------------------------------------

/// The mapper as DBraun's port writes it, in f64 on the raw tensors of the file.
fn reference_mapper(path: &Path, text: &[f64], noise: &[f64]) -> Vec<f64> {
    let main = Raw(TfLite::open(path).unwrap(), 0);
    let body = Raw(TfLite::open(path).unwrap(), 2);
    let (wshape, w_in) = main.get("mulan_mapper/input_projection/MatMul");
    let (td, e) = (wshape[0], wshape[1]);
    let context = main.v("arith.constant1");
    let ctx: Vec<f64> = context.iter().chain(&context).chain(text).copied().collect();
    let c = ctx.len();
    let flat = fc(&w_in, &main.v("mulan_mapper/input_projection/BiasAdd"), noise);
    let arg = |n: usize| body.get(&format!("jax2tf_arg_{n}/while/body/ReadVariableOp"));
    let (qshape, _) = arg(5);
    let (layers, d, nh, hd) = (qshape[0], qshape[1], qshape[3], qshape[4]);
    let f = arg(12).0[2];
    let t = td / d;
    let mut x: Vec<Vec<f64>> = (0..t).map(|i| flat[i * d..(i + 1) * d].to_vec()).collect();
    let at = |n: usize, l: usize| {
        let (shape, v) = arg(n);
        let per = v.len() / shape[0];
        v[l * per..(l + 1) * per].to_vec()
    };
    let cond = |w: &[f64], b: &[f64]| -> (Vec<f64>, Vec<f64>) {
        let o: Vec<f64> = (0..2 * d).map(|j| b[j] + (0..c).map(|i| ctx[i] * w[i * 2 * d + j]).sum::<f64>()).collect();
        (o[..d].to_vec(), o[d..].to_vec())
    };
    let norm = |row: &[f64], g: &[f64], sc: &[f64], sh: &[f64]| -> Vec<f64> {
        let r = 1.0 / (row.iter().map(|v| v * v).sum::<f64>() / d as f64 + 1e-6).sqrt();
        (0..d).map(|i| row[i] * r * g[i] * (1.0 + sc[i]) + sh[i]).collect()
    };
    let rope = |v: &mut [f64], pos: usize| {
        let half = hd / 2;
        for head in 0..nh {
            for i in 0..half {
                let angle = pos as f64 * 10000f64.powf(-(i as f64) / half as f64);
                let (a, b) = (v[head * hd + i], v[head * hd + half + i]);
                v[head * hd + i] = a * angle.cos() - b * angle.sin();
                v[head * hd + half + i] = b * angle.cos() + a * angle.sin();
            }
        }
    };
    let cap = |v: f64| 30.0 * (v / 30.0).tanh();
    for l in 0..layers {
        let (s1, b1) = cond(&at(3, l), &at(2, l));
        let qkv = at(5, l);
        let proj = |h: &[f64], j: usize| -> Vec<f64> { (0..nh * hd).map(|o| (0..d).map(|i| h[i] * qkv[(i * 3 + j) * nh * hd + o]).sum()).collect() };
        let hs: Vec<Vec<f64>> = x.iter().map(|row| norm(row, &at(4, l), &s1, &b1)).collect();
        let mut q: Vec<Vec<f64>> = hs.iter().map(|h| proj(h, 0)).collect();
        let mut k: Vec<Vec<f64>> = hs.iter().map(|h| proj(h, 1)).collect();
        let v: Vec<Vec<f64>> = hs.iter().map(|h| proj(h, 2)).collect();
        for i in 0..t {
            rope(&mut q[i], i);
            rope(&mut k[i], i);
        }
        let (ks, vs, post) = (at(6, l), at(7, l), at(8, l));
        for i in 0..t {
            let mut o = vec![0.0; nh * hd];
            for head in 0..nh {
                let r = head * hd..(head + 1) * hd;
                let dotp = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
                let mut w = vec![cap(dotp(&q[i][r.clone()], &ks[r.clone()]))];
                w.extend((0..t).map(|j| cap(dotp(&q[i][r.clone()], &k[j][r.clone()]) / (hd as f64).sqrt())));
                softmax(&mut w);
                for e in 0..hd {
                    o[head * hd + e] = w[0] * vs[head * hd + e] + (0..t).map(|j| w[j + 1] * v[j][head * hd + e]).sum::<f64>();
                }
            }
            for m in 0..d {
                x[i][m] += (0..nh * hd).map(|cc| post[m * nh * hd + cc] * o[cc]).sum::<f64>();
            }
        }
        let (s2, b2) = cond(&at(10, l), &at(9, l));
        let (w1, bb1, w2, bb2) = (at(12, l), at(11, l), at(14, l), at(13, l));
        for i in 0..t {
            let h = norm(&x[i], &at(15, l), &s2, &b2);
            let hidden: Vec<f64> = (0..f)
                .map(|j| {
                    let z = bb1[j] + (0..d).map(|m| h[m] * w1[m * f + j]).sum::<f64>();
                    0.5 * z * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (z + 0.044715 * z.powi(3))).tanh())
                })
                .collect();
            for m in 0..d {
                x[i][m] += bb2[m] + (0..f).map(|j| hidden[j] * w2[j * d + m]).sum::<f64>();
            }
        }
    }
    let flat: Vec<f64> = x.concat();
    let out = fc(&main.v("mulan_mapper/output_projection/MatMul"), &main.v("mulan_mapper/output_projection/BiasAdd"), &flat);
    assert_eq!(out.len(), e);
    let n = out.iter().map(|v| v * v).sum::<f64>().sqrt();
    out.iter().map(|v| v / n).collect()
}

#[test]
fn the_mapper_matches_its_graphs_math_and_maps_text_prompts_only() {
    let (dir, paths) = tiny_files("mapper");
    let mapper_path = dir.join("musiccoca").join(style::mrt2::MAPPER);
    let m = style::mapper::Mapper::open(&mapper_path).unwrap();
    assert_eq!((m.embed, m.tokens, m.width, m.heads, m.head_dim, m.ffn, m.context_dim, m.layers), (32, 4, 16, 2, 8, 32, 48, 2));
    let mut rng = mrt::sampling::rng::SplitMix64::new(9);
    let text: Vec<f32> = (0..32).map(|_| rng.next_normal() as f32).collect();
    let noise = style::mapper::numpy_randn(0, 32);
    let ours = m.map(&text, &noise).unwrap();
    let f64s = |v: &[f32]| v.iter().map(|&x| f64::from(x)).collect::<Vec<f64>>();
    let want = reference_mapper(&mapper_path, &f64s(&text), &f64s(&noise));
    let err = max_rel(&ours, &want);
    assert!(err < 1e-4, "max relative error {err}");
    assert!(m.map(&text[..5], &noise).is_err());

    // Loaded with the model: text prompts are mapped (unit norm), audio prompts are not.
    let plain = load(&paths).unwrap();
    let mapped = load(&Mrt2StylePaths { mapper: Some(mapper_path.clone()), ..paths.clone() }).unwrap();
    assert!(mapped.maps_text() && !plain.maps_text());
    let e = plain.embed_text("funk bass").unwrap();
    let want = reference_mapper(&mapper_path, &f64s(&e), &f64s(&style::mapper::numpy_randn(0, 32)));
    let got = mapped.embed_text("funk bass").unwrap();
    assert!(max_rel(&got, &want) < 1e-4);
    assert!((got.iter().map(|v| v * v).sum::<f32>() - 1.0).abs() < 1e-5);
    let clip = vec![0.1f32; 16_000];
    assert_eq!(plain.embed_audio_16k(&clip, None).unwrap(), mapped.embed_audio_16k(&clip, None).unwrap());

    // A missing loop weight names the file and the arg.
    rewrite(&mapper_path, |name, shape, data| (!name.starts_with("jax2tf_arg_7/")).then(|| (shape.to_vec(), data)));
    let err = load(&Mrt2StylePaths { mapper: Some(mapper_path), ..paths }).unwrap_err().to_string();
    assert!(err.contains("mapper.tflite") && err.contains("jax2tf_arg_7"), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}

// ---- error paths ------------------------------------------------------------------------------

/// A tensor's name, shape and data (`None`: an activation), owned.
type Owned = (String, Vec<usize>, Option<Vec<u8>>);

/// Rewrites a TFLite file with `edit` applied to every constant (`None` drops it), operators and
/// subgraphs kept (indices of later tensors shift only when one is dropped from an op-free
/// subgraph).
fn rewrite(path: &Path, edit: impl Fn(&str, &[usize], Vec<f32>) -> Option<(Vec<usize>, Vec<f32>)>) {
    let m = TfLite::open(path).unwrap();
    let mut kept: Vec<Vec<Owned>> = Vec::new();
    for (s, _) in m.subgraphs().iter().enumerate() {
        let mut list = Vec::new();
        for t in m.subgraph_tensors(s) {
            if !t.is_constant() {
                list.push((t.name.clone(), t.shape.clone(), None));
            } else if let Some((shape, data)) = edit(&t.name, &t.shape, m.read_f32(t).unwrap()) {
                list.push((t.name.clone(), shape, Some(tflite::f32_bytes(&data))));
            }
        }
        kept.push(list);
    }
    let graphs: Vec<GraphSubgraph<'_>> = m
        .subgraphs()
        .iter()
        .zip(&kept)
        .map(|(g, list)| GraphSubgraph {
            name: &g.name,
            tensors: list.iter().map(|(n, s, d)| GraphTensor { name: n, shape: s, dtype: TensorType::Float32, data: d.as_deref() }).collect(),
            inputs: g.inputs.clone(),
            outputs: g.outputs.clone(),
            operators: g
                .operators
                .iter()
                .map(|o| GraphOp { builtin: o.builtin, inputs: o.inputs.clone(), outputs: o.outputs.clone(), while_subgraphs: o.while_subgraphs })
                .collect(),
        })
        .collect();
    tflite::write_tflite_graph(path, &graphs).unwrap();
}

#[test]
fn missing_misshaped_and_non_finite_tensors_name_the_file_and_tensor() {
    let (dir, paths) = tiny_files("errors");
    let text = std::fs::read(&paths.text_encoder).unwrap();
    let music = std::fs::read(&paths.music_encoder).unwrap();
    let err_of = |paths: &Mrt2StylePaths| load(paths).unwrap_err().to_string();

    rewrite(&paths.text_encoder, |name, shape, data| (!name.starts_with("encoder/x_layers_1/self_attention/value/add")).then(|| (shape.to_vec(), data)));
    let err = err_of(&paths);
    assert!(err.contains("text_encoder.tflite") && err.contains("x_layers_1/self_attention/value/add"), "{err}");

    std::fs::write(&paths.text_encoder, &text).unwrap();
    rewrite(&paths.text_encoder, |name, shape, mut data| {
        if name == "encoder/x_layers_0/ff_layer/ffn_layer2/bias/add" {
            data.pop();
            Some((vec![shape[0] - 1], data))
        } else {
            Some((shape.to_vec(), data))
        }
    });
    let err = err_of(&paths);
    assert!(err.contains("text_encoder.tflite") && err.contains("ffn_layer2/bias/add") && err.contains("[31]"), "{err}");

    std::fs::write(&paths.text_encoder, &text).unwrap();
    rewrite(&paths.music_encoder, |name, shape, mut data| {
        if name.starts_with("jax2tf_arg_50/") {
            data[3] = f32::NAN;
        }
        Some((shape.to_vec(), data))
    });
    let err = err_of(&paths);
    assert!(err.contains("music_encoder.tflite") && err.contains("jax2tf_arg_50") && err.contains("non-finite"), "{err}");

    std::fs::write(&paths.music_encoder, &music).unwrap();
    rewrite(&paths.music_encoder, |name, shape, data| (!name.starts_with("jax2tf_arg_57/")).then(|| (shape.to_vec(), data)));
    let err = err_of(&paths);
    assert!(err.contains("music_encoder.tflite") && err.contains("jax2tf_arg_57"), "{err}");

    // A music encoder without its layer loop.
    std::fs::write(&paths.music_encoder, &music).unwrap();
    let m = TfLite::open(&paths.music_encoder).unwrap();
    let main = m.subgraph_tensors(0);
    let list: Vec<Owned> =
        main.iter().map(|t| (t.name.clone(), t.shape.clone(), t.is_constant().then(|| tflite::f32_bytes(&m.read_f32(t).unwrap())))).collect();
    let g = GraphSubgraph {
        name: "main",
        tensors: list.iter().map(|(n, s, d)| GraphTensor { name: n, shape: s, dtype: TensorType::Float32, data: d.as_deref() }).collect(),
        ..Default::default()
    };
    tflite::write_tflite_graph(&paths.music_encoder, &[g]).unwrap();
    let err = err_of(&paths);
    assert!(err.contains("music_encoder.tflite") && err.contains("no WHILE operator"), "{err}");
    std::fs::write(&paths.music_encoder, &music).unwrap();
    assert!(load(&paths).is_ok());
    std::fs::remove_dir_all(dir).unwrap();
}

/// A 2-level quantizer (4 codes of 3): GATHER of a [2, 3] non-codebook, FC(−2c₀, b₀), GATHER c₀,
/// FC(−2c₁, b₁).
fn small_quantizer(path: &Path, b0: &[f32], gather_scale: f32) {
    let c0 = [1.0f32, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0];
    let c1: Vec<f32> = c0.iter().map(|v| v * 0.1).collect();
    let neg2 = |c: &[f32]| tflite::f32_bytes(&c.iter().map(|v| -2.0 * v).collect::<Vec<_>>());
    let norms = |c: &[f32]| tflite::f32_bytes(&c.chunks(3).map(|r| r.iter().map(|v| v * v).sum()).collect::<Vec<f32>>());
    let (w0, w1, b0, b1) = (neg2(&c0), neg2(&c1), tflite::f32_bytes(b0), norms(&c1));
    let g0 = tflite::f32_bytes(&c0.iter().map(|v| v * gather_scale).collect::<Vec<_>>());
    let decoy = tflite::f32_bytes(&[9.0; 6]);
    let t = |name, shape, data| GraphTensor { name, shape, dtype: TensorType::Float32, data };
    let g = GraphSubgraph {
        name: "main",
        tensors: vec![
            t("x", &[1, 3], None),
            t("w0", &[4, 3], Some(&w0)),
            t("b0", &[4], Some(&b0)),
            t("c0", &[4, 3], Some(&g0)),
            t("w1", &[4, 3], Some(&w1)),
            t("b1", &[4], Some(&b1)),
            t("y", &[1, 4], None),
            t("not_a_codebook", &[2, 3], Some(&decoy)),
        ],
        operators: vec![
            // A GATHER of another shape is not a codebook.
            GraphOp { builtin: builtin::GATHER, inputs: vec![7, 6], outputs: vec![0], ..Default::default() },
            GraphOp { builtin: builtin::FULLY_CONNECTED, inputs: vec![0, 1, 2], outputs: vec![6], ..Default::default() },
            GraphOp { builtin: builtin::GATHER, inputs: vec![3, 6], outputs: vec![0], ..Default::default() },
            GraphOp { builtin: builtin::FULLY_CONNECTED, inputs: vec![0, 4, 5], outputs: vec![6], ..Default::default() },
        ],
        ..Default::default()
    };
    tflite::write_tflite_graph(path, &[g]).unwrap();
}

#[test]
fn the_quantizers_distance_weights_and_biases_are_checked_against_its_tables() {
    let dir = temp_dir("quant");
    let path = dir.join("q.tflite");
    small_quantizer(&path, &[1.0, 1.0, 1.0, 3.0], 1.0);
    let books = style::mrt2::read_quantizer(&path).unwrap();
    assert_eq!((books.levels, books.codebook_size, books.dim), (2, 4, 3));
    assert_eq!(&books.data[..3], &[1.0, 0.0, 0.0]);
    assert!((books.data[12 + 9] - 0.1).abs() < 1e-7);
    // ‖c‖² of code 3 is 3, not 2.5.
    small_quantizer(&path, &[1.0, 1.0, 1.0, 2.5], 1.0);
    let err = style::mrt2::read_quantizer(&path).unwrap_err().to_string();
    assert!(err.contains("q.tflite") && err.contains("level 0") && err.contains("bias `b0` of code 3"), "{err}");
    // A GATHER table that is not −½ × the distance weight.
    small_quantizer(&path, &[1.0, 1.0, 1.0, 3.0], 2.0);
    let err = style::mrt2::read_quantizer(&path).unwrap_err().to_string();
    assert!(err.contains("level 0") && err.contains("weight `w0`"), "{err}");
    // Not a quantizer at all.
    tflite::write_tflite(&path, &[("w", &[4, 3], &[0.0; 12])]).unwrap();
    let err = style::mrt2::read_quantizer(&path).unwrap_err().to_string();
    assert!(err.contains("found 0 and 0"), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_vocabulary_of_the_other_family_is_refused() {
    let (dir, paths) = tiny_files("pairing");
    // MRT2's towers with a vocabulary of another size.
    let small = style::tokenizer::write_model(&[("▁jazz", -1.0), ("a", -2.0), ("b", -2.0)], true);
    let other = dir.join("other.model");
    std::fs::write(&other, small).unwrap();
    let err = load(&Mrt2StylePaths { vocab: other.clone(), ..paths.clone() }).unwrap_err().to_string();
    assert!(err.contains("other.model") && err.contains("text_encoder.tflite") && err.contains("do not belong together"), "{err}");
    // v1's towers with it.
    let v1 = tiny::write_tiny(&dir.join("v1"), &dir.join("v2"), 1).unwrap();
    let err = StyleModel::load(&style::StylePaths { vocab: other, ..v1 }, &DeviceChoice::Flex.device().unwrap()).unwrap_err().to_string();
    assert!(err.contains("other.model") && err.contains("do not belong together"), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}
