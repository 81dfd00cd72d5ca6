//! A 10-minute audio prompt is embedded with bounded memory: the file is decoded, downmixed,
//! resampled and clipped as it streams. Alone in its own test binary so that the process's
//! memory high-water mark measures this and nothing else.

use mrt::style::{tiny, StyleModel};

/// `VmHWM` (peak resident set) of this process, in bytes.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("Linux /proc");
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).expect("VmHWM line");
    let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}

#[test]
fn ten_minutes_of_stereo_embed_in_bounded_memory() {
    let dir = std::env::temp_dir().join(format!("mrt-long-audio-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let paths = tiny::write_tiny(&dir.join("v1"), &dir.join("v2"), 2).unwrap();
    let device = mrt::DeviceChoice::Flex.device().unwrap();
    let model = StyleModel::load(&paths, &device).unwrap();

    // 10 minutes at 44.1 kHz, 16-bit stereo: 106 MB on disk, 212 MB as f32 if loaded whole.
    let wav = dir.join("long.wav");
    let spec = hound::WavSpec { channels: 2, sample_rate: 44_100, bits_per_sample: 16, sample_format: hound::SampleFormat::Int };
    let mut w = hound::WavWriter::create(&wav, spec).unwrap();
    let frames = 600 * 44_100u64;
    for i in 0..frames {
        let t = i as f64 / 44_100.0;
        let v = (0.3 * (2.0 * std::f64::consts::PI * (220.0 + 20.0 * (t / 60.0).floor()) * t).sin() * 32767.0) as i16;
        w.write_sample(v).unwrap();
        w.write_sample(v / 2).unwrap();
    }
    w.finalize().unwrap();

    let before = peak_rss();
    let embedding = mrt::style::audio::embed_file(&model, &wav, None).unwrap();
    let grown = peak_rss().saturating_sub(before);
    assert_eq!(embedding.len(), 32);
    assert!(embedding.iter().all(|v| v.is_finite()));
    assert!(grown < 64 << 20, "peak RSS grew by {} MB while embedding a 10-minute file", grown >> 20);
    std::fs::remove_dir_all(dir).unwrap();
}
