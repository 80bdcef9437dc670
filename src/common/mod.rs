//! What the daemons (nsqd, nsqlookupd, the admin) and the tools share, and nothing that
//! belongs to one of them: process start/stop and signals, the leveled logger, the tools'
//! stderr and number formatting, NSQ's HTTP API conventions, the one outbound HTTP client, Go
//! flag syntax, the TOML config layer, the clock and the host name.

pub mod config;
pub mod console;
pub mod goflags;
pub mod host;
pub mod http_api;
pub mod http_client;
pub mod log;
pub mod process;
pub mod reclaim;
pub mod time;
