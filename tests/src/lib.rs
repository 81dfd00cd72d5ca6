//! A small CLAP host (clack-host) for the bundled MRT Live plugin, used by `tests/clap_host.rs`.
//!
//! ```text
//!  test thread = the plugin's main thread: create, extensions (params, state, render, audio
//!     ports, gui), activate, on_main_thread callbacks when the plugin asks for them
//!  audio thread (one per render): start_processing, process() block by block with a transport
//!     event, parameter events and the sidechain, stop_processing
//! ```
//!
//! The process-wide [`setup`] writes the tiny test model, points the plugin at it through the
//! environment (`MRT_MODEL_DIR`, `MRT_MODEL_SIZE`, `MRT_DEVICE`, `MRT_CACHE_DIR`,
//! `MRT_LIVE_LOAD_LOG`) and loads the bundle once; every instance comes from that entry.

use std::cell::Cell;
use std::ffi::CStr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use clack_extensions::audio_ports::{AudioPortInfoBuffer, PluginAudioPorts};
use clack_extensions::audio_ports_config::{AudioPortsConfigBuffer, PluginAudioPortsConfig};
use clack_extensions::gui::{GuiSize, HostGui, HostGuiImpl, PluginGui};
use clack_extensions::latency::{HostLatency, HostLatencyImpl, PluginLatency};
use clack_extensions::log::{HostLog, HostLogImpl, LogSeverity};
use clack_extensions::params::{
    HostParams, HostParamsImplMainThread, HostParamsImplShared, ParamClearFlags, ParamInfoBuffer, ParamRescanFlags,
    PluginParams,
};
use clack_extensions::render::{PluginRender, RenderMode};
use clack_extensions::state::{HostState, HostStateImpl, PluginState};
use clack_host::events::event_types::{NoteOffEvent, NoteOnEvent, ParamValueEvent, TransportEvent, TransportFlags};
use clack_host::events::EventFlags;
use clack_host::prelude::*;
use clack_host::utils::{BeatTime, SecondsTime};
use serde_json::Value;

/// The plugin's CLAP id.
pub const PLUGIN_ID: &CStr = c"org.mrtlive.mrt-live";
/// Seconds of audio per generated chunk.
pub const CHUNK_SECONDS: f64 = 2.0;
/// Name of the plugin's persisted non-parameter state field.
pub const STATE_FIELD: &str = "mrt-live-state";
/// How long a render may wait for the model (first load in a debug build, a loaded machine).
pub const LOAD_TIMEOUT: Duration = Duration::from_secs(300);

// ---------------------------------------------------------------------------------------------
// Process-wide setup
// ---------------------------------------------------------------------------------------------

/// What every test shares: the tiny model on disk, the environment and the loaded bundle.
pub struct Env {
    /// This process's scratch folder.
    pub root: PathBuf,
    /// The tiny model (`$MRT_MODEL_DIR`).
    pub model_dir: PathBuf,
    /// `$MRT_LIVE_LOAD_LOG`: one line per model the plugin actually loaded.
    pub load_log: PathBuf,
    pub bundle: PathBuf,
    pub entry: PluginEntry,
}

/// The workspace `target` folder (`$CARGO_TARGET_DIR`, else `<workspace>/target`).
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) if !d.is_empty() => {
            let d = PathBuf::from(d);
            if d.is_absolute() {
                d
            } else {
                workspace_dir().join(d)
            }
        }
        _ => workspace_dir().join("target"),
    }
}

pub fn workspace_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the tests crate sits in the workspace").to_path_buf()
}

fn fixtures_dir() -> PathBuf {
    match std::env::var_os("MRT_FIXTURES") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures"),
    }
}

/// Writes a tiny model into `dir` (the L1/C1 golden fixtures plus a tiny MusicCoCa).
pub fn write_tiny_model(dir: &Path) {
    let fixtures = fixtures_dir();
    mrt::tiny_model::write(dir, &fixtures)
        .unwrap_or_else(|e| panic!("writing the tiny model into {} from {}: {e}", dir.display(), fixtures.display()));
}

/// Removes scratch folders of earlier runs whose process is gone.
fn remove_stale_roots(tmp: &Path) {
    let Ok(entries) = std::fs::read_dir(tmp) else { return };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if let Some(pid) = name.strip_prefix("mrt-host-tests-").and_then(|p| p.parse::<u32>().ok()) {
            if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
}

/// The shared setup, done once per process before any plugin instance exists.
pub fn setup() -> &'static Env {
    static ENV: OnceLock<Env> = OnceLock::new();
    ENV.get_or_init(|| {
        let bundle = match std::env::var_os("MRT_CLAP_BUNDLE") {
            Some(p) if !p.is_empty() => PathBuf::from(p),
            _ => target_dir().join("bundled/MRT Live.clap"),
        };
        assert!(
            bundle.is_file(),
            "the CLAP bundle {} does not exist: build it first with \
             `cargo xtask bundle mrt-live --features assert_process_allocs` (or run ./test.sh), \
             or point MRT_CLAP_BUNDLE at it",
            bundle.display()
        );
        let tmp = std::env::temp_dir();
        remove_stale_roots(&tmp);
        let root = tmp.join(format!("mrt-host-tests-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).expect("creating the scratch folder");
        let model_dir = root.join("tiny-model");
        write_tiny_model(&model_dir);
        let load_log = root.join("loads.log");
        // The plugin reads these when an instance is created (settings) and when the worker
        // loads the model. Set once, before the entry is loaded and any instance exists.
        std::env::set_var("MRT_MODEL_DIR", &model_dir);
        std::env::set_var("MRT_MODEL_SIZE", "tiny");
        std::env::set_var("MRT_DEVICE", "flex");
        std::env::set_var("MRT_CACHE_DIR", root.join("cache"));
        std::env::set_var("MRT_LIVE_LOAD_LOG", &load_log);
        // SAFETY: the bundle is our own plugin, built from this workspace.
        let entry = unsafe { PluginEntry::load(&bundle) }
            .unwrap_or_else(|e| panic!("loading the CLAP entry from {}: {e}", bundle.display()));
        Env { root, model_dir, load_log, bundle, entry }
    })
}

/// Serialises the heavy tests (renders compete for two cores; timings stay meaningful).
pub fn exclusive() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

// ---------------------------------------------------------------------------------------------
// Host handlers
// ---------------------------------------------------------------------------------------------

/// The host type.
pub struct TestHost;

/// Host state shared by every thread (the plugin may call these from any thread).
#[derive(Default)]
pub struct HostShared {
    pub callback_requested: AtomicBool,
    pub callbacks_requested: AtomicU64,
    pub restart_requested: AtomicBool,
    pub process_requested: AtomicBool,
    pub flush_requested: AtomicBool,
    pub log: Mutex<Vec<String>>,
    pub gui_closed: AtomicBool,
    pub gui_resize_requests: Mutex<Vec<(u32, u32)>>,
}

/// Host state of the main thread.
#[derive(Default)]
pub struct HostMain {
    pub rescans: Cell<u32>,
    pub dirty: Cell<u32>,
    /// Calls of the latency extension's `changed`.
    pub latency_changes: Cell<u32>,
}

impl SharedHandler<'_> for HostShared {
    fn request_restart(&self) {
        self.restart_requested.store(true, Ordering::Release);
    }

    fn request_process(&self) {
        self.process_requested.store(true, Ordering::Release);
    }

    fn request_callback(&self) {
        self.callbacks_requested.fetch_add(1, Ordering::Relaxed);
        self.callback_requested.store(true, Ordering::Release);
    }
}

impl MainThreadHandler<'_> for HostMain {}

impl HostLogImpl for HostShared {
    fn log(&self, severity: LogSeverity, message: &str) {
        let line = format!("[{severity:?}] {message}");
        eprintln!("plugin log: {line}");
        self.log.lock().unwrap_or_else(|e| e.into_inner()).push(line);
    }
}

impl HostGuiImpl for HostShared {
    fn resize_hints_changed(&self) {}

    fn request_resize(&self, new_size: GuiSize) -> Result<(), HostError> {
        self.gui_resize_requests.lock().unwrap_or_else(|e| e.into_inner()).push((new_size.width, new_size.height));
        Ok(())
    }

    fn request_show(&self) -> Result<(), HostError> {
        Ok(())
    }

    fn request_hide(&self) -> Result<(), HostError> {
        Ok(())
    }

    fn closed(&self, _was_destroyed: bool) {
        self.gui_closed.store(true, Ordering::Release);
    }
}

impl HostParamsImplShared for HostShared {
    fn request_flush(&self) {
        self.flush_requested.store(true, Ordering::Release);
    }
}

impl HostParamsImplMainThread for HostMain {
    fn rescan(&self, _flags: ParamRescanFlags) {
        self.rescans.set(self.rescans.get() + 1);
    }

    fn clear(&self, _param_id: ClapId, _flags: ParamClearFlags) {}
}

impl HostLatencyImpl for HostMain {
    fn changed(&self) {
        self.latency_changes.set(self.latency_changes.get() + 1);
    }
}

impl HostStateImpl for HostMain {
    fn mark_dirty(&self) {
        self.dirty.set(self.dirty.get() + 1);
    }
}

impl HostHandlers for TestHost {
    type Shared<'a> = HostShared;
    type MainThread<'a> = HostMain;
    type AudioProcessor<'a> = ();

    fn declare_extensions(builder: &mut HostExtensions<Self>, _shared: &Self::Shared<'_>) {
        builder.register::<HostLog>().register::<HostGui>().register::<HostParams>().register::<HostState>().register::<HostLatency>();
    }
}

// ---------------------------------------------------------------------------------------------
// Renders
// ---------------------------------------------------------------------------------------------

/// A parameter change at an absolute sample position of the render.
#[derive(Clone, Copy, Debug)]
pub struct ParamChange {
    pub at: usize,
    pub id: ClapId,
    /// The CLAP (plain) value: nice-plug reports continuous parameters as 0..1.
    pub value: f64,
}

/// A MIDI note on or off at an absolute sample position of the render (port 0, channel 0).
#[derive(Clone, Copy, Debug)]
pub struct NoteChange {
    pub at: usize,
    pub key: u8,
    pub on: bool,
}

/// From render frame `at` on, the host's transport is at `pos` (advancing while `playing`,
/// held while stopped): jumps, stops and restarts within one render. Realtime renders count
/// `at` from their first audio; until then the transport sits at the first change.
#[derive(Clone, Copy, Debug)]
pub struct TransportChange {
    pub at: usize,
    pub pos: i64,
    pub playing: bool,
}

/// What the sidechain port carries.
#[derive(Clone, Debug)]
pub enum Sidechain {
    /// The port is connected and carries zeros.
    Zeros,
    /// The port carries zeros in buffers flagged constant.
    ConstantZeros,
    /// The port carries this stereo signal (looped if shorter than the render).
    Signal(Vec<f32>, Vec<f32>),
    /// The plugin runs in its audio-ports configuration without a sidechain port: no input
    /// ports are passed at all.
    NoPort,
}

/// Realtime rendering: the audio thread keeps to (at most) this multiple of real time, and the
/// render first plays until audio arrives (the worker generates in the background).
#[derive(Clone, Copy, Debug)]
pub struct Realtime {
    pub speed: f64,
}

/// One render: activation at `rate`, `play` frames with the transport playing (after the lead-in
/// of a realtime render), then `stop` frames with it stopped.
#[derive(Clone, Debug)]
pub struct RenderSpec {
    pub rate: f64,
    pub play: usize,
    pub stop: usize,
    /// Block sizes, cycled.
    pub blocks: Vec<usize>,
    pub events: Vec<ParamChange>,
    /// MIDI notes sent to the note input port.
    pub notes: Vec<NoteChange>,
    pub sidechain: Sidechain,
    /// Transport position of the first frame, in samples.
    pub start_pos: i64,
    /// Transport changes within the render (sorted by `at`); they override `start_pos` and the
    /// playing state of the `play` segment from their frame on.
    pub transport: Vec<TransportChange>,
    /// `None` = offline (CLAP render extension set to offline before activation, unless
    /// `says_offline` is false: then the host renders as fast as it can while calling itself
    /// realtime, as DawDreamer, pedalboard and Ardour's export do).
    pub realtime: Option<Realtime>,
    pub says_offline: bool,
    /// How long a realtime render waits for its first audio (the first load in a debug build
    /// takes a while: [`LOAD_TIMEOUT`]).
    pub audio_timeout: Duration,
}

impl RenderSpec {
    pub fn offline(rate: f64, play: usize) -> Self {
        Self {
            rate,
            play,
            stop: 0,
            blocks: vec![512],
            events: Vec::new(),
            notes: Vec::new(),
            sidechain: Sidechain::Zeros,
            start_pos: 0,
            transport: Vec::new(),
            realtime: None,
            says_offline: true,
            audio_timeout: LOAD_TIMEOUT,
        }
    }

    pub fn max_block(&self) -> usize {
        self.blocks.iter().copied().max().unwrap_or(512)
    }
}

/// What a render produced.
#[derive(Clone, Debug, Default)]
pub struct Rendered {
    pub left: Vec<f32>,
    pub right: Vec<f32>,
    /// Frames before the first non-zero output (realtime: the wait for the first chunk).
    pub lead_in: usize,
    /// (first frame, length) of every process() call.
    pub blocks: Vec<(usize, usize)>,
    /// Wall-clock time of every process() call.
    pub block_secs: Vec<f64>,
    /// Frames rendered with the transport playing.
    pub played: usize,
    /// The latency the plugin reported (latency extension) while active, last seen.
    pub latency: Option<u32>,
}

impl Rendered {
    pub fn len(&self) -> usize {
        self.left.len()
    }

    pub fn is_empty(&self) -> bool {
        self.left.is_empty()
    }
}

/// A CLAP transport event for the frame at transport position `pos` (120 BPM, 4/4).
pub fn transport(pos: i64, playing: bool, rate: f64) -> TransportEvent {
    let seconds = pos as f64 / rate;
    let beats = seconds * 2.0;
    let bar = (beats / 4.0).floor();
    let mut flags = TransportFlags::HAS_TEMPO
        | TransportFlags::HAS_BEATS_TIMELINE
        | TransportFlags::HAS_SECONDS_TIMELINE
        | TransportFlags::HAS_TIME_SIGNATURE;
    if playing {
        flags |= TransportFlags::IS_PLAYING;
    }
    TransportEvent {
        header: EventHeader::new_core(0, EventFlags::empty()),
        flags,
        song_pos_beats: BeatTime::from_float(beats),
        song_pos_seconds: SecondsTime::from_float(seconds),
        tempo: 120.0,
        tempo_inc: 0.0,
        loop_start_beats: BeatTime::from_int(0),
        loop_end_beats: BeatTime::from_int(0),
        loop_start_seconds: SecondsTime::from_int(0),
        loop_end_seconds: SecondsTime::from_int(0),
        bar_start: BeatTime::from_float(bar * 4.0),
        bar_number: bar as i32,
        time_signature_numerator: 4,
        time_signature_denominator: 4,
    }
}

type InPort<'a> = AudioPortBuffer<std::array::IntoIter<InputChannel<'a, f32>, 2>, std::array::IntoIter<InputChannel<'static, f64>, 0>>;

/// The audio thread's side of a render.
fn audio_thread(processor: StoppedPluginAudioProcessor<TestHost>, spec: &RenderSpec) -> (StoppedPluginAudioProcessor<TestHost>, Result<Rendered, String>) {
    let mut processor = match processor.start_processing() {
        Ok(p) => p,
        Err(e) => return (e.into_stopped_processor(), Err("start_processing failed".into())),
    };
    let max = spec.max_block();
    let mut in_ports = AudioPorts::with_capacity(2, 1);
    let mut out_ports = AudioPorts::with_capacity(2, 1);
    let (mut out_l, mut out_r) = (vec![0.0f32; max], vec![0.0f32; max]);
    let (mut sc_l, mut sc_r) = (vec![0.0f32; max], vec![0.0f32; max]);
    let mut in_events = EventBuffer::with_capacity(16);
    let mut out_events = EventBuffer::with_capacity(256);
    let mut out = Rendered::default();
    let total_hint = spec.play + spec.stop;
    out.left.reserve(total_hint);
    out.right.reserve(total_hint);

    let started = Instant::now();
    let mut frame = 0usize;
    let mut k = 0usize;
    // Realtime: frames before the first audio do not count toward `play`.
    let mut audio_at: Option<usize> = if spec.realtime.is_some() { None } else { Some(0) };
    let mut error = None;
    loop {
        let play_end = audio_at.map(|a| a + spec.play);
        let playing = play_end.is_none_or(|end| frame < end);
        let seg_end = match play_end {
            None => usize::MAX,
            Some(end) if playing => end,
            Some(end) => end + spec.stop,
        };
        if frame >= seg_end {
            break;
        }
        if audio_at.is_none() && started.elapsed() > spec.audio_timeout {
            error = Some(format!("no audio after {:?} of realtime playback", spec.audio_timeout));
            break;
        }
        let mut n = spec.blocks[k % spec.blocks.len()].min(seg_end - frame);
        k += 1;
        // Transport changes count from the first audio (realtime: the lead-in sits at the first
        // change); blocks end where the transport changes.
        let origin = audio_at.unwrap_or(frame);
        if let Some(next) = spec.transport.iter().find(|c| c.at + origin > frame) {
            n = n.min(next.at + origin - frame);
        }
        // The transport holds its position while stopped.
        let (pos, playing) = match spec.transport.iter().rev().find(|c| c.at + origin <= frame) {
            Some(c) => (if c.playing { c.pos + (frame - c.at - origin) as i64 } else { c.pos }, playing && c.playing),
            None => (spec.start_pos + frame.min(play_end.unwrap_or(usize::MAX)) as i64, playing),
        };
        let t = transport(pos, playing, spec.rate);

        in_events.clear();
        // CLAP wants the block's events in time order: parameters and notes merged.
        let mut block_events: Vec<(usize, Option<&ParamChange>, Option<&NoteChange>)> = Vec::new();
        block_events.extend(spec.events.iter().filter(|e| e.at >= frame && e.at < frame + n).map(|e| (e.at, Some(e), None)));
        block_events.extend(spec.notes.iter().filter(|e| e.at >= frame && e.at < frame + n).map(|e| (e.at, None, Some(e))));
        block_events.sort_by_key(|e| e.0);
        for (at, param, note) in block_events {
            let time = (at - frame) as u32;
            if let Some(e) = param {
                in_events.push(&ParamValueEvent::new(time, e.id, Pckn::match_all(), e.value));
            }
            if let Some(e) = note {
                let pckn = Pckn::new(0u16, 0u16, u16::from(e.key), clack_host::events::Match::All);
                if e.on {
                    in_events.push(&NoteOnEvent::new(time, pckn, 0.8));
                } else {
                    in_events.push(&NoteOffEvent::new(time, pckn, 0.0));
                }
            }
        }
        out_events.clear();

        match &spec.sidechain {
            Sidechain::Signal(l, r) => {
                for i in 0..n {
                    sc_l[i] = l[(frame + i) % l.len()];
                    sc_r[i] = r[(frame + i) % r.len()];
                }
            }
            _ => {
                sc_l[..n].fill(0.0);
                sc_r[..n].fill(0.0);
            }
        }
        // Anything the plugin leaves unwritten shows up as NaN.
        out_l[..n].fill(f32::NAN);
        out_r[..n].fill(f32::NAN);

        let inputs = match &spec.sidechain {
            Sidechain::NoPort => in_ports.with_input_buffers(Vec::<InPort<'_>>::new()),
            Sidechain::ConstantZeros => in_ports.with_input_buffers([AudioPortBuffer {
                latency: 0,
                channels: AudioPortBufferType::f32_input_only([
                    InputChannel::constant(&mut sc_l[..n]),
                    InputChannel::constant(&mut sc_r[..n]),
                ]),
            }]),
            _ => in_ports.with_input_buffers([AudioPortBuffer {
                latency: 0,
                channels: AudioPortBufferType::f32_input_only([
                    InputChannel::variable(&mut sc_l[..n]),
                    InputChannel::variable(&mut sc_r[..n]),
                ]),
            }]),
        };
        let mut outputs = out_ports.with_output_buffers([AudioPortBuffer {
            latency: 0,
            channels: AudioPortBufferType::f32_output_only([&mut out_l[..n], &mut out_r[..n]].into_iter()),
        }]);
        let t0 = Instant::now();
        let status = processor.process(
            &inputs,
            &mut outputs,
            &in_events.as_input(),
            &mut out_events.as_output(),
            Some(frame as u64),
            Some(&t),
        );
        out.block_secs.push(t0.elapsed().as_secs_f64());
        if let Err(e) = status {
            error = Some(format!("process() failed at frame {frame} (block of {n}): {e}"));
            break;
        }
        out.blocks.push((frame, n));
        if audio_at.is_none() {
            if let Some(i) = out_l[..n].iter().zip(&out_r[..n]).position(|(l, r)| *l != 0.0 || *r != 0.0) {
                audio_at = Some(frame + i);
            }
        }
        out.left.extend_from_slice(&out_l[..n]);
        out.right.extend_from_slice(&out_r[..n]);
        if playing {
            out.played += n;
        }
        frame += n;
        if let Some(rt) = spec.realtime {
            let due = Duration::from_secs_f64(frame as f64 / spec.rate / rt.speed);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(wait);
            }
        }
    }
    out.lead_in = audio_at.unwrap_or(frame);
    (processor.stop_processing(), match error {
        Some(e) => Err(e),
        None => Ok(out),
    })
}

// ---------------------------------------------------------------------------------------------
// The plugin instance
// ---------------------------------------------------------------------------------------------

/// A parameter as the params extension describes it.
#[derive(Clone, Debug)]
pub struct ParamDesc {
    pub id: ClapId,
    pub name: String,
    pub min: f64,
    pub max: f64,
    pub default: f64,
}

/// An audio port as the audio-ports extension describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Port {
    pub name: String,
    pub channels: u32,
    pub main: bool,
}

impl Port {
    pub fn new(name: &str, channels: u32, main: bool) -> Self {
        Self { name: name.into(), channels, main }
    }
}

/// One MRT Live instance, driven from the thread that created it (its main thread).
pub struct Plugin {
    pub instance: PluginInstance<TestHost>,
    params: Vec<ParamDesc>,
}

impl Plugin {
    /// A new instance from the shared entry.
    pub fn new() -> Self {
        let env = setup();
        let info = HostInfo::new("mrt-host-tests", "MRT Live", "https://example.invalid", "0.1.0").expect("host info");
        let instance = PluginInstance::<TestHost>::new(
            |_| HostShared::default(),
            |_| HostMain::default(),
            &env.entry,
            PLUGIN_ID,
            &info,
        )
        .unwrap_or_else(|e| panic!("creating the plugin instance: {e}"));
        let mut p = Self { instance, params: Vec::new() };
        p.params = p.read_params();
        p
    }

    fn ext<E: clack_host::extensions::Extension<ExtensionSide = clack_host::extensions::PluginExtensionSide>>(&self, what: &str) -> E {
        self.instance
            .plugin_shared_handle()
            .get_extension::<E>()
            .unwrap_or_else(|| panic!("the plugin does not implement the {what} extension"))
    }

    fn read_params(&mut self) -> Vec<ParamDesc> {
        let ext: PluginParams = self.ext("params");
        let handle = self.instance.plugin_handle();
        let mut buf = ParamInfoBuffer::new();
        (0..ext.count(&handle))
            .map(|i| {
                let info = ext.get_info(&handle, i, &mut buf).unwrap_or_else(|| panic!("params.get_info({i}) failed"));
                ParamDesc {
                    id: info.id,
                    name: String::from_utf8_lossy(info.name).to_string(),
                    min: info.min_value,
                    max: info.max_value,
                    default: info.default_value,
                }
            })
            .collect()
    }

    pub fn params(&self) -> &[ParamDesc] {
        &self.params
    }

    /// The parameter called `name` (panics naming the ones there are).
    pub fn param(&self, name: &str) -> ParamDesc {
        self.params.iter().find(|p| p.name == name).cloned().unwrap_or_else(|| {
            panic!("no parameter named {name:?}; the plugin has {:?}", self.params.iter().map(|p| &p.name).collect::<Vec<_>>())
        })
    }

    pub fn param_value(&mut self, id: ClapId) -> Option<f64> {
        let ext: PluginParams = self.ext("params");
        let handle = self.instance.plugin_handle();
        ext.get_value(&handle, id)
    }

    /// The host's shared handler.
    pub fn host<R>(&self, f: impl FnOnce(&HostShared) -> R) -> R {
        self.instance.access_shared_handler(f)
    }

    /// Runs the plugin's main-thread callback if it asked for one. Returns whether it ran.
    pub fn pump(&mut self) -> bool {
        if self.instance.access_shared_handler(|s| s.callback_requested.swap(false, Ordering::AcqRel)) {
            self.instance.call_on_main_thread_callback();
            true
        } else {
            false
        }
    }

    /// Pumps main-thread callbacks for `d`.
    pub fn pump_for(&mut self, d: Duration) {
        let end = Instant::now() + d;
        while Instant::now() < end {
            self.pump();
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// The raw state as the plugin saves it.
    pub fn save_state_bytes(&mut self) -> Vec<u8> {
        let ext: PluginState = self.ext("state");
        let handle = self.instance.plugin_handle();
        let mut bytes = Vec::new();
        ext.save(&handle, &mut bytes).expect("state.save failed");
        bytes
    }

    /// The saved state as JSON (nice-plug: a little-endian u64 length, then JSON).
    pub fn save_state(&mut self) -> Value {
        let bytes = self.save_state_bytes();
        assert!(bytes.len() >= 8, "state of {} bytes has no length prefix", bytes.len());
        let len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        assert_eq!(len, bytes.len() - 8, "the state's length prefix does not match its size");
        serde_json::from_slice(&bytes[8..]).unwrap_or_else(|e| panic!("saved state is not JSON: {e}"))
    }

    pub fn load_state_bytes(&mut self, bytes: &[u8]) {
        let ext: PluginState = self.ext("state");
        let handle = self.instance.plugin_handle();
        let mut reader = bytes;
        ext.load(&handle, &mut reader).expect("state.load failed");
    }

    pub fn load_state(&mut self, state: &Value) {
        let json = serde_json::to_vec(state).unwrap();
        let mut bytes = (json.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(&json);
        self.load_state_bytes(&bytes);
    }

    /// Changes the persisted field and the given parameters (plain values by string id) through
    /// a state save/modify/load cycle, the way a host restores a preset.
    pub fn configure(&mut self, field: impl FnOnce(&mut Value), params: &[(&str, Value)]) {
        let mut state = self.save_state();
        let text = state["fields"][STATE_FIELD].as_str().expect("the state has the mrt-live-state field").to_string();
        let mut saved: Value = serde_json::from_str(&text).expect("the field is JSON");
        field(&mut saved);
        state["fields"][STATE_FIELD] = Value::String(saved.to_string());
        for (id, v) in params {
            assert!(state["params"].get(*id).is_some(), "no parameter {id:?} in the saved state");
            state["params"][*id] = v.clone();
        }
        self.load_state(&state);
    }

    /// Chooses the audio-ports configuration with or without the sidechain input port.
    pub fn select_sidechain_port(&mut self, with_sidechain: bool) {
        let ext: PluginAudioPortsConfig = self.ext("audio-ports-config");
        let handle = self.instance.plugin_handle();
        let mut buf = AudioPortsConfigBuffer::new();
        let want = u32::from(with_sidechain);
        let id = (0..ext.count(&handle))
            .filter_map(|i| ext.get(&handle, i, &mut buf).map(|c| (c.id, c.input_port_count)))
            .find(|(_, inputs)| *inputs == want)
            .map(|(id, _)| id)
            .unwrap_or_else(|| panic!("no audio-ports configuration with {want} input ports"));
        ext.select(&handle, id).expect("audio-ports-config.select failed");
    }

    /// (input ports, output ports) of the selected audio-ports configuration.
    pub fn audio_ports(&mut self) -> (Vec<Port>, Vec<Port>) {
        let ext: PluginAudioPorts = self.ext("audio-ports");
        let handle = self.instance.plugin_handle();
        let mut buf = AudioPortInfoBuffer::new();
        let mut list = |is_input: bool| -> Vec<Port> {
            (0..ext.count(&handle, is_input))
                .map(|i| {
                    let info = ext.get(&handle, i, is_input, &mut buf).expect("audio_ports.get failed");
                    Port {
                        name: String::from_utf8_lossy(info.name).to_string(),
                        channels: info.channel_count,
                        main: info.flags.contains(clack_extensions::audio_ports::AudioPortFlags::IS_MAIN),
                    }
                })
                .collect()
        };
        (list(true), list(false))
    }

    pub fn set_render_mode(&mut self, offline: bool) {
        let ext: PluginRender = self.ext("render");
        let handle = self.instance.plugin_handle();
        let mode = if offline { RenderMode::Offline } else { RenderMode::Realtime };
        ext.set(&handle, mode).expect("render.set failed");
    }

    pub fn gui(&self) -> PluginGui {
        self.ext("gui")
    }

    /// Activates at `spec.rate`, renders `spec` on an audio thread while this (main) thread
    /// answers the plugin's callbacks, then deactivates.
    pub fn render(&mut self, spec: &RenderSpec) -> Rendered {
        match self.try_render(spec) {
            Ok(r) => r,
            Err(e) => panic!("render at {} Hz failed: {e}", spec.rate),
        }
    }

    pub fn try_render(&mut self, spec: &RenderSpec) -> Result<Rendered, String> {
        assert!(!spec.blocks.is_empty() && spec.blocks.iter().all(|&b| b > 0), "block sizes must be positive");
        self.select_sidechain_port(!matches!(spec.sidechain, Sidechain::NoPort));
        self.set_render_mode(spec.realtime.is_none() && spec.says_offline);
        self.pump();
        let config = PluginAudioConfiguration {
            sample_rate: spec.rate,
            min_frames_count: 1,
            max_frames_count: spec.max_block() as u32,
        };
        let processor = self.instance.activate(|_, _| (), config).map_err(|e| format!("activate: {e}"))?;
        let latency_ext: Option<PluginLatency> = self.instance.plugin_shared_handle().get_extension();
        let mut latency = None;
        let (processor, result) = std::thread::scope(|s| {
            let audio = std::thread::Builder::new()
                .name("mrt-host-tests audio".into())
                .spawn_scoped(s, move || audio_thread(processor, spec))
                .expect("spawning the audio thread");
            while !audio.is_finished() {
                self.pump();
                if let Some(ext) = &latency_ext {
                    latency = Some(ext.get(&self.instance.plugin_handle()));
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            audio.join().unwrap_or_else(|p| std::panic::resume_unwind(p))
        });
        let result = result.map(|mut r| {
            r.latency = latency;
            r
        });
        self.instance.deactivate(processor);
        self.pump();
        // A render-mode switch while active asks for a restart; nothing else should.
        self.host(|h| h.restart_requested.store(false, Ordering::Release));
        result
    }
}

impl Default for Plugin {
    fn default() -> Self {
        Self::new()
    }
}

// ---------------------------------------------------------------------------------------------
// Signal helpers
// ---------------------------------------------------------------------------------------------

pub fn rms(x: &[f32]) -> f64 {
    if x.is_empty() {
        return 0.0;
    }
    (x.iter().map(|&v| (v as f64) * (v as f64)).sum::<f64>() / x.len() as f64).sqrt()
}

/// RMS of `a − b`.
pub fn rms_diff(a: &[f32], b: &[f32]) -> f64 {
    let n = a.len().min(b.len());
    if n == 0 {
        return 0.0;
    }
    (a[..n].iter().zip(&b[..n]).map(|(&x, &y)| ((x - y) as f64).powi(2)).sum::<f64>() / n as f64).sqrt()
}

/// First index where the two differ (bitwise), within the common length.
pub fn first_difference(a: &[f32], b: &[f32]) -> Option<usize> {
    a.iter().zip(b).position(|(x, y)| x.to_bits() != y.to_bits())
}

/// Chunk length in frames at `rate`.
pub fn chunk_frames(rate: f64) -> usize {
    (CHUNK_SECONDS * rate).round() as usize
}
