//! The one way a test waits: poll the state it needs, bounded, never a fixed sleep. The limit
//! is generous because CI shares its machine: it only bounds a test that has already failed.

use std::time::{Duration, Instant};

const EVERY: Duration = Duration::from_millis(20);

/// Polls `cond` until it holds; panics naming `what` once `limit` has passed.
pub fn wait_for(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(EVERY);
    }
}

/// `wait_for` for async tests: the runtime's threads keep working while it waits.
pub async fn wait_for_async(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(EVERY).await;
    }
}
