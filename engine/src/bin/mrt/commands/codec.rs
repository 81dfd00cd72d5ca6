//! `mrt encode` and `mrt decode`: the SpectroStream codec on audio files and code arrays.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use mrt::DeviceChoice;

#[derive(clap::Args)]
pub struct EncodeArgs {
    input: PathBuf,
    #[arg(short, long)]
    output: PathBuf,
    /// RVQ levels to keep (the LM reads 4 and writes 16; the codec has 64).
    #[arg(long, default_value_t = 16)]
    levels: usize,
    /// Directory with encoder.safetensors, decoder.safetensors and quantizer.safetensors
    /// (MRT2's resources/spectrostream, or a fixture set).
    #[arg(long)]
    weights: PathBuf,
    /// A codec config.json (default: the released 48 kHz stereo codec).
    #[arg(long)]
    config: Option<PathBuf>,
    #[arg(long)]
    device: Option<DeviceChoice>,
}

#[derive(clap::Args)]
pub struct DecodeArgs {
    input: PathBuf,
    #[arg(short, long)]
    output: PathBuf,
    /// Use only the first N levels (default: all in the file).
    #[arg(long)]
    levels: Option<usize>,
    #[arg(long)]
    weights: PathBuf,
    #[arg(long)]
    config: Option<PathBuf>,
    #[arg(long)]
    device: Option<DeviceChoice>,
}

fn load_codec(weights: &Path, config: Option<&Path>, device: Option<DeviceChoice>) -> Result<mrt::codec::Codec> {
    let config = match config {
        Some(path) => mrt::codec::CodecConfig::from_json_file(path)?,
        None => mrt::codec::CodecConfig::spectrostream_48k_stereo(),
    };
    let target = crate::args::target(device, true)?;
    Ok(mrt::codec::Codec::load(weights, config, &target)?)
}

impl EncodeArgs {
    pub fn run(self) -> Result<ExitCode> {
        let Self { input, output, levels, weights, config, device } = self;
        let codec = load_codec(&weights, config.as_deref(), device)?;
        let audio = mrt::codec::audio::read(&input)?;
        let (rate, channels) = (audio.sample_rate_hz, audio.channels);
        let planar = mrt::codec::audio::conform(audio, codec.config.sample_rate_hz, codec.channels(), &input)?;
        let codes = codec.encode_audio(&planar, levels).with_context(|| format!("encoding {}", input.display()))?;
        mrt::formats::npy::write_i32(&output, &[codes.frames, codes.levels], &codes.data)?;
        println!(
            "{}: {channels} ch at {rate} Hz → {} frames × {} levels → {}",
            input.display(),
            codes.frames,
            codes.levels,
            output.display()
        );
        Ok(ExitCode::SUCCESS)
    }
}

impl DecodeArgs {
    pub fn run(self) -> Result<ExitCode> {
        let Self { input, output, levels, weights, config, device } = self;
        let codec = load_codec(&weights, config.as_deref(), device)?;
        let codes = mrt::formats::npy::read_i32(&input)?;
        let (frames, stored) = match codes.shape.as_slice() {
            [f, l] | [1, f, l] => (*f, *l),
            other => bail!("{}: codes must be [frames, levels] or [1, frames, levels], found {other:?}", input.display()),
        };
        let levels = levels.unwrap_or(stored);
        if levels == 0 || levels > stored {
            bail!("--levels {levels}: the file has {stored} levels");
        }
        let kept: Vec<i32> = codes.data.chunks_exact(stored.max(1)).flat_map(|row| row[..levels].to_vec()).collect();
        let audio = codec.decode_codes(&kept, frames, levels).with_context(|| format!("decoding {}", input.display()))?;
        mrt::codec::audio::write_wav(&output, &audio, codec.channels(), codec.config.sample_rate_hz)?;
        println!("{}: {frames} frames × {levels} levels → {} samples → {}", input.display(), audio.len() / codec.channels(), output.display());
        Ok(ExitCode::SUCCESS)
    }
}
