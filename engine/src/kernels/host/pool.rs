//! Running work inside rayon's pool (the pool burn-flex and the host kernels share).

/// Runs `f` on a thread of rayon's pool: a step is a chain of ~20–120 parallel products, and
/// from a thread outside the pool each of them would be handed over and waited for (two wake-ups
/// per product); from inside, the calling worker takes its share and the others join it.
pub fn in_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    if rayon::current_thread_index().is_some() {
        return f();
    }
    rayon::scope(|_| f())
}
