//! Message history: the archive `to-db` fills and `trace` and `replay` read.
//!
//! One logical schema lives in SQLite (the embedded default) or PostgreSQL (a cluster-wide
//! archive); everything above `store` is written once against it.

// The tools run on this: see crate::console.
#![deny(clippy::print_stdout, clippy::print_stderr)]

pub mod events;
pub mod replay;
pub mod replayer;
pub mod schema;
pub mod store;
pub mod trace;

pub use store::{EventRow, MessageRow, Store};
