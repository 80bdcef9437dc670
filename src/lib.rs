//! nsqrs: NSQ rebuilt in Rust. The library behind the `nsqrs` binary.

pub mod goflags;
pub mod options;
