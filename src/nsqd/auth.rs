//! AUTH against nsqauthd-style HTTP servers (`--auth-http-address`): the query nsqd sends, the
//! identity and authorizations it gets back, and the permission check made before PUB/SUB.
//!
//! Errors from the auth server are returned as text for the server log only; clients get the
//! fixed E_AUTH_FAILED, as nsqd does, so nothing about the auth server leaks to them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::Rng;
use regex::Regex;
use serde::Deserialize;

use crate::common::http_client::{form_encode, HttpClient, HttpTimeouts, Request, ACCEPT_NSQ_V1};
use crate::nsqd::options::NsqdOptions;

/// Largest auth server reply read.
const MAX_REPLY: usize = 1024 * 1024;

#[derive(Debug, Deserialize)]
struct Reply {
    #[serde(default)]
    ttl: i64,
    #[serde(default)]
    identity: String,
    #[serde(default)]
    identity_url: String,
    #[serde(default)]
    authorizations: Vec<ReplyAuthorization>,
}

#[derive(Debug, Deserialize)]
struct ReplyAuthorization {
    #[serde(default)]
    topic: String,
    #[serde(default)]
    channels: Vec<String>,
    #[serde(default)]
    permissions: Vec<String>,
}

#[derive(Debug)]
pub struct Authorization {
    topic: Regex,
    channels: Vec<Regex>,
    publish: bool,
    subscribe: bool,
}

impl Authorization {
    /// nsqd's rule: a channel means SUB (needs subscribe), none means a publish; either way the
    /// topic and one channel regex must match (so publish rules need a channel like `.*`).
    fn allows(&self, topic: &str, channel: &str) -> bool {
        let permitted = if channel.is_empty() {
            self.publish
        } else {
            self.subscribe
        };
        permitted && self.topic.is_match(topic) && self.channels.iter().any(|c| c.is_match(channel))
    }
}

/// A client's authorization, valid until `expires`.
#[derive(Debug)]
pub struct AuthState {
    pub identity: String,
    pub identity_url: String,
    pub authorizations: Vec<Authorization>,
    pub expires: Instant,
}

impl AuthState {
    pub fn is_expired(&self) -> bool {
        Instant::now() >= self.expires
    }

    pub fn allows(&self, topic: &str, channel: &str) -> bool {
        self.authorizations.iter().any(|a| a.allows(topic, channel))
    }
}

/// What nsqd tells the auth server about the connection.
pub struct AuthRequest<'a> {
    pub remote_ip: &'a str,
    pub tls: bool,
    pub secret: &'a str,
    pub common_name: &'a str,
}

/// Shared by all connections: the servers and how to reach them.
pub struct Authenticator {
    addresses: Vec<String>,
    post: bool,
    http: HttpClient,
}

impl Authenticator {
    pub fn new(o: &NsqdOptions) -> Result<Option<Arc<Authenticator>>, String> {
        if o.auth_http_addresses.is_empty() {
            return Ok(None);
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        // nsqd trusts --tls-root-ca-file for auth servers too; otherwise the system bundle.
        let ca = if o.tls_root_ca_file.is_empty() {
            "/etc/ssl/certs/ca-certificates.crt"
        } else {
            &o.tls_root_ca_file
        };
        if let Ok(pem) = std::fs::read(ca) {
            for cert in rustls_pemfile::certs(&mut &pem[..]).flatten() {
                let _ = roots.add(cert);
            }
        }
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let timeouts = HttpTimeouts {
            connect: o.http_client_connect_timeout,
            request: o.http_client_request_timeout,
        };
        Ok(Some(Arc::new(Authenticator {
            addresses: o.auth_http_addresses.clone(),
            post: o.auth_http_request_method == "post",
            http: HttpClient::new(timeouts)
                .with_tls(Arc::new(tls))
                .with_max_body(MAX_REPLY),
        })))
    }

    /// Asks the servers in turn, from a random one, until one answers.
    pub async fn query(&self, req: &AuthRequest<'_>) -> Result<AuthState, String> {
        let start = rand::thread_rng().gen_range(0..self.addresses.len());
        let mut last_err = String::new();
        for i in 0..self.addresses.len() {
            let addr = &self.addresses[(start + i) % self.addresses.len()];
            match self.query_one(addr, req).await {
                Ok(state) => return Ok(state),
                Err(e) => last_err = format!("{addr}: {e}"),
            }
        }
        Err(last_err)
    }

    async fn query_one(&self, addr: &str, req: &AuthRequest<'_>) -> Result<AuthState, String> {
        let form = form_encode(&[
            ("common_name", req.common_name),
            ("remote_ip", req.remote_ip),
            ("secret", req.secret),
            ("tls", if req.tls { "true" } else { "false" }),
        ]);
        let endpoint = if addr.contains("://") {
            addr.to_string()
        } else {
            format!("http://{addr}/auth")
        };
        let mut headers = vec![("Accept", ACCEPT_NSQ_V1), ("User-Agent", "nsqd")];
        let request = if self.post {
            headers.push(("Content-Type", "application/x-www-form-urlencoded"));
            (endpoint, Bytes::from(form))
        } else {
            let sep = if endpoint.contains('?') { '&' } else { '?' };
            (format!("{endpoint}{sep}{form}"), Bytes::new())
        };
        let reply = self
            .http
            .send(Request {
                method: if self.post { "POST" } else { "GET" },
                url: &request.0,
                headers: &headers,
                body: request.1,
            })
            .await?;
        if reply.status != 200 {
            return Err(format!(
                "got response {} {:?}",
                reply.status,
                String::from_utf8_lossy(&reply.body)
            ));
        }
        parse_reply(&reply.body)
    }
}

fn parse_reply(body: &[u8]) -> Result<AuthState, String> {
    let reply: Reply = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    if reply.ttl <= 0 {
        return Err(format!("invalid TTL {} (must be >0)", reply.ttl));
    }
    let mut authorizations = Vec::with_capacity(reply.authorizations.len());
    for a in reply.authorizations {
        let mut publish = false;
        let mut subscribe = false;
        for p in &a.permissions {
            match p.as_str() {
                "publish" => publish = true,
                "subscribe" => subscribe = true,
                other => return Err(format!("unknown permission {other}")),
            }
        }
        let topic = Regex::new(&a.topic).map_err(|e| e.to_string())?;
        let channels = a
            .channels
            .iter()
            .map(|c| Regex::new(c).map_err(|e| e.to_string()))
            .collect::<Result<_, _>>()?;
        authorizations.push(Authorization {
            topic,
            channels,
            publish,
            subscribe,
        });
    }
    let ttl = Duration::from_secs(reply.ttl.min(i64::from(u32::MAX)) as u64);
    Ok(AuthState {
        identity: reply.identity,
        identity_url: reply.identity_url,
        authorizations,
        expires: Instant::now() + ttl,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_rules_match_nsqd() {
        let s = parse_reply(
            br#"{"ttl":60,"identity":"me","authorizations":[
                {"topic":"^orders$","channels":["bill"],"permissions":["subscribe"]},
                {"topic":"ev","channels":[".*"],"permissions":["publish"]}]}"#,
        )
        .unwrap();
        assert!(s.allows("orders", "billing"), "unanchored channel regex");
        assert!(!s.allows("orders", "audit"));
        assert!(!s.allows("orders", ""), "no publish on orders");
        assert!(s.allows("events", ""), "unanchored topic regex");
        assert!(!s.allows("events", "x"), "no subscribe on events");
        assert!(parse_reply(br#"{"ttl":0}"#).is_err());
        assert!(
            parse_reply(br#"{"ttl":1,"authorizations":[{"topic":"x","permissions":["admin"]}]}"#).is_err()
        );
        assert!(parse_reply(br#"{"ttl":1,"authorizations":[{"topic":"(","permissions":[]}]}"#).is_err());
    }
}
