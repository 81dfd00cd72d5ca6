//! A seeded fuzz of the bundled `MRT Live.clap` through the CLAP host: random parameter changes
//! (every parameter, anywhere in its range, at any sample), transport stops, jumps and restarts,
//! MIDI bursts (up to 96 notes in one block, overlapping, on every key), block sizes from 1 to
//! 8192, 44.1/48/96 kHz, offline and realtime-paced renders, both model families. After every
//! render: every sample finite, and the state saves, loads and saves the same again.
//!
//! The bundle is built with `assert_process_allocs`, so an allocation in `process()` aborts the
//! test binary; a panic across the plugin boundary does too. The run is bounded by time
//! (`MRT_FUZZ_SECONDS`, default 25) and reproducible by seed (`MRT_FUZZ_SEED`; every failure
//! message names the seed and the iteration).

use std::time::{Duration, Instant};

use mrt_host_tests::*;
use serde_json::{json, Value};

/// SplitMix64: small, seedable, good enough to pick test inputs.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n`.
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len())]
    }
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok()).unwrap_or(default)
}

/// One random render of `frames` samples at `rate`.
fn random_spec(rng: &mut Rng, params: &[ParamDesc], rate: f64, realtime: bool) -> RenderSpec {
    let frames = (rate * (0.3 + 1.7 * rng.unit())) as usize;
    let mut spec = RenderSpec::offline(rate, frames);
    let sizes = [1usize, 7, 64, 333, 480, 512, 1024, 4097, 8192];
    spec.blocks = (0..1 + rng.below(4)).map(|_| rng.pick(&sizes)).collect();
    if realtime {
        // A little over real time, so the test stays short; blocks at most 1024 so the MRT2
        // frame ring is read the way hosts read it.
        spec.realtime = Some(Realtime { speed: 1.5 });
        // The models are loaded by the first renders (offline ones wait as long as it takes).
        spec.audio_timeout = Duration::from_secs(60);
        spec.blocks.iter_mut().for_each(|b| *b = (*b).min(1024));
    }
    // Parameter changes anywhere in their ranges. A realtime render first waits for audio: the
    // gate (silence without notes) and free run (whose off state with a stopped transport is
    // silent too) stay as they are there.
    for _ in 0..rng.below(24) {
        let p = params[rng.below(params.len())].clone();
        if realtime && (p.name == "MIDI Gate" || p.name == "Free Run") {
            continue;
        }
        let value = p.min + (p.max - p.min) * rng.unit();
        spec.events.push(ParamChange { at: rng.below(frames), id: p.id, value });
    }
    spec.events.sort_by_key(|e| e.at);
    // MIDI bursts: many notes in one block, some released within it, some never.
    for _ in 0..rng.below(4) {
        let at = rng.below(frames);
        for _ in 0..1 + rng.below(96) {
            let key = rng.below(128) as u8;
            spec.notes.push(NoteChange { at, key, on: true });
            if rng.below(3) > 0 {
                spec.notes.push(NoteChange { at: (at + rng.below(frames / 2 + 1)).min(frames - 1), key, on: false });
            }
        }
    }
    spec.notes.sort_by_key(|n| (n.at, n.on));
    // Transport: stops, jumps (back to the start, or anywhere) and restarts. Realtime renders
    // start playing.
    let mut at = 0usize;
    let mut first = true;
    while at < frames {
        let playing = (realtime && first) || rng.below(3) > 0;
        let pos = match rng.below(4) {
            0 => 0,
            _ => rng.below(20 * rate as usize) as i64,
        };
        spec.transport.push(TransportChange { at, pos, playing });
        first = false;
        at += 1 + rng.below(frames);
    }
    spec
}

fn json_of(bytes: &[u8]) -> Value {
    assert!(bytes.len() >= 8, "a state of {} bytes", bytes.len());
    serde_json::from_slice(&bytes[8..]).expect("the saved state is JSON")
}

/// The saved state split into comparable parts: every parameter, every persisted field's key
/// but the generation context, and the context.
fn state_parts(state: &Value) -> Vec<(String, Value)> {
    let mut parts: Vec<(String, Value)> =
        state["params"].as_object().expect("params").iter().map(|(k, v)| (format!("param {k}"), v.clone())).collect();
    let field = state["fields"][STATE_FIELD].as_str().expect("the persisted field");
    let field: Value = serde_json::from_str(field).expect("the persisted field is JSON");
    for (k, v) in field.as_object().expect("an object") {
        parts.push((if k == "context" { k.clone() } else { format!("field {k}") }, v.clone()));
    }
    parts
}

#[test]
fn seeded_fuzz_keeps_output_finite_state_loadable_and_process_allocation_free() {
    let _x = exclusive();
    let seed: u64 = env_or("MRT_FUZZ_SEED", 0x5EED_F022);
    let budget = Duration::from_secs(env_or("MRT_FUZZ_SECONDS", 25));
    let mut rng = Rng(seed);
    let mut p = Plugin::new();
    p.configure(|s| s["prompts"][0] = json!("warm ambient piano"), &[]);
    let params = p.params().to_vec();
    let start = Instant::now();
    let (mut iterations, mut samples, mut realtime_runs) = (0usize, 0usize, 0usize);
    // At least one realtime and one offline render of each family, then until the budget ends.
    while iterations < 4 || start.elapsed() < budget {
        let family = if iterations < 4 { ["mrt2", "v1"][iterations % 2] } else { rng.pick(&["mrt2", "v1"]) };
        let realtime = if iterations < 4 { iterations >= 2 } else { rng.below(4) == 0 };
        let what = format!("seed {seed:#x}, iteration {iterations} ({family}, {})", if realtime { "realtime" } else { "offline" });
        // A realtime render waits for its first audio: the MIDI gate (silent without notes) is
        // opened for it; offline renders may leave it anywhere.
        let gate: &[(&str, Value)] = if realtime { &[("midi_gate", json!({ "bool": false }))] } else { &[] };
        p.configure(|s| s["settings"]["family"] = json!(family), gate);
        let rate = rng.pick(&[44_100.0, 48_000.0, 96_000.0]);
        let spec = random_spec(&mut rng, &params, rate, realtime);
        // Shown when the test fails (libtest prints a failed test's output).
        let names: Vec<String> = spec
            .events
            .iter()
            .map(|e| format!("{}@{}={:.3}", params.iter().find(|p| p.id == e.id).map_or("?", |p| p.name.as_str()), e.at, e.value))
            .collect();
        println!("{what}: {rate} Hz, {} samples, blocks {:?}, {} notes, transport {:?}, params [{}]", spec.play, spec.blocks, spec.notes.len(), spec.transport, names.join(", "));
        let r = p.try_render(&spec).unwrap_or_else(|e| panic!("{what}: render failed: {e}"));
        for (ch, x) in [("left", &r.left), ("right", &r.right)] {
            if let Some(i) = x.iter().position(|v| !v.is_finite()) {
                panic!("{what}: {ch} sample {i} of {} is {}", x.len(), x[i]);
            }
        }
        // The state saves, loads, and saves the same again (but for the generation context: a
        // realtime worker may fill its buffer after the render ended, so the context may have
        // moved on; it must still be one the plugin reads back).
        let saved = p.save_state_bytes();
        p.load_state_bytes(&saved);
        let again = p.save_state_bytes();
        let (a, b) = (state_parts(&json_of(&saved)), state_parts(&json_of(&again)));
        for (key, va) in a.iter().filter(|(k, _)| k != "context") {
            let vb = &b.iter().find(|(k, _)| k == key).unwrap_or_else(|| panic!("{what}: {key} missing after a round trip")).1;
            assert!(va == vb, "{what}: {key} changed in a save → load → save");
        }
        let context = |parts: &[(String, Value)]| parts.iter().find(|(k, _)| k == "context").map(|(_, v)| v.clone());
        if let Some(c) = context(&b).filter(|c| !c.is_null()) {
            assert!(c.get("family").is_some(), "{what}: the saved context names its family");
        }
        iterations += 1;
        samples += r.len();
        realtime_runs += usize::from(realtime);
    }
    println!(
        "fuzz: seed {seed:#x}, {iterations} renders ({realtime_runs} realtime), {samples} samples in {:.1} s",
        start.elapsed().as_secs_f64()
    );
}
