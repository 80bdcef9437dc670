//! Forwarding consumed messages elsewhere, for `nsqrs to-nsq` (another nsqd) and `nsqrs
//! to-http` (HTTP endpoints): which destination gets a message, which JSON messages pass,
//! the HTTP requests, and the status line that says how it goes.
//!
//! The contract both tools keep: a message is finished only after a destination accepted it;
//! a failure requeues it with the consumer's backoff, so it is tried again later, never lost.

// The tools run on this: see crate::common::console.
#![deny(clippy::print_stdout, clippy::print_stderr)]

pub mod filter;
pub mod http;
pub mod pool;
pub mod status;
