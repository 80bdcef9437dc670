//! A real HTTP/1.1 endpoint for `to-http` to call: keep-alive connections, each request
//! recorded (method, path, headers, body) and answered with the status a test decides; over
//! plain TCP or TLS (rustls with the test certificates).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

/// One request as received.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    /// Lowercase names.
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
    /// The status it was answered with.
    pub status: u16,
}

type Respond = dyn Fn(&Request) -> u16 + Send + Sync;

pub struct HttpServer {
    /// `127.0.0.1:port`.
    pub addr: String,
    requests: Arc<Mutex<Vec<Request>>>,
}

impl HttpServer {
    /// Plain HTTP; `respond` picks each answer's status.
    pub fn start(respond: impl Fn(&Request) -> u16 + Send + Sync + 'static) -> HttpServer {
        HttpServer::serve(Arc::new(respond), None)
    }

    /// HTTPS with `cert`/`key` (PEM files).
    pub fn start_tls(
        cert: &std::path::Path,
        key: &std::path::Path,
        respond: impl Fn(&Request) -> u16 + Send + Sync + 'static,
    ) -> HttpServer {
        let certs: Vec<_> = rustls_pemfile::certs(&mut BufReader::new(std::fs::File::open(cert).unwrap()))
            .map(Result::unwrap)
            .collect();
        let key = rustls_pemfile::private_key(&mut BufReader::new(std::fs::File::open(key).unwrap()))
            .unwrap()
            .unwrap();
        let config =
            rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(certs, key)
                .unwrap();
        HttpServer::serve(Arc::new(respond), Some(Arc::new(config)))
    }

    fn serve(respond: Arc<Respond>, tls: Option<Arc<rustls::ServerConfig>>) -> HttpServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let log = requests.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let (respond, log, tls) = (respond.clone(), log.clone(), tls.clone());
                std::thread::spawn(move || match tls {
                    Some(config) => {
                        let conn = rustls::ServerConnection::new(config).unwrap();
                        serve_connection(rustls::StreamOwned::new(conn, stream), &*respond, &log);
                    }
                    None => serve_connection(stream, &*respond, &log),
                });
            }
        });
        HttpServer { addr, requests }
    }

    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }

    /// Bodies of the requests answered 2xx, as text.
    pub fn accepted(&self) -> Vec<String> {
        self.requests()
            .into_iter()
            .filter(|r| (200..300).contains(&r.status))
            .map(|r| String::from_utf8_lossy(&r.body).into_owned())
            .collect()
    }
}

/// Answers requests on one connection until the client closes it.
fn serve_connection<S: Read + Write>(stream: S, respond: &Respond, log: &Mutex<Vec<Request>>) {
    let mut r = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or("").to_string();
        let path = parts.next().unwrap_or("").to_string();
        let mut headers = HashMap::new();
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            if h == "\r\n" {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
            }
        }
        let len = headers
            .get("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0u8; len];
        if r.read_exact(&mut body).is_err() {
            return;
        }
        let mut req = Request {
            method,
            path,
            headers,
            body,
            status: 0,
        };
        req.status = respond(&req);
        log.lock().unwrap().push(req.clone());
        let out = r.get_mut();
        if write!(out, "HTTP/1.1 {} X\r\nContent-Length: 2\r\n\r\nok", req.status)
            .and_then(|_| out.flush())
            .is_err()
        {
            return;
        }
    }
}
