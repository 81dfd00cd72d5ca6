//! The model commands as a user runs them, on the tiny test model written by
//! `mrt dev tiny-model`: `embed`, `generate` (length, determinism, save/resume, bad settings) and
//! `verify --official` on test data made in the official layout.

// The CLI runner shared by the CLI test crates (it needs this package's `mrt` binary, so it is
// not part of `common`, which the plugin's tests include too).
#[path = "common/cli.rs"]
mod cli;

use std::path::{Path, PathBuf};

const TAG: &str = "cli-model";

fn mrt(args: &[&str]) -> (bool, String) {
    cli::mrt(TAG, args)
}

fn scratch(name: &str) -> PathBuf {
    cli::scratch(TAG, name)
}

/// One tiny model for all tests of this binary, written through the CLI.
fn tiny() -> &'static Path {
    cli::tiny_model(TAG)
}

fn model_args() -> Vec<String> {
    vec!["--model-dir".into(), tiny().display().to_string(), "--size".into(), "tiny".into(), "--device".into(), "flex".into()]
}

fn run(args: &[&str]) -> (bool, String) {
    let mut all: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    all.extend(model_args());
    let refs: Vec<&str> = all.iter().map(String::as_str).collect();
    mrt(&refs)
}

fn wav_samples(path: &Path) -> (hound::WavSpec, Vec<f32>) {
    let mut r = hound::WavReader::open(path).unwrap();
    let spec = r.spec();
    (spec, r.samples::<f32>().map(Result::unwrap).collect())
}

#[test]
fn embed_prints_tokens_and_the_blend() {
    let (ok, text) = run(&["embed", "funky bass", "ambient piano", "--weight", "2,1"]);
    assert!(ok, "{text}");
    assert_eq!(text.matches("tokens [").count(), 3, "{text}");
    assert!(text.contains("blend [2.0, 1.0]"), "{text}");
    let (ok, text) = run(&["embed", "a", "b", "--weight", "0,0"]);
    assert!(ok && text.contains("no style"), "{text}");
    let (ok, text) = run(&["embed", "a", "--weight", "1,2"]);
    assert!(!ok && text.contains("2 weights for 1 prompts"), "{text}");
    let (ok, text) = run(&["embed", "  "]);
    assert!(!ok && text.contains("empty text prompt"), "{text}");
    let (ok, text) = run(&["embed", "/nonexistent/ref.wav"]);
    assert!(!ok && text.contains("/nonexistent/ref.wav"), "{text}");
}

/// `embed` needs only the style model: it works from a folder holding nothing else, and
/// `--model mrt2` prints the tokens MRT2 is sent (6 coarsest levels, the rest masked), from MRT2's
/// own MusicCoCa when its files are there, else from v1's.
#[test]
fn embed_needs_only_the_style_model_and_shows_mrt2_tokens() {
    let dir = scratch("style-only");
    let copy = |rel: &str| {
        let (from, to) = (tiny().join(rel), dir.join(rel));
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        copy_tree(&from, &to);
    };
    for rel in ["magenta-realtime/savedmodels", "magenta-realtime/vocabularies", "magenta-realtime-2/resources/musiccoca"] {
        copy(rel);
    }
    let style_only = dir.display().to_string();
    let (ok, text) = mrt(&["embed", "funky bass", "--model-dir", &style_only, "--device", "flex"]);
    assert!(ok && text.contains("style model: v1's MusicCoCa"), "{text}");
    let tokens = |text: &str| -> Vec<i32> {
        let line = text.lines().find(|l| l.contains("funky bass") && l.contains("tokens [")).unwrap_or_else(|| panic!("{text}"));
        let list = &line[line.find('[').unwrap() + 1..line.rfind(']').unwrap()];
        list.split(',').map(|t| t.trim().parse().unwrap()).collect()
    };
    let v1 = tokens(&text);
    assert_eq!(v1.len(), 12, "{text}");
    assert!(v1.iter().all(|&t| t >= 0), "{text}");
    let (ok, text) = mrt(&["embed", "funky bass", "--model", "mrt2", "--model-dir", &style_only, "--device", "flex"]);
    assert!(ok && text.contains("6 coarsest") && text.contains("style model: MRT2's MusicCoCa"), "{text}");
    let mrt2 = tokens(&text);
    assert!(mrt2[..6].iter().all(|&t| (0..1024).contains(&t)), "{text}");
    assert_ne!(&mrt2[..6], &v1[..6], "MRT2's own towers give other codes: {text}");
    assert_eq!(&mrt2[6..], &[-1; 6], "{text}");
    // Without MRT2's files, MRT2 prompts fall back to v1's MusicCoCa.
    let musiccoca = dir.join("magenta-realtime-2/resources/musiccoca");
    for f in ["text_encoder.tflite", "music_encoder.tflite", "pretrained_vector_quantizer.tflite", "spm.model"] {
        std::fs::remove_file(musiccoca.join(f)).unwrap();
    }
    let (ok, text) = mrt(&["embed", "funky bass", "--model", "mrt2", "--model-dir", &style_only, "--device", "flex"]);
    assert!(ok && text.contains("style model: v1's MusicCoCa"), "{text}");
    assert_eq!(&tokens(&text)[..6], &v1[..6], "{text}");
    // Some of MRT2's files but not all: a partial download, named.
    std::fs::write(musiccoca.join("spm.model"), b"x").unwrap();
    let (ok, text) = mrt(&["embed", "funky bass", "--model", "mrt2", "--model-dir", &style_only, "--device", "flex"]);
    assert!(!ok && text.contains("text_encoder.tflite"), "{text}");
}

fn copy_tree(from: &Path, to: &Path) {
    if from.is_dir() {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            copy_tree(&e.path(), &to.join(e.file_name()));
        }
    } else {
        std::fs::copy(from, to).unwrap_or_else(|e| panic!("copy {}: {e}", from.display()));
    }
}

#[test]
fn generate_writes_exact_lengths_deterministically_and_resumes() {
    let dir = scratch("generate");
    let out = |name: &str| dir.join(name).display().to_string();
    let (ok, text) = run(&["generate", "--prompt", "funk", "--seconds", "3.5", "--seed", "7", "-o", &out("a.wav")]);
    assert!(ok, "{text}");
    let (spec, a) = wav_samples(&dir.join("a.wav"));
    assert_eq!((spec.sample_rate, spec.channels), (48_000, 2));
    assert_eq!(a.len(), 2 * 168_000, "3.5 s × 48000 frames × 2 channels");
    assert!(a.iter().all(|v| v.is_finite()) && a.iter().any(|&v| v != 0.0));
    let (ok, text) = run(&["generate", "--prompt", "funk", "--seconds", "3.5", "--seed", "7", "-o", &out("b.wav")]);
    assert!(ok, "{text}");
    assert_eq!(std::fs::read(dir.join("a.wav")).unwrap(), std::fs::read(dir.join("b.wav")).unwrap(), "same seed, same bytes");
    let (ok, _) = run(&["generate", "--prompt", "funk", "--seconds", "3.5", "--seed", "8", "-o", &out("c.wav")]);
    assert!(ok);
    assert_ne!(wav_samples(&dir.join("c.wav")).1, a, "another seed, other audio");

    // 6 s at once equals 4 s, save, then 2 s resumed.
    let (ok, text) = run(&["generate", "--prompt", "funk", "--seconds", "6", "--seed", "3", "-o", &out("whole.wav")]);
    assert!(ok, "{text}");
    let state = out("state.json");
    let (ok, text) = run(&["generate", "--prompt", "funk", "--seconds", "4", "--seed", "3", "-o", &out("head.wav"), "--save-state", &state]);
    assert!(ok, "{text}");
    let (ok, text) = run(&["generate", "--prompt", "funk", "--seconds", "2", "--seed", "3", "-o", &out("tail.wav"), "--resume", &state]);
    assert!(ok, "{text}");
    let (_, whole) = wav_samples(&dir.join("whole.wav"));
    let (_, mut joined) = wav_samples(&dir.join("head.wav"));
    joined.extend(wav_samples(&dir.join("tail.wav")).1);
    assert_eq!(joined, whole);
}

#[test]
fn generate_rejects_impossible_settings_before_loading() {
    for (args, needle) in [
        (vec!["--seconds", "0"], "--seconds 0"),
        (vec!["--seconds", "nan"], "--seconds NaN"),
        (vec!["--temperature=-1"], "--temperature -1"),
        (vec!["--prompt", "a", "--weight=-1"], "weight -1"),
    ] {
        let mut all = vec!["generate", "-o", "/tmp/never.wav"];
        all.extend(args);
        let (ok, text) = run(&all);
        assert!(!ok && text.contains(needle), "{all:?}: {text}");
    }
}

#[test]
fn generate_without_weights_or_network_fails_fast_naming_the_files() {
    let empty = scratch("empty-model-dir");
    let start = std::time::Instant::now();
    let (ok, text) = mrt(&["generate", "--prompt", "funk", "-o", "/tmp/never.wav", "--model-dir", empty.to_str().unwrap()]);
    assert!(!ok);
    assert!(start.elapsed().as_secs() < 20, "took {:?}", start.elapsed());
    for needle in ["checkpoints/llm_base_x4286_c1860k", "musiccoca_mv212f_cpu_novocab", "resources/spectrostream", "mrt fetch"] {
        assert!(text.contains(needle), "missing {needle:?} in: {text}");
    }
}

/// Writes test data in the official layout from the tiny model's own outputs.
fn write_testdata(dir: &Path) {
    use mrt::style::StyleModel;
    let device = mrt::DeviceChoice::Flex.device().unwrap();
    let v1 = tiny().join("magenta-realtime");
    let v2 = tiny().join("magenta-realtime-2");
    let model = StyleModel::load(&mrt::style::tiny::official_paths(&v1, &v2), &device).unwrap();
    let mc = dir.join("musiccoca_mv212");
    std::fs::create_dir_all(&mc).unwrap();
    let prompts = ["metal", "lo-fi hip hop", "disco funk"];
    std::fs::write(mc.join("inputs.txt"), prompts.join("\n") + "\n").unwrap();
    let mut emb = Vec::new();
    let mut tok = Vec::new();
    for p in prompts {
        let e = model.embed_text(p).unwrap();
        tok.extend(model.tokenize(&e).unwrap());
        emb.extend(e);
    }
    mrt::formats::npy::write_f32(&mc.join("embeddings.npy"), &[3, 32], &emb).unwrap();
    mrt::formats::npy::write_i32(&mc.join("tokens.npy"), &[3, 12], &tok).unwrap();
    let audio: Vec<f32> = (0..2 * 24_000).map(|i| (0.2 * (i as f32 * 0.01).sin()) * if i < 24_000 { 1.0 } else { 0.5 }).collect();
    mrt::formats::npy::write_f32(&mc.join("audio.npy"), &[2, 24_000], &audio).unwrap();
    let ea: Vec<f32> = audio.chunks(24_000).flat_map(|c| model.embed_audio_16k(c, None).unwrap()).collect();
    mrt::formats::npy::write_f32(&mc.join("embeddings_audio.npy"), &[2, 32], &ea).unwrap();

    let ss = dir.join("ssv2_48k_stereo");
    std::fs::create_dir_all(&ss).unwrap();
    let cfg = mrt::codec::CodecConfig::from_json_file(&PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/fixtures/codec/C1/config.json"))).unwrap();
    let codec = mrt::codec::Codec::load(&v2.join("resources/spectrostream"), cfg, &mrt::Target::host()).unwrap();
    let n = 9600;
    let clip: Vec<f32> = (0..2 * n).map(|i| 0.3 * ((i % n) as f32 * if i < n { 0.02 } else { 0.03 }).sin()).collect();
    let codes = codec.encode_audio(&clip, codec.levels()).unwrap();
    let rt = codec.decode_codes(&codes.data, codes.frames, codes.levels).unwrap();
    mrt::formats::npy::write_f32(&ss.join("audio.npy"), &[1, 2, n], &clip).unwrap();
    mrt::formats::npy::write_i32(&ss.join("tokens.npy"), &[1, codes.frames, codes.levels], &codes.data).unwrap();
    mrt::formats::npy::write_f32(&ss.join("audio_rt.npy"), &[1, 2, rt.len() / 2], &rt).unwrap();
}

#[test]
fn verify_passes_on_matching_data_and_fails_on_tampered_data() {
    let dir = scratch("testdata");
    write_testdata(&dir);
    let official = dir.display().to_string();
    let (ok, text) = run(&["verify", "--official", &official]);
    assert!(ok, "{text}");
    assert!(text.contains("text \"lo-fi hip hop\"") && text.contains("codec tokens, clip 0") && text.contains("PASS"), "{text}");

    // One reference embedding turned around: that prompt fails, and the command exits 1.
    let path = dir.join("musiccoca_mv212/embeddings.npy");
    let mut e = mrt::formats::npy::read_f32(&path).unwrap();
    for v in &mut e.data[32..64] {
        *v = -*v;
    }
    mrt::formats::npy::write_f32(&path, &e.shape, &e.data).unwrap();
    let (ok, text) = run(&["verify", "--official", &official]);
    assert!(!ok, "{text}");
    let bad_row = text.lines().find(|l| l.contains("text \"lo-fi hip hop\"")).unwrap();
    assert!(bad_row.ends_with("FAIL"), "{text}");
    assert!(text.contains("failed: FAIL"), "{text}");

    let (ok, text) = run(&["verify", "--official", "/nonexistent/testdata"]);
    assert!(!ok && text.contains("/nonexistent/testdata"), "{text}");
}

/// `mrt dev tiny-model` finds the fixtures by itself from anywhere inside a checkout (here a
/// folder three levels down), without `--fixtures` or `MRT_FIXTURES`.
#[test]
fn tiny_model_finds_the_fixtures_without_being_told() {
    let dir = scratch("found-fixtures");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mrt"))
        .args(["dev", "tiny-model", dir.to_str().unwrap()])
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/src/bin/mrt"))
        .env_remove("MRT_FIXTURES")
        .output()
        .expect("mrt runs");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && text.contains("tiny model written"), "{text}");
    assert!(dir.join("magenta-realtime-2/checkpoints/mrt2_tiny.safetensors").is_file(), "{text}");
    let (ok, text) = mrt(&["dev", "tiny-model", dir.to_str().unwrap(), "--fixtures", "/nonexistent/fixtures"]);
    assert!(!ok && text.contains("/nonexistent/fixtures"), "{text}");
}
