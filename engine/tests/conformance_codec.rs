//! The codec ladder of `shared/fixtures/codec/C1` through the same loaders users use
//! (`mrt conformance`), and the weight-file error paths.

use std::path::PathBuf;

use mrt::codec::weights::{DECODER_FILE, ENCODER_FILE, QUANTIZER_FILE};
use mrt::formats::safetensors;
use mrt::formats::tensor::TensorStore;
use mrt::codec::{Codec, CodecConfig};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/codec").join(name)
}

#[test]
fn c1_ladder_passes_on_flex() {
    let dir = fixture("C1");
    assert!(dir.join("config.json").is_file(), "fixture set missing: {}", dir.display());
    let report = mrt::conformance::run(&dir, &mrt::Target::host()).expect("ladder runs");
    println!("{report}");
    assert!(report.checks.len() >= 10, "every rung ran: {report}");
    assert!(report.passed(), "failed rungs: {:#?}", report.failures());
}

/// The ladder decodes clip by clip (as the player does); a batch of the same clips decodes to
/// the same audio.
#[test]
fn a_batch_of_clips_decodes_as_the_clips_one_by_one() {
    let dir = fixture("C1");
    let codec = Codec::load(&dir, CodecConfig::spectrostream_48k_stereo(), &mrt::Target::host()).expect("C1 loads");
    let latent = mrt::formats::npy::read_f32(&dir.join("dequantized.npy")).expect("dequantized.npy");
    let clips = latent.shape[0];
    assert!(clips >= 2, "C1 has {clips} clips");
    let batched = codec.embeddings_to_audio(&latent.data, clips).unwrap();
    let one_by_one: Vec<f32> = latent.data.chunks_exact(latent.data.len() / clips).flat_map(|clip| codec.embeddings_to_audio(clip, 1).unwrap()).collect();
    assert_eq!(batched.len(), one_by_one.len());
    let diff = batched.iter().zip(&one_by_one).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    assert!(diff <= 1e-6, "batch vs clip by clip: max |diff| {diff}");
}

/// A scratch copy of C1's weight files.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("mrt-codec-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for f in [ENCODER_FILE, DECODER_FILE, QUANTIZER_FILE] {
            std::fs::copy(fixture("C1").join(f), dir.join(f)).unwrap();
        }
        Self(dir)
    }

    fn load(&self) -> String {
        match Codec::load(&self.0, CodecConfig::spectrostream_48k_stereo(), &mrt::Target::host()) {
            Ok(_) => panic!("broken weights in {} must not load", self.0.display()),
            Err(e) => e.to_string(),
        }
    }

    fn rewrite(&self, file: &str, edit: impl FnOnce(&mut TensorStore)) {
        let path = self.0.join(file);
        let mut f = safetensors::read(&path).unwrap();
        edit(&mut f);
        std::fs::write(&path, safetensors::to_bytes(&f).unwrap()).unwrap();
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn a_removed_tensor_is_named_with_its_file() {
    let s = Scratch::new("removed");
    let name = "params/encoder/encoder_3/conv2d_3x4_a/conv/kernel";
    s.rewrite(ENCODER_FILE, |f| assert!(f.remove(name).is_some()));
    let err = s.load();
    assert!(err.contains(name) && err.contains(ENCODER_FILE), "{err}");
}

#[test]
fn a_mis_shaped_tensor_is_named_with_both_shapes() {
    let s = Scratch::new("misshaped");
    let name = "params/decoder/decoder_2/conv2d_3x3/conv/kernel";
    s.rewrite(DECODER_FILE, |f| {
        let mut t = f.remove(name).unwrap();
        t.shape[2] += 1;
        t.data.extend(vec![0.0; 3 * 3 * t.shape[3]]);
        let mut all: std::collections::BTreeMap<String, _> = f.names().map(|n| (n.to_owned(), f.get(n).unwrap().clone())).collect();
        all.insert(name.to_owned(), t);
        *f = TensorStore::new(f.path.clone(), all);
    });
    let err = s.load();
    assert!(err.contains(name) && err.contains(DECODER_FILE) && err.contains("shape"), "{err}");
}

#[test]
fn a_truncated_file_names_the_tensors_that_were_cut() {
    let s = Scratch::new("truncated");
    let path = s.0.join(DECODER_FILE);
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 1000]).unwrap();
    let err = s.load();
    assert!(err.contains(DECODER_FILE), "{err}");
    // The last tensor in the data section is the one cut short; the message must name it.
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + header_len]).unwrap();
    let last = header
        .as_object()
        .unwrap()
        .iter()
        .filter_map(|(k, v)| Some((v.pointer("/data_offsets/1")?.as_u64()?, k.clone())))
        .max()
        .unwrap()
        .1;
    assert!(err.contains(&last), "{err} should name {last}");
}

#[test]
fn a_missing_file_and_garbage_are_errors() {
    let s = Scratch::new("garbage");
    std::fs::write(s.0.join(QUANTIZER_FILE), b"not a safetensors file").unwrap();
    let err = s.load();
    assert!(err.contains(QUANTIZER_FILE), "{err}");
    std::fs::remove_file(s.0.join(ENCODER_FILE)).unwrap();
    let err = s.load();
    assert!(err.contains(ENCODER_FILE), "{err}");
}

#[test]
fn nan_weights_are_rejected() {
    let s = Scratch::new("nan");
    let name = "params/soundstream/quantizer/embedding";
    s.rewrite(QUANTIZER_FILE, |f| {
        let mut all: std::collections::BTreeMap<String, _> = f.names().map(|n| (n.to_owned(), f.get(n).unwrap().clone())).collect();
        all.get_mut(name).unwrap().data[5] = f32::NAN;
        *f = TensorStore::new(f.path.clone(), all);
    });
    let err = s.load();
    assert!(err.contains(name) && err.contains("non-finite"), "{err}");
}

#[test]
fn a_chunk_of_51_frames_decodes_to_97920_samples_per_channel() {
    let codec = Codec::load(&fixture("C1"), CodecConfig::spectrostream_48k_stereo(), &mrt::Target::host()).expect("C1 loads");
    let codes: Vec<i32> = (0..51 * 16).map(|i| i * 37 % 1024).collect();
    let audio = codec.decode_codes(&codes, 51, 16).expect("decodes");
    assert_eq!(audio.len(), 2 * 97_920);
    assert!(audio.iter().all(|v| v.is_finite()));
    // Out-of-range codes and impossible shapes are errors, not panics.
    let mut bad = codes.clone();
    bad[17] = 1024;
    assert!(codec.decode_codes(&bad, 51, 16).is_err());
    assert!(codec.decode_codes(&codes, 50, 16).is_err());
    assert!(codec.decode_codes(&codes[..0], 0, 16).is_err());
    assert!(codec.decode_codes(&vec![0; 51 * 17], 51, 17).is_err());
}

#[test]
fn encode_audio_pads_to_whole_frames_and_rejects_bad_audio() {
    let codec = Codec::load(&fixture("C1"), CodecConfig::spectrostream_48k_stereo(), &mrt::Target::host()).expect("C1 loads");
    let n = 1920 * 3 + 100;
    let audio: Vec<f32> = (0..2 * n).map(|i| ((i as f32) * 0.01).sin() * 0.3).collect();
    let codes = codec.encode_audio(&audio, 4).expect("encodes");
    assert_eq!((codes.frames, codes.levels, codes.data.len()), (4, 4, 16));
    assert!(codes.data.iter().all(|&c| (0..1024).contains(&c)));
    assert!(codec.encode_audio(&[], 4).is_err());
    assert!(codec.encode_audio(&[0.0; 3], 4).is_err());
    let mut nan = audio.clone();
    nan[10] = f32::NAN;
    assert!(codec.encode_audio(&nan, 4).is_err());
    assert!(codec.encode_audio(&audio, 0).is_err());
    assert!(codec.encode_audio(&audio, 17).is_err());
}

#[test]
fn cli_encode_then_decode_reproduces_the_fixture() {
    let dir = fixture("C1");
    let scratch = std::env::temp_dir().join(format!("mrt-codec-cli-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).unwrap();
    let audio = mrt::formats::npy::read_f32(&dir.join("audio.npy")).unwrap();
    let n = audio.shape[2];
    let wav = scratch.join("clip0.wav");
    mrt::codec::audio::write_wav(&wav, &audio.data[..2 * n], 2, 48_000).unwrap();
    let mrt_bin = env!("CARGO_BIN_EXE_mrt");
    let run = |args: &[&std::ffi::OsStr]| {
        let out = std::process::Command::new(mrt_bin).args(args).output().expect("mrt runs");
        assert!(out.status.success(), "mrt {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    let codes = scratch.join("codes.npy");
    run(&["encode".as_ref(), wav.as_os_str(), "-o".as_ref(), codes.as_os_str(), "--levels".as_ref(), "16".as_ref(), "--weights".as_ref(), dir.as_os_str(), "--device".as_ref(), "flex".as_ref()]);
    let ours = mrt::formats::npy::read_i32(&codes).unwrap();
    let want = mrt::formats::npy::read_i32(&dir.join("tokens.npy")).unwrap();
    let (frames, levels) = (want.shape[1], want.shape[2]);
    assert_eq!(ours.shape, vec![frames, levels]);
    assert_eq!(ours.data, want.data[..frames * levels].to_vec(), "tokens of clip 0");
    let out = scratch.join("out.wav");
    run(&["decode".as_ref(), codes.as_os_str(), "-o".as_ref(), out.as_os_str(), "--weights".as_ref(), dir.as_os_str(), "--device".as_ref(), "flex".as_ref()]);
    let decoded = mrt::codec::audio::read(&out).unwrap();
    let want = mrt::formats::npy::read_f32(&dir.join("decoded.npy")).unwrap();
    assert_eq!((decoded.sample_rate_hz, decoded.channels, decoded.frames()), (48_000, 2, n));
    let (diff, ok) = mrt::conformance::compare(&decoded.samples, &want.data[..2 * n], 1e-5, 0.0);
    assert!(ok, "decoded clip 0 differs by {diff:e}");
    // A file that is not audio is a clear error, not a panic.
    std::fs::write(&wav, b"not audio").unwrap();
    let out = std::process::Command::new(mrt_bin)
        .args(["encode".as_ref(), wav.as_os_str(), "-o".as_ref(), codes.as_os_str(), "--weights".as_ref(), dir.as_os_str()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("clip0.wav") && !stderr.contains("panicked"), "{stderr}");
    std::fs::remove_dir_all(&scratch).unwrap();
}
