//! The one outbound HTTP/1.1 client: nsqd asking lookupd for channels and auth servers for
//! permissions, the tools asking nsqd and lookupd for stats, topics and producers.
//!
//! Every caller asks a handful of endpoints now and then, so a request dials, asks once and
//! hangs up: a pool would buy nothing. Each request is bounded by NSQ's two client timeouts
//! (`--http-client-connect-timeout`, `--http-client-request-timeout`) and its reply by a size
//! limit, so a slow or hostile server costs at most that much time and memory.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// The `Accept` header of NSQ's "V1" HTTP API (nsq-reference §1.9).
pub const ACCEPT_NSQ_V1: &str = "application/vnd.nsq; version=1.0";

/// Largest reply body read unless a caller sets its own limit; a /stats of a busy cluster is a
/// few MiB.
const DEFAULT_MAX_BODY: usize = 64 << 20;

/// The timeouts every NSQ daemon and tool exposes as `--http-client-connect-timeout` and
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

/// One request: `url` is `http://host:port/path?query` (or `https://` with a TLS
/// configuration); a URL without a scheme is plain HTTP.
pub struct Request<'a> {
    pub method: &'static str,
    pub url: &'a str,
    pub headers: &'a [(&'a str, &'a str)],
    pub body: Bytes,
}

/// A reply of any status, with its whole body.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub body: Bytes,
}

#[derive(Clone)]
pub struct HttpClient {
    timeouts: HttpTimeouts,
    tls: Option<Arc<rustls::ClientConfig>>,
    max_body: usize,
}

impl HttpClient {
    pub fn new(timeouts: HttpTimeouts) -> HttpClient {
        HttpClient {
            timeouts,
            tls: None,
            max_body: DEFAULT_MAX_BODY,
        }
    }

    /// Allows `https://` URLs, verified with `tls`.
    pub fn with_tls(mut self, tls: Arc<rustls::ClientConfig>) -> HttpClient {
        self.tls = Some(tls);
        self
    }

    /// Refuses replies whose body is longer than `max_body` bytes.
    pub fn with_max_body(mut self, max_body: usize) -> HttpClient {
        self.max_body = max_body;
        self
    }

    /// GETs `url`, with an `Accept` header when given.
    pub async fn get(&self, url: &str, accept: Option<&str>) -> Result<Response, String> {
        let accept_header = accept.map(|a| [("Accept", a)]);
        self.send(Request {
            method: "GET",
            url,
            headers: accept_header.as_ref().map_or(&[], |h| &h[..]),
            body: Bytes::new(),
        })
        .await
    }

    /// GETs and parses JSON; any status but 2xx is an error that quotes the body.
    pub async fn get_json(&self, url: &str, accept: Option<&str>) -> Result<serde_json::Value, String> {
        let reply = self.get(url, accept).await?;
        if !(200..300).contains(&reply.status) {
            return Err(format!(
                "GET {url}: status {}: {}",
                reply.status,
                String::from_utf8_lossy(&reply.body).trim()
            ));
        }
        serde_json::from_slice(&reply.body).map_err(|e| format!("GET {url}: invalid JSON: {e}"))
    }

    /// Sends one request on a connection of its own; every failure names the method and URL.
    pub async fn send(&self, req: Request<'_>) -> Result<Response, String> {
        let what = format!("{} {}", req.method, req.url);
        let target = Target::parse(req.url).map_err(|e| format!("{what}: {e}"))?;
        let tcp = tokio::time::timeout(self.timeouts.connect, TcpStream::connect(&target.connect_to))
            .await
            .map_err(|_| format!("{what}: connect timed out after {:?}", self.timeouts.connect))?
            .map_err(|e| format!("{what}: {e}"))?;
        let _ = tcp.set_nodelay(true);
        let mut request = hyper::Request::builder()
            .method(req.method)
            .uri(target.path_and_query)
            .header(hyper::header::HOST, target.authority);
        for (name, value) in req.headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(Full::new(req.body))
            .map_err(|e| format!("{what}: {e}"))?;
        let exchange = async {
            if target.https {
                let tls = self.tls.clone().ok_or("https is not available here")?;
                let name = rustls::pki_types::ServerName::try_from(target.host.to_string())
                    .map_err(|e| e.to_string())?;
                let stream = tokio_rustls::TlsConnector::from(tls)
                    .connect(name, tcp)
                    .await
                    .map_err(|e| format!("TLS - {e}"))?;
                exchange(TokioIo::new(stream), request, self.max_body).await
            } else {
                exchange(TokioIo::new(tcp), request, self.max_body).await
            }
        };
        tokio::time::timeout(self.timeouts.request, exchange)
            .await
            .map_err(|_| format!("{what}: no response within {:?}", self.timeouts.request))?
            .map_err(|e| format!("{what}: {e}"))
    }
}

async fn exchange<T>(io: T, request: hyper::Request<Full<Bytes>>, max_body: usize) -> Result<Response, String>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| e.to_string())?;
    // The connection future drives the socket; it is dropped once the reply is read.
    let driver = tokio::spawn(conn);
    let reply = async {
        let resp = sender.send_request(request).await.map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let body = Limited::new(resp.into_body(), max_body)
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok(Response { status, body })
    }
    .await;
    driver.abort();
    reply
}

/// Where a URL points, split the way a one-shot request needs it.
struct Target<'a> {
    https: bool,
    /// `host:port` as written, for the `Host` header.
    authority: &'a str,
    /// The host without port or IPv6 brackets, for TLS's server name.
    host: &'a str,
    /// `host:port` with the scheme's port filled in.
    connect_to: String,
    path_and_query: &'a str,
}

impl<'a> Target<'a> {
    fn parse(url: &'a str) -> Result<Target<'a>, String> {
        let (https, rest) = match url.split_once("://") {
            None => (false, url),
            Some(("http", rest)) => (false, rest),
            Some(("https", rest)) => (true, rest),
            Some((other, _)) => return Err(format!("unsupported scheme {other}")),
        };
        let (authority, path_and_query) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.is_empty() {
            return Err("no host".into());
        }
        let port = authority
            .rsplit_once(':')
            .filter(|(_, port)| !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()));
        let (host, connect_to) = match port {
            Some((host, _)) => (host, authority.to_string()),
            None => (authority, format!("{authority}:{}", if https { 443 } else { 80 })),
        };
        Ok(Target {
            https,
            authority,
            host: host.trim_matches(['[', ']']),
            connect_to,
            path_and_query,
        })
    }
}

/// `host:port` from an address that may carry an `http://` (or `https://`) prefix and a
/// trailing slash, as lookupd addresses in go-nsq configurations often do.
pub fn host_port(addr: &str) -> &str {
    let addr = addr
        .strip_prefix("http://")
        .or_else(|| addr.strip_prefix("https://"))
        .unwrap_or(addr);
    addr.trim_end_matches('/')
}

/// The URL of `path` (with its query) on the HTTP API at `addr` (`host:port`, or with
/// `http://` or `https://` and a trailing slash).
pub fn api_url(addr: &str, path: &str) -> String {
    let scheme = if addr.starts_with("https://") {
        "https"
    } else {
        "http"
    };
    format!("{scheme}://{}{path}", host_port(addr))
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

/// Go's `url.QueryEscape`: a value made safe for a query string.
pub fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(b as char),
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Percent-encodes every byte but RFC 3986's unreserved ones, a space included (`%20`): safe
/// in a path as well as a query, where `query_escape`'s `+` would be a literal plus. `to-http`
/// fills its URL templates with it, whichever part of the URL `%s` is in.
pub fn percent_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Go's `url.Values.Encode` for pairs already sorted by key.
pub fn form_encode(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", query_escape(k), query_escape(v)))
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_like_go() {
        let t = Target::parse("http://127.0.0.1:4161/channels?topic=t").unwrap();
        assert_eq!(
            (t.https, t.authority, t.connect_to.as_str(), t.path_and_query),
            (false, "127.0.0.1:4161", "127.0.0.1:4161", "/channels?topic=t")
        );
        let t = Target::parse("https://auth.example/auth").unwrap();
        assert_eq!(
            (t.https, t.host, t.connect_to.as_str()),
            (true, "auth.example", "auth.example:443")
        );
        let t = Target::parse("[::1]:80").unwrap();
        assert_eq!((t.host, t.path_and_query), ("::1", "/"));
        assert!(Target::parse("ftp://x/").is_err());
        assert!(Target::parse("http:///x").is_err());
    }

    #[test]
    fn escapes_like_go() {
        assert_eq!(query_escape("a b&c/é~"), "a+b%26c%2F%C3%A9~");
        assert_eq!(
            form_encode(&[("common_name", ""), ("secret", "a b&c/é")]),
            "common_name=&secret=a+b%26c%2F%C3%A9"
        );
    }

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

    #[test]
    fn host_port_drops_scheme_and_slash() {
        assert_eq!(host_port("http://127.0.0.1:4161/"), "127.0.0.1:4161");
        assert_eq!(host_port("https://nsqd:4152"), "nsqd:4152");
        assert_eq!(host_port("lookupd:4161"), "lookupd:4161");
        assert_eq!(api_url("https://nsqd:4152/", "/stats"), "https://nsqd:4152/stats");
        assert_eq!(api_url("nsqd:4151", "/ping"), "http://nsqd:4151/ping");
    }

    #[tokio::test]
    async fn replies_over_the_limit_are_refused_and_timeouts_bound_a_silent_server() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            // First connection: a 100-byte body; second: silence.
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await;
            let body = "x".repeat(100);
            let reply = format!("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{body}");
            s.write_all(reply.as_bytes()).await.unwrap();
            let (_silent, _) = listener.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(5)).await;
        });
        let timeouts = HttpTimeouts {
            connect: Duration::from_secs(2),
            request: Duration::from_millis(200),
        };
        let client = HttpClient::new(timeouts).with_max_body(10);
        let url = format!("http://{addr}/stats");
        assert!(client.get(&url, None).await.is_err(), "body over the limit");
        let e = client.get(&url, None).await.unwrap_err();
        assert!(e.contains("no response within"), "{e}");
    }
}
