//! Asking nsqlookupd where a topic lives (nsq-reference §2.3, §2.5): `/lookup`, `/topics` and
//! `/nodes`, with the V1 `Accept` header so the reply is the bare object, while still reading
//! the older `{"status_code":..,"data":..}` envelope that pre-1.0 lookupds send.

use serde_json::Value;

use crate::common::http_client::{api_url, host_port, query_escape, HttpClient, HttpTimeouts, ACCEPT_NSQ_V1};

/// One nsqd as nsqlookupd reports it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Peer {
    pub broadcast_address: String,
    pub tcp_port: u16,
    pub http_port: u16,
}

impl Peer {
    pub fn tcp_addr(&self) -> String {
        join_host_port(&self.broadcast_address, self.tcp_port)
    }

    pub fn http_addr(&self) -> String {
        join_host_port(&self.broadcast_address, self.http_port)
    }
}

fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The object inside either envelope.
fn payload(v: Value) -> Value {
    match v {
        Value::Object(mut m) if m.contains_key("status_code") && m.contains_key("data") => {
            m.remove("data").unwrap_or(Value::Null)
        }
        other => other,
    }
}

fn peers(v: &Value) -> Vec<Peer> {
    let Some(list) = v.get("producers").and_then(Value::as_array) else {
        return Vec::new();
    };
    let port = |p: &Value, k: &str| {
        p.get(k)
            .and_then(Value::as_u64)
            .and_then(|n| u16::try_from(n).ok())
    };
    list.iter()
        .filter_map(|p| {
            Some(Peer {
                broadcast_address: p.get("broadcast_address")?.as_str()?.to_string(),
                tcp_port: port(p, "tcp_port")?,
                http_port: port(p, "http_port").unwrap_or(0),
            })
        })
        .collect()
}

async fn query(addr: &str, path: &str, timeouts: HttpTimeouts) -> Result<Option<Value>, String> {
    let reply = HttpClient::new(timeouts)
        .get(&api_url(addr, path), Some(ACCEPT_NSQ_V1))
        .await?;
    let (status, body) = (reply.status, reply.body);
    // A topic nobody has registered is a 404, which means "no producers", not a failure.
    if status == 404 {
        return Ok(None);
    }
    if !(200..300).contains(&status) {
        return Err(format!(
            "lookupd {}{path}: status {status}: {}",
            host_port(addr),
            String::from_utf8_lossy(&body).trim()
        ));
    }
    let v: Value = serde_json::from_slice(&body)
        .map_err(|e| format!("lookupd {}{path}: invalid JSON: {e}", host_port(addr)))?;
    Ok(Some(payload(v)))
}

/// The nsqd instances that carry `topic`.
pub async fn lookup(addr: &str, topic: &str, timeouts: HttpTimeouts) -> Result<Vec<Peer>, String> {
    let path = format!("/lookup?topic={}", query_escape(topic));
    Ok(query(addr, &path, timeouts)
        .await?
        .map(|v| peers(&v))
        .unwrap_or_default())
}

/// Every topic lookupd knows.
pub async fn topics(addr: &str, timeouts: HttpTimeouts) -> Result<Vec<String>, String> {
    let v = query(addr, "/topics", timeouts).await?.unwrap_or(Value::Null);
    Ok(v.get("topics")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|t| t.as_str().map(String::from)).collect())
        .unwrap_or_default())
}

/// Every nsqd registered with lookupd.
pub async fn nodes(addr: &str, timeouts: HttpTimeouts) -> Result<Vec<Peer>, String> {
    Ok(query(addr, "/nodes", timeouts)
        .await?
        .map(|v| peers(&v))
        .unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_envelopes() {
        let v1: Value = serde_json::from_str(
            r#"{"channels":[],"producers":[{"broadcast_address":"a","tcp_port":4150,"http_port":4151}]}"#,
        )
        .unwrap();
        let old: Value = serde_json::from_str(
            r#"{"status_code":200,"status_txt":"OK","data":{"producers":[{"broadcast_address":"::1","tcp_port":1}]}}"#,
        )
        .unwrap();
        assert_eq!(peers(&payload(v1))[0].tcp_addr(), "a:4150");
        assert_eq!(peers(&payload(old))[0].tcp_addr(), "[::1]:1");
    }
}
