//! `mrt generate`: music from weighted prompts into a WAV, with v1 (`--model v1`, the default)
//! or MRT2 (`--model mrt2`: also a MIDI file's notes, drums and adherence per frame).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use mrt::mrt2::conditioning::DrumFlag;
use mrt::stream::{Controls, Generator, Mrt2Controls, StreamState};
use mrt::style::Prompt;

use crate::args::{ensure_model, prompt_weights, settings, LmFlags, ModelArgs, ModelFamily};

/// `--drums`.
#[derive(Clone, Copy, clap::ValueEnum)]
enum Drums {
    /// The model decides.
    Auto,
    /// No drums.
    Off,
    /// Drums.
    On,
}

#[derive(clap::Args)]
pub struct Args {
    /// v1 or mrt2.
    #[arg(long = "model", value_enum, default_value = "v1")]
    family: ModelFamily,
    /// A text prompt or an audio file (repeat for a blend); none: unconditional.
    #[arg(long = "prompt")]
    prompts: Vec<String>,
    /// One weight ≥ 0 per prompt (repeat, or comma-separate); default 1 each.
    #[arg(long = "weight", alias = "weights", value_delimiter = ',')]
    weights: Vec<f32>,
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// v1: the sampler's seed (default 0). MRT2: the stream's key (default: the reference's key).
    #[arg(long)]
    seed: Option<u64>,
    /// Default 1.1 (v1), 1.3 (MRT2).
    #[arg(long)]
    temperature: Option<f32>,
    #[arg(long = "top-k", default_value_t = 40)]
    top_k: usize,
    /// v1's classifier-free guidance weight (MRT2 uses the adherence flags instead).
    #[arg(long = "guidance")]
    guidance: Option<f32>,
    /// MRT2: a standard MIDI file whose notes drive the piano roll, frame by frame.
    #[arg(long)]
    midi: Option<PathBuf>,
    /// MRT2: drums auto (the model decides), off or on.
    #[arg(long, value_enum)]
    drums: Option<Drums>,
    /// MRT2: how closely to follow the prompts, −1..7 (default 3).
    #[arg(long = "prompt-adherence", allow_hyphen_values = true)]
    prompt_adherence: Option<f64>,
    /// MRT2: how closely to follow the MIDI notes, −1..7 (default 1).
    #[arg(long = "note-adherence", allow_hyphen_values = true)]
    note_adherence: Option<f64>,
    /// MRT2: how closely to follow the drum setting, −1..7 (default 1).
    #[arg(long = "drum-adherence", allow_hyphen_values = true)]
    drum_adherence: Option<f64>,
    /// MRT2: 1 sends a note's first frame as an onset then sustain, 0 sends "on" throughout.
    #[arg(long = "onset-mode")]
    onset_mode: Option<u8>,
    /// MRT2: pitches within this many semitones of a held note are sent as explicit "off"
    /// (127: every pitch; default 0: the rest stay up to the model).
    #[arg(long = "unmask-width")]
    unmask_width: Option<usize>,
    /// MRT2: how many of the 12 style levels to send, the coarsest first (default 6, as the
    /// official engine; 12 sends all, as the Python systems).
    #[arg(long = "style-levels")]
    style_levels: Option<usize>,
    #[arg(short, long)]
    output: PathBuf,
    /// Save the streaming state here afterwards (JSON), to continue later with --resume.
    #[arg(long)]
    save_state: Option<PathBuf>,
    /// Continue from a saved state.
    #[arg(long, conflicts_with = "prefill")]
    resume: Option<PathBuf>,
    /// MRT2: start from this audio (at most 28 s), encoded and teacher-forced into the stream
    /// first, so the music continues it (needs the codec files, resources/spectrostream/).
    #[arg(long)]
    prefill: Option<PathBuf>,
    /// MRT2: embed text prompts without MRT2's mapper.tflite even where it is installed (the
    /// official Python's default; the C++ engine maps them).
    #[arg(long = "no-mapper")]
    no_mapper: bool,
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    lm: LmFlags,
}

fn adherence(flag: &str, value: Option<f64>, default: f64) -> Result<f64> {
    match value {
        None => Ok(default),
        Some(v) if v.is_finite() && (-1.0..=7.0).contains(&v) => Ok(v),
        Some(v) => bail!("{flag} {v}: expected a value from -1 to 7"),
    }
}

impl Args {
    pub fn run(self) -> Result<ExitCode> {
        mrt::v1::system::offline::frames_for(self.seconds, 48_000)?;
        let temperature = self.temperature.unwrap_or(match self.family {
            ModelFamily::V1 => 1.1,
            ModelFamily::Mrt2 => 1.3,
        });
        if !(temperature.is_finite() && temperature >= 0.0) {
            bail!("--temperature {temperature}: expected a finite value ≥ 0");
        }
        match self.family {
            ModelFamily::V1 => self.run_v1(temperature),
            ModelFamily::Mrt2 => self.run_mrt2(temperature),
        }
    }

    fn run_v1(self, temperature: f32) -> Result<ExitCode> {
        let mrt2_only = [
            ("--midi", self.midi.is_some()),
            ("--drums", self.drums.is_some()),
            ("--prompt-adherence", self.prompt_adherence.is_some()),
            ("--note-adherence", self.note_adherence.is_some()),
            ("--drum-adherence", self.drum_adherence.is_some()),
            ("--onset-mode", self.onset_mode.is_some()),
            ("--unmask-width", self.unmask_width.is_some()),
            ("--style-levels", self.style_levels.is_some()),
            ("--prefill", self.prefill.is_some()),
            ("--no-mapper", self.no_mapper),
        ];
        if let Some((flag, _)) = mrt2_only.iter().find(|(_, given)| *given) {
            bail!("{flag} is an MRT2 setting: add --model mrt2");
        }
        let Self { prompts, weights, seconds, seed, top_k, guidance, output, save_state, resume, model, lm, .. } = self;
        let guidance = guidance.unwrap_or(5.0);
        if !guidance.is_finite() {
            bail!("--guidance {guidance}: expected a finite value");
        }
        let prompts: Vec<Prompt> = prompts.iter().map(|p| Prompt::parse(p)).collect();
        let weights = prompt_weights(prompts.len(), &weights)?;
        let paths = ensure_model(&model)?;
        let target = lm.target(model.device)?;
        eprintln!("model {} ({}), device {}", paths.size, paths.lm_checkpoint.source, target.choice);
        let generator = Generator::V1(mrt::v1::system::load::load_generator_with(&paths, &target, lm.options())?);
        let style_codes = if prompts.is_empty() {
            None
        } else {
            let style = mrt::v1::system::load::load_style(&paths, &target.device)?;
            let weighted: Vec<(Prompt, f32)> = prompts.into_iter().zip(weights).collect();
            mrt::style::style_codes(&style, &weighted)?
        };
        let mut state = initial_state(&generator, resume.as_deref(), None, &paths.size)?;
        let sampling = mrt::v1::lm::SamplingParams { temperature, top_k, guidance_weight: guidance, seed: seed.unwrap_or(0) };
        let controls = Controls { style: style_codes.as_deref(), sampling, ..Default::default() };
        let frames = write(&generator, &mut state, |_| controls, seconds, &output, "chunks")?;
        finish(&state, save_state.as_deref(), &output, frames)
    }

    fn run_mrt2(self, temperature: f32) -> Result<ExitCode> {
        let Self { prompts, weights, seconds, seed, top_k, guidance, midi, drums, output, save_state, resume, prefill, no_mapper, model, lm, .. } =
            self;
        // `--depth-logits` is v1's: MRT2 always computes only the current level's logits, which
        // is exact there (its sampler masks the other levels).
        if guidance.is_some() {
            bail!("--guidance is v1's; MRT2 follows --prompt-adherence, --note-adherence and --drum-adherence");
        }
        if top_k == 0 {
            bail!("--top-k 0: expected at least 1");
        }
        let prompt_adherence = adherence("--prompt-adherence", self.prompt_adherence, 3.0)?;
        let note_adherence = adherence("--note-adherence", self.note_adherence, 1.0)?;
        let drum_adherence = adherence("--drum-adherence", self.drum_adherence, 1.0)?;
        let onset_mode = self.onset_mode.unwrap_or(1);
        if onset_mode > 1 {
            bail!("--onset-mode {onset_mode}: expected 0 or 1");
        }
        let unmask_width = self.unmask_width.unwrap_or(0);
        let style_levels = style_levels(self.style_levels)?;
        let drums = match drums.unwrap_or(Drums::Auto) {
            Drums::Auto => DrumFlag::Auto,
            Drums::Off => DrumFlag::Off,
            Drums::On => DrumFlag::On,
        };
        // Everything the user gave is checked before the model loads and before the WAV exists.
        let events = midi.as_deref().map(crate::midi::read_events).transpose()?;
        let prefill_audio = match &prefill {
            Some(path) => {
                let audio = mrt::codec::audio::read(path)?;
                let seconds = audio.frames() as f64 / f64::from(audio.sample_rate_hz);
                if seconds > mrt::mrt2::system::MAX_PREFILL_SECONDS {
                    bail!("--prefill {}: {seconds:.2} s of audio; a prefill takes at most {} s", path.display(), mrt::mrt2::system::MAX_PREFILL_SECONDS);
                }
                Some((path.clone(), mrt::codec::audio::conform(audio, 48_000, 2, path)?))
            }
            None => None,
        };
        let prompts: Vec<Prompt> = prompts.iter().map(|p| Prompt::parse(p)).collect();
        let weights = prompt_weights(prompts.len(), &weights)?;

        let settings = settings();
        let paths = mrt::assets::Mrt2Paths::locate_with(&model.size(ModelFamily::Mrt2)?, model.model_dir.as_deref(), &settings)?;
        // The LM decoder on the device asked for (the GPU kernels on wgpu/cuda); the codec and
        // the conditioning encoder on the CPU.
        let target = lm.target(model.device)?;
        let lm_where = if target.compute == mrt::Compute::Gpu { format!("LM on {} (GPU kernels), codec on the CPU", target.choice) } else { "host".to_owned() };
        eprintln!("model mrt2 {} ({}), device {lm_where}, {} weights", paths.size, paths.checkpoint.source, lm.precision);
        let system = mrt::mrt2::Mrt2System::load_on(&paths.checkpoint.path, paths.config.clone(), paths.codec_config.clone(), lm.precision, &target)
            .with_context(|| format!("loading MRT2 `{}` from {}", paths.size, paths.checkpoint.path.display()))?;
        let generator = Generator::Mrt2(system);
        let style_codes = if prompts.is_empty() {
            None
        } else {
            let files = mrt::assets::locate_mrt2_style(model.model_dir.as_deref(), &settings)?;
            let device = crate::args::pick_device(model.device)?.device().map_err(anyhow::Error::msg)?;
            let style = crate::args::load_style(&files, !no_mapper, &device)?;
            let weighted: Vec<(Prompt, f32)> = prompts.into_iter().zip(weights).collect();
            mrt::style::style_codes(&style, &weighted)?
        };
        let mut state = initial_state(&generator, resume.as_deref(), seed, &paths.size)?;
        if let (Some((path, audio)), Generator::Mrt2(system), StreamState::Mrt2(st)) = (&prefill_audio, &generator, &mut state) {
            let (codec_dir, codec_config) = mrt::assets::locate_codec(model.model_dir.as_deref(), &settings)?;
            let encoder = mrt::codec::Codec::load(&codec_dir.path, codec_config, &mrt::Target::host())
                .with_context(|| format!("loading the codec from {}", codec_dir.path.display()))?;
            let first = Mrt2Controls { drums, prompt_adherence, note_adherence, drum_adherence, pianoroll: None, style_levels };
            let mut tokens = Vec::new();
            system.condition_tokens(&first.condition_frame(style_codes.as_deref(), system.config().musiccoca_levels), &mut tokens);
            let frames = system.prefill_audio(st, &tokens, &encoder, audio).with_context(|| format!("prefill from {}", path.display()))?;
            eprintln!("prefilled {frames} frames ({:.2} s) from {}", frames as f64 * generator.block_seconds(), path.display());
        }
        let blocks = mrt::v1::system::offline::blocks_for(&generator, seconds)?;
        let frame_seconds = generator.block_seconds();
        let roll = events.map(|ev| mrt::mrt2::notes::pianoroll_frames(&ev, blocks, frame_seconds, onset_mode, unmask_width));
        let sampling = mrt::v1::lm::SamplingParams { temperature, top_k, guidance_weight: 0.0, seed: 0 };
        let base = Mrt2Controls { pianoroll: None, drums, prompt_adherence, note_adherence, drum_adherence, style_levels };
        let style = style_codes.as_deref();
        let controls = |i: usize| Controls { style, sampling, mrt2: Mrt2Controls { pianoroll: roll.as_ref().map(|r| &r[i]), ..base } };
        let frames = write(&generator, &mut state, controls, seconds, &output, "frames")?;
        finish(&state, save_state.as_deref(), &output, frames)
    }
}

/// A fresh state (MRT2 keyed by `seed`), or the one saved at `resume` if it fits the model.
fn initial_state(generator: &Generator, resume: Option<&Path>, seed: Option<u64>, size: &str) -> Result<StreamState> {
    match resume {
        Some(p) => {
            let state = StreamState::load(p)?;
            if !generator.fits(&state) {
                bail!("{}: the saved {} state does not fit the {} model `{size}`", p.display(), state.family(), generator.family());
            }
            Ok(state)
        }
        None => Ok(generator.init_state_seeded(seed)),
    }
}

fn write<'c>(
    generator: &Generator,
    state: &mut StreamState,
    controls: impl FnMut(usize) -> Controls<'c>,
    seconds: f64,
    output: &Path,
    unit: &str,
) -> Result<u64> {
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(&format!("{{bar:30}} {{pos}}/{{len}} {unit}  {{msg}}"))
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let frames = mrt::v1::system::offline::generate_to_wav_with(generator, state, controls, seconds, output, |p| {
        bar.set_length(p.chunks as u64);
        bar.set_position(p.chunk as u64);
        bar.set_message(format!("{:.1} s of audio, {:.2}× real time", p.audio_seconds, p.realtime_factor()));
    })?;
    bar.finish();
    Ok(frames)
}

fn finish(state: &StreamState, save_state: Option<&Path>, output: &Path, frames: u64) -> Result<ExitCode> {
    if let Some(p) = save_state {
        state.save(p)?;
    }
    println!("{}: {frames} frames ({:.2} s) at 48 kHz stereo", output.display(), frames as f64 / 48_000.0);
    Ok(ExitCode::SUCCESS)
}

/// `--style-levels`: 1–12 (default [`mrt::mrt2::system::MUSICCOCA_KEPT_LEVELS`]).
pub fn style_levels(given: Option<usize>) -> Result<usize> {
    let n = given.unwrap_or(mrt::mrt2::system::MUSICCOCA_KEPT_LEVELS);
    if !(1..=12).contains(&n) {
        bail!("--style-levels {n}: expected 1 to 12 (MusicCoCa has 12 levels; the official engine sends 6)");
    }
    Ok(n)
}
