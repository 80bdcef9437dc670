//! Who may do what: actions need the admin's bearer token (`--http-admin-token`) when one is
//! set, and a user named by the ACL header (`--acl-http-header`) among `--admin-user` when
//! those are given, as nsqadmin checks; `/config/*` answers only `--allow-config-from-cidr`.
//! Each action taken is POSTed to `--notification-http-endpoint` as nsqadmin does.

use std::net::{IpAddr, SocketAddr};

use axum::http::{header, HeaderMap};
use base64::Engine;
use serde_json::json;

use super::Admin;
use crate::common::http_client::{HttpClient, Request};

/// An IPv4 or IPv6 network, `addr/bits`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    bits: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let (addr, bits) = s.split_once('/').ok_or("invalid CIDR address")?;
        let net: IpAddr = addr.parse().map_err(|_| "invalid CIDR address")?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let bits: u8 = bits.parse().map_err(|_| "invalid CIDR address")?;
        if bits > max {
            return Err("invalid CIDR address".into());
        }
        Ok(Cidr { net, bits })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        // An IPv4 client reaching a dual-stack listener shows as ::ffff:a.b.c.d.
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.net, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.bits)).unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.bits)).unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

/// Why an action is refused.
pub enum Refusal {
    /// No or a wrong bearer token: 401.
    Unauthenticated,
    /// Not one of `--admin-user`: 403, nsqadmin's `FORBIDDEN`.
    Forbidden,
}

/// The user the ACL header names, if any.
pub fn acl_user(admin: &Admin, headers: &HeaderMap) -> Option<String> {
    let name = admin.opts().acl_http_header;
    headers
        .get(name.as_str())
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .map(str::to_string)
}

/// Whether the page should offer actions (nsqadmin's `IsAdmin`): the ACL allows the user;
/// the token is asked for when an action is taken.
pub fn may_act(admin: &Admin, headers: &HeaderMap) -> bool {
    let users = admin.opts().admin_users;
    users.is_empty() || acl_user(admin, headers).is_some_and(|u| users.contains(&u))
}

/// Checks an action request against the token and the ACL.
pub fn authorize(admin: &Admin, headers: &HeaderMap) -> Result<(), Refusal> {
    let token = admin.opts().http_admin_token;
    if !token.is_empty() {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        // Compared without an early exit so timing does not reveal a matching prefix.
        let same = given.len() == token.len()
            && given
                .bytes()
                .zip(token.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0;
        if !same {
            return Err(Refusal::Unauthenticated);
        }
    }
    if may_act(admin, headers) {
        Ok(())
    } else {
        Err(Refusal::Forbidden)
    }
}

/// Whether `peer` may use `/config/*`.
pub fn config_allowed(admin: &Admin, peer: SocketAddr) -> bool {
    let cidr = admin.opts().allow_config_from_cidr;
    cidr.is_empty() || Cidr::parse(&cidr).is_ok_and(|c| c.contains(peer.ip()))
}

/// What is known about the request that took an action, for the notification.
pub struct ActionSource {
    pub headers: HeaderMap,
    pub peer: SocketAddr,
    /// Path and query as requested.
    pub uri: String,
}

/// POSTs nsqadmin's `AdminAction` record to the notification endpoint, in the background:
/// a slow or dead endpoint never delays the action.
pub fn notify(
    admin: &std::sync::Arc<Admin>,
    action: &str,
    topic: &str,
    channel: &str,
    node: &str,
    src: &ActionSource,
) {
    let endpoint = admin.opts().notification_http_endpoint;
    if endpoint.is_empty() {
        return;
    }
    let header = |name: &str| {
        src.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let scheme = if header("X-Scheme") == "https" {
        "https"
    } else {
        "http"
    };
    let mut record = json!({
        "action": action,
        "topic": topic,
        "timestamp": crate::common::time::now_ns() / 1_000_000_000,
        "remote_ip": src.peer.to_string(),
        "user_agent": header("User-Agent"),
        "url": format!("{scheme}://{}{}", header("Host"), src.uri),
        "via": crate::common::host::local_hostname(),
    });
    // nsqadmin leaves these out when empty.
    for (key, value) in [
        ("channel", channel.to_string()),
        ("node", node.to_string()),
        ("user", basic_auth_user(&src.headers)),
    ] {
        if !value.is_empty() {
            record[key] = json!(value);
        }
    }
    let admin = admin.clone();
    tokio::spawn(async move {
        let cluster = admin.cluster();
        let mut client = HttpClient::new(cluster.timeouts);
        if let Some(tls) = &cluster.tls {
            client = client.with_tls(tls.clone());
        }
        let req = Request {
            method: "POST",
            url: &endpoint,
            headers: &[("Content-Type", "application/json")],
            body: record.to_string().into(),
        };
        match client.send(req).await {
            Ok(reply) if (200..300).contains(&reply.status) => {}
            Ok(reply) => admin.logf(
                "error",
                &format!("notification to {endpoint} answered {}", reply.status),
            ),
            Err(e) => admin.logf("error", &format!("notification to {endpoint} failed - {e}")),
        }
    });
}

/// The user of HTTP basic auth, which nsqadmin reports as the acting user.
fn basic_auth_user(headers: &HeaderMap) -> String {
    let Some(v) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) else {
        return String::new();
    };
    let Some(encoded) = v.strip_prefix("Basic ") else {
        return String::new();
    };
    base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|pair| pair.split_once(':').map(|(u, _)| u.to_string()))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs() {
        let c = Cidr::parse("127.0.0.1/8").unwrap();
        assert!(c.contains("127.9.9.9".parse().unwrap()));
        assert!(c.contains("::ffff:127.0.0.2".parse().unwrap()));
        assert!(!c.contains("10.0.0.1".parse().unwrap()));
        assert!(Cidr::parse("0.0.0.0/0")
            .unwrap()
            .contains("8.8.8.8".parse().unwrap()));
        assert!(Cidr::parse("::1/128").unwrap().contains("::1".parse().unwrap()));
        for bad in ["127.0.0.1", "x/8", "10.0.0.0/33", "::/129"] {
            assert!(Cidr::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn basic_auth_names_the_user() {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, "Basic YWxpY2U6c2VjcmV0".parse().unwrap());
        assert_eq!(basic_auth_user(&h), "alice");
    }
}
