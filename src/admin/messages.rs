//! What nsqadmin never showed: messages. Recent and matching messages of a topic and one
//! message's archived story (`--db`, read through `archive::trace` as `nsqrs trace` reads
//! it), its live state on the broker (`GET /message`), and each channel's deferred messages
//! (`GET /deferred`), which the channel page can cancel (`POST /deferred/cancel`).
//!
//! Bodies are attacker-controlled: they leave here as data and are only ever rendered as
//! escaped text by the pages.

use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{json, Value};

use super::api::check_action;
use super::stats::Producer;
use super::Admin;
use crate::archive::store::{Value as SqlValue, MESSAGE_COLUMNS};
use crate::archive::trace::{self, Search, Trace};
use crate::archive::{MessageRow, Store};
use crate::common::http_api::{err, json_body};
use crate::common::http_client::query_escape;
use crate::protocol::names::{is_valid_channel_name, is_valid_topic_name};

/// What the search box asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Query {
    /// A message ID: go straight to it.
    Id(String),
    /// A top-level JSON field and its value (`key=value`).
    Field(String, String),
    /// Bytes the body contains.
    Text(String),
}

impl Query {
    /// An ID if it is one, `key=value` if it looks like one (a `text:` prefix forces text),
    /// else text.
    pub fn parse(q: &str) -> Option<Query> {
        let q = q.trim();
        if q.is_empty() {
            return None;
        }
        if let Some(text) = q.strip_prefix("text:") {
            return Some(Query::Text(text.to_string()));
        }
        if trace::valid_id(q) {
            return Some(Query::Id(q.to_ascii_lowercase()));
        }
        if let Some((k, v)) = q.split_once('=') {
            let simple_key = !k.is_empty()
                && k.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b));
            if simple_key {
                return Some(Query::Field(k.to_string(), v.to_string()));
            }
        }
        Some(Query::Text(q.to_string()))
    }
}

/// The newest `limit` archived messages of `topic`.
pub async fn recent(store: &Store, topic: &str, limit: usize) -> Result<Vec<MessageRow>, String> {
    let rows = store
        .query(
            &format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE topic = $1 ORDER BY ts DESC LIMIT $2"),
            vec![SqlValue::from(topic), SqlValue::Int(limit as i64)],
        )
        .await?;
    Ok(rows.into_iter().map(MessageRow::from_row).collect())
}

/// Messages of `topic` (or of every topic) that match `q`, newest first.
pub async fn search(
    store: &Store,
    topic: Option<&str>,
    q: &Query,
    limit: usize,
) -> Result<Vec<MessageRow>, String> {
    let mut s = Search {
        topic: topic.map(str::to_string),
        limit,
        ..Search::default()
    };
    match q {
        Query::Id(id) => {
            return Ok(trace::by_id(store, id)
                .await
                .map(|t| t.messages)
                .unwrap_or_default());
        }
        Query::Field(k, v) => s.field = Some((k.clone(), v.clone())),
        Query::Text(t) => s.grep = Some(t.clone()),
    }
    trace::search(store, &s).await.map(|found| found.messages)
}

/// Everything the archive knows of `id`.
pub async fn story(store: &Store, id: &str) -> Result<Trace, String> {
    trace::by_id(store, id).await
}

/// How a body reads best: pretty JSON, text, or base64 when it is not UTF-8.
pub fn render_body(body: &[u8]) -> (&'static str, String) {
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        if v.is_object() || v.is_array() {
            return ("json", serde_json::to_string_pretty(&v).unwrap_or_default());
        }
    }
    match crate::protocol::body_text(body) {
        (text, false) => ("text", text),
        (b64, true) => ("base64", b64),
    }
}

/// The producer an archived row came from: its `nsqd` is the broker's TCP address.
fn holder<'a>(producers: &'a [Producer], nsqd: &str) -> Option<&'a Producer> {
    producers.iter().find(|p| p.tcp_address() == nsqd)
}

/// The broker's view of the message now, per node that answered: (node, `/message` answer or
/// the reason there is none).
pub async fn live_state(
    admin: &Admin,
    topic: &str,
    id: &str,
    nsqd: Option<&str>,
) -> Vec<(String, Result<Value, String>)> {
    let cluster = admin.cluster();
    let producers = cluster
        .topic_producers(topic)
        .await
        .map(|p| p.value)
        .unwrap_or_default();
    // The broker that archived it first; the message lives on one broker only.
    let mut ordered: Vec<&Producer> = nsqd.and_then(|n| holder(&producers, n)).into_iter().collect();
    ordered.extend(
        producers
            .iter()
            .filter(|p| Some(p.tcp_address().as_str()) != nsqd),
    );
    let path = format!("/message?topic={}&id={}", query_escape(topic), query_escape(id));
    let mut out = Vec::new();
    for p in ordered {
        let node = cluster.http_address_of(p);
        match cluster.nsqd_get(&node, &path).await {
            Ok(v) => {
                out.push((p.http_address(), Ok(v)));
                break;
            }
            Err((404, body)) if body.contains("MESSAGE_NOT_FOUND") || body.contains("TOPIC_NOT_FOUND") => {
                out.push((
                    p.http_address(),
                    Err("nothing pending there (done on every channel)".into()),
                ));
            }
            Err((_, e)) => out.push((p.http_address(), Err(e))),
        }
    }
    out
}

/// One deferred message as the channel page lists it.
#[derive(Debug, Clone)]
pub struct Deferred {
    pub node: String,
    pub id: String,
    pub due_ns: i64,
    pub attempts: i64,
    pub size: i64,
    pub body: Option<(String, bool)>,
}

/// The deferred messages of a channel on every node holding its topic, soonest due first,
/// and per-node totals (a node lists at most `limit`).
pub async fn deferred(
    admin: &Admin,
    topic: &str,
    channel: &str,
    limit: usize,
) -> (Vec<Deferred>, i64, Vec<String>) {
    let cluster = admin.cluster();
    let producers = match cluster.topic_producers(topic).await {
        Ok(p) => p.value,
        Err(e) => return (Vec::new(), 0, vec![e]),
    };
    let path = format!(
        "/deferred?topic={}&channel={}&limit={limit}&include_body=true",
        query_escape(topic),
        query_escape(channel)
    );
    let mut out = Vec::new();
    let mut total = 0;
    let mut warnings = Vec::new();
    for p in &producers {
        match cluster.nsqd_get(&cluster.http_address_of(p), &path).await {
            Ok(v) => {
                for c in v["channels"].as_array().into_iter().flatten() {
                    total += c["total"].as_i64().unwrap_or(0);
                    for m in c["messages"].as_array().into_iter().flatten() {
                        out.push(Deferred {
                            node: p.http_address(),
                            id: m["id"].as_str().unwrap_or("").to_string(),
                            due_ns: m["due"].as_i64().unwrap_or(0),
                            attempts: m["attempts"].as_i64().unwrap_or(0),
                            size: m["size"].as_i64().unwrap_or(0),
                            body: m["body"]
                                .as_str()
                                .map(|b| (b.to_string(), m["body_base64"] == true)),
                        });
                    }
                }
            }
            // A Go nsqd has no /deferred: say so rather than fail the page.
            Err((404, body))
                if body.contains("NOT_FOUND") && !body.contains("TOPIC") && !body.contains("CHANNEL") =>
            {
                warnings.push(format!(
                    "{} does not list deferred messages (not nsqrs)",
                    p.http_address()
                ));
            }
            Err((_, e)) => warnings.push(format!("{}: {e}", p.http_address())),
        }
    }
    out.sort_by_key(|d| d.due_ns);
    (out, total, warnings)
}

#[derive(Debug, Deserialize)]
pub struct CancelRequest {
    pub node: String,
    pub topic: String,
    pub channel: String,
    pub id: String,
}

/// `POST /api/deferred/cancel`: cancels one deferred message on one node's channel.
pub async fn cancel_deferred(
    State(admin): State<Arc<Admin>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, Response> {
    check_action(&admin, &headers)?;
    let req: CancelRequest = serde_json::from_slice(&body).map_err(|e| err(400, &e.to_string()))?;
    if !is_valid_topic_name(&req.topic) || !is_valid_channel_name(&req.channel) || !trace::valid_id(&req.id) {
        return Err(err(400, "INVALID_REQUEST"));
    }
    let cluster = admin.cluster();
    // Only a node that holds the topic: the admin must not be a way to POST anywhere.
    let producers = cluster
        .topic_producers(&req.topic)
        .await
        .map(|p| p.value)
        .unwrap_or_default();
    let Some(p) = producers.iter().find(|p| p.http_address() == req.node) else {
        return Err(err(404, "NODE_NOT_FOUND"));
    };
    let path = format!(
        "/deferred/cancel?topic={}&channel={}&id={}",
        query_escape(&req.topic),
        query_escape(&req.channel),
        query_escape(&req.id)
    );
    cluster
        .nsqd_post(&cluster.http_address_of(p), &path)
        .await
        .map_err(|e| err(502, &format!("UPSTREAM_ERROR: {e}")))?;
    admin.logf(
        "info",
        &format!(
            "cancelled deferred {} on {}/{} at {}",
            req.id, req.topic, req.channel, req.node
        ),
    );
    Ok(json_body(&json!({ "message": "" })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries() {
        assert_eq!(
            Query::parse("0123456789ABCDEF"),
            Some(Query::Id("0123456789abcdef".into()))
        );
        assert_eq!(
            Query::parse(" customer=42 "),
            Some(Query::Field("customer".into(), "42".into()))
        );
        assert_eq!(Query::parse("a b=c"), Some(Query::Text("a b=c".into())));
        assert_eq!(Query::parse("text:x=1"), Some(Query::Text("x=1".into())));
        assert_eq!(Query::parse("<script>"), Some(Query::Text("<script>".into())));
        assert_eq!(Query::parse("  "), None);
    }

    #[test]
    fn bodies_render_by_kind() {
        assert_eq!(render_body(br#"{"a":1}"#).0, "json");
        assert!(render_body(br#"{"a":1}"#).1.contains("\n"));
        assert_eq!(render_body(b"plain"), ("text", "plain".to_string()));
        assert_eq!(render_body(b"42").0, "text");
        assert_eq!(render_body(&[0xff, 0xfe]).0, "base64");
    }
}
