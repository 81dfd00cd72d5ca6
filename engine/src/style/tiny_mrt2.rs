//! A tiny random MRT2 MusicCoCa written as MRT2's TFLite files, in the official layouts
//! ([`super::mrt2`]): for tests and `mrt dev tiny-model`, so that the loader users run reads it.
//!
//! ```text
//!  <v2>/resources/musiccoca/text_encoder.tflite               unrolled layers, FC layout, folded
//!                                                             gains / query scale / pool query
//!  <v2>/resources/musiccoca/music_encoder.tflite              main graph + WHILE (cond 1, body 2)
//!                                                             with jax2tf_arg_46..61
//!  <v2>/resources/musiccoca/pretrained_vector_quantizer.tflite  FC (−2c, ‖c‖²) per level, GATHER c
//!                                                             for every level but the last
//!  <v2>/resources/musiccoca/mapper.tflite                    projections + context, WHILE body
//!                                                             with jax2tf_arg_2..15
//!  <v2>/resources/musiccoca/spm.model, audio_preprocessor.tflite
//! ```
//!
//! The towers are a random v1-form [`MusicCocaParams`] turned into the exported form (the
//! inverse of what the loader undoes), plus a learned text table and positions.

use std::path::Path;

use super::mrt2::Mrt2StylePaths;
use super::params::{HostTensor, MusicCocaParams, NormParams, PoolParams, StackParams};
use super::tiny::{tiny_dims, tiny_vocabulary, write_preprocessor};
use super::StyleError;
use crate::formats::tflite::{builtin, f32_bytes, write_tflite_graph, GraphOp, GraphSubgraph, GraphTensor, TensorType};
use crate::sampling::rng::SplitMix64;

/// Learned text positions in the tiny model (as the release: 128).
pub const TINY_TEXT_POSITIONS: usize = 128;

/// Named f32 constants and activations of one subgraph, turned into [`GraphSubgraph`]s.
#[derive(Default)]
struct Tensors {
    list: Vec<(String, Vec<usize>, Option<Vec<u8>>)>,
}

impl Tensors {
    fn constant(&mut self, name: impl Into<String>, shape: &[usize], data: &[f32]) -> i32 {
        self.list.push((name.into(), shape.to_vec(), Some(f32_bytes(data))));
        self.list.len() as i32 - 1
    }

    fn activation(&mut self, name: &str, shape: &[usize]) -> i32 {
        self.list.push((name.into(), shape.to_vec(), None));
        self.list.len() as i32 - 1
    }

    fn graph<'a>(&'a self, name: &'a str, operators: Vec<GraphOp>) -> GraphSubgraph<'a> {
        let tensors = self
            .list
            .iter()
            .map(|(n, s, d)| GraphTensor { name: n, shape: s, dtype: TensorType::Float32, data: d.as_deref() })
            .collect();
        GraphSubgraph { name, tensors, operators, ..Default::default() }
    }
}

fn write(path: &Path, subgraphs: &[GraphSubgraph<'_>]) -> Result<(), StyleError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| StyleError::Weights(format!("cannot create {}: {e}", dir.display())))?;
    }
    write_tflite_graph(path, subgraphs).map_err(StyleError::from)
}

/// `[rows, cols]` → `[cols, rows]`.
fn t(data: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    (0..cols).flat_map(|c| (0..rows).map(move |r| data[r * cols + c])).collect()
}

fn layer(t: &HostTensor, l: usize) -> &[f32] {
    let per = t.numel() / t.shape[0];
    &t.data[l * per..(l + 1) * per]
}

/// A Praxis LayerNorm as the exporter folds it: gain `1 + scale` and bias, `[1, 1, d]` each.
fn norm(out: &mut Tensors, prefix: &str, scale: &[f32], bias: &[f32]) {
    let d = scale.len();
    let gain: Vec<f32> = scale.iter().map(|s| 1.0 + s).collect();
    out.constant(format!("{prefix}broadcast_in_dim1"), &[1, 1, d], &gain);
    out.constant(format!("{prefix}broadcast_in_dim"), &[1, 1, d], bias);
}

/// The pooler as exported: the query projected and scaled ahead of time, kernels in FC layout.
fn pool(out: &mut Tensors, scope: &str, p: &PoolParams) {
    let (d, hp, dp) = (p.key_w.shape[0], p.key_w.shape[1], p.key_w.shape[2]);
    let hd = hp * dp;
    let base = std::f64::consts::LOG2_E / (dp as f64).sqrt();
    let query: Vec<f32> = (0..hd)
        .map(|j| {
            let acc = f64::from(p.query_b.data[j]) + (0..d).map(|i| f64::from(p.query.data[i]) * f64::from(p.query_w.data[i * hd + j])).sum::<f64>();
            let x = f64::from(p.per_dim_scale.data[j % dp]);
            (acc * base * x.exp().ln_1p()) as f32
        })
        .collect();
    out.constant(format!("{scope}/pool_attn/per_dim_scale/qk_einsum"), &[1, hp, 1, dp], &query);
    out.constant(format!("{scope}/pool_attn/key/einsum"), &[hd, d], &t(&p.key_w.data, d, hd));
    out.constant(format!("{scope}/pool_attn/key/add"), &[hd], &p.key_b.data);
    out.constant(format!("{scope}/pool_attn/value/einsum"), &[hd, d], &t(&p.value_w.data, d, hd));
    out.constant(format!("{scope}/pool_attn/value/add"), &[hd], &p.value_b.data);
    out.constant(format!("{scope}/pool_attn/post/einsum"), &[d, hd], &p.post_w.data);
    out.constant(format!("{scope}/pool_attn/post/add"), &[d], &p.post_b.data);
    norm(out, &format!("{scope}/pool_attn_ln/"), &p.norm.scale.data, &p.norm.bias.data);
}

/// `text_encoder.tflite`: learned `table [vocab, d]` and `positions [P, d]`, the layers of
/// `params.text` unrolled.
pub fn write_text_encoder(path: &Path, params: &MusicCocaParams, table: &HostTensor, positions: &HostTensor) -> Result<(), StyleError> {
    let s: &StackParams = &params.text.layers;
    let (layers, d, heads, dh) = (s.key_w.shape[0], s.key_w.shape[1], s.key_w.shape[2], s.key_w.shape[3]);
    let (hd, f) = (heads * dh, s.ffn1_w.shape[2]);
    let mut out = Tensors::default();
    let ids = out.activation("serving_default_ids:0", &[1, positions.shape[0]]);
    // The lookup table's name carries a second op's name after `;`, as the converter writes; a
    // decoy of the same shape is not looked up (the GATHER decides).
    let lookup = out.constant("text_encoder/emb;text_encoder/emb/gather", &table.shape, &table.data);
    out.constant("text_encoder/emb_decoy/unused", &table.shape, &vec![0.0; table.numel()]);
    let rows = out.activation("text_encoder/emb/gathered", &[1, positions.shape[0], d]);
    out.constant("text_encoder/position_emb", &[1, positions.shape[0], d], &positions.data);
    let scale = 1.0 / (dh as f32).sqrt();
    for l in 0..layers {
        let p = format!("encoder/x_layers_{l}/");
        let q: Vec<f32> = t(layer(&s.query_w, l), d, hd).iter().map(|v| v * scale).collect();
        let qb: Vec<f32> = layer(&s.query_b, l).iter().map(|v| v * scale).collect();
        out.constant(format!("{p}self_attention/query/einsum_scale_query/mul"), &[hd, d], &q);
        out.constant(format!("{p}self_attention/query/add_scale_query/mul"), &[hd], &qb);
        // A key kernel whose name also carries the value op (the first segment decides).
        out.constant(format!("{p}self_attention/key/einsum;{p}self_attention/value/einsum"), &[hd, d], &t(layer(&s.key_w, l), d, hd));
        out.constant(format!("{p}self_attention/key/add"), &[hd], layer(&s.key_b, l));
        out.constant(format!("{p}self_attention/value/einsum"), &[hd, d], &t(layer(&s.value_w, l), d, hd));
        out.constant(format!("{p}self_attention/value/add"), &[hd], layer(&s.value_b, l));
        out.constant(format!("{p}self_attention/post/einsum"), &[d, hd], layer(&s.post_w, l));
        out.constant(format!("{p}self_attention/post/add"), &[d], layer(&s.post_b, l));
        norm(&mut out, &format!("{p}layer_norm/"), layer(&s.attn_norm.scale, l), layer(&s.attn_norm.bias, l));
        norm(&mut out, &format!("{p}ff_layer/layer_norm/"), layer(&s.ff_norm.scale, l), layer(&s.ff_norm.bias, l));
        out.constant(format!("{p}ff_layer/ffn_layer1/linear/einsum"), &[f, d], &t(layer(&s.ffn1_w, l), d, f));
        out.constant(format!("{p}ff_layer/ffn_layer1/bias/add"), &[f], layer(&s.ffn1_b, l));
        out.constant(format!("{p}ff_layer/ffn_layer2/linear/einsum"), &[d, f], &t(layer(&s.ffn2_w, l), f, d));
        out.constant(format!("{p}ff_layer/ffn_layer2/bias/add"), &[d], layer(&s.ffn2_b, l));
    }
    let exit: &NormParams = &params.text.exit_norm;
    norm(&mut out, "encoder/exit_stack/ln/", &exit.scale.data, &exit.bias.data);
    pool(&mut out, "contrastive_txt_pooler", &params.text.pool);
    let gather = GraphOp { builtin: builtin::GATHER, inputs: vec![lookup, ids], outputs: vec![rows], ..Default::default() };
    write(path, &[out.graph("main", vec![gather])])
}

/// `music_encoder.tflite`: the entry, exit and pooler in subgraph 0, the stacked layers as the
/// WHILE body's (subgraph 2) `jax2tf_arg_46..61`.
pub fn write_music_encoder(path: &Path, params: &MusicCocaParams) -> Result<(), StyleError> {
    let a = &params.audio;
    let (p2, d) = (a.patch_w.shape[0], a.patch_w.shape[1]);
    let patches = a.pos_emb.shape[0];
    let mut main = Tensors::default();
    let x = main.activation("serving_default_mel:0", &[1, patches, d]);
    main.constant("encoder/patch_projection/linear/einsum", &[d, p2], &t(&a.patch_w.data, p2, d));
    let entry: Vec<f32> = a.pos_emb.data.iter().enumerate().map(|(i, v)| v + a.patch_b.data[i % d]).collect();
    main.constant("encoder/entry_stack/add", &[1, patches, d], &entry);
    norm(&mut main, "encoder/exit_stack/ln/", &a.exit_norm.scale.data, &a.exit_norm.bias.data);
    pool(&mut main, "contrastive_music_pooler", &a.pool);
    let mut cond = Tensors::default();
    cond.activation("while/cond/less", &[]);
    let mut body = Tensors::default();
    body.activation("jax2tf_arg_0", &[1, patches, d]);
    for (n, leaf) in params.v1_leaf_refs().into_iter().enumerate().take(62).skip(46) {
        let leaf = leaf.expect("leaves 46..=61 are the audio layers");
        body.constant(format!("jax2tf_arg_{n}/while/body/ReadVariableOp"), &leaf.shape, &leaf.data);
    }
    let ops = vec![GraphOp { builtin: builtin::WHILE, inputs: vec![x], outputs: vec![x], while_subgraphs: Some((1, 2)) }];
    write(path, &[main.graph("main", ops), cond.graph("while_cond", Vec::new()), body.graph("while_body", Vec::new())])
}

/// `pretrained_vector_quantizer.tflite` of `codebooks [levels][codes × d]`: per level a
/// FULLY_CONNECTED (weight −2c, bias ‖c‖²), then a GATHER of the chosen code for all but the last.
pub fn write_quantizer(path: &Path, codebooks: &[Vec<f32>], d: usize) -> Result<(), StyleError> {
    let codes = codebooks.first().map_or(0, |c| c.len() / d);
    let mut g = Tensors::default();
    let mut ops = Vec::new();
    let mut residual = g.activation("serving_default_embedding:0", &[1, d]);
    for (level, c) in codebooks.iter().enumerate() {
        let w: Vec<f32> = c.iter().map(|v| -2.0 * v).collect();
        let b: Vec<f32> = c.chunks_exact(d).map(|row| row.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() as f32).collect();
        let wi = g.constant(format!("rvq/stage_{level}/distances/MatMul"), &[codes, d], &w);
        let bi = g.constant(format!("rvq/stage_{level}/distances/add"), &[codes], &b);
        let dist = g.activation(&format!("rvq/stage_{level}/distances"), &[1, codes]);
        ops.push(GraphOp { builtin: builtin::FULLY_CONNECTED, inputs: vec![residual, wi, bi], outputs: vec![dist], ..Default::default() });
        if level + 1 < codebooks.len() {
            let table = g.constant(format!("rvq/stage_{level}/codebook"), &[codes, d], c);
            let idx = g.activation(&format!("rvq/stage_{level}/argmin"), &[1]);
            let chosen = g.activation(&format!("rvq/stage_{level}/GatherV2"), &[1, d]);
            ops.push(GraphOp { builtin: builtin::GATHER, inputs: vec![table, idx], outputs: vec![chosen], ..Default::default() });
            residual = g.activation(&format!("rvq/stage_{level}/sub"), &[1, d]);
        }
    }
    write(path, &[g.graph("main", ops)])
}

/// The widths of a tiny mapper: embedding E, tokens T × width D, heads N × H, FFN F, context P
/// (conditioning width 2P + E), layers L.
#[derive(Clone, Copy, Debug)]
pub struct TinyMapper {
    pub embed: usize,
    pub tokens: usize,
    pub width: usize,
    pub heads: usize,
    pub head_dim: usize,
    pub ffn: usize,
    pub context: usize,
    pub layers: usize,
}

impl TinyMapper {
    /// For the tiny towers (E = 32).
    pub fn tiny(embed: usize) -> Self {
        Self { embed, tokens: 4, width: 16, heads: 2, head_dim: 8, ffn: 32, context: 8, layers: 2 }
    }
}

/// `mapper.tflite` with random weights in the official layout: the projections and the context
/// (`arith.constant1`, beside a decoy `arith.constant12` of the same shape) in subgraph 0, the
/// stacked layers as the WHILE body's `jax2tf_arg_2..15`.
pub fn write_mapper(path: &Path, m: TinyMapper, seed: u64) -> Result<(), StyleError> {
    let TinyMapper { embed: e, tokens: t, width: d, heads: n, head_dim: h, ffn: f, context: p, layers: l } = m;
    let c = 2 * p + e;
    let mut rng = SplitMix64::new(seed);
    let mut normal = |count: usize, std: f64, mean: f64| (0..count).map(|_| (mean + rng.next_normal() * std) as f32).collect::<Vec<f32>>();
    let inv = |fan: usize| 1.0 / (fan as f64).sqrt();
    let mut main = Tensors::default();
    let x = main.activation("serving_default_text:0", &[1, e]);
    main.constant("mulan_mapper/input_projection/MatMul", &[t * d, e], &normal(t * d * e, inv(e), 0.0));
    main.constant("mulan_mapper/input_projection/BiasAdd", &[t * d], &normal(t * d, 0.05, 0.0));
    main.constant("mulan_mapper/output_projection/MatMul", &[e, t * d], &normal(e * t * d, inv(t * d), 0.0));
    main.constant("mulan_mapper/output_projection/BiasAdd", &[e], &normal(e, 0.05, 0.0));
    main.constant("arith.constant12", &[1, 1, p], &normal(p, 1.0, 0.0));
    main.constant("arith.constant1", &[1, 1, p], &normal(p, 1.0, 0.0));
    let mut cond = Tensors::default();
    cond.activation("while/cond/less", &[]);
    let mut body = Tensors::default();
    body.activation("jax2tf_arg_0", &[1, t, d]);
    body.activation("jax2tf_arg_1", &[1, 1, c]);
    let shapes: [(usize, Vec<usize>, f64, f64); 14] = [
        (2, vec![l, 2, d], 0.05, 0.0),
        (3, vec![l, c, 2, d], 3.0 * inv(c), 0.0),
        (4, vec![l, d], 0.1, 1.0),
        (5, vec![l, d, 3, n, h], inv(d), 0.0),
        (6, vec![l, 1, n, h], 0.5, 0.0),
        (7, vec![l, 1, n, h], 0.5, 0.0),
        (8, vec![l, d, n, h], inv(n * h), 0.0),
        (9, vec![l, 2, d], 0.05, 0.0),
        (10, vec![l, c, 2, d], 3.0 * inv(c), 0.0),
        (11, vec![l, f], 0.05, 0.0),
        (12, vec![l, d, f], inv(d), 0.0),
        (13, vec![l, d], 0.05, 0.0),
        (14, vec![l, f, d], inv(f), 0.0),
        (15, vec![l, d], 0.1, 1.0),
    ];
    for (arg, shape, std, mean) in shapes {
        let count = shape.iter().product();
        body.constant(format!("jax2tf_arg_{arg}/while/body/ReadVariableOp"), &shape, &normal(count, std, mean));
    }
    let ops = vec![GraphOp { builtin: builtin::WHILE, inputs: vec![x], outputs: vec![x], while_subgraphs: Some((1, 2)) }];
    write(path, &[main.graph("main", ops), cond.graph("while_cond", Vec::new()), body.graph("while_body", Vec::new())])
}

/// Random codebooks, later levels smaller (they quantise smaller residuals).
pub fn random_codebooks(levels: usize, codes: usize, d: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut rng = SplitMix64::new(seed);
    (0..levels)
        .map(|l| {
            let std = 0.6f64.powi(l as i32) * 1.5;
            (0..codes * d).map(|_| (rng.next_normal() * std) as f32).collect()
        })
        .collect()
}

/// Writes a tiny random MRT2 MusicCoCa (seeded) under `dir` (a `resources/musiccoca/` folder),
/// the mapper included.
pub fn write_tiny_mrt2(dir: &Path, seed: u64) -> Result<Mrt2StylePaths, StyleError> {
    let paths = Mrt2StylePaths {
        preprocessor: Some(dir.join(super::mrt2::PREPROCESSOR)),
        mapper: Some(dir.join(super::mrt2::MAPPER)),
        ..Mrt2StylePaths::in_dir(dir)
    };
    std::fs::create_dir_all(dir).map_err(|e| StyleError::Weights(format!("cannot create {}: {e}", dir.display())))?;
    let vocab = tiny_vocabulary();
    std::fs::write(&paths.vocab, &vocab).map_err(|e| StyleError::Weights(format!("cannot write {}: {e}", paths.vocab.display())))?;
    let sp = super::SentencePiece::from_bytes(&vocab, &paths.vocab)?;
    let dims = tiny_dims(sp.vocab_size());
    let params = MusicCocaParams::random(&dims, seed);
    let mut rng = SplitMix64::new(seed ^ 0x7e47);
    let mut normal = |n: usize, std: f64| (0..n).map(|_| (rng.next_normal() * std) as f32).collect::<Vec<f32>>();
    let table = HostTensor::new(vec![dims.vocab, dims.d], normal(dims.vocab * dims.d, 0.5));
    let positions = HostTensor::new(vec![TINY_TEXT_POSITIONS, dims.d], normal(TINY_TEXT_POSITIONS * dims.d, 0.3));
    write_text_encoder(&paths.text_encoder, &params, &table, &positions)?;
    write_music_encoder(&paths.music_encoder, &params)?;
    write_quantizer(&paths.quantizer, &random_codebooks(12, 1024, dims.d, seed ^ 0x5157), dims.d)?;
    if let Some(pre) = &paths.preprocessor {
        write_preprocessor(pre, 128)?;
    }
    if let Some(mapper) = &paths.mapper {
        write_mapper(mapper, TinyMapper::tiny(dims.d), seed ^ 0x3a99)?;
    }
    Ok(paths)
}
