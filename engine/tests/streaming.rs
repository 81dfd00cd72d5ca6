//! `generate_chunk` end to end on the tiny model (the L1 LM + the C1 codec): output length,
//! determinism, the seam formula and state save/restore.

use std::path::PathBuf;

use mrt::codec::{Codec, CodecConfig};
use mrt::v1::lm::weights::HostWeights;
use mrt::v1::lm::{Depthformer, LmConfig, SamplingParams};
use mrt::v1::system::crossfade::equal_power_ramp;
use mrt::v1::system::{MagentaRt, StreamState};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures")
}

fn tiny_system() -> MagentaRt {
    let lm_dir = fixtures().join("lm/L1");
    let config = LmConfig::from_json_file(&lm_dir.join("config.json")).unwrap();
    let weights = HostWeights::from_t5x(&lm_dir.join("checkpoint"), &config).unwrap();
    let lm = Depthformer::from_weights(config, weights, &mrt::Target::host()).unwrap();
    let codec_dir = fixtures().join("codec/C1");
    let codec_config = CodecConfig::from_json_file(&codec_dir.join("config.json")).unwrap();
    let codec = Codec::load(&codec_dir, codec_config, &mrt::Target::host()).unwrap();
    MagentaRt::new(lm, codec).unwrap()
}

const STYLE: [i32; 6] = [3, 1, 4, 1, 5, 9];

#[test]
fn chunks_are_two_seconds_deterministic_and_seamless() {
    let mrt = tiny_system();
    let params = SamplingParams { seed: 7, ..SamplingParams::default() };
    let (n, ch) = (mrt.chunk_samples(), mrt.channels());
    assert_eq!((n, ch), (96000, 2));

    let mut state = mrt.init_state();
    let first = mrt.generate_chunk(&mut state, Some(&STYLE), &params).unwrap();
    let saved = state.clone();
    let second = mrt.generate_chunk(&mut state, Some(&STYLE), &params).unwrap();
    for chunk in [&first, &second] {
        assert_eq!(chunk.audio.len(), ch * n);
        assert!(chunk.audio.iter().all(|v| v.is_finite()));
        assert!(chunk.audio.iter().any(|v| v.abs() > 1e-4), "not silent");
    }
    assert_eq!(state.chunk_index, 2);
    assert_eq!(&state.context_codes[250 * 16 - 800..], &second.codes[..]);
    assert_eq!(&state.context_codes[250 * 16 - 1600..250 * 16 - 800], &first.codes[..]);

    // Same seed, same everything: byte-identical audio.
    let mut again = mrt.init_state();
    let first_again = mrt.generate_chunk(&mut again, Some(&STYLE), &params).unwrap();
    assert!(first.audio.iter().zip(&first_again.audio).all(|(a, b)| a.to_bits() == b.to_bits()));

    // Saved state (through JSON) continues identically.
    let restored: StreamState = serde_json::from_str(&serde_json::to_string(&saved).unwrap()).unwrap();
    let mut restored = restored;
    let second_again = mrt.generate_chunk(&mut restored, Some(&STYLE), &params).unwrap();
    assert!(second.audio.iter().zip(&second_again.audio).all(|(a, b)| a.to_bits() == b.to_bits()));
    assert_eq!(restored, state);

    // The seam: recompute chunk 1's head from the two decoded renditions and the ramp.
    let last_frame_0 = &first.codes[49 * 16..];
    let tail_0 = {
        let mut frames = vec![0; 16];
        frames.extend_from_slice(&first.codes);
        mrt.codec.decode_codes(&frames, 51, 16).unwrap()
    };
    let head_1 = {
        let mut frames = last_frame_0.to_vec();
        frames.extend_from_slice(&second.codes);
        mrt.codec.decode_codes(&frames, 51, 16).unwrap()
    };
    let ramp = equal_power_ramp(1920);
    let per = 97920;
    for c in 0..ch {
        for i in 0..1920 {
            let expected = head_1[c * per + i] * ramp[i] + tail_0[c * per + n + i] * ramp[1919 - i];
            let got = second.audio[c * n + i];
            assert_eq!(got.to_bits(), expected.to_bits(), "channel {c}, sample {i}: {got} vs {expected}");
        }
        // Past the seam the chunk is the plain rendition.
        assert_eq!(second.audio[c * n + 5000].to_bits(), head_1[c * per + 5000].to_bits());
    }
    // Chunk 0 fades in from silence: its first sample is exactly 0.
    assert_eq!(first.audio[0], 0.0);
    assert_eq!(first.audio[n], 0.0);
}

#[test]
fn a_state_for_another_model_is_rejected_and_left_untouched() {
    let mrt = tiny_system();
    let mut wrong = StreamState::new(100, 16, 2, 1920);
    let before = wrong.clone();
    let err = mrt.generate_chunk(&mut wrong, None, &SamplingParams::default()).unwrap_err();
    assert!(err.to_string().contains("context frames"), "{err}");
    assert_eq!(wrong, before);
    let mut state = mrt.init_state();
    let err = mrt.generate_chunk(&mut state, Some(&[1024, 0, 0, 0, 0, 0]), &SamplingParams::default()).unwrap_err();
    assert!(err.to_string().contains("style code 1024"), "{err}");
    assert_eq!(state, mrt.init_state());
}
