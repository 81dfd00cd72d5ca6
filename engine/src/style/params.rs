//! MusicCoCa parameters on the host, and where they sit among the 80 anonymous variables of the v1
//! SavedModel `savedmodels/musiccoca_mv212f_cpu_novocab` (spec §3.1).
//!
//! The SavedModel is a jax2tf export: its variables are the leaves of the JAX parameter tree,
//! `tf_var_leaves/N`, numbered in pytree order, which is the **sorted** order of the Praxis
//! parameter paths. Each block below is therefore alphabetical inside:
//!
//! ```text
//!  leaf  0..=11  contrastive_music_pooler  pool_attn/{key b,w · per_dim_scale · post b,w · query b,w ·
//!                                          value b,w} · pool_attn_ln/{bias,scale} · pooling_attn_query
//!  leaf 12       (a scalar between the poolers; unused)
//!  leaf 13..=24  contrastive_txt_pooler    (same 12 leaves)
//!  leaf 25, 26   (unused: a [d] vector, the [vocab] softmax bias)
//!  leaf 27       shared embedding-softmax  logits_ffn/linear/w [d, vocab]: text embedding = wᵀ·√d
//!  leaf 28..=40  (unused)
//!  leaf 41..=43  audio entry               patch_projection/{bias b, linear w [p², d]} · pos_emb [patches, d]
//!  leaf 44, 45   audio exit_stack/ln       {bias, scale}
//!  leaf 46..=61  audio layers, stacked [L, …]   ff_layer/{ffn_layer1 b,w · ffn_layer2 b,w · layer_norm bias,scale}
//!                                               · layer_norm/{bias,scale} · self_attention/{key b,w · post b,w ·
//!                                               query b,w · value b,w}
//!  leaf 62, 63   text exit_stack/ln        {bias, scale}
//!  leaf 64..=79  text layers, stacked      (same 16 leaves)
//! ```
//!
//! Leaves 13–27 and 64–79 were matched by value against the graph by a public port
//! (kvark/meganeura); the pooler's `per_dim_scale` (15), the exit norms (44–45, 62–63) and the
//! audio block (0–11, 41–61) follow from the sorted-path rule and the MRT2 TFLite export (whose
//! music tower keeps leaves 46–61 as its loop weights). Every leaf's shape is checked at load; a
//! file that does not fit this map is an error naming the leaf, its role and both shapes.
//! `mrt verify --official` settles the map against the official test data.

pub use crate::formats::tensor::HostTensor;

/// LayerNorm with Praxis' parameterisation: `y = (x − μ)/√(σ² + ε) · (1 + scale) + bias`.
#[derive(Clone, Debug, PartialEq)]
pub struct NormParams {
    pub bias: HostTensor,
    pub scale: HostTensor,
}

/// `L` stacked pre-LN transformer layers (Praxis `x_layers` under `repeat`/`scan`).
#[derive(Clone, Debug, PartialEq)]
pub struct StackParams {
    /// `[L, F]`, `[L, d, F]`
    pub ffn1_b: HostTensor,
    pub ffn1_w: HostTensor,
    /// `[L, d]`, `[L, F, d]`
    pub ffn2_b: HostTensor,
    pub ffn2_w: HostTensor,
    /// Pre-FFN norm, `[L, d]` each.
    pub ff_norm: NormParams,
    /// Pre-attention norm, `[L, d]` each.
    pub attn_norm: NormParams,
    /// `[L, H, Dh]` biases, `[L, d, H, Dh]` kernels; `post_w` is contracted over `(H, Dh)`.
    pub key_b: HostTensor,
    pub key_w: HostTensor,
    pub post_b: HostTensor,
    pub post_w: HostTensor,
    pub query_b: HostTensor,
    pub query_w: HostTensor,
    pub value_b: HostTensor,
    pub value_w: HostTensor,
}

/// Attention pooling: one learned query attends over the tower output, then a LayerNorm.
#[derive(Clone, Debug, PartialEq)]
pub struct PoolParams {
    /// `[Hp, Dp]` biases, `[d, Hp, Dp]` kernels.
    pub key_b: HostTensor,
    pub key_w: HostTensor,
    /// `[Dp]`: the query is scaled by `1.442695041/√Dp · softplus(per_dim_scale)`.
    pub per_dim_scale: HostTensor,
    pub post_b: HostTensor,
    pub post_w: HostTensor,
    pub query_b: HostTensor,
    pub query_w: HostTensor,
    pub value_b: HostTensor,
    pub value_w: HostTensor,
    pub norm: NormParams,
    /// `[1, d]`.
    pub query: HostTensor,
}

impl PoolParams {
    /// A pooler whose query was projected and scaled ahead of time (MRT2's exports constant-fold
    /// `(query·Wq + bq) · 1.442695/√Dp · softplus(per_dim_scale)` into one `[Hp, Dp]` tensor).
    /// Stored in the learned form so that one pooler serves both: `query` and `query_w` zero,
    /// `per_dim_scale` zero (softplus(0) = ln 2, so the scale is exactly 1/√Dp) and
    /// `query_b = folded · √Dp`; the pooler's f64 arithmetic then gives back `folded` to within
    /// f64 rounding before the f32 result.
    #[allow(clippy::too_many_arguments)] // the pooler's parts, each named at the call site
    pub fn with_folded_query(
        folded: HostTensor,
        key_w: HostTensor,
        key_b: HostTensor,
        value_w: HostTensor,
        value_b: HostTensor,
        post_w: HostTensor,
        post_b: HostTensor,
        norm: NormParams,
    ) -> Self {
        let (d, hp, dp) = (key_w.shape[0], key_w.shape[1], key_w.shape[2]);
        let root = (dp as f64).sqrt();
        let query_b = HostTensor::new(folded.shape.clone(), folded.data.iter().map(|&v| (f64::from(v) * root) as f32).collect());
        Self {
            key_b,
            key_w,
            per_dim_scale: HostTensor::new(vec![dp], vec![0.0; dp]),
            post_b,
            post_w,
            query_b,
            query_w: HostTensor::new(vec![d, hp, dp], vec![0.0; d * hp * dp]),
            value_b,
            value_w,
            norm,
            query: HostTensor::new(vec![1, d], vec![0.0; d]),
        }
    }
}

/// How the text tower turns ids into its input rows.
#[derive(Clone, Debug, PartialEq)]
pub enum TextEmbedding {
    /// v1: the shared embedding-softmax kernel `[d, vocab]`; a row is its transpose × √d, plus a
    /// computed sinusoid of the position.
    Softmax(HostTensor),
    /// MRT2 (`text_encoder.tflite`): a learned table `[vocab, d]` and learned positions
    /// `[positions, d]`, added as they are (no √d, no sinusoid).
    Learned { table: HostTensor, positions: HostTensor },
}

impl TextEmbedding {
    /// `(d, vocab)`.
    pub fn d_vocab(&self) -> (usize, usize) {
        let dim = |t: &HostTensor, i: usize| t.shape.get(i).copied().unwrap_or(0);
        match self {
            TextEmbedding::Softmax(w) => (dim(w, 0), dim(w, 1)),
            TextEmbedding::Learned { table, .. } => (dim(table, 1), dim(table, 0)),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct TextParams {
    pub embedding: TextEmbedding,
    pub layers: StackParams,
    pub exit_norm: NormParams,
    pub pool: PoolParams,
}

#[derive(Clone, Debug, PartialEq)]
pub struct AudioParams {
    /// `[p², d]`, `[d]`.
    pub patch_w: HostTensor,
    pub patch_b: HostTensor,
    /// `[patches, d]`, learned.
    pub pos_emb: HostTensor,
    pub layers: StackParams,
    pub exit_norm: NormParams,
    pub pool: PoolParams,
}

#[derive(Clone, Debug, PartialEq)]
pub struct MusicCocaParams {
    pub text: TextParams,
    pub audio: AudioParams,
}

/// Number of leaves in the v1 SavedModel.
pub const V1_LEAVES: usize = 80;

/// What a v1 leaf holds, for the map and for error messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Unused,
    MusicPool(usize),
    TextPool(usize),
    TextSoftmax,
    AudioPatchB,
    AudioPatchW,
    AudioPosEmb,
    AudioExitNorm(usize),
    AudioLayers(usize),
    TextExitNorm(usize),
    TextLayers(usize),
}

const POOL_NAMES: [&str; 12] = [
    "pool_attn/key/b",
    "pool_attn/key/w",
    "pool_attn/per_dim_scale",
    "pool_attn/post/b",
    "pool_attn/post/w",
    "pool_attn/query/b",
    "pool_attn/query/w",
    "pool_attn/value/b",
    "pool_attn/value/w",
    "pool_attn_ln/bias",
    "pool_attn_ln/scale",
    "pooling_attn_query",
];

const STACK_NAMES: [&str; 16] = [
    "ff_layer/ffn_layer1/bias/b",
    "ff_layer/ffn_layer1/linear/w",
    "ff_layer/ffn_layer2/bias/b",
    "ff_layer/ffn_layer2/linear/w",
    "ff_layer/layer_norm/bias",
    "ff_layer/layer_norm/scale",
    "layer_norm/bias",
    "layer_norm/scale",
    "self_attention/key/b",
    "self_attention/key/w",
    "self_attention/post/b",
    "self_attention/post/w",
    "self_attention/query/b",
    "self_attention/query/w",
    "self_attention/value/b",
    "self_attention/value/w",
];

/// The role of v1 leaf `i`.
pub fn v1_role(i: usize) -> Role {
    match i {
        0..=11 => Role::MusicPool(i),
        13..=24 => Role::TextPool(i - 13),
        27 => Role::TextSoftmax,
        41 => Role::AudioPatchB,
        42 => Role::AudioPatchW,
        43 => Role::AudioPosEmb,
        44 | 45 => Role::AudioExitNorm(i - 44),
        46..=61 => Role::AudioLayers(i - 46),
        62 | 63 => Role::TextExitNorm(i - 62),
        64..=79 => Role::TextLayers(i - 64),
        _ => Role::Unused,
    }
}

impl Role {
    pub fn describe(self) -> String {
        let norm = |k: usize| if k == 0 { "bias" } else { "scale" };
        match self {
            Role::Unused => "unused by inference".into(),
            Role::MusicPool(k) => format!("audio pooler {}", POOL_NAMES[k]),
            Role::TextPool(k) => format!("text pooler {}", POOL_NAMES[k]),
            Role::TextSoftmax => "text embedding-softmax logits_ffn/linear/w".into(),
            Role::AudioPatchB => "audio patch_projection/bias/b".into(),
            Role::AudioPatchW => "audio patch_projection/linear/w".into(),
            Role::AudioPosEmb => "audio pos_emb".into(),
            Role::AudioExitNorm(k) => format!("audio exit_stack/ln/{}", norm(k)),
            Role::AudioLayers(k) => format!("audio layers {}", STACK_NAMES[k]),
            Role::TextExitNorm(k) => format!("text exit_stack/ln/{}", norm(k)),
            Role::TextLayers(k) => format!("text layers {}", STACK_NAMES[k]),
        }
    }
}

/// The widths of a MusicCoCa, read off its parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dims {
    pub d: usize,
    pub vocab: usize,
    pub text_layers: usize,
    pub audio_layers: usize,
    pub heads: usize,
    pub head_dim: usize,
    pub ffn: usize,
    pub pool_heads: usize,
    pub pool_head_dim: usize,
    /// Patch side (16): patches are `patch × patch` mel cells.
    pub patch: usize,
    pub patches: usize,
}

impl Dims {
    /// The released model: d 768, 12 + 12 layers of 12 × 64 heads, FFN 3072, pool 12 × 256,
    /// 496 patches of 16 × 16, vocabulary 64000.
    pub fn released() -> Self {
        Self {
            d: 768,
            vocab: 64000,
            text_layers: 12,
            audio_layers: 12,
            heads: 12,
            head_dim: 64,
            ffn: 3072,
            pool_heads: 12,
            pool_head_dim: 256,
            patch: 16,
            patches: 496,
        }
    }

    /// The expected shape of v1 leaf `i` (`None` for unused leaves, which may be anything).
    pub fn v1_shape(&self, i: usize) -> Option<Vec<usize>> {
        let Dims { d, vocab, heads: h, head_dim: dh, ffn: f, pool_heads: hp, pool_head_dim: dp, .. } = *self;
        let pool = |k: usize| match k {
            0 | 5 | 7 => vec![hp, dp],
            1 | 4 | 6 | 8 => vec![d, hp, dp],
            2 => vec![dp],
            3 | 9 | 10 => vec![d],
            _ => vec![1, d],
        };
        let stack = |l: usize, k: usize| match k {
            0 => vec![l, f],
            1 => vec![l, d, f],
            2 | 4..=7 | 10 => vec![l, d],
            3 => vec![l, f, d],
            8 | 12 | 14 => vec![l, h, dh],
            _ => vec![l, d, h, dh],
        };
        Some(match v1_role(i) {
            Role::Unused => return None,
            Role::MusicPool(k) | Role::TextPool(k) => pool(k),
            Role::TextSoftmax => vec![d, vocab],
            Role::AudioPatchB | Role::AudioExitNorm(_) | Role::TextExitNorm(_) => vec![d],
            Role::AudioPatchW => vec![self.patch * self.patch, d],
            Role::AudioPosEmb => vec![self.patches, d],
            Role::AudioLayers(k) => stack(self.audio_layers, k),
            Role::TextLayers(k) => stack(self.text_layers, k),
        })
    }

    /// Reads the widths off the leaf shapes (`shape(i)` of leaf `i`), so that one loader serves
    /// the released model and tiny test models alike.
    pub fn from_v1_shapes(shape: impl Fn(usize) -> Option<Vec<usize>>) -> Result<Self, String> {
        let get = |i: usize, rank: usize| -> Result<Vec<usize>, String> {
            let s = shape(i).ok_or_else(|| format!("leaf {i} ({}) is missing", v1_role(i).describe()))?;
            if s.len() != rank {
                return Err(format!("leaf {i} ({}) has shape {s:?}, expected rank {rank}", v1_role(i).describe()));
            }
            Ok(s)
        };
        let softmax = get(27, 2)?;
        let text_q = get(64 + 13, 4)?;
        let audio_q = get(46 + 13, 4)?;
        let ffn = get(64, 2)?;
        let pool_q = get(13 + 6, 3)?;
        let patch_w = get(42, 2)?;
        let pos = get(43, 2)?;
        let patch = (patch_w[0] as f64).sqrt().round() as usize;
        if patch * patch != patch_w[0] {
            return Err(format!("leaf 42 (audio patch projection) has {} rows, not a square patch", patch_w[0]));
        }
        Ok(Self {
            d: softmax[0],
            vocab: softmax[1],
            text_layers: text_q[0],
            audio_layers: audio_q[0],
            heads: text_q[2],
            head_dim: text_q[3],
            ffn: ffn[1],
            pool_heads: pool_q[1],
            pool_head_dim: pool_q[2],
            patch,
            patches: pos[0],
        })
    }
}

/// Assembles the towers from the 80 v1 leaves (`take(i)` yields leaf `i`, already checked
/// against [`Dims::v1_shape`]).
pub fn from_v1_leaves(mut take: impl FnMut(usize) -> HostTensor) -> MusicCocaParams {
    let mut pool = |base: usize| {
        let mut t = |k: usize| take(base + k);
        let (key_b, key_w, per_dim_scale, post_b, post_w) = (t(0), t(1), t(2), t(3), t(4));
        let (query_b, query_w, value_b, value_w) = (t(5), t(6), t(7), t(8));
        let norm = NormParams { bias: t(9), scale: t(10) };
        PoolParams { key_b, key_w, per_dim_scale, post_b, post_w, query_b, query_w, value_b, value_w, norm, query: t(11) }
    };
    let music_pool = pool(0);
    let text_pool = pool(13);
    let mut stack = |base: usize| {
        let mut t = |k: usize| take(base + k);
        let (ffn1_b, ffn1_w, ffn2_b, ffn2_w) = (t(0), t(1), t(2), t(3));
        let ff_norm = NormParams { bias: t(4), scale: t(5) };
        let attn_norm = NormParams { bias: t(6), scale: t(7) };
        let (key_b, key_w, post_b, post_w) = (t(8), t(9), t(10), t(11));
        let (query_b, query_w, value_b, value_w) = (t(12), t(13), t(14), t(15));
        StackParams { ffn1_b, ffn1_w, ffn2_b, ffn2_w, ff_norm, attn_norm, key_b, key_w, post_b, post_w, query_b, query_w, value_b, value_w }
    };
    let audio_layers = stack(46);
    let text_layers = stack(64);
    let audio = AudioParams {
        patch_b: take(41),
        patch_w: take(42),
        pos_emb: take(43),
        layers: audio_layers,
        exit_norm: NormParams { bias: take(44), scale: take(45) },
        pool: music_pool,
    };
    let text = TextParams {
        embedding: TextEmbedding::Softmax(take(27)),
        layers: text_layers,
        exit_norm: NormParams { bias: take(62), scale: take(63) },
        pool: text_pool,
    };
    MusicCocaParams { text, audio }
}

impl MusicCocaParams {
    /// The v1 leaf slots in order (`None` for unused leaves).
    pub fn v1_leaf_refs(&self) -> Vec<Option<&HostTensor>> {
        let mut leaves: Vec<Option<&HostTensor>> = vec![None; V1_LEAVES];
        for (base, p) in [(0, &self.audio.pool), (13, &self.text.pool)] {
            let list = [&p.key_b, &p.key_w, &p.per_dim_scale, &p.post_b, &p.post_w, &p.query_b, &p.query_w, &p.value_b, &p.value_w, &p.norm.bias, &p.norm.scale, &p.query];
            for (k, t) in list.into_iter().enumerate() {
                leaves[base + k] = Some(t);
            }
        }
        for (base, s) in [(46, &self.audio.layers), (64, &self.text.layers)] {
            let list = [
                &s.ffn1_b, &s.ffn1_w, &s.ffn2_b, &s.ffn2_w, &s.ff_norm.bias, &s.ff_norm.scale, &s.attn_norm.bias, &s.attn_norm.scale,
                &s.key_b, &s.key_w, &s.post_b, &s.post_w, &s.query_b, &s.query_w, &s.value_b, &s.value_w,
            ];
            for (k, t) in list.into_iter().enumerate() {
                leaves[base + k] = Some(t);
            }
        }
        if let TextEmbedding::Softmax(w) = &self.text.embedding {
            leaves[27] = Some(w);
        }
        leaves[41] = Some(&self.audio.patch_b);
        leaves[42] = Some(&self.audio.patch_w);
        leaves[43] = Some(&self.audio.pos_emb);
        leaves[44] = Some(&self.audio.exit_norm.bias);
        leaves[45] = Some(&self.audio.exit_norm.scale);
        leaves[62] = Some(&self.text.exit_norm.bias);
        leaves[63] = Some(&self.text.exit_norm.scale);
        leaves
    }

    /// The 80 v1 leaves in order, unused ones as `[1]` zeros (writing files in the official
    /// layout: tiny test models).
    pub fn to_v1_leaves(&self) -> Vec<HostTensor> {
        self.v1_leaf_refs().into_iter().map(|t| t.cloned().unwrap_or_else(|| HostTensor::new(vec![1], vec![0.0]))).collect()
    }

    /// The widths, read off the shapes; every used leaf's shape is checked against them (a
    /// learned text table stands in for leaf 27 with its `[d, vocab]`).
    pub fn dims(&self) -> Result<Dims, String> {
        let refs = self.v1_leaf_refs();
        let (d, vocab) = self.text.embedding.d_vocab();
        let dims = Dims::from_v1_shapes(|i| if i == 27 { Some(vec![d, vocab]) } else { refs[i].map(|t| t.shape.clone()) })?;
        for (i, t) in refs.iter().enumerate() {
            if let (Some(t), Some(want)) = (t, dims.v1_shape(i)) {
                if t.shape != want {
                    return Err(format!("{} has shape {:?}, expected {want:?}", v1_role(i).describe(), t.shape));
                }
            }
        }
        if let TextEmbedding::Learned { table, positions } = &self.text.embedding {
            if table.shape.len() != 2 || table.numel() != table.data.len() {
                return Err(format!("the text embedding table has shape {:?}, expected [vocab, d]", table.shape));
            }
            if positions.shape.len() != 2 || positions.shape[1] != d || positions.shape[0] == 0 || positions.numel() != positions.data.len() {
                return Err(format!("the text position embedding has shape {:?}, expected [positions, {d}]", positions.shape));
            }
        }
        Ok(dims)
    }

    /// Random parameters of the given widths (tests, tiny models, benchmarks): weights
    /// `N(0, 1/fan_in)`, norm offsets and biases small.
    pub fn random(dims: &Dims, seed: u64) -> Self {
        let mut rng = crate::sampling::rng::SplitMix64::new(seed);
        let mut leaves = Vec::with_capacity(V1_LEAVES);
        for i in 0..V1_LEAVES {
            let Some(shape) = dims.v1_shape(i) else {
                leaves.push(HostTensor::new(vec![1], vec![0.0]));
                continue;
            };
            let n: usize = shape.iter().product();
            let d = dims.d as f64;
            let std = match v1_role(i) {
                Role::TextSoftmax => 1.0 / d.sqrt(),
                Role::AudioPosEmb => 0.5,
                Role::AudioPatchW => 1.0 / ((dims.patch * dims.patch) as f64).sqrt(),
                Role::MusicPool(k) | Role::TextPool(k) => match k {
                    1 | 4 | 6 | 8 | 11 => 1.0 / d.sqrt(),
                    2 => 0.5,
                    _ => 0.05,
                },
                Role::AudioLayers(k) | Role::TextLayers(k) => match k {
                    1 | 9 | 11 | 13 | 15 => 1.0 / d.sqrt(),
                    3 => 1.0 / (dims.ffn as f64).sqrt(),
                    _ => 0.05,
                },
                _ => 0.05,
            };
            let data = (0..n).map(|_| (rng.next_normal() * std) as f32).collect();
            leaves.push(HostTensor::new(shape, data));
        }
        let mut it = leaves.into_iter().map(Some).collect::<Vec<_>>();
        from_v1_leaves(|i| it[i].take().unwrap_or_else(|| HostTensor::new(vec![1], vec![0.0])))
    }
}
