//! `mrt generate --model mrt2` as a user runs it, on the tiny MRT2 written by
//! `mrt dev tiny-model` (the M1 fixture checkpoint): lengths, determinism per seed, a MIDI file
//! steering the notes, save/resume, and bad settings that fail before anything is written.

// The CLI runner shared by the CLI test crates (it needs this package's `mrt` binary, so it is
// not part of `common`, which the plugin's tests include too).
#[path = "common/cli.rs"]
mod cli;

use std::path::{Path, PathBuf};

const TAG: &str = "cli-mrt2";

fn mrt(args: &[&str]) -> (bool, String) {
    cli::mrt(TAG, args)
}

fn scratch(name: &str) -> PathBuf {
    cli::scratch(TAG, name)
}

/// One tiny model for all tests of this binary, written through the CLI.
fn tiny() -> &'static Path {
    let dir = cli::tiny_model(TAG);
    assert!(dir.join("magenta-realtime-2/checkpoints/mrt2_tiny.safetensors").is_file(), "the tiny MRT2 checkpoint is written");
    dir
}

fn wav_samples(path: &Path) -> (hound::WavSpec, Vec<f32>) {
    let mut r = hound::WavReader::open(path).unwrap();
    let spec = r.spec();
    (spec, r.samples::<f32>().map(Result::unwrap).collect())
}

/// `mrt generate --model mrt2 --size tiny --model-dir <tiny>` + `extra`, into `out`.
fn generate(out: &Path, extra: &[&str]) -> (bool, String) {
    let mut args = vec!["generate", "--model", "mrt2", "--size", "tiny", "--model-dir", tiny().to_str().unwrap(), "-o", out.to_str().unwrap()];
    args.extend_from_slice(extra);
    mrt(&args)
}

/// `mrt embed --model mrt2` on the tiny model reads MRT2's own MusicCoCa (the TFLite files
/// `mrt dev tiny-model` writes in the official layouts): 6 codes sent, 6 masked; a blend is
/// re-quantized from the weighted embedding.
#[test]
fn embed_reads_mrt2s_own_musiccoca() {
    let (ok, text) = mrt(&["embed", "funky bass", "ambient pads", "--weight", "2,1", "--model", "mrt2", "--size", "tiny", "--model-dir", tiny().to_str().unwrap(), "--device", "flex"]);
    assert!(ok, "{text}");
    assert!(text.contains("style model: MRT2's MusicCoCa") && text.contains("resources/musiccoca"), "{text}");
    assert!(text.contains("text through mapper.tflite"), "{text}");
    let tokens_of = |text: &str| -> Vec<Vec<i32>> {
        let lines: Vec<&str> = text.lines().filter(|l| l.contains("tokens [")).collect();
        assert_eq!(lines.len(), 3, "two prompts and the blend: {text}");
        lines
            .iter()
            .map(|line| {
                let list = &line[line.find("tokens [").unwrap() + 8..line.rfind(']').unwrap()];
                let tokens: Vec<i32> = list.split(',').map(|t| t.trim().parse().unwrap()).collect();
                assert!(tokens[..6].iter().all(|t| (0..1024).contains(t)) && tokens[6..] == [-1; 6], "{line}");
                tokens
            })
            .collect()
    };
    let mapped = tokens_of(&text);
    // Mapped embeddings are unit vectors.
    assert!(text.lines().filter(|l| l.contains("funky bass")).all(|l| l.contains("norm   1.0000")), "{text}");
    let (ok, text) = mrt(&["embed", "funky bass", "ambient pads", "--weight", "2,1", "--model", "mrt2", "--size", "tiny", "--model-dir", tiny().to_str().unwrap(), "--device", "flex", "--no-mapper"]);
    assert!(ok && text.contains("mapper.tflite not used"), "{text}");
    assert_ne!(tokens_of(&text), mapped, "the mapper moves text embeddings");
}

#[test]
fn style_levels_choose_how_many_style_tokens_mrt2_is_sent() {
    let dir = tiny().to_str().unwrap().to_string();
    let (ok, text) = mrt(&["embed", "funky bass", "--model", "mrt2", "--size", "tiny", "--model-dir", &dir, "--device", "flex", "--style-levels", "12"]);
    assert!(ok && text.contains("the 12 coarsest levels"), "{text}");
    let line = text.lines().find(|l| l.contains("funky bass") && l.contains("tokens [")).unwrap_or_else(|| panic!("{text}"));
    let list = &line[line.find("tokens [").unwrap() + 8..line.rfind(']').unwrap()];
    let tokens: Vec<i32> = list.split(',').map(|t| t.trim().parse().unwrap()).collect();
    assert!(tokens.len() == 12 && tokens.iter().all(|t| (0..1024).contains(t)), "all 12 levels sent: {line}");
    for bad in ["0", "13"] {
        let (ok, text) = mrt(&["embed", "funky bass", "--model", "mrt2", "--size", "tiny", "--model-dir", &dir, "--device", "flex", "--style-levels", bad]);
        assert!(!ok && text.contains(&format!("--style-levels {bad}: expected 1 to 12")), "{text}");
    }
    let (ok, text) = mrt(&["embed", "funky bass", "--model-dir", &dir, "--style-levels", "12"]);
    assert!(!ok && text.contains("--style-levels is an MRT2 setting"), "{text}");
    // All 12 levels change what MRT2 plays.
    let out = |levels: &str| {
        let wav = std::env::temp_dir().join(format!("mrt-style-levels-{levels}-{}.wav", std::process::id()));
        let (ok, text) = mrt(&[
            "generate", "--model", "mrt2", "--size", "tiny", "--model-dir", &dir, "--prompt", "funky bass", "--seconds", "0.8", "--seed", "3",
            "--style-levels", levels, "-o", wav.to_str().unwrap(),
        ]);
        assert!(ok, "{text}");
        let bytes = std::fs::read(&wav).unwrap();
        std::fs::remove_file(&wav).ok();
        bytes
    };
    assert_ne!(out("6"), out("12"), "sending 12 style levels instead of 6 changes the audio");
}

/// A format-0 MIDI file: C4 for 0.25 s, then a G4–B4 dyad to 0.75 s (120 bpm, 96 ticks/beat).
fn song() -> PathBuf {
    fn vlq(mut v: u32) -> Vec<u8> {
        let mut b = vec![(v & 0x7f) as u8];
        v >>= 7;
        while v > 0 {
            b.push(0x80 | (v & 0x7f) as u8);
            v >>= 7;
        }
        b.reverse();
        b
    }
    let events: [(u32, [u8; 3]); 6] = [
        (0, [0x90, 60, 100]),
        (48, [0x80, 60, 0]),
        (0, [0x90, 67, 100]),
        (0, [0x90, 71, 100]),
        (96, [0x80, 67, 0]),
        (0, [0x90, 71, 0]),
    ];
    let mut body = Vec::new();
    for (d, e) in events {
        body.extend(vlq(d));
        body.extend_from_slice(&e);
    }
    body.extend_from_slice(&[0, 0xff, 0x2f, 0]);
    let mut f = b"MThd".to_vec();
    f.extend_from_slice(&[0, 0, 0, 6, 0, 0, 0, 1, 0, 96]);
    f.extend_from_slice(b"MTrk");
    f.extend_from_slice(&(body.len() as u32).to_be_bytes());
    f.extend(body);
    let path = scratch("midi").join("song.mid");
    std::fs::write(&path, f).unwrap();
    path
}

#[test]
fn generate_writes_exactly_the_requested_length_at_48k_stereo() {
    for (seconds, frames) in [("0.5", 24_000usize), ("0.03", 1_440), ("1.01", 48_480)] {
        let out = scratch("len").join(format!("{seconds}.wav"));
        let (ok, text) = generate(&out, &["--seconds", seconds, "--seed", "1"]);
        assert!(ok, "{text}");
        let (spec, samples) = wav_samples(&out);
        assert_eq!((spec.channels, spec.sample_rate, spec.bits_per_sample), (2, 48_000, 32));
        assert_eq!(samples.len(), 2 * frames, "{seconds} s");
        assert!(samples.iter().all(|v| v.is_finite()));
        if frames > 1920 {
            // Frame 0 is the codec's look-ahead: silent; then sound.
            assert!(samples[..2 * 1920].iter().all(|&v| v == 0.0));
            assert!(samples[2 * 1920..].iter().any(|&v| v != 0.0));
        }
    }
}

#[test]
fn a_seed_gives_the_same_audio_and_another_seed_other_audio() {
    let dir = scratch("seed");
    let run = |name: &str, seed: &str| {
        let out = dir.join(name);
        let (ok, text) = generate(&out, &["--seconds", "0.4", "--seed", seed]);
        assert!(ok, "{text}");
        wav_samples(&out).1
    };
    let (a, b, c) = (run("a.wav", "7"), run("b.wav", "7"), run("c.wav", "8"));
    assert_eq!(a, b);
    assert_ne!(a, c);
}

#[test]
fn a_midi_file_changes_the_audio_and_all_the_settings_are_accepted() {
    let dir = scratch("midi-run");
    let plain = dir.join("plain.wav");
    let (ok, text) = generate(&plain, &["--seconds", "0.8", "--seed", "7"]);
    assert!(ok, "{text}");
    let song = song();
    let with = dir.join("with.wav");
    let (ok, text) = generate(
        &with,
        &[
            "--seconds", "0.8", "--seed", "7", "--midi", song.to_str().unwrap(), "--drums", "off", "--prompt-adherence", "3",
            "--note-adherence", "1", "--drum-adherence", "1", "--temperature", "1.3", "--top-k", "40", "--unmask-width", "127",
        ],
    );
    assert!(ok, "{text}");
    let (a, b) = (wav_samples(&plain).1, wav_samples(&with).1);
    assert_eq!(a.len(), b.len());
    // NOTE: with `--unmask-width 127` the notes set all 128 piano-roll channels (explicit off
    // around them); the tiny model's random weights barely react to one or two channels of 132
    // (drums, one adherence bin), so those alone need not flip a token in 20 frames.
    assert!(a != b, "the notes steer the model");
    // A prompt goes through the style model (MRT2's own tiny MusicCoCa) as well.
    let prompted = dir.join("prompted.wav");
    let (ok, text) = generate(&prompted, &["--seconds", "0.2", "--prompt", "jazz piano", "--prompt", "drums", "--weight", "2,1"]);
    assert!(ok && text.contains("style model: MRT2's MusicCoCa") && text.contains("text through mapper.tflite"), "{text}");
    assert_eq!(wav_samples(&prompted).1.len(), 2 * 9_600);
    let unmapped = dir.join("unmapped.wav");
    let (ok, text) = generate(&unmapped, &["--seconds", "0.2", "--prompt", "jazz piano", "--prompt", "drums", "--weight", "2,1", "--no-mapper"]);
    assert!(ok && text.contains("mapper.tflite not used"), "{text}");
}

#[test]
fn save_then_resume_continues_bit_exactly() {
    let dir = scratch("resume");
    let whole = dir.join("whole.wav");
    let (ok, text) = generate(&whole, &["--seconds", "1", "--seed", "3"]);
    assert!(ok, "{text}");
    let (first, second, state) = (dir.join("first.wav"), dir.join("second.wav"), dir.join("state.json"));
    let (ok, text) = generate(&first, &["--seconds", "0.4", "--seed", "3", "--save-state", state.to_str().unwrap()]);
    assert!(ok, "{text}");
    let saved = std::fs::read_to_string(&state).unwrap();
    assert!(saved.starts_with(r#"{"family":"mrt2","#), "{}", &saved[..40.min(saved.len())]);
    let (ok, text) = generate(&second, &["--seconds", "0.6", "--resume", state.to_str().unwrap()]);
    assert!(ok, "{text}");
    let joined = [wav_samples(&first).1, wav_samples(&second).1].concat();
    let want = wav_samples(&whole).1;
    assert_eq!(joined.len(), want.len());
    assert!(joined.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()), "resumed audio is bit-exact");

    // A v1 state does not drive MRT2.
    let v1_state = dir.join("v1.json");
    let (ok, text) = mrt(&[
        "generate", "--size", "tiny", "--model-dir", tiny().to_str().unwrap(), "--seconds", "2", "-o",
        dir.join("v1.wav").to_str().unwrap(), "--save-state", v1_state.to_str().unwrap(),
    ]);
    assert!(ok, "{text}");
    let out = dir.join("refused.wav");
    let (ok, text) = generate(&out, &["--seconds", "0.2", "--resume", v1_state.to_str().unwrap()]);
    assert!(!ok && text.contains("v1 state does not fit the mrt2 model"), "{text}");
}

#[test]
fn bad_settings_are_clear_errors_and_write_nothing() {
    let dir = scratch("bad");
    let not_midi = dir.join("not.mid");
    std::fs::write(&not_midi, b"RIFF0000WAVEfmt ").unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--drums", "sometimes"], "sometimes"),
        (vec!["--prompt-adherence", "7.5"], "--prompt-adherence 7.5"),
        (vec!["--note-adherence", "-2"], "--note-adherence -2"),
        (vec!["--drum-adherence", "NaN"], "--drum-adherence NaN"),
        (vec!["--midi", not_midi.to_str().unwrap()], "not.mid is not a usable standard MIDI file"),
        (vec!["--midi", "/nonexistent/song.mid"], "/nonexistent/song.mid"),
        (vec!["--guidance", "3"], "--guidance"),
        (vec!["--top-k", "0"], "--top-k 0"),
    ];
    for (i, (extra, needle)) in cases.into_iter().enumerate() {
        let out = dir.join(format!("out{i}.wav"));
        let mut args = vec!["--seconds", "0.2"];
        args.extend(extra.iter().copied());
        let (ok, text) = generate(&out, &args);
        assert!(!ok, "{extra:?} should fail: {text}");
        assert!(text.contains(needle), "{extra:?}: expected {needle:?} in: {text}");
        assert!(!out.exists(), "{extra:?}: nothing written");
    }
    // A size MRT2 does not have.
    let out = dir.join("large.wav");
    let (ok, text) = mrt(&["generate", "--model", "mrt2", "--size", "large", "--model-dir", tiny().to_str().unwrap(), "-o", out.to_str().unwrap()]);
    assert!(!ok && text.contains("mrt2 large") && text.contains("tiny"), "{text}");
    assert!(!out.exists());
    // MRT2 settings on v1.
    let out = dir.join("v1.wav");
    let (ok, text) = mrt(&["generate", "--size", "tiny", "--model-dir", tiny().to_str().unwrap(), "--drums", "on", "-o", out.to_str().unwrap()]);
    assert!(!ok && text.contains("--drums is an MRT2 setting"), "{text}");
    assert!(!out.exists());
    let (ok, text) = mrt(&["generate", "--size", "tiny", "--model-dir", tiny().to_str().unwrap(), "--no-mapper", "-o", out.to_str().unwrap()]);
    assert!(!ok && text.contains("--no-mapper is an MRT2 setting"), "{text}");
    let (ok, text) = mrt(&["embed", "jazz", "--no-mapper", "--model-dir", tiny().to_str().unwrap()]);
    assert!(!ok && text.contains("--no-mapper is an MRT2 setting"), "{text}");
    assert!(!out.exists());
}

#[test]
fn a_checkpoint_of_another_model_is_an_error_naming_it() {
    // A copy of the tiny model dir whose MRT2 checkpoint is the C1 codec's decoder file.
    let src = tiny();
    let dir = scratch("wrong-ckpt");
    let manifest = std::fs::read_to_string(src.join("mrt-live.json")).unwrap();
    std::fs::write(dir.join("mrt-live.json"), manifest).unwrap();
    let ck = dir.join("magenta-realtime-2/checkpoints");
    std::fs::create_dir_all(&ck).unwrap();
    std::fs::copy(src.join("magenta-realtime-2/resources/spectrostream/decoder.safetensors"), ck.join("mrt2_tiny.safetensors")).unwrap();
    let out = dir.join("out.wav");
    let (ok, text) = mrt(&["generate", "--model", "mrt2", "--size", "tiny", "--model-dir", dir.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    assert!(!ok, "{text}");
    assert!(text.contains("mrt2_tiny.safetensors"), "{text}");
    assert!(!out.exists());
}

/// `--lm-weights` reaches MRT2: int8 and bf16 projections play the same length, finite, and
/// not the f32 audio; a bad precision fails before the WAV exists.
#[test]
fn narrower_weights_generate_other_audio_of_the_same_length() {
    let dir = scratch("precision");
    let run = |p: &str| {
        let out = dir.join(format!("{p}.wav"));
        let (ok, text) = generate(&out, &["--seconds", "0.6", "--seed", "3", "--lm-weights", p]);
        assert!(ok && text.contains(&format!("{p} weights")), "{text}");
        wav_samples(&out).1
    };
    let f32 = run("f32");
    for p in ["bf16", "int8"] {
        let other = run(p);
        assert_eq!(other.len(), f32.len(), "{p}");
        assert!(other.iter().all(|v| v.is_finite()), "{p}");
        assert_ne!(other, f32, "{p} weights change the audio");
    }
    let bad = dir.join("bad.wav");
    let (ok, text) = generate(&bad, &["--seconds", "0.6", "--lm-weights", "int4"]);
    assert!(!ok && text.contains("int4") && !bad.exists(), "{text}");
}

/// `--prefill`: the stream starts from a clip (encoded by the codec files, teacher-forced), so
/// the same seed plays other audio than without it, of the asked length; a clip over 28 s, a v1
/// run, or `--resume` beside it fail before the WAV exists.
#[test]
fn prefill_from_audio_continues_a_clip_and_refuses_too_long_ones() {
    let dir = scratch("prefill");
    let clip = |name: &str, seconds: f64| {
        let path = dir.join(name);
        let spec = hound::WavSpec { channels: 1, sample_rate: 44_100, bits_per_sample: 16, sample_format: hound::SampleFormat::Int };
        let mut w = hound::WavWriter::create(&path, spec).unwrap();
        for i in 0..(seconds * 44_100.0) as usize {
            w.write_sample((8000.0 * (i as f64 * 220.0 * std::f64::consts::TAU / 44_100.0).sin()) as i16).unwrap();
        }
        w.finalize().unwrap();
        path
    };
    let short = clip("short.wav", 1.5);
    let (plain, pre) = (dir.join("plain.wav"), dir.join("pre.wav"));
    let (ok, text) = generate(&plain, &["--seconds", "0.6", "--seed", "5"]);
    assert!(ok, "{text}");
    let (ok, text) = generate(&pre, &["--seconds", "0.6", "--seed", "5", "--prefill", short.to_str().unwrap()]);
    assert!(ok && text.contains("prefilled 38 frames"), "{text}");
    let (a, b) = (wav_samples(&plain).1, wav_samples(&pre).1);
    assert_eq!(a.len(), b.len());
    assert!(b.iter().all(|v| v.is_finite()));
    assert_ne!(a, b, "the prefill changes what follows");

    let long = clip("long.wav", 28.5);
    let bad = dir.join("bad.wav");
    let (ok, text) = generate(&bad, &["--seconds", "0.6", "--prefill", long.to_str().unwrap()]);
    assert!(!ok && text.contains("28.50 s") && text.contains("at most 28 s") && !bad.exists(), "{text}");
    let (ok, text) = generate(&bad, &["--seconds", "0.6", "--prefill", short.to_str().unwrap(), "--resume", "x.json"]);
    assert!(!ok && text.contains("--prefill") && !bad.exists(), "{text}");
    let (ok, text) = mrt(&["generate", "--model-dir", tiny().to_str().unwrap(), "--size", "tiny", "--seconds", "1", "--prefill", short.to_str().unwrap(), "-o", bad.to_str().unwrap()]);
    assert!(!ok && text.contains("--prefill is an MRT2 setting") && !bad.exists(), "{text}");
}

/// A `--model-dir` whose `mrt-live.json` declares one size per model is used without `--size`
/// (the tiny model's "tiny", for v1 and MRT2); with no manifest the defaults are base (v1) and
/// small (MRT2), named in the error when they are missing.
#[test]
fn the_manifest_size_is_the_default_size() {
    let dir = scratch("manifest-size");
    let model_dir = tiny().to_str().unwrap();
    for family in ["v1", "mrt2"] {
        let out = dir.join(format!("{family}.wav"));
        let (ok, text) = mrt(&["generate", "--model", family, "--model-dir", model_dir, "--seconds", "0.2", "-o", out.to_str().unwrap()]);
        assert!(ok && out.is_file(), "{family}: {text}");
    }
    let empty = scratch("empty-model-dir");
    std::fs::create_dir_all(&empty).unwrap();
    let out = dir.join("none.wav");
    let (ok, text) = mrt(&["generate", "--model", "mrt2", "--model-dir", empty.to_str().unwrap(), "--seconds", "0.2", "-o", out.to_str().unwrap()]);
    assert!(!ok && text.contains("small"), "{text}");
}

/// A run stopped hard (SIGKILL, worse than Ctrl-C) after a few blocks leaves a WAV that players
/// open: the header is rewritten after every frame (MRT2) or chunk (v1), so it counts the audio
/// written so far.
#[test]
fn a_killed_run_leaves_a_valid_wav() {
    let dir = scratch("killed");
    for (family, block_bytes) in [("mrt2", 1920 * 2 * 4), ("v1", 96_000 * 2 * 4)] {
        let out = dir.join(format!("{family}.wav"));
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_mrt"))
            .args(["generate", "--model", family, "--size", "tiny", "--model-dir", tiny().to_str().unwrap(), "--seconds", "600", "-o", out.to_str().unwrap()])
            .env("HF_HUB_CACHE", scratch("killed-hf"))
            .env("HF_ENDPOINT", "http://127.0.0.1:9")
            .env_remove("MRT_MODEL_DIR")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("mrt runs");
        let started = std::time::Instant::now();
        while std::fs::metadata(&out).map_or(0, |m| m.len()) < 44 + 2 * block_bytes {
            assert!(started.elapsed().as_secs() < 120, "{family}: no audio written in 2 minutes");
            assert!(child.try_wait().expect("wait").is_none(), "{family}: mrt exited early");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        child.kill().expect("kill");
        child.wait().expect("reap");
        let mut r = hound::WavReader::open(&out).unwrap_or_else(|e| panic!("{family}: the killed run's WAV does not open: {e}"));
        assert_eq!((r.spec().sample_rate, r.spec().channels), (48_000, 2), "{family}");
        let samples: Vec<f32> = r.samples::<f32>().map(|s| s.expect("sample")).collect();
        assert!(samples.len() as u64 * 4 >= 2 * block_bytes, "{family}: {} samples", samples.len());
        assert!(samples.len() as u64 * 4 < 600 * 48_000 * 2 * 4, "{family}: the header counts only what was written");
    }
}

/// `--device wgpu` runs the LM's decoder on the GPU kernels (lavapipe in CI): the same tokens as
/// the host kernels, so the same audio bit for bit (the codec decodes on the CPU either way); a
/// state saved on the GPU (its rings read back) resumes on the GPU and on the CPU alike.
#[cfg(feature = "wgpu")]
#[test]
fn the_gpu_kernels_give_the_hosts_audio_and_their_state_resumes_anywhere() {
    let dir = scratch("gpu");
    let host = dir.join("host.wav");
    let (ok, text) = generate(&host, &["--seconds", "1", "--seed", "5", "--device", "flex"]);
    assert!(ok, "{text}");
    let gpu = dir.join("gpu.wav");
    let (ok, text) = generate(&gpu, &["--seconds", "1", "--seed", "5", "--device", "wgpu"]);
    assert!(ok && text.contains("LM on wgpu (GPU kernels), codec on the CPU"), "{text}");
    let want = wav_samples(&host).1;
    assert!(wav_samples(&gpu).1.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()), "the GPU kernels' audio is the host's");

    let (first, state) = (dir.join("first.wav"), dir.join("state.json"));
    let (ok, text) = generate(&first, &["--seconds", "0.4", "--seed", "5", "--device", "wgpu", "--save-state", state.to_str().unwrap()]);
    assert!(ok, "{text}");
    for device in ["wgpu", "flex"] {
        let second = dir.join(format!("second-{device}.wav"));
        let (ok, text) = generate(&second, &["--seconds", "0.6", "--resume", state.to_str().unwrap(), "--device", device]);
        assert!(ok, "{text}");
        let joined = [wav_samples(&first).1, wav_samples(&second).1].concat();
        assert_eq!(joined.len(), want.len());
        assert!(joined.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()), "resumed on {device}: the audio continues as one run");
    }
    // No burn path for MRT2.
    let (ok, text) = generate(&dir.join("burn.wav"), &["--seconds", "0.2", "--device", "wgpu", "--kernels", "burn"]);
    assert!(!ok && text.contains("MRT2 has no burn path"), "{text}");
}
