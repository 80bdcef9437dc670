//! An async NSQ client: the producer and consumer the tools are built on, and the V2
//! connection they share with the bench.
//!
//! Behaviour follows go-nsq's conventions (nsq-reference §4.7) so the tools act like the Go
//! tools they replace; `Config::set_opt` takes go-nsq's option names, TLS, snappy/deflate and
//! AUTH included.

// The tools run on this: see crate::console.
#![deny(clippy::print_stdout, clippy::print_stderr)]

pub mod config;
pub mod conn;
pub mod connect;
pub mod consumer;
pub mod lookup;
pub mod producer;
pub mod tls;

pub use config::{AuthSecret, Config};
pub use consumer::{Consumer, ConsumerStats, Message};
pub use producer::{PendingReply, Producer, Publish, PublishError, PublishReceipt};
