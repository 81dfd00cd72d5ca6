//! The generation worker: a plain `std::thread` owned by the plugin instance.
//!
//! ```text
//!  settings ─► registry (shared model) ─► per block: style blend (slots + sidechain) ─► tokens
//!     ─► stream::Generator::next_block (48 kHz; v1: a crossfaded 2 s chunk) ─► resample to the
//!     host rate (rubato) ─► queue (blocks ahead) ─► triple buffer once the player started the
//!     previous one
//! ```
//!
//! The worker reacts to the player through atomics in [`Shared`]: `epoch` (reset the context),
//! `started_seq` (a chunk started: publish the next, generate more), `waiting` (offline render
//! blocked on the next chunk). Host restores of the persisted state are noticed through
//! [`Persisted::restores`](crate::params::Persisted::restores).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use mrt::stream::StreamState;
use mrt::DeviceChoice;

use crate::params::MrtLiveParams;
use crate::player::{ChunkBuf, ChunkPlayer};
use crate::registry::{self, LoadFailure, ModelKey, Models};
use crate::resample::StreamResampler;
use crate::shared::{ChunkInfo, Shared, Status};
use crate::sidechain::{self, SidechainHistory, SidechainTap};

/// How often an idle worker looks at the atomics.
const POLL: Duration = Duration::from_millis(2);
/// While the model is not installed, how often the worker looks for it again (a download from
/// a terminal, a copied folder).
const NOT_INSTALLED_RETRY: Duration = Duration::from_secs(5);
/// How long a save waits for the worker to copy its context (a frame takes tens of ms).
pub const CONTEXT_WAIT: Duration = Duration::from_millis(500);
/// How long a model stays loaded after its last instance lets go (hosts that close and reopen
/// instances, or switch a setting back and forth, do not reload it).
pub const MODEL_GRACE: Duration = Duration::from_secs(20);
/// Preferred resampler block (20 ms at 48 kHz; divides a 96000-sample chunk).
const RESAMPLE_BLOCK: usize = 960;

/// The worker's end of one activation's plumbing.
pub struct WorkerIo {
    pub host_rate: u32,
    pub offline: bool,
    pub chunks: triple_buffer::Input<ChunkBuf>,
    pub sidechain: rtrb::Consumer<f32>,
    /// MIDI notes placed on the block timeline by the player ([`crate::midi`]).
    pub notes: rtrb::Consumer<crate::midi::NoteMsg>,
}

/// The audio thread's end of one activation's plumbing.
pub struct PlayerIo {
    pub player: ChunkPlayer,
    pub sidechain: SidechainTap,
}

/// Fresh plumbing for an activation at `sample_rate`; chunk buffers are preallocated for 2 s.
pub fn plumbing(sample_rate: f32, offline: bool, shared: &Arc<Shared>) -> (PlayerIo, WorkerIo) {
    let capacity = (sample_rate as usize) * 2 + 4096;
    let (input, output) = triple_buffer::triple_buffer(&ChunkBuf::with_capacity(capacity));
    let (producer, consumer) = sidechain::ring(sample_rate);
    let (notes_tx, notes_rx) = crate::midi::ring();
    let player = ChunkPlayer::new(output, shared.clone(), sample_rate).with_notes(notes_tx);
    let tap = SidechainTap::new(producer, shared.clone(), sample_rate);
    (
        PlayerIo { player, sidechain: tap },
        WorkerIo { host_rate: sample_rate.round() as u32, offline, chunks: input, sidechain: consumer, notes: notes_rx },
    )
}

enum Command {
    Configure(WorkerIo),
    Shutdown,
}

/// The plugin's handle on its worker thread. Dropping it stops and joins the thread (after the
/// chunk in progress, if any).
pub struct WorkerHandle {
    tx: Sender<Command>,
    thread: Option<JoinHandle<()>>,
    /// Raised on drop: a chunk in progress stops at its next frame, so closing the plugin (or
    /// the host's project) never waits for a whole chunk.
    cancel: Arc<AtomicBool>,
}

impl WorkerHandle {
    pub fn spawn(params: Arc<MrtLiveParams>, shared: Arc<Shared>) -> std::io::Result<Self> {
        let (tx, rx) = crossbeam_channel::unbounded();
        let cancel = Arc::new(AtomicBool::new(false));
        let worker = Worker::new(params, shared.clone(), rx, cancel.clone());
        shared.worker_alive.store(true, Ordering::Release);
        let thread = std::thread::Builder::new().name("mrt-live generator".into()).spawn(move || worker.run());
        match thread {
            Ok(t) => Ok(Self { tx, thread: Some(t), cancel }),
            Err(e) => {
                shared.worker_alive.store(false, Ordering::Release);
                Err(e)
            }
        }
    }

    /// Hands the worker a new activation's plumbing (rate, mode, buffers).
    pub fn configure(&self, io: WorkerIo) {
        // A send fails only when the thread is gone, which `Shared::worker_alive` reports.
        let _ = self.tx.send(Command::Configure(io));
    }
}

impl Drop for WorkerHandle {
    fn drop(&mut self) {
        self.cancel.store(true, Ordering::Release);
        let _ = self.tx.send(Command::Shutdown);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A blend's recipe (prompt keys and weight bits, sidechain embedding id) and its tokens.
type StyleMemo = (Vec<(String, u32)>, Option<Vec<i32>>);

/// The chunk side of the current activation.
struct ChunkIo {
    host_rate: u32,
    offline: bool,
    chunks: triple_buffer::Input<ChunkBuf>,
}

/// A generated chunk at the host rate, waiting to be published.
struct Ready {
    seq: u64,
    epoch: u64,
    left: Vec<f32>,
    right: Vec<f32>,
}

struct Worker {
    params: Arc<MrtLiveParams>,
    shared: Arc<Shared>,
    rx: Receiver<Command>,
    io: Option<ChunkIo>,
    sidechain: Option<SidechainHistory>,
    /// The sidechain's last style embedding and the block it was made for.
    sidechain_embedding: Option<(u64, Vec<f32>)>,
    notes_rx: Option<rtrb::Consumer<crate::midi::NoteMsg>>,
    /// MIDI notes waiting for their frame, and MRT2's note tracker.
    notes: crate::midi::NoteFeed,
    /// The key last tried, and its result.
    key: Option<ModelKey>,
    models: Option<Arc<Models>>,
    state: Option<StreamState>,
    restores_seen: u64,
    epoch: u64,
    queue: VecDeque<Ready>,
    next_seq: u64,
    /// Sequence number and epoch of the chunk in the triple buffer.
    published: Option<(u64, u64)>,
    resampler: Option<(u32, u32, StreamResampler)>,
    style_cache: HashMap<String, Vec<f32>>,
    /// What the last style was made of (prompt keys, weights, sidechain embedding) and its
    /// tokens: an unchanged blend is not re-quantised every 40 ms frame.
    style_memo: Option<StyleMemo>,
    /// Generation failed; no retry until the model, the context or the settings change.
    failed: bool,
    /// `Shared::reload` last acted on, and when the model was last looked for.
    reload_seen: u64,
    last_try: Option<Instant>,
    cancel: Arc<AtomicBool>,
    /// The live context differs from the persisted copy (MRT2 copies on request only).
    context_dirty: bool,
}

impl Drop for Worker {
    fn drop(&mut self) {
        if let Some(m) = self.models.take() {
            registry::models().linger(m, MODEL_GRACE);
        }
    }
}

impl Worker {
    fn new(params: Arc<MrtLiveParams>, shared: Arc<Shared>, rx: Receiver<Command>, cancel: Arc<AtomicBool>) -> Self {
        let epoch = shared.epoch.load(Ordering::Acquire);
        Self {
            params,
            shared,
            rx,
            io: None,
            sidechain: None,
            sidechain_embedding: None,
            notes_rx: None,
            notes: crate::midi::NoteFeed::default(),
            key: None,
            models: None,
            state: None,
            restores_seen: 0,
            epoch,
            queue: VecDeque::new(),
            next_seq: 1,
            published: None,
            resampler: None,
            style_cache: HashMap::new(),
            style_memo: None,
            failed: false,
            reload_seen: 0,
            last_try: None,
            cancel,
            context_dirty: false,
        }
    }

    fn run(mut self) {
        // Nothing may unwind out of the worker into the host: a panic in the engine becomes an
        // error status and silence.
        let shared = self.shared.clone();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.main_loop()));
        if let Err(panic) = result {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            shared.set_status(Status::Error, format!("the generation worker stopped: {what}"));
        }
        shared.worker_alive.store(false, Ordering::Release);
    }

    fn main_loop(&mut self) {
        loop {
            // Commands first; an idle worker sleeps in the channel.
            let cmd = if self.io.is_none() {
                match self.rx.recv_timeout(Duration::from_millis(50)) {
                    Ok(c) => Some(c),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => return,
                }
            } else {
                self.rx.try_recv().ok()
            };
            match cmd {
                Some(Command::Shutdown) => return,
                Some(Command::Configure(io)) => self.configure(io),
                None => {}
            }
            self.sync_restore();
            self.serve_context();
            self.ensure_model();
            if self.io.is_none() {
                continue;
            }
            self.sync_epoch();
            if let Some(rx) = self.notes_rx.as_mut() {
                self.notes.drain(rx);
                // Only MRT2 reads notes: v1 must not pile them up.
                if !self.models.as_ref().is_some_and(|m| m.generator.family() == mrt::stream::Family::Mrt2) {
                    self.notes.clear();
                }
            }
            if let Some(sc) = self.sidechain.as_mut() {
                if let Err(e) = sc.drain() {
                    self.shared.set_status(Status::Error, format!("sidechain: {e}"));
                }
            }
            self.publish();
            if self.should_generate() {
                self.generate_one();
                self.publish();
            } else {
                match self.rx.recv_timeout(POLL) {
                    Ok(Command::Shutdown) | Err(RecvTimeoutError::Disconnected) => return,
                    Ok(Command::Configure(io)) => self.configure(io),
                    Err(RecvTimeoutError::Timeout) => {}
                }
            }
        }
    }

    fn configure(&mut self, io: WorkerIo) {
        let WorkerIo { host_rate, offline, chunks, sidechain, notes } = io;
        // A new activation: notes of the previous one (held or queued) are gone with its ring.
        self.notes.clear();
        self.notes_rx = Some(notes);
        self.sidechain_embedding = None;
        self.sidechain = match SidechainHistory::new(sidechain, host_rate) {
            Ok(h) => Some(h),
            Err(e) => {
                self.shared.set_status(Status::Error, format!("sidechain: {e}"));
                None
            }
        };
        self.io = Some(ChunkIo { host_rate, offline, chunks });
        // Chunks made for the previous activation (rate, buffers) are useless now.
        self.queue.clear();
        self.published = None;
        self.resampler = None;
    }

    /// The model key the settings ask for.
    fn wanted_key(&self) -> Result<ModelKey, String> {
        crate::params::family_from_env()?;
        let settings = self.params.saved.update(|s| s.settings.clone());
        let device = match settings.device.as_deref().map(str::trim).filter(|d| !d.is_empty()) {
            Some(d) => d.parse::<DeviceChoice>()?,
            None => DeviceChoice::best_compiled().ok_or("no backend is compiled into this build")?,
        };
        let lm = settings.lm_options();
        Ok(ModelKey { family: settings.family, model_dir: settings.model_dir, size: settings.size, device, lm })
    }

    fn ensure_model(&mut self) {
        let key = match self.wanted_key() {
            Ok(k) => k,
            Err(e) => {
                if self.models.is_some() || self.shared.status() != Status::Error {
                    self.models = None;
                    self.key = None;
                    self.shared.set_status(Status::Error, e);
                }
                return;
            }
        };
        self.shared.mrt2.store(key.family == mrt::stream::Family::Mrt2, Ordering::Release);
        let reload = self.shared.reload.load(Ordering::Acquire);
        let retry_missing = self.shared.status() == Status::NotInstalled
            && self.last_try.is_none_or(|t| t.elapsed() >= NOT_INSTALLED_RETRY);
        if reload != self.reload_seen || retry_missing {
            self.reload_seen = reload;
            self.key = None;
        }
        if self.key.as_ref() == Some(&key) {
            return;
        }
        self.last_try = Some(Instant::now());
        if let Some(m) = self.models.take() {
            registry::models().linger(m, MODEL_GRACE);
        }
        self.key = Some(key.clone());
        self.failed = false;
        self.style_cache.clear();
        self.style_memo = None;
        self.shared.set_status(Status::Loading, format!("loading {} {} on {}…", key.family, key.size, key.device));
        *crate::shared::lock(&self.shared.device) = key.device.to_string();
        let progress = LoadProgress::new(&self.shared, &key);
        match registry::models().get_or_load(&key, || registry::load(&key, &progress)) {
            Ok(m) => {
                self.shared.set_status(Status::Ready, m.description.clone());
                if let Some(s) = &self.state {
                    if !state_fits(&m, s) {
                        self.state = None;
                    }
                }
                self.models = Some(m);
            }
            Err(LoadFailure::NotInstalled(msg)) => self.shared.set_status(Status::NotInstalled, msg),
            Err(LoadFailure::Error(msg)) => self.shared.set_status(Status::Error, msg),
        }
    }

    /// Copies the live context into the persisted state.
    fn copy_context(&mut self) {
        let context = self.state.clone();
        self.params.saved.update(|s| s.context = context);
        self.context_dirty = false;
    }

    /// Answers a save's request for the context ([`Shared::request_context`]).
    fn serve_context(&mut self) {
        if let Some(want) = self.shared.context_wanted() {
            if self.context_dirty {
                self.copy_context();
            }
            self.shared.context_served(want);
        }
    }

    /// Picks up a state restored by the host: its generation context continues.
    fn sync_restore(&mut self) {
        let restores = self.params.saved.restores();
        if restores == self.restores_seen {
            return;
        }
        self.restores_seen = restores;
        let saved = self.params.saved.get();
        match saved.normalized() {
            Ok(saved) => {
                self.params.saved.update(|s| *s = saved.clone());
                self.state = saved.context.filter(|s| self.models.as_ref().is_none_or(|m| state_fits(m, s)));
                self.queue.clear();
                self.failed = false;
            }
            Err(msg) => {
                self.params.saved.update(|s| *s = Default::default());
                self.shared.set_status(Status::Error, msg);
            }
        }
    }

    /// A reset asked for by the player: a fresh context, nothing queued.
    fn sync_epoch(&mut self) {
        let epoch = self.shared.epoch.load(Ordering::Acquire);
        if epoch == self.epoch {
            return;
        }
        self.epoch = epoch;
        self.state = None;
        self.context_dirty = true;
        self.sidechain_embedding = None;
        self.queue.clear();
        self.resampler = None;
        self.failed = false;
    }

    /// A chunk sits in the triple buffer that the player has not started.
    fn published_pending(&self) -> bool {
        match self.published {
            Some((seq, epoch)) => epoch == self.epoch && self.shared.started_seq.load(Ordering::Acquire) < seq,
            None => false,
        }
    }

    fn publish(&mut self) {
        if self.published_pending() {
            return;
        }
        let Some(io) = self.io.as_mut() else { return };
        let Some(next) = self.queue.pop_front() else { return };
        io.chunks.input_buffer_mut().fill(next.seq, next.epoch, &next.left, &next.right);
        io.chunks.publish();
        self.published = Some((next.seq, next.epoch));
    }

    fn should_generate(&self) -> bool {
        let Some(io) = self.io.as_ref() else { return false };
        if self.models.is_none() || self.failed {
            return false;
        }
        let ahead = self.queue.len() + usize::from(self.published_pending());
        if io.offline {
            ahead == 0 && self.shared.waiting.load(Ordering::Acquire)
        } else {
            let wanted = match self.models.as_ref().map(|m| m.generator.family()) {
                Some(mrt::stream::Family::Mrt2) => {
                    self.params.frames_ahead.value().clamp(crate::params::FRAMES_AHEAD_MIN, crate::params::FRAMES_AHEAD_MAX)
                }
                _ => self.params.chunks_ahead.value().max(1),
            };
            ahead < wanted as usize
        }
    }

    /// The style codes for the next chunk from the slots and the sidechain; `None` = no style.
    /// Prompt embeddings come from memory, then the project's saved embeddings, then the style
    /// model (and are saved with the project).
    fn style(&mut self, models: &Models) -> Result<(Option<Vec<i32>>, bool), String> {
        let (prompts, mut saved) = self.params.saved.update(|s| (s.prompts.clone(), s.embeddings.clone()));
        let dim = models.style.dim();
        let mut parts: Vec<(Vec<f32>, f32)> = Vec::new();
        let mut recipe: Vec<(String, u32)> = Vec::new();
        // Every filled slot's key (under any weight): the saved embeddings keep these, drop the rest.
        let mut in_slots = Vec::new();
        for (i, prompt) in prompts.iter().enumerate().take(crate::params::SLOTS) {
            let text = prompt.trim();
            if text.is_empty() {
                continue;
            }
            let prompt = mrt::style::Prompt::parse(text);
            let key = crate::params::embedding_key(&models.style_id, &prompt);
            let w = self.params.slot(i).value();
            if w > 0.0 {
                let e = match self.style_cache.get(&key).or_else(|| saved.get(&key)).filter(|e| e.len() == dim) {
                    Some(e) => e.clone(),
                    None => {
                        let e = prompt.embed(&models.style).map_err(|e| format!("slot {} ({}): {e}", i + 1, prompt.label()))?;
                        self.style_cache.insert(key.clone(), e.clone());
                        e
                    }
                };
                saved.insert(key.clone(), e.clone());
                parts.push((e, w));
                recipe.push((key.clone(), w.to_bits()));
            }
            in_slots.push(key);
        }
        saved.retain(|k, _| in_slots.contains(k));
        self.params.saved.update(|s| s.embeddings = saved);
        let sc_weight = self.params.sidechain_weight.value();
        let mut sidechain_used = false;
        if sc_weight > 0.0 {
            if let Some(sc) = self.sidechain.as_mut().filter(|s| s.has_signal()) {
                // Embedding 10 s of audio per 40 ms MRT2 frame would outrun the frames: one
                // embedding serves the blocks of the next second (every block for v1's 2 s).
                let refresh = (1.0 / models.generator.block_seconds()).round().max(1.0) as u64;
                let e = match self.sidechain_embedding.take().filter(|(at, _)| self.next_seq < at + refresh) {
                    Some((at, e)) => (at, e),
                    None => (self.next_seq, models.style.embed_audio_16k(sc.samples(), None).map_err(|e| format!("sidechain style: {e}"))?),
                };
                parts.push((e.1.clone(), sc_weight));
                recipe.push((format!("sidechain {}", e.0), sc_weight.to_bits()));
                self.sidechain_embedding = Some(e);
                sidechain_used = true;
            }
        }
        if let Some((r, tokens)) = &self.style_memo {
            if *r == recipe {
                return Ok((tokens.clone(), sidechain_used));
            }
        }
        let weighted: Vec<mrt::style::Weighted<'_>> =
            parts.iter().map(|(e, w)| mrt::style::Weighted { embedding: e, weight: *w }).collect();
        let blended = mrt::style::blend(&weighted).map_err(|e| format!("style blend: {e}"))?;
        let tokens = match blended {
            Some(b) => Some(models.style.tokenize(&b).map_err(|e| format!("style tokens: {e}"))?),
            None => None,
        };
        self.style_memo = Some((recipe, tokens.clone()));
        Ok((tokens, sidechain_used))
    }

    fn generate_one(&mut self) {
        let (Some(models), Some(io)) = (self.models.clone(), self.io.as_ref()) else { return };
        let host_rate = io.host_rate;
        let started = Instant::now();
        // MRT2: this frame's piano roll from the notes placed up to it (block `next_seq`).
        let roll = match models.generator.family() {
            mrt::stream::Family::Mrt2 => {
                let (onset_mode, unmask_width) = self.params.note_options();
                let roll = self.notes.frame_roll(self.next_seq, onset_mode, unmask_width);
                self.shared.notes_held.store(self.notes.held() as u32, Ordering::Relaxed);
                Some(roll)
            }
            mrt::stream::Family::V1 => None,
        };
        let result = self.style(&models).and_then(|(style, sidechain_used)| {
            let sampling = self.params.sampling();
            let mut state = match self.state.take() {
                Some(s) => s,
                // MRT2 keys its sampler from the seed here; v1 reads it from the controls.
                None => models.generator.init_state_seeded(Some(sampling.seed)),
            };
            let controls = mrt::stream::Controls { style: style.as_deref(), sampling, mrt2: self.params.mrt2_controls(roll.as_ref()) };
            let chunk = models
                .generator
                .next_block(&mut state, &controls, Some(&self.cancel))
                .map_err(|e| format!("generating a block: {}", mrt::error_chain(&e)));
            self.state = Some(state);
            Ok((chunk?, style, sidechain_used))
        });
        let (chunk, style, sidechain_used) = match result {
            Ok(r) => r,
            // Shutting down: not an error worth showing.
            Err(_) if self.cancel.load(Ordering::Acquire) => return,
            Err(msg) => {
                self.failed = true;
                self.shared.set_status(Status::Error, msg);
                return;
            }
        };
        let seconds = started.elapsed().as_secs_f32();

        let from = models.generator.sample_rate();
        if !matches!(&self.resampler, Some((f, t, _)) if *f == from && *t == host_rate) {
            match StreamResampler::new(from, host_rate, 2, RESAMPLE_BLOCK) {
                Ok(r) => self.resampler = Some((from, host_rate, r)),
                Err(e) => {
                    self.failed = true;
                    self.shared.set_status(Status::Error, e);
                    return;
                }
            }
        }
        let n = chunk.samples();
        let left = &chunk.audio[..n];
        let right = if chunk.channels > 1 { &chunk.audio[n..2 * n] } else { left };
        let cap = n * host_rate as usize / from as usize + 4096;
        let mut out = vec![Vec::with_capacity(cap), Vec::with_capacity(cap)];
        if let Some((_, _, r)) = self.resampler.as_mut() {
            if let Err(e) = r.process(&[left, right], &mut out) {
                self.failed = true;
                self.shared.set_status(Status::Error, e);
                return;
            }
        }
        let [l, r]: [Vec<f32>; 2] = out.try_into().unwrap_or_else(|_| [Vec::new(), Vec::new()]);
        let seq = self.next_seq;
        self.next_seq += 1;
        self.queue.push_back(Ready { seq, epoch: self.epoch, left: l, right: r });

        // Persist the context so a saved project continues from here: v1's (a few thousand
        // tokens) after every chunk, MRT2's (megabytes of attention caches) when a save asks.
        self.context_dirty = true;
        if models.generator.family() == mrt::stream::Family::V1 {
            self.copy_context();
        }
        self.shared.set_seconds_per_chunk(seconds);
        self.shared.set_block_seconds(models.generator.block_seconds() as f32);
        self.shared.chunks_generated.fetch_add(1, Ordering::AcqRel);
        let pianoroll = roll.map(|r| r.to_vec());
        self.shared.log_chunk(ChunkInfo { seq, epoch: self.epoch, style_tokens: style, sidechain_used, pianoroll, seconds });
        if self.shared.status() != Status::Ready {
            let desc = models.description.clone();
            self.shared.set_status(Status::Ready, desc);
        }
    }
}

/// Shows a one-time LM conversion in the status line.
struct LoadProgress<'a> {
    shared: &'a Shared,
    prefix: String,
    total: std::sync::atomic::AtomicU64,
    done: std::sync::atomic::AtomicU64,
    shown_percent: std::sync::atomic::AtomicU64,
}

impl<'a> LoadProgress<'a> {
    fn new(shared: &'a Shared, key: &registry::ModelKey) -> Self {
        Self {
            shared,
            prefix: format!("loading {} on {}", key.size, key.device),
            total: Default::default(),
            done: Default::default(),
            shown_percent: std::sync::atomic::AtomicU64::new(u64::MAX),
        }
    }
}

impl mrt::assets::Progress for LoadProgress<'_> {
    fn begin(&self, what: &str, total_bytes: u64) {
        self.total.store(total_bytes, Ordering::Relaxed);
        self.done.store(0, Ordering::Relaxed);
        self.shared.set_status(Status::Loading, format!("{}: {what} (once)…", self.prefix));
    }

    fn advance(&self, bytes: u64) {
        let done = self.done.fetch_add(bytes, Ordering::Relaxed) + bytes;
        let total = self.total.load(Ordering::Relaxed).max(1);
        let percent = (done.min(total) * 100 / total).min(100);
        if self.shown_percent.swap(percent, Ordering::Relaxed) != percent {
            self.shared.set_status(Status::Loading, format!("{}: converting the LM (once) {percent}%", self.prefix));
        }
    }
}

fn state_fits(m: &Models, s: &StreamState) -> bool {
    m.generator.fits(s)
}

