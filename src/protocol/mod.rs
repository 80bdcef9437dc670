//! NSQ's wire formats, with no I/O, each encoded and decoded in one place: V2 frames and the
//! message they carry, commands, IDENTIFY, nsqlookupd's V1, the lifecycle events, IDs, names,
//! the snappy/deflate stream transforms, and how a body is written into JSON.
//!
//! Everything here is a pure function of bytes, so the broker, the tools and the tests share
//! one definition of what goes over the wire.

pub mod command;
pub mod compress;
pub mod error;
pub mod events;
pub mod frame;
pub mod guid;
pub mod identify;
pub mod lookup;
pub mod names;

pub use command::{Command, ParseLimits};
pub use error::ProtocolError;
pub use guid::{GuidFactory, MessageId};

/// A message body as the JSON outputs carry it (`tail`/`to-file --format json`, `trace`,
/// `/deferred`): the text when it is UTF-8, base64 otherwise; the flag says which.
pub fn body_text(body: &[u8]) -> (String, bool) {
    use base64::Engine;
    match std::str::from_utf8(body) {
        Ok(text) => (text.to_string(), false),
        Err(_) => (base64::engine::general_purpose::STANDARD.encode(body), true),
    }
}
