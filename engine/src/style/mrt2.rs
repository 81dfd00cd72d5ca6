//! MRT2's own MusicCoCa, read from the TFLite files MRT2 publishes (`google/magenta-realtime-2`,
//! `resources/musiccoca/`), into the same tower parameters as v1's ([`MusicCocaParams`]) where
//! the math is the same. Map from DBraun's parity-tested converter (`DBraun/magenta-realtime` @
//! a367f50, `magenta_rt/nnx/musiccoca/{convert,modules}.py`); evidence: `engine/NOTES.md`,
//! "MRT2's MusicCoCa".
//!
//! ```text
//!  text_encoder.tflite (unrolled, subgraph 0; constants by name, first `;` segment, and shape)
//!    emb [vocab, d] · position_emb [1, P, d]                → TextEmbedding::Learned (no √d, no sinusoid)
//!    x_layers_{i}/self_attention/…_scale_query/mul [hd, d], [hd]  q, 1/√Dh folded in → × √Dh
//!    x_layers_{i}/self_attention/{key,value,post}/{einsum,add}    FC layout [out, in] → transposed
//!    x_layers_{i}/{,ff_layer/}layer_norm/broadcast_in_dim{1,} [1, 1, d]  gain (1 + scale folded) → − 1, bias
//!    x_layers_{i}/…ffn_layer{1,2}/{linear,bias}   [F, d] / [d, F]          → transposed
//!    exit_stack/ln/…, contrastive_txt_pooler/…    (pooler below)
//!  music_encoder.tflite
//!    subgraph 0: patch_projection/linear [d, p²] → transposed; entry_stack/add [1, patches, d]
//!                (patch bias + positions folded: the patch bias is 0); exit_stack/ln; the pooler
//!    WHILE body (found from the WHILE operator): jax2tf_arg_46..61 = v1 leaves 46..61 as they
//!                are (stacked [L, …], LayerNorm scales as offsets, q unscaled)
//!  pooler {contrastive_txt_pooler, contrastive_music_pooler}/
//!    pool_attn/…qk_einsum [1, Hp, 1, Dp]  the query, projected and scaled → PoolParams::folded_query
//!    pool_attn/{key,value}/{einsum [Hp·Dp, d], add}, pool_attn/post/{einsum [d, Hp·Dp], add},
//!    pool_attn_ln/broadcast_in_dim{1,}
//!  pretrained_vector_quantizer.tflite (subgraph 0, by operators)
//!    GATHER tables [codes, d] (in operator order) = levels 0..L−2;
//!    FULLY_CONNECTED l: weight −2·c_l [codes, d], bias ‖c_l‖² [codes]; level L−1 = −½ · the last weight
//! ```
//!
//! Widths are read from the shapes: d and the positions from `position_emb`, the vocabulary from
//! the table, layers from the `x_layers_{i}` names, FFN and head widths from the kernels, the
//! music tower's heads `H × Dh` from its stacked key kernel `[L, d, H, Dh]`. The text tower's
//! head count is not in its shapes (the projections are `[H·Dh, d]` matrices): it is taken to be
//! the music tower's (12 in both, per the published converter). Every tensor is checked for
//! presence, shape and finiteness, and an error names the file and the tensor.

use std::path::{Path, PathBuf};

use super::params::{AudioParams, HostTensor, MusicCocaParams, NormParams, PoolParams, StackParams, TextEmbedding, TextParams};
use super::StyleError;
use crate::codec::weights::CodebookParams;
use crate::formats::tensor::shape_text;
use crate::formats::tflite::{builtin, TensorEntry, TfLite};

/// MRT2's style-model files (`resources/musiccoca/` of `google/magenta-realtime-2`).
#[derive(Clone, Debug, PartialEq)]
pub struct Mrt2StylePaths {
    pub text_encoder: PathBuf,
    pub music_encoder: PathBuf,
    pub quantizer: PathBuf,
    /// `spm.model` (16000 pieces in the release).
    pub vocab: PathBuf,
    /// `audio_preprocessor.tflite`; without it audio prompts are refused.
    pub preprocessor: Option<PathBuf>,
    /// `mapper.tflite` (optional): text embeddings go through it when set ([`super::mapper`]).
    pub mapper: Option<PathBuf>,
}

/// File names under `resources/musiccoca/`.
pub const TEXT_ENCODER: &str = "text_encoder.tflite";
pub const MUSIC_ENCODER: &str = "music_encoder.tflite";
pub const QUANTIZER: &str = "pretrained_vector_quantizer.tflite";
pub const VOCAB: &str = "spm.model";
pub const PREPROCESSOR: &str = "audio_preprocessor.tflite";
pub const MAPPER: &str = "mapper.tflite";

impl Mrt2StylePaths {
    /// The official names under one `resources/musiccoca/` folder; the optional preprocessor and
    /// mapper only where they exist.
    pub fn in_dir(dir: &Path) -> Self {
        let present = |name: &str| Some(dir.join(name)).filter(|p| p.is_file());
        Self {
            text_encoder: dir.join(TEXT_ENCODER),
            music_encoder: dir.join(MUSIC_ENCODER),
            quantizer: dir.join(QUANTIZER),
            vocab: dir.join(VOCAB),
            preprocessor: present(PREPROCESSOR),
            mapper: present(MAPPER),
        }
    }
}

/// `re.search`-like matching of the few patterns the map uses: literal text, `.*` wildcards and
/// one trailing negative look-ahead `(?!x)` or end anchor `$`.
pub(super) fn search(name: &str, pattern: &str) -> bool {
    let (pattern, at_end) = match pattern.strip_suffix('$') {
        Some(p) => (p, true),
        None => (pattern, false),
    };
    let (pattern, not_next) = match pattern.strip_suffix(')').and_then(|p| p.rsplit_once("(?!")) {
        Some((p, ahead)) => (p, Some(ahead)),
        None => (pattern, None),
    };
    let parts: Vec<&str> = pattern.split(".*").collect();
    fn go(name: &str, parts: &[&str], not_next: Option<&str>, at_end: bool) -> bool {
        let Some((first, rest)) = parts.split_first() else { return true };
        let mut from = 0;
        while let Some(at) = name[from..].find(first) {
            let end = from + at + first.len();
            let ok = if rest.is_empty() {
                not_next.is_none_or(|n| !name[end..].starts_with(n)) && (!at_end || end == name.len())
            } else {
                go(&name[end..], rest, not_next, at_end)
            };
            if ok {
                return true;
            }
            // Next start: one character on.
            match name[from + at..].chars().next() {
                Some(c) => from += at + c.len_utf8(),
                None => return false,
            }
        }
        false
    }
    go(name, &parts, not_next, at_end)
}

/// Constants of one subgraph, found by name pattern and shape (`None` = any size).
pub(super) struct Graph<'a> {
    pub model: &'a TfLite,
    pub subgraph: usize,
}

/// The body subgraph of the first WHILE operator of subgraph 0 (a layer loop).
pub(super) fn while_body(model: &TfLite) -> Result<usize, StyleError> {
    model
        .subgraphs()
        .first()
        .and_then(|sg| sg.operators.iter().find_map(|op| op.while_subgraphs.filter(|_| op.builtin == builtin::WHILE)))
        .map(|(_, body)| body)
        .ok_or_else(|| StyleError::Weights(format!("{}: no WHILE operator in subgraph 0 (the layer loop)", model.path().display())))
}

impl<'a> Graph<'a> {
    pub(super) fn err(&self, reason: String) -> StyleError {
        StyleError::Weights(format!("{}: {reason}", self.model.path().display()))
    }

    /// The unique constant whose first name segment matches `pattern` (else, as the published
    /// converter does, whose full name matches) with a shape fitting `shape`.
    pub(super) fn find(&self, pattern: &str, shape: &[Option<usize>]) -> Result<&'a TensorEntry, StyleError> {
        let fits = |t: &TensorEntry| t.shape.len() == shape.len() && t.shape.iter().zip(shape).all(|(&d, want)| want.is_none_or(|w| w == d));
        let constants = || self.model.subgraph_tensors(self.subgraph).iter().filter(|t| t.is_constant());
        let first: Vec<&TensorEntry> = constants().filter(|t| search(t.first_name(), pattern)).collect();
        let named = if first.iter().any(|t| fits(t)) { first } else { constants().filter(|t| search(&t.name, pattern)).collect() };
        let hits: Vec<&TensorEntry> = named.iter().copied().filter(|t| fits(t)).collect();
        match hits.as_slice() {
            [one] => Ok(one),
            [] if named.is_empty() => {
                Err(self.err(format!("no constant tensor matching `{pattern}` (subgraph {}), expected shape {}", self.subgraph, shape_text(shape))))
            }
            [] => Err(self.err(format!(
                "tensor {} has shape {}, expected {}",
                named.iter().map(|t| format!("`{}`", t.name)).collect::<Vec<_>>().join(", "),
                named.iter().map(|t| format!("{:?}", t.shape)).collect::<Vec<_>>().join(", "),
                shape_text(shape)
            ))),
            many => Err(self.err(format!(
                "{} constant tensors match `{pattern}` with shape {}: {:?}",
                many.len(),
                shape_text(shape),
                many.iter().map(|t| t.name.as_str()).collect::<Vec<_>>()
            ))),
        }
    }

    fn read(&self, t: &TensorEntry) -> Result<HostTensor, StyleError> {
        Ok(HostTensor::new(t.shape.clone(), self.model.read_f32(t)?))
    }

    pub(super) fn get(&self, pattern: &str, shape: &[Option<usize>]) -> Result<HostTensor, StyleError> {
        self.read(self.find(pattern, shape)?)
    }

    fn arg_entry(&self, n: usize) -> Result<&'a TensorEntry, StyleError> {
        let name = format!("jax2tf_arg_{n}");
        self.model
            .subgraph_tensors(self.subgraph)
            .iter()
            .find(|t| t.is_constant() && (t.first_name() == name || t.first_name().starts_with(&format!("{name}/"))))
            .ok_or_else(|| self.err(format!("no constant `{name}` in the WHILE body (subgraph {})", self.subgraph)))
    }

    /// The shape of the `jax2tf_arg_{n}` constant.
    pub(super) fn arg_shape(&self, n: usize) -> Result<Vec<usize>, StyleError> {
        Ok(self.arg_entry(n)?.shape.clone())
    }

    /// The `jax2tf_arg_{n}` constant (a WHILE body's loop weight), which must have `shape`.
    pub(super) fn arg(&self, n: usize, shape: &[usize]) -> Result<HostTensor, StyleError> {
        let t = self.arg_entry(n)?;
        if t.shape != shape {
            return Err(self.err(format!("tensor `{}` has shape {:?}, expected {shape:?}", t.name, t.shape)));
        }
        self.read(t)
    }
}

fn s(v: usize) -> Option<usize> {
    Some(v)
}

/// `[rows, cols]` → `[cols, rows]`.
fn transposed(t: &HostTensor) -> Vec<f32> {
    let (rows, cols) = (t.shape[0], t.shape[1]);
    let mut out = vec![0f32; t.data.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = t.data[r * cols + c];
        }
    }
    out
}

/// A LayerNorm stored as gain (`1 + scale` folded) and bias `[1, 1, d]`, as Praxis offsets. The
/// gain − 1 is exact for gains in [0.5, 2] (Sterbenz) and within an ulp of the gain elsewhere.
fn folded_norm(g: &Graph<'_>, prefix: &str, d: usize) -> Result<NormParams, StyleError> {
    let gain = g.get(&format!("{prefix}broadcast_in_dim1"), &[s(1), s(1), s(d)])?;
    let bias = g.get(&format!("{prefix}broadcast_in_dim(?!1)"), &[s(1), s(1), s(d)])?;
    Ok(NormParams { scale: HostTensor::new(vec![d], gain.data.iter().map(|v| v - 1.0).collect()), bias: HostTensor::new(vec![d], bias.data) })
}

/// The attention pooler of `scope` (`contrastive_txt_pooler`, `contrastive_music_pooler`).
fn read_pool(g: &Graph<'_>, scope: &str, d: usize) -> Result<PoolParams, StyleError> {
    let query = g.get(&format!("{scope}/pool_attn/.*qk_einsum"), &[s(1), None, s(1), None])?;
    let (hp, dp) = (query.shape[1], query.shape[3]);
    let hd = hp * dp;
    let kernel_in = |name: &str| -> Result<HostTensor, StyleError> {
        let w = g.get(&format!("{scope}/pool_attn/{name}/einsum"), &[s(hd), s(d)])?;
        Ok(HostTensor::new(vec![d, hp, dp], transposed(&w)))
    };
    let bias = |name: &str| -> Result<HostTensor, StyleError> {
        Ok(HostTensor::new(vec![hp, dp], g.get(&format!("{scope}/pool_attn/{name}/add"), &[s(hd)])?.data))
    };
    let post = g.get(&format!("{scope}/pool_attn/post/einsum"), &[s(d), s(hd)])?;
    Ok(PoolParams::with_folded_query(
        HostTensor::new(vec![hp, dp], query.data),
        kernel_in("key")?,
        bias("key")?,
        kernel_in("value")?,
        bias("value")?,
        // [d, Hp·Dp] is already `post_w [d, Hp, Dp]` contracted over (Hp, Dp).
        HostTensor::new(vec![d, hp, dp], post.data),
        g.get(&format!("{scope}/pool_attn/post/add"), &[s(d)])?,
        folded_norm(g, &format!("{scope}/pool_attn_ln/"), d)?,
    ))
}

/// Stacks per-layer tensors `[…]` into `[L, …]`.
fn stack(layers: Vec<HostTensor>) -> HostTensor {
    let mut shape = vec![layers.len()];
    shape.extend(layers.first().map_or(&[][..], |t| &t.shape[..]));
    HostTensor::new(shape, layers.into_iter().flat_map(|t| t.data).collect())
}

/// The token table `[vocab, d]`: the constant named like `emb` (not `position_emb`) of that
/// shape; should several fit, the one a GATHER operator of subgraph 0 looks up.
fn read_token_table(g: &Graph<'_>, d: usize) -> Result<HostTensor, StyleError> {
    let fits = |t: &&TensorEntry| {
        let n = t.first_name();
        t.is_constant() && t.shape.len() == 2 && t.shape[1] == d && search(n, "emb") && !search(n, "position_emb")
    };
    let found: Vec<&TensorEntry> = g.model.subgraph_tensors(0).iter().filter(fits).collect();
    let gathered: Vec<&TensorEntry> = match found.len() {
        0 | 1 => found.clone(),
        _ => found
            .iter()
            .copied()
            .filter(|t| {
                let ops = g.model.subgraphs().first().map(|sg| sg.operators.as_slice()).unwrap_or(&[]);
                ops.iter().any(|op| op.builtin == builtin::GATHER && op.inputs.first() == Some(&(t.index as i32)))
            })
            .collect(),
    };
    match gathered.as_slice() {
        [one] => g.read(one),
        [] if found.is_empty() => g.get("emb", &[None, s(d)]),
        _ => Err(g.err(format!(
            "several text token tables [vocab, {d}] and none (or several) looked up by a GATHER: {:?}",
            found.iter().map(|t| t.name.as_str()).collect::<Vec<_>>()
        ))),
    }
}

/// Reads `text_encoder.tflite` into the text tower; `heads` is the attention head count (not in
/// the file's shapes: the music tower's).
pub fn read_text_encoder(path: &Path, heads: usize) -> Result<TextParams, StyleError> {
    let model = TfLite::open(path)?;
    let g = Graph { model: &model, subgraph: 0 };
    let positions = g.get("position_emb", &[s(1), None, None])?;
    let (p, d) = (positions.shape[1], positions.shape[2]);
    let positions = HostTensor::new(vec![p, d], positions.data);
    let table = read_token_table(&g, d)?;
    let vocab = table.shape[0];
    if vocab == 0 || p == 0 || d == 0 {
        return Err(g.err(format!("text embedding table [{vocab}, {d}] and positions [{p}, {d}] must not be empty")));
    }
    // Layers: the `x_layers_{i}/` names present, which must be 0..L.
    let mut found: Vec<usize> = model
        .subgraph_tensors(0)
        .iter()
        .filter(|t| t.is_constant())
        .filter_map(|t| {
            let n = t.first_name();
            let at = n.find("x_layers_")? + "x_layers_".len();
            let digits: String = n[at..].chars().take_while(char::is_ascii_digit).collect();
            n[at + digits.len()..].starts_with('/').then(|| digits.parse().ok()).flatten()
        })
        .collect();
    found.sort_unstable();
    found.dedup();
    let layers = found.len();
    if layers == 0 || found.iter().enumerate().any(|(i, &l)| i != l) {
        return Err(g.err(format!("expected text layers x_layers_0..x_layers_(L−1), found {found:?}")));
    }
    let q0 = g.find("x_layers_0/self_attention/.*_scale_query/mul", &[None, s(d)])?;
    let hd = q0.shape[0];
    let f = g.find("x_layers_0/.*ffn_layer1/linear", &[None, s(d)])?.shape[0];
    if heads == 0 || !hd.is_multiple_of(heads) {
        return Err(g.err(format!("query width {hd} (tensor `{}`) does not split into {heads} heads", q0.name)));
    }
    let dh = hd / heads;
    // The exporter folded 1/√Dh into the query; the towers apply it at run time.
    let unscale = (dh as f32).sqrt();
    let mut per: Vec<Vec<HostTensor>> = vec![Vec::new(); 12];
    let mut norms: [Vec<NormParams>; 2] = [Vec::new(), Vec::new()];
    for i in 0..layers {
        let l = format!("x_layers_{i}/");
        let kernel = |name: &str, scale: f32| -> Result<HostTensor, StyleError> {
            let w = g.get(&format!("{l}self_attention/{name}"), &[s(hd), s(d)])?;
            Ok(HostTensor::new(vec![d, heads, dh], transposed(&w).into_iter().map(|v| v * scale).collect()))
        };
        let bias = |name: &str, scale: f32| -> Result<HostTensor, StyleError> {
            let b = g.get(&format!("{l}self_attention/{name}"), &[s(hd)])?;
            Ok(HostTensor::new(vec![heads, dh], b.data.into_iter().map(|v| v * scale).collect()))
        };
        let ffn1 = g.get(&format!("{l}.*ffn_layer1/linear"), &[s(f), s(d)])?;
        let ffn2 = g.get(&format!("{l}.*ffn_layer2/linear"), &[s(d), s(f)])?;
        let post = g.get(&format!("{l}self_attention/post/einsum"), &[s(d), s(hd)])?;
        // In StackParams order (v1 leaves 64..=79, norms apart).
        let tensors = [
            g.get(&format!("{l}.*ffn_layer1/bias"), &[s(f)])?,
            HostTensor::new(vec![d, f], transposed(&ffn1)),
            g.get(&format!("{l}.*ffn_layer2/bias"), &[s(d)])?,
            HostTensor::new(vec![f, d], transposed(&ffn2)),
            bias("key/add", 1.0)?,
            kernel("key/einsum", 1.0)?,
            g.get(&format!("{l}self_attention/post/add"), &[s(d)])?,
            HostTensor::new(vec![d, heads, dh], post.data),
            bias(".*_scale_query/mul", unscale)?,
            kernel(".*_scale_query/mul", unscale)?,
            bias("value/add", 1.0)?,
            kernel("value/einsum", 1.0)?,
        ];
        for (k, t) in tensors.into_iter().enumerate() {
            per[k].push(t);
        }
        norms[0].push(folded_norm(&g, &format!("{l}ff_layer/layer_norm/"), d)?);
        norms[1].push(folded_norm(&g, &format!("{l}layer_norm/"), d)?);
    }
    let mut it = per.into_iter().map(stack);
    let mut next = || it.next().expect("12 slots, taken once each below");
    let stack_norm = |ns: &[NormParams]| NormParams {
        bias: stack(ns.iter().map(|n| n.bias.clone()).collect()),
        scale: stack(ns.iter().map(|n| n.scale.clone()).collect()),
    };
    let (ffn1_b, ffn1_w, ffn2_b, ffn2_w) = (next(), next(), next(), next());
    let (key_b, key_w, post_b, post_w) = (next(), next(), next(), next());
    let (query_b, query_w, value_b, value_w) = (next(), next(), next(), next());
    let layers = StackParams {
        ffn1_b,
        ffn1_w,
        ffn2_b,
        ffn2_w,
        ff_norm: stack_norm(&norms[0]),
        attn_norm: stack_norm(&norms[1]),
        key_b,
        key_w,
        post_b,
        post_w,
        query_b,
        query_w,
        value_b,
        value_w,
    };
    Ok(TextParams {
        embedding: TextEmbedding::Learned { table, positions },
        layers,
        exit_norm: folded_norm(&g, "exit_stack/ln/", d)?,
        pool: read_pool(&g, "contrastive_txt_pooler", d)?,
    })
}

/// Reads `music_encoder.tflite` into the audio tower; also returns the head count `H`.
pub fn read_music_encoder(path: &Path) -> Result<(AudioParams, usize), StyleError> {
    let model = TfLite::open(path)?;
    let g = Graph { model: &model, subgraph: 0 };
    let patch = g.get("patch_projection/linear", &[None, None])?;
    let (d, p2) = (patch.shape[0], patch.shape[1]);
    let entry = g.get("entry_stack/add", &[s(1), None, s(d)])?;
    let patches = entry.shape[1];
    let b = Graph { model: &model, subgraph: while_body(&model)? };
    // Widths from the stacked key kernel [L, d, H, Dh] (arg 55) and FFN kernel [L, d, F] (arg 47).
    let (k, f1) = (b.arg_shape(55)?, b.arg_shape(47)?);
    let (layers, heads, dh, f) = match (k.as_slice(), f1.as_slice()) {
        ([l, kd, h, dh], [_, _, f]) if *kd == d => (*l, *h, *dh, *f),
        _ => return Err(b.err(format!("jax2tf_arg_55 {k:?} / jax2tf_arg_47 {f1:?}: expected [L, {d}, H, Dh] / [L, {d}, F]"))),
    };
    let dims = super::params::Dims { d, audio_layers: layers, heads, head_dim: dh, ffn: f, ..super::params::Dims::released() };
    let mut args = Vec::with_capacity(16);
    for n in 46..62 {
        let shape = dims.v1_shape(n).expect("leaves 46..=61 are the audio layers");
        args.push(b.arg(n, &shape)?);
    }
    let mut it = args.into_iter();
    let mut t = || it.next().expect("16 args read above");
    let (ffn1_b, ffn1_w, ffn2_b, ffn2_w) = (t(), t(), t(), t());
    let ff_norm = NormParams { bias: t(), scale: t() };
    let attn_norm = NormParams { bias: t(), scale: t() };
    let (key_b, key_w, post_b, post_w) = (t(), t(), t(), t());
    let (query_b, query_w, value_b, value_w) = (t(), t(), t(), t());
    let layers = StackParams { ffn1_b, ffn1_w, ffn2_b, ffn2_w, ff_norm, attn_norm, key_b, key_w, post_b, post_w, query_b, query_w, value_b, value_w };
    Ok((
        AudioParams {
            patch_w: HostTensor::new(vec![p2, d], transposed(&patch)),
            // Folded into entry_stack/add with the positions.
            patch_b: HostTensor::new(vec![d], vec![0.0; d]),
            pos_emb: HostTensor::new(vec![patches, d], entry.data),
            layers,
            exit_norm: folded_norm(&g, "exit_stack/ln/", d)?,
            pool: read_pool(&g, "contrastive_music_pooler", d)?,
        },
        heads,
    ))
}

/// Both towers: the music tower first (it gives the head count).
pub fn read_params(paths: &Mrt2StylePaths) -> Result<MusicCocaParams, StyleError> {
    let (audio, heads) = read_music_encoder(&paths.music_encoder)?;
    let text = read_text_encoder(&paths.text_encoder, heads)?;
    let params = MusicCocaParams { text, audio };
    params.dims().map_err(|e| {
        StyleError::Weights(format!("{} / {}: {e}", paths.text_encoder.display(), paths.music_encoder.display()))
    })?;
    Ok(params)
}

/// Reads the style RVQ codebooks `[levels, codes, d]` from `pretrained_vector_quantizer.tflite`:
/// one FULLY_CONNECTED per level (distances `‖c‖² − 2·c·r`), a GATHER of the chosen code for every
/// level but the last. Checks each FC's weight against −2·c and its bias against ‖c‖²
/// (relative 1e-5 / 1e-3, as the published converter).
pub fn read_quantizer(path: &Path) -> Result<CodebookParams, StyleError> {
    let model = TfLite::open(path)?;
    let err = |reason: String| StyleError::Weights(format!("{}: {reason}", path.display()));
    let ops = model.subgraphs().first().map(|g| g.operators.as_slice()).unwrap_or(&[]);
    let constant = |i: i32| model.tensor(0, i).filter(|t| t.is_constant());
    let mut gather_tables: Vec<&TensorEntry> = Vec::new();
    let mut fcs: Vec<(&TensorEntry, &TensorEntry)> = Vec::new();
    for (k, op) in ops.iter().enumerate() {
        match op.builtin {
            builtin::GATHER => gather_tables.extend(op.inputs.first().and_then(|&i| constant(i))),
            builtin::FULLY_CONNECTED => {
                let w = op.inputs.get(1).and_then(|&i| constant(i));
                let b = op.inputs.get(2).and_then(|&i| constant(i));
                match (w, b) {
                    (Some(w), Some(b)) => fcs.push((w, b)),
                    _ => return Err(err(format!("FULLY_CONNECTED operator {k} lacks a constant weight and bias"))),
                }
            }
            _ => {}
        }
    }
    // The codebooks are the GATHER tables of the distance weights' shape [codes, d] (others, if
    // any, are not codebooks), as the published converter selects them.
    let want = fcs.first().map(|(w, _)| w.shape.clone()).unwrap_or_default();
    let gathers: Vec<&TensorEntry> = gather_tables.into_iter().filter(|t| t.shape == want).collect();
    let levels = fcs.len();
    if levels == 0 || gathers.len() + 1 != levels || want.len() != 2 {
        return Err(err(format!(
            "expected one FULLY_CONNECTED per level and a GATHER table of its weight's shape for every level but the last; \
             found {} and {} (weight shape {want:?})",
            fcs.len(),
            gathers.len()
        )));
    }
    let (codes, d) = (want[0], want[1]);
    if let Some((w, _)) = fcs.iter().find(|(w, _)| w.shape != want) {
        return Err(err(format!("tensor `{}` has shape {:?}, expected {want:?}", w.name, w.shape)));
    }
    if let Some((_, b)) = fcs.iter().find(|(_, b)| b.shape != [codes]) {
        return Err(err(format!("tensor `{}` has shape {:?}, expected [{codes}]", b.name, b.shape)));
    }
    let mut data = Vec::with_capacity(levels * codes * d);
    for t in &gathers {
        data.extend(model.read_f32(t)?);
    }
    let last = model.read_f32(fcs[levels - 1].0)?;
    data.extend(last.iter().map(|v| -0.5 * v));
    for (level, (w, b)) in fcs.iter().enumerate() {
        let book = &data[level * codes * d..(level + 1) * codes * d];
        let weight = model.read_f32(w)?;
        let bias = model.read_f32(b)?;
        let close = |x: f64, y: f64, rtol: f64, atol: f64| (x - y).abs() <= atol + rtol * y.abs();
        if let Some(i) = weight.iter().zip(book).position(|(&w, &c)| !close(f64::from(w), -2.0 * f64::from(c), 1e-5, 1e-7)) {
            return Err(err(format!("level {level}: weight `{}` value {i} is {}, not −2 × the codebook's {}", w.name, weight[i], book[i])));
        }
        for (c, &got) in bias.iter().enumerate() {
            let norm: f64 = book[c * d..(c + 1) * d].iter().map(|&v| f64::from(v).powi(2)).sum();
            if !close(f64::from(got), norm, 1e-3, 1e-5) {
                return Err(err(format!("level {level}: bias `{}` of code {c} is {got}, not the codebook's ‖c‖² = {norm}", b.name)));
            }
        }
    }
    Ok(CodebookParams { levels, codebook_size: codes, dim: d, data })
}

#[cfg(test)]
mod tests {
    use super::search;

    #[test]
    fn patterns_follow_the_converters_regular_expressions() {
        assert!(search("a/x_layers_3/self_attention/query/einsum_scale_query/mul", "x_layers_3/self_attention/.*_scale_query/mul"));
        assert!(!search("a/x_layers_13/self_attention/q_scale_query/mul", "x_layers_3/self_attention/.*_scale_query/mul"));
        assert!(search("exit_stack/ln/broadcast_in_dim", "exit_stack/ln/broadcast_in_dim(?!1)"));
        assert!(search("exit_stack/ln/broadcast_in_dim2", "exit_stack/ln/broadcast_in_dim(?!1)"));
        assert!(!search("exit_stack/ln/broadcast_in_dim1", "exit_stack/ln/broadcast_in_dim(?!1)"));
        assert!(search("exit_stack/ln/broadcast_in_dim1", "exit_stack/ln/broadcast_in_dim1"));
        // A later occurrence can satisfy the look-ahead.
        assert!(search("b_dim1/b_dim", "b_dim(?!1)"));
        assert!(search("x/ff_layer/ffn_layer1/linear", "x/.*ffn_layer1/linear"));
        assert!(!search("x/ff_layer/ffn_layer2/linear", "x/.*ffn_layer1/linear"));
        assert!(search("anything", ""));
        assert!(search("a/arith.constant1", "arith.constant1$"));
        assert!(!search("a/arith.constant12", "arith.constant1$"));
        assert!(search("arith.constant12/arith.constant1", "arith.constant1$"));
    }
}
