//! Giving freed heap memory back to the operating system after connections end.
//!
//! glibc's allocator keeps what a burst of connections freed: their buffers are scattered
//! through its arenas between allocations that live on, and it only returns the free top of
//! a heap. Measured on `nsqrs serve`, each round of 3000 concurrent connections left 20-50 MB
//! more resident memory that never came back, although the live heap after a round was
//! 2-4 MB: retention, not a leak (`malloc_trim` brought 160 MB back to 24 MB). So whenever
//! connections or requests have ended since the last look, a background task asks glibc to
//! release its free pages. It runs at most once a period, off the async workers, and costs
//! about a millisecond on a heap of tens of megabytes.
//!
//! Other allocators were measured for BENCHMARKS.md: mimalloc held more (447 MB peak, 138 MB
//! after 8 rounds), jemalloc returned memory only after its decay time and cost minutes of
//! build; neither beat glibc with a trim.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// How often the reclaimer looks: short enough that memory is back soon after a storm, long
/// enough that steady churn costs nothing measurable.
const PERIOD: Duration = Duration::from_secs(5);

static RELEASED: AtomicU64 = AtomicU64::new(0);
static STARTED: AtomicBool = AtomicBool::new(false);

/// A connection or request ended: what it held is free to be returned.
pub fn note_released() {
    RELEASED.fetch_add(1, Ordering::Relaxed);
}

/// Starts the reclaimer on the current runtime, once per process (a broker and its embedded
/// lookupd share the allocator, so they share the reclaimer).
pub fn start() {
    if STARTED.swap(true, Ordering::AcqRel) {
        return;
    }
    tokio::spawn(async {
        let mut seen = RELEASED.load(Ordering::Relaxed);
        let mut tick = tokio::time::interval(PERIOD);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let now = RELEASED.load(Ordering::Relaxed);
            if now != seen {
                seen = now;
                let _ = tokio::task::spawn_blocking(release_free_memory).await;
            }
        }
    });
}

/// Returns the allocator's free pages to the OS.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn release_free_memory() {
    // SAFETY: malloc_trim only walks glibc's own arenas under their locks; any thread may
    // call it at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Other allocators (musl's, the BSDs') return freed memory on their own.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn release_free_memory() {}
