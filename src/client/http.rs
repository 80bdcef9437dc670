//! One-request-per-connection HTTP/1.1, enough for nsqlookupd's and nsqd's JSON APIs: GETs
//! for the tools, and POSTs with a bearer token (over TLS for `https://` addresses) for the
//! admin's actions.
//!
//! The tools poll a handful of endpoints every few seconds; a pooled client would buy nothing
//! and cost a dependency tree, so this dials, asks once and hangs up, bounded by NSQ's two
//! client timeouts (connect and whole request).

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
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

/// `host:port` from an address that may carry an `http://` (or `https://`) prefix and a trailing slash, as
/// lookupd addresses in go-nsq configurations often do.
pub fn host_port(addr: &str) -> &str {
    let addr = addr
        .strip_prefix("http://")
        .or_else(|| addr.strip_prefix("https://"))
        .unwrap_or(addr);
    addr.trim_end_matches('/')
}

/// One outbound request beyond a plain GET: method, headers and body, and TLS when the
/// address says `https://`.
#[derive(Debug, Clone, Default)]
pub struct Request<'a> {
    pub method: &'a str,
    /// Path and query.
    pub path: &'a str,
    pub accept: Option<&'a str>,
    /// Sent as `Authorization: Bearer <token>`.
    pub bearer: Option<&'a str>,
    pub content_type: Option<&'a str>,
    pub body: Bytes,
    /// Needed for `https://` addresses; a plain address ignores it.
    pub tls: Option<std::sync::Arc<rustls::ClientConfig>>,
}

/// Checks an HTTP address as every tool takes it: `host:port`, or `http://host:port` with an
/// optional trailing slash (how go-nsq configurations often spell lookupd addresses). Other
/// schemes, paths and missing ports are refused here, before anything connects.
pub fn check_http_address(addr: &str) -> Result<(), String> {
    let bad = |why: &str| {
        Err(format!(
            "address {addr:?} {why}: give host:port or http://host:port"
        ))
    };
    // The tools speak plain HTTP only: `https://` is refused with the other schemes.
    let hp = addr.strip_prefix("http://").unwrap_or(addr).trim_end_matches('/');
    if let Some((scheme, _)) = hp.split_once("://") {
        return bad(&format!("has the scheme {scheme}://, which is not supported"));
    }
    if hp.contains('/') {
        return bad("has a path");
    }
    match hp.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(()),
        _ => bad("has no port"),
    }
}

/// GETs `path` (with query) from `addr`; returns the status and the whole body.
pub async fn get(
    addr: &str,
    path: &str,
    accept: Option<&str>,
    timeouts: HttpTimeouts,
) -> Result<(u16, Bytes), String> {
    let req = Request {
        method: "GET",
        path,
        accept,
        ..Request::default()
    };
    send(addr, &req, timeouts).await
}

/// Sends `req` to `addr` (`host:port`, `http://host:port` or `https://host:port`); returns
/// the status and the whole body.
pub async fn send(addr: &str, req: &Request<'_>, timeouts: HttpTimeouts) -> Result<(u16, Bytes), String> {
    let https = addr.starts_with("https://");
    let hp = host_port(addr);
    let scheme = if https { "https" } else { "http" };
    let (method, path) = (req.method, req.path);
    let what = || format!("{method} {scheme}://{hp}{path}");
    let stream = tokio::time::timeout(timeouts.connect, TcpStream::connect(hp))
        .await
        .map_err(|_| format!("{}: connect timed out after {:?}", what(), timeouts.connect))?
        .map_err(|e| format!("{}: {e}", what()))?;
    let exchange = async {
        if https {
            let config = req
                .tls
                .clone()
                .ok_or_else(|| "no TLS configuration for an https:// address".to_string())?;
            let host = hp.rsplit_once(':').map_or(hp, |(h, _)| h);
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let name = rustls::pki_types::ServerName::try_from(host.to_string())
                .map_err(|e| format!("bad TLS server name {host:?}: {e}"))?;
            let tls = tokio_rustls::TlsConnector::from(config)
                .connect(name, stream)
                .await
                .map_err(|e| format!("TLS handshake: {e}"))?;
            exchange(TokioIo::new(tls), hp, req).await
        } else {
            exchange(TokioIo::new(stream), hp, req).await
        }
    };
    tokio::time::timeout(timeouts.request, exchange)
        .await
        .map_err(|_| format!("{}: no response within {:?}", what(), timeouts.request))?
        .map_err(|e| format!("{}: {e}", what()))
}

async fn exchange<S>(io: TokioIo<S>, host: &str, r: &Request<'_>) -> Result<(u16, Bytes), String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| e.to_string())?;
    // The connection future drives the socket; it ends when the response is read.
    let driver = tokio::spawn(conn);
    let mut req = hyper::Request::builder()
        .method(r.method)
        .uri(r.path)
        .header(hyper::header::HOST, host);
    if let Some(accept) = r.accept {
        req = req.header(hyper::header::ACCEPT, accept);
    }
    if let Some(token) = r.bearer {
        req = req.header(hyper::header::AUTHORIZATION, format!("Bearer {token}"));
    }
    if let Some(ct) = r.content_type {
        req = req.header(hyper::header::CONTENT_TYPE, ct);
    }
    let req = req.body(Full::new(r.body.clone())).map_err(|e| e.to_string())?;
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    driver.abort();
    Ok((status, body))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_addresses_with_or_without_the_scheme() {
        for good in [
            "127.0.0.1:4161",
            "http://127.0.0.1:4161",
            "http://lookupd:4161/",
            "[::1]:4161",
        ] {
            assert!(check_http_address(good).is_ok(), "{good}");
            assert!(!host_port(good).contains("http"), "{good}");
        }
        for (bad, why) in [
            ("https://h:4161", "scheme https://"),
            ("h:4161/stats", "path"),
            ("h", "no port"),
            ("http://h:port", "no port"),
            (":4161", "no port"),
        ] {
            let e = check_http_address(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }
}
