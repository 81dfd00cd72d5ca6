//! MRT Live: Magenta RealTime as a CLAP/VST3 instrument.
//!
//! ```text
//!  host ──process()──► ChunkPlayer (audio thread: no allocation, locks, logging or I/O)
//!                         ▲ triple buffer (finished chunks at the host rate, seq + epoch)
//!                         │ atomics (started chunk, reset epoch, offline wait, underruns)
//!  worker thread ─────────┘ registry-shared model → style → Generator::next_block → rubato
//!  sidechain ──rtrb──► worker (16 kHz, last 10 s) → style embedding
//!  MIDI notes ──player (block timeline)──rtrb──► worker → MRT2's note tracker → piano roll
//! ```
//!
//! - [`params`]: parameters with stable ids and the persisted state.
//! - [`player`]: the audio-thread chunk player and its fade/underrun envelope.
//! - [`worker`]: the generation thread; [`registry`]: one loaded model per process.
//! - [`midi`]: host notes onto the block timeline and into MRT2's piano roll.
//! - [`sidechain`], [`resample`]: the sidechain style path and streaming resampling.
//! - [`shared`]: status and counters shared by the threads and the editor.
//! - [`editor`]: the egui editor (slots, sidechain, sampling, model, status, download).

use std::num::NonZeroU32;
use std::sync::Arc;

use nice_plug::prelude::*;

pub mod editor;
pub mod midi;
pub mod params;
pub mod player;
pub mod registry;
pub mod resample;
pub mod shared;
pub mod sidechain;
pub mod worker;

pub use params::{MrtLiveParams, GAIN_MAX_DB, GAIN_MIN_DB, GAIN_SMOOTHING_MS, PARAM_IDS, SLOTS};
use player::BlockControl;
pub use shared::{Shared, Status};
use worker::{PlayerIo, WorkerHandle};

/// Port names shared by both audio layouts.
const PORT_NAMES: PortNames = PortNames {
    layout: None,
    main_input: None,
    main_output: Some("Output"),
    aux_inputs: &["Sidechain"],
    aux_outputs: &[],
};

/// The instrument. Created by the host through [`Default`]; construction is cheap (the worker
/// thread starts at the first activation).
pub struct MrtLive {
    params: Arc<MrtLiveParams>,
    shared: Arc<Shared>,
    editor_state: Arc<nice_plug_egui::EguiEditorState>,
    worker: Option<WorkerHandle>,
    io: Option<PlayerIo>,
    offline: bool,
    /// Offline: the first playing block starts a fresh context (deterministic bounces).
    offline_reset_pending: bool,
    was_playing: bool,
    last_pos: Option<i64>,
    /// Sample rate of the current plumbing (realtime activations at the same rate keep it).
    active_rate: Option<f32>,
    /// The note events of the block in `process()`, preallocated ([`midi::NOTES_PER_BLOCK`]).
    notes: Vec<midi::NoteIn>,
    /// The latency last reported to the host, in samples.
    latency: u32,
    /// Whether the host runs ahead of the wall clock (a bounce it does not call offline).
    pace: Pace,
    /// The host's transport played since the activation (a stop after that is a stop).
    transport_seen: bool,
}

/// Watches how fast the host calls `process()`: over windows of [`PACE_WINDOW`] seconds of audio,
/// the wall time the host itself took (the wall time between the window's calls minus the time
/// spent inside `render`, waits included). Under a quarter of the audio's duration, the host is
/// rendering faster than real time; over three quarters, it plays live. Two clock reads per
/// block; no allocation.
#[derive(Debug, Default)]
struct Pace {
    window_start: Option<std::time::Instant>,
    audio: f64,
    ours: f64,
    ahead: bool,
}

/// Seconds of audio per pacing window: long enough that a live host's pre-roll (a few blocks
/// processed back to back at start) does not look like a bounce.
const PACE_WINDOW: f64 = 0.5;

impl Pace {
    fn reset(&mut self) {
        *self = Self::default();
    }

    /// Accounts for a block of `seconds` of audio rendered from `start` to `end`.
    fn block(&mut self, start: std::time::Instant, end: std::time::Instant, seconds: f64) -> bool {
        let origin = *self.window_start.get_or_insert(start);
        self.audio += seconds;
        self.ours += end.saturating_duration_since(start).as_secs_f64();
        if self.audio >= PACE_WINDOW {
            let host = (end.saturating_duration_since(origin).as_secs_f64() - self.ours).max(0.0);
            if host < 0.25 * self.audio {
                self.ahead = true;
            } else if host > 0.75 * self.audio {
                self.ahead = false;
            }
            *self = Self { ahead: self.ahead, ..Self::default() };
        }
        self.ahead
    }
}

impl Default for MrtLive {
    fn default() -> Self {
        Self {
            params: Arc::new(MrtLiveParams::default()),
            shared: Arc::new(Shared::default()),
            editor_state: editor::default_state(),
            worker: None,
            io: None,
            offline: false,
            offline_reset_pending: false,
            was_playing: false,
            last_pos: None,
            active_rate: None,
            notes: Vec::with_capacity(midi::NOTES_PER_BLOCK),
            latency: 0,
            pace: Pace::default(),
            transport_seen: false,
        }
    }
}

impl MrtLive {
    /// The plugin's parameters, typed (the host-facing [`Plugin::params`] is type-erased).
    pub fn mrt_params(&self) -> &Arc<MrtLiveParams> {
        &self.params
    }

    /// Status, counters and the chunk log shared with the worker.
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Starts the worker (once) and gives it and the player fresh plumbing for this rate/mode.
    /// Public so that tests can drive the plugin without a host.
    pub fn start(&mut self, sample_rate: f32, process_mode: ProcessMode) {
        if self.worker.is_none() {
            match WorkerHandle::spawn(self.params.clone(), self.shared.clone()) {
                Ok(w) => {
                    self.worker = Some(w);
                    // A save asks the worker for its context first (MRT2 copies it lazily).
                    let shared = self.shared.clone();
                    self.params.saved.set_refresh(Box::new(move || shared.request_context(worker::CONTEXT_WAIT)));
                }
                Err(e) => {
                    self.shared.set_status(Status::Error, format!("cannot start the generation thread: {e}"));
                    self.io = None;
                    return;
                }
            }
        }
        // The wrapper also does this on activation; tests drive `start` without a wrapper.
        self.params.gain.smoothed.reset(self.params.gain.value());
        let offline = process_mode == ProcessMode::Offline;
        // Hosts that re-activate on every transport start (or around a render) at the same rate
        // keep what is generated and playing. Offline activations always start fresh, so every
        // bounce is complete and identical.
        if !offline && !self.offline && self.io.is_some() && self.active_rate == Some(sample_rate) {
            self.was_playing = false;
            self.last_pos = None;
            return;
        }
        self.active_rate = Some(sample_rate);
        self.offline = offline;
        self.pace.reset();
        self.transport_seen = false;
        self.offline_reset_pending = self.offline;
        let (player_io, worker_io) = worker::plumbing(sample_rate, self.offline, &self.shared);
        if let Some(w) = &self.worker {
            w.configure(worker_io);
        }
        self.io = Some(player_io);
        self.was_playing = false;
        self.last_pos = None;
    }

    /// The latency to report at the current rate: MRT2's buffer ([`params::latency_samples`]).
    /// Lock-free (the family as the worker or the last activation saw it).
    pub fn latency_samples(&self) -> u32 {
        let family = if self.shared.mrt2.load(std::sync::atomic::Ordering::Acquire) {
            mrt::stream::Family::Mrt2
        } else {
            mrt::stream::Family::V1
        };
        params::latency_samples(family, self.params.frames_ahead.value(), self.active_rate.unwrap_or(48_000.0))
    }

    /// The realtime part of `process()`, without the framework's buffer types: renders into
    /// `left`/`right` (same length), capturing `sidechain` (left, right) if connected.
    /// `transport_playing`/`pos_samples` come from the host transport.
    pub fn render(
        &mut self,
        left: &mut [f32],
        right: &mut [f32],
        sidechain: Option<(&[f32], &[f32])>,
        transport_playing: bool,
        pos_samples: Option<i64>,
    ) {
        self.render_notes(left, right, sidechain, transport_playing, pos_samples, &[]);
    }

    /// [`MrtLive::render`] with the block's note events, sorted by timing.
    pub fn render_notes(
        &mut self,
        left: &mut [f32],
        right: &mut [f32],
        sidechain: Option<(&[f32], &[f32])>,
        transport_playing: bool,
        pos_samples: Option<i64>,
        notes: &[midi::NoteIn],
    ) {
        let n = left.len().min(right.len());
        let Some(io) = self.io.as_mut() else {
            left.fill(0.0);
            right.fill(0.0);
            return;
        };
        match sidechain {
            Some((l, r)) => io.sidechain.capture(l, r),
            None => io.sidechain.idle(n),
        }
        let free_run = self.params.free_run.value();
        // A host rendering offline (said, or running ahead of the wall clock) whose transport has
        // not played since the activation is a batch render (pedalboard: offline, a stopped
        // transport): it plays. DAWs call a stopped plugin in real time, and a transport that
        // played and stopped is a stop.
        self.transport_seen |= transport_playing;
        let batch = !self.transport_seen
            && (self.offline || self.pace.ahead)
            && self.params.render_mode.value() != params::RenderMode::Live;
        let playing = free_run || transport_playing || batch;
        if !free_run && transport_playing {
            // A jump back to the start (or play from the start) begins a new context.
            let jumped = !self.was_playing || matches!((self.last_pos, pos_samples), (Some(a), Some(b)) if b < a);
            if jumped && pos_samples.is_some_and(|p| p <= 0) && io.player.started_in_epoch() {
                io.player.reset_context();
            }
        }
        if self.offline && self.offline_reset_pending && playing {
            self.offline_reset_pending = false;
            io.player.reset_context();
        }
        self.was_playing = transport_playing;
        self.last_pos = pos_samples;
        let gate = self.params.midi_gate.value();
        // Wait for the audio when the host renders offline (said, or seen running ahead).
        let wait = self.offline
            || match self.params.render_mode.value() {
                params::RenderMode::Bounce => true,
                params::RenderMode::Live => false,
                params::RenderMode::Auto => self.pace.ahead,
            };
        let t0 = std::time::Instant::now();
        io.player.render_notes(&mut left[..n], &mut right[..n], BlockControl { playing, offline: wait, gate }, notes);
        let rate = f64::from(self.active_rate.unwrap_or(48_000.0));
        self.pace.block(t0, std::time::Instant::now(), n as f64 / rate);
        for i in 0..n {
            let g = self.params.gain.smoothed.next();
            left[i] *= g;
            right[i] *= g;
        }
    }
}

impl Plugin for MrtLive {
    const NAME: &'static str = "MRT Live";
    const VENDOR: &'static str = "MRT Live";
    const URL: &'static str = "";
    const EMAIL: &'static str = "";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    // The first layout is the default: stereo out plus an optional stereo sidechain that can later
    // steer generation. The second is the same without the sidechain, for hosts that insist on
    // plain instrument layouts.
    const AUDIO_IO_LAYOUTS: &'static [AudioIOLayout] = &[
        AudioIOLayout {
            main_input_channels: None,
            main_output_channels: NonZeroU32::new(2),
            aux_input_ports: &[new_nonzero_u32(2)],
            aux_output_ports: &[],
            names: PORT_NAMES,
        },
        AudioIOLayout {
            main_input_channels: None,
            main_output_channels: NonZeroU32::new(2),
            aux_input_ports: &[],
            aux_output_ports: &[],
            names: PORT_NAMES,
        },
    ];

    // Note on/off steer MRT2 (the piano roll); v1 ignores them.
    const MIDI_INPUT: MidiConfig = MidiConfig::Basic;
    const MIDI_OUTPUT: MidiConfig = MidiConfig::None;
    // Parameter events split the block at their sample offset: a weight change lands in the
    // chunk that starts after it, to the sample (style is read when a chunk is generated).
    const SAMPLE_ACCURATE_AUTOMATION: bool = true;

    type Editor = nice_plug_egui::EguiEditor<editor::EditorApp>;
    type SysExMessage = ();
    type BackgroundTask = ();

    fn params(&self) -> Arc<dyn Params> {
        self.params.clone()
    }

    fn editor(&mut self, _async_executor: AsyncExecutor<Self>) -> Option<Self::Editor> {
        editor::create(self.params.clone(), self.shared.clone(), self.editor_state.clone())
    }

    fn activate(
        &mut self,
        _audio_io_layout: &AudioIOLayout,
        buffer_config: &BufferConfig,
        context: &mut impl ActivateContext<Self>,
    ) -> bool {
        self.start(buffer_config.sample_rate, buffer_config.process_mode);
        let family = self.params.saved.update(|s| s.settings.family);
        self.shared.mrt2.store(family == mrt::stream::Family::Mrt2, std::sync::atomic::Ordering::Release);
        self.latency = self.latency_samples();
        context.set_latency_samples(self.latency);
        true
    }

    fn reset(&mut self) {
        self.params.gain.smoothed.reset(self.params.gain.value());
    }

    fn process(
        &mut self,
        buffer: &mut Buffer,
        aux: &mut AuxiliaryBuffers,
        context: &mut impl ProcessContext<Self>,
    ) -> ProcessStatus {
        // Note events, in the list preallocated for them (never grown here: extra ones are
        // counted and dropped). Channel 10 is General MIDI drums, not pitches.
        let mut notes = std::mem::take(&mut self.notes);
        notes.clear();
        while let Some(event) = context.next_event() {
            // A wildcard key (CLAP's "every note") names no pitch: left out.
            let pitched = |channel: nice_plug::midi::Channel, key: nice_plug::midi::Key| {
                key.number().filter(|_| channel.number() != Some(midi::DRUM_CHANNEL))
            };
            let note = match event {
                NoteEvent::NoteOn { timing, channel, key, .. } => pitched(channel, key).map(|k| (timing, k, true)),
                NoteEvent::NoteOff { timing, channel, key, .. } => pitched(channel, key).map(|k| (timing, k, false)),
                _ => None,
            };
            if let Some((timing, pitch, on)) = note {
                if notes.len() < notes.capacity() && pitch < 128 {
                    notes.push(midi::NoteIn { timing, pitch, on });
                } else {
                    self.shared.notes_dropped.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        }
        // The buffer setting or the family changed: the host re-queries the latency.
        let latency = self.latency_samples();
        if latency != self.latency {
            self.latency = latency;
            context.set_latency_samples(latency);
        }
        let transport = context.transport();
        // A host that sends no transport at all (pedalboard; no tempo, no position) is not
        // "stopped": it plays as long as it calls.
        let no_transport = transport.tempo.is_none() && transport.pos_samples().is_none() && transport.pos_beats().is_none();
        let (playing, pos) = (transport.playing || no_transport, transport.pos_samples());
        let sidechain = aux.inputs.first_mut().map(|b| b.as_slice_immutable());
        let sidechain = match sidechain {
            Some([l, r, ..]) => Some((&l[..], &r[..])),
            Some([m]) => Some((&m[..], &m[..])),
            _ => None,
        };
        match buffer.as_slice() {
            [left, right, ..] => self.render_notes(left, right, sidechain, playing, pos, &notes),
            channels => {
                for c in channels {
                    c.fill(0.0);
                }
            }
        }
        self.notes = notes;
        ProcessStatus::Normal
    }
}

impl ClapPlugin for MrtLive {
    const CLAP_ID: &'static str = "org.mrtlive.mrt-live";
    const CLAP_DESCRIPTION: Option<&'static str> =
        Some("Magenta RealTime live music generation as an instrument");
    const CLAP_MANUAL_URL: Option<&'static str> = None;
    const CLAP_SUPPORT_URL: Option<&'static str> = None;
    const CLAP_FEATURES: &'static [ClapFeature] = &[
        ClapFeature::Instrument,
        ClapFeature::Synthesizer,
        ClapFeature::Stereo,
    ];
}

impl Vst3Plugin for MrtLive {
    // Fixed forever: hosts use it to find the plugin in saved projects.
    const VST3_CLASS_ID: [u8; 16] = *b"MrtLiveMagentaRT";
    const VST3_SUBCATEGORIES: &'static [Vst3SubCategory] = &[
        Vst3SubCategory::Instrument,
        Vst3SubCategory::Synth,
        Vst3SubCategory::Stereo,
    ];
}

nice_export_clap!(MrtLive);
nice_export_vst3!(MrtLive);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_are_stereo_instrument_with_optional_sidechain() {
        let [with_sc, without_sc] = MrtLive::AUDIO_IO_LAYOUTS else {
            panic!("expected exactly two layouts");
        };
        for layout in [with_sc, without_sc] {
            assert_eq!(layout.main_input_channels, None);
            assert_eq!(layout.main_output_channels, NonZeroU32::new(2));
            assert!(layout.aux_output_ports.is_empty());
        }
        assert_eq!(with_sc.aux_input_ports, &[new_nonzero_u32(2)]);
        assert_eq!(with_sc.aux_input_name(0).as_deref(), Some("Sidechain"));
        assert!(without_sc.aux_input_ports.is_empty());
    }

    #[test]
    fn pace_tells_a_bounce_from_live_playing() {
        use std::time::{Duration, Instant};
        let t = Instant::now();
        let ms = |m: u64| t + Duration::from_millis(m);
        let mut p = Pace::default();
        // Live: 10 ms blocks every 10 ms of wall time, each taking 1 ms inside render.
        for k in 0..200u64 {
            assert!(!p.block(ms(10 * k), ms(10 * k + 1), 0.010), "live block {k} taken for a bounce");
        }
        // A live host's pre-roll: 4 blocks back to back, then paced again.
        let mut at = 2000;
        for _ in 0..4 {
            assert!(!p.block(ms(at), ms(at), 0.010));
        }
        for k in 0..100u64 {
            at += 10;
            assert!(!p.block(ms(at), ms(at + 1), 0.010), "pre-roll then live: block {k} taken for a bounce");
        }
        // A bounce: back-to-back blocks, most of the time spent waiting inside render.
        let mut ahead = Vec::new();
        for _ in 0..100 {
            ahead.push(p.block(ms(at), ms(at + 8), 0.010));
            at += 8;
        }
        let first = ahead.iter().position(|&a| a).expect("the bounce was never detected");
        assert!(first < 60, "detected only after {first} blocks (0.6 s of audio)");
        assert!(ahead[first..].iter().all(|&a| a), "detection must hold through the bounce");
        // Live again.
        let back: Vec<bool> = (0..120u64).map(|k| p.block(ms(at + 10 * k), ms(at + 10 * k + 1), 0.010)).collect();
        assert!(!back.last().unwrap(), "live playing after a bounce must stop waiting");
    }

    #[test]
    fn param_ids_are_stable() {
        let plugin = MrtLive::default();
        let ids: Vec<String> = plugin.params().param_map().into_iter().map(|(id, _, _)| id).collect();
        assert_eq!(ids, PARAM_IDS.iter().map(|s| s.to_string()).collect::<Vec<_>>());
    }

    #[test]
    fn gain_param_defaults_to_unity_and_formats_in_db() {
        let plugin = MrtLive::default();
        let gain = &plugin.mrt_params().gain;
        assert_eq!(gain.value(), 1.0);
        assert_eq!(gain.to_string(), "0.00 dB");
        let range = gain.range();
        assert!((util::gain_to_db(range.unnormalize(0.0)) - GAIN_MIN_DB).abs() < 1e-3);
        assert!((util::gain_to_db(range.unnormalize(1.0)) - GAIN_MAX_DB).abs() < 1e-3);
        assert!(plugin
            .params()
            .param_map()
            .iter()
            .any(|(id, _, _)| id == "gain"));
    }
}
