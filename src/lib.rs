//! nsqrs: NSQ rebuilt in Rust. The library behind the `nsqrs` binary.

pub mod admin;
pub mod archive;
pub mod bench;
pub mod broker;
pub mod client;
pub mod console;
pub mod forward;
pub mod goflags;
pub mod http;
pub mod http_client;
pub mod lookup;
pub mod options;
pub mod protocol;
pub mod replication;
pub mod server;
