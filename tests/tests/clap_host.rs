//! The bundled `MRT Live.clap` in a CLAP host (clack-host, `mrt_host_tests`): descriptor and
//! ports, offline rendering (non-silent, stops to exact silence), seamless chunk seams (offline
//! and realtime-paced), block-size invariance at 44.1/48/96 kHz, sample-accurate automation at a
//! chunk boundary, the sidechain as a style source, the state round trip with a generation
//! context, one model shared by two instances, and the editor under X11 (Xvfb).
//!
//! Everything runs on the tiny test model (noise, not music, but the real code paths). The debug
//! bundle is built with `assert_process_allocs`: an allocation inside `process()` aborts the
//! whole test binary.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use clack_extensions::gui::{GuiApiType, GuiConfiguration, Window as ClapWindow};
use mrt_host_tests::*;
use serde_json::{json, Value};

/// Prompts of the styled renders.
const PROMPT_1: &str = "warm ambient piano";
const PROMPT_2: &str = "fast techno drums";
const SEED: i64 = 4242;

/// An instance with two prompts (slot 1 at its default weight 1, slot 2 at 0) and a fixed seed.
fn styled_plugin() -> Plugin {
    let mut p = Plugin::new();
    p.configure(
        |s| {
            s["prompts"][0] = json!(PROMPT_1);
            s["prompts"][1] = json!(PROMPT_2);
        },
        &[("seed", json!({ "i32": SEED }))],
    );
    p
}

fn assert_finite(r: &Rendered, what: &str) {
    for (ch, x) in [("left", &r.left), ("right", &r.right)] {
        if let Some(i) = x.iter().position(|v| !v.is_finite()) {
            panic!("{what}: {ch} sample {i} is {} (NaN = left unwritten by the plugin)", x[i]);
        }
    }
}

/// Every 10 ms window of `x[from..to]` carries signal (an offline render never runs dry).
fn assert_no_silent_window(x: &[f32], from: usize, to: usize, rate: f64, what: &str) {
    let w = (rate * 0.010).round() as usize;
    let mut start = from;
    while start + w <= to {
        let win = &x[start..start + w];
        assert!(win.iter().any(|&v| v != 0.0), "{what}: silent 10 ms window at frame {start} ({:.3} s)", start as f64 / rate);
        start += w;
    }
}

/// Relative RMS difference of two equally long stretches.
fn rel_diff(a: &[f32], b: &[f32]) -> f64 {
    rms_diff(a, b) / rms(a).max(rms(b)).max(1e-12)
}

/// Below this a rendered chunk counts as silent. The tiny model's noise sits far above it (the
/// renders print their RMS); −60 dBFS is what a broken or muted path would fall under.
const AUDIBLE_RMS: f64 = 1e-3;

/// Two renders of different style count as different when their chunks differ by this much in
/// relative RMS: unrelated signals give ≈1.4; the same chunk, bit-exact, gives 0.
const DIFFERENT: f64 = 0.1;

#[test]
fn descriptor_and_audio_ports() {
    let _x = exclusive();
    let env = setup();
    let factory = env.entry.get_plugin_factory().expect("the entry has a plugin factory");
    let descriptors: Vec<_> = factory.plugin_descriptors().collect();
    assert_eq!(descriptors.len(), 1, "one plugin in the bundle");
    let d = descriptors[0];
    assert_eq!(d.id(), Some(PLUGIN_ID), "CLAP id");
    assert_eq!(d.name().map(|n| n.to_string_lossy().to_string()).as_deref(), Some("MRT Live"), "name");
    let features: Vec<String> = d.features().map(|f| f.to_string_lossy().to_string()).collect();
    assert!(features.iter().any(|f| f == "instrument"), "instrument feature missing: {features:?}");
    assert!(features.iter().any(|f| f == "stereo"), "stereo feature missing: {features:?}");

    let mut p = Plugin::new();
    let (inputs, outputs) = p.audio_ports();
    assert_eq!(outputs, vec![Port::new("Output", 2, true)], "one stereo main output");
    assert_eq!(inputs, vec![Port::new("Sidechain", 2, false)], "one stereo input, the sidechain (not a main input)");

    let names: Vec<&str> = p.params().iter().map(|p| p.name.as_str()).collect();
    let mut expected: Vec<String> = (1..=8).map(|i| format!("Slot {i} Weight")).collect();
    expected.extend(
        [
            "Sidechain Weight",
            "Temperature",
            "Top-k",
            "Guidance",
            "Seed",
            "Output Gain",
            "Free Run",
            "Chunks Ahead",
            "Prompt Adherence",
            "Note Adherence",
            "Drum Adherence",
            "Drum Mode",
            "Onset Mode",
            "Unmask Width",
            "MIDI Gate",
            "MRT2 Buffer",
            "Render Mode",
            "Style Levels",
        ]
        .map(String::from),
    );
    assert_eq!(names, expected, "parameter names, in order");
    let slot1 = p.param("Slot 1 Weight");
    assert_eq!((slot1.min, slot1.max, slot1.default), (0.0, 1.0, 1.0), "slot weights are 0..1, slot 1 on by default");
    assert_eq!(p.param_value(p.param("Slot 2 Weight").id), Some(0.0));
    println!("descriptor: id {PLUGIN_ID:?}, features {features:?}; inputs {inputs:?}; outputs {outputs:?}");
}

#[test]
fn offline_render_plays_and_stops_to_silence() {
    let _x = exclusive();
    let rate = 48_000.0;
    let chunk = chunk_frames(rate);
    let mut p = styled_plugin();
    let mut spec = RenderSpec::offline(rate, 3 * chunk + chunk / 2);
    spec.stop = chunk / 4;
    let started = Instant::now();
    let r = p.render(&spec);
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(r.len(), spec.play + spec.stop);
    assert_eq!(r.played, spec.play);
    assert_finite(&r, "offline render");
    let (l, rr) = (&r.left[..spec.play], &r.right[..spec.play]);
    println!(
        "offline 48 kHz: {:.1} s of audio in {secs:.1} s; RMS left {:.4}, right {:.4}; peak {:.3}",
        spec.play as f64 / rate,
        rms(l),
        rms(rr),
        l.iter().chain(rr).fold(0.0f32, |m, v| m.max(v.abs()))
    );
    let mut times = r.block_secs.clone();
    times.sort_by(f64::total_cmp);
    println!(
        "offline process(): median {:.3} ms, slowest {:.3} s (the blocks that wait for a chunk)",
        times[times.len() / 2] * 1e3,
        times[times.len() - 1]
    );
    assert!(rms(l) > AUDIBLE_RMS && rms(rr) > AUDIBLE_RMS, "offline render is (nearly) silent: RMS {} / {}", rms(l), rms(rr));
    for k in 0..spec.play / chunk {
        let c = &r.left[k * chunk..(k + 1) * chunk];
        assert!(rms(c) > AUDIBLE_RMS, "chunk {} is (nearly) silent: RMS {}", k + 1, rms(c));
    }
    let fade = (rate * 0.010) as usize;
    assert_no_silent_window(&r.left, fade, spec.play, rate, "offline render");

    // Stopped: the 10 ms fade plays the audio down, then exact zeros.
    let stop = spec.play;
    assert!(r.left[stop..stop + fade].iter().any(|&v| v != 0.0), "the stop fade should play the audio down, not cut it");
    for (ch, x) in [("left", &r.left), ("right", &r.right)] {
        if let Some(i) = x[stop + fade..].iter().position(|&v| v != 0.0) {
            panic!("{ch} output not exactly zero 10 ms after the transport stopped: sample {} after the stop is {}", fade + i, x[stop + fade + i]);
        }
    }
    let last_nonzero = (stop..r.len()).rev().find(|&i| r.left[i] != 0.0 || r.right[i] != 0.0).map_or(0, |i| i - stop + 1);
    println!("stopped: last non-zero sample {last_nonzero} samples ({:.2} ms) after the stop", last_nonzero as f64 / rate * 1e3);
}

/// Largest |x[i] − x[i−1]| at the seams and elsewhere.
fn seam_jumps(r: &Rendered, chunk: usize, from: usize) -> (Vec<f32>, f32) {
    let jump = |x: &[f32], i: usize| (x[i] - x[i - 1]).abs();
    let seams: Vec<usize> = (1..).map(|k| k * chunk).take_while(|&b| b < r.played).collect();
    let at_seams = seams.iter().map(|&b| jump(&r.left, b).max(jump(&r.right, b))).collect();
    let inside = (from + 1..r.played)
        .filter(|i| !seams.contains(i))
        .map(|i| jump(&r.left, i).max(jump(&r.right, i)))
        .fold(0.0f32, f32::max);
    (at_seams, inside)
}

#[test]
fn chunk_seams_are_smooth_offline_and_realtime() {
    let _x = exclusive();
    let rate = 48_000.0;
    let chunk = chunk_frames(rate);
    let fade = (rate * 0.010) as usize;
    let mut p = styled_plugin();
    let offline = p.render(&RenderSpec::offline(rate, 3 * chunk + chunk / 2));
    assert_finite(&offline, "offline render");
    let (seams, inside) = seam_jumps(&offline, chunk, fade);
    println!("offline seams at {:?} s: jumps {seams:?}; largest jump inside chunks {inside}", (1..=seams.len()).map(|k| k as f64 * CHUNK_SECONDS).collect::<Vec<_>>());
    assert_eq!(seams.len(), 3);
    for (k, j) in seams.iter().enumerate() {
        assert!(*j <= inside, "seam {} (frame {}): jump {j} exceeds every jump inside the chunks ({inside})", k + 1, (k + 1) * chunk);
        // No gap either: the milliseconds around the seam carry signal.
        let b = (k + 1) * chunk;
        for w in [b - 48, b] {
            assert!(offline.left[w..w + 48].iter().any(|&v| v != 0.0), "silent millisecond at the seam at frame {b}");
        }
    }

    // Realtime, paced like a live host: once the first chunk arrives the stream must be the
    // offline stream, sample for sample, across the seams (chunks ahead, no underrun fade).
    let mut spec = RenderSpec::offline(rate, 2 * chunk + chunk / 2);
    spec.realtime = Some(Realtime { speed: 1.0 });
    let mut q = styled_plugin();
    let started = Instant::now();
    let rt = q.render(&spec);
    assert_finite(&rt, "realtime render");
    let off_lead = offline.left.iter().zip(&offline.right).position(|(l, r)| *l != 0.0 || *r != 0.0).unwrap();
    assert!(rt.lead_in >= off_lead);
    let shift = rt.lead_in - off_lead;
    println!(
        "realtime 48 kHz: first audio after {:.3} s of playback ({} frames), {:.1} s wall",
        rt.lead_in as f64 / rate,
        rt.lead_in,
        started.elapsed().as_secs_f64()
    );
    // Realtime process() never waits for the worker: a wait for a chunk would take about a
    // chunk's generation time (~1 s here); scheduling hiccups on a busy machine stay far below.
    let slowest = rt.block_secs.iter().copied().fold(0.0, f64::max);
    println!("realtime process(): slowest call {:.2} ms (block of 512 = {:.2} ms)", slowest * 1e3, 512.0 / rate * 1e3);
    assert!(slowest < 0.25, "a realtime process() call took {slowest:.3} s: it must not wait for generation");
    let n = (rt.len() - shift).min(offline.len());
    assert!(n > 2 * chunk, "the realtime render must cover two seams ({n} frames compared)");
    if let Some(i) = first_difference(&rt.left[shift..shift + n], &offline.left[..n])
        .or_else(|| first_difference(&rt.right[shift..shift + n], &offline.right[..n]))
    {
        panic!(
            "realtime playback differs from the offline render at frame {i} of the stream (chunk {}, offset {}): {} vs {} \
             (an underrun fade or a dropped/repeated block at a seam)",
            i / chunk + 1,
            i % chunk,
            rt.left[shift + i],
            offline.left[i]
        );
    }
    println!("realtime stream == offline stream for {n} frames ({} seams)", n / chunk);
}

#[test]
fn block_size_does_not_change_the_offline_render() {
    let _x = exclusive();
    for rate in [48_000.0, 44_100.0, 96_000.0] {
        let chunk = chunk_frames(rate);
        let play = 2 * chunk + chunk / 2;
        let mut spec = RenderSpec::offline(rate, play);
        spec.blocks = vec![512];
        let mut p = styled_plugin();
        let t = Instant::now();
        let a = p.render(&spec);
        let ta = t.elapsed().as_secs_f64();
        spec.blocks = vec![1, 7, 333, 511, 8192, 4097, 64, 2, 1000, 3];
        let mut q = styled_plugin();
        let t = Instant::now();
        let b = q.render(&spec);
        let tb = t.elapsed().as_secs_f64();
        for (r, what) in [(&a, "512-frame blocks"), (&b, "odd blocks")] {
            assert_eq!(r.len(), play, "{rate} Hz, {what}: rendered length");
            assert_finite(r, &format!("{rate} Hz, {what}"));
            assert!(rms(&r.left) > AUDIBLE_RMS && rms(&r.right) > AUDIBLE_RMS, "{rate} Hz, {what}: silent (RMS {})", rms(&r.left));
            assert_no_silent_window(&r.left, (rate * 0.010) as usize, play, rate, &format!("{rate} Hz, {what}"));
        }
        println!(
            "{rate} Hz: {} blocks of 512 ({ta:.1} s) vs {} odd blocks ({tb:.1} s); RMS {:.4}",
            a.blocks.len(),
            b.blocks.len(),
            rms(&a.left)
        );
        if let Some(i) = first_difference(&a.left, &b.left).or_else(|| first_difference(&a.right, &b.right)) {
            panic!(
                "{rate} Hz: the render depends on the block size: first difference at frame {i} (chunk {}, offset {}): {} vs {}",
                i / chunk + 1,
                i % chunk,
                a.left[i],
                b.left[i]
            );
        }
    }
}

#[test]
fn slot_weight_automation_is_sample_accurate_at_a_chunk_boundary() {
    let _x = exclusive();
    let rate = 48_000.0;
    let chunk = chunk_frames(rate);
    // The third chunk starts here. The style is read when a chunk is generated, and offline the
    // next chunk is generated exactly when the player reaches the boundary, so an event one frame
    // before it reaches chunk 3 and an event one frame after it reaches chunk 4 only.
    let boundary = 2 * chunk;
    let play = 4 * chunk + chunk / 2;
    // 700-frame blocks: the block holding the boundary spans it (the event is inside a block).
    let block = 700;
    let span = (boundary / block * block, boundary / block * block + block);
    assert!(span.0 < boundary - 1 && boundary + 1 < span.1, "the block {span:?} must span the boundary ±1");

    let render = |event_at: Option<usize>| {
        let mut p = styled_plugin();
        let slot2 = p.param("Slot 2 Weight");
        let mut spec = RenderSpec::offline(rate, play);
        spec.blocks = vec![block];
        spec.events = event_at.map(|at| ParamChange { at, id: slot2.id, value: slot2.max }).into_iter().collect();
        let r = p.render(&spec);
        assert_finite(&r, "automation render");
        if let Some(at) = event_at {
            let (start, len) = *r.blocks.iter().find(|(s, n)| at >= *s && at < s + n).unwrap();
            assert!(start < boundary && boundary < start + len, "the event's block {start}+{len} must span the boundary");
            let value = p.param_value(slot2.id);
            assert_eq!(value, Some(slot2.max), "Slot 2 Weight after the render");
        }
        r
    };
    let a = render(None);
    let b = render(Some(boundary - 1));
    let c = render(Some(boundary + 1));

    let d_ab = first_difference(&a.left, &b.left);
    let d_ac = first_difference(&a.left, &c.left);
    let rel = |x: &Rendered, y: &Rendered, k: usize| rel_diff(&x.left[k * chunk..(k + 1) * chunk], &y.left[k * chunk..(k + 1) * chunk]);
    println!(
        "automation: event at boundary−1: first difference at frame {d_ab:?} (boundary {boundary}); chunk 3 rel. diff {:.3}",
        rel(&a, &b, 2)
    );
    println!(
        "automation: event at boundary+1: first difference at frame {d_ac:?} (chunk 4 starts at {}); chunk 3 rel. diff {:.3}, chunk 4 {:.3}",
        boundary + chunk,
        rel(&a, &c, 2),
        rel(&a, &c, 3)
    );
    // B: identical before the boundary, different in the chunk that starts there.
    assert_eq!(first_difference(&a.left[..boundary], &b.left[..boundary]), None, "event at boundary−1 changed audio before the boundary");
    assert_eq!(first_difference(&a.right[..boundary], &b.right[..boundary]), None);
    let d = d_ab.expect("event at boundary−1: the render did not change at all");
    assert!(d < boundary + chunk, "event at boundary−1: first change at frame {d}, after the chunk starting at the boundary ({boundary})");
    assert!(rel(&a, &b, 2) > DIFFERENT, "event at boundary−1: chunk 3 barely changed ({})", rel(&a, &b, 2));
    // C: chunk 3 untouched, different from chunk 4 on.
    let next = boundary + chunk;
    assert_eq!(first_difference(&a.left[..next], &c.left[..next]), None, "event at boundary+1 changed the chunk starting at the boundary");
    assert_eq!(first_difference(&a.right[..next], &c.right[..next]), None);
    let d = d_ac.expect("event at boundary+1: the render did not change at all");
    assert!(d < next + chunk, "event at boundary+1: first change at frame {d}, not in chunk 4 ({next}..)");
    assert!(rel(&a, &c, 3) > DIFFERENT, "event at boundary+1: chunk 4 barely changed ({})", rel(&a, &c, 3));
}

/// A loud chord (A major, 220/277/330 Hz) with a slow tremolo, 4 s, looped by the render.
fn chord(rate: f64) -> (Vec<f32>, Vec<f32>) {
    let n = (4.0 * rate) as usize;
    let tau = std::f64::consts::TAU;
    let l: Vec<f32> = (0..n)
        .map(|i| {
            let t = i as f64 / rate;
            let env = 0.6 + 0.4 * (tau * 2.0 * t).sin();
            (env * 0.25 * [220.0, 277.18, 329.63].iter().map(|f| (tau * f * t).sin()).sum::<f64>()) as f32
        })
        .collect();
    let r: Vec<f32> = l.iter().enumerate().map(|(i, v)| v * if (i / 4800) % 2 == 0 { 1.0 } else { 0.7 }).collect();
    (l, r)
}

#[test]
fn sidechain_audio_changes_the_style() {
    let _x = exclusive();
    let rate = 48_000.0;
    let chunk = chunk_frames(rate);
    let play = 3 * chunk + chunk / 2;
    let render = |sidechain: Sidechain| {
        // No prompts: the sidechain is the only style source (none at all when silent).
        let mut p = Plugin::new();
        p.configure(|_| {}, &[("sidechain_weight", json!({ "f32": 1.0 })), ("seed", json!({ "i32": SEED }))]);
        let mut spec = RenderSpec::offline(rate, play);
        spec.sidechain = sidechain;
        let r = p.render(&spec);
        assert_finite(&r, "sidechain render");
        assert!(rms(&r.left) > AUDIBLE_RMS, "sidechain render is silent");
        r
    };
    let (l, r) = chord(rate);
    let loud = render(Sidechain::Signal(l, r));
    let silent = render(Sidechain::Zeros);
    let constant = render(Sidechain::ConstantZeros);
    let no_port = render(Sidechain::NoPort);

    let rel = |x: &Rendered, y: &Rendered, k: usize| rel_diff(&x.left[k * chunk..(k + 1) * chunk], &y.left[k * chunk..(k + 1) * chunk]);
    println!(
        "sidechain: loud vs silent, relative RMS difference per chunk: {:?}",
        (0..play / chunk).map(|k| format!("{:.3}", rel(&loud, &silent, k))).collect::<Vec<_>>()
    );
    for (other, what) in [(&constant, "constant zeros"), (&no_port, "no sidechain port")] {
        if let Some(i) = first_difference(&silent.left, &other.left).or_else(|| first_difference(&silent.right, &other.right)) {
            panic!("a silent sidechain and {what} give different renders (first difference at frame {i})");
        }
    }
    // The first chunk is generated before much of the sidechain has arrived; from the second
    // chunk on the style comes from the chord.
    for k in 1..play / chunk {
        assert!(rel(&loud, &silent, k) > DIFFERENT, "chunk {}: a loud sidechain did not change the output (relative difference {})", k + 1, rel(&loud, &silent, k));
    }
}

fn field(state: &Value) -> Value {
    let text = state["fields"][STATE_FIELD].as_str().unwrap_or_else(|| panic!("no {STATE_FIELD} field in {state}"));
    serde_json::from_str(text).expect("the field holds JSON")
}

/// Same parameters and fields (the field compared as JSON and as text).
fn assert_same_state(a: &Value, b: &Value, what: &str) {
    assert_eq!(a["params"], b["params"], "{what}: parameters differ");
    assert_eq!(field(a), field(b), "{what}: the {STATE_FIELD} field differs");
    assert_eq!(a["fields"], b["fields"], "{what}: fields differ as text");
}

#[test]
fn state_round_trips_and_a_restored_context_continues() {
    let _x = exclusive();
    let rate = 48_000.0;
    let chunk = chunk_frames(rate);
    let mut p1 = Plugin::new();
    p1.configure(
        |s| {
            s["prompts"][0] = json!(PROMPT_1);
            s["prompts"][3] = json!(PROMPT_2);
        },
        &[
            ("seed", json!({ "i32": SEED })),
            ("temperature", json!({ "f32": 1.25 })),
            ("top_k", json!({ "i32": 50 })),
            ("slot4_weight", json!({ "f32": 0.5 })),
            ("chunks_ahead", json!({ "i32": 2 })),
        ],
    );
    let s1 = p1.save_state();
    let f1 = field(&s1);
    assert_eq!(s1["params"]["seed"], json!({ "i32": SEED }));
    assert_eq!(s1["params"]["temperature"], json!({ "f32": 1.25 }));
    assert_eq!(s1["params"]["slot4_weight"], json!({ "f32": 0.5 }));
    assert_eq!(f1["prompts"][0], json!(PROMPT_1));
    assert_eq!(f1["prompts"][3], json!(PROMPT_2));
    assert_eq!(f1["prompts"].as_array().map(Vec::len), Some(8));
    assert_eq!(f1["settings"]["size"], json!("tiny"));
    assert_eq!(f1["context"], Value::Null, "no context before anything was generated");
    // nice-plug reports an integer parameter as its f32 normalised value times the step count:
    // 4242 comes back as 4242.00017, which rounds to the seed.
    let seed = p1.param_value(p1.param("Seed").id).expect("params.get_value(Seed)");
    assert!((seed - SEED as f64).abs() < 0.01, "Seed reads back as {seed}");

    // A fresh instance restores it and saves the same state.
    let mut p2 = Plugin::new();
    p2.load_state_bytes(&p1.save_state_bytes());
    let s2 = p2.save_state();
    assert_same_state(&s1, &s2, "fresh instance after a load");
    for d in p1.params().to_vec() {
        assert_eq!(p1.param_value(d.id), p2.param_value(d.id), "parameter {:?} after the round trip", d.name);
    }
    assert!(p2.instance.access_handler(|h| h.rescans.get()) >= 1, "a state load tells the host to rescan parameter values");

    // Generate two chunks offline: the state now carries the context after chunk 2.
    let first = p1.render(&RenderSpec::offline(rate, chunk + chunk / 2));
    let s3 = p1.save_state();
    let ctx = field(&s3)["context"].clone();
    assert!(ctx.is_object(), "the state carries a generation context after rendering: {ctx:.200}");
    assert_eq!(ctx["chunk_index"], json!(2), "offline, chunk 2 is the last one generated");
    let mut p3 = Plugin::new();
    p3.load_state_bytes(&p1.save_state_bytes());
    assert_same_state(&s3, &p3.save_state(), "fresh instance after loading a state with a context");

    // The reference stream: the same settings from a fresh context, four chunks.
    let reference = p2.render(&RenderSpec::offline(rate, 4 * chunk));
    assert_eq!(first_difference(&first.left, &reference.left[..first.len()]), None, "two instances, same settings: same offline audio");

    // The restored instance, playing live from the middle of the song, continues the context:
    // its first chunk is chunk 3 of the reference stream (after its 10 ms fade-in).
    let mut spec = RenderSpec::offline(rate, chunk + chunk / 2);
    spec.realtime = Some(Realtime { speed: 1.0 });
    spec.start_pos = 2 * chunk as i64;
    let live = p3.render(&spec);
    assert_finite(&live, "restored instance");
    let heard = &live.left[live.lead_in..];
    println!(
        "restored instance: first audio after {:.3} s, RMS {:.4} over {} frames",
        live.lead_in as f64 / rate,
        rms(heard),
        heard.len()
    );
    assert!(rms(heard) > AUDIBLE_RMS, "the restored instance is silent (RMS {})", rms(heard));
    let fade = (rate * 0.010) as usize;
    let want = &reference.left[2 * chunk..];
    let n = heard.len().min(want.len());
    for i in 0..fade.min(n) {
        assert!(heard[i].abs() <= want[i].abs() + 1e-6, "fade-in sample {i}: {} louder than the reference {}", heard[i], want[i]);
    }
    if let Some(i) = first_difference(&heard[fade..n], &want[fade..n]) {
        let i = i + fade;
        panic!(
            "the restored instance does not continue the saved context: frame {i} after its first audio is {} where chunk 3 of \
             the reference has {}",
            heard[i], want[i]
        );
    }
}

#[test]
fn two_instances_share_one_model() {
    let _x = exclusive();
    let env = setup();
    let rate = 48_000.0;
    let chunk = chunk_frames(rate);
    // A model directory of its own, so the count below is not disturbed by the other tests'
    // instances (the registry frees a model when its last instance goes away).
    let dir = env.root.join("tiny-model-shared");
    write_tiny_model(&dir);
    let mut a = Plugin::new();
    let mut b = Plugin::new();
    for p in [&mut a, &mut b] {
        p.configure(|s| s["settings"]["model_dir"] = json!(dir.display().to_string()), &[("seed", json!({ "i32": SEED }))]);
    }
    let spec = RenderSpec::offline(rate, chunk + chunk / 4);
    let ra = a.render(&spec);
    let rb = b.render(&spec);
    for (r, what) in [(&ra, "instance A"), (&rb, "instance B")] {
        assert_finite(r, what);
        assert!(rms(&r.left) > AUDIBLE_RMS, "{what} is silent");
    }
    assert_eq!(first_difference(&ra.left, &rb.left), None, "both instances: same model, settings and seed, same audio");
    let log = std::fs::read_to_string(&env.load_log).unwrap_or_default();
    let tag = format!("model_dir={}", dir.display());
    let loads: Vec<&str> = log.lines().filter(|l| l.starts_with("loaded") && l.contains(&tag)).collect();
    println!("load log ({}):\n{log}", env.load_log.display());
    assert_eq!(loads.len(), 1, "two live instances must share one load of the model; the load log has {loads:?}");
    assert!(loads[0].contains("size=tiny"), "{}", loads[0]);
    drop((a, b));
}

/// The X11 side of the editor test (x11rb): a top-level parent window and its capture.
mod x11 {
    use x11rb::connection::Connection;
    use x11rb::protocol::xproto::{self, ConnectionExt, CreateWindowAux, ImageFormat, WindowClass};
    use x11rb::rust_connection::RustConnection;
    use x11rb::wrapper::ConnectionExt as _;

    pub struct Parent {
        pub conn: RustConnection,
        pub window: u32,
        pub width: u16,
        pub height: u16,
        screen: usize,
    }

    impl Parent {
        pub fn open(width: u16, height: u16) -> Self {
            let (conn, screen) = x11rb::connect(None).unwrap_or_else(|e| panic!("cannot connect to the X server $DISPLAY: {e}"));
            let s = &conn.setup().roots[screen];
            let window = conn.generate_id().unwrap();
            let aux = CreateWindowAux::new().background_pixel(s.black_pixel).event_mask(xproto::EventMask::STRUCTURE_NOTIFY);
            conn.create_window(s.root_depth, window, s.root, 0, 0, width, height, 0, WindowClass::INPUT_OUTPUT, s.root_visual, &aux)
                .unwrap();
            conn.change_property8(xproto::PropMode::REPLACE, window, xproto::AtomEnum::WM_NAME, xproto::AtomEnum::STRING, b"mrt-host-tests editor")
                .unwrap();
            conn.map_window(window).unwrap();
            conn.flush().unwrap();
            conn.sync().unwrap();
            Self { conn, window, width, height, screen }
        }

        /// The window's pixels as RGB (the children, i.e. the editor, included).
        pub fn capture(&self) -> Vec<u8> {
            let s = &self.conn.setup().roots[self.screen];
            let visual = s
                .allowed_depths
                .iter()
                .flat_map(|d| d.visuals.iter())
                .find(|v| v.visual_id == s.root_visual)
                .expect("root visual");
            let (rm, gm, bm) = (visual.red_mask, visual.green_mask, visual.blue_mask);
            let img = self
                .conn
                .get_image(ImageFormat::Z_PIXMAP, self.window, 0, 0, self.width, self.height, !0)
                .unwrap()
                .reply()
                .unwrap_or_else(|e| panic!("GetImage of the parent window failed: {e:?}"));
            let bpp = self
                .conn
                .setup()
                .pixmap_formats
                .iter()
                .find(|f| f.depth == img.depth)
                .map(|f| f.bits_per_pixel)
                .unwrap_or(32);
            assert_eq!(bpp, 32, "expected 32 bits per pixel for depth {}", img.depth);
            let stride = img.data.len() / self.height as usize;
            let channel = |p: u32, mask: u32| ((p & mask) >> mask.trailing_zeros()) as u8;
            let mut rgb = Vec::with_capacity(self.width as usize * self.height as usize * 3);
            for y in 0..self.height as usize {
                for x in 0..self.width as usize {
                    let o = y * stride + x * 4;
                    let p = u32::from_le_bytes(img.data[o..o + 4].try_into().unwrap());
                    rgb.extend_from_slice(&[channel(p, rm), channel(p, gm), channel(p, bm)]);
                }
            }
            rgb
        }

        /// Direct children of the window (the editor's baseview window).
        pub fn children(&self) -> Vec<u32> {
            self.conn.query_tree(self.window).unwrap().reply().unwrap().children
        }

        /// Whether `window` is mapped (and its ancestors too).
        pub fn is_viewable(&self, window: u32) -> bool {
            match self.conn.get_window_attributes(window).map(|c| c.reply()) {
                Ok(Ok(a)) => a.map_state == xproto::MapState::VIEWABLE,
                _ => false,
            }
        }

        pub fn close(self) {
            let _ = self.conn.destroy_window(self.window);
            let _ = self.conn.flush();
        }
    }
}

/// Pumps main-thread callbacks until `cond` holds (up to 2 s).
fn wait_until(p: &mut Plugin, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + Duration::from_secs(2);
    while Instant::now() < end {
        if cond() {
            return true;
        }
        p.pump_for(Duration::from_millis(20));
    }
    cond()
}

#[test]
fn editor_renders_under_x11() {
    let _x = exclusive();
    let display = std::env::var("DISPLAY").unwrap_or_default();
    assert!(
        !display.is_empty(),
        "the editor test needs an X server: DISPLAY is not set. Run the tests through ./test.sh (it starts Xvfb), \
         or start one yourself: `Xvfb :99 -screen 0 1280x1024x24 & export DISPLAY=:99`"
    );
    let mut p = styled_plugin();
    let gui = p.gui();
    let x11 = GuiConfiguration { api_type: GuiApiType::X11, is_floating: false };
    {
        let h = p.instance.plugin_handle();
        assert!(gui.is_api_supported(&h, x11), "the editor does not support embedded X11 windows");
        gui.create(&h, x11).expect("gui.create(x11, embedded) failed");
    }
    let size = gui.get_size(&p.instance.plugin_handle()).expect("gui.get_size failed");
    println!("editor size {}x{} (DISPLAY={display})", size.width, size.height);
    assert!(size.width >= 200 && size.height >= 200, "editor size {}x{} is implausible", size.width, size.height);
    let parent = x11::Parent::open(size.width as u16, size.height as u16);
    {
        let h = p.instance.plugin_handle();
        // SAFETY: the window exists until `parent.close()`, after the editor is destroyed.
        unsafe { gui.set_parent(&h, ClapWindow::from_x11_handle(parent.window as std::ffi::c_ulong)) }.expect("gui.set_parent failed");
        gui.show(&h).expect("gui.show failed");
    }
    // egui draws from the main-thread callbacks and its own repaint timer: give it time.
    let started = Instant::now();
    p.pump_for(Duration::from_millis(2500));
    let callbacks = p.host(|h| h.callbacks_requested.load(Ordering::Relaxed));
    let children = parent.children();
    let rgb = parent.capture();
    let mut colours: Vec<u32> = rgb.chunks(3).map(|c| u32::from_be_bytes([0, c[0], c[1], c[2]])).collect();
    colours.sort_unstable();
    colours.dedup();
    let path = target_dir().join("mrt-live-editor.png");
    {
        let file = std::fs::File::create(&path).unwrap_or_else(|e| panic!("creating {}: {e}", path.display()));
        let mut enc = png::Encoder::new(std::io::BufWriter::new(file), size.width, size.height);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        enc.write_header().unwrap().write_image_data(&rgb).unwrap();
    }
    println!(
        "editor: {} distinct colours after {:.1} s, {callbacks} main-thread callbacks asked for, child windows {children:?}; saved {}",
        colours.len(),
        started.elapsed().as_secs_f64(),
        path.display()
    );
    assert!(!children.is_empty(), "the editor did not embed a window into the parent");
    assert!(colours.len() >= 32, "the editor window looks blank: only {} distinct colours (see {})", colours.len(), path.display());

    // MRT2 chosen (a host restore): the editor adds MRT2's note and drum controls.
    p.configure(|s| s["settings"]["family"] = json!("mrt2"), &[]);
    p.pump_for(Duration::from_millis(1500));
    let rgb2 = parent.capture();
    let path2 = target_dir().join("mrt-live-editor-mrt2.png");
    {
        let file = std::fs::File::create(&path2).unwrap_or_else(|e| panic!("creating {}: {e}", path2.display()));
        let mut enc = png::Encoder::new(std::io::BufWriter::new(file), size.width, size.height);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        enc.write_header().unwrap().write_image_data(&rgb2).unwrap();
    }
    let changed = rgb.chunks(3).zip(rgb2.chunks(3)).filter(|(a, b)| a != b).count();
    println!("editor with MRT2: {changed} pixels changed; saved {}", path2.display());
    assert!(changed > 1000, "the editor looks the same with MRT2 chosen ({changed} pixels changed; see {})", path2.display());

    // Hide unmaps the editor window; destroy removes it from the parent.
    gui.hide(&p.instance.plugin_handle()).expect("gui.hide failed");
    let editor_window = children[0];
    let hidden = wait_until(&mut p, || !parent.is_viewable(editor_window));
    assert!(hidden, "the editor window is still mapped 2 s after gui.hide");
    gui.destroy(&p.instance.plugin_handle());
    let gone = wait_until(&mut p, || parent.children().is_empty());
    assert!(gone, "the editor window still exists 2 s after gui.destroy: {:?}", parent.children());
    parent.close();
}

/// A host that renders faster than real time without saying so (DawDreamer, pedalboard, an
/// Ardour export): in the default render mode the plugin sees it running ahead of the wall clock
/// within its first half second and waits for the audio from then on; in "bounce" mode it waits
/// from the first sample, and two such renders are identical.
#[test]
fn a_host_rendering_ahead_of_the_wall_clock_gets_audio_without_declaring_offline() {
    let _x = exclusive();
    let rate = 48_000.0;
    let chunk = chunk_frames(rate);
    let mut spec = RenderSpec::offline(rate, 4 * chunk);
    spec.says_offline = false;
    spec.blocks = vec![512];

    let mut p = styled_plugin();
    let started = Instant::now();
    let auto = p.render(&spec);
    println!("auto: 8 s rendered in {:.1} s", started.elapsed().as_secs_f64());
    assert_finite(&auto, "auto render");
    // Silent at most while the first half second shows the pace (plus one block).
    let window = (0.5 * rate) as usize + 512;
    let first_audio = auto.left.iter().position(|&v| v != 0.0).expect("the auto render is silent");
    println!("auto: first audio at {:.3} s", first_audio as f64 / rate);
    assert!(first_audio <= window, "auto: silent until {:.3} s", first_audio as f64 / rate);
    assert_no_silent_window(&auto.left, first_audio + (rate * 0.010) as usize, spec.play, rate, "auto render");
    for k in 0..4 {
        let c = &auto.left[k * chunk..(k + 1) * chunk];
        assert!(rms(c) > AUDIBLE_RMS, "auto: chunk {} is (nearly) silent: RMS {}", k + 1, rms(c));
    }

    let bounce = |p: &mut Plugin| {
        p.configure(|_| {}, &[("render_mode", json!({ "string": "bounce" }))]);
        let r = p.render(&spec);
        assert_finite(&r, "bounce render");
        r
    };
    let (a, b) = (bounce(&mut styled_plugin()), bounce(&mut styled_plugin()));
    assert_no_silent_window(&a.left, (rate * 0.010) as usize, spec.play, rate, "bounce render");
    assert_eq!(first_difference(&a.left, &b.left), None, "two bounces with the same seed are identical");
    assert_eq!(first_difference(&a.right, &b.right), None, "two bounces with the same seed are identical (right)");
}
