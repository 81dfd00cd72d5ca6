//! The audio-thread path (`MrtLive::render`: sidechain capture, transport, chunk player, gain)
//! never allocates, across chunk seams, a stop, an underrun wait and a context reset. Runs with
//! the tiny model (v1, and MRT2 with MIDI notes); allocations are counted by
//! `nice-assert-no-alloc`'s global allocator.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use mrt_live::{MrtLive, Status};
use nice_assert_no_alloc::{assert_no_alloc, violation_count, AllocDisabler};
use nice_plug::prelude::*;

#[global_allocator]
static ALLOC: AllocDisabler = AllocDisabler;

/// A plugin on the tiny model of `family` (written to a folder named by `tag`), started at
/// `rate` in realtime mode, once the worker has generated its first block; and that folder.
fn started(family: mrt::stream::Family, tag: &str, rate: f32) -> (MrtLive, PathBuf, Instant) {
    let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures");
    let dir = std::env::temp_dir().join(format!("mrt-live-alloc-{tag}-{}", std::process::id()));
    mrt::tiny_model::write(&dir, &fixtures).unwrap();
    let mut p = MrtLive::default();
    p.mrt_params().saved.update(|s| {
        s.settings.family = family;
        s.settings.model_dir = Some(dir.clone());
        s.settings.size = "tiny".into();
        s.settings.device = Some("flex".into());
        s.prompts[0] = "jazz".into();
    });
    p.start(rate, ProcessMode::Realtime);
    let start = Instant::now();
    while p.shared().chunks_generated.load(Ordering::Acquire) < 1 {
        let s = p.shared();
        assert!(!matches!(s.status(), Status::Error | Status::NotInstalled), "{}", s.message());
        assert!(start.elapsed() < Duration::from_secs(300), "no {family} block");
        std::thread::sleep(Duration::from_millis(10));
    }
    (p, dir, start)
}

#[test]
fn render_never_allocates() {
    let rate = 44_100.0;
    let (mut p, dir, start) = started(mrt::stream::Family::V1, "tiny", rate);
    let (mut l, mut r) = (vec![0.0f32; 8192], vec![0.0f32; 8192]);
    let sc: Vec<f32> = (0..8192).map(|i| (i as f32 * 0.01).sin() * 0.3).collect();
    let before = violation_count();
    let mut pos = 0i64;
    let mut played = 0usize;
    // Two and a half chunks in odd blocks with the sidechain connected, pacing on the worker.
    let blocks = [1usize, 333, 8192, 64, 4097];
    let mut k = 0;
    while played < 220_500 {
        let n = blocks[k % blocks.len()];
        k += 1;
        while p.shared().buffer_ahead() < n as f32 / rate {
            assert_no_alloc(|| p.render(&mut [], &mut [], None, true, Some(pos)));
            assert!(start.elapsed() < Duration::from_secs(600), "worker too slow");
            std::thread::sleep(Duration::from_millis(2));
        }
        assert_no_alloc(|| p.render(&mut l[..n], &mut r[..n], Some((&sc[..n], &sc[..n])), true, Some(pos)));
        pos += n as i64;
        played += n;
    }
    // Stop, an underrun-free hold, a jump back to the start (reset) and waiting for audio.
    for playing in [false, false, true, true, true] {
        let p_pos = if playing { 0 } else { pos };
        assert_no_alloc(|| p.render(&mut l[..512], &mut r[..512], None, playing, Some(p_pos)));
    }
    assert_eq!(violation_count(), before, "the audio-thread path allocated");
    assert!(p.shared().epoch.load(Ordering::Acquire) >= 1, "the jump to the start reset the context");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn render_with_midi_notes_on_mrt2_never_allocates() {
    let rate = 44_100.0;
    let (mut p, dir, start) = started(mrt::stream::Family::Mrt2, "tiny-mrt2", rate);
    // The MIDI gate on: it counts the held notes on the audio thread too.
    // SAFETY: the parameter outlives the call; hosts set parameters through the same entry point.
    unsafe { p.mrt_params().midi_gate.as_ptr()._internal_set_normalized_value(1.0) };
    assert!(p.mrt_params().midi_gate.value(), "the gate is on");
    let (mut l, mut r) = (vec![0.0f32; 1024], vec![0.0f32; 1024]);
    let before = violation_count();
    let mut pos = 0i64;
    let mut played = 0usize;
    // 30 frames (40 ms) in odd blocks, a note on and off in every block, the worker pacing.
    let blocks = [1usize, 333, 1024, 64, 517];
    let mut k = 0;
    while played < 30 * 1764 {
        let n = blocks[k % blocks.len()];
        k += 1;
        let pitch = 40 + (k % 40) as u8;
        let notes = [
            mrt_live::midi::NoteIn { timing: 0, pitch, on: true },
            mrt_live::midi::NoteIn { timing: (n / 2) as u32, pitch, on: false },
        ];
        while p.shared().buffer_ahead() < n as f32 / rate {
            assert_no_alloc(|| p.render(&mut [], &mut [], None, true, Some(pos)));
            assert!(start.elapsed() < Duration::from_secs(600), "worker too slow");
            std::thread::sleep(Duration::from_millis(2));
        }
        assert_no_alloc(|| p.render_notes(&mut l[..n], &mut r[..n], None, true, Some(pos), &notes));
        assert!(l[..n].iter().chain(&r[..n]).all(|v| v.is_finite()), "non-finite output");
        pos += n as i64;
        played += n;
    }
    assert_eq!(violation_count(), before, "the audio-thread path allocated with notes");
    assert!(p.shared().notes_held.load(Ordering::Acquire) <= 1, "every note but the last was released");
    assert_eq!(p.shared().notes_dropped.load(Ordering::Acquire), 0, "no note was dropped");
    assert!(p.shared().chunks_generated.load(Ordering::Acquire) >= 25, "the worker generated the frames played");
    let _ = std::fs::remove_dir_all(&dir);
}
