//! `mrt bench codec`: the codec at its released size (encoder base 32, decoder base 64, latent 256,
//! 64 × 1024 codebooks) with random weights, timing the two calls the streaming system makes:
//! decoding a 51-frame × 16-level chunk (spec §1.1 step 7) and encoding 2 s of stereo audio.

use std::fmt;
use std::time::Instant;

use serde::Serialize;

use super::weights::{random_files, CodecWeights, CodecWidths};
use super::{Codec, CodecConfig};
use crate::Target;

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
        write!(f, "  RVQ 50 frames: 16 levels {:.1} ms, 64 levels {:.1} ms", self.rvq_16_ms, self.rvq_64_ms)
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
    })
}
