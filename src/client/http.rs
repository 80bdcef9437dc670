//! A one-request-per-connection HTTP/1.1 GET, enough for nsqlookupd's and nsqd's JSON APIs.
//!
//! The tools poll a handful of endpoints every few seconds; a pooled client would buy nothing
//! and cost a dependency tree, so this dials, asks once and hangs up, bounded by NSQ's two
//! client timeouts (connect and whole request).

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// The timeouts every NSQ tool exposes as `--http-client-connect-timeout` and
/// `--http-client-request-timeout`.
#[derive(Debug, Clone, Copy)]
pub struct HttpTimeouts {
    pub connect: Duration,
    pub request: Duration,
}

impl Default for HttpTimeouts {
    fn default() -> Self {
        HttpTimeouts {
            connect: Duration::from_secs(2),
            request: Duration::from_secs(5),
        }
    }
}

/// `host:port` from an address that may carry an `http://` prefix and a trailing slash, as
/// lookupd addresses in go-nsq configurations often do.
pub fn host_port(addr: &str) -> &str {
    let addr = addr.strip_prefix("http://").unwrap_or(addr);
    addr.trim_end_matches('/')
}

/// GETs `path` (with query) from `addr`; returns the status and the whole body.
pub async fn get(
    addr: &str,
    path: &str,
    accept: Option<&str>,
    timeouts: HttpTimeouts,
) -> Result<(u16, Bytes), String> {
    send(addr, "GET", path, accept, None, timeouts).await
}

/// POSTs an empty body to `path` (an admin action), with `Authorization: Bearer <token>`
/// when a token is given; returns the status and the whole body.
pub async fn post(
    addr: &str,
    path: &str,
    bearer: Option<&str>,
    timeouts: HttpTimeouts,
) -> Result<(u16, Bytes), String> {
    send(addr, "POST", path, None, bearer, timeouts).await
}

async fn send(
    addr: &str,
    method: &str,
    path: &str,
    accept: Option<&str>,
    bearer: Option<&str>,
    timeouts: HttpTimeouts,
) -> Result<(u16, Bytes), String> {
    let hp = host_port(addr);
    let stream = tokio::time::timeout(timeouts.connect, TcpStream::connect(hp))
        .await
        .map_err(|_| {
            format!(
                "{method} http://{hp}{path}: connect timed out after {:?}",
                timeouts.connect
            )
        })?
        .map_err(|e| format!("{method} http://{hp}{path}: {e}"))?;
    let request = async {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        // The connection future drives the socket; it ends when the response is read.
        let driver = tokio::spawn(conn);
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, hp);
        if let Some(accept) = accept {
            req = req.header(hyper::header::ACCEPT, accept);
        }
        if let Some(token) = bearer {
            req = req.header(hyper::header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let req = req.body(Empty::<Bytes>::new()).map_err(|e| e.to_string())?;
        let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        driver.abort();
        Ok::<_, String>((status, body))
    };
    tokio::time::timeout(timeouts.request, request)
        .await
        .map_err(|_| {
            format!(
                "{method} http://{hp}{path}: no response within {:?}",
                timeouts.request
            )
        })?
        .map_err(|e| format!("{method} http://{hp}{path}: {e}"))
}

/// GETs and parses JSON, treating any non-2xx status as an error that quotes the body.
pub async fn get_json(
    addr: &str,
    path: &str,
    accept: Option<&str>,
    timeouts: HttpTimeouts,
) -> Result<serde_json::Value, String> {
    let (status, body) = get(addr, path, accept, timeouts).await?;
    if !(200..300).contains(&status) {
        return Err(format!(
            "GET http://{}{path}: status {status}: {}",
            host_port(addr),
            String::from_utf8_lossy(&body).trim()
        ));
    }
    serde_json::from_slice(&body)
        .map_err(|e| format!("GET http://{}{path}: invalid JSON: {e}", host_port(addr)))
}

/// Percent-encodes a query value (topic names are plain, but patterns and channels need not be).
pub fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}
