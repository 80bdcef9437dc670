//! A running `nsqrs lookupd` on free loopback ports, its HTTP calls, and a blocking protocol
//! V1 connection as nsqd speaks it.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::child::{Daemon, Log};
use crate::http::http_request;

/// A running `nsqrs lookupd`; killed when dropped.
pub struct Lookupd {
    process: Daemon,
    pub tcp: String,
    pub http: String,
    /// Every stderr line so far.
    pub log: Log,
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
        Lookupd::launch(&crate::bin(), &args)
    }

    /// Runs `program` with exactly `args` (which must bind loopback port 0) and waits until
    /// it serves.
    pub fn launch(program: &Path, args: &[String]) -> Lookupd {
        let mut cmd = Command::new(program);
        cmd.args(args).stdout(Stdio::null());
        let mut process = Daemon::spawn(cmd, "lookupd");
        let listeners = process.listeners(&["TCP", "HTTP"], &[]);
        let addr = |name: &str| {
            listeners
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, a)| a.clone())
                .expect("required")
        };
        Lookupd {
            tcp: addr("TCP"),
            http: addr("HTTP"),
            log: process.log.clone(),
            process,
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

    /// A protocol V1 connection, magic sent.
    /// The lookupd's process id, for reading its memory in /proc.
    pub fn pid(&self) -> u32 {
        self.process.id()
    }

    pub fn connect(&self) -> LookupConn {
        LookupConn::connect(&self.tcp)
    }

    /// SIGTERM, then the exit status (None if it had to be killed).
    pub fn terminate(mut self) -> Option<i32> {
        self.process.terminate(Duration::from_secs(20)).ok().flatten()
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
