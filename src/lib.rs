//! nsqrs: NSQ rebuilt in Rust. The library behind the `nsqrs` binary.

pub mod archive;
pub mod bench;
pub mod broker;
pub mod client;
pub mod goflags;
pub mod http;
pub mod options;
pub mod protocol;
pub mod server;
