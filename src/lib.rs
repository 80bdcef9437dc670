//! nsqrs: NSQ rebuilt in Rust. The library behind the `nsqrs` binary.

pub mod admin;
pub mod archive;
pub mod bench;
pub mod client;
pub mod common;
pub mod nsqd;
pub mod nsqlookupd;
pub mod protocol;
pub mod replication;
pub mod tools;
