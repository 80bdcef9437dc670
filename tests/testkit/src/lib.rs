//! What nsqrs's integration tests drive the real `nsqrs` binary with, one module per thing
//! driven, each built once (not compiled into every test):
//!
//! - `child`: the one wrapper of a child process (stderr echoed and kept, SIGTERM with a
//!   bounded wait, SIGKILL, killed on drop), and running a tool to completion with a limit.
//! - `nsqd`, `lookupd`, `admin`, `to_db`: the daemons, started on free loopback ports and temp dirs.
//! - `v2`, `http`: blocking protocol V2 and HTTP/1.1 clients that see exactly what a client
//!   sees; `lookupd` has the V1 one.
//! - `wait`: the one bounded poll every test waits with.
//! - `certs`, `auth_server`: a test PKI and a stand-in nsqauthd.
//! - `http_server`: an HTTP(S) endpoint that records requests, for `to-http`.
//! - `fuzz`: case budgets, replayable seeds, mutated inputs and allocation counting.

pub mod admin;
pub mod auth_server;
pub mod certs;
pub mod child;
pub mod fuzz;
pub mod http;
pub mod http_server;
pub mod lookupd;
pub mod nsqd;
pub mod to_db;
pub mod v2;
pub mod wait;

use std::path::PathBuf;

pub use admin::Admin;
pub use certs::Certs;
pub use child::{run_tool, wait_bounded, wait_exit, Daemon};
pub use http::{http_exchange, http_exchange_with, http_request};
pub use http_server::HttpServer;
pub use lookupd::{LookupConn, Lookupd};
pub use nsqd::{proc_status_kib, Nsqd};
pub use to_db::ToDb;
pub use v2::{Conn, Frame};
pub use wait::{wait_for, wait_for_async};

/// The `nsqrs` binary cargo built for the test being run: integration tests run from
/// `target/<profile>/deps/`, and cargo builds the package's binaries beside that folder
/// before it runs them.
pub fn bin() -> PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("tests run from target/<profile>/deps");
    let bin = dir.join("nsqrs");
    assert!(bin.exists(), "no nsqrs binary at {}", bin.display());
    bin
}
