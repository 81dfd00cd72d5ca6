//! State shared between the audio thread, the generation worker and the editor.
//!
//! The audio thread touches only the atomics. The strings behind mutexes are written by the worker
//! and read by the editor and tests.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::Mutex;

/// Where the worker stands with its model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Status {
    /// No worker has started yet (the plugin was never activated).
    Idle = 0,
    /// The model files are not on disk; [`Shared::message`] names what is missing.
    NotInstalled = 1,
    Loading = 2,
    Ready = 3,
    /// Loading or generating failed; [`Shared::message`] says why. The plugin stays silent.
    Error = 4,
}

impl Status {
    fn from_u8(v: u8) -> Self {
        match v {
            1 => Status::NotInstalled,
            2 => Status::Loading,
            3 => Status::Ready,
            4 => Status::Error,
            _ => Status::Idle,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Status::Idle => "idle",
            Status::NotInstalled => "not installed",
            Status::Loading => "loading",
            Status::Ready => "ready",
            Status::Error => "error",
        }
    }
}

/// What the worker recorded about one generated chunk (for the editor and tests).
#[derive(Clone, Debug, PartialEq)]
pub struct ChunkInfo {
    pub seq: u64,
    pub epoch: u64,
    /// The style codes the chunk was generated with; `None` = no style.
    pub style_tokens: Option<Vec<i32>>,
    /// Whether the sidechain took part in the style.
    pub sidechain_used: bool,
    /// MRT2: the piano roll the frame was generated with (`None` for v1).
    pub pianoroll: Option<Vec<i32>>,
    pub seconds: f32,
}

/// How many [`ChunkInfo`]s are kept.
pub const CHUNK_LOG: usize = 32;

fn f32_atomic(v: f32) -> AtomicU32 {
    AtomicU32::new(v.to_bits())
}

#[derive(Debug)]
pub struct Shared {
    status: AtomicU8,
    /// Human-readable detail of the status (the missing-files message, the error, the model).
    pub message: Mutex<String>,
    /// The device the model runs on, once loaded.
    pub device: Mutex<String>,
    /// The worker thread runs and has not given up.
    pub worker_alive: AtomicBool,
    /// Underruns while playing (the player ran dry).
    pub underruns: AtomicU64,
    /// Sequence number of the chunk the player last started.
    pub started_seq: AtomicU64,
    /// Context epoch; the player bumps it to reset the generation context.
    pub epoch: AtomicU64,
    /// Offline: the player is blocked waiting for the next chunk.
    pub waiting: AtomicBool,
    /// Chunks generated since the worker started.
    pub chunks_generated: AtomicU64,
    seconds_per_chunk: AtomicU32,
    /// Seconds of audio per generated block (the model's block length; v1: 2 s). Written by the
    /// worker, read by the player and the editor.
    block_seconds: AtomicU32,
    buffer_ahead: AtomicU32,
    sidechain_peak: AtomicU32,
    /// Sidechain samples dropped because the worker did not drain the ring in time.
    pub sidechain_dropped: AtomicU64,
    /// Note events dropped because a block had too many or the worker's ring was full (audio
    /// thread writes, editor reads).
    pub notes_dropped: AtomicU64,
    /// Pitches held down as the worker last fed them to MRT2 (worker writes, editor reads).
    pub notes_held: AtomicU32,
    /// The newest chunks' details, oldest first.
    pub chunk_log: Mutex<Vec<ChunkInfo>>,
    /// Bumped to make the worker look for the model again (after a download, or a settings
    /// change made while it was not installed).
    pub reload: AtomicU64,
    /// A model download started from the editor.
    pub download: Download,
    /// The plugin plays MRT2 (the settings' family; main thread and worker write, the audio
    /// thread reads it for the latency it reports).
    pub mrt2: AtomicBool,
    /// Saves asking the worker for its generation context, and the last one it served.
    context_requests: AtomicU64,
    context_served: AtomicU64,
}

/// Progress of a model download started from the editor (written by the download thread).
#[derive(Debug, Default)]
pub struct Download {
    pub active: AtomicBool,
    pub done_bytes: AtomicU64,
    pub total_bytes: AtomicU64,
    /// The file or phase in progress, then the outcome ("" = none yet).
    pub line: Mutex<String>,
    /// The last download failed; `line` says why.
    pub failed: AtomicBool,
}

impl Download {
    /// Fraction done in the current phase (0 when the total is unknown).
    pub fn fraction(&self) -> f32 {
        let total = self.total_bytes.load(Ordering::Relaxed);
        if total == 0 {
            return 0.0;
        }
        (self.done_bytes.load(Ordering::Relaxed) as f64 / total as f64).clamp(0.0, 1.0) as f32
    }

    pub fn line(&self) -> String {
        lock(&self.line).clone()
    }

    pub fn set_line(&self, text: impl Into<String>) {
        *lock(&self.line) = text.into();
    }
}

impl Default for Shared {
    fn default() -> Self {
        Self {
            status: AtomicU8::new(Status::Idle as u8),
            message: Mutex::new(String::new()),
            device: Mutex::new(String::new()),
            worker_alive: AtomicBool::new(false),
            underruns: AtomicU64::new(0),
            started_seq: AtomicU64::new(0),
            epoch: AtomicU64::new(0),
            waiting: AtomicBool::new(false),
            chunks_generated: AtomicU64::new(0),
            seconds_per_chunk: f32_atomic(0.0),
            block_seconds: f32_atomic(2.0),
            buffer_ahead: f32_atomic(0.0),
            sidechain_peak: f32_atomic(0.0),
            sidechain_dropped: AtomicU64::new(0),
            notes_dropped: AtomicU64::new(0),
            notes_held: AtomicU32::new(0),
            chunk_log: Mutex::new(Vec::new()),
            reload: AtomicU64::new(0),
            download: Download::default(),
            mrt2: AtomicBool::new(false),
            context_requests: AtomicU64::new(0),
            context_served: AtomicU64::new(0),
        }
    }
}

/// Locks a mutex even if a panicking thread poisoned it (the data are plain values).
pub fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    pub fn status(&self) -> Status {
        Status::from_u8(self.status.load(Ordering::Acquire))
    }

    /// Sets status and message together (worker side; takes a lock).
    pub fn set_status(&self, status: Status, message: impl Into<String>) {
        *lock(&self.message) = message.into();
        self.status.store(status as u8, Ordering::Release);
    }

    pub fn message(&self) -> String {
        lock(&self.message).clone()
    }

    /// Whether the worker can still produce chunks (thread alive; starting, loading or ready).
    /// Lock-free.
    pub fn can_deliver(&self) -> bool {
        self.worker_alive.load(Ordering::Acquire) && matches!(self.status(), Status::Idle | Status::Loading | Status::Ready)
    }

    pub fn seconds_per_chunk(&self) -> f32 {
        f32::from_bits(self.seconds_per_chunk.load(Ordering::Relaxed))
    }

    pub fn set_seconds_per_chunk(&self, v: f32) {
        self.seconds_per_chunk.store(v.to_bits(), Ordering::Relaxed);
    }

    /// Seconds of audio per generated block.
    pub fn block_seconds(&self) -> f32 {
        f32::from_bits(self.block_seconds.load(Ordering::Relaxed))
    }

    pub fn set_block_seconds(&self, v: f32) {
        self.block_seconds.store(v.to_bits(), Ordering::Relaxed);
    }

    /// Seconds of audio ready to play (the rest of the current chunk plus a published one).
    pub fn buffer_ahead(&self) -> f32 {
        f32::from_bits(self.buffer_ahead.load(Ordering::Relaxed))
    }

    pub fn set_buffer_ahead(&self, v: f32) {
        self.buffer_ahead.store(v.to_bits(), Ordering::Relaxed);
    }

    /// Peak level of the sidechain input (linear, with a release applied by the audio thread).
    pub fn sidechain_peak(&self) -> f32 {
        f32::from_bits(self.sidechain_peak.load(Ordering::Relaxed))
    }

    pub fn set_sidechain_peak(&self, v: f32) {
        self.sidechain_peak.store(v.to_bits(), Ordering::Relaxed);
    }

    /// Asks the worker to copy its generation context into the persisted state and waits for
    /// it, at most `timeout` (main thread, before a save). A worker busy for longer (loading a
    /// model, or in a v1 chunk, whose context it copies after every chunk anyway) leaves the
    /// last copy in place.
    pub fn request_context(&self, timeout: std::time::Duration) {
        if !self.worker_alive.load(Ordering::Acquire) {
            return;
        }
        let want = self.context_requests.fetch_add(1, Ordering::AcqRel) + 1;
        let start = std::time::Instant::now();
        while self.context_served.load(Ordering::Acquire) < want && start.elapsed() < timeout {
            std::thread::sleep(std::time::Duration::from_micros(500));
        }
    }

    /// The newest context request not yet served (worker side), if any.
    pub fn context_wanted(&self) -> Option<u64> {
        let want = self.context_requests.load(Ordering::Acquire);
        (want > self.context_served.load(Ordering::Acquire)).then_some(want)
    }

    /// Marks requests up to `want` as served (after the copy).
    pub fn context_served(&self, want: u64) {
        self.context_served.fetch_max(want, Ordering::AcqRel);
    }

    /// Appends to the chunk log, keeping the newest [`CHUNK_LOG`] entries (worker side).
    pub fn log_chunk(&self, info: ChunkInfo) {
        let mut log = lock(&self.chunk_log);
        if log.len() >= CHUNK_LOG {
            log.remove(0);
        }
        log.push(info);
    }

    pub fn chunk_log(&self) -> Vec<ChunkInfo> {
        lock(&self.chunk_log).clone()
    }
}
