//! The bundled `MRT Live.clap` playing MRT2 in a CLAP host: MIDI notes steer the music (a render
//! with notes differs from one without, which is itself reproducible), notes one sample before a
//! frame boundary are heard no earlier than the block decoding the frame there and one after no
//! earlier than the next (the exact piano roll per block is `plugin/tests/tiny_model.rs`), block
//! sizes 1–8192 at 44.1/48/96 kHz with notes give identical renders, and the state round trip
//! keeps the family and continues the MRT2 context bit-exactly.
//!
//! Everything runs on the tiny MRT2 model (the M1 fixture's random weights) that `mrt dev
//! tiny-model` writes beside the tiny v1 model. The debug bundle is built with
//! `assert_process_allocs`: an allocation inside `process()` (notes included) aborts the binary.

use mrt_host_tests::*;
use serde_json::{json, Value};

const PROMPT: &str = "warm ambient piano";
const SEED: i64 = 4242;
/// One MRT2 frame at 48 kHz (40 ms).
const FRAME: usize = 1920;
const RATE: f64 = 48_000.0;
/// Below this a stretch counts as silent (as in `clap_host.rs`).
const AUDIBLE_RMS: f64 = 1e-3;

/// An instance playing the tiny MRT2 model with a prompt and a fixed seed. Every pitch is sent
/// explicitly (unmask width 127): on M1's random weights one conditioning channel alone rarely
/// flips a sampled token (engine/NOTES.md, "MRT2 streaming system and CLI").
fn mrt2_plugin() -> Plugin {
    let mut p = Plugin::new();
    p.configure(
        |s| {
            s["settings"]["family"] = json!("mrt2");
            s["prompts"][0] = json!(PROMPT);
        },
        &[("seed", json!({ "i32": SEED })), ("unmask_width", json!({ "i32": 127 }))],
    );
    p
}

fn field(state: &Value) -> Value {
    let text = state["fields"][STATE_FIELD].as_str().unwrap_or_else(|| panic!("no {STATE_FIELD} field in {state}"));
    serde_json::from_str(text).expect("the field holds JSON")
}

fn assert_finite(r: &Rendered, what: &str) {
    for (ch, x) in [("left", &r.left), ("right", &r.right)] {
        if let Some(i) = x.iter().position(|v| !v.is_finite()) {
            panic!("{what}: {ch} sample {i} is {} (NaN = left unwritten by the plugin)", x[i]);
        }
    }
}

/// Wide clusters (two octaves each, so that many piano-roll channels change at once): one held
/// from sample 0 over blocks 1–8, another from block 11.
fn clusters() -> Vec<NoteChange> {
    let mut v = Vec::new();
    for (start, end, keys) in [(0, 8 * FRAME, 48u8..72), (10 * FRAME, 20 * FRAME, 60..84)] {
        for k in keys {
            v.push(NoteChange { at: start, key: k, on: true });
            v.push(NoteChange { at: end, key: k, on: false });
        }
    }
    v
}

#[test]
fn midi_notes_change_what_mrt2_plays() {
    let _x = exclusive();
    let frames = 24;
    let mut p = mrt2_plugin();
    let mut quiet = RenderSpec::offline(RATE, frames * FRAME);
    quiet.blocks = vec![512, 333, 1024];
    let a = p.render(&quiet);
    let b = p.render(&quiet);
    let mut noted = quiet.clone();
    noted.notes = clusters();
    let c = p.render(&noted);
    for (r, what) in [(&a, "no notes"), (&b, "no notes again"), (&c, "with notes")] {
        assert_finite(r, what);
        assert_eq!(r.len(), frames * FRAME, "{what}: length");
        // Block 1 of an MRT2 stream is silent: a block's audio decodes the frame before it.
        let heard = &r.left[FRAME..];
        assert!(rms(heard) > AUDIBLE_RMS, "{what}: MRT2 render is (nearly) silent: RMS {}", rms(heard));
    }
    let field = field(&p.save_state());
    assert_eq!(field["settings"]["family"], json!("mrt2"));
    assert_eq!(field["context"]["family"], json!("mrt2"), "the saved context is an MRT2 stream");
    assert_eq!(first_difference(&a.left, &b.left), None, "two offline renders without notes are identical");
    // The notes at sample 0 steer block 1's frame, whose audio is block 2 (from sample FRAME).
    // How soon a token flips is up to the weights: M1's random ones took 6 frames (block 7).
    let first = first_difference(&a.left, &c.left).expect("notes must change the audio");
    let rel = rms_diff(&a.left, &c.left) / rms(&a.left).max(rms(&c.left));
    println!("notes vs none: first difference at sample {first} (block {}), relative RMS difference {rel:.3}", first / FRAME + 1);
    assert!(first >= FRAME, "audio differs at sample {first}, before the first note could be heard (block 2)");
    assert!(rel > 0.1, "notes barely change the audio: relative RMS difference {rel}");
}

#[test]
fn a_note_one_sample_before_a_frame_boundary_steers_that_frame_one_after_the_next() {
    let _x = exclusive();
    let frames = 24;
    // Block k starts at (k−1)·FRAME. A cluster held from one sample before block 6 starts (or
    // from its first sample) steers block 6, so it may be heard from block 7 (a block's audio
    // decodes the frame before it); held from one sample after, it steers block 7 and may be heard
    // from block 8 only. Against a render without notes, the earliest difference bounds when the
    // notes took effect. (How soon M1's random weights react is theirs: held notes flip a token
    // within a few frames, a frame or two of difference may not, so the three renders are each
    // compared with silence of notes rather than with each other.)
    let boundary = 5 * FRAME;
    let render = |start: Option<usize>| {
        let mut p = mrt2_plugin();
        let mut spec = RenderSpec::offline(RATE, frames * FRAME);
        spec.blocks = vec![256, 1000];
        if let Some(at) = start {
            spec.notes = (48u8..72).map(|key| NoteChange { at, key, on: true }).collect();
        }
        let r = p.render(&spec);
        assert_finite(&r, "note render");
        r
    };
    let none = render(None);
    let before = render(Some(boundary - 1));
    let at_boundary = render(Some(boundary));
    let after = render(Some(boundary + 1));
    assert_eq!(first_difference(&before.left, &at_boundary.left), None, "notes at a boundary − 1 and at it steer the same block");
    let b = first_difference(&none.left, &before.left).expect("the held cluster (before) must change the audio");
    let a = first_difference(&none.left, &after.left).expect("the held cluster (after) must change the audio");
    println!("first difference from no notes: held from boundary − 1 at sample {b} (block {}), from boundary + 1 at {a} (block {})", b / FRAME + 1, a / FRAME + 1);
    assert!(b >= 6 * FRAME, "notes from 5·FRAME − 1 heard at sample {b}, before block 7 (the audio of block 6's frame)");
    assert!(a >= 7 * FRAME, "notes from 5·FRAME + 1 heard at sample {a}, before block 8: they steered block 6 instead of 7");
}

#[test]
fn mrt2_state_round_trips_and_a_restored_context_continues() {
    let _x = exclusive();
    let mut p1 = mrt2_plugin();
    let s1 = p1.save_state();
    let f1 = field(&s1);
    assert_eq!(f1["version"], json!(4));
    assert_eq!(f1["settings"]["family"], json!("mrt2"));
    assert_eq!(s1["params"]["unmask_width"], json!({ "i32": 127 }));

    // Five frames offline: the state now carries the MRT2 context after frame 5.
    let first = p1.render(&RenderSpec::offline(RATE, 4 * FRAME + FRAME / 2));
    let s2 = p1.save_state();
    let ctx = field(&s2)["context"].clone();
    assert_eq!(ctx["family"], json!("mrt2"), "an MRT2 context: {ctx:.200}");
    let mut p2 = Plugin::new();
    p2.load_state_bytes(&p1.save_state_bytes());
    let s3 = p2.save_state();
    assert_eq!(s2["params"], s3["params"], "parameters after the round trip");
    assert_eq!(field(&s2), field(&s3), "the state field after the round trip");

    // The reference stream from a fresh context.
    let mut p3 = mrt2_plugin();
    let reference = p3.render(&RenderSpec::offline(RATE, 12 * FRAME));
    assert_eq!(first_difference(&first.left, &reference.left[..first.len()]), None, "same settings: same offline audio");

    // The restored instance, playing live, continues the context: its first block is block 6
    // of the reference (after its 10 ms fade-in).
    let mut spec = RenderSpec::offline(RATE, 2 * FRAME);
    spec.realtime = Some(Realtime { speed: 1.0 });
    spec.start_pos = 5 * FRAME as i64;
    let live = p2.render(&spec);
    assert_finite(&live, "restored instance");
    let heard = &live.left[live.lead_in..];
    assert!(rms(heard) > AUDIBLE_RMS, "the restored instance is silent (RMS {})", rms(heard));
    let fade = (RATE * 0.010) as usize;
    let want = &reference.left[5 * FRAME..];
    let n = heard.len().min(want.len());
    assert!(n > FRAME, "too little audio to compare: {n} samples");
    if let Some(i) = first_difference(&heard[fade..n], &want[fade..n]) {
        let i = i + fade;
        panic!("the restored MRT2 instance does not continue the saved context: sample {i} is {} where the reference has {}", heard[i], want[i]);
    }
}

#[test]
fn mrt2_block_size_and_notes_in_odd_blocks_do_not_change_the_offline_render() {
    let _x = exclusive();
    for rate in [44_100.0, 48_000.0, 96_000.0] {
        let frame = (rate * 0.040) as usize;
        let mut p = mrt2_plugin();
        let mut spec = RenderSpec::offline(rate, 16 * frame);
        spec.notes = (0..8)
            .flat_map(|k| {
                let at = k * 2 * frame + 7 * k;
                [NoteChange { at, key: 50 + k as u8, on: true }, NoteChange { at: at + frame, key: 50 + k as u8, on: false }]
            })
            .collect();
        let plain = p.render(&spec);
        spec.blocks = vec![1, 7, 8192, 333, 4097, 2, 511];
        let odd = p.render(&spec);
        assert_finite(&odd, "odd blocks");
        assert_eq!(plain.len(), odd.len(), "{rate} Hz: length");
        assert!(rms(&plain.left[2 * frame..]) > AUDIBLE_RMS, "{rate} Hz: silent render");
        assert_eq!(first_difference(&plain.left, &odd.left), None, "{rate} Hz: left differs between block sizes");
        assert_eq!(first_difference(&plain.right, &odd.right), None, "{rate} Hz: right differs between block sizes");
    }
}

#[test]
fn mrt2_reports_its_buffer_as_latency_at_every_rate() {
    let _x = exclusive();
    let mut p = mrt2_plugin();
    let r = p.render(&RenderSpec::offline(RATE, 4 * FRAME));
    assert_eq!(r.latency, Some(5 * FRAME as u32), "the default buffer (5 frames, 200 ms) at 48 kHz");
    p.configure(|_| {}, &[("frames_ahead", json!({ "i32": 12 }))]);
    for (rate, want) in [(44_100.0, 21_168u32), (96_000.0, 46_080)] {
        let r = p.render(&RenderSpec::offline(rate, 4 * FRAME));
        assert_eq!(r.latency, Some(want), "12 frames (480 ms) at {rate} Hz");
    }
    // v1 reports none.
    p.configure(|s| s["settings"]["family"] = json!("v1"), &[]);
    let r = p.render(&RenderSpec::offline(RATE, 4 * FRAME));
    assert_eq!(r.latency, Some(0), "v1 reports no latency");
}

#[test]
fn mrt2_follows_the_host_transport_stops_resumes_and_restarts_from_the_start() {
    let _x = exclusive();
    let render = |transport: Vec<TransportChange>, frames: usize| {
        let mut p = mrt2_plugin();
        let mut spec = RenderSpec::offline(RATE, frames * FRAME);
        spec.blocks = vec![480, 1000, 77];
        spec.transport = transport;
        let r = p.render(&spec);
        assert_finite(&r, "transport render");
        r
    };
    let plain = render(Vec::new(), 20);
    let at = |frame: usize, pos_frames: usize, playing: bool| TransportChange { at: frame * FRAME, pos: (pos_frames * FRAME) as i64, playing };
    // Stop after 6 frames for 2, then play from the start again: a fresh stream, identical to
    // the first 12 frames of a plain render (fixed seed, offline).
    let restart = render(vec![at(0, 0, true), at(6, 6, false), at(8, 0, true)], 20);
    assert_eq!(first_difference(&plain.left[..6 * FRAME], &restart.left[..6 * FRAME]), None, "before the stop");
    let fade = 480; // the player's 10 ms fade at 48 kHz
    let stopped = &restart.left[6 * FRAME + fade..8 * FRAME];
    assert!(stopped.iter().all(|&v| v == 0.0), "silent while stopped (after the fade)");
    assert_eq!(first_difference(&plain.left[..12 * FRAME], &restart.left[8 * FRAME..20 * FRAME]), None, "a restart from the start replays the stream from its beginning");
    // Stop and resume where it stopped: the stream goes on (no reset).
    let resume = render(vec![at(0, 0, true), at(6, 6, false), at(8, 6, true)], 20);
    assert!(rms(&resume.left[8 * FRAME..]) > AUDIBLE_RMS, "audible after resuming");
    let replayed = first_difference(&plain.left[..12 * FRAME], &resume.left[8 * FRAME..20 * FRAME]);
    assert!(replayed.is_some(), "a resume continues the stream instead of restarting it");
}

#[test]
fn a_slot_weight_automation_reaches_mrt2_at_the_next_frame() {
    let _x = exclusive();
    let frames = 16;
    let render = |automate: bool| {
        let mut p = mrt2_plugin();
        p.configure(|s| s["prompts"][1] = json!("fast techno drums"), &[]);
        let mut spec = RenderSpec::offline(RATE, frames * FRAME);
        spec.blocks = vec![700, 333];
        if automate {
            let (slot1, slot2) = (p.param("Slot 1 Weight").id, p.param("Slot 2 Weight").id);
            // At the first sample of block 7: slot 1 off, slot 2 on.
            spec.events = vec![ParamChange { at: 6 * FRAME, id: slot1, value: 0.0 }, ParamChange { at: 6 * FRAME, id: slot2, value: 1.0 }];
        }
        let r = p.render(&spec);
        assert_finite(&r, "automation render");
        r
    };
    let (plain, moved) = (render(false), render(true));
    let first = first_difference(&plain.left, &moved.left).expect("the automation must change the audio");
    println!("slot weights moved at sample {}: first difference at sample {first} (block {})", 6 * FRAME, first / FRAME + 1);
    // Block 7's frame is the first with the new style. Block 7's audio is frame 6 decoded with
    // frame 7 as the codec's look-ahead, so the change may be heard from block 7 on, never before
    // it, and (offline, no buffer) within two frames.
    assert!(first >= 6 * FRAME, "the audio changed at sample {first}, before the automation at {}", 6 * FRAME);
    assert!(first < 8 * FRAME, "the new style took until sample {first} (block {}) to be heard", first / FRAME + 1);
}

/// The *Device* setting moves MRT2's LM decoder to the GPU kernels (wgpu; lavapipe in CI): the
/// plugin loads it there (the load log says so) and renders what the CPU renders, bit for bit
/// (the same tokens, and the codec decodes on the CPU either way).
#[test]
fn mrt2_on_the_gpu_kernels_renders_what_the_cpu_renders() {
    let _x = exclusive();
    let frames = 16;
    let spec = RenderSpec::offline(RATE, frames * FRAME);
    let cpu = mrt2_plugin().render(&spec);
    let mut p = Plugin::new();
    p.configure(
        |s| {
            s["settings"]["family"] = json!("mrt2");
            s["settings"]["device"] = json!("wgpu");
            s["prompts"][0] = json!(PROMPT);
        },
        &[("seed", json!({ "i32": SEED })), ("unmask_width", json!({ "i32": 127 }))],
    );
    let gpu = p.render(&spec);
    for (r, what) in [(&cpu, "cpu"), (&gpu, "wgpu")] {
        assert_finite(r, what);
        assert_eq!(r.len(), frames * FRAME, "{what}: length");
        assert!(rms(&r.left[FRAME..]) > AUDIBLE_RMS, "{what} is silent");
    }
    let log = std::fs::read_to_string(&setup().load_log).unwrap_or_default();
    assert!(log.lines().any(|l| l.starts_with("loaded family=mrt2") && l.contains("device=wgpu")), "no MRT2 load on wgpu in the load log:\n{log}");
    assert_eq!(first_difference(&gpu.left, &cpu.left), None, "left: the GPU kernels play the CPU's audio");
    assert_eq!(first_difference(&gpu.right, &cpu.right), None, "right");
}
