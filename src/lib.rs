//! nsqrs: NSQ rebuilt in Rust. The library behind the `nsqrs` binary.

pub mod bench;
pub mod options;
