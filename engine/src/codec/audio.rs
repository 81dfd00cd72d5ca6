//! Audio files in and out of the codec: WAV/FLAC/MP3/OGG Vorbis read with symphonia, resampled
//! to the codec rate with rubato, mono duplicated to stereo; 32-bit float WAV written with hound.
//!
//! Audio is channel-first (planar) `[channel][frame]`, like the rest of [`crate::codec`].

use std::fs::File;
use std::path::{Path, PathBuf};

use rubato::{FftFixedIn, Resampler};
use symphonia::core::audio::SampleBuffer;
use symphonia::core::codecs::{DecoderOptions, CODEC_TYPE_NULL};
use symphonia::core::errors::Error as SymphoniaError;
use symphonia::core::formats::FormatOptions;
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;
use symphonia::core::probe::Hint;

#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    #[error("cannot open {path}: {source}")]
    Io { path: PathBuf, #[source] source: std::io::Error },
    #[error("{path}: unsupported audio: {reason}")]
    Unsupported { path: PathBuf, reason: String },
    #[error("{path}: cannot decode")]
    Decode { path: PathBuf, #[source] source: SymphoniaError },
    #[error("{path}: reading stopped by the caller")]
    Stopped { path: PathBuf },
    #[error("{path} holds no audio samples")]
    Empty { path: PathBuf },
    #[error("{path}: sample {frame} of channel {channel} is not finite (NaN or infinity)")]
    NonFinite { path: PathBuf, channel: usize, frame: usize },
    #[error("{path}: {channels} channels; the codec takes mono or stereo")]
    Channels { path: PathBuf, channels: usize },
    #[error("resampling {from_hz} Hz → {to_hz} Hz failed")]
    Resample { from_hz: u32, to_hz: u32, #[source] source: Box<dyn std::error::Error + Send + Sync> },
    #[error("cannot write {path}")]
    Write { path: PathBuf, #[source] source: hound::Error },
}

/// Decoded audio, channel-first.
#[derive(Clone, Debug, PartialEq)]
pub struct Audio {
    pub sample_rate_hz: u32,
    pub channels: usize,
    /// `[channel][frame]`, `channels · frames` values.
    pub samples: Vec<f32>,
}

impl Audio {
    pub fn frames(&self) -> usize {
        self.samples.len() / self.channels.max(1)
    }
}

/// Reads the first audio track of a file (format from the contents, the extension as a hint).
pub fn read(path: &Path) -> Result<Audio, AudioError> {
    let mut interleaved: Vec<f32> = Vec::new();
    let (channels, sample_rate_hz) = stream(path, |block, _, _| {
        interleaved.extend_from_slice(block);
        Ok(())
    })?;
    let frames = interleaved.len() / channels;
    if frames == 0 {
        return Err(AudioError::Empty { path: path.to_path_buf() });
    }
    let mut samples = vec![0f32; channels * frames];
    for (f, frame) in interleaved.chunks_exact(channels).enumerate() {
        for (c, &v) in frame.iter().enumerate() {
            if !v.is_finite() {
                return Err(AudioError::NonFinite { path: path.to_path_buf(), channel: c, frame: f });
            }
            samples[c * frames + f] = v;
        }
    }
    Ok(Audio { sample_rate_hz, channels, samples })
}

/// Decodes the first audio track packet by packet, handing each block of interleaved samples to
/// `on_block(samples, channels, sample_rate_hz)`: memory stays bounded whatever the file's length.
/// Returns `(channels, sample_rate_hz)`.
pub fn stream(path: &Path, mut on_block: impl FnMut(&[f32], usize, u32) -> Result<(), AudioError>) -> Result<(usize, u32), AudioError> {
    let file = File::open(path).map_err(|source| AudioError::Io { path: path.to_path_buf(), source })?;
    let unsupported = |reason: String| AudioError::Unsupported { path: path.to_path_buf(), reason };
    let decode = |source: SymphoniaError| AudioError::Decode { path: path.to_path_buf(), source };
    let mss = MediaSourceStream::new(Box::new(file), Default::default());
    let mut hint = Hint::new();
    if let Some(ext) = path.extension().and_then(|e| e.to_str()) {
        hint.with_extension(ext);
    }
    let probed = symphonia::default::get_probe()
        .format(&hint, mss, &FormatOptions::default(), &MetadataOptions::default())
        .map_err(|e| match e {
            SymphoniaError::Unsupported(what) => unsupported(format!("not a recognised audio format ({what})")),
            other => decode(other),
        })?;
    let mut format = probed.format;
    let track = format
        .tracks()
        .iter()
        .find(|t| t.codec_params.codec != CODEC_TYPE_NULL)
        .ok_or_else(|| unsupported("no audio track".into()))?;
    let track_id = track.id;
    let mut sample_rate = track.codec_params.sample_rate;
    let mut channels = track.codec_params.channels.map(|c| c.count());
    let mut decoder = symphonia::default::get_codecs().make(&track.codec_params, &DecoderOptions::default()).map_err(|e| match e {
        SymphoniaError::Unsupported(what) => unsupported(format!("codec or sample format not supported ({what})")),
        other => decode(other),
    })?;
    let mut buf: Option<SampleBuffer<f32>> = None;
    loop {
        let packet = match format.next_packet() {
            Ok(p) => p,
            Err(SymphoniaError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(SymphoniaError::ResetRequired) => break,
            Err(e) => return Err(decode(e)),
        };
        if packet.track_id() != track_id {
            continue;
        }
        let decoded = match decoder.decode(&packet) {
            Ok(d) => d,
            Err(SymphoniaError::Unsupported(what)) => return Err(unsupported(what.to_owned())),
            Err(e) => return Err(decode(e)),
        };
        let spec = *decoded.spec();
        if channels.is_some_and(|c| c != spec.channels.count()) || sample_rate.is_some_and(|r| r != spec.rate) {
            return Err(unsupported("the channel count or sample rate changes mid-stream".into()));
        }
        channels = Some(spec.channels.count());
        sample_rate = Some(spec.rate);
        let needed = decoded.capacity() as u64;
        let b = match &mut buf {
            Some(b) if b.capacity() as u64 >= needed => b,
            _ => buf.insert(SampleBuffer::new(needed, spec)),
        };
        b.copy_interleaved_ref(decoded);
        if spec.channels.count() > 0 && spec.rate > 0 {
            on_block(b.samples(), spec.channels.count(), spec.rate)?;
        }
    }
    let channels = channels.filter(|&c| c > 0).ok_or_else(|| unsupported("unknown channel count".into()))?;
    let sample_rate_hz = sample_rate.filter(|&r| r > 0).ok_or_else(|| unsupported("unknown sample rate".into()))?;
    Ok((channels, sample_rate_hz))
}

/// Audio as the codec takes it: `channels` (mono is duplicated) at `sample_rate_hz`, channel-first.
pub fn conform(audio: Audio, sample_rate_hz: u32, channels: usize, path: &Path) -> Result<Vec<f32>, AudioError> {
    let frames = audio.frames();
    let planar = match (audio.channels, channels) {
        (a, b) if a == b => audio.samples,
        (1, n) => audio.samples.iter().copied().cycle().take(n * frames).collect(),
        (a, _) => return Err(AudioError::Channels { path: path.to_path_buf(), channels: a }),
    };
    if audio.sample_rate_hz == sample_rate_hz {
        return Ok(planar);
    }
    resample(&planar, channels, audio.sample_rate_hz, sample_rate_hz)
}

/// Resamples channel-first audio with rubato's FFT resampler; output length `round(n · to / from)`,
/// the resampler's delay removed.
pub fn resample(planar: &[f32], channels: usize, from_hz: u32, to_hz: u32) -> Result<Vec<f32>, AudioError> {
    let err = |source: Box<dyn std::error::Error + Send + Sync>| AudioError::Resample { from_hz, to_hz, source };
    let frames = planar.len() / channels.max(1);
    let want = ((frames as u64 * u64::from(to_hz) + u64::from(from_hz) / 2) / u64::from(from_hz)) as usize;
    let mut r = FftFixedIn::<f32>::new(from_hz as usize, to_hz as usize, 1024, 2, channels).map_err(|e| err(e.into()))?;
    let delay = r.output_delay();
    let mut out: Vec<Vec<f32>> = vec![Vec::with_capacity(want + delay); channels];
    let mut pos = 0;
    let input: Vec<&[f32]> = planar.chunks_exact(frames).collect();
    while out[0].len() < want + delay {
        let need = r.input_frames_next();
        let produced = if pos + need <= frames {
            let chunk: Vec<&[f32]> = input.iter().map(|c| &c[pos..pos + need]).collect();
            pos += need;
            r.process(&chunk, None)
        } else if pos < frames {
            let chunk: Vec<&[f32]> = input.iter().map(|c| &c[pos..]).collect();
            pos = frames;
            r.process_partial(Some(&chunk), None)
        } else {
            r.process_partial::<&[f32]>(None, None)
        }
        .map_err(|e| err(e.into()))?;
        for (o, p) in out.iter_mut().zip(produced) {
            o.extend(p);
        }
    }
    Ok(out.into_iter().flat_map(|c| c.into_iter().skip(delay).take(want)).collect())
}

/// Writes channel-first audio as a 32-bit float WAV.
pub fn write_wav(path: &Path, planar: &[f32], channels: usize, sample_rate_hz: u32) -> Result<(), AudioError> {
    let err = |source: hound::Error| AudioError::Write { path: path.to_path_buf(), source };
    let spec = hound::WavSpec { channels: channels as u16, sample_rate: sample_rate_hz, bits_per_sample: 32, sample_format: hound::SampleFormat::Float };
    let mut w = hound::WavWriter::create(path, spec).map_err(err)?;
    let frames = planar.len() / channels.max(1);
    for f in 0..frames {
        for c in 0..channels {
            w.write_sample(planar[c * frames + f]).map_err(err)?;
        }
    }
    w.finalize().map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("mrt-audio-{}-{name}", std::process::id()))
    }

    #[test]
    fn wav_round_trips_and_mono_becomes_stereo() {
        let p = tmp("rt.wav");
        let planar: Vec<f32> = (0..2 * 1000).map(|i| ((i as f32) * 0.01).sin() * 0.5).collect();
        write_wav(&p, &planar, 2, 48_000).unwrap();
        let a = read(&p).unwrap();
        assert_eq!((a.sample_rate_hz, a.channels, a.frames()), (48_000, 2, 1000));
        assert_eq!(a.samples, planar);
        write_wav(&p, &planar[..1000], 1, 48_000).unwrap();
        let stereo = conform(read(&p).unwrap(), 48_000, 2, &p).unwrap();
        assert_eq!(&stereo[..1000], &stereo[1000..]);
        std::fs::remove_file(&p).unwrap();
    }

    #[test]
    fn resampling_keeps_a_sine_and_the_length() {
        let n = 44_100;
        let x: Vec<f32> = (0..n).map(|i| (2.0 * std::f32::consts::PI * 1000.0 * i as f32 / 44_100.0).sin()).collect();
        let y = resample(&x, 1, 44_100, 48_000).unwrap();
        assert_eq!(y.len(), 48_000);
        // Away from the edges the output is the same sine sampled at 48 kHz.
        let err = (2_000..46_000)
            .map(|i| (y[i] - (2.0 * std::f32::consts::PI * 1000.0 * i as f32 / 48_000.0).sin()).abs())
            .fold(0f32, f32::max);
        assert!(err < 1e-2, "{err}");
    }

    #[test]
    fn bad_files_are_clear_errors() {
        let p = tmp("bad.wav");
        std::fs::write(&p, b"definitely not audio").unwrap();
        assert!(matches!(read(&p), Err(AudioError::Unsupported { .. } | AudioError::Decode { .. })), "{:?}", read(&p));
        write_wav(&p, &[], 2, 48_000).unwrap();
        assert!(matches!(read(&p), Err(AudioError::Empty { .. })), "{:?}", read(&p));
        write_wav(&p, &[0.0, f32::NAN, 0.0, 0.0], 2, 48_000).unwrap();
        assert!(matches!(read(&p), Err(AudioError::NonFinite { channel: 0, frame: 1, .. })), "{:?}", read(&p));
        assert!(matches!(read(&tmp("missing.wav")), Err(AudioError::Io { .. })));
        // 3 channels cannot be mapped onto the stereo codec.
        write_wav(&p, &[0.0; 6], 3, 48_000).unwrap();
        assert!(matches!(conform(read(&p).unwrap(), 48_000, 2, &p), Err(AudioError::Channels { channels: 3, .. })));
        // A WAV whose sample format tag is unknown is "unsupported", not a panic.
        let mut wav = Vec::new();
        wav.extend_from_slice(b"RIFF");
        wav.extend_from_slice(&(4u32 + 24 + 8 + 8).to_le_bytes());
        wav.extend_from_slice(b"WAVEfmt ");
        wav.extend_from_slice(&16u32.to_le_bytes());
        for v in [0x1234u16, 1] {
            wav.extend_from_slice(&v.to_le_bytes());
        }
        wav.extend_from_slice(&48_000u32.to_le_bytes());
        wav.extend_from_slice(&96_000u32.to_le_bytes());
        for v in [2u16, 16] {
            wav.extend_from_slice(&v.to_le_bytes());
        }
        wav.extend_from_slice(b"data");
        wav.extend_from_slice(&8u32.to_le_bytes());
        wav.extend_from_slice(&[0; 8]);
        std::fs::write(&p, &wav).unwrap();
        assert!(matches!(read(&p), Err(AudioError::Unsupported { .. })), "{:?}", read(&p));
        // 8-bit PCM is read.
        let spec = hound::WavSpec { channels: 1, sample_rate: 8_000, bits_per_sample: 8, sample_format: hound::SampleFormat::Int };
        let mut w = hound::WavWriter::create(&p, spec).unwrap();
        for i in 0..100i8 {
            w.write_sample(i).unwrap();
        }
        w.finalize().unwrap();
        assert_eq!(read(&p).unwrap().frames(), 100);
        std::fs::remove_file(&p).unwrap();
    }
}
