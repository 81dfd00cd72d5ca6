//! The plugin's worker and player driven in-process with the tiny model (no host): playback at
//! 44.1 and 96 kHz against an independently generated and resampled reference stream, silence
//! when stopped, slot-weight automation reaching the next chunk's style tokens, and the
//! persisted state's round trip.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use mrt_live::registry::{self, ModelKey};
use mrt_live::resample::StreamResampler;
use mrt_live::{MrtLive, Status};
use nice_plug::prelude::*;

/// Generous: the first load in a debug test build reads and lays out every weight.
const TIMEOUT: Duration = Duration::from_secs(300);

fn tiny_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures");
        let dir = std::env::temp_dir().join(format!("mrt-live-plugin-tiny-{}", std::process::id()));
        // The LM conversion cache goes beside it, not into the user's cache.
        std::env::set_var("MRT_CACHE_DIR", dir.join("cache"));
        mrt::tiny_model::write(&dir, &fixtures).expect("writing the tiny model from the golden fixtures");
        dir
    })
}

fn key() -> ModelKey {
    ModelKey {
        family: mrt::stream::Family::V1,
        model_dir: Some(tiny_dir().to_path_buf()),
        size: "tiny".into(),
        device: mrt::DeviceChoice::Flex,
        lm: mrt::v1::lm::LmOptions::default(),
    }
}

/// A plugin configured for the tiny model with two prompts, slot 1 at full weight.
fn tiny_plugin() -> MrtLive {
    let p = MrtLive::default();
    p.mrt_params().saved.update(|s| {
        s.settings.model_dir = Some(tiny_dir().to_path_buf());
        s.settings.size = "tiny".into();
        s.settings.device = Some("flex".into());
        s.prompts[0] = "warm ambient piano".into();
        s.prompts[1] = "fast techno drums".into();
    });
    p
}

/// Sets a parameter the way a host does (normalised value through its pointer).
fn automate(param: &impl Param, normalized: f32) {
    // SAFETY: the parameter outlives the call; hosts use the same entry point.
    unsafe { param.as_ptr()._internal_set_normalized_value(normalized) };
}

fn wait_for(what: &str, mut cond: impl FnMut() -> bool, p: &MrtLive) {
    let start = Instant::now();
    while !cond() {
        let s = p.shared();
        assert!(
            !matches!(s.status(), Status::Error | Status::NotInstalled),
            "while waiting for {what}: worker reports {}: {}",
            s.status().label(),
            s.message()
        );
        assert!(start.elapsed() < TIMEOUT, "timed out waiting for {what} (status {}: {})", s.status().label(), s.message());
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Waits until the worker is idle with its chunk ahead ready (so that a parameter change
/// reaches exactly the chunks generated after it).
fn wait_quiescent(p: &MrtLive) {
    wait_for(
        "the worker to fill its chunk ahead",
        || {
            let s = p.shared();
            s.chunks_generated.load(Ordering::Acquire) == s.started_seq.load(Ordering::Acquire) + 1
        },
        p,
    );
}

/// Renders `total` samples in odd block sizes while playing, pacing like a host that never
/// runs ahead of the worker (the test machine is far slower than real time in debug builds).
fn play(p: &mut MrtLive, rate: f32, total: usize, pos: &mut i64) -> (Vec<f32>, Vec<f32>) {
    play_blocks(p, rate, total, pos, &[512, 1, 333, 4097, 64, 8192, 7, 1000])
}

/// [`play`] in the given block sizes (MRT2 holds at most two 40 ms frames where the player sees
/// them, so its blocks must stay below ~70 ms).
fn play_blocks(p: &mut MrtLive, rate: f32, total: usize, pos: &mut i64, blocks: &[usize]) -> (Vec<f32>, Vec<f32>) {
    let (mut out_l, mut out_r) = (Vec::with_capacity(total), Vec::with_capacity(total));
    let mut k = 0;
    while out_l.len() < total {
        let n = blocks[k % blocks.len()].min(total - out_l.len());
        k += 1;
        // Refresh the buffer report with an empty block, then wait until the block and the
        // player's 10 ms look-ahead (it fades out early when the next chunk is late) are covered.
        let need = (n as f32 + 0.010 * rate + 1.0) / rate;
        let start = Instant::now();
        loop {
            p.render(&mut [], &mut [], None, true, Some(*pos));
            if p.shared().buffer_ahead() >= need {
                break;
            }
            let s = p.shared();
            assert!(s.can_deliver(), "worker stopped: {}: {}", s.status().label(), s.message());
            assert!(start.elapsed() < TIMEOUT, "timed out waiting for audio");
            std::thread::sleep(Duration::from_millis(2));
        }
        let (mut l, mut r) = (vec![f32::NAN; n], vec![f32::NAN; n]);
        p.render(&mut l, &mut r, None, true, Some(*pos));
        *pos += n as i64;
        out_l.extend(l);
        out_r.extend(r);
    }
    (out_l, out_r)
}

/// The stream the plugin should play: the same chunks generated directly from a fresh state
/// and resampled in one continuous pass.
fn reference(p: &MrtLive, rate: u32, chunks: usize) -> (Vec<f32>, Vec<f32>) {
    let models = registry::models().get_or_load(&key(), || registry::load(&key(), &())).expect("tiny model");
    let log = p.shared().chunk_log();
    let sampling = p.mrt_params().sampling();
    let mut state = models.generator.init_state();
    let mut rs = StreamResampler::new(models.generator.sample_rate(), rate, 2, 960).unwrap();
    let mut out = vec![Vec::new(), Vec::new()];
    for info in log.iter().take(chunks) {
        let controls = mrt::stream::Controls { style: info.style_tokens.as_deref(), sampling, ..Default::default() };
        let chunk = models.generator.next_block(&mut state, &controls, None).unwrap();
        let n = chunk.samples();
        rs.process(&[&chunk.audio[..n], &chunk.audio[n..]], &mut out).unwrap();
    }
    let [l, r]: [Vec<f32>; 2] = out.try_into().unwrap();
    (l, r)
}

fn rms(x: &[f32]) -> f32 {
    (x.iter().map(|v| v * v).sum::<f32>() / x.len().max(1) as f32).sqrt()
}

fn plays_seamlessly_then_stops(rate: f32) {
    let mut p = tiny_plugin();
    p.start(rate, ProcessMode::Realtime);
    wait_for("the first chunk", || p.shared().chunks_generated.load(Ordering::Acquire) >= 1, &p);
    assert_eq!(p.shared().status(), Status::Ready);

    let chunk_len = (2.0 * rate) as usize;
    let total = chunk_len * 2 + chunk_len / 2;
    let mut pos = 0;
    let (l, r) = play(&mut p, rate, total, &mut pos);
    assert!(l.iter().chain(&r).all(|v| v.is_finite()), "{rate} Hz: non-finite output");
    assert!(rms(&l) > 1e-4 && rms(&r) > 1e-4, "{rate} Hz: output is silent (rms {} / {})", rms(&l), rms(&r));
    assert_eq!(p.shared().underruns.load(Ordering::Relaxed), 0, "{rate} Hz: underruns");

    // Sample-exact against the reference stream (after the 10 ms fade-in), across both seams.
    let (ref_l, ref_r) = reference(&p, rate as u32, 3);
    assert!(ref_l.len() >= total, "reference too short");
    let fade = (rate * 0.010).round() as usize;
    for i in fade + 1..total {
        assert_eq!(l[i], ref_l[i], "{rate} Hz: left sample {i} (chunk {}, offset {})", i / chunk_len + 1, i % chunk_len);
        assert_eq!(r[i], ref_r[i], "{rate} Hz: right sample {i}");
    }

    // Stop: faded out within 10 ms, then silence.
    let (mut stopped_l, mut stopped_r) = (Vec::new(), Vec::new());
    for n in [256usize, 999, 4096] {
        let (mut l, mut r) = (vec![f32::NAN; n], vec![f32::NAN; n]);
        p.render(&mut l, &mut r, None, false, Some(pos));
        stopped_l.extend(l);
        stopped_r.extend(r);
    }
    assert!(stopped_l[..fade].iter().any(|&v| v != 0.0), "{rate} Hz: the stop fade plays the audio down");
    assert!(stopped_l[fade..].iter().chain(&stopped_r[fade..]).all(|&v| v == 0.0), "{rate} Hz: not silent after stopping");
    assert_eq!(p.shared().underruns.load(Ordering::Relaxed), 0);
}

#[test]
fn plays_seamlessly_and_stops_at_44100() {
    plays_seamlessly_then_stops(44_100.0);
}

#[test]
fn plays_seamlessly_and_stops_at_96000() {
    plays_seamlessly_then_stops(96_000.0);
}

#[test]
fn slot_weight_automation_changes_the_next_chunks_style() {
    let mut p = tiny_plugin();
    p.start(48_000.0, ProcessMode::Realtime);
    wait_for("the first chunk", || p.shared().chunks_generated.load(Ordering::Acquire) >= 1, &p);
    let models = registry::models().get_or_load(&key(), || registry::load(&key(), &())).unwrap();
    let tokens_of = |text: &str| models.style.tokenize(&models.style.embed_text(text).unwrap()).unwrap();
    let (a, b) = (tokens_of("warm ambient piano"), tokens_of("fast techno drums"));
    assert_ne!(a, b, "the two prompts must differ in style tokens for this test to mean anything");
    let first = p.shared().chunk_log()[0].clone();
    assert_eq!(first.style_tokens.as_ref(), Some(&a), "chunk 1: slot 1 only");

    // Automate: slot 1 off, slot 2 on. Every chunk generated afterwards carries slot 2's style.
    let mut pos = 0;
    wait_quiescent(&p);
    automate(&p.mrt_params().slot1, 0.0);
    automate(&p.mrt_params().slot2, 1.0);
    let before = p.shared().chunks_generated.load(Ordering::Acquire);
    play(&mut p, 48_000.0, 96_000 + 10, &mut pos);
    wait_quiescent(&p);
    let log = p.shared().chunk_log();
    assert!(log.len() as u64 > before, "no chunk generated after the automation");
    for info in &log[before as usize..] {
        assert_eq!(info.style_tokens.as_ref(), Some(&b), "chunk {} after the automation: slot 2 only", info.seq);
    }

    // Both slots at zero: no style at all.
    automate(&p.mrt_params().slot2, 0.0);
    let before = p.shared().chunks_generated.load(Ordering::Acquire);
    play(&mut p, 48_000.0, 96_000, &mut pos);
    wait_quiescent(&p);
    let log = p.shared().chunk_log();
    assert!(log.len() as u64 > before, "no chunk generated after the second automation");
    for info in &log[before as usize..] {
        assert_eq!(info.style_tokens, None, "chunk {}: all weights zero means no style", info.seq);
    }
}

#[test]
fn saved_state_round_trips_and_the_context_continues() {
    let mut a = tiny_plugin();
    automate(&a.mrt_params().seed, 0.25);
    a.start(48_000.0, ProcessMode::Realtime);
    let mut pos = 0;
    play(&mut a, 48_000.0, 96_000 + 100, &mut pos);
    wait_for("two chunks", || a.shared().chunks_generated.load(Ordering::Acquire) >= 2, &a);
    // Stop generation at a known point: a stopped transport with the queue full.
    std::thread::sleep(Duration::from_millis(50));
    let fields = a.mrt_params().serialize_fields();
    let json = fields.get("mrt-live-state").expect("the persisted field is named mrt-live-state");
    assert!(json.contains("\"version\":1"), "the state carries its version: {json:.200}");
    // The worker may still be writing newer contexts; what was serialised is the reference.
    let saved_a: mrt_live::params::SavedState = serde_json::from_str(json).unwrap();
    let ctx_a = saved_a.context.clone().expect("a context after generating");
    assert!(matches!(&ctx_a, mrt::stream::StreamState::V1(s) if s.chunk_index >= 2), "A generated at least two chunks");
    let params_a: Vec<(String, f32)> = a
        .params()
        .param_map()
        .into_iter()
        .map(|(id, ptr, _)| (id, unsafe { ptr.unmodulated_normalized_value() }))
        .collect();

    // A fresh instance gets the fields and parameter values the way a host restores a project.
    let mut b = MrtLive::default();
    b.mrt_params().deserialize_fields(&fields);
    let b_params = b.params();
    for ((id, ptr, _), (id_a, v)) in b_params.param_map().into_iter().zip(&params_a) {
        assert_eq!(&id, id_a);
        unsafe { ptr._internal_set_normalized_value(*v) };
    }
    assert_eq!(b.mrt_params().saved.get(), saved_a, "persisted state differs after the round trip");
    assert_eq!(b.mrt_params().seed.value(), a.mrt_params().seed.value());
    drop(a);

    // The restored context continues: B's first chunk is the one that follows A's context.
    b.start(48_000.0, ProcessMode::Realtime);
    wait_for("B's first chunk", || b.shared().chunks_generated.load(Ordering::Acquire) >= 1, &b);
    let models = registry::models().get_or_load(&key(), || registry::load(&key(), &())).unwrap();
    let mut expected = ctx_a.clone();
    let style = b.shared().chunk_log()[0].style_tokens.clone();
    let controls = mrt::stream::Controls { style: style.as_deref(), sampling: b.mrt_params().sampling(), ..Default::default() };
    models.generator.next_block(&mut expected, &controls, None).unwrap();
    let log = b.shared().chunk_log();
    assert_eq!(log.len(), 1, "only one chunk ahead while stopped");
    let ctx_b = b.mrt_params().saved.get().context.expect("B's context");
    assert_eq!(ctx_b, expected, "B did not continue from the restored context");
}

#[test]
fn missing_model_is_reported_and_silent() {
    let mut p = MrtLive::default();
    let empty = std::env::temp_dir().join(format!("mrt-live-no-model-{}", std::process::id()));
    std::fs::create_dir_all(&empty).unwrap();
    p.mrt_params().saved.update(|s| {
        s.settings.model_dir = Some(empty.clone());
        s.settings.size = "base".into();
        s.settings.device = Some("flex".into());
    });
    p.start(48_000.0, ProcessMode::Realtime);
    let start = Instant::now();
    while p.shared().status() != Status::NotInstalled {
        assert!(start.elapsed() < Duration::from_secs(60), "status stayed {}", p.shared().status().label());
        std::thread::sleep(Duration::from_millis(5));
    }
    let msg = p.shared().message();
    assert!(msg.contains("magenta-realtime"), "the message names the missing files: {msg}");
    let (mut l, mut r) = (vec![1.0f32; 4096], vec![1.0f32; 4096]);
    p.render(&mut l, &mut r, None, true, Some(0));
    assert!(l.iter().chain(&r).all(|&v| v == 0.0));
}

#[test]
fn speed_settings_load_their_own_model_and_play() {
    let mut p = tiny_plugin();
    p.mrt_params().saved.update(|s| {
        s.settings.lm_weights = mrt::v1::lm::WeightPrecision::Bf16;
        s.settings.depth_logits = mrt::v1::lm::DepthLogits::Level;
    });
    p.start(48_000.0, ProcessMode::Offline);
    let mut out = Vec::new();
    for _ in 0..12 {
        let (mut l, mut r) = (vec![f32::NAN; 8192], vec![f32::NAN; 8192]);
        p.render(&mut l, &mut r, None, true, Some(out.len() as i64));
        out.extend(l);
    }
    let s = p.shared();
    assert_eq!(s.status(), Status::Ready, "{}", s.message());
    assert!(s.message().contains("LM weights bf16, depth logits level"), "the status names the speed options: {}", s.message());
    assert!(out.iter().all(|v| v.is_finite()) && rms(&out[4800..]) > 0.0, "the fast path plays");
    // The exact path is another key, so another load.
    let fast = mrt::v1::lm::LmOptions { precision: mrt::v1::lm::WeightPrecision::Bf16, depth_logits: mrt::v1::lm::DepthLogits::Level };
    assert_ne!(key(), ModelKey { lm: fast, ..key() });
}

#[test]
fn offline_render_is_complete_and_deterministic() {
    let render_offline = || {
        let mut p = tiny_plugin();
        automate(&p.mrt_params().seed, 0.5);
        p.start(44_100.0, ProcessMode::Offline);
        let mut out = Vec::new();
        let mut pos = 0i64;
        for n in [4096usize, 13, 8192, 1024].iter().cycle().take(30) {
            let (mut l, mut r) = (vec![f32::NAN; *n], vec![f32::NAN; *n]);
            p.render(&mut l, &mut r, None, true, Some(pos));
            pos += *n as i64;
            out.extend(l);
        }
        assert_eq!(p.shared().underruns.load(Ordering::Relaxed), 0);
        out
    };
    let a = render_offline();
    assert!(a.len() > 88_200, "render spans more than one chunk");
    assert!(a.iter().all(|v| v.is_finite()));
    // Complete: no silent gap anywhere after the fade-in (10 ms windows all carry signal).
    for (w, win) in a[441..].chunks(441).enumerate() {
        assert!(rms(win) > 0.0, "silent 10 ms window {w} in an offline render");
    }
    let b = render_offline();
    assert_eq!(a, b, "two offline renders with the same seed differ");
}

#[test]
fn realtime_reactivation_at_the_same_rate_keeps_the_audio_ahead() {
    let mut p = tiny_plugin();
    p.start(48_000.0, ProcessMode::Realtime);
    // Until the player sees the first chunk published (counting it generated is not enough: the
    // worker publishes right after), refreshing the report with empty blocks.
    let start = Instant::now();
    loop {
        p.render(&mut [], &mut [], None, true, Some(0));
        if p.shared().buffer_ahead() >= 1.0 {
            break;
        }
        let s = p.shared();
        assert!(s.can_deliver(), "worker stopped: {}: {}", s.status().label(), s.message());
        assert!(start.elapsed() < TIMEOUT, "timed out waiting for the first chunk");
        std::thread::sleep(Duration::from_millis(5));
    }
    // A host that deactivates and activates again around a render (DawDreamer does).
    p.start(48_000.0, ProcessMode::Realtime);
    let (mut l, mut r) = (vec![0.0; 4800], vec![0.0; 4800]);
    p.render(&mut l, &mut r, None, true, Some(0));
    // (New plumbing would start with an empty buffer and play silence while a chunk generates.)
    assert!(rms(&l[480..]) > 1e-4, "the chunk generated before the re-activation plays at once");
    // Another rate starts over.
    p.start(44_100.0, ProcessMode::Realtime);
    let (mut l, mut r) = (vec![1.0; 441], vec![1.0; 441]);
    p.render(&mut l, &mut r, None, true, Some(0));
    assert!(l.iter().all(|&v| v == 0.0), "new plumbing at 44.1 kHz: nothing to play yet");
}

#[test]
fn mrt2_notes_steer_the_block_that_starts_at_or_after_them_offline() {
    const FRAME: usize = 1920; // one MRT2 frame at 48 kHz
    let mut p = tiny_plugin();
    p.mrt_params().saved.update(|s| s.settings.family = mrt::stream::Family::Mrt2);
    p.start(48_000.0, ProcessMode::Offline);
    // Block k plays samples (k−1)·FRAME.. . Pitch 60: on one sample before block 3 starts, off
    // inside block 4 (so it steers block 5). Pitch 64: on and off one and two samples after block
    // 3 starts (a short note, steering block 4 as one onset). Pitch 67: on exactly where block 6
    // starts.
    let notes = [(2 * FRAME - 1, 60, true), (2 * FRAME + 1, 64, true), (2 * FRAME + 2, 64, false), (3 * FRAME + 5, 60, false), (5 * FRAME, 67, true)];
    let total = 7 * FRAME;
    let mut pos = 0usize;
    let blocks = [1000usize, 333, 4097, 1];
    let mut k = 0;
    while pos < total {
        let n = blocks[k % blocks.len()].min(total - pos);
        k += 1;
        let events: Vec<mrt_live::midi::NoteIn> = notes
            .iter()
            .filter(|(at, _, _)| (pos..pos + n).contains(at))
            .map(|&(at, pitch, on)| mrt_live::midi::NoteIn { timing: (at - pos) as u32, pitch, on })
            .collect();
        let (mut l, mut r) = (vec![f32::NAN; n], vec![f32::NAN; n]);
        p.render_notes(&mut l, &mut r, None, true, Some(pos as i64), &events);
        assert!(l.iter().chain(&r).all(|v| v.is_finite()), "non-finite output at {pos}");
        pos += n;
    }
    let s = p.shared();
    assert_eq!(s.status(), Status::Ready, "{}", s.message());
    let log = s.chunk_log();
    assert!(log.len() >= 7, "7 blocks generated: {}", log.len());
    let first = log[0].seq;
    let roll = |block: u64, pitch: usize| {
        let info = log.iter().find(|c| c.seq == first + block - 1).unwrap_or_else(|| panic!("block {block} not generated"));
        info.pianoroll.as_ref().expect("MRT2 blocks log their piano roll")[pitch]
    };
    // Unmask width 0: idle pitches are masked (−1); onset 2, sustain 1 (onset mode 1).
    let got: Vec<[i32; 3]> = (1..=7).map(|b| [roll(b, 60), roll(b, 64), roll(b, 67)]).collect();
    assert_eq!(
        got,
        vec![[-1, -1, -1], [-1, -1, -1], [2, -1, -1], [1, 2, -1], [-1, -1, -1], [-1, -1, 2], [-1, -1, 1]],
        "piano roll of blocks 1–7 for pitches 60, 64, 67"
    );
}

#[test]
fn an_mrt2_size_that_does_not_exist_is_an_error_naming_it_and_the_plugin_stays_silent() {
    let mut p = tiny_plugin();
    p.mrt_params().saved.update(|s| {
        s.settings.family = mrt::stream::Family::Mrt2;
        s.settings.size = "huge".into();
    });
    p.start(48_000.0, ProcessMode::Realtime);
    let start = Instant::now();
    while !matches!(p.shared().status(), Status::Error | Status::NotInstalled) {
        assert!(start.elapsed() < TIMEOUT, "no load failure reported: status {}", p.shared().status().label());
        std::thread::sleep(Duration::from_millis(5));
    }
    let msg = p.shared().message();
    assert!(msg.contains("mrt2 huge") && msg.contains("tiny"), "the message names the size and the known ones: {msg}");
    let (mut l, mut r) = (vec![f32::NAN; 4096], vec![f32::NAN; 4096]);
    p.render(&mut l, &mut r, None, true, Some(0));
    assert!(l.iter().chain(&r).all(|&v| v == 0.0), "silent while the model cannot load");
}

fn mrt2_key() -> ModelKey {
    ModelKey { family: mrt::stream::Family::Mrt2, ..key() }
}

/// The tiny plugin playing MRT2.
fn tiny_mrt2_plugin() -> MrtLive {
    let p = tiny_plugin();
    p.mrt_params().saved.update(|s| s.settings.family = mrt::stream::Family::Mrt2);
    p
}

/// Style tokens of the two prompts under the tiny style model, checked to differ.
fn two_styles() -> (Vec<i32>, Vec<i32>) {
    let models = registry::models().get_or_load(&mrt2_key(), || registry::load(&mrt2_key(), &())).expect("tiny MRT2");
    let tokens_of = |text: &str| models.style.tokenize(&models.style.embed_text(text).unwrap()).unwrap();
    let (a, b) = (tokens_of("warm ambient piano"), tokens_of("fast techno drums"));
    assert_ne!(a, b, "the two prompts must differ in style tokens for this test to mean anything");
    (a, b)
}

/// Renders `frames` MRT2 frames at 48 kHz offline in odd blocks from `*pos`.
fn render_offline(p: &mut MrtLive, frames: usize, pos: &mut usize) {
    const FRAME: usize = 1920;
    let end = *pos + frames * FRAME;
    let blocks = [1000usize, 333, 4097, 1];
    let mut k = 0;
    while *pos < end {
        let n = blocks[k % blocks.len()].min(end - *pos);
        k += 1;
        let (mut l, mut r) = (vec![f32::NAN; n], vec![f32::NAN; n]);
        p.render(&mut l, &mut r, None, true, Some(*pos as i64));
        assert!(l.iter().chain(&r).all(|v| v.is_finite()), "non-finite output at {pos}");
        *pos += n;
    }
}

#[test]
fn mrt2_weight_automation_steers_the_next_frame_offline_and_within_the_buffer_plus_two_in_realtime() {
    let (a, b) = two_styles();
    // Offline: a change between blocks 3 and 4 steers block 4 on, exactly.
    let mut p = tiny_mrt2_plugin();
    p.start(48_000.0, ProcessMode::Offline);
    let mut pos = 0;
    render_offline(&mut p, 3, &mut pos);
    automate(&p.mrt_params().slot1, 0.0);
    automate(&p.mrt_params().slot2, 1.0);
    render_offline(&mut p, 3, &mut pos);
    let log = p.shared().chunk_log();
    let styles: Vec<_> = log.iter().take(6).map(|c| c.style_tokens.clone()).collect();
    assert_eq!(styles.len(), 6, "six frames generated offline");
    let want: Vec<_> = [&a, &a, &a, &b, &b, &b].into_iter().map(|t| Some(t.clone())).collect();
    assert_eq!(styles, want, "offline: blocks 1–3 carry slot 1's style, blocks 4–6 slot 2's");

    // Realtime with a 3-frame buffer: the frame being generated when the weights move may keep
    // the old style; every later one has the new. So the new style starts at most buffer + 2
    // frames after the frame playing at the change.
    let mut p = tiny_mrt2_plugin();
    automate(&p.mrt_params().frames_ahead, 0.0);
    assert_eq!(p.mrt_params().frames_ahead.value(), mrt_live::params::FRAMES_AHEAD_MIN);
    p.start(48_000.0, ProcessMode::Realtime);
    let mut pos = 0;
    let small = [512usize, 1, 333, 64, 7, 1000];
    play_blocks(&mut p, 48_000.0, 10 * 1920, &mut pos, &small);
    let playing = p.shared().started_seq.load(Ordering::Acquire);
    automate(&p.mrt_params().slot1, 0.0);
    automate(&p.mrt_params().slot2, 1.0);
    play_blocks(&mut p, 48_000.0, 10 * 1920, &mut pos, &small);
    let log = p.shared().chunk_log();
    let first_b = log.iter().find(|c| c.style_tokens.as_ref() == Some(&b)).expect("slot 2's style reached a frame");
    let buffer = mrt_live::params::FRAMES_AHEAD_MIN as u64;
    println!("weights moved while frame {playing} played; slot 2's style from frame {}", first_b.seq);
    assert!(first_b.seq <= playing + buffer + 2, "slot 2's style first in frame {}, more than buffer + 2 after frame {playing}", first_b.seq);
    for c in log.iter().filter(|c| c.seq > first_b.seq) {
        assert_eq!(c.style_tokens.as_ref(), Some(&b), "frame {} after the change went back to the old style", c.seq);
    }
}

#[test]
fn mrt2_keeps_its_context_live_and_copies_it_when_the_host_saves() {
    let mut p = tiny_mrt2_plugin();
    p.start(48_000.0, ProcessMode::Offline);
    let mut pos = 0;
    render_offline(&mut p, 4, &mut pos);
    // Not copied after every frame (megabytes for the real models)...
    assert_eq!(p.mrt_params().saved.get().context, None, "MRT2's context is copied on save, not after every frame");
    // ...but a save gets the context after the last frame generated.
    let generated = p.shared().chunks_generated.load(Ordering::Acquire);
    let fields = p.mrt_params().serialize_fields();
    let saved: mrt_live::params::SavedState = serde_json::from_str(fields.get("mrt-live-state").unwrap()).unwrap();
    match saved.context {
        Some(mrt::stream::StreamState::Mrt2(s)) => assert_eq!(u64::from(s.frame()), generated, "the saved context is the newest"),
        other => panic!("expected an MRT2 context, got {other:?}"),
    }
}

#[test]
fn mrt2_reports_its_buffer_as_latency_and_v1_none() {
    let p = tiny_mrt2_plugin();
    automate(&p.mrt_params().frames_ahead, 1.0);
    let mut p = p;
    p.start(44_100.0, ProcessMode::Realtime);
    p.mrt_params().saved.update(|s| s.settings.family = mrt::stream::Family::Mrt2);
    wait_for("the MRT2 model", || p.shared().status() == Status::Ready, &p);
    assert_eq!(p.mrt_params().frames_ahead.value(), mrt_live::params::FRAMES_AHEAD_MAX);
    assert_eq!(p.latency_samples(), (24.0f64 * 0.04 * 44_100.0).round() as u32, "24 frames at 44.1 kHz");
    p.mrt_params().saved.update(|s| s.settings.family = mrt::stream::Family::V1);
    wait_for("the v1 model", || !p.shared().mrt2.load(Ordering::Acquire) && p.shared().status() == Status::Ready, &p);
    assert_eq!(p.latency_samples(), 0, "v1 reports no latency");
}

/// Control latency in realtime at the default buffer: from a note-on to the first audio sample
/// generated with it (the block whose frame carries the onset), with the worker a full buffer
/// ahead as it is on a machine faster than real time.
#[test]
fn mrt2_control_latency_at_the_default_buffer_is_the_buffer_plus_at_most_one_frame() {
    const FRAME: i64 = 1920;
    let mut p = tiny_mrt2_plugin();
    let buffer = p.mrt_params().frames_ahead.value() as u64;
    assert_eq!(buffer, mrt_live::params::FRAMES_AHEAD_DEFAULT as u64);
    p.start(48_000.0, ProcessMode::Realtime);
    let mut pos = 0;
    let small = [480usize, 333, 1000];
    play_blocks(&mut p, 48_000.0, 10 * FRAME as usize, &mut pos, &small);
    wait_for(
        "a full buffer",
        || p.shared().chunks_generated.load(Ordering::Acquire) >= p.shared().started_seq.load(Ordering::Acquire) + buffer,
        &p,
    );
    let note_at = pos;
    let (mut l, mut r) = (vec![0.0; 64], vec![0.0; 64]);
    let on = [mrt_live::midi::NoteIn { timing: 0, pitch: 60, on: true }];
    p.render_notes(&mut l, &mut r, None, true, Some(pos), &on);
    pos += 64;
    play_blocks(&mut p, 48_000.0, 12 * FRAME as usize, &mut pos, &small);
    let log = p.shared().chunk_log();
    let first = log
        .iter()
        .find(|c| c.pianoroll.as_ref().is_some_and(|roll| roll[60] == 2))
        .expect("a frame carries the note's onset");
    // Block k plays from sample (k − 1)·FRAME of the stream (which starts at position 0).
    let heard_at = (first.seq as i64 - 1) * FRAME;
    let latency_ms = (heard_at - note_at) as f64 / 48.0;
    println!("note-on at sample {note_at}: onset in block {}, heard from sample {heard_at}: {latency_ms:.1} ms (buffer {buffer} frames = {} ms)", first.seq, buffer * 40);
    assert!(heard_at >= note_at, "the note was heard before it was played");
    assert!(latency_ms <= ((buffer + 1) * 40) as f64, "control latency {latency_ms:.1} ms exceeds the buffer plus one frame");
}
