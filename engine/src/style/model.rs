//! The style model as the system uses it: loading from the official files, text and audio
//! embeddings, and the style RVQ (spec §3.4).
//!
//! ```text
//!  savedmodels/musiccoca_mv212f_cpu_novocab/variables   80 leaves → towers (params.rs map)
//!  vocabularies/musiccoca_mv212f_vocab.model            SentencePiece
//!  savedmodels/musiccoca_mv212_quant/variables          12 × [768, 1024] codebooks, saved in
//!                                                       string-sorted order "0","1","10","11","2",…
//!  resources/musiccoca/audio_preprocessor.tflite (MRT2) Hann window + mel matrix constants
//! ```
//!
//! MRT2 ships its own MusicCoCa (`resources/musiccoca/{text_encoder, music_encoder,
//! pretrained_vector_quantizer}.tflite` + `spm.model`, read by [`super::mrt2`]): which files a
//! model is loaded from is a [`StyleFiles`].

use std::path::{Path, PathBuf};

use burn::tensor::Device;

use super::mel::{LogMel, CLIP_SAMPLES, NUM_FRAMES};
use super::params::{self, Dims, HostTensor, MusicCocaParams, V1_LEAVES};
use super::tokenizer::SentencePiece;
use super::towers::Towers;
use super::StyleError;
use crate::codec::rvq::Rvq;
use crate::codec::weights::CodebookParams;
use crate::formats::tensor::TensorStore;
use crate::formats::tfbundle::Bundle;
use crate::formats::tflite::TfLite;

/// Where the style model's files are.
#[derive(Clone, Debug, PartialEq)]
pub struct StylePaths {
    /// The v1 MusicCoCa SavedModel directory (`musiccoca_mv212f_cpu_novocab`).
    pub savedmodel: PathBuf,
    /// The v1 style RVQ SavedModel directory (`musiccoca_mv212_quant`).
    pub quantizer: PathBuf,
    /// The SentencePiece vocabulary (`musiccoca_mv212f_vocab.model`).
    pub vocab: PathBuf,
    /// MRT2's `audio_preprocessor.tflite` (the log-mel constants); without it audio prompts are
    /// refused with an error naming the file.
    pub preprocessor: Option<PathBuf>,
}

/// Which style model's files: v1's SavedModels or MRT2's TFLite files. One [`StyleModel`]
/// serves both: the towers and quantizer are the same math, the text input differs
/// ([`super::params::TextEmbedding`]).
#[derive(Clone, Debug, PartialEq)]
pub enum StyleFiles {
    V1(StylePaths),
    Mrt2(super::mrt2::Mrt2StylePaths),
}

impl StyleFiles {
    /// "v1" or "mrt2".
    pub fn family(&self) -> &'static str {
        match self {
            StyleFiles::V1(_) => "v1",
            StyleFiles::Mrt2(_) => "mrt2",
        }
    }

    /// The file that names this model in messages (the SavedModel, or the text encoder).
    pub fn main_path(&self) -> &Path {
        match self {
            StyleFiles::V1(p) => &p.savedmodel,
            StyleFiles::Mrt2(p) => &p.text_encoder,
        }
    }
}

/// Clips embedded per batch (bounds memory on long files).
const CLIP_BATCH: usize = 4;

/// MusicCoCa with its tokenizer, front end and style quantiser.
pub struct StyleModel {
    pub dims: Dims,
    tokenizer: SentencePiece,
    towers: Towers,
    front_end: Result<LogMel, String>,
    rvq: Rvq,
    /// MRT2's text → audio mapper and its noise (text prompts only).
    mapper: Option<(super::mapper::Mapper, Vec<f32>)>,
}

impl std::fmt::Debug for StyleModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StyleModel").field("dims", &self.dims).finish_non_exhaustive()
    }
}

/// The leaf number in a jax2tf variable key (`…tf_var_leaves/17/.ATTRIBUTES/VARIABLE_VALUE`).
fn leaf_index(key: &str) -> Option<usize> {
    let rest = &key[key.find("tf_var_leaves")? + "tf_var_leaves".len()..];
    let rest = rest.trim_start_matches(['/', '.', '_']);
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    if !key.ends_with("VARIABLE_VALUE") && key.contains(".ATTRIBUTES") {
        return None;
    }
    digits.parse().ok()
}

/// The number in `variables/N/.ATTRIBUTES/VARIABLE_VALUE`.
fn variable_index(key: &str) -> Option<usize> {
    let rest = key.strip_prefix("variables/")?;
    let (n, tail) = rest.split_once('/')?;
    (tail == ".ATTRIBUTES/VARIABLE_VALUE").then(|| n.parse().ok()).flatten()
}

/// Saved position of RVQ level `k` when `levels` codebooks were saved in string-sorted order.
pub fn saved_codebook_index(level: usize, levels: usize) -> usize {
    let mut names: Vec<String> = (0..levels).map(|i| i.to_string()).collect();
    names.sort();
    names.iter().position(|n| *n == level.to_string()).unwrap_or(level)
}

/// Reads the 80 leaves of the v1 MusicCoCa SavedModel into tower parameters. The leaves the
/// towers use go through a [`TensorStore`] named by leaf number and role (`leaf 63 (text
/// exit_stack/ln/scale)`), so a missing, mis-shaped or non-finite one is an error naming it.
pub fn read_v1_params(savedmodel: &Path) -> Result<MusicCocaParams, StyleError> {
    let bundle = Bundle::open(savedmodel)?;
    let mut keys: Vec<Option<String>> = vec![None; V1_LEAVES];
    for name in bundle.names() {
        if let Some(i) = leaf_index(name).filter(|&i| i < V1_LEAVES) {
            keys[i].get_or_insert_with(|| name.to_string());
        }
    }
    let shape_of = |i: usize| keys[i].as_deref().and_then(|k| bundle.shape(k)).map(<[usize]>::to_vec);
    let dims = Dims::from_v1_shapes(shape_of).map_err(|e| StyleError::Weights(format!("{}: {e}", savedmodel.display())))?;
    let leaf_name = |i: usize| format!("leaf {i} ({})", params::v1_role(i).describe());
    let mut store = TensorStore::new(savedmodel, Default::default());
    for (i, key) in keys.iter().enumerate() {
        if let (Some(key), Some(_)) = (key, dims.v1_shape(i)) {
            let shape = bundle.shape(key).unwrap_or_default().to_vec();
            store.insert(leaf_name(i), HostTensor::new(shape, bundle.read_f32(key)?));
        }
    }
    let mut leaves = Vec::with_capacity(V1_LEAVES);
    for i in 0..V1_LEAVES {
        leaves.push(match dims.v1_shape(i) {
            Some(expected) => Some(store.take_exact(&leaf_name(i), &expected)?),
            None => None,
        });
    }
    Ok(params::from_v1_leaves(|i| leaves[i].take().unwrap_or_else(|| HostTensor::new(vec![1], vec![0.0]))))
}

/// Reads the style RVQ codebooks `[levels, codes, dim]` from the v1 quantiser SavedModel: the
/// rank-2 variables `variables/0..N`, each `[dim, codes]` (checked through a [`TensorStore`]
/// named by level).
pub fn read_codebooks(quantizer: &Path, dim: usize) -> Result<CodebookParams, StyleError> {
    let bundle = Bundle::open(quantizer)?;
    let mut saved: Vec<(usize, String)> = bundle
        .names()
        .filter_map(|n| variable_index(n).map(|i| (i, n.to_string())))
        .filter(|(_, n)| bundle.shape(n).is_some_and(|s| s.len() == 2))
        .collect();
    saved.sort();
    let levels = saved.len();
    if levels == 0 || saved.iter().enumerate().any(|(j, (i, _))| *i != j) {
        return Err(StyleError::Weights(format!(
            "{}: expected codebook variables variables/0..N/.ATTRIBUTES/VARIABLE_VALUE of rank 2, found {:?}",
            quantizer.display(),
            saved.iter().map(|(_, n)| n.as_str()).collect::<Vec<_>>()
        )));
    }
    let codes = bundle.shape(&saved[0].1).map_or(0, |s| s[1]);
    let level_name = |level: usize| format!("codebook of level {level} (`{}`)", saved[saved_codebook_index(level, levels)].1);
    let mut store = TensorStore::new(quantizer, Default::default());
    for level in 0..levels {
        let key = &saved[saved_codebook_index(level, levels)].1;
        let shape = bundle.shape(key).unwrap_or_default().to_vec();
        store.insert(level_name(level), HostTensor::new(shape, bundle.read_f32(key)?));
    }
    let mut data = Vec::with_capacity(levels * codes * dim);
    for level in 0..levels {
        let w = store.take_exact(&level_name(level), &[dim, codes])?.data;
        // [dim, codes] → [codes, dim]
        for c in 0..codes {
            data.extend((0..dim).map(|r| w[r * codes + c]));
        }
    }
    Ok(CodebookParams { levels, codebook_size: codes, dim, data })
}

/// Reads the front end's constants from MRT2's `audio_preprocessor.tflite`: the 400-value Hann
/// window and the `[1024 or 1025, mel bins]` mel matrix.
pub fn read_front_end(path: &Path) -> Result<LogMel, StyleError> {
    let err = |reason: String| StyleError::Weights(format!("{}: {reason}", path.display()));
    let model = TfLite::open(path)?;
    // Constants only: the same name may also label an op output without data.
    let pick = |pattern: &str| {
        model.find(pattern).find(|t| t.is_constant()).cloned().ok_or_else(|| err(format!("no constant tensor named like `{pattern}`")))
    };
    let window_t = pick("hann_window")?;
    let matrix_t = pick("linear_to_mel_weight_matrix")?;
    let window = model.read_f32(&window_t)?;
    let matrix = model.read_f32(&matrix_t)?;
    let shape = matrix_t.shape.clone();
    let (rows, cols) = match shape.as_slice() {
        [r, c] => (*r, *c),
        other => return Err(err(format!("mel matrix has shape {other:?}, expected 2-D"))),
    };
    LogMel::new(&window, &matrix, rows, cols).map_err(err)
}

fn front_end_of(preprocessor: Option<&Path>) -> Result<LogMel, String> {
    match preprocessor {
        Some(p) => read_front_end(p).map_err(|e| e.to_string()),
        None => Err("audio prompts need MRT2's resources/musiccoca/audio_preprocessor.tflite (its mel matrix and \
                     window); it is not installed"
            .into()),
    }
}

impl StyleModel {
    /// v1's MusicCoCa (SavedModels + vocabulary).
    pub fn load(paths: &StylePaths, device: &Device) -> Result<Self, StyleError> {
        let tokenizer = SentencePiece::open(&paths.vocab)?;
        let params = read_v1_params(&paths.savedmodel)?;
        let codebooks = read_codebooks(&paths.quantizer, params.text.embedding.d_vocab().0)?;
        let front_end = front_end_of(paths.preprocessor.as_deref());
        Self::from_parts(params, tokenizer, codebooks, front_end, device).map_err(|e| pairing(e, &paths.vocab, &paths.savedmodel))
    }

    /// MRT2's own MusicCoCa (its TFLite files + `spm.model`), with its mapper when
    /// `paths.mapper` names one.
    pub fn load_mrt2(paths: &super::mrt2::Mrt2StylePaths, device: &Device) -> Result<Self, StyleError> {
        let tokenizer = SentencePiece::open(&paths.vocab)?;
        let params = super::mrt2::read_params(paths)?;
        let codebooks = super::mrt2::read_quantizer(&paths.quantizer)?;
        let front_end = front_end_of(paths.preprocessor.as_deref());
        let mut model =
            Self::from_parts(params, tokenizer, codebooks, front_end, device).map_err(|e| pairing(e, &paths.vocab, &paths.text_encoder))?;
        if let Some(p) = &paths.mapper {
            model.set_mapper(Some(super::mapper::Mapper::open(p)?))?;
        }
        Ok(model)
    }

    /// Maps text embeddings through `mapper` from now on (`None`: not at all), with the official
    /// noise (`RandomState(0).randn(d)`).
    pub fn set_mapper(&mut self, mapper: Option<super::mapper::Mapper>) -> Result<(), StyleError> {
        self.mapper = match mapper {
            Some(m) if m.embed != self.dim() => {
                return Err(StyleError::Weights(format!("the mapper maps {}-d embeddings, the towers make {}-d", m.embed, self.dim())))
            }
            Some(m) => Some((m, super::mapper::numpy_randn(super::mapper::NOISE_SEED, self.dim()))),
            None => None,
        };
        Ok(())
    }

    /// Whether text embeddings go through MRT2's mapper.
    pub fn maps_text(&self) -> bool {
        self.mapper.is_some()
    }

    /// Either family's files.
    pub fn load_files(files: &StyleFiles, device: &Device) -> Result<Self, StyleError> {
        match files {
            StyleFiles::V1(p) => Self::load(p, device),
            StyleFiles::Mrt2(p) => Self::load_mrt2(p, device),
        }
    }

    /// Assembles a model from loaded parts (tests, tiny models).
    pub fn from_parts(
        params: MusicCocaParams,
        tokenizer: SentencePiece,
        codebooks: CodebookParams,
        front_end: Result<LogMel, String>,
        device: &Device,
    ) -> Result<Self, StyleError> {
        let dims = params.dims().map_err(StyleError::Weights)?;
        // MRT2's spm.model (16000 pieces) and v1's vocabulary (64000) must each meet their own
        // tower: a smaller vocabulary would run, silently embedding the wrong rows.
        if tokenizer.vocab_size() != dims.vocab {
            return Err(StyleError::Weights(format!(
                "the vocabulary has {} pieces but the text tower's table has {} rows: vocabulary and weights do not belong together \
                 (MRT2's spm.model goes with its text_encoder.tflite, v1's musiccoca_mv212f_vocab.model with its SavedModel)",
                tokenizer.vocab_size(),
                dims.vocab
            )));
        }
        if codebooks.dim != dims.d {
            return Err(StyleError::Weights(format!("style codebooks are {}-d, the towers {}-d", codebooks.dim, dims.d)));
        }
        Ok(Self { dims, tokenizer, towers: Towers::new(&params, device), front_end, rvq: Rvq::new(codebooks), mapper: None })
    }

    pub fn dim(&self) -> usize {
        self.dims.d
    }

    pub fn tokenizer(&self) -> &SentencePiece {
        &self.tokenizer
    }

    /// RVQ levels of the style quantiser (12).
    pub fn levels(&self) -> usize {
        self.rvq.levels()
    }

    pub fn codebook_size(&self) -> usize {
        self.rvq.codebook_size()
    }

    /// The embedding of a text prompt (through MRT2's mapper when one is set). An empty prompt
    /// is embedded as the reference does (the SOS token alone).
    pub fn embed_text(&self, text: &str) -> Result<Vec<f32>, StyleError> {
        let (ids, paddings) = self.tokenizer.musiccoca_ids(text);
        let real = paddings.iter().take_while(|&&p| p == 0.0).count();
        let e = self.towers.embed_ids(&ids[..real]).map_err(StyleError::BadInput)?;
        match &self.mapper {
            Some((m, noise)) => m.map(&e, noise),
            None => Ok(e),
        }
    }

    fn front_end(&self) -> Result<&LogMel, StyleError> {
        self.front_end.as_ref().map_err(|e| StyleError::BadInput(e.clone()))
    }

    /// The embedding of 16 kHz mono audio: 10 s clips every `hop` samples (default: a clip),
    /// the last one zero-padded, embedded and averaged (v1 `embed(…, pool_across_time=True,
    /// pad_end=True)`). Shorter than one clip: one zero-padded clip.
    pub fn embed_audio_16k(&self, mono: &[f32], hop: Option<usize>) -> Result<Vec<f32>, StyleError> {
        let mut acc = ClipAccumulator::new(self, hop)?;
        acc.push(mono)?;
        acc.finish()
    }

    /// Embeds a batch of complete clips; returns `[n][d]`.
    fn embed_clips(&self, clips: &[Vec<f32>]) -> Result<Vec<f32>, StyleError> {
        let fe = self.front_end()?;
        let m = fe.mel_bins();
        let mut mels = Vec::with_capacity(clips.len() * NUM_FRAMES * m);
        for clip in clips {
            mels.extend(fe.compute(clip));
        }
        self.towers.embed_mels(&mels, clips.len(), NUM_FRAMES, m).map_err(StyleError::BadInput)
    }

    /// The 12 RVQ style codes of an embedding.
    pub fn tokenize(&self, embedding: &[f32]) -> Result<Vec<i32>, StyleError> {
        if embedding.len() != self.dim() {
            return Err(StyleError::BadInput(format!("a style embedding has {} values, expected {}", embedding.len(), self.dim())));
        }
        if let Some(i) = embedding.iter().position(|v| !v.is_finite()) {
            return Err(StyleError::BadInput(format!("style embedding value {i} is not finite")));
        }
        self.rvq.encode(embedding, self.rvq.levels()).map_err(|e| StyleError::BadInput(e.to_string()))
    }
}

/// Names both files in a vocabulary/weights mismatch.
fn pairing(e: StyleError, vocab: &Path, weights: &Path) -> StyleError {
    match e {
        StyleError::Weights(m) if m.starts_with("the vocabulary has") => {
            StyleError::Weights(format!("{} with {}: {m}", vocab.display(), weights.display()))
        }
        e => e,
    }
}

/// Cuts a stream of 16 kHz mono samples into clips and averages their embeddings, holding at
/// most one clip of samples and one batch of clips: a 10-minute file costs the same memory as a
/// 40-second one. Clips start every `hop` samples while the start is inside the audio; a clip
/// running past the end is zero-padded (v1 `_embed_batch_audio` with `pad_end=True`).
pub struct ClipAccumulator<'a> {
    model: &'a StyleModel,
    hop: usize,
    /// Samples from absolute position `buf_start` on.
    pending: Vec<f32>,
    buf_start: u64,
    /// Absolute start of the next clip.
    next: u64,
    batch: Vec<Vec<f32>>,
    sum: Vec<f64>,
    clips: usize,
    seen: u64,
}

impl<'a> ClipAccumulator<'a> {
    pub fn new(model: &'a StyleModel, hop: Option<usize>) -> Result<Self, StyleError> {
        model.front_end()?;
        let hop = hop.unwrap_or(CLIP_SAMPLES);
        if hop == 0 {
            return Err(StyleError::BadInput("clip hop of 0 samples".into()));
        }
        Ok(Self {
            model,
            hop,
            pending: Vec::new(),
            buf_start: 0,
            next: 0,
            batch: Vec::new(),
            sum: vec![0.0; model.dim()],
            clips: 0,
            seen: 0,
        })
    }

    /// Adds samples. Non-finite samples are an error naming their position.
    pub fn push(&mut self, samples: &[f32]) -> Result<(), StyleError> {
        if let Some(i) = samples.iter().position(|v| !v.is_finite()) {
            let at = self.seen + i as u64;
            return Err(StyleError::BadInput(format!(
                "audio sample {at} ({:.3} s at 16 kHz) is not finite (NaN or infinity)",
                at as f64 / 16000.0
            )));
        }
        self.seen += samples.len() as u64;
        self.pending.extend_from_slice(samples);
        let clip = CLIP_SAMPLES as u64;
        while self.next + clip <= self.seen {
            let from = (self.next - self.buf_start) as usize;
            self.batch.push(self.pending[from..from + CLIP_SAMPLES].to_vec());
            self.next += self.hop as u64;
            if self.batch.len() == CLIP_BATCH {
                self.flush()?;
            }
        }
        // Samples before the next clip's start are no longer needed.
        let drop = (self.next.min(self.seen) - self.buf_start) as usize;
        self.pending.drain(..drop);
        self.buf_start += drop as u64;
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StyleError> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let d = self.model.dim();
        let out = self.model.embed_clips(&self.batch)?;
        for row in out.chunks_exact(d) {
            for (s, &v) in self.sum.iter_mut().zip(row) {
                *s += f64::from(v);
            }
        }
        self.clips += self.batch.len();
        self.batch.clear();
        Ok(())
    }

    /// The mean embedding over all clips, the ones running past the end zero-padded. No samples
    /// at all is an error (the reference would average zero clips into NaN).
    pub fn finish(mut self) -> Result<Vec<f32>, StyleError> {
        if self.seen == 0 {
            return Err(StyleError::BadInput("no audio samples".into()));
        }
        while self.next < self.seen {
            let from = (self.next - self.buf_start) as usize;
            let mut last = self.pending[from..].to_vec();
            last.resize(CLIP_SAMPLES, 0.0);
            self.batch.push(last);
            self.next += self.hop as u64;
            if self.batch.len() == CLIP_BATCH {
                self.flush()?;
            }
        }
        self.flush()?;
        let n = self.clips as f64;
        Ok(self.sum.iter().map(|s| (s / n) as f32).collect())
    }
}
