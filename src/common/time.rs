//! The wall clock in NSQ's unit: nanoseconds since the Unix epoch, which message timestamps,
//! IDs, `/stats`, lookupd's last-update times and the archive all use.

use std::time::{SystemTime, UNIX_EPOCH};

/// Nanoseconds since the Unix epoch; 0 if the clock is set before 1970.
pub fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}
