//! Frame-by-frame decoding: one frame of codes in, one codec frame (1920 samples per channel)
//! out, as MRT2's streaming step runs SpectroStream after each LM frame (spec §1.6).
//!
//! ```text
//!  codes [levels] ─ Rvq ─ latent [1, 1, D] ─ HostDecoder (History: every conv's last k_t − 1
//!        input rows) ─ 4 STFT frames ─ InverseStft (each channel's 480-sample overlap-add tail)
//!        ─ audio [channels][1920]
//! ```
//!
//! True streaming, layer by layer: every conv of the decoder is causal in time, so it continues
//! a sequence exactly from its last `k_t − 1` (ELU'd, padded) input rows; each stride-`s`
//! transposed conv is causal too (its taps read the current and the previous input row) and
//! gives all `s` output rows of an input row in the same call, so nothing is left pending.
//!
//! The decoder's one frame of look-ahead becomes a delay: its output for latent frame `t` is
//! the spectrogram of audio frame `t − 1` (the whole-clip decode crops the first 4 STFT frames),
//! so step 0 returns silence and step `t ≥ 1` the audio of frame `t − 1`'s codes, as the
//! reference stream does (`shared/fixtures/mrt2/M1/README.md`, "Codec (e)"). The result equals
//! the whole-clip decode ([`Codec::decode_codes`]) delayed by one frame, up to float rounding
//! (the same products, summed in another order by [`crate::kernels::host::gemm_serial`]).

use serde::{Deserialize, Serialize};

use super::host_decoder::{History, Scratch};
use super::stft::InverseStft;
use super::{Codec, CodecError, DecoderPath};

/// One stream's state of a frame-by-frame decode with a given [`Codec`] (host decoder only).
/// Built once; its buffers grow on the first [`DecoderStream::step`] and never after.
/// A step runs in rayon's pool with the products split over its threads ([`Scratch::stream`])
/// and allocates nothing once the first step has grown the buffers (`tests/conformance_mrt2.rs`).
#[derive(Debug)]
pub struct DecoderStream {
    levels: usize,
    dim: usize,
    channels: usize,
    samples_per_frame: usize,
    /// STFT frames still to drop at the start (the look-ahead: 4 for the released codec).
    crop_frames: usize,
    to_drop: usize,
    steps: u64,
    history: History,
    scratch: Scratch,
    latent: Vec<f32>,
    spec: Vec<f32>,
    istft: InverseStft,
    /// `[channels][samples_per_frame]`, the last step's audio.
    audio: Vec<f32>,
}

impl DecoderStream {
    /// A stream decoding frames of `levels` codes (levels `0..levels` of the codebooks).
    pub fn new(codec: &Codec, levels: usize) -> Result<Self, CodecError> {
        let DecoderPath::Host(dec) = &codec.decoder else {
            return Err(CodecError::Unsupported(
                "frame-by-frame decoding runs on the host decoder only; load the codec with the host target".into(),
            ));
        };
        if levels == 0 || levels > codec.levels() {
            return Err(CodecError::BadInput(format!("{levels} RVQ levels requested; the codebooks have 1..={}", codec.levels())));
        }
        let (channels, spf) = (codec.channels(), codec.samples_per_frame());
        Ok(Self {
            levels,
            dim: codec.rvq().dim(),
            channels,
            samples_per_frame: spf,
            crop_frames: dec.crop_frames(),
            to_drop: dec.crop_frames(),
            steps: 0,
            history: History::default(),
            scratch: Scratch::stream(),
            latent: vec![0f32; codec.rvq().dim()],
            spec: Vec::new(),
            istft: codec.stft().inverse_stream(channels, dec.frames_per_latent()),
            audio: vec![0f32; channels * spf],
        })
    }

    /// Codes per frame this stream takes.
    pub fn levels(&self) -> usize {
        self.levels
    }

    /// Frames decoded since the start or the last [`DecoderStream::reset`].
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// Back to the state before the first frame, keeping every buffer.
    pub fn reset(&mut self) {
        self.history.reset();
        self.istft.reset();
        self.to_drop = self.crop_frames;
        self.steps = 0;
        self.audio.fill(0.0);
    }

    /// Decodes one frame of `levels` codes and returns channel-first audio
    /// `[channels][samples_per_frame]`: silence at step 0 (the look-ahead), then the audio of the
    /// previous step's frame. A wrong number of codes, an out-of-range code or a codec other than
    /// the stream's is an error that leaves the state as it was.
    pub fn step(&mut self, codec: &Codec, codes: &[i32]) -> Result<&[f32], CodecError> {
        crate::kernels::host::in_pool(|| self.step_in_pool(codec, codes))?;
        Ok(&self.audio)
    }

    fn step_in_pool(&mut self, codec: &Codec, codes: &[i32]) -> Result<(), CodecError> {
        let DecoderPath::Host(dec) = &codec.decoder else {
            return Err(CodecError::Unsupported("frame-by-frame decoding runs on the host decoder only".into()));
        };
        if codec.rvq().dim() != self.dim || codec.channels() != self.channels || codec.levels() < self.levels || dec.crop_frames() != self.crop_frames {
            return Err(CodecError::BadInput("this decoder stream was made for another codec".into()));
        }
        if codes.len() != self.levels {
            return Err(CodecError::BadInput(format!("{} codes for one frame; this stream decodes {} levels", codes.len(), self.levels)));
        }
        codec.rvq().decode_frame_into(codes, &mut self.latent).map_err(|(k, code)| {
            CodecError::BadInput(format!("code {code} at level {k} is outside 0..{}", codec.rvq().codebook_size()))
        })?;
        // From here on nothing fails for a well-formed codec: the state moves one frame.
        let t = dec.forward_into(&self.latent, 1, 1, &mut self.scratch, Some(&mut self.history), 0, &mut self.spec)?;
        self.steps += 1;
        let drop = self.to_drop.min(t);
        self.to_drop -= drop;
        let per_frame = self.samples_per_frame / t.max(1);
        let bins = codec.stft().num_bins();
        if drop == t {
            self.audio.fill(0.0);
            return Ok(());
        }
        // NOTE: a crop that is not a whole number of codec frames would leave a partial frame
        // here; `crop = lookahead · frames_per_latent` rules that out.
        debug_assert_eq!(drop, 0);
        let n = 2 * self.channels * t * bins;
        codec.stft().inverse_step(&self.spec[..n], t, &mut self.istft, &mut self.audio)?;
        debug_assert_eq!(per_frame * t, self.samples_per_frame);
        Ok(())
    }
}

/// What a [`DecoderStream`] carries between frames, in a form that serialises exactly (floats
/// as their bit patterns): the step counter, the look-ahead frames still to drop, every conv's
/// history rows and the inverse STFT's overlap-add tail. Scratch is not part of it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecoderSnapshot {
    pub levels: usize,
    pub steps: u64,
    pub to_drop: usize,
    /// [`History::buffers`], each f32 as `to_bits`.
    pub history: Vec<Vec<u32>>,
    /// The inverse STFT tail, each f64 as `to_bits`.
    pub istft_tail: Vec<u64>,
}

impl DecoderStream {
    /// The stream's state, to save.
    pub fn snapshot(&self) -> DecoderSnapshot {
        DecoderSnapshot {
            levels: self.levels,
            steps: self.steps,
            to_drop: self.to_drop,
            history: self.history.buffers().iter().map(|b| b.iter().map(|v| v.to_bits()).collect()).collect(),
            istft_tail: self.istft.tail().iter().map(|v| v.to_bits()).collect(),
        }
    }

    /// Continues from a saved [`DecoderSnapshot`] of a stream on the same codec. A snapshot that
    /// does not fit (levels, look-ahead, buffer counts, tail length) is an error and the stream
    /// is left as it was.
    pub fn restore(&mut self, codec: &Codec, snap: &DecoderSnapshot) -> Result<(), CodecError> {
        let DecoderPath::Host(dec) = &codec.decoder else {
            return Err(CodecError::Unsupported("frame-by-frame decoding runs on the host decoder only".into()));
        };
        let bad = |why: String| Err(CodecError::BadInput(format!("saved decoder stream does not fit this codec: {why}")));
        if snap.levels != self.levels {
            return bad(format!("{} levels, this stream decodes {}", snap.levels, self.levels));
        }
        if snap.to_drop > self.crop_frames {
            return bad(format!("{} look-ahead frames left to drop, the codec has {}", snap.to_drop, self.crop_frames));
        }
        let blocks = dec.num_blocks();
        if !snap.history.is_empty() && snap.history.len() != 3 + 2 * blocks {
            return bad(format!("{} history buffers, expected 3 + 2·{blocks}", snap.history.len()));
        }
        if snap.istft_tail.len() != self.istft.tail().len() {
            return bad(format!("inverse STFT tail of {} values, expected {}", snap.istft_tail.len(), self.istft.tail().len()));
        }
        let tail: Vec<f64> = snap.istft_tail.iter().map(|&b| f64::from_bits(b)).collect();
        let bufs = snap.history.iter().map(|b| b.iter().map(|&v| f32::from_bits(v)).collect()).collect();
        let restored = self.history.restore(bufs, blocks) && self.istft.set_tail(&tail);
        debug_assert!(restored, "counts were checked above");
        self.steps = snap.steps;
        self.to_drop = snap.to_drop;
        self.audio.fill(0.0);
        Ok(())
    }
}

/// int16 PCM of a sample as the MRT2 system emits it: `round(32767.5·clip(0.5·x, −1, 1) − 0.5)`
/// (M1 README, "Codec (e)"; `jnp.round` rounds half to even).
pub fn to_int16(x: f32) -> i16 {
    let s = (0.5 * f64::from(x)).clamp(-1.0, 1.0);
    (32767.5 * s - 0.5).round_ties_even() as i16
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::CodecConfig;
    use crate::formats::npy;
    use std::path::Path;

    fn c1() -> (Codec, Vec<i32>, usize) {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/codec/C1");
        let codec = Codec::load(&dir, CodecConfig::spectrostream_48k_stereo(), &crate::Target::host()).expect("C1 loads");
        let tokens = npy::read_i32(&dir.join("tokens.npy")).expect("tokens.npy reads");
        assert_eq!(tokens.shape, [2, 50, 16]);
        (codec, tokens.data, 16)
    }

    fn max_diff(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len());
        a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
    }

    /// Streams `frames` frames of `codes` (`[frames][levels]`) plus one more (the look-ahead
    /// frame, any codes) and returns the `frames` audio frames after the first, channel-first.
    fn stream(codec: &Codec, st: &mut DecoderStream, codes: &[i32], levels: usize, lookahead: &[i32]) -> Vec<f32> {
        let frames = codes.len() / levels;
        let spf = codec.samples_per_frame();
        let mut out = vec![0f32; 2 * frames * spf];
        for t in 0..=frames {
            let frame = if t < frames { &codes[t * levels..(t + 1) * levels] } else { lookahead };
            let audio = st.step(codec, frame).expect("step");
            if t == 0 {
                assert!(audio.iter().all(|&v| v == 0.0), "step 0 is silent");
                continue;
            }
            for c in 0..2 {
                out[(c * frames + t - 1) * spf..][..spf].copy_from_slice(&audio[c * spf..(c + 1) * spf]);
            }
        }
        out
    }

    #[test]
    fn streaming_equals_the_whole_clip_decode_after_reset_and_across_streams() {
        let (codec, tokens, levels) = c1();
        let frames = 30;
        let clip0 = &tokens[..frames * levels];
        let clip1 = &tokens[50 * levels..(50 + frames) * levels];
        // The whole-clip decode appends a zero latent frame; streaming needs codes whose latent is
        // the look-ahead, so compare all but the last frame, which depends on it.
        let whole0 = codec.decode_codes(clip0, frames, levels).unwrap();
        let whole1 = codec.decode_codes(clip1, frames, levels).unwrap();
        let spf = codec.samples_per_frame();
        let head = |a: &[f32]| -> Vec<f32> { a.chunks_exact(frames * spf).flat_map(|c| c[..(frames - 1) * spf].to_vec()).collect() };
        let mut st = DecoderStream::new(&codec, levels).unwrap();
        let look = &tokens[frames * levels..(frames + 1) * levels];
        let got0 = stream(&codec, &mut st, clip0, levels, look);
        // The next frame's codes are the look-ahead: the last frame equals a decode of one frame more.
        let longer = codec.decode_codes(&tokens[..(frames + 1) * levels], frames + 1, levels).unwrap();
        let longer: Vec<f32> = longer.chunks_exact((frames + 1) * spf).flat_map(|c| c[..frames * spf].to_vec()).collect();
        let scale = whole0.iter().fold(0f32, |m, v| m.max(v.abs()));
        let d0 = max_diff(&got0, &longer);
        println!("clip 0: max |diff| {d0:e} at scale {scale:e}");
        assert!(d0 < 1e-5, "{d0:e}");
        assert!(max_diff(&head(&got0), &head(&whole0)) < 1e-5);
        // After reset: another clip from the start.
        st.reset();
        assert_eq!(st.steps(), 0);
        let look1 = &tokens[(50 + frames) * levels..(50 + frames + 1) * levels];
        let got1 = stream(&codec, &mut st, clip1, levels, look1);
        let d1 = max_diff(&head(&got1), &head(&whole1));
        println!("clip 1 after reset: max |diff| {d1:e}");
        assert!(d1 < 1e-5, "{d1:e}");
        // A second stream on the same codec, interleaved with the first: states never mix.
        let mut other = DecoderStream::new(&codec, levels).unwrap();
        st.reset();
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for t in 0..frames {
            a.extend_from_slice(st.step(&codec, &clip0[t * levels..(t + 1) * levels]).unwrap());
            b.extend_from_slice(other.step(&codec, &clip1[t * levels..(t + 1) * levels]).unwrap());
        }
        let per_step = |v: &[f32], c: usize| -> Vec<f32> { v.chunks_exact(2 * spf).skip(1).flat_map(|s| s[c * spf..(c + 1) * spf].to_vec()).collect() };
        for c in 0..2 {
            let want0 = &whole0[c * frames * spf..][..(frames - 1) * spf];
            let want1 = &whole1[c * frames * spf..][..(frames - 1) * spf];
            assert!(max_diff(&per_step(&a, c), want0) < 1e-5, "interleaved stream 0, channel {c}");
            assert!(max_diff(&per_step(&b, c), want1) < 1e-5, "interleaved stream 1, channel {c}");
        }
    }

    #[test]
    fn bad_codes_are_errors_that_leave_the_state_unchanged() {
        let (codec, tokens, levels) = c1();
        let mut st = DecoderStream::new(&codec, levels).unwrap();
        let mut reference = DecoderStream::new(&codec, levels).unwrap();
        for t in 0..3 {
            st.step(&codec, &tokens[t * levels..(t + 1) * levels]).unwrap();
            reference.step(&codec, &tokens[t * levels..(t + 1) * levels]).unwrap();
        }
        let frame = &tokens[3 * levels..4 * levels];
        let short = st.step(&codec, &frame[..levels - 1]).expect_err("15 codes for 16 levels");
        assert!(short.to_string().contains("15 codes"), "{short}");
        let mut bad = frame.to_vec();
        bad[5] = 1024;
        let range = st.step(&codec, &bad).expect_err("code 1024");
        assert!(range.to_string().contains("1024") && range.to_string().contains("level 5"), "{range}");
        bad[5] = -1;
        assert!(st.step(&codec, &bad).is_err());
        assert!(DecoderStream::new(&codec, 17).is_err());
        assert_eq!(st.steps(), 3);
        // The next good frame gives what a stream that never saw the errors gives.
        let want = reference.step(&codec, frame).unwrap().to_vec();
        assert_eq!(st.step(&codec, frame).unwrap(), &want[..]);
    }

    /// MRT2's streaming step on the M1 set: `greedy_codes.npy` decoded frame by frame gives
    /// `greedy_audio_int16.npy` (`[frames, 1920, 2]`, frame 0 silent) within the set's
    /// `audio_int16_abs_lsb`, and the whole-clip decode gives `codec_offline_audio_f32.npy`.
    #[test]
    fn the_m1_codec_streams_the_reference_int16_audio() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/mrt2/M1");
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).expect("M1 config.json reads")).expect("json");
        let config = CodecConfig::from_mrt2_value(&json["codec"]).expect("M1 codec config");
        assert_eq!(config, CodecConfig::spectrostream_48k_stereo());
        let tol = json.pointer("/suggested_tolerances/audio_int16_abs_lsb").and_then(serde_json::Value::as_i64).expect("audio tolerance");
        let codec = Codec::load_mrt2(&dir.join("weights.safetensors"), config, &crate::Target::host()).expect("M1 codec loads");
        assert!(codec.encoder().is_err(), "decode-only");
        let codes = npy::read_i32(&dir.join("greedy_codes.npy")).expect("greedy_codes.npy");
        let want = npy::read_i16(&dir.join("greedy_audio_int16.npy")).expect("greedy_audio_int16.npy");
        let [frames, levels] = codes.shape[..] else { panic!("codes shape {:?}", codes.shape) };
        let spf = codec.samples_per_frame();
        assert_eq!(want.shape, [frames, spf, 2]);
        let mut st = DecoderStream::new(&codec, levels).expect("stream");
        let mut worst = 0i32;
        let mut frame0 = 0i32;
        for t in 0..frames {
            let audio = st.step(&codec, &codes.data[t * levels..(t + 1) * levels]).expect("step");
            for i in 0..spf {
                for c in 0..2 {
                    let (got, want) = (i32::from(to_int16(audio[c * spf + i])), i32::from(want.data[(t * spf + i) * 2 + c]));
                    worst = worst.max((got - want).abs());
                    if t == 0 {
                        frame0 = frame0.max(got.abs()).max(want.abs());
                    }
                }
            }
        }
        println!("M1 streamed int16: max |diff| {worst} LSB over {frames} frames (tolerance {tol})");
        assert_eq!(frame0, 0, "frame 0 is silent");
        assert!(i64::from(worst) <= tol, "{worst} LSB");
        // The offline decode: `[31·1920, 2]`, the layer-mode decode of all 32 frames.
        let offline = npy::read_f32(&dir.join("codec_offline_audio_f32.npy")).expect("codec_offline_audio_f32.npy");
        let n = (frames - 1) * spf;
        assert_eq!(offline.shape, [n, 2]);
        let whole = codec.decode_codes(&codes.data, frames, levels).unwrap();
        let mut d = 0f32;
        for i in 0..n {
            for c in 0..2 {
                d = d.max((whole[c * frames * spf + i] - offline.data[i * 2 + c]).abs());
            }
        }
        println!("M1 whole-clip decode vs codec_offline_audio_f32: max |diff| {d:e}");
        assert!(d < 1e-5, "{d:e}");
    }

    #[test]
    fn int16_conversion_is_the_systems() {
        assert_eq!(to_int16(0.0), 0); // round(−0.5) = −0 (half to even)
        assert_eq!(to_int16(2.0), 32767);
        assert_eq!(to_int16(-2.0), -32768);
        assert_eq!(to_int16(5.0), 32767);
        assert_eq!(to_int16(1.0), 16383); // 16383.75 − 0.5 = 16383.25
    }
}
