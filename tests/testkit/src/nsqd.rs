//! A running `nsqrs serve` on free loopback ports and a temp data directory (or a given one),
//! and the HTTP and TCP calls tests make of it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::child::{Daemon, Log};
use crate::http::{http_exchange, http_request};
use crate::v2::Conn;
use crate::wait::wait_for;

/// A running broker; killed when dropped.
pub struct Nsqd {
    process: Daemon,
    pub tcp: String,
    pub http: String,
    /// Set when the broker logged an HTTPS listener (it does so before the HTTP one).
    pub https: Option<String>,
    pub data: PathBuf,
    /// Every stderr line so far.
    pub log: Log,
    _tmp: Option<tempfile::TempDir>,
}

/// `nsqrs serve` on free loopback ports with `data` as its data path, then `extra`.
fn serve_args(data: &Path, extra: &[&str]) -> Vec<String> {
    let mut args = vec![
        "serve".to_string(),
        "--tcp-address=127.0.0.1:0".into(),
        "--http-address=127.0.0.1:0".into(),
        // Never lookupd's or the admin's fixed ports from a test; tests of the embedded ones
        // ask for them.
        "--embedded-lookupd=false".into(),
        "--embedded-admin=false".into(),
        format!("--data-path={}", data.display()),
    ];
    args.extend(extra.iter().map(|a| a.to_string()));
    args
}

/// A resource limit a test broker starts under.
#[derive(Clone, Copy)]
struct Rlimit {
    resource: libc::__rlimit_resource_t,
    soft: u64,
    hard: u64,
}

impl Nsqd {
    /// Starts `nsqrs serve` on a fresh data directory.
    pub fn start(extra: &[&str]) -> Nsqd {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().to_path_buf();
        let mut n = Nsqd::start_in(&data, extra);
        n._tmp = Some(tmp);
        n
    }

    /// Starts `nsqrs serve` on an existing data directory (restart after a crash).
    pub fn start_in(data: &Path, extra: &[&str]) -> Nsqd {
        Nsqd::launch(&crate::bin(), &serve_args(data, extra), data)
    }

    /// Runs `program` with exactly `args` (which must bind port 0 and set the data path), and
    /// waits until it serves.
    pub fn launch(program: &Path, args: &[String], data: &Path) -> Nsqd {
        let mut cmd = Command::new(program);
        cmd.args(args).stdout(Stdio::null());
        Nsqd::spawn(cmd, data)
    }

    /// Like `start_in`, but no file the broker writes may exceed `max_file_bytes`: writes past
    /// it fail with EFBIG, the way a full disk makes them fail.
    pub fn start_with_file_limit(data: &Path, extra: &[&str], max_file_bytes: u64) -> Nsqd {
        let limit = Rlimit {
            resource: libc::RLIMIT_FSIZE,
            soft: max_file_bytes,
            hard: max_file_bytes,
        };
        Nsqd::start_with_rlimit(data, extra, limit)
    }

    /// Like `start_in`, with the descriptor limit (RLIMIT_NOFILE) set to `soft`/`hard` for the
    /// broker, as a shell's `ulimit -n` would.
    pub fn start_with_descriptor_limit(data: &Path, extra: &[&str], soft: u64, hard: u64) -> Nsqd {
        let limit = Rlimit {
            resource: libc::RLIMIT_NOFILE,
            soft,
            hard,
        };
        Nsqd::start_with_rlimit(data, extra, limit)
    }

    fn start_with_rlimit(data: &Path, extra: &[&str], limit: Rlimit) -> Nsqd {
        use std::os::unix::process::CommandExt;
        let mut cmd = Command::new(crate::bin());
        cmd.args(serve_args(data, extra)).stdout(Stdio::null());
        // SAFETY: only async-signal-safe calls (signal, setrlimit) between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                // Past RLIMIT_FSIZE a write fails with EFBIG instead of killing the process.
                libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
                let lim = libc::rlimit {
                    rlim_cur: limit.soft,
                    rlim_max: limit.hard,
                };
                if libc::setrlimit(limit.resource, &lim) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        Nsqd::spawn(cmd, data)
    }

    /// Spawns `cmd` (its stderr is captured: the listeners are read from it) and waits until
    /// the broker serves.
    pub fn spawn(cmd: Command, data: &Path) -> Nsqd {
        let mut process = Daemon::spawn(cmd, "broker");
        // nsqd's own listeners are logged first (HTTPS before HTTP); an embedded lookupd's
        // come later.
        let listeners = process.listeners(&["TCP", "HTTP"], &["HTTPS"]);
        let addr = |name: &str| listeners.iter().find(|(n, _)| n == name).map(|(_, a)| a.clone());
        let n = Nsqd {
            tcp: addr("TCP").expect("required"),
            http: addr("HTTP").expect("required"),
            https: addr("HTTPS"),
            data: data.to_path_buf(),
            log: process.log.clone(),
            process,
            _tmp: None,
        };
        n.wait_ping();
        n
    }

    fn wait_ping(&self) {
        wait_for("the broker to answer /ping", Duration::from_secs(20), || {
            match http_request(&self.http, "GET", "/ping", b"") {
                Ok((200, body)) => body == b"OK" || body.starts_with(b"OK - replication"),
                // Replication degraded (its peers are not up yet): serving all the same.
                Ok((503, body)) => body.starts_with(b"NOK - replication"),
                // --tls-required=true refuses plain HTTP once it serves.
                Ok((403, _)) => true,
                _ => false,
            }
        });
    }

    /// SIGKILL: the crash the durability tests are about.
    pub fn kill9(mut self) -> Option<tempfile::TempDir> {
        self.process.kill9();
        self._tmp.take()
    }

    /// SIGTERM, then the exit status.
    pub fn terminate(mut self) -> (Option<i32>, Option<tempfile::TempDir>) {
        let code = self.process.terminate(Duration::from_secs(20)).ok().flatten();
        (code, self._tmp.take())
    }

    /// The broker's process id, for signals of a test's own and for reading its memory in
    /// /proc.
    pub fn pid(&self) -> u32 {
        self.process.id()
    }

    /// The log lines so far that contain `text`.
    pub fn log_lines(&self, text: &str) -> Vec<String> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(text))
            .cloned()
            .collect()
    }

    /// Waits (bounded) until a log line contains `text`; returns the latest such line.
    pub fn wait_log(&self, text: &str, limit: Duration) -> String {
        let mut found = None;
        wait_for(&format!("a log line with {text:?}"), limit, || {
            found = self.log_lines(text).pop();
            found.is_some()
        });
        found.expect("waited for")
    }

    pub fn get(&self, path: &str) -> (u16, String) {
        let (code, body) = http_request(&self.http, "GET", path, b"").expect("http get");
        (code, String::from_utf8_lossy(&body).into_owned())
    }

    pub fn post(&self, path: &str, body: &[u8]) -> (u16, String) {
        let (code, body) = http_request(&self.http, "POST", path, body).expect("http post");
        (code, String::from_utf8_lossy(&body).into_owned())
    }

    /// `GET /config/<opt>` as JSON.
    pub fn config(&self, opt: &str) -> serde_json::Value {
        let (code, body) = self.get(&format!("/config/{opt}"));
        assert_eq!(code, 200, "/config/{opt}: {body}");
        serde_json::from_str(&body).unwrap()
    }

    /// Publishes one message over HTTP (`path` is `/pub?topic=…[&defer=…]`) and returns the ID
    /// the broker names in `X-Nsqrs-Message-Id`.
    pub fn pub_for_id(&self, path: &str, body: &[u8]) -> String {
        let (code, head, _) = http_exchange(&self.http, "POST", path, body).expect("http pub");
        assert_eq!(code, 200, "{path}");
        head.lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("x-nsqrs-message-id: ")
                    .map(|id| id.trim().to_string())
            })
            .expect("an X-Nsqrs-Message-Id header")
    }

    /// True once some consumer (to-db with `--events`, say) is subscribed to a channel of
    /// `nsqrs.events`. A channel alone is not enough: one made by `/channel/create` has no
    /// reader, and a reader's own channel only gets what is written after it exists.
    pub fn events_have_a_reader(&self) -> bool {
        self.topic_stats("nsqrs.events")["channels"]
            .as_array()
            .is_some_and(|channels| channels.iter().any(|c| c["client_count"].as_u64() > Some(0)))
    }

    /// How many channels of `nsqrs.events` a `to-db --events` reads (by their default names)
    /// with a subscriber on them.
    pub fn events_archivers(&self) -> usize {
        self.topic_stats("nsqrs.events")["channels"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|c| {
                c["channel_name"]
                    .as_str()
                    .is_some_and(|n| n.starts_with("nsqrs_to_db."))
                    && c["client_count"].as_i64() > Some(0)
            })
            .count()
    }

    pub fn stats(&self) -> serde_json::Value {
        serde_json::from_str(&self.get("/stats?format=json").1).unwrap()
    }

    /// One topic's `/stats` object; `Null` while the topic does not exist.
    pub fn topic_stats(&self, topic: &str) -> serde_json::Value {
        self.stats()["topics"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|t| t["topic_name"] == topic)
            .cloned()
            .unwrap_or_default()
    }

    /// One channel's `/stats` object; `Null` while the channel does not exist.
    pub fn channel_stats(&self, topic: &str, channel: &str) -> serde_json::Value {
        self.topic_stats(topic)["channels"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["channel_name"] == channel)
            .cloned()
            .unwrap_or_default()
    }

    pub fn connect(&self) -> Conn {
        Conn::connect(&self.tcp)
    }
}

/// A field of `/proc/<pid>/status` in KiB (`VmRSS`, `RssAnon`, ...).
pub fn proc_status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}
