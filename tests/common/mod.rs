//! Shared test harness: starts the real `nsqrs` binary on free loopback ports and talks to it
//! with a minimal blocking V2 client and HTTP client, so tests see exactly what a client sees.
#![allow(dead_code)]

pub mod auth_server;
pub mod http_server;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_nsqrs");

/// A running broker; killed when dropped.
pub struct Nsqd {
    child: Child,
    pub tcp: String,
    pub http: String,
    /// Set when the broker logged an HTTPS listener (it does so before the HTTP one).
    pub https: Option<String>,
    pub data: PathBuf,
    /// Every stderr line so far.
    pub log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    _tmp: Option<tempfile::TempDir>,
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
        Nsqd::launch(Path::new(BIN), &args, data)
    }

    /// Runs `program` with exactly `args` (which must bind port 0 and set the data path), and
    /// waits until it serves.
    pub fn launch(program: &Path, args: &[String], data: &Path) -> Nsqd {
        let mut cmd = Command::new(program);
        cmd.args(args).stdout(Stdio::null()).stderr(Stdio::piped());
        Nsqd::spawn(cmd, data)
    }

    /// Like `start_in`, but no file the broker writes may exceed `max_file_bytes`: writes past
    /// it fail with EFBIG, the way a full disk makes them fail.
    pub fn start_with_file_limit(data: &Path, extra: &[&str], max_file_bytes: u64) -> Nsqd {
        use std::os::unix::process::CommandExt;
        let mut cmd = Command::new(BIN);
        cmd.arg("serve")
            .arg("--tcp-address=127.0.0.1:0")
            .arg("--http-address=127.0.0.1:0")
            .arg("--embedded-lookupd=false")
            .arg("--embedded-admin=false")
            .arg(format!("--data-path={}", data.display()))
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // SAFETY: only async-signal-safe calls (signal, setrlimit) between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
                let lim = libc::rlimit {
                    rlim_cur: max_file_bytes,
                    rlim_max: max_file_bytes,
                };
                if libc::setrlimit(libc::RLIMIT_FSIZE, &lim) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        Nsqd::spawn(cmd, data)
    }

    /// Like `start_in`, with the descriptor limit (RLIMIT_NOFILE) set to `soft`/`hard` for the
    /// broker, as a shell's `ulimit -n` would.
    pub fn start_with_descriptor_limit(data: &Path, extra: &[&str], soft: u64, hard: u64) -> Nsqd {
        use std::os::unix::process::CommandExt;
        let mut cmd = Command::new(BIN);
        cmd.arg("serve")
            .arg("--tcp-address=127.0.0.1:0")
            .arg("--http-address=127.0.0.1:0")
            .arg("--embedded-lookupd=false")
            .arg("--embedded-admin=false")
            .arg(format!("--data-path={}", data.display()))
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // SAFETY: only an async-signal-safe call (setrlimit) between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                let lim = libc::rlimit {
                    rlim_cur: soft,
                    rlim_max: hard,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        Nsqd::spawn(cmd, data)
    }

    /// The broker's process ID (for signals, and for reading its memory in /proc).
    pub fn pid(&self) -> u32 {
        self.child.id()
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

    /// Waits (bounded) until a log line contains `text`; returns it.
    pub fn wait_log(&self, text: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(line) = self.log_lines(text).pop() {
                return line;
            }
            assert!(
                Instant::now() < deadline,
                "no log line with {text:?} within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Spawns `cmd`, whose stderr must be piped (the listeners are read from it), and waits
    /// until the broker serves.
    pub fn spawn(mut cmd: Command, data: &Path) -> Nsqd {
        let mut child = cmd.spawn().expect("spawn nsqrs");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[broker] {line}");
                sink.lock().unwrap().push(line.clone());
                let _ = tx.send(line);
            }
        });
        let (mut tcp, mut http, mut https) = (None, None, None);
        let deadline = Instant::now() + Duration::from_secs(20);
        while tcp.is_none() || http.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = rx.recv_timeout(left).unwrap_or_else(|_| {
                let _ = child.kill();
                panic!("broker did not report its listeners")
            });
            // nsqd's own listeners are logged first; an embedded lookupd's come later.
            if let Some(a) = line.split("TCP: listening on ").nth(1) {
                tcp.get_or_insert_with(|| a.trim().to_string());
            }
            if let Some(a) = line.split("HTTPS: listening on ").nth(1) {
                https.get_or_insert_with(|| a.trim().to_string());
            }
            if let Some(a) = line.split("HTTP: listening on ").nth(1) {
                http.get_or_insert_with(|| a.trim().to_string());
            }
        }
        let n = Nsqd {
            child,
            tcp: tcp.unwrap(),
            http: http.unwrap(),
            https,
            data: data.to_path_buf(),
            log,
            _tmp: None,
        };
        n.wait_ping();
        n
    }

    fn wait_ping(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            match http_request(&self.http, "GET", "/ping", b"") {
                Ok((200, body)) if body == b"OK" => return,
                // Replication degraded (its peers are not up yet): serving all the same.
                Ok((200, body)) if body.starts_with(b"OK - replication") => return,
                Ok((503, body)) if body.starts_with(b"NOK - replication") => return,
                // --tls-required=true refuses plain HTTP once it serves.
                Ok((403, _)) => return,
                _ => {}
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("broker never answered /ping");
    }

    /// SIGKILL: the crash the durability tests are about.
    pub fn kill9(mut self) -> Option<tempfile::TempDir> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self._tmp.take()
    }

    /// SIGTERM, then the exit status.
    pub fn terminate(mut self) -> (Option<i32>, Option<tempfile::TempDir>) {
        // SAFETY: sending a signal to our own child process.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return (status.code(), self._tmp.take());
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                return (None, self._tmp.take());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
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

    /// True once some consumer (to-db with `--events`, say) has a channel on `nsqrs.events`.
    pub fn events_have_a_reader(&self) -> bool {
        self.events_channels() > 0
    }

    /// How many channels of `nsqrs.events` a `to-db --events` reads (by their default names).
    pub fn events_archivers(&self) -> usize {
        self.stats()["topics"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["topic_name"] == "nsqrs.events")
            .flat_map(|t| t["channels"].as_array().cloned().unwrap_or_default())
            .filter(|c| {
                c["channel_name"]
                    .as_str()
                    .is_some_and(|n| n.starts_with("nsqrs_to_db."))
                    && c["client_count"].as_i64() > Some(0)
            })
            .count()
    }

    fn events_channels(&self) -> usize {
        self.stats()["topics"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["topic_name"] == "nsqrs.events")
            .map(|t| t["channels"].as_array().map_or(0, Vec::len))
            .sum()
    }

    pub fn stats(&self) -> serde_json::Value {
        serde_json::from_str(&self.get("/stats?format=json").1).unwrap()
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

impl Drop for Nsqd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `nsqrs args...` with `stdin`, killing it if it outlives `limit`.
pub fn run_tool(args: &[&str], stdin: &[u8], limit: Duration) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin).unwrap();
    drop(input);
    wait_bounded(child, limit)
}

/// Waits for `child` to exit and collects its output; SIGKILL and a panic past `limit`.
pub fn wait_bounded(child: Child, limit: Duration) -> Output {
    // Output is collected on a thread while we wait, so a chatty child never blocks on a full pipe.
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            // SAFETY: signalling our own child process.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            let out = rx.recv().unwrap().unwrap();
            panic!(
                "nsqrs did not exit within {limit:?}; stderr: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

/// A tiny HTTP/1.1 client (one request per connection).
pub fn http_request(addr: &str, method: &str, path: &str, body: &[u8]) -> std::io::Result<(u16, Vec<u8>)> {
    http_exchange(addr, method, path, body).map(|(code, _, body)| (code, body))
}

/// Like `http_request`, also returning the response head (status line and headers).
pub fn http_exchange(
    addr: &str,
    method: &str,
    path: &str,
    body: &[u8],
) -> std::io::Result<(u16, String, Vec<u8>)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes())?;
    // A server may answer before reading all of a body it refuses (nsqd does for a declared
    // length over its limit) and close the connection: the answer is still there to read.
    let sent = s.write_all(body);
    let mut resp = Vec::new();
    let read = s.read_to_end(&mut resp);
    if resp.is_empty() {
        sent?;
        read?;
    }
    let split = resp
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(resp.len());
    let head = String::from_utf8_lossy(&resp[..split]).to_string();
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let mut body = resp[(split + 4).min(resp.len())..].to_vec();
    if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        body = dechunk(&body);
    }
    Ok((code, head, body))
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(nl) = data.windows(2).position(|w| w == b"\r\n") {
        let size =
            usize::from_str_radix(std::str::from_utf8(&data[..nl]).unwrap_or("0").trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        out.extend_from_slice(&data[nl + 2..nl + 2 + size]);
        data = &data[nl + 2 + size + 2..];
    }
    out
}

#[derive(Debug, PartialEq)]
pub enum Frame {
    Response(Vec<u8>),
    Error(String),
    Message {
        timestamp: i64,
        attempts: u16,
        id: String,
        body: Vec<u8>,
    },
}

/// A blocking protocol V2 connection.
pub struct Conn {
    pub s: TcpStream,
}

impl Conn {
    pub fn connect(addr: &str) -> Conn {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(b"  V2").unwrap();
        Conn { s }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).unwrap();
    }

    pub fn cmd(&mut self, line: &str) {
        self.send(format!("{line}\n").as_bytes());
    }

    pub fn cmd_body(&mut self, line: &str, body: &[u8]) {
        let mut out = format!("{line}\n").into_bytes();
        out.extend_from_slice(&(body.len() as u32).to_be_bytes());
        out.extend_from_slice(body);
        self.send(&out);
    }

    pub fn identify(&mut self, json: serde_json::Value) -> Frame {
        self.cmd_body("IDENTIFY", json.to_string().as_bytes());
        self.read_frame().unwrap()
    }

    pub fn mpub(&mut self, topic: &str, bodies: &[Vec<u8>]) {
        let mut body = (bodies.len() as u32).to_be_bytes().to_vec();
        for b in bodies {
            body.extend_from_slice(&(b.len() as u32).to_be_bytes());
            body.extend_from_slice(b);
        }
        self.cmd_body(&format!("MPUB {topic}"), &body);
    }

    /// Reads the next frame, skipping heartbeats (answered with NOP). None on EOF.
    pub fn read_frame(&mut self) -> Option<Frame> {
        loop {
            let mut hdr = [0u8; 8];
            if self.s.read_exact(&mut hdr).is_err() {
                return None;
            }
            let size = u32::from_be_bytes(hdr[0..4].try_into().unwrap()) as usize;
            let kind = i32::from_be_bytes(hdr[4..8].try_into().unwrap());
            let mut data = vec![0u8; size - 4];
            self.s.read_exact(&mut data).ok()?;
            return Some(match kind {
                0 if data == b"_heartbeat_" => {
                    self.cmd("NOP");
                    continue;
                }
                0 => Frame::Response(data),
                1 => Frame::Error(String::from_utf8_lossy(&data).into_owned()),
                _ => Frame::Message {
                    timestamp: i64::from_be_bytes(data[0..8].try_into().unwrap()),
                    attempts: u16::from_be_bytes(data[8..10].try_into().unwrap()),
                    id: String::from_utf8_lossy(&data[10..26]).into_owned(),
                    body: data[26..].to_vec(),
                },
            });
        }
    }

    pub fn expect_ok(&mut self) {
        assert_eq!(self.read_frame(), Some(Frame::Response(b"OK".to_vec())));
    }

    /// True when the server has closed the connection (EOF within the timeout).
    pub fn is_closed(&mut self) -> bool {
        self.s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let mut b = [0u8; 1];
        matches!(self.s.read(&mut b), Ok(0) | Err(_))
            && self
                .s
                .write_all(b"NOP\n")
                .and_then(|_| self.s.read(&mut b))
                .map(|n| n == 0)
                .unwrap_or(true)
    }

    pub fn subscribe(&mut self, topic: &str, channel: &str, rdy: u32) {
        self.cmd(&format!("SUB {topic} {channel}"));
        self.expect_ok();
        self.cmd(&format!("RDY {rdy}"));
    }

    pub fn close(self) {
        let _ = self.s.shutdown(Shutdown::Both);
    }
}

/// A running `nsqrs lookupd`; killed when dropped.
pub struct Lookupd {
    child: Child,
    pub tcp: String,
    pub http: String,
    /// Every stderr line so far.
    pub log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Lookupd {
    /// Starts `nsqrs lookupd` on free loopback ports.
    pub fn start(extra: &[&str]) -> Lookupd {
        let mut args = vec![
            "lookupd".to_string(),
            "--tcp-address=127.0.0.1:0".into(),
            "--http-address=127.0.0.1:0".into(),
        ];
        args.extend(extra.iter().map(|a| a.to_string()));
        Lookupd::launch(Path::new(BIN), &args)
    }

    /// Runs `program` with exactly `args` (which must bind loopback port 0) and waits until
    /// it serves.
    pub fn launch(program: &Path, args: &[String]) -> Lookupd {
        let mut child = Command::new(program)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn nsqrs lookupd");
        let stderr = child.stderr.take().unwrap();
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[lookupd] {line}");
                sink.lock().unwrap().push(line.clone());
                let _ = tx.send(line);
            }
        });
        let (mut tcp, mut http) = (None, None);
        let deadline = Instant::now() + Duration::from_secs(20);
        while tcp.is_none() || http.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = rx.recv_timeout(left).unwrap_or_else(|_| {
                let _ = child.kill();
                let _ = child.wait();
                panic!("lookupd did not report its listeners")
            });
            if let Some(a) = line.split("TCP: listening on ").nth(1) {
                tcp = Some(a.trim().to_string());
            }
            if let Some(a) = line.split("HTTP: listening on ").nth(1) {
                http = Some(a.trim().to_string());
            }
        }
        Lookupd {
            child,
            tcp: tcp.unwrap(),
            http: http.unwrap(),
            log,
        }
    }

    pub fn get(&self, path: &str) -> (u16, String) {
        let (code, body) = http_request(&self.http, "GET", path, b"").expect("http get");
        (code, String::from_utf8_lossy(&body).into_owned())
    }

    pub fn post(&self, path: &str) -> (u16, String) {
        let (code, body) = http_request(&self.http, "POST", path, b"").expect("http post");
        (code, String::from_utf8_lossy(&body).into_owned())
    }

    /// `GET path`, which must answer 200 with JSON.
    pub fn json(&self, path: &str) -> serde_json::Value {
        let (code, body) = self.get(path);
        assert_eq!(code, 200, "GET {path}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
    }

    /// The lookupd's process id, for reading its memory in /proc.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A protocol V1 connection, magic sent.
    pub fn connect(&self) -> LookupConn {
        LookupConn::connect(&self.tcp)
    }

    /// SIGTERM, then the exit status (None if it had to be killed).
    pub fn terminate(mut self) -> Option<i32> {
        // SAFETY: sending a signal to our own child process.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Lookupd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A blocking nsqlookupd protocol V1 connection: replies are `[4-byte size][data]`.
pub struct LookupConn {
    pub s: TcpStream,
}

impl LookupConn {
    pub fn connect(addr: &str) -> LookupConn {
        let mut c = LookupConn::connect_raw(addr);
        c.send(b"  V1");
        c
    }

    /// Connected, nothing sent.
    pub fn connect_raw(addr: &str) -> LookupConn {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        LookupConn { s }
    }

    /// This side's address, which lookupd uses as the peer id and `remote_address`.
    pub fn local_addr(&self) -> String {
        self.s.local_addr().unwrap().to_string()
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).unwrap();
    }

    /// The next reply, or None on EOF.
    pub fn read_reply(&mut self) -> Option<Vec<u8>> {
        let mut size = [0u8; 4];
        self.s.read_exact(&mut size).ok()?;
        let mut data = vec![0u8; u32::from_be_bytes(size) as usize];
        self.s.read_exact(&mut data).ok()?;
        Some(data)
    }

    /// Sends `line` and a newline and returns the reply as text.
    pub fn request(&mut self, line: &str) -> String {
        self.send(format!("{line}\n").as_bytes());
        let reply = self
            .read_reply()
            .unwrap_or_else(|| panic!("no reply to {line:?}"));
        String::from_utf8_lossy(&reply).into_owned()
    }

    /// Sends IDENTIFY with `body` and returns the reply as text.
    pub fn identify_raw(&mut self, body: &[u8]) -> String {
        let mut out = b"IDENTIFY\n".to_vec();
        out.extend_from_slice(&(body.len() as u32).to_be_bytes());
        out.extend_from_slice(body);
        self.send(&out);
        String::from_utf8_lossy(&self.read_reply().expect("no reply to IDENTIFY")).into_owned()
    }

    /// IDENTIFY as an nsqd with this broadcast address and HTTP port; returns lookupd's reply.
    pub fn identify(&mut self, broadcast_address: &str, http_port: u16) -> serde_json::Value {
        let body = serde_json::json!({
            "version": "1.3.0",
            "tcp_port": 4150,
            "http_port": http_port,
            "hostname": format!("{broadcast_address}-host"),
            "broadcast_address": broadcast_address,
            "topology_zone": "zone-1",
            "topology_region": "region-1",
        });
        let reply = self.identify_raw(body.to_string().as_bytes());
        serde_json::from_str(&reply).unwrap_or_else(|e| panic!("IDENTIFY reply {reply:?}: {e}"))
    }

    /// True when the server closes the connection (EOF or reset) within 3 s with nothing
    /// more to say.
    pub fn is_closed(&mut self) -> bool {
        self.s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let mut b = [0u8; 1];
        let closed = match self.s.read(&mut b) {
            Ok(n) => n == 0,
            Err(e) => !matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
        };
        self.s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        closed
    }

    pub fn close(self) {
        let _ = self.s.shutdown(Shutdown::Both);
    }
}

/// Test PKI made fresh for each use: a CA, a server certificate for 127.0.0.1/localhost, a
/// client certificate from that CA, and one from an unrelated CA. Files live in `dir`.
pub struct Certs {
    pub dir: tempfile::TempDir,
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    pub rogue_cert: PathBuf,
    pub rogue_key: PathBuf,
}

impl Certs {
    pub fn new() -> Certs {
        use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, pem: String| {
            let p = dir.path().join(name);
            std::fs::write(&p, pem).unwrap();
            p
        };
        let ca_for = |cn: &str| {
            let key = KeyPair::generate().unwrap();
            let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
            p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            p.distinguished_name.push(DnType::CommonName, cn);
            let cert = p.self_signed(&key).unwrap();
            (cert, key)
        };
        let (ca, ca_key) = ca_for("nsqrs test CA");
        let (rogue_ca, rogue_ca_key) = ca_for("someone else's CA");
        let leaf =
            |names: Vec<String>, cn: &str, usage, issuer: &rcgen::Certificate, issuer_key: &KeyPair| {
                let key = KeyPair::generate().unwrap();
                let mut p = CertificateParams::new(names).unwrap();
                p.distinguished_name.push(DnType::CommonName, cn);
                p.extended_key_usages = vec![usage];
                let cert = p.signed_by(&key, issuer, issuer_key).unwrap();
                (cert.pem(), key.serialize_pem())
            };
        let (server, server_key) = leaf(
            vec!["localhost".into(), "127.0.0.1".into()],
            "localhost",
            ExtendedKeyUsagePurpose::ServerAuth,
            &ca,
            &ca_key,
        );
        let (client, client_key) = leaf(
            vec![],
            "test-client",
            ExtendedKeyUsagePurpose::ClientAuth,
            &ca,
            &ca_key,
        );
        let (rogue, rogue_key) = leaf(
            vec![],
            "rogue-client",
            ExtendedKeyUsagePurpose::ClientAuth,
            &rogue_ca,
            &rogue_ca_key,
        );
        Certs {
            ca: write("ca.pem", ca.pem()),
            server_cert: write("server.pem", server),
            server_key: write("server.key", server_key),
            client_cert: write("client.pem", client),
            client_key: write("client.key", client_key),
            rogue_cert: write("rogue.pem", rogue),
            rogue_key: write("rogue.key", rogue_key),
            dir,
        }
    }

    /// `--tls-cert`/`--tls-key` flags for the broker.
    pub fn server_flags(&self) -> Vec<String> {
        vec![
            format!("--tls-cert={}", self.server_cert.display()),
            format!("--tls-key={}", self.server_key.display()),
            "--https-address=127.0.0.1:0".into(),
        ]
    }
}

/// A running `nsqrs to-db`; killed when dropped.
pub struct ToDb {
    child: Child,
}

impl ToDb {
    pub fn start(n: &Nsqd, topic: &str, db: &str, extra: &[&str]) -> ToDb {
        let mut child = Command::new(BIN)
            .args([
                "to-db",
                "--topic",
                topic,
                "--nsqd-tcp-address",
                &n.tcp,
                "--db",
                db,
            ])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[to-db] {line}");
            }
        });
        ToDb { child }
    }

    pub fn terminate(mut self) -> Option<i32> {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            assert!(Instant::now() < deadline, "to-db did not exit after SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ToDb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running `nsqrs admin` (or any program that logs `[nsqadmin] … HTTP: listening on`);
/// killed when dropped.
pub struct Admin {
    child: Child,
    pub http: String,
    /// Every stderr line so far.
    pub log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Admin {
    /// Starts `nsqrs admin` on a free loopback port with `extra` flags (which must name the
    /// lookupd or nsqd to read).
    pub fn start(extra: &[&str]) -> Admin {
        let mut args = vec!["admin".to_string(), "--http-address=127.0.0.1:0".into()];
        args.extend(extra.iter().map(|a| a.to_string()));
        Admin::launch(Path::new(BIN), &args)
    }

    /// Runs `program` with exactly `args` and waits until the admin listens.
    pub fn launch(program: &Path, args: &[String]) -> Admin {
        let mut child = Command::new(program)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn nsqrs admin");
        let stderr = child.stderr.take().unwrap();
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[admin] {line}");
                sink.lock().unwrap().push(line.clone());
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        let http = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = rx.recv_timeout(left).unwrap_or_else(|_| {
                let _ = child.kill();
                let _ = child.wait();
                panic!("admin did not report its listener")
            });
            if let Some(a) = line.split("HTTP: listening on ").nth(1) {
                break a.trim().to_string();
            }
        };
        Admin { child, http, log }
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
        let mut s = TcpStream::connect(&self.http).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
            self.http,
            body.len()
        );
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        s.write_all(head.as_bytes()).unwrap();
        s.write_all(body.as_bytes()).unwrap();
        let mut resp = Vec::new();
        s.read_to_end(&mut resp).unwrap();
        let split = resp
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or(resp.len());
        let head = String::from_utf8_lossy(&resp[..split]).to_string();
        let code = head
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let mut body = resp[(split + 4).min(resp.len())..].to_vec();
        if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
            body = dechunk(&body);
        }
        (code, String::from_utf8_lossy(&body).into_owned())
    }
}

impl Drop for Admin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `check` every 50 ms until it is true; panics with `what` after `limit`.
pub fn wait_until(limit: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
