//! MusicCoCa's text and audio towers on burn (Praxis CoCa; spec §3.2–3.3, recipe in NOTES.md).
//!
//! ```text
//!  text:  ids ─ E[ids]·√d + [sin | cos](pos · 10000^(−i/(d/2 − 1))) ─┐   (v1)
//!         ids ─ T[ids] + P[pos] ─────────────────────────────────────┤   (MRT2: learned table and positions)
//!  audio: log-mel [992, 128] ─ 16×16 patches (time-major grid) ─ ·W + b + pos_emb ─┤
//!     L × pre-LN layer:  x += post(softmax(50·tanh(q·kᵀ/50) + mask)·v),  q = (LN(x)·Wq + bq)/√Dh
//!                        x += W2·gelu_erf(W1·LN(x) + b1) + b2
//!     ─ LN ─ pool: one learned query, Hp × Dp heads, q · 1.442695/√Dp · softplus(per_dim_scale)
//!     ─ LN ─ 768-d style embedding
//! ```
//!
//! LayerNorms are Praxis': ε 1e-6, `(1 + scale)`. Padded text positions are dropped before the
//! tower: every pad is a masked key in attention and in the pool, so the pooled output equals the
//! masked full-length computation.

use burn::tensor::activation::{gelu, softmax};
use burn::tensor::{Device, Tensor, TensorData};

use super::params::{HostTensor, MusicCocaParams, NormParams, PoolParams, StackParams, TextEmbedding};

const LN_EPS: f64 = 1e-6;
const LOGIT_CAP: f64 = 50.0;
/// `1/ln 2` (Praxis writes 1.442695041): `PerDimScale` makes softplus(0) scale the query by
/// exactly `1/√Dp`.
const PER_DIM_SCALE: f64 = std::f64::consts::LOG2_E;

fn t1(t: &HostTensor, device: &Device) -> Tensor<1> {
    Tensor::from_data(TensorData::new(t.data.clone(), [t.numel()]), device)
}

fn t2(data: Vec<f32>, rows: usize, cols: usize, device: &Device) -> Tensor<2> {
    Tensor::from_data(TensorData::new(data, [rows, cols]), device)
}

/// Layer `l` of a stacked `[L, …]` host tensor, flattened.
fn layer(t: &HostTensor, l: usize) -> Vec<f32> {
    let per = t.numel() / t.shape[0];
    t.data[l * per..(l + 1) * per].to_vec()
}

/// `[rows, cols]` → `[cols, rows]` on the host.
fn transpose(data: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0f32; data.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = data[r * cols + c];
        }
    }
    out
}

#[derive(Clone, Debug)]
struct Norm {
    gain: Tensor<1>,
    bias: Tensor<1>,
}

impl Norm {
    fn from_stacked(p: &NormParams, l: usize, d: usize, device: &Device) -> Self {
        let gain: Vec<f32> = layer(&p.scale, l).iter().map(|s| 1.0 + s).collect();
        Self {
            gain: Tensor::from_data(TensorData::new(gain, [d]), device),
            bias: Tensor::from_data(TensorData::new(layer(&p.bias, l), [d]), device),
        }
    }

    fn new(p: &NormParams, device: &Device) -> Self {
        let gain = HostTensor::new(p.scale.shape.clone(), p.scale.data.iter().map(|s| 1.0 + s).collect());
        Self { gain: t1(&gain, device), bias: t1(&p.bias, device) }
    }

    fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let mean = x.clone().mean_dim(D - 1);
        let centered = x - mean;
        let var = centered.clone().square().mean_dim(D - 1);
        let normed = centered / (var + LN_EPS).sqrt();
        normed * self.gain.clone().unsqueeze() + self.bias.clone().unsqueeze()
    }
}

/// `y = x·W + b` with `W: [in, out]`.
#[derive(Clone, Debug)]
struct Dense {
    w: Tensor<2>,
    b: Tensor<1>,
}

impl Dense {
    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let [b, s, d] = x.dims();
        let out = self.w.dims()[1];
        (x.reshape([b * s, d]).matmul(self.w.clone()) + self.b.clone().unsqueeze()).reshape([b, s, out])
    }
}

#[derive(Clone, Debug)]
struct Layer {
    attn_norm: Norm,
    /// q | k | v fused: `[d, 3·H·Dh]`.
    qkv: Dense,
    post: Dense,
    ff_norm: Norm,
    ffn1: Dense,
    ffn2: Dense,
    heads: usize,
    head_dim: usize,
}

impl Layer {
    fn new(p: &StackParams, l: usize, device: &Device) -> Self {
        let [_, d, heads, head_dim] = [p.key_w.shape[0], p.key_w.shape[1], p.key_w.shape[2], p.key_w.shape[3]];
        let hd = heads * head_dim;
        let f = p.ffn1_w.shape[2];
        // [d, H·Dh] each, concatenated column-wise.
        let mut qkv_w = vec![0f32; d * 3 * hd];
        for (j, w) in [&p.query_w, &p.key_w, &p.value_w].into_iter().enumerate() {
            let w = layer(w, l);
            for r in 0..d {
                qkv_w[r * 3 * hd + j * hd..r * 3 * hd + (j + 1) * hd].copy_from_slice(&w[r * hd..(r + 1) * hd]);
            }
        }
        let qkv_b: Vec<f32> = [&p.query_b, &p.key_b, &p.value_b].into_iter().flat_map(|b| layer(b, l)).collect();
        Self {
            attn_norm: Norm::from_stacked(&p.attn_norm, l, d, device),
            qkv: Dense { w: t2(qkv_w, d, 3 * hd, device), b: Tensor::from_data(TensorData::new(qkv_b, [3 * hd]), device) },
            // post_w [d, H, Dh] is contracted over (H, Dh): as a map [H·Dh, d] it is the transpose.
            post: Dense {
                w: t2(transpose(&layer(&p.post_w, l), d, hd), hd, d, device),
                b: Tensor::from_data(TensorData::new(layer(&p.post_b, l), [d]), device),
            },
            ff_norm: Norm::from_stacked(&p.ff_norm, l, d, device),
            ffn1: Dense { w: t2(layer(&p.ffn1_w, l), d, f, device), b: Tensor::from_data(TensorData::new(layer(&p.ffn1_b, l), [f]), device) },
            ffn2: Dense { w: t2(layer(&p.ffn2_w, l), f, d, device), b: Tensor::from_data(TensorData::new(layer(&p.ffn2_b, l), [d]), device) },
            heads,
            head_dim,
        }
    }

    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let [b, s, _] = x.dims();
        let (h, dh) = (self.heads, self.head_dim);
        let qkv = self.qkv.forward(self.attn_norm.forward(x.clone()));
        let heads = |i: usize| qkv.clone().slice([0..b, 0..s, i * h * dh..(i + 1) * h * dh]).reshape([b, s, h, dh]).swap_dims(1, 2);
        let q = heads(0) * (1.0 / (dh as f64).sqrt());
        let (k, v) = (heads(1), heads(2));
        let logits = q.matmul(k.swap_dims(2, 3));
        let logits = (logits / LOGIT_CAP).tanh() * LOGIT_CAP;
        let ctx = softmax(logits, 3).matmul(v).swap_dims(1, 2).reshape([b, s, h * dh]);
        let x = x + self.post.forward(ctx);
        let y = self.ffn2.forward(gelu(self.ffn1.forward(self.ff_norm.forward(x.clone()))));
        x + y
    }
}

/// Attention pooling to one vector per item, then its LayerNorm.
#[derive(Clone, Debug)]
struct Pool {
    /// The learned query after projection and per-dimension scaling: `[Hp, 1, Dp]`.
    query: Tensor<3>,
    kv: Dense,
    post: Dense,
    norm: Norm,
    heads: usize,
    head_dim: usize,
}

impl Pool {
    fn new(p: &PoolParams, device: &Device) -> Self {
        let (d, hp, dp) = (p.key_w.shape[0], p.key_w.shape[1], p.key_w.shape[2]);
        let hd = hp * dp;
        // The query does not depend on the input: project and scale it once, on the host, in f64.
        let base = PER_DIM_SCALE / (dp as f64).sqrt();
        let softplus = |x: f64| if x > 30.0 { x } else { x.exp().ln_1p() };
        let mut q = vec![0f32; hd];
        for (j, qj) in q.iter_mut().enumerate() {
            let mut acc = f64::from(p.query_b.data[j]);
            for i in 0..d {
                acc += f64::from(p.query.data[i]) * f64::from(p.query_w.data[i * hd + j]);
            }
            *qj = (acc * base * softplus(f64::from(p.per_dim_scale.data[j % dp]))) as f32;
        }
        let mut kv_w = vec![0f32; d * 2 * hd];
        for (j, w) in [&p.key_w, &p.value_w].into_iter().enumerate() {
            for r in 0..d {
                kv_w[r * 2 * hd + j * hd..r * 2 * hd + (j + 1) * hd].copy_from_slice(&w.data[r * hd..(r + 1) * hd]);
            }
        }
        let kv_b: Vec<f32> = p.key_b.data.iter().chain(&p.value_b.data).copied().collect();
        Self {
            query: Tensor::from_data(TensorData::new(q, [hp, 1, dp]), device),
            kv: Dense { w: t2(kv_w, d, 2 * hd, device), b: Tensor::from_data(TensorData::new(kv_b, [2 * hd]), device) },
            post: Dense { w: t2(transpose(&p.post_w.data, d, hd), hd, d, device), b: t1(&p.post_b, device) },
            norm: Norm::new(&p.norm, device),
            heads: hp,
            head_dim: dp,
        }
    }

    /// `[b, s, d]` → `[b, d]`.
    fn forward(&self, x: Tensor<3>) -> Tensor<2> {
        let [b, s, _] = x.dims();
        let (h, dh) = (self.heads, self.head_dim);
        let kv = self.kv.forward(x);
        let k = kv.clone().slice([0..b, 0..s, 0..h * dh]).reshape([b, s, h, dh]).swap_dims(1, 2);
        let v = kv.slice([0..b, 0..s, h * dh..2 * h * dh]).reshape([b, s, h, dh]).swap_dims(1, 2);
        let q: Tensor<4> = self.query.clone().unsqueeze::<4>().expand([b, h, 1, dh]);
        let ctx = softmax(q.matmul(k.swap_dims(2, 3)), 3).matmul(v); // [b, h, 1, dh]
        let pooled = self.post.forward(ctx.swap_dims(1, 2).reshape([b, 1, h * dh]));
        let d = pooled.dims()[2];
        self.norm.forward(pooled).reshape([b, d])
    }
}

#[derive(Clone, Debug)]
struct Stack {
    layers: Vec<Layer>,
    exit_norm: Norm,
    pool: Pool,
}

impl Stack {
    fn new(layers: &StackParams, exit: &NormParams, pool: &PoolParams, device: &Device) -> Self {
        Self {
            layers: (0..layers.key_w.shape[0]).map(|l| Layer::new(layers, l, device)).collect(),
            exit_norm: Norm::new(exit, device),
            pool: Pool::new(pool, device),
        }
    }

    fn forward(&self, mut x: Tensor<3>) -> Tensor<2> {
        for layer in &self.layers {
            x = layer.forward(x);
        }
        self.pool.forward(self.exit_norm.forward(x))
    }
}

/// Both towers, resident on a device.
#[derive(Clone, Debug)]
pub struct Towers {
    device: Device,
    /// The text embedding table `[vocab, d]`, v1's already × √d (host: only a prompt's rows are used).
    embedding: Vec<f32>,
    /// MRT2's learned positions `[positions, d]`; `None`: v1's sinusoid.
    positions: Option<Vec<f32>>,
    vocab: usize,
    d: usize,
    text: Stack,
    patch: Dense,
    pos_emb: Tensor<2>,
    patch_side: usize,
    audio: Stack,
}

impl Towers {
    pub fn new(p: &MusicCocaParams, device: &Device) -> Self {
        let (d, vocab) = p.text.embedding.d_vocab();
        let (embedding, positions) = match &p.text.embedding {
            TextEmbedding::Softmax(w) => {
                let scale = (d as f32).sqrt();
                (transpose(&w.data, d, vocab).into_iter().map(|v| v * scale).collect(), None)
            }
            TextEmbedding::Learned { table, positions } => (table.data.clone(), Some(positions.data.clone())),
        };
        let patch_in = p.audio.patch_w.shape[0];
        let patches = p.audio.pos_emb.shape[0];
        Self {
            device: device.clone(),
            embedding,
            positions,
            vocab,
            d,
            text: Stack::new(&p.text.layers, &p.text.exit_norm, &p.text.pool, device),
            patch: Dense { w: t2(p.audio.patch_w.data.clone(), patch_in, d, device), b: t1(&p.audio.patch_b, device) },
            pos_emb: t2(p.audio.pos_emb.data.clone(), patches, d, device),
            patch_side: (patch_in as f64).sqrt().round() as usize,
            audio: Stack::new(&p.audio.layers, &p.audio.exit_norm, &p.audio.pool, device),
        }
    }

    pub fn dim(&self) -> usize {
        self.d
    }

    pub fn vocab(&self) -> usize {
        self.vocab
    }

    /// Mel frames × mel bins one clip's spectrogram must have.
    pub fn patch_grid(&self) -> (usize, usize) {
        (self.patch_side, self.pos_emb.dims()[0])
    }

    /// The text embedding of the real (unpadded) ids of one prompt, SOS included.
    pub fn embed_ids(&self, ids: &[i32]) -> Result<Vec<f32>, String> {
        let (d, n) = (self.d, ids.len());
        if n == 0 {
            return Err("no text ids (the SOS id at least is required)".into());
        }
        if let Some(p) = &self.positions {
            if n > p.len() / d {
                return Err(format!("{n} text ids but the text tower has {} learned positions", p.len() / d));
            }
        }
        let half = d / 2;
        let increment = (10000f64).ln() / ((half as f64) - 1.0).max(1.0);
        let mut x = vec![0f32; n * d];
        for (pos, &id) in ids.iter().enumerate() {
            let row = usize::try_from(id).ok().filter(|&i| i < self.vocab).ok_or_else(|| format!("text id {id} at position {pos} is outside the vocabulary of {}", self.vocab))?;
            let out = &mut x[pos * d..(pos + 1) * d];
            out.copy_from_slice(&self.embedding[row * d..(row + 1) * d]);
            match &self.positions {
                Some(p) => out.iter_mut().zip(&p[pos * d..(pos + 1) * d]).for_each(|(o, &e)| *o += e),
                None => {
                    for i in 0..half {
                        let t = pos as f64 * (-(i as f64) * increment).exp();
                        out[i] += t.sin() as f32;
                        out[half + i] += t.cos() as f32;
                    }
                }
            }
        }
        let x = Tensor::<3>::from_data(TensorData::new(x, [1, n, d]), &self.device);
        read(self.text.forward(x))
    }

    /// Audio embeddings of `b` log-mel spectrograms `[b][frames × mels]` (time-major).
    pub fn embed_mels(&self, mels: &[f32], b: usize, frames: usize, mel_bins: usize) -> Result<Vec<f32>, String> {
        let p = self.patch_side;
        let patches = self.pos_emb.dims()[0];
        if !frames.is_multiple_of(p) || !mel_bins.is_multiple_of(p) || (frames / p) * (mel_bins / p) != patches || mels.len() != b * frames * mel_bins {
            return Err(format!(
                "a {frames} × {mel_bins} spectrogram does not make the tower's {patches} patches of {p} × {p}"
            ));
        }
        let (tp, mp) = (frames / p, mel_bins / p);
        // [b, tp·p + ti, mp·p + mi] → [b, tp·mp + mp_i, ti·p + mi]: patches on a time-major grid,
        // time-major inside a patch.
        let x = Tensor::<3>::from_data(TensorData::new(mels.to_vec(), [b, frames, mel_bins]), &self.device)
            .reshape([b, tp, p, mp, p])
            .swap_dims(2, 3)
            .reshape([b, patches, p * p]);
        let x = self.patch.forward(x) + self.pos_emb.clone().unsqueeze::<3>();
        read(self.audio.forward(x))
    }
}

fn read(t: Tensor<2>) -> Result<Vec<f32>, String> {
    t.into_data().try_into_vec::<f32>().map_err(|e| format!("reading the embedding back failed: {e:?}"))
}
