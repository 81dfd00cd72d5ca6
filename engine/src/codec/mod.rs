//! SpectroStream, the codec Magenta RealTime hears and speaks through: 48 kHz stereo audio ↔
//! 25 Hz frames of residual-vector-quantised codes (64 levels × 1024 in the released codec; the LM
//! reads 4 levels and writes 16). Spec §2; reference: MRT2 `magenta_rt/jax/spectrostream.py`,
//! checked against its golden outputs in `shared/fixtures/codec/*`.
//!
//! ```text
//!  audio [2][T] ─ Stft (host) ─ spec [1, 4, T/480, 480] ─ Encoder (burn) ─ latent [1, T/1920, D]
//!        ─ Rvq::encode (host) ─ codes [frames][levels]
//!  codes ─ Rvq::decode ─ latent (+ one zero look-ahead frame) ─ Decoder (burn)
//!        ─ spec [1, 4, 4·frames, 480] ─ Stft::inverse (host) ─ audio [2][frames·1920]
//! ```
//!
//! Audio is channel-first (planar) everywhere in this module: `[channel][sample]` flattened, the
//! layout of the v1 test data and of a plugin's per-channel buffers.

pub mod audio;
pub mod bench;
pub mod blocks;
pub mod config;
pub mod host_decoder;
pub mod decoder;
pub mod encoder;
pub mod rvq;
pub mod stft;
pub mod stream;
pub mod weights;

use std::path::{Path, PathBuf};

use burn::tensor::{Device, Tensor, TensorData};

use crate::device::{Compute, Target};

pub use config::CodecConfig;
pub use host_decoder::HostDecoder;
pub use decoder::Decoder;
pub use encoder::Encoder;
pub use rvq::Rvq;
pub use stft::Stft;
pub use stream::DecoderStream;
pub use weights::{CodecWeights, CodecWidths};

/// Everything that can go wrong loading or running the codec.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, #[source] source: std::io::Error },
    #[error("bad codec config {path}: {reason}")]
    BadConfig { path: PathBuf, reason: String },
    #[error(transparent)]
    File(#[from] crate::formats::safetensors::SafetensorsError),
    #[error(transparent)]
    Tensor(#[from] crate::formats::tensor::TensorError),
    #[error("unsupported codec layer: {0}")]
    Unsupported(String),
    #[error("invalid codec input: {0}")]
    BadInput(String),
    #[error("backend error: {0}")]
    Backend(String),
}

/// Frames of history recomputed before each window of a long encode or decode. The networks are
/// causal with a finite receptive field (measured by `tests::receptive_fields_fit_the_context`:
/// well under this), so windowed results equal whole-clip ones up to rounding.
pub const CONTEXT_FRAMES: usize = 32;

/// Frames per window of a long encode or decode (10 s), bounding activation memory.
pub const WINDOW_FRAMES: usize = 250;

/// RVQ codes of a clip: `[frames][levels]`, frame-major.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Codes {
    pub frames: usize,
    pub levels: usize,
    pub data: Vec<i32>,
}

/// Buffers of the host decoder, kept by the stream that decodes (empty until first used; the
/// burn decoder needs none).
#[derive(Debug, Default)]
pub struct DecodeScratch(host_decoder::Scratch);

/// The decoder network: burn ops on a GPU, host kernels on the CPU (see [`HostDecoder`]).
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // One per loaded codec, built once and never moved after.
enum DecoderPath {
    Burn(Decoder),
    Host(HostDecoder),
}

/// The whole codec on one device.
#[derive(Debug)]
pub struct Codec {
    pub config: CodecConfig,
    stft: Stft,
    /// `None` for a decode-only codec ([`Codec::load_mrt2`]).
    encoder: Option<Encoder>,
    decoder: DecoderPath,
    rvq: Rvq,
    device: Device,
}

pub(crate) fn host<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>, CodecError> {
    crate::kernels::counters::read_back(t).try_into_vec::<f32>().map_err(|e| CodecError::Backend(format!("tensor readback failed: {e:?}")))
}

impl Codec {
    /// Loads `encoder.safetensors`, `decoder.safetensors` and `quantizer.safetensors` from `dir`
    /// (MRT2's `resources/spectrostream/` or a fixture set).
    pub fn load(dir: &Path, config: CodecConfig, target: &Target) -> Result<Self, CodecError> {
        let weights = CodecWeights::read_dir(dir, &config)?;
        Self::from_weights(config, weights, target)
    }

    /// The decode-only codec in MRT2's combined checkpoint (`checkpoints/mrt2_*.safetensors`, or a
    /// fixture's `weights.safetensors`): see [`CodecWeights::from_mrt2_store`]. The file's LM
    /// tensors are read too and dropped; `config` comes from [`CodecConfig::from_mrt2_value`] or
    /// the preset.
    pub fn load_mrt2(path: &Path, config: CodecConfig, target: &Target) -> Result<Self, CodecError> {
        let store = crate::formats::safetensors::read_prefix(path, crate::mrt2::weights::CODEC_PREFIX)?;
        let weights = CodecWeights::from_mrt2_store(&store, &config)?;
        Self::from_weights(config, weights, target)
    }

    /// The codec on `target`: the decoder on host kernels ([`HostDecoder`]) on the host path,
    /// burn's [`Decoder`] otherwise; the encoder on burn.
    pub fn from_weights(config: CodecConfig, weights: CodecWeights, target: &Target) -> Result<Self, CodecError> {
        config.validate().map_err(|reason| CodecError::BadConfig { path: PathBuf::from("<config>"), reason })?;
        let device = &target.device;
        let decoder = match target.compute {
            Compute::Host => DecoderPath::Host(HostDecoder::new(&config, &weights.decoder)?),
            Compute::Burn | Compute::Gpu => DecoderPath::Burn(Decoder::new(&config, &weights.decoder, device)?),
        };
        Ok(Self {
            stft: Stft::new(&config),
            encoder: weights.encoder.as_ref().map(|e| Encoder::new(&config, e, device)).transpose()?,
            decoder,
            rvq: Rvq::new(weights.codebooks),
            device: device.clone(),
            config,
        })
    }

    pub fn stft(&self) -> &Stft {
        &self.stft
    }

    /// The encoder; an error for a decode-only codec.
    pub fn encoder(&self) -> Result<&Encoder, CodecError> {
        self.encoder.as_ref().ok_or_else(|| CodecError::Unsupported("this codec was loaded decode-only (MRT2's checkpoint has no encoder)".into()))
    }

    /// Whether the decoder runs on host kernels ([`HostDecoder`]) rather than burn.
    pub fn host_decoder(&self) -> bool {
        matches!(self.decoder, DecoderPath::Host(_))
    }

    /// The decoder network alone: latent `[batch][frames][D]` → spectrogram
    /// `[batch][2·channels][t][bins]` with `t = 4·frames − 4` (the look-ahead crop), and `t`.
    pub fn decode_spectrogram(&self, latent: &[f32], batch: usize, frames: usize, scratch: &mut DecodeScratch) -> Result<(Vec<f32>, usize), CodecError> {
        let d = self.rvq.dim();
        if batch == 0 || frames == 0 || latent.len() != batch * frames * d {
            return Err(CodecError::BadInput(format!("{} latent values are not {batch} clips × {frames} frames × {d}", latent.len())));
        }
        match &self.decoder {
            DecoderPath::Host(dec) => dec.forward(latent, batch, frames, &mut scratch.0),
            DecoderPath::Burn(dec) => {
                let x = Tensor::<3>::from_data(TensorData::new(latent.to_vec(), [batch, frames, d]), &self.device);
                let spec = dec.forward(x);
                let t = spec.dims()[2];
                Ok((host(spec)?, t))
            }
        }
    }

    pub fn rvq(&self) -> &Rvq {
        &self.rvq
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn channels(&self) -> usize {
        self.config.audio_channels
    }

    /// Useful arithmetic of one streamed frame's decoder network, GFLOP (host decoder only).
    pub fn stream_gflop_per_frame(&self) -> Option<f64> {
        match &self.decoder {
            DecoderPath::Host(dec) => Some(dec.profile(1).flops / 1e9),
            DecoderPath::Burn(_) => None,
        }
    }

    pub fn samples_per_frame(&self) -> usize {
        self.config.samples_per_frame()
    }

    /// RVQ levels the codebooks provide.
    pub fn levels(&self) -> usize {
        self.rvq.levels()
    }

    /// The encoder input for `batch` clips of channel-first audio `[batch][channels][samples]`,
    /// `samples` a multiple of [`Codec::samples_per_frame`]: `[batch, 2·channels, samples/480, 480]`.
    pub fn spectrogram(&self, audio: &[f32], batch: usize) -> Result<Tensor<4>, CodecError> {
        let ch = self.channels();
        if batch == 0 || !audio.len().is_multiple_of(batch * ch) {
            return Err(CodecError::BadInput(format!("{} samples do not split into {batch} clips × {ch} channels", audio.len())));
        }
        let samples = audio.len() / (batch * ch);
        if samples == 0 || !samples.is_multiple_of(self.samples_per_frame()) {
            return Err(CodecError::BadInput(format!(
                "{samples} samples per channel is not a positive multiple of the {}-sample codec frame",
                self.samples_per_frame()
            )));
        }
        let mut spec = Vec::new();
        for clip in audio.chunks_exact(samples * ch) {
            spec.extend(self.stft.forward(clip, ch)?);
        }
        let (frames, bins) = (self.stft.frames_for(samples), self.stft.num_bins());
        Ok(Tensor::from_data(TensorData::new(spec, [batch, 2 * ch, frames, bins]), &self.device))
    }

    /// Latent embeddings `[batch][frames][latent]` of `batch` clips `[batch][channels][samples]`
    /// (`samples` a multiple of the codec frame). Long clips run in windows of
    /// [`WINDOW_FRAMES`] frames, each after [`CONTEXT_FRAMES`] frames of recomputed history.
    pub fn embed(&self, audio: &[f32], batch: usize) -> Result<Vec<f32>, CodecError> {
        self.embed_windowed(audio, batch, WINDOW_FRAMES)
    }

    fn embed_windowed(&self, audio: &[f32], batch: usize, window: usize) -> Result<Vec<f32>, CodecError> {
        let ch = self.channels();
        let spf = self.samples_per_frame();
        if batch == 0 || !audio.len().is_multiple_of(batch * ch) || !(audio.len() / (batch * ch)).is_multiple_of(spf) {
            // `spectrogram` words the error.
            return host(self.encoder()?.forward(self.spectrogram(audio, batch)?));
        }
        let samples = audio.len() / (batch * ch);
        let frames = samples / spf;
        if frames <= window {
            return host(self.encoder()?.forward(self.spectrogram(audio, batch)?));
        }
        let d = self.encoder()?.latent_dim();
        let mut out = vec![0f32; batch * frames * d];
        for s in (0..frames).step_by(window) {
            // The last STFT frame of a window reaches 480 samples past it (the front end's end
            // padding), so each window carries one extra frame of audio, encoded and dropped.
            let (a, b) = (s.saturating_sub(CONTEXT_FRAMES), (s + window).min(frames));
            let e = (b + 1).min(frames);
            let mut part = Vec::with_capacity(batch * ch * (e - a) * spf);
            for row in audio.chunks_exact(samples) {
                part.extend_from_slice(&row[a * spf..e * spf]);
            }
            let emb = host(self.encoder()?.forward(self.spectrogram(&part, batch)?))?; // [batch][e−a][d]
            for r in 0..batch {
                let src = &emb[(r * (e - a) + (s - a)) * d..(r * (e - a) + (b - a)) * d];
                out[(r * frames + s) * d..(r * frames + b) * d].copy_from_slice(src);
            }
        }
        Ok(out)
    }

    /// Encodes one clip of channel-first 48 kHz audio `[channels][samples]` into the first
    /// `levels` RVQ levels. The clip is zero-padded at the end to whole codec frames, so it gives
    /// `ceil(samples / 1920)` frames (v1's `encode`: `ceil(seconds·25)`).
    pub fn encode_audio(&self, audio: &[f32], levels: usize) -> Result<Codes, CodecError> {
        let ch = self.channels();
        if audio.is_empty() || !audio.len().is_multiple_of(ch) {
            return Err(CodecError::BadInput(format!("{} samples do not form a non-empty {ch}-channel clip", audio.len())));
        }
        if let Some(i) = audio.iter().position(|v| !v.is_finite()) {
            return Err(CodecError::BadInput(format!("audio sample {} of channel {} is not finite", i % (audio.len() / ch), i / (audio.len() / ch))));
        }
        if levels == 0 || levels > self.levels() {
            return Err(CodecError::BadInput(format!("{levels} RVQ levels requested; the codebooks have 1..={}", self.levels())));
        }
        let samples = audio.len() / ch;
        let spf = self.samples_per_frame();
        let frames = samples.div_ceil(spf);
        let padded_len = frames * spf;
        let mut padded = vec![0f32; ch * padded_len];
        for c in 0..ch {
            padded[c * padded_len..c * padded_len + samples].copy_from_slice(&audio[c * samples..(c + 1) * samples]);
        }
        let emb = self.embed(&padded, 1)?;
        let data = self.rvq.encode(&emb, levels)?;
        Ok(Codes { frames, levels, data })
    }

    /// Decodes latent embeddings `[batch][frames][latent]` into channel-first audio
    /// `[batch][channels][frames·1920]`. One all-zero frame is appended as the decoder's
    /// look-ahead, so every frame is rendered (spec §1.1 step 7; fixture `decoded.npy`). Long
    /// inputs run in windows like [`Codec::embed`]; each window's look-ahead is the next real frame.
    pub fn embeddings_to_audio(&self, embeddings: &[f32], batch: usize) -> Result<Vec<f32>, CodecError> {
        self.decode_windowed(embeddings, batch, WINDOW_FRAMES, &mut DecodeScratch::default())
    }

    fn decode_windowed(&self, embeddings: &[f32], batch: usize, window: usize, scratch: &mut DecodeScratch) -> Result<Vec<f32>, CodecError> {
        let d = self.rvq.dim();
        if batch == 0 || embeddings.is_empty() || !embeddings.len().is_multiple_of(batch * d) {
            return Err(CodecError::BadInput(format!("{} latent values do not form {batch} clips of {d}-d frames", embeddings.len())));
        }
        if let Some(i) = embeddings.iter().position(|v| !v.is_finite()) {
            return Err(CodecError::BadInput(format!("latent value {i} is not finite")));
        }
        let frames = embeddings.len() / (batch * d);
        let (ch, spf) = (self.channels(), self.samples_per_frame());
        let mut out = vec![0f32; batch * ch * frames * spf];
        for s in (0..frames).step_by(window.max(1)) {
            let (a, b) = (s.saturating_sub(CONTEXT_FRAMES), (s + window).min(frames));
            // Frames a..=b: frame b is the look-ahead (the zero pad after the last frame).
            let mut part = vec![0f32; batch * (b - a + 1) * d];
            for (r, row) in embeddings.chunks_exact(frames * d).enumerate() {
                let real = (b + 1).min(frames) - a;
                part[r * (b - a + 1) * d..][..real * d].copy_from_slice(&row[a * d..(a + real) * d]);
            }
            let (spec, t) = self.decode_spectrogram(&part, batch, b - a + 1, scratch)?;
            for (r, clip) in spec.chunks_exact(spec.len() / batch).enumerate() {
                let audio = self.stft.inverse(clip, ch, t)?; // [ch][(b − a)·spf]
                for c in 0..ch {
                    let src = &audio[(c * (b - a) + (s - a)) * spf..(c + 1) * (b - a) * spf];
                    out[((r * ch + c) * frames + s) * spf..((r * ch + c) * frames + b) * spf].copy_from_slice(src);
                }
            }
        }
        Ok(out)
    }

    /// Decodes `[frames][levels]` codes (frame-major, all `levels` used) into channel-first audio
    /// `[channels][frames·1920]`: 51 frames × 16 levels → 2 × 97920 samples, the chunk decode of
    /// spec §1.1 step 7 (the previous chunk's last frame, then the 50 new ones).
    pub fn decode_codes(&self, codes: &[i32], frames: usize, levels: usize) -> Result<Vec<f32>, CodecError> {
        self.decode_codes_in(codes, frames, levels, &mut DecodeScratch::default())
    }

    /// [`Codec::decode_codes`] with the host decoder's buffers kept in `scratch` (one per stream:
    /// the codec's weights are shared and immutable, so streams never wait for each other).
    pub fn decode_codes_in(&self, codes: &[i32], frames: usize, levels: usize, scratch: &mut DecodeScratch) -> Result<Vec<f32>, CodecError> {
        if frames == 0 || codes.len() != frames * levels {
            return Err(CodecError::BadInput(format!("{} codes are not {frames} frames × {levels} levels", codes.len())));
        }
        let latent = self.rvq.decode(codes, levels, levels)?;
        self.decode_windowed(&latent, 1, WINDOW_FRAMES, scratch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::npy;

    fn c1() -> (Codec, PathBuf) {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/codec/C1");
        (Codec::load(&dir, CodecConfig::spectrostream_48k_stereo(), &crate::Target::host()).expect("C1 loads"), dir)
    }

    fn max_diff(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len());
        a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
    }

    #[test]
    fn the_codec_can_move_to_a_worker_thread() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Codec>();
    }

    #[test]
    fn windowed_encode_and_decode_equal_the_whole_clip() {
        let (codec, dir) = c1();
        let audio = npy::read_f32(&dir.join("audio.npy")).expect("audio.npy");
        let whole = codec.embed_windowed(&audio.data, 2, usize::MAX).unwrap();
        let windowed = codec.embed_windowed(&audio.data, 2, 7).unwrap();
        assert!(max_diff(&whole, &windowed) < 1e-5, "{}", max_diff(&whole, &windowed));
        let whole = codec.decode_windowed(&whole, 2, usize::MAX, &mut DecodeScratch::default()).unwrap();
        let latent = codec.embed_windowed(&audio.data, 2, usize::MAX).unwrap();
        let windowed = codec.decode_windowed(&latent, 2, 7, &mut DecodeScratch::default()).unwrap();
        assert!(max_diff(&whole, &windowed) < 1e-6, "{}", max_diff(&whole, &windowed));
    }

    /// Last frame whose output changes when frame 0 of the input does.
    fn reach(before: &[f32], after: &[f32], rows: usize, per_frame: usize) -> usize {
        let frames = before.len() / rows / per_frame;
        (0..frames)
            .filter(|&f| (0..rows).any(|r| max_diff(&before[(r * frames + f) * per_frame..][..per_frame], &after[(r * frames + f) * per_frame..][..per_frame]) > 0.0))
            .max()
            .unwrap_or(0)
    }

    #[test]
    fn receptive_fields_fit_the_context() {
        let (codec, dir) = c1();
        let audio = npy::read_f32(&dir.join("audio.npy")).expect("audio.npy");
        let clip = &audio.data[..2 * 96_000];
        let mut hit = clip.to_vec();
        for c in 0..2 {
            for v in &mut hit[c * 96_000..c * 96_000 + 1920] {
                *v += 0.3;
            }
        }
        let (e0, e1) = (codec.embed(clip, 1).unwrap(), codec.embed(&hit, 1).unwrap());
        let encoder_reach = reach(&e0, &e1, 1, codec.encoder().expect("C1 has an encoder").latent_dim());
        let mut poked = e0.clone();
        for v in &mut poked[..codec.encoder().expect("C1 has an encoder").latent_dim()] {
            *v += 1.0;
        }
        let (a0, a1) = (codec.embeddings_to_audio(&e0, 1).unwrap(), codec.embeddings_to_audio(&poked, 1).unwrap());
        let decoder_reach = reach(&a0, &a1, 2, 1920);
        println!("frame 0 reaches embedding frame {encoder_reach} and audio frame {decoder_reach}");
        assert!(encoder_reach >= 1 && decoder_reach >= 1, "the probes must see some spread");
        assert!(encoder_reach < CONTEXT_FRAMES && decoder_reach < CONTEXT_FRAMES);
    }
}
