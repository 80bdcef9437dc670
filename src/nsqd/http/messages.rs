//! nsqrs's own per-message endpoints, beside nsqd's API:
//! - `GET /message?topic=&id=`: where one message stands now on each channel (queued, in
//!   flight to whom, deferred until when, done). `nsqrs trace --nsqd-http-address` asks this.
//! - `GET /deferred?topic=[&channel=][&limit=][&include_body=true]`: the deferred messages of
//!   a topic's channels, soonest due first.
//! - `POST /deferred/cancel?topic=&id=ID[,ID…][&channel=]`: cancels deferred messages on one
//!   channel or on every channel of the topic, each reported as a `cancelled` event.
//!
//! Errors follow nsqd's conventions: `{"message": "CODE"}` with its status.
#![allow(clippy::result_large_err)]

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::Method;
use axum::response::Response;
use serde_json::{json, Value};

use super::{require_post, HttpState};
use crate::common::http_api::{err, json_body, params};
use crate::nsqd::broker::channel::{Channel, MessageState};
use crate::nsqd::broker::log::LogReader;
use crate::nsqd::broker::topic::Topic;
use crate::protocol::names::{is_valid_channel_name, is_valid_topic_name};
use crate::protocol::{body_text, MessageId};

type Reply = Result<Response, Response>;

/// How many deferred messages `/deferred` lists per channel unless `limit` says otherwise.
const DEFAULT_LIST_LIMIT: usize = 1000;

fn existing_topic(s: &HttpState, p: &HashMap<String, String>) -> Result<Arc<Topic>, Response> {
    let name = p.get("topic").ok_or_else(|| err(400, "MISSING_ARG_TOPIC"))?;
    if !is_valid_topic_name(name) {
        return Err(err(400, "INVALID_ARG_TOPIC"));
    }
    s.broker.topic(name).ok_or_else(|| err(404, "TOPIC_NOT_FOUND"))
}

/// The channel named in the query, or every channel of the topic when none is.
fn chosen_channels(topic: &Topic, p: &HashMap<String, String>) -> Result<Vec<Arc<Channel>>, Response> {
    match p.get("channel") {
        None => Ok(topic.channels()),
        Some(name) if !is_valid_channel_name(name) => Err(err(400, "INVALID_ARG_CHANNEL")),
        Some(name) => topic
            .channel(name)
            .map(|c| vec![c])
            .ok_or_else(|| err(404, "CHANNEL_NOT_FOUND")),
    }
}

fn message_ids(p: &HashMap<String, String>) -> Result<Vec<MessageId>, Response> {
    let raw = p.get("id").ok_or_else(|| err(400, "MISSING_ARG_ID"))?;
    let mut ids: Vec<MessageId> = Vec::new();
    // A set, not `ids.contains`: a query of thousands of IDs must not cost their square.
    let mut seen = HashSet::new();
    for one in raw.split(',') {
        let id = MessageId::from_hex(one.trim().as_bytes()).ok_or_else(|| err(400, "INVALID_ARG_ID"))?;
        if seen.insert(id) {
            ids.push(id);
        }
    }
    Ok(ids)
}

pub async fn message_state(State(s): State<HttpState>, RawQuery(q): RawQuery) -> Reply {
    let p = params(&q).ok_or_else(|| err(400, "INVALID_REQUEST"))?;
    let topic = existing_topic(&s, &p)?;
    let ids = message_ids(&p)?;
    let [id] = ids[..] else {
        return Err(err(400, "INVALID_ARG_ID"));
    };
    // Finding the record may scan a log segment: keep it off the async workers.
    let answer = tokio::task::spawn_blocking(move || describe(&topic, id))
        .await
        .map_err(|_| err(500, "INTERNAL_ERROR"))?;
    answer
        .map(|v| json_body(&v))
        .ok_or_else(|| err(404, "MESSAGE_NOT_FOUND"))
}

/// The live state of one message, or None when this nsqd holds nothing of it.
fn describe(topic: &Topic, id: MessageId) -> Option<Value> {
    let stored = topic.core.find_id(id);
    let mut held = stored.is_some();
    let mut channels = Vec::new();
    for ch in topic.channels() {
        let mut entry = json!({ "channel": ch.name, "paused": ch.is_paused() });
        let state = ch.state_of(id, stored.as_ref());
        held |= !matches!(state, MessageState::Done | MessageState::BeforeChannel);
        match state {
            MessageState::InFlight {
                client,
                attempts,
                delivered_ns,
                deadline_ns,
            } => {
                entry["state"] = json!("in_flight");
                entry["attempts"] = json!(attempts);
                entry["delivered_at"] = json!(delivered_ns);
                entry["timeout_at"] = json!(deadline_ns);
                if let Some(c) = client {
                    let settings = c.settings.read();
                    entry["client"] = json!({
                        "remote_address": c.remote_address,
                        "client_id": settings.client_id,
                        "hostname": settings.hostname,
                        "user_agent": settings.user_agent,
                    });
                }
            }
            MessageState::Deferred { due_ns, attempts } => {
                entry["state"] = json!("deferred");
                entry["attempts"] = json!(attempts);
                entry["due"] = json!(due_ns);
            }
            MessageState::Queued { attempts } => {
                entry["state"] = json!("queued");
                entry["attempts"] = json!(attempts);
            }
            MessageState::BeforeChannel => entry["state"] = json!("before_channel"),
            MessageState::Done => entry["state"] = json!("done"),
        }
        channels.push(entry);
    }
    if !held {
        return None;
    }
    let mut out = json!({
        "topic": topic.name(),
        "id": id.to_string(),
        "topic_paused": topic.is_paused(),
        "channels": channels,
    });
    if let Some(m) = &stored {
        out["timestamp"] = json!(m.timestamp_ns);
        out["size"] = json!(m.body.len());
        out["deliver_at"] = json!(m.deliver_at_ns);
        // With no channel yet, the topic keeps the message for the first one.
        let waiting = topic.orphan_start().is_some_and(|start| m.seq >= start.seq);
        out["held_by_topic"] = json!(waiting);
    }
    Some(out)
}

pub async fn list_deferred(State(s): State<HttpState>, RawQuery(q): RawQuery) -> Reply {
    let p = params(&q).ok_or_else(|| err(400, "INVALID_REQUEST"))?;
    let topic = existing_topic(&s, &p)?;
    let channels = chosen_channels(&topic, &p)?;
    let limit = match p.get("limit") {
        None => DEFAULT_LIST_LIMIT,
        Some(v) => v.parse().map_err(|_| err(400, "INVALID_ARG_LIMIT"))?,
    };
    let with_bodies = p.get("include_body").is_some_and(|v| v == "true" || v == "1");
    let listing = tokio::task::spawn_blocking(move || {
        let mut reader = LogReader::default();
        let mut out = Vec::new();
        for ch in channels {
            let (total, deferred) = ch.deferred_messages(limit);
            let messages: Vec<Value> = deferred
                .iter()
                .map(|d| {
                    let mut m = json!({
                        "id": d.id.to_string(), "due": d.due_ns, "attempts": d.attempts,
                    });
                    if let Some(stored) = topic.core.read_one(&mut reader, d.pos) {
                        m["timestamp"] = json!(stored.timestamp_ns);
                        m["size"] = json!(stored.body.len());
                        if with_bodies {
                            let (body, b64) = body_text(&stored.body);
                            m["body"] = json!(body);
                            m["body_base64"] = json!(b64);
                        }
                    }
                    m
                })
                .collect();
            out.push(json!({ "channel": ch.name, "total": total, "messages": messages }));
        }
        json!({ "topic": topic.name(), "channels": out })
    })
    .await
    .map_err(|_| err(500, "INTERNAL_ERROR"))?;
    Ok(json_body(&listing))
}

pub async fn cancel_deferred(State(s): State<HttpState>, method: Method, RawQuery(q): RawQuery) -> Reply {
    require_post(&method)?;
    let p = params(&q).ok_or_else(|| err(400, "INVALID_REQUEST"))?;
    let topic = existing_topic(&s, &p)?;
    let channels = chosen_channels(&topic, &p)?;
    let ids = message_ids(&p)?;
    let topic_name = topic.name().to_string();
    let result = tokio::task::spawn_blocking(move || {
        let mut on: HashMap<MessageId, Vec<Value>> = HashMap::new();
        for ch in &channels {
            for (id, due) in ch.cancel_deferred(&ids) {
                on.entry(id)
                    .or_default()
                    .push(json!({ "channel": ch.name, "due": due }));
            }
        }
        let mut cancelled = Vec::new();
        let mut not_deferred = Vec::new();
        for id in ids {
            match on.remove(&id) {
                Some(channels) => cancelled.push(json!({ "id": id.to_string(), "channels": channels })),
                None => not_deferred.push(json!(id.to_string())),
            }
        }
        (cancelled, not_deferred)
    })
    .await
    .map_err(|_| err(500, "INTERNAL_ERROR"))?;
    let (cancelled, not_deferred) = result;
    if cancelled.is_empty() {
        return Err(err(404, "MESSAGE_NOT_DEFERRED"));
    }
    Ok(json_body(&json!({
        "topic": topic_name,
        "cancelled": cancelled,
        "not_deferred": not_deferred,
    })))
}
