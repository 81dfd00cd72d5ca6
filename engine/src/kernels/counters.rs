//! Counters of the device work a decode issues: kernel dispatches, blocking host syncs, and the
//! bytes that cross between host and device (issue 17, item 5). `mrt bench` turns them on for one
//! chunk; everything else runs with them off, where a readback or an upload pays one relaxed
//! atomic load.
//!
//! ```text
//!  cubecl LaunchObserver ── launched() ─────────► dispatches     (wgpu/cuda; absent on flex)
//!  burn-fusion FusionObserver ── registered/ran ─► burn ops, fused blocks
//!  read_back(tensor) ── into_data ──────────────► syncs, d2h bytes, time blocked
//!  upload(data) ── from_data ───────────────────► uploads, h2d bytes
//!            all attributed to the current Part (encoder | temporal | depth | sampling | other)
//! ```
//!
//! Every `into_data` on the decode path goes through [`read_back`] and every `from_data` of ids
//! or activations through [`upload`], so the counts are the code's own, not estimates.
//!
//! Process-wide: the launch observer sees launches from every thread (the fusion server issues
//! kernels on its own), so only one [`Counting`] may be live at a time; a second one waits.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Instant;

use burn::tensor::kind::Basic;
use burn::tensor::{Device, Tensor, TensorData};

/// The part of the decode loop device work is attributed to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// Encoder and the cross-attention keys/values (once per chunk).
    Encoder = 0,
    Temporal = 1,
    /// Depth steps including the logits and their readback.
    Depth = 2,
    /// CFG combine, top-k and the draw.
    Sampling = 3,
    /// Anything outside a decode loop (loading, the codec).
    Other = 4,
}

const PARTS: usize = 5;

#[derive(Default)]
struct Cells {
    dispatches: [AtomicU64; PARTS],
    syncs: [AtomicU64; PARTS],
    d2h_bytes: [AtomicU64; PARTS],
    uploads: [AtomicU64; PARTS],
    h2d_bytes: [AtomicU64; PARTS],
    burn_ops: [AtomicU64; PARTS],
    fused_blocks: [AtomicU64; PARTS],
    /// Host time from the end of one sync (or the start) to the last launch before the next.
    issue_ns: AtomicU64,
    /// Time spent blocked in [`read_back`] after the last launch.
    wait_ns: AtomicU64,
}

static COUNTING: AtomicBool = AtomicBool::new(false);
/// Launches are being recorded into a graph ([`recording`]), and how many so far.
static RECORDING: AtomicBool = AtomicBool::new(false);
static RECORDED: AtomicU64 = AtomicU64::new(0);
static PART: AtomicUsize = AtomicUsize::new(Part::Other as usize);
/// Drain the device at part boundaries, so lazily fused work lands in the part that issued it.
static BARRIERS: AtomicBool = AtomicBool::new(false);
/// Nanoseconds since [`epoch`] at the start of the current segment (after the last sync).
static SEGMENT_START_NS: AtomicU64 = AtomicU64::new(0);
/// Nanoseconds since [`epoch`] of the latest launch (0: none in this segment).
static LAST_LAUNCH_NS: AtomicU64 = AtomicU64::new(0);

fn cells() -> &'static Cells {
    static CELLS: OnceLock<Cells> = OnceLock::new();
    CELLS.get_or_init(Cells::default)
}

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn now_ns() -> u64 {
    epoch().elapsed().as_nanos() as u64
}

fn part() -> usize {
    PART.load(Relaxed)
}

/// Whether a [`Counting`] is live.
pub fn counting() -> bool {
    COUNTING.load(Relaxed)
}

/// Reads `tensor` back to the host: the one readback of the engine's device paths. Counts one
/// blocking sync and its bytes while counting.
pub fn read_back<const D: usize, K: Basic>(tensor: Tensor<D, K>) -> TensorData {
    if !counting() {
        return tensor.into_data();
    }
    let data = tensor.into_data();
    let end = now_ns();
    let c = cells();
    let p = part();
    c.syncs[p].fetch_add(1, Relaxed);
    c.d2h_bytes[p].fetch_add(data.as_bytes().len() as u64, Relaxed);
    close_segment(end);
    data
}

/// A blocking read of `bytes` bytes done by `read` (the GPU path's raw buffer reads): counted
/// like [`read_back`].
pub fn time_sync<T>(bytes: usize, read: impl FnOnce() -> T) -> T {
    let out = read();
    if counting() {
        let end = now_ns();
        let c = cells();
        let p = part();
        c.syncs[p].fetch_add(1, Relaxed);
        c.d2h_bytes[p].fetch_add(bytes as u64, Relaxed);
        close_segment(end);
    }
    out
}

/// Launches recorded into a graph are not executed: while `on`, they are counted aside, and
/// turning it off returns how many there were (to be added per replay, [`note_dispatches`]).
pub fn recording(on: bool) -> u64 {
    RECORDING.store(on, Relaxed);
    if on {
        RECORDED.store(0, Relaxed);
        0
    } else {
        RECORDED.load(Relaxed)
    }
}

/// `n` dispatches executed without being issued (a graph replay): counted into the current part.
pub fn note_dispatches(n: u64) {
    if counting() {
        cells().dispatches[part()].fetch_add(n, Relaxed);
        LAST_LAUNCH_NS.store(now_ns(), Relaxed);
    }
}

/// An upload of `bytes` bytes into a raw device buffer (the GPU path): counted like [`upload`].
pub fn note_upload(bytes: usize) {
    if counting() {
        let c = cells();
        let p = part();
        c.uploads[p].fetch_add(1, Relaxed);
        c.h2d_bytes[p].fetch_add(bytes as u64, Relaxed);
    }
}

/// Ends a segment at a sync that returned at `end`: the host issued until the last launch (or,
/// without launches, until the sync), and waited from then on.
fn close_segment(end: u64) {
    let c = cells();
    let start = SEGMENT_START_NS.swap(end, Relaxed);
    let last = LAST_LAUNCH_NS.swap(0, Relaxed);
    let issued_until = if last > start { last.min(end) } else { end };
    c.issue_ns.fetch_add(issued_until.saturating_sub(start), Relaxed);
    c.wait_ns.fetch_add(end.saturating_sub(issued_until), Relaxed);
}

/// Uploads `data` to `device`: every host → device copy of ids and activations on the decode
/// path. Counts one upload and its bytes while counting.
pub fn upload<const D: usize, K: Basic>(data: TensorData, device: &Device) -> Tensor<D, K> {
    if counting() {
        let c = cells();
        let p = part();
        c.uploads[p].fetch_add(1, Relaxed);
        c.h2d_bytes[p].fetch_add(data.as_bytes().len() as u64, Relaxed);
    }
    Tensor::from_data(data, device)
}

/// The decode loop enters `part`. While counting with barriers, the device is drained first
/// (not counted as a sync: production runs without it) so that work fused lazily lands in the
/// part that issued it.
pub fn enter(part: Part, device: &Device) {
    if !counting() {
        return;
    }
    if BARRIERS.load(Relaxed) {
        let _ = device.sync();
        close_segment(now_ns());
    }
    // Host sampling between a readback and the next step is not issue time.
    if PART.swap(part as usize, Relaxed) == Part::Sampling as usize && part != Part::Sampling {
        LAST_LAUNCH_NS.store(0, Relaxed);
        SEGMENT_START_NS.store(now_ns(), Relaxed);
    }
}

/// Counts of one part (or all parts) between two [`Counting::snapshot`]s.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct PartCounts {
    /// Kernel dispatches issued; `None` where the device has no launch observer (flex).
    pub dispatches: Option<u64>,
    /// Blocking device → host readbacks.
    pub syncs: u64,
    pub d2h_bytes: u64,
    /// Host → device copies (ids, activations).
    pub uploads: u64,
    pub h2d_bytes: u64,
    /// burn operations registered with the fusion server and blocks it ran (one fused kernel's
    /// worth of operations, or one unfused operation); `None` without fusion (flex).
    pub burn_ops: Option<u64>,
    pub fused_blocks: Option<u64>,
}

/// Every counter at one moment.
#[derive(Clone, Copy, Debug, Default)]
pub struct Snapshot {
    parts: [[u64; 7]; PARTS],
    issue_ns: u64,
    wait_ns: u64,
    observed: bool,
}

impl Snapshot {
    fn take(observed: bool) -> Self {
        let c = cells();
        let mut parts = [[0u64; 7]; PARTS];
        for (p, row) in parts.iter_mut().enumerate() {
            *row = [
                c.dispatches[p].load(Relaxed),
                c.syncs[p].load(Relaxed),
                c.d2h_bytes[p].load(Relaxed),
                c.uploads[p].load(Relaxed),
                c.h2d_bytes[p].load(Relaxed),
                c.burn_ops[p].load(Relaxed),
                c.fused_blocks[p].load(Relaxed),
            ];
        }
        Self { parts, issue_ns: c.issue_ns.load(Relaxed), wait_ns: c.wait_ns.load(Relaxed), observed }
    }

    /// The counts of `part` (`None`: all parts) since `earlier`.
    pub fn part_since(&self, earlier: &Snapshot, part: Option<Part>) -> PartCounts {
        let mut d = [0u64; 7];
        for p in 0..PARTS {
            if part.is_some_and(|q| q as usize != p) {
                continue;
            }
            for (i, v) in d.iter_mut().enumerate() {
                *v += self.parts[p][i] - earlier.parts[p][i];
            }
        }
        let observed = |v: u64| self.observed.then_some(v);
        PartCounts {
            dispatches: observed(d[0]),
            syncs: d[1],
            d2h_bytes: d[2],
            uploads: d[3],
            h2d_bytes: d[4],
            burn_ops: observed(d[5]),
            fused_blocks: observed(d[6]),
        }
    }

    /// Host issue time since `earlier`, seconds: from each sync's return (or the start) to the
    /// last launch before the next sync.
    pub fn issue_s_since(&self, earlier: &Snapshot) -> f64 {
        (self.issue_ns - earlier.issue_ns) as f64 / 1e9
    }

    /// Time blocked in readbacks after the last launch since `earlier`, seconds.
    pub fn wait_s_since(&self, earlier: &Snapshot) -> f64 {
        (self.wait_ns - earlier.wait_ns) as f64 / 1e9
    }
}

/// Turns the counters on until dropped; installs the launch and fusion observers on devices
/// that have them. One at a time per process.
pub struct Counting {
    observed: bool,
    #[cfg(any(feature = "wgpu", feature = "cuda"))]
    _observers: Option<(burn::cubecl::logging::LaunchObservation, burn::backend::fusion::observer::FusionObservation)>,
    _one_at_a_time: MutexGuard<'static, ()>,
}

impl Counting {
    /// Starts counting. `observe`: install the launch and fusion observers (a cube device; on
    /// flex dispatches are not meaningful and stay absent). `barriers`: drain the device at part
    /// boundaries ([`enter`]).
    pub fn start(observe: bool, barriers: bool) -> Self {
        static ONE: Mutex<()> = Mutex::new(());
        let guard = ONE.lock().unwrap_or_else(|p| p.into_inner());
        #[cfg(any(feature = "wgpu", feature = "cuda"))]
        let observers = observe.then(|| {
            let observer = std::sync::Arc::new(Observer);
            (burn::cubecl::logging::LaunchObservation::new(observer.clone()), burn::backend::fusion::observer::FusionObservation::new(observer))
        });
        #[cfg(not(any(feature = "wgpu", feature = "cuda")))]
        let observe = {
            let _ = observe;
            false
        };
        BARRIERS.store(barriers, Relaxed);
        PART.store(Part::Other as usize, Relaxed);
        LAST_LAUNCH_NS.store(0, Relaxed);
        SEGMENT_START_NS.store(now_ns(), Relaxed);
        COUNTING.store(true, Relaxed);
        Self {
            observed: observe,
            #[cfg(any(feature = "wgpu", feature = "cuda"))]
            _observers: observers,
            _one_at_a_time: guard,
        }
    }

    /// Every counter now.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot::take(self.observed)
    }

    /// Starts a new issue segment now (after a sync the counters did not see, e.g. a timing
    /// barrier), so the time before it is not counted as issue time.
    pub fn restart_segment(&self) {
        LAST_LAUNCH_NS.store(0, Relaxed);
        SEGMENT_START_NS.store(now_ns(), Relaxed);
    }

    /// Closes the open segment at a sync the caller just did (the end of a chunk).
    pub fn close_segment(&self) {
        close_segment(now_ns());
    }
}

impl Drop for Counting {
    fn drop(&mut self) {
        COUNTING.store(false, Relaxed);
        BARRIERS.store(false, Relaxed);
        PART.store(Part::Other as usize, Relaxed);
    }
}

/// Counts launches and fusion work into the current part.
#[cfg(any(feature = "wgpu", feature = "cuda"))]
struct Observer;

#[cfg(any(feature = "wgpu", feature = "cuda"))]
impl burn::cubecl::logging::LaunchObserver for Observer {
    fn launched(&self, _kernel: &'static str) {
        if RECORDING.load(Relaxed) {
            RECORDED.fetch_add(1, Relaxed);
            return;
        }
        cells().dispatches[part()].fetch_add(1, Relaxed);
        LAST_LAUNCH_NS.store(now_ns(), Relaxed);
    }
}

#[cfg(any(feature = "wgpu", feature = "cuda"))]
impl burn::backend::fusion::observer::FusionObserver for Observer {
    fn registered(&self, _operation: &burn::backend::fusion::custom::OperationIr) {
        cells().burn_ops[part()].fetch_add(1, Relaxed);
    }
    fn block_starts(&self, _block: burn::backend::fusion::observer::BlockOperations<'_>) {
        cells().fused_blocks[part()].fetch_add(1, Relaxed);
    }
    fn block_ran(&self) {}
}
