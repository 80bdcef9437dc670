//! A running `nsqrs admin` on a free loopback port, and the HTTP calls tests make of it.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::child::{Daemon, Log};
use crate::http::{http_exchange_with, http_request};

/// A running `nsqrs admin` (or any program that logs `[nsqadmin] … HTTP: listening on`);
/// killed when dropped.
pub struct Admin {
    _process: Daemon,
    pub http: String,
    /// Every stderr line so far.
    pub log: Log,
}

impl Admin {
    /// Starts `nsqrs admin` on a free loopback port with `extra` flags (which must name the
    /// lookupd or nsqd to read).
    pub fn start(extra: &[&str]) -> Admin {
        let mut args = vec!["admin".to_string(), "--http-address=127.0.0.1:0".into()];
        args.extend(extra.iter().map(|a| a.to_string()));
        Admin::launch(&crate::bin(), &args)
    }

    /// Runs `program` with exactly `args` and waits until the admin listens.
    pub fn launch(program: &Path, args: &[String]) -> Admin {
        let mut cmd = Command::new(program);
        cmd.args(args).stdout(Stdio::null());
        let mut process = Daemon::spawn(cmd, "admin");
        let http = process.listeners(&["HTTP"], &[]).remove(0).1;
        Admin {
            http,
            log: process.log.clone(),
            _process: process,
        }
    }

    pub fn get(&self, path: &str) -> (u16, String) {
        let (code, body) = http_request(&self.http, "GET", path, b"").expect("http get");
        (code, String::from_utf8_lossy(&body).into_owned())
    }

    /// `GET path`, which must answer 200 with JSON.
    pub fn json(&self, path: &str) -> serde_json::Value {
        let (code, body) = self.get(path);
        assert_eq!(code, 200, "GET {path}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
    }

    /// Sends `method path` with a JSON body and extra header lines; status and body.
    pub fn send(&self, method: &str, path: &str, body: &str, headers: &[(&str, &str)]) -> (u16, String) {
        let mut all = vec![("Content-Type", "application/json")];
        all.extend_from_slice(headers);
        let (code, _, body) =
            http_exchange_with(&self.http, method, path, &all, body.as_bytes()).expect("http send");
        (code, String::from_utf8_lossy(&body).into_owned())
    }
}
