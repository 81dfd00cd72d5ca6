//! `mrt bench codec`: the codec at its released size (encoder base 32, decoder base 64, latent 256,
//! 64 × 1024 codebooks) with random weights, timing the two calls the streaming system makes:
//! decoding a 51-frame × 16-level chunk (spec §1.1 step 7) and encoding 2 s of stereo audio;
//! and MRT2's call, the frame-by-frame decode ([`super::DecoderStream`], host decoder only), in ms
//! per frame and GFLOP/s, against the rate the `gemm` crate reaches on the decoder's heaviest
//! product shape in the same run (the compute floor: the decoder is a chain of such products).

use std::fmt;
use std::time::Instant;

use serde::Serialize;

use super::host_decoder::GemmShape;
use super::weights::{random_files, CodecWeights, CodecWidths};
use super::{Codec, CodecConfig, DecoderPath, DecoderStream};
use crate::kernels::host::gemm::Parallelism;
use crate::kernels::host::gemm_checked;
use crate::Target;

/// Frames timed in the streaming decode (1 s of audio), after two warm-up frames.
const STREAM_FRAMES: usize = 25;

/// The frame-by-frame decode at the released size (host decoder).
#[derive(Clone, Debug, Serialize)]
pub struct StreamBench {
    pub frames: usize,
    /// Mean wall time of one [`DecoderStream::step`] (16 codes in, 1920 stereo samples out).
    pub step_ms: f64,
    /// Audio seconds per wall second (40 ms per frame).
    pub real_time_factor: f64,
    /// Useful FLOPs of the decoder network per frame (the junk columns of the padded rows not
    /// counted), and the rate the step reaches with them.
    pub gflop_per_frame: f64,
    pub gflops: f64,
    /// The same network's rate in the whole-chunk decode (52 latent frames at once).
    pub chunk_gflops: f64,
    /// The product shape with the most FLOPs per frame, its calls per frame and share of the
    /// frame's FLOPs, and the rate `gemm` reaches on it alone (same threads, same strides).
    pub top_gemm: GemmShape,
    pub top_gemm_calls: usize,
    pub top_gemm_share: f64,
    pub top_gemm_gflops: f64,
    /// The same shape through [`crate::kernels::host::gemm_serial`] (the stream step's tiles)
    /// on one thread.
    pub top_gemm_serial_gflops: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct CodecBenchReport {
    pub device: String,
    pub threads: usize,
    pub reps: usize,
    pub load_s: f64,
    /// `decode_codes` of 51 frames × 16 levels, end to end (mean over `reps`).
    pub decode_chunk_ms: f64,
    /// Of which: the decoder network on the device, input upload to output readback.
    pub decode_network_ms: f64,
    /// Of which: the inverse STFT on the host.
    pub decode_istft_ms: f64,
    /// `encode_audio` of 2 s of stereo audio to 16 levels, end to end.
    pub encode_2s_ms: f64,
    /// Of which: the encoder network (STFT upload to latent readback).
    pub encode_network_ms: f64,
    /// RVQ of the 50 latent frames to 16 levels, and to all 64.
    pub rvq_16_ms: f64,
    pub rvq_64_ms: f64,
    /// Audio seconds per wall second of the chunk decode (2.04 s of audio per chunk).
    pub decode_real_time_factor: f64,
    /// The frame-by-frame decode; `None` on a burn target (it runs on the host decoder only).
    pub stream: Option<StreamBench>,
}

impl fmt::Display for CodecBenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "codec bench: full size, random weights, device {}, {} threads, mean of {}", self.device, self.threads, self.reps)?;
        writeln!(f, "  load                       {:>9.2} s", self.load_s)?;
        writeln!(
            f,
            "  decode 51 frames × 16      {:>9.1} ms  (network {:.1} ms, inverse STFT {:.1} ms; {:.1}× real time)",
            self.decode_chunk_ms, self.decode_network_ms, self.decode_istft_ms, self.decode_real_time_factor
        )?;
        writeln!(f, "  encode 2 s → 16 levels     {:>9.1} ms  (network {:.1} ms)", self.encode_2s_ms, self.encode_network_ms)?;
        writeln!(f, "  RVQ 50 frames: 16 levels {:.1} ms, 64 levels {:.1} ms", self.rvq_16_ms, self.rvq_64_ms)?;
        match &self.stream {
            Some(s) => {
                let g = &s.top_gemm;
                writeln!(
                    f,
                    "  stream decode, per frame   {:>9.1} ms  ({:.2}× real time; {:.2} GFLOP/frame → {:.1} GFLOP/s; whole chunk {:.1} GFLOP/s)",
                    s.step_ms, s.real_time_factor, s.gflop_per_frame, s.gflops, s.chunk_gflops
                )?;
                write!(
                    f,
                    "  floor: gemm [{}×{}]·[{}×{}] (A rows {} apart; {}× per frame, {:.0}% of its FLOPs) alone {:.1} GFLOP/s; our tiles on one thread {:.1} GFLOP/s",
                    g.m, g.k, g.k, g.n, g.a_rs, s.top_gemm_calls, 100.0 * s.top_gemm_share, s.top_gemm_gflops, s.top_gemm_serial_gflops
                )
            }
            None => write!(f, "  stream decode: n/a (frame-by-frame decoding runs on the host decoder only)"),
        }
    }
}

fn mean_ms(reps: usize, mut f: impl FnMut() -> Result<(), String>) -> Result<f64, String> {
    let started = Instant::now();
    for _ in 0..reps {
        f()?;
    }
    Ok(started.elapsed().as_secs_f64() * 1e3 / reps as f64)
}

pub fn bench_codec(target: &Target, reps: usize) -> Result<CodecBenchReport, String> {
    let reps = reps.max(1);
    let device = target.device.clone();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let config = CodecConfig::spectrostream_48k_stereo();
    let started = Instant::now();
    let [e, d, q] = random_files(&config, &CodecWidths::full_size(), 7);
    let weights = CodecWeights::from_files(&e, &d, Some(&q), &config).map_err(|e| e.to_string())?;
    let codec = Codec::from_weights(config.clone(), weights, target).map_err(|e| e.to_string())?;
    let _ = device.sync();
    let load_s = started.elapsed().as_secs_f64();

    let (frames, levels) = (51usize, 16usize);
    let codes: Vec<i32> = (0..frames * levels).map(|i| ((i * 7919) % 1024) as i32).collect();
    let n = 96_000;
    let audio: Vec<f32> = (0..2 * n)
        .map(|i| {
            let t = (i % n) as f32 / 48_000.0;
            0.3 * (2.0 * std::f32::consts::PI * (220.0 + 110.0 * (i / n) as f32) * t).sin()
        })
        .collect();
    let err = |e: super::CodecError| e.to_string();
    // One stream's decoder buffers, kept between calls as a stream keeps them.
    let mut scratch = super::DecodeScratch::default();
    // Warm-up (autotuning on GPUs, allocator and page faults on CPUs).
    codec.decode_codes_in(&codes, frames, levels, &mut scratch).map_err(err)?;
    codec.encode_audio(&audio, levels).map_err(err)?;

    let decode_chunk_ms = mean_ms(reps, || codec.decode_codes_in(&codes, frames, levels, &mut scratch).map(drop).map_err(err))?;
    let latent = codec.rvq().decode(&codes, levels, levels).map_err(err)?;
    let dim = codec.rvq().dim();
    let mut padded = latent.clone();
    padded.extend(vec![0f32; dim]);
    let mut spec = Vec::new();
    let decode_network_ms = mean_ms(reps, || {
        spec = codec.decode_spectrogram(&padded, 1, frames + 1, &mut scratch).map_err(err)?.0;
        Ok(())
    })?;
    let t = spec.len() / (2 * codec.channels() * codec.stft().num_bins());
    let decode_istft_ms = mean_ms(reps, || codec.stft().inverse(&spec, codec.channels(), t).map(drop).map_err(err))?;

    let encode_2s_ms = mean_ms(reps, || codec.encode_audio(&audio, levels).map(drop).map_err(err))?;
    let mut emb = Vec::new();
    let encode_network_ms = mean_ms(reps, || {
        emb = codec.embed(&audio, 1).map_err(err)?;
        Ok(())
    })?;
    let rvq_16_ms = mean_ms(reps, || codec.rvq().encode(&emb, 16).map(drop).map_err(err))?;
    let rvq_64_ms = mean_ms(reps, || codec.rvq().encode(&emb, codec.levels()).map(drop).map_err(err))?;
    let audio_s = (frames * codec.samples_per_frame()) as f64 / f64::from(config.sample_rate_hz);
    let stream = match &codec.decoder {
        DecoderPath::Host(dec) => Some(bench_stream(&codec, dec, &codes[..levels * STREAM_FRAMES.min(frames)], levels, decode_network_ms, frames + 1)?),
        DecoderPath::Burn(_) => None,
    };
    Ok(CodecBenchReport {
        device: target.choice.to_string(),
        threads,
        reps,
        load_s,
        decode_chunk_ms,
        decode_network_ms,
        decode_istft_ms,
        encode_2s_ms,
        encode_network_ms,
        rvq_16_ms,
        rvq_64_ms,
        decode_real_time_factor: audio_s / (decode_chunk_ms / 1e3),
        stream,
    })
}

/// Times [`DecoderStream::step`] over `codes` (`[frames][levels]`) and the heaviest `gemm`
/// shape of a step alone; `chunk_ms` is the network time of a `chunk_frames`-frame decode.
fn bench_stream(
    codec: &Codec,
    dec: &super::HostDecoder,
    codes: &[i32],
    levels: usize,
    chunk_ms: f64,
    chunk_frames: usize,
) -> Result<StreamBench, String> {
    let err = |e: super::CodecError| e.to_string();
    let mut stream = DecoderStream::new(codec, levels).map_err(err)?;
    for frame in codes.chunks_exact(levels).take(2) {
        stream.step(codec, frame).map_err(err)?; // warm-up: buffers grow on the first step
    }
    stream.reset();
    let frames = codes.len() / levels;
    let step_ms = mean_ms(1, || {
        for frame in codes.chunks_exact(levels) {
            stream.step(codec, frame).map_err(err)?;
        }
        Ok(())
    })? / frames as f64;
    let profile = dec.profile(1);
    let (top, calls) = profile.top().ok_or("the decoder has no gemm")?;
    // The floor: that product alone, repeated as often as a step makes it (at least 20 times).
    let a = vec![0.5f32; (top.m - 1) * top.a_rs + top.k];
    let b = vec![0.25f32; top.k * top.n];
    let mut c = vec![0f32; top.m * top.n];
    let reps = calls.max(20);
    let gemm = |c: &mut [f32]| gemm_checked(top.m, top.n, top.k, &a, top.a_rs, 1, &b, top.n, 1, c, top.n, true, Parallelism::Rayon(0));
    gemm(&mut c);
    let gemm_ms = mean_ms(reps, || {
        gemm(&mut c);
        Ok(())
    })?;
    // Our tiles (what a stream step runs) on the same shape, on one thread.
    let serial_ms = mean_ms(reps, || {
        crate::kernels::host::gemm_serial(top.m, top.n, top.k, &a, top.a_rs, &b, top.n, &mut c, top.n, true);
        Ok(())
    })?;
    let chunk_flops = dec.profile(chunk_frames).flops;
    Ok(StreamBench {
        frames,
        step_ms,
        real_time_factor: codec.samples_per_frame() as f64 / f64::from(codec.config.sample_rate_hz) / (step_ms / 1e3),
        gflop_per_frame: profile.flops / 1e9,
        gflops: profile.flops / (step_ms * 1e6),
        chunk_gflops: chunk_flops / (chunk_ms * 1e6),
        top_gemm_serial_gflops: top.flops() / (serial_ms * 1e6),
        top_gemm: top,
        top_gemm_calls: calls,
        top_gemm_share: top.flops() * calls as f64 / profile.flops,
        top_gemm_gflops: top.flops() / (gemm_ms * 1e6),
    })
}
