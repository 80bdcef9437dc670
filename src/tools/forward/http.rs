//! The requests `nsqrs to-http` makes (nsq_to_http's): the body POSTed to a URL, or put into a
//! URL template (`%s`, URL-escaped) and fetched with GET; plain HTTP or HTTPS (the system's
//! certificate authorities, or `SSL_CERT_FILE`). Connections are HTTP/1.1, kept open and
//! reused, one request at a time each, so a hundred concurrent handlers do not dial a
//! hundred connections per second.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderName, HeaderValue};
use hyper::Uri;
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use tokio::net::TcpStream;

use crate::common::http_client::{percent_escape, HttpTimeouts};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// The body is the request's body.
    Post,
    /// The body, URL-escaped, replaces `%s` in the URL.
    Get,
}

/// One destination URL, checked.
#[derive(Debug, Clone)]
pub struct Target {
    /// As given, for messages.
    pub url: String,
    https: bool,
    host: String,
    port: u16,
    /// `host[:port]` for the Host header.
    authority: String,
    /// Path and query; for GET, with the `%s` the body replaces.
    path: String,
}

impl Target {
    pub fn parse(url: &str, method: Method) -> Result<Target, String> {
        let flag = match method {
            Method::Post => "--post",
            Method::Get => "--get",
        };
        let bad = |why: String| format!("{flag} {url:?}: {why}");
        if method == Method::Get && url.matches("%s").count() != 1 {
            return Err(bad("must hold %s exactly once, where the message goes".into()));
        }
        match url.split_once("://") {
            Some(("http" | "https", _)) => {}
            Some((other, _)) => return Err(bad(format!("scheme {other}:// is not http:// or https://"))),
            None => return Err(bad("give the scheme, http:// or https://".into())),
        }
        // `%s` is not valid in a URI; check the URL with a placeholder where it stands.
        let uri: Uri = url
            .replace("%s", "x")
            .parse()
            .map_err(|e| bad(format!("not a URL ({e})")))?;
        let https = uri.scheme_str() == Some("https");
        let host = uri
            .host()
            .ok_or_else(|| bad("no host".into()))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let authority = uri.authority().map(|a| a.to_string()).unwrap_or_default();
        if authority.contains('@') {
            return Err(bad(
                "credentials in the URL are not sent: give them with --header \
                            'Authorization: …'"
                    .into(),
            ));
        }
        // The path as written (the parsed one has `x` where `%s` was).
        let after_authority = &url[url.find("://").map_or(0, |i| i + 3)..];
        let path = match after_authority.find(['/', '?']) {
            Some(i) if after_authority[i..].starts_with('?') => format!("/{}", &after_authority[i..]),
            Some(i) => after_authority[i..].to_string(),
            None => "/".to_string(),
        };
        Ok(Target {
            url: url.to_string(),
            https,
            host,
            port,
            authority,
            path,
        })
    }

    pub fn is_https(&self) -> bool {
        self.https
    }
}

/// `--header key:value`, as nsq_to_http reads it (space around either part is trimmed).
pub fn parse_header(s: &str) -> Result<(HeaderName, HeaderValue), String> {
    let bad = || format!("--header {s:?} is not key:value");
    let (key, value) = s.split_once(':').ok_or_else(bad)?;
    let (key, value) = (key.trim(), value.trim());
    if key.is_empty() || value.is_empty() {
        return Err(bad());
    }
    Ok((
        HeaderName::from_bytes(key.as_bytes()).map_err(|e| format!("--header {s:?}: {e}"))?,
        HeaderValue::from_str(value).map_err(|e| format!("--header {s:?}: {e}"))?,
    ))
}

/// Makes requests to the targets, reusing idle connections.
pub struct Sender {
    method: Method,
    content_type: HeaderValue,
    user_agent: HeaderValue,
    headers: Vec<(HeaderName, HeaderValue)>,
    timeouts: HttpTimeouts,
    tls: Option<tokio_rustls::TlsConnector>,
    /// Idle connections by target index.
    idle: Mutex<HashMap<usize, Vec<SendRequest<Full<Bytes>>>>>,
}

impl Sender {
    /// `tls` must be set when any target is HTTPS (see `tls_connector`).
    pub fn new(
        method: Method,
        content_type: &str,
        user_agent: &str,
        headers: Vec<(HeaderName, HeaderValue)>,
        timeouts: HttpTimeouts,
        tls: Option<tokio_rustls::TlsConnector>,
    ) -> Result<Sender, String> {
        Ok(Sender {
            method,
            content_type: HeaderValue::from_str(content_type)
                .map_err(|e| format!("--content-type {content_type:?}: {e}"))?,
            user_agent: HeaderValue::from_str(user_agent).map_err(|e| e.to_string())?,
            headers,
            timeouts,
            tls,
            idle: Mutex::new(HashMap::new()),
        })
    }

    /// Sends `body` to `target` (number `index` of the list); Ok when it answered 2xx.
    pub async fn send(&self, index: usize, target: &Target, body: &Bytes) -> Result<(), String> {
        let request = self.request(target, body)?;
        let attempt = async {
            let mut conn = self.connection(index, target).await?;
            let response = conn.send_request(request).await.map_err(|e| e.to_string())?;
            let status = response.status();
            // Read the answer to its end, so the connection can carry the next request.
            let mut body = response.into_body();
            while let Some(frame) = body.frame().await {
                frame.map_err(|e| format!("reading the response: {e}"))?;
            }
            if !conn.is_closed() {
                self.idle.lock().entry(index).or_default().push(conn);
            }
            match status.is_success() {
                true => Ok(()),
                false => Err(format!("status {status}")),
            }
        };
        let outcome = match tokio::time::timeout(self.timeouts.request, attempt).await {
            Ok(outcome) => outcome,
            Err(_) => Err(format!("no answer within {:?}", self.timeouts.request)),
        };
        outcome.map_err(|e| format!("{} {}: {e}", self.method_name(), target.url))
    }

    fn method_name(&self) -> &'static str {
        match self.method {
            Method::Post => "POST",
            Method::Get => "GET",
        }
    }

    fn request(&self, target: &Target, body: &Bytes) -> Result<hyper::Request<Full<Bytes>>, String> {
        let (path, payload) = match self.method {
            Method::Post => (target.path.clone(), body.clone()),
            Method::Get => {
                let text = String::from_utf8_lossy(body);
                (
                    target.path.replacen("%s", &percent_escape(&text), 1),
                    Bytes::new(),
                )
            }
        };
        let mut builder = hyper::Request::builder()
            .method(self.method_name())
            .uri(path)
            .header(hyper::header::HOST, &target.authority)
            .header(hyper::header::USER_AGENT, &self.user_agent);
        if self.method == Method::Post {
            builder = builder.header(hyper::header::CONTENT_TYPE, &self.content_type);
        }
        let mut request = builder
            .body(Full::new(payload))
            .map_err(|e| format!("{}: {e}", target.url))?;
        // Given headers replace the defaults, as nsq_to_http's do.
        for (k, v) in &self.headers {
            request.headers_mut().insert(k.clone(), v.clone());
        }
        Ok(request)
    }

    /// An idle connection to `target` that is still open, or a new one.
    async fn connection(&self, index: usize, target: &Target) -> Result<SendRequest<Full<Bytes>>, String> {
        loop {
            let idle = self.idle.lock().get_mut(&index).and_then(Vec::pop);
            match idle {
                Some(mut conn) => {
                    if conn.ready().await.is_ok() {
                        return Ok(conn);
                    }
                }
                None => break,
            }
        }
        let addr = (target.host.as_str(), target.port);
        let tcp = tokio::time::timeout(self.timeouts.connect, TcpStream::connect(addr))
            .await
            .map_err(|_| format!("connect timed out after {:?}", self.timeouts.connect))?
            .map_err(|e| format!("connect: {e}"))?;
        let _ = tcp.set_nodelay(true);
        if target.https {
            let tls = self.tls.as_ref().ok_or("an https:// target without TLS set up")?;
            let name = rustls::pki_types::ServerName::try_from(target.host.clone())
                .map_err(|e| format!("{:?} cannot be a TLS server name: {e}", target.host))?;
            let stream = tokio::time::timeout(self.timeouts.connect, tls.connect(name, tcp))
                .await
                .map_err(|_| format!("TLS handshake timed out after {:?}", self.timeouts.connect))?
                .map_err(|e| format!("TLS: {e}"))?;
            handshake(TokioIo::new(stream)).await
        } else {
            handshake(TokioIo::new(tcp)).await
        }
    }
}

async fn handshake<T>(io: T) -> Result<SendRequest<Full<Bytes>>, String>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| e.to_string())?;
    // Drives the connection until either side closes it.
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// TLS for HTTPS targets: the system's certificate authorities (`SSL_CERT_FILE` and
/// `SSL_CERT_DIR` point elsewhere, as for most tools).
pub fn tls_connector() -> Result<tokio_rustls::TlsConnector, String> {
    let config = crate::client::tls::TlsOptions::default().client_config()?;
    Ok(tokio_rustls::TlsConnector::from(Arc::clone(&config)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        let t = Target::parse("http://h:8080/a/b?x=1", Method::Post).unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str()),
            ("h", 8080, "/a/b?x=1")
        );
        assert_eq!(t.authority, "h:8080");
        let t = Target::parse("https://h?msg=%s", Method::Get).unwrap();
        assert_eq!((t.port, t.path.as_str(), t.is_https()), (443, "/?msg=%s", true));
        let t = Target::parse("http://[::1]:9/p/%s", Method::Get).unwrap();
        assert_eq!((t.host.as_str(), t.path.as_str()), ("::1", "/p/%s"));
        assert_eq!(Target::parse("http://h", Method::Post).unwrap().path, "/");
        for (url, method, why) in [
            ("h:80/x", Method::Post, "scheme"),
            ("ftp://h/x", Method::Post, "ftp"),
            ("http://h/x", Method::Get, "%s exactly once"),
            ("http://h/%s/%s", Method::Get, "%s exactly once"),
            ("http://u:p@h/x", Method::Post, "credentials"),
        ] {
            let e = Target::parse(url, method).unwrap_err();
            assert!(e.contains(why), "{url}: {e}");
        }
    }

    #[test]
    fn headers() {
        let (k, v) = parse_header(" X-Key : some value ").unwrap();
        assert_eq!((k.as_str(), v.to_str().unwrap()), ("x-key", "some value"));
        for bad in ["nokey", ":v", "k:", " : "] {
            assert!(parse_header(bad).is_err(), "{bad}");
        }
    }
}
