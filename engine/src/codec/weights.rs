//! Reading the official MRT2 SpectroStream weights (`resources/spectrostream/*.safetensors`).
//!
//! Keys are slash-delimited Flax paths; conv kernels (transposed ones too) are HWIO
//! `(k_time, k_freq, in, out)`; every conv has a bias. The name map, as the fixture README lists it:
//!
//! ```text
//!  encoder.safetensors   params/encoder/base_conv_first/conv/{kernel,bias}
//!                        params/encoder/encoder_{i}/conv2d_3x3/...            in → in
//!                        params/encoder/encoder_{i}/conv2d_{kt}x{kf}_a/...    in → out, stride s_i
//!                        params/encoder/encoder_{i}/shortcut_layer/conv1x1/... (in ≠ out)
//!                        params/encoder/bottleneck/conv2d_3x3{,_a}/...
//!                        params/encoder/output_convs/{conv1x1_last, shortcut_layer/conv1x1_b1, .../conv1x1_b2}/...
//!  decoder.safetensors   params/decoder/input_layer/{conv1x1_first, shortcut_layer/conv1x1_b1, .../conv1x1_b2}/...
//!                        params/decoder/input_layers_residual_unit/conv2d_3x3{_a,}/...
//!                        params/decoder/decoder_{i}/conv2dtranspose_{kt}x{kf}/...  in → out, stride s_{n−1−i}
//!                        params/decoder/decoder_{i}/conv2d_3x3/...             out → out
//!                        params/decoder/decoder_{i}/shortcut_layer/conv1x1/... (in ≠ out)
//!                        params/decoder/output_layer/base_conv_last/...
//!                        params/quantizer/embedding                  [levels, codebook, latent]
//!  quantizer.safetensors params/soundstream/quantizer/embedding      [levels, codebook, latent]
//! ```
//!
//! with `(kt, kf) = (max(3, 2·s_t), max(3, 2·s_f))`. Every width is read off the shapes while
//! walking the network, so the walk also checks that consecutive layers fit: a missing,
//! mis-shaped, non-finite or unused tensor, or a corrupt file, is an error naming file and tensor.
//! [`manifest`] is the same map in the other direction (widths → names and shapes), used for
//! random benchmark weights and pinned against the fixture files and the published sizes.

use std::collections::BTreeMap;
use std::path::Path;

use super::{CodecConfig, CodecError};
use crate::formats::safetensors;
pub use crate::formats::tensor::HostTensor;
use crate::formats::tensor::{TensorError, TensorStore};

pub const ENCODER_FILE: &str = "encoder.safetensors";
pub const DECODER_FILE: &str = "decoder.safetensors";
pub const QUANTIZER_FILE: &str = "quantizer.safetensors";
pub const ENCODER: &str = "params/encoder";
pub const DECODER: &str = "params/decoder";
/// The codebooks as `decoder.safetensors` carries them.
pub const DECODER_CODEBOOKS: &str = "params/quantizer/embedding";
/// The codebooks as `quantizer.safetensors` carries them.
pub const QUANTIZER_CODEBOOKS: &str = "params/soundstream/quantizer/embedding";
/// The decoder's tensors in MRT2's combined checkpoint (`checkpoints/mrt2_*.safetensors`, the
/// fixture `shared/fixtures/mrt2/*/weights.safetensors`), beside `params/depthformer/`.
pub const MRT2_DECODER: &str = "params/soundstream/decoder";
/// Everything of the codec in that checkpoint (the encoder is not there).
pub const MRT2_CODEC: &str = "params/soundstream/";

// ------------------------------------------------------------------ the walk: files → parameters

/// One conv's parameters as stored: HWIO kernel and bias.
#[derive(Clone, Debug)]
pub struct ConvParams {
    /// Full key prefix, e.g. `params/encoder/encoder_0/conv2d_3x4_a`.
    pub name: String,
    /// `(k_time, k_freq, in, out)`.
    pub kernel: HostTensor,
    pub bias: Vec<f32>,
}

impl ConvParams {
    pub fn k_time(&self) -> usize {
        self.kernel.shape[0]
    }
    pub fn k_freq(&self) -> usize {
        self.kernel.shape[1]
    }
    pub fn in_channels(&self) -> usize {
        self.kernel.shape[2]
    }
    pub fn out_channels(&self) -> usize {
        self.kernel.shape[3]
    }
}

/// Reads `{prefix}/conv/kernel` (checked against `kernel`) and `{prefix}/conv/bias`.
fn conv(file: &TensorStore, prefix: &str, kernel: [Option<usize>; 4]) -> Result<ConvParams, CodecError> {
    let k = file.tensor(&format!("{prefix}/conv/kernel"), &kernel)?.clone();
    let out = k.shape[3];
    let bias = file.tensor(&format!("{prefix}/conv/bias"), &[Some(out)])?.data.clone();
    Ok(ConvParams { name: prefix.to_owned(), kernel: k, bias })
}

/// Kernel size of a strided block's main conv: `(max(3, 2·s_t), max(3, 2·s_f))`.
pub fn block_kernel(stride: [usize; 2]) -> [usize; 2] {
    [3.max(2 * stride[0]), 3.max(2 * stride[1])]
}

/// A residual block: encoder `conv_a(ELU(conv3x3(ELU(x))))` or decoder
/// `conv3x3(ELU(conv_t(ELU(x))))`, with an optional 1×1 shortcut.
#[derive(Clone, Debug)]
pub struct BlockParams {
    /// Encoder: `conv2d_3x3` (in → in). Decoder: the transposed `conv2dtranspose_{kt}x{kf}` (in → out).
    pub first: ConvParams,
    /// Encoder: `conv2d_{kt}x{kf}_a` (in → out, strided). Decoder: `conv2d_3x3` (out → out).
    pub second: ConvParams,
    /// `shortcut_layer/conv1x1` (present iff in ≠ out).
    pub shortcut: Option<ConvParams>,
    pub stride: [usize; 2],
}

impl BlockParams {
    pub fn in_channels(&self) -> usize {
        self.first.in_channels()
    }
    pub fn out_channels(&self) -> usize {
        self.second.out_channels()
    }
}

#[derive(Clone, Debug)]
pub struct EncoderParams {
    /// `base_conv_first`, 2 (re, im) → base.
    pub base: ConvParams,
    /// `encoder_0..`; the last `fused_blocks` see the stereo halves concatenated.
    pub blocks: Vec<BlockParams>,
    pub bottleneck: BlockParams,
    /// `output_convs/conv1x1_last`, `…/shortcut_layer/conv1x1_b1`, `…/conv1x1_b2`.
    pub out_last: ConvParams,
    pub out_b1: ConvParams,
    pub out_b2: ConvParams,
}

#[derive(Clone, Debug)]
pub struct DecoderParams {
    /// `input_layer/conv1x1_first`, `…/shortcut_layer/conv1x1_b1`, `…/conv1x1_b2`.
    pub in_first: ConvParams,
    pub in_b1: ConvParams,
    pub in_b2: ConvParams,
    /// `input_layers_residual_unit`: `first` = `conv2d_3x3_a`, `second` = `conv2d_3x3`.
    pub residual: BlockParams,
    /// `decoder_0..`; the first `fused_blocks` see the fused channels.
    pub blocks: Vec<BlockParams>,
    /// `output_layer/base_conv_last`, base → 2 (re, im).
    pub out: ConvParams,
}

/// RVQ codebooks `[levels, codebook_size, dim]`.
#[derive(Clone, Debug)]
pub struct CodebookParams {
    pub levels: usize,
    pub codebook_size: usize,
    pub dim: usize,
    pub data: Vec<f32>,
}

/// Every codec parameter, widths checked layer to layer. `encoder` is `None` for a decode-only
/// codec (MRT2's combined checkpoint carries no encoder).
#[derive(Clone, Debug)]
pub struct CodecWeights {
    pub encoder: Option<EncoderParams>,
    pub decoder: DecoderParams,
    pub codebooks: CodebookParams,
}

impl CodecWeights {
    /// Reads `encoder.safetensors`, `decoder.safetensors` and (if present) `quantizer.safetensors`
    /// from `dir`. The codebooks come from `quantizer.safetensors`, else from the copy in
    /// `decoder.safetensors`.
    pub fn read_dir(dir: &Path, config: &CodecConfig) -> Result<Self, CodecError> {
        let encoder = safetensors::read(&dir.join(ENCODER_FILE))?;
        let decoder = safetensors::read(&dir.join(DECODER_FILE))?;
        let qpath = dir.join(QUANTIZER_FILE);
        let quantizer = if qpath.is_file() { Some(safetensors::read(&qpath)?) } else { None };
        Self::from_files(&encoder, &decoder, quantizer.as_ref(), config)
    }

    pub fn from_files(
        encoder: &TensorStore,
        decoder: &TensorStore,
        quantizer: Option<&TensorStore>,
        config: &CodecConfig,
    ) -> Result<Self, CodecError> {
        let enc = read_encoder(encoder, config)?;
        encoder.check_all_used(ENCODER)?;
        let latent = enc.out_last.out_channels();
        let dec = read_decoder(decoder, DECODER, config, latent)?;
        let codebooks = match quantizer {
            Some(q) => {
                let c = read_codebooks(q, QUANTIZER_CODEBOOKS, latent)?;
                q.check_all_used("")?;
                c
            }
            None => read_codebooks(decoder, DECODER_CODEBOOKS, latent)?,
        };
        // The decoder file's copy of the codebooks is not needed when quantizer.safetensors is
        // there, but it must still be what the README says it is.
        if decoder.contains(DECODER_CODEBOOKS) {
            read_codebooks(decoder, DECODER_CODEBOOKS, latent)?;
        }
        decoder.check_all_used("")?;
        Ok(Self { encoder: Some(enc), decoder: dec, codebooks })
    }

    /// The decode-only codec of MRT2's combined checkpoint: `params/soundstream/decoder/...`
    /// (the names of `decoder.safetensors` under `params/soundstream/`) and the codebooks
    /// `params/soundstream/quantizer/embedding` `[levels, 1024, latent]`. Tensors outside
    /// `params/soundstream/` (the LM's) are left alone; an unused one inside is an error.
    pub fn from_mrt2_store(store: &TensorStore, config: &CodecConfig) -> Result<Self, CodecError> {
        let latent = store.tensor(QUANTIZER_CODEBOOKS, &[None, None, None])?.shape[2];
        let codebooks = read_codebooks(store, QUANTIZER_CODEBOOKS, latent)?;
        let decoder = read_decoder(store, MRT2_DECODER, config, latent)?;
        store.check_all_used(MRT2_CODEC)?;
        Ok(Self { encoder: None, decoder, codebooks })
    }

    /// Parameter counts (encoder, decoder, codebooks), as the fixture README and spec §2.4 state them.
    pub fn param_counts(&self) -> (usize, usize, usize) {
        let conv = |c: &ConvParams| c.kernel.data.len() + c.bias.len();
        let block = |b: &BlockParams| conv(&b.first) + conv(&b.second) + b.shortcut.as_ref().map_or(0, conv);
        let enc = self.encoder.as_ref().map_or(0, |e| {
            conv(&e.base) + e.blocks.iter().map(block).sum::<usize>() + block(&e.bottleneck) + conv(&e.out_last) + conv(&e.out_b1) + conv(&e.out_b2)
        });
        let d = &self.decoder;
        let dec = conv(&d.in_first) + conv(&d.in_b1) + conv(&d.in_b2) + block(&d.residual) + d.blocks.iter().map(block).sum::<usize>() + conv(&d.out);
        (enc, dec, self.codebooks.data.len())
    }
}

fn read_encoder(f: &TensorStore, config: &CodecConfig) -> Result<EncoderParams, CodecError> {
    let splits = config.audio_channels;
    let n = config.ratios.len();
    let fuse_at = n - config.fused_blocks();
    let base = conv(f, &format!("{ENCODER}/base_conv_first"), [None, None, Some(2), None])?;
    let mut c = base.out_channels();
    let mut blocks = Vec::with_capacity(n);
    for (i, &stride) in config.ratios.iter().enumerate() {
        if i == fuse_at {
            c *= splits;
        }
        let p = format!("{ENCODER}/encoder_{i}");
        let first = conv(f, &format!("{p}/conv2d_3x3"), [Some(3), Some(3), Some(c), Some(c)])?;
        let [kt, kf] = block_kernel(stride);
        let second = conv(f, &format!("{p}/conv2d_{kt}x{kf}_a"), [Some(kt), Some(kf), Some(c), None])?;
        let out = second.out_channels();
        let shortcut = shortcut(f, &p, c, out)?;
        blocks.push(BlockParams { first, second, shortcut, stride });
        c = out;
    }
    if fuse_at == n {
        c *= splits;
    }
    let p = format!("{ENCODER}/bottleneck");
    let bottleneck = BlockParams {
        first: conv(f, &format!("{p}/conv2d_3x3"), [Some(3), Some(3), Some(c), Some(c)])?,
        second: conv(f, &format!("{p}/conv2d_3x3_a"), [Some(3), Some(3), Some(c), Some(c)])?,
        shortcut: None,
        stride: [1, 1],
    };
    let flat = c * config.latent_bins();
    let p = format!("{ENCODER}/output_convs");
    let out_last = conv(f, &format!("{p}/conv1x1_last"), [Some(1), Some(1), Some(flat), None])?;
    let latent = out_last.out_channels();
    let out_b1 = conv(f, &format!("{p}/shortcut_layer/conv1x1_b1"), [Some(1), Some(1), Some(flat), Some(flat)])?;
    let out_b2 = conv(f, &format!("{p}/shortcut_layer/conv1x1_b2"), [Some(1), Some(1), Some(flat), Some(latent)])?;
    Ok(EncoderParams { base, blocks, bottleneck, out_last, out_b1, out_b2 })
}

fn shortcut(f: &TensorStore, block: &str, cin: usize, cout: usize) -> Result<Option<ConvParams>, CodecError> {
    let name = format!("{block}/shortcut_layer/conv1x1");
    if cin != cout || f.contains(&format!("{name}/conv/kernel")) {
        conv(f, &name, [Some(1), Some(1), Some(cin), Some(cout)]).map(Some)
    } else {
        Ok(None)
    }
}

fn read_decoder(f: &TensorStore, prefix: &str, config: &CodecConfig, latent: usize) -> Result<DecoderParams, CodecError> {
    let splits = config.audio_channels;
    let n = config.ratios.len();
    let split_at = config.fused_blocks();
    let p = format!("{prefix}/input_layer");
    let in_first = conv(f, &format!("{p}/conv1x1_first"), [Some(1), Some(1), Some(latent), None])?;
    let flat = in_first.out_channels();
    let in_b1 = conv(f, &format!("{p}/shortcut_layer/conv1x1_b1"), [Some(1), Some(1), Some(latent), Some(flat)])?;
    let in_b2 = conv(f, &format!("{p}/shortcut_layer/conv1x1_b2"), [Some(1), Some(1), Some(flat), Some(flat)])?;
    let bins = config.latent_bins();
    let p = format!("{prefix}/input_layers_residual_unit");
    if flat % bins != 0 {
        return Err(TensorError::Shape {
            path: f.path.clone(),
            name: format!("{prefix}/input_layer/conv1x1_first/conv/kernel"),
            expected: format!("[1, 1, {latent}, a multiple of the {bins} latent bins]"),
            found: in_first.kernel.shape.clone(),
        }.into());
    }
    let c = flat / bins;
    let first = conv(f, &format!("{p}/conv2d_3x3_a"), [Some(3), Some(3), Some(c), Some(c)])?;
    let mut c = first.out_channels();
    let residual = BlockParams {
        first,
        second: conv(f, &format!("{p}/conv2d_3x3"), [Some(3), Some(3), Some(c), Some(c)])?,
        shortcut: None,
        stride: [1, 1],
    };
    let mut blocks = Vec::with_capacity(n);
    for i in 0..n {
        let stride = config.ratios[n - 1 - i];
        let p = format!("{prefix}/decoder_{i}");
        let [kt, kf] = block_kernel(stride);
        if i == split_at {
            c = split_channels(f, &format!("{p}/conv2dtranspose_{kt}x{kf}"), c, splits)?;
        }
        let first = conv(f, &format!("{p}/conv2dtranspose_{kt}x{kf}"), [Some(kt), Some(kf), Some(c), None])?;
        let out = first.out_channels();
        let second = conv(f, &format!("{p}/conv2d_3x3"), [Some(3), Some(3), Some(out), Some(out)])?;
        let shortcut = shortcut(f, &p, c, out)?;
        blocks.push(BlockParams { first, second, shortcut, stride });
        c = out;
    }
    let name = format!("{prefix}/output_layer/base_conv_last");
    if split_at == n {
        c = split_channels(f, &name, c, splits)?;
    }
    let out = conv(f, &name, [None, None, Some(c), Some(2)])?;
    Ok(DecoderParams { in_first, in_b1, in_b2, residual, blocks, out })
}

/// Channels per stereo half where the decoder splits; names the next layer if they do not divide.
fn split_channels(f: &TensorStore, next: &str, c: usize, splits: usize) -> Result<usize, CodecError> {
    if c.is_multiple_of(splits) {
        Ok(c / splits)
    } else {
        let k = f.get(&format!("{next}/conv/kernel")).map(|t| t.shape.clone()).unwrap_or_default();
        Err(TensorError::Shape {
            path: f.path.clone(),
            name: format!("{next}/conv/kernel"),
            expected: format!("[_, _, {c}/{splits}, _] (fused channels split into {splits} halves)"),
            found: k,
        }.into())
    }
}

fn read_codebooks(f: &TensorStore, name: &str, latent: usize) -> Result<CodebookParams, CodecError> {
    let t = f.tensor(name, &[None, None, Some(latent)])?;
    let (levels, codebook_size) = (t.shape[0], t.shape[1]);
    if levels == 0 || codebook_size == 0 {
        return Err(TensorError::Shape {
            path: f.path.clone(),
            name: name.to_owned(),
            expected: format!("[levels ≥ 1, codebook ≥ 1, {latent}]"),
            found: t.shape.clone(),
        }.into());
    }
    Ok(CodebookParams { levels, codebook_size, dim: latent, data: t.data.clone() })
}

// ------------------------------------------------------------------ the map as data: widths → names

/// Widths that, with a [`CodecConfig`], determine every tensor shape.
#[derive(Clone, Debug, PartialEq)]
pub struct CodecWidths {
    pub encoder_base: usize,
    pub decoder_base: usize,
    /// Latent / codebook dimension (`num_features`).
    pub latent: usize,
    pub levels: usize,
    pub codebook_size: usize,
    /// Per-block channel multipliers, encoder order (MRT2 `mults`).
    pub mults: Vec<usize>,
}

impl CodecWidths {
    /// The released MRT2/v1 codec (fixture README "full-size").
    pub fn full_size() -> Self {
        Self { encoder_base: 32, decoder_base: 64, latent: 256, levels: 64, codebook_size: 1024, mults: vec![2, 1, 2, 1, 1, 2, 1] }
    }

    /// The C1 fixture's tiny variant.
    pub fn c1() -> Self {
        Self { encoder_base: 4, decoder_base: 8, latent: 32, levels: 16, codebook_size: 1024, mults: vec![2, 1, 2, 1, 1, 2, 1] }
    }
}

/// `(file, key, shape)` of every tensor of the three files, in file then key order.
pub fn manifest(config: &CodecConfig, w: &CodecWidths) -> Vec<(&'static str, String, Vec<usize>)> {
    let mut m = Vec::new();
    let mut conv = |file: &'static str, prefix: String, kt: usize, kf: usize, cin: usize, cout: usize| {
        m.push((file, format!("{prefix}/conv/bias"), vec![cout]));
        m.push((file, format!("{prefix}/conv/kernel"), vec![kt, kf, cin, cout]));
    };
    let (n, splits, bins) = (config.ratios.len(), config.audio_channels, config.latent_bins());
    let fused = config.fused_blocks();
    // Encoder: per-half widths grow by `mults`; the fused blocks take splits × the per-half width.
    let e = ENCODER_FILE;
    conv(e, format!("{ENCODER}/base_conv_first"), 7, 7, 2, w.encoder_base);
    let mut half = w.encoder_base;
    let mut c = half;
    for (i, (&s, &mult)) in config.ratios.iter().zip(&w.mults).enumerate() {
        let cin = if i == n - fused { c * splits } else { c };
        let out = half * mult;
        half = out;
        let p = format!("{ENCODER}/encoder_{i}");
        let [kt, kf] = block_kernel(s);
        conv(e, format!("{p}/conv2d_3x3"), 3, 3, cin, cin);
        conv(e, format!("{p}/conv2d_{kt}x{kf}_a"), kt, kf, cin, out);
        if cin != out {
            conv(e, format!("{p}/shortcut_layer/conv1x1"), 1, 1, cin, out);
        }
        c = out;
    }
    let c = if fused == 0 { c * splits } else { c };
    conv(e, format!("{ENCODER}/bottleneck/conv2d_3x3"), 3, 3, c, c);
    conv(e, format!("{ENCODER}/bottleneck/conv2d_3x3_a"), 3, 3, c, c);
    let flat = c * bins;
    conv(e, format!("{ENCODER}/output_convs/conv1x1_last"), 1, 1, flat, w.latent);
    conv(e, format!("{ENCODER}/output_convs/shortcut_layer/conv1x1_b1"), 1, 1, flat, flat);
    conv(e, format!("{ENCODER}/output_convs/shortcut_layer/conv1x1_b2"), 1, 1, flat, w.latent);
    // Decoder: mirror image; decoder_i undoes encoder block n−1−i.
    let d = DECODER_FILE;
    let mut widths = vec![w.decoder_base]; // per-half output width of decoder_{n-1}, decoder_{n-2}, …
    for &mult in &w.mults {
        let last = *widths.last().unwrap_or(&w.decoder_base);
        widths.push(last * mult);
    }
    // decoder_i: in = widths[n − i], out = widths[n − 1 − i]; fused blocks output splits × that.
    let c0 = widths[n];
    conv(d, format!("{DECODER}/input_layer/conv1x1_first"), 1, 1, w.latent, c0 * bins);
    conv(d, format!("{DECODER}/input_layer/shortcut_layer/conv1x1_b1"), 1, 1, w.latent, c0 * bins);
    conv(d, format!("{DECODER}/input_layer/shortcut_layer/conv1x1_b2"), 1, 1, c0 * bins, c0 * bins);
    conv(d, format!("{DECODER}/input_layers_residual_unit/conv2d_3x3"), 3, 3, c0, c0);
    conv(d, format!("{DECODER}/input_layers_residual_unit/conv2d_3x3_a"), 3, 3, c0, c0);
    for i in 0..n {
        let s = config.ratios[n - 1 - i];
        let cin = widths[n - i];
        let out = if i + 1 == fused { widths[n - 1 - i] * splits } else { widths[n - 1 - i] };
        let p = format!("{DECODER}/decoder_{i}");
        let [kt, kf] = block_kernel(s);
        conv(d, format!("{p}/conv2d_3x3"), 3, 3, out, out);
        conv(d, format!("{p}/conv2dtranspose_{kt}x{kf}"), kt, kf, cin, out);
        if cin != out {
            conv(d, format!("{p}/shortcut_layer/conv1x1"), 1, 1, cin, out);
        }
    }
    conv(d, format!("{DECODER}/output_layer/base_conv_last"), 7, 7, w.decoder_base, 2);
    m.push((d, DECODER_CODEBOOKS.to_owned(), vec![w.levels, w.codebook_size, w.latent]));
    m.push((QUANTIZER_FILE, QUANTIZER_CODEBOOKS.to_owned(), vec![w.levels, w.codebook_size, w.latent]));
    m.sort();
    m
}

/// Deterministic random weights at the given widths (benchmarks, tests): N(0, 1/fan_in) kernels,
/// small biases, codebooks N(0, 1/latent) so that residuals shrink level by level.
pub fn random_files(config: &CodecConfig, widths: &CodecWidths, seed: u64) -> [TensorStore; 3] {
    let mut rng = crate::sampling::rng::SplitMix64::new(seed);
    let mut files: [BTreeMap<String, HostTensor>; 3] = Default::default();
    for (file, name, shape) in manifest(config, widths) {
        let count: usize = shape.iter().product();
        let std = if name.ends_with("/bias") {
            0.05
        } else if name.ends_with("/embedding") {
            1.0 / (widths.latent as f64).sqrt()
        } else {
            1.0 / ((shape[0] * shape[1] * shape[2]) as f64).sqrt()
        };
        let data = (0..count).map(|_| (rng.next_normal() * std) as f32).collect();
        let slot = [ENCODER_FILE, DECODER_FILE, QUANTIZER_FILE].iter().position(|f| *f == file).unwrap_or(0);
        files[slot].insert(name, HostTensor { shape, data });
    }
    let [e, d, q] = files;
    [
        TensorStore::new(Path::new("<random>/encoder.safetensors"), e),
        TensorStore::new(Path::new("<random>/decoder.safetensors"), d),
        TensorStore::new(Path::new("<random>/quantizer.safetensors"), q),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn c1_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/codec/C1")
    }

    #[test]
    fn manifest_matches_every_key_and_shape_of_the_c1_files() {
        let config = CodecConfig::spectrostream_48k_stereo();
        let m = manifest(&config, &CodecWidths::c1());
        for file in [ENCODER_FILE, DECODER_FILE, QUANTIZER_FILE] {
            let f = safetensors::read(&c1_dir().join(file)).expect("C1 file reads");
            let mut want: Vec<(String, Vec<usize>)> = m.iter().filter(|(f, _, _)| *f == file).map(|(_, n, s)| (n.clone(), s.clone())).collect();
            let mut got: Vec<(String, Vec<usize>)> = f.names().map(|n| (n.to_owned(), f.get(n).map(|t| t.shape.clone()).unwrap_or_default())).collect();
            want.sort();
            got.sort();
            assert_eq!(got, want, "{file}");
        }
    }

    #[test]
    fn parameter_counts_match_the_published_sizes() {
        let config = CodecConfig::spectrostream_48k_stereo();
        let count = |w: &CodecWidths, file: &str| -> usize {
            manifest(&config, w).iter().filter(|(f, n, _)| *f == file && !n.ends_with("/embedding")).map(|(_, _, s)| s.iter().product::<usize>()).sum()
        };
        // Fixture README "Dimensions".
        assert_eq!(count(&CodecWidths::c1(), ENCODER_FILE), 145_464);
        assert_eq!(count(&CodecWidths::c1(), DECODER_FILE), 559_834);
        assert_eq!(count(&CodecWidths::full_size(), ENCODER_FILE), 9_251_904);
        assert_eq!(count(&CodecWidths::full_size(), DECODER_FILE), 35_684_546);
        let full = CodecWidths::full_size();
        assert_eq!(full.levels * full.codebook_size * full.latent, 16_777_216);
    }

    #[test]
    fn the_walk_reads_c1_and_random_full_size_weights() {
        let config = CodecConfig::spectrostream_48k_stereo();
        let w = CodecWeights::read_dir(&c1_dir(), &config).expect("C1 weights load");
        assert_eq!(w.param_counts(), (145_464, 559_834, 524_288));
        assert_eq!((w.codebooks.levels, w.codebooks.codebook_size, w.codebooks.dim), (16, 1024, 32));
        let [e, d, q] = random_files(&config, &CodecWidths::full_size(), 1);
        let w = CodecWeights::from_files(&e, &d, Some(&q), &config).expect("random full-size weights load");
        assert_eq!(w.param_counts(), (9_251_904, 35_684_546, 16_777_216));
    }

    #[test]
    fn the_mrt2_checkpoint_reads_decode_only_and_checks_its_codec_tensors() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/mrt2/M1/weights.safetensors");
        let config = CodecConfig::spectrostream_48k_stereo();
        let mut store = safetensors::read(&path).expect("M1 weights read");
        let w = CodecWeights::from_mrt2_store(&store, &config).expect("M1 codec loads");
        assert!(w.encoder.is_none());
        assert_eq!((w.codebooks.levels, w.codebooks.codebook_size, w.codebooks.dim), (12, 1024, 16));
        // The README's 49 codec tensors: 48 decoder tensors and the codebooks.
        assert_eq!(store.names().filter(|n| n.starts_with(MRT2_CODEC)).count(), 49);
        store.insert("params/soundstream/decoder/extra/conv/bias", HostTensor { shape: vec![1], data: vec![0.0] });
        let err = CodecWeights::from_mrt2_store(&store, &config).expect_err("an unused codec tensor");
        assert!(err.to_string().contains("extra"), "{err}");
        store.remove("params/soundstream/decoder/extra/conv/bias");
        store.remove(QUANTIZER_CODEBOOKS);
        let err = CodecWeights::from_mrt2_store(&store, &config).expect_err("no codebooks");
        assert!(err.to_string().contains(QUANTIZER_CODEBOOKS), "{err}");
    }

    #[test]
    fn a_wrong_config_leaves_tensors_unused_and_says_so() {
        let mut config = CodecConfig::spectrostream_48k_stereo();
        let [e, d, q] = random_files(&config, &CodecWidths::c1(), 2);
        config.ratios.pop();
        config.ratios[5] = [2, 2];
        let err = CodecWeights::from_files(&e, &d, Some(&q), &config).expect_err("a 6-block config must not load 7-block files");
        assert!(err.to_string().contains("encoder"), "{err}");
    }

}
