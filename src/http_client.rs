//! A small outbound HTTP/1.1 client for the broker's own requests (lookupd's `/channels`),
//! honouring nsqd's `--http-client-connect-timeout` and `--http-client-request-timeout`.

use std::time::Duration;

use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// Largest reply read: a lookupd's `/channels` answer is a list of names, far below this; the
/// bound keeps a wrong or hostile server from making the broker buffer without limit.
const MAX_REPLY: usize = 16 * 1024 * 1024;

#[derive(Clone)]
pub struct HttpClient {
    client: Client<HttpConnector, Empty<Bytes>>,
    request_timeout: Duration,
}

impl HttpClient {
    pub fn new(connect_timeout: Duration, request_timeout: Duration) -> HttpClient {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(connect_timeout));
        HttpClient {
            client: Client::builder(TokioExecutor::new()).build(connector),
            request_timeout,
        }
    }

    /// GETs `url` with NSQ's `Accept` header and parses a JSON body (200 only).
    pub async fn get_json(&self, url: &str) -> Result<serde_json::Value, String> {
        let req = hyper::Request::get(url)
            .header("Accept", "application/vnd.nsq; version=1.0")
            .body(Empty::new())
            .map_err(|e| format!("bad request {url} - {e}"))?;
        let fetch = async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| format!("GET {url} failed - {e}"))?;
            let status = resp.status();
            let body = Limited::new(resp.into_body(), MAX_REPLY)
                .collect()
                .await
                .map_err(|e| format!("GET {url} failed reading body - {e}"))?
                .to_bytes();
            if !status.is_success() {
                return Err(format!("GET {url} returned {status}"));
            }
            serde_json::from_slice(&body).map_err(|e| format!("GET {url} returned bad JSON - {e}"))
        };
        tokio::time::timeout(self.request_timeout, fetch)
            .await
            .map_err(|_| format!("GET {url} timed out"))?
    }
}
