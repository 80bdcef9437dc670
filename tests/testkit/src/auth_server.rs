//! A stand-in nsqauthd: answers nsqd's auth requests (GET query or POST form) with fixed grants
//! per secret and records every request, so tests can check what nsqd asked.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

/// One request the auth server received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub params: HashMap<String, String>,
}

pub struct AuthServer {
    pub addr: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

fn decode(s: &str) -> String {
    let s = s.replace('+', " ");
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() + 1 {
            out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

fn form(s: &str) -> HashMap<String, String> {
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

/// Grants by secret: "good" (TTL 1 h) and "short" (TTL 1 s) may publish to topics starting
/// with "allowed" and subscribe there on any channel, and subscribe to "readonly" on channel
/// "ok" only; "none" authenticates with no authorizations; anything else gets a 403.
fn reply_for(secret: &str) -> (u16, String) {
    let grants = r#"[
        {"topic":"^allowed","channels":[".*"],"permissions":["publish","subscribe"]},
        {"topic":"^readonly$","channels":["^ok$"],"permissions":["subscribe"]}]"#;
    match secret {
        "good" => (
            200,
            format!(
                r#"{{"ttl":3600,"identity":"alice","identity_url":"http://id/alice","authorizations":{grants}}}"#
            ),
        ),
        "short" => (
            200,
            format!(r#"{{"ttl":1,"identity":"bob","authorizations":{grants}}}"#),
        ),
        "none" => (
            200,
            r#"{"ttl":3600,"identity":"nobody","authorizations":[]}"#.into(),
        ),
        _ => (403, r#"{"message":"FORBIDDEN"}"#.into()),
    }
}

impl AuthServer {
    pub fn start() -> AuthServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut r = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                if r.read_line(&mut line).is_err() {
                    continue;
                }
                let mut parts = line.split_whitespace();
                let method = parts.next().unwrap_or("").to_string();
                let target = parts.next().unwrap_or("").to_string();
                let mut len = 0;
                loop {
                    let mut h = String::new();
                    if r.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                        break;
                    }
                    if let Some((k, v)) = h.split_once(':') {
                        if k.eq_ignore_ascii_case("content-length") {
                            len = v.trim().parse().unwrap_or(0);
                        }
                    }
                }
                let mut body = vec![0u8; len];
                let _ = r.read_exact(&mut body);
                let (path, query) = target.split_once('?').unwrap_or((&target, ""));
                let params = if method == "POST" {
                    form(&String::from_utf8_lossy(&body))
                } else {
                    form(query)
                };
                let (status, json) = reply_for(params.get("secret").map(String::as_str).unwrap_or(""));
                log.lock().unwrap().push(Seen {
                    method,
                    path: path.to_string(),
                    params,
                });
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{json}",
                    json.len()
                );
            }
        });
        AuthServer { addr, seen }
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}
