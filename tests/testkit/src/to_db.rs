//! A running `nsqrs to-db` archiving a topic of a running broker.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::child::Daemon;
use crate::nsqd::Nsqd;

/// A running `nsqrs to-db`; killed when dropped.
pub struct ToDb {
    process: Daemon,
}

impl ToDb {
    pub fn start(n: &Nsqd, topic: &str, db: &str, extra: &[&str]) -> ToDb {
        let mut cmd = Command::new(crate::bin());
        cmd.args([
            "to-db",
            "--topic",
            topic,
            "--nsqd-tcp-address",
            &n.tcp,
            "--db",
            db,
        ])
        .args(extra)
        .stdout(Stdio::null());
        ToDb {
            process: Daemon::spawn(cmd, "to-db"),
        }
    }

    /// SIGTERM, then the exit status; panics if it does not drain and exit within 20 s.
    pub fn terminate(mut self) -> Option<i32> {
        self.process
            .terminate(Duration::from_secs(20))
            .unwrap_or_else(|e| panic!("to-db {e} after SIGTERM"))
    }

    pub fn kill9(mut self) {
        self.process.kill9();
    }
}
