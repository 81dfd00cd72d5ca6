#!/usr/bin/env python3
"""The bundled VST3 in third-party hosts: DawDreamer renders it with MIDI, sidechain audio and
automation (v1, and MRT2 with a MIDI note); pedalboard loads it and renders it.

Run by ./test.sh after `cargo xtask bundle`. Environment (set by test.sh):
  MRT_VST3_BUNDLE  path of "MRT Live.vst3"
  MRT_MODEL_DIR, MRT_MODEL_SIZE=tiny, MRT_DEVICE=flex, MRT_CACHE_DIR  the tiny test model

Every check raises on failure; the script exits non-zero and names the failed check.
The deterministic behaviour checks (offline bounces, automation reaching the next chunk's
style, sidechain style, seams, state) run in the CLAP host harness (tests/tests/clap_host.rs);
here the point is that third-party VST3 hosts load, drive and hear the plugin.
"""

import os
import sys
import time

import numpy as np

RATE = 48000
BLOCK = 512
CHUNK = 2 * RATE


def bundle() -> str:
    path = os.environ.get("MRT_VST3_BUNDLE", "")
    if not os.path.isdir(path):
        raise SystemExit(f"error: MRT_VST3_BUNDLE={path!r} is not a VST3 bundle (run `cargo xtask bundle mrt-live` first)")
    return path


def check(cond: bool, what: str) -> None:
    if not cond:
        raise AssertionError(what)
    print(f"  ok: {what}")


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x.astype(np.float64)))))


def param_index(proc, name: str) -> int:
    for i in range(proc.get_plugin_parameter_size()):
        if proc.get_parameter_name(i) == name:
            return i
    names = [proc.get_parameter_name(i) for i in range(proc.get_plugin_parameter_size())]
    raise AssertionError(f"parameter {name!r} not found among {names}")


def dawdreamer_session(sidechain: bool):
    """A DawDreamer engine with the plugin (and a noise sidechain source when asked)."""
    import dawdreamer as dd

    engine = dd.RenderEngine(RATE, BLOCK)
    synth = engine.make_plugin_processor("mrt", bundle())
    check(synth.get_num_output_channels() == 2, "DawDreamer: stereo output")
    # DawDreamer renders faster than real time but as a realtime host (VST3 processMode
    # kRealtime): the plugin plays what the worker has ready and silence meanwhile. Free Run keeps
    # the context across DawDreamer's renders, which each restart the transport at 0.
    synth.set_parameter(param_index(synth, "Free Run"), 1.0)
    graph = []
    if sidechain:
        check(synth.can_set_bus(2, 2), "DawDreamer: the sidechain bus can be enabled (2 in, 2 out)")
        synth.set_bus(2, 2)
        rng = np.random.default_rng(7)
        noise = (0.3 * rng.standard_normal((2, 30 * RATE))).astype(np.float32)
        graph.append((engine.make_playback_processor("sidechain", noise), []))
        graph.append((synth, ["sidechain"]))
        synth.set_parameter(param_index(synth, "Sidechain Weight"), 1.0)
    else:
        graph.append((synth, []))
    engine.load_graph(graph)
    return engine, synth


def render_until_audio(engine, synth, seconds: float, timeout: float = 240.0) -> np.ndarray:
    """Renders `seconds` at a time (with a held note and a Slot 2 Weight ramp as automation)
    until a render carries audio, sleeping between renders so the worker can generate."""
    n = int(seconds * RATE)
    ramp = np.linspace(0.0, 1.0, n, dtype=np.float32)
    slot2 = param_index(synth, "Slot 2 Weight")
    start = time.time()
    while True:
        synth.clear_midi()
        synth.add_midi_note(60, 100, 0.0, seconds)
        synth.set_automation(slot2, ramp)
        engine.render(seconds)
        audio = engine.get_audio()
        if audio.shape != (2, n):
            raise AssertionError(f"output shape {audio.shape}, expected {(2, n)}")
        if not np.all(np.isfinite(audio)):
            raise AssertionError("non-finite output")
        if rms(audio) > 1e-4:
            print(f"  audio after {time.time() - start:.1f} s of wall time")
            return audio
        if time.time() - start > timeout:
            raise AssertionError(f"no audio from the plugin within {timeout:.0f} s")
        time.sleep(0.5)


def test_dawdreamer() -> None:
    print("DawDreamer", __import__("dawdreamer").__version__)
    engine, synth = dawdreamer_session(sidechain=False)
    audio = render_until_audio(engine, synth, 0.5)
    check(bool(np.all(np.isfinite(audio))), "MIDI + automation: finite, non-silent output")
    # The plugin's own display of the value (DawDreamer's get_parameter returns its stored base value).
    shown = synth.get_parameter_text(param_index(synth, "Slot 2 Weight"))
    check(float(shown) > 0.9, f"the 0 → 1 automation reached the plugin's Slot 2 Weight (shows {shown})")

    engine, synth = dawdreamer_session(sidechain=True)
    audio = render_until_audio(engine, synth, 0.5)
    check(bool(np.all(np.isfinite(audio))), "MIDI + sidechain + automation: finite, non-silent output")


def test_dawdreamer_mrt2() -> None:
    """MRT2 (the tiny model, chosen for new instances by MRT_MODEL=mrt2) with a MIDI note."""
    import tempfile

    print("DawDreamer with MRT2")
    log = os.path.join(tempfile.mkdtemp(prefix="mrt-vst3-"), "loads.log")
    os.environ["MRT_MODEL"] = "mrt2"
    os.environ["MRT_LIVE_LOAD_LOG"] = log  # read by the plugin when its worker loads the model
    try:
        engine, synth = dawdreamer_session(sidechain=False)
        del os.environ["MRT_MODEL"]
        audio = render_until_audio(engine, synth, 0.5)
    finally:
        os.environ.pop("MRT_MODEL", None)
        os.environ.pop("MRT_LIVE_LOAD_LOG", None)
    check(bool(np.all(np.isfinite(audio))), "MRT2 + MIDI + automation: finite, non-silent output")
    loads = open(log).read() if os.path.exists(log) else ""
    check("family=mrt2" in loads, f"the plugin loaded the MRT2 model (load log: {loads.strip()!r})")
    for name in ["Prompt Adherence", "Note Adherence", "Drum Adherence", "Drum Mode", "Onset Mode", "Unmask Width", "MIDI Gate"]:
        param_index(synth, name)
    check(True, "MRT2's parameters are exposed")


def check_render_from_the_start(audio: np.ndarray, what: str, block_seconds: float) -> None:
    """An 8 s render by a host running ahead of the wall clock (without saying offline): audio
    from the first chunk or frame on. The plugin's auto render mode needs the first half second
    to see the pace, so the first block's audio may start up to then."""
    check(bool(np.all(np.isfinite(audio))), f"{what}: finite output")
    first = int(np.argmax(np.any(audio != 0.0, axis=0))) if np.any(audio != 0.0) else audio.shape[1]
    print(f"  {what}: first audio at {first / RATE:.3f} s, RMS {rms(audio):.4f}")
    check(first <= int(0.55 * RATE), f"{what}: audio from the first {'chunk' if block_seconds > 1 else 'frame'} on (first sample at {first / RATE:.3f} s)")
    hop = int(block_seconds * RATE)
    for k in range(audio.shape[1] // hop):
        seg = audio[:, k * hop:(k + 1) * hop]
        if (k + 1) * hop > first + int(0.1 * RATE):
            check(rms(seg) > 1e-3 or hop < RATE, f"{what}: block {k + 1} is audible (RMS {rms(seg):.4f})")
    tail = audio[:, first + int(0.1 * RATE):]
    windows = tail[:, : tail.shape[1] // 4800 * 4800].reshape(2, -1, 4800)
    silent = int(np.sum(np.all(windows == 0.0, axis=(0, 2))))
    check(silent == 0, f"{what}: no silent 100 ms window after the first audio ({silent} found)")


def test_dawdreamer_renders_8_s_ahead_of_the_clock() -> None:
    """DawDreamer renders as fast as it can while calling itself realtime; one 8 s render must
    carry audio from the first chunk on (v1) and from the first frames on (MRT2); in "bounce"
    render mode two renders are identical."""
    import dawdreamer as dd

    for family in ["v1", "mrt2"]:
        os.environ["MRT_MODEL"] = family
        try:
            engine = dd.RenderEngine(RATE, BLOCK)
            synth = engine.make_plugin_processor(f"mrt-{family}", bundle())
        finally:
            os.environ.pop("MRT_MODEL", None)
        synth.add_midi_note(60, 100, 0.0, 8.0)
        engine.load_graph([(synth, [])])
        engine.render(8.0)
        check_render_from_the_start(engine.get_audio(), f"DawDreamer {family} 8 s (render mode auto)", 2.0 if family == "v1" else 0.04)

    engine = dd.RenderEngine(RATE, BLOCK)
    synth = engine.make_plugin_processor("mrt-bounce", bundle())
    synth.set_parameter(param_index(synth, "Render Mode"), 1.0)  # auto | live | bounce
    check(synth.get_parameter_text(param_index(synth, "Render Mode")).lower().startswith("bounce"), "DawDreamer: render mode set to bounce")
    engine.load_graph([(synth, [])])
    engine.render(8.0)
    a = engine.get_audio()
    check_render_from_the_start(a, "DawDreamer v1 8 s (render mode bounce)", 2.0)
    check(bool(np.any(a[:, : int(0.1 * RATE)] != 0.0)), "DawDreamer bounce: audio from the first 100 ms")
    engine.render(8.0)  # the transport restarts at 0: a fresh stream with the same seed
    b = engine.get_audio()
    check(bool(np.array_equal(a, b)), "DawDreamer bounce: two 8 s renders are identical")


def test_pedalboard_renders_8_s_ahead_of_the_clock() -> None:
    import pedalboard

    plugin = pedalboard.load_plugin(bundle())
    notes = [(bytes([0x90, 60, 100]), 0.0), (bytes([0x80, 60, 0]), 7.5)]
    audio = plugin(notes, duration=8.0, sample_rate=RATE)
    check_render_from_the_start(audio, "pedalboard v1 8 s (render mode auto)", 2.0)


def test_pedalboard() -> None:
    import pedalboard

    print("pedalboard", pedalboard.__version__)
    plugin = pedalboard.load_plugin(bundle())
    check(plugin.is_instrument, "pedalboard: loads as an instrument")
    names = set(plugin.parameters.keys())
    for key in ("slot_1_weight", "sidechain_weight", "temperature", "top_k", "guidance", "seed"):
        check(key in names, f"pedalboard: parameter {key} is exposed")
    check(abs(float(plugin.temperature) - 1.1) < 1e-3, "pedalboard: temperature defaults to 1.1")
    seconds = 5.0
    notes = [(bytes([0x90, 60, 100]), 0.0), (bytes([0x80, 60, 0]), seconds - 0.5)]
    audio = plugin(notes, duration=seconds, sample_rate=RATE)
    check(audio.shape[0] == 2, f"pedalboard: stereo output {audio.shape}")
    check(bool(np.all(np.isfinite(audio))), "pedalboard: output is finite")


def main() -> int:
    tests = [
        test_dawdreamer,
        test_dawdreamer_mrt2,
        test_dawdreamer_renders_8_s_ahead_of_the_clock,
        test_pedalboard,
        test_pedalboard_renders_8_s_ahead_of_the_clock,
    ]
    failed = 0
    for t in tests:
        try:
            t()
            print(f"PASS {t.__name__}")
        except Exception as e:  # noqa: BLE001 - report every failure, then exit non-zero
            failed += 1
            print(f"FAIL {t.__name__}: {type(e).__name__}: {e}")
    print(f"vst3 hosts: {len(tests) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
