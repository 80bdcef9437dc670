//! NSQ's wire formats, with no I/O: frames, commands, message encoding, IDs, names, IDENTIFY,
//! and the snappy/deflate stream transforms.
//!
//! Everything here is a pure function of bytes, so the broker, the tools and the tests share
//! one definition of what goes over the wire.

pub mod command;
pub mod compress;
pub mod error;
pub mod frame;
pub mod guid;
pub mod identify;
pub mod names;

pub use command::{Command, ParseLimits};
pub use error::ProtocolError;
pub use guid::{GuidFactory, MessageId};
