//! nsqlookupd's HTTP API (nsq-reference §2.3): discovery for consumers (`/lookup`, `/topics`,
//! `/channels`, `/nodes`) and administration of the registration DB, with NSQ's response
//! conventions (`crate::common::http_api`) and nsqlookupd's JSON shapes and error texts.
//!
//! Inactivity and tombstones are applied here, at read time (§2.4): nothing expires from the
//! DB on a timer.
// Handlers return finished responses as errors; boxing them would only add noise.
#![allow(clippy::result_large_err)]

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::middleware;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use serde::Serialize;
use serde_json::{json, Value};

use super::registry::{filter_active, Category, PeerInfo, Producer, Registration, Registry};
use super::{Level, LookupdOptions, NSQLOOKUPD_VERSION};
use crate::common::http_api::{empty, err, json_body, nsq_headers, ok_text, params};
use crate::common::time::now_ns;
use crate::protocol::names::{is_valid_channel_name, is_valid_topic_name};

/// What Go's zero `time.Time` gives for `UnixNano()` (an int64 overflow), which nsqlookupd's
/// `/debug` shows as `tombstoned_at` for producers never tombstoned.
const GO_ZERO_TIME_UNIX_NANO: i64 = -6_795_364_578_871_345_152;

#[derive(Clone)]
struct HttpState {
    registry: Arc<Registry>,
    opts: Arc<LookupdOptions>,
}

type Reply = Result<Response, Response>;

/// The HTTP API over `registry`; serve it with `axum::serve`.
pub fn router(registry: Arc<Registry>, opts: Arc<LookupdOptions>) -> Router {
    Router::new()
        .route("/ping", get(ping))
        .route("/info", get(info))
        .route("/debug", get(debug))
        .route("/lookup", get(lookup))
        .route("/topics", get(topics))
        .route("/channels", get(channels))
        .route("/nodes", get(nodes))
        .route("/topic/create", post(create_topic))
        .route("/topic/delete", post(delete_topic))
        .route("/channel/create", post(create_channel))
        .route("/channel/delete", post(delete_channel))
        .route("/topic/tombstone", post(tombstone_topic_producer))
        .fallback(|| async { err(404, "NOT_FOUND") })
        .layer(middleware::from_fn(nsq_headers))
        .with_state(HttpState { registry, opts })
}

fn query(q: &Option<String>) -> Result<HashMap<String, String>, Response> {
    params(q).ok_or_else(|| err(400, "INVALID_REQUEST"))
}

/// A parameter that must be present; an empty value counts as present, as in nsqlookupd.
fn required<'p>(p: &'p HashMap<String, String>, key: &str, missing: &str) -> Result<&'p str, Response> {
    p.get(key).map(String::as_str).ok_or_else(|| err(400, missing))
}

/// `topic` and `channel`, both required and valid (nsqlookupd's `GetTopicChannelArgs`).
fn topic_channel_args(p: &HashMap<String, String>) -> Result<(&str, &str), Response> {
    let topic = required(p, "topic", "MISSING_ARG_TOPIC")?;
    if !is_valid_topic_name(topic) {
        return Err(err(400, "INVALID_ARG_TOPIC"));
    }
    let channel = required(p, "channel", "MISSING_ARG_CHANNEL")?;
    if !is_valid_channel_name(channel) {
        return Err(err(400, "INVALID_ARG_CHANNEL"));
    }
    Ok((topic, channel))
}

async fn ping() -> Response {
    ok_text("OK")
}

async fn info() -> Response {
    json_body(&json!({ "version": NSQLOOKUPD_VERSION }))
}

fn topic_names(regs: Vec<Registration>) -> Vec<String> {
    regs.into_iter().map(|r| r.key).collect()
}

fn channel_names(regs: Vec<Registration>) -> Vec<String> {
    regs.into_iter().map(|r| r.subkey).collect()
}

async fn topics(State(s): State<HttpState>) -> Response {
    let topics = topic_names(s.registry.find_registrations(Category::Topic, None, Some("")));
    json_body(&json!({ "topics": topics }))
}

async fn channels(State(s): State<HttpState>, RawQuery(q): RawQuery) -> Reply {
    let p = query(&q)?;
    let topic = required(&p, "topic", "MISSING_ARG_TOPIC")?;
    let channels = channel_names(
        s.registry
            .find_registrations(Category::Channel, Some(topic), None),
    );
    Ok(json_body(&json!({ "channels": channels })))
}

/// A producer as `/lookup` lists it (nsqlookupd's `PeerInfo`, fields in its order).
#[derive(Serialize)]
struct PeerJson<'a> {
    remote_address: &'a str,
    hostname: &'a str,
    broadcast_address: &'a str,
    tcp_port: i64,
    http_port: i64,
    version: &'a str,
    topology_zone: &'a str,
    topology_region: &'a str,
}

impl<'a> From<&'a PeerInfo> for PeerJson<'a> {
    fn from(p: &'a PeerInfo) -> Self {
        PeerJson {
            remote_address: &p.remote_address,
            hostname: &p.hostname,
            broadcast_address: &p.broadcast_address,
            tcp_port: p.tcp_port,
            http_port: p.http_port,
            version: &p.version,
            topology_zone: &p.topology_zone,
            topology_region: &p.topology_region,
        }
    }
}

async fn lookup(State(s): State<HttpState>, RawQuery(q): RawQuery) -> Reply {
    let p = query(&q)?;
    let topic = required(&p, "topic", "MISSING_ARG_TOPIC")?;
    let db = &s.registry;
    if db
        .find_registrations(Category::Topic, Some(topic), Some(""))
        .is_empty()
    {
        return Err(err(404, "TOPIC_NOT_FOUND"));
    }
    let channels = channel_names(db.find_registrations(Category::Channel, Some(topic), None));
    let producers = filter_active(
        db.find_producers(Category::Topic, Some(topic), Some("")),
        s.opts.inactive_producer_timeout,
        s.opts.tombstone_lifetime,
        now_ns(),
    );
    // A struct, not `json!`: a `Value` would reorder each producer's fields alphabetically.
    #[derive(Serialize)]
    struct Lookup<'a> {
        channels: Vec<String>,
        producers: Vec<PeerJson<'a>>,
    }
    Ok(json_body(&Lookup {
        channels,
        producers: producers.iter().map(|p| PeerJson::from(&*p.peer)).collect(),
    }))
}

/// An nsqd as `/nodes` lists it (nsqlookupd's `node`, fields in its order).
#[derive(Serialize)]
struct NodeJson<'a> {
    remote_address: &'a str,
    hostname: &'a str,
    broadcast_address: &'a str,
    tcp_port: i64,
    http_port: i64,
    version: &'a str,
    topology_zone: &'a str,
    topology_region: &'a str,
    /// Per entry of `topics`: whether this nsqd is tombstoned for it.
    tombstones: Vec<bool>,
    topics: Vec<String>,
}

async fn nodes(State(s): State<HttpState>) -> Response {
    let db = &s.registry;
    let now = now_ns();
    // Tombstoned nodes are still listed (a zero lifetime hides nobody); tombstones show in
    // the `tombstones` array instead.
    let clients = filter_active(
        db.find_producers(Category::Client, Some(""), Some("")),
        s.opts.inactive_producer_timeout,
        std::time::Duration::ZERO,
        now,
    );
    let mut topic_producers: HashMap<String, Vec<Producer>> = HashMap::new();
    let mut nodes = Vec::with_capacity(clients.len());
    for client in &clients {
        let peer = &client.peer;
        let topics: Vec<String> = db
            .lookup_registrations(&peer.id)
            .into_iter()
            .filter(|r| r.category == Category::Topic && r.subkey.is_empty())
            .map(|r| r.key)
            .collect();
        let tombstones = topics
            .iter()
            .map(|t| {
                topic_producers
                    .entry(t.clone())
                    .or_insert_with(|| db.find_producers(Category::Topic, Some(t), Some("")))
                    .iter()
                    .find(|tp| tp.peer.id == peer.id)
                    .is_some_and(|tp| tp.is_tombstoned(s.opts.tombstone_lifetime, now))
            })
            .collect();
        let base = PeerJson::from(&**peer);
        nodes.push(NodeJson {
            remote_address: base.remote_address,
            hostname: base.hostname,
            broadcast_address: base.broadcast_address,
            tcp_port: base.tcp_port,
            http_port: base.http_port,
            version: base.version,
            topology_zone: base.topology_zone,
            topology_region: base.topology_region,
            tombstones,
            topics,
        });
    }
    #[derive(Serialize)]
    struct Nodes<'a> {
        producers: Vec<NodeJson<'a>>,
    }
    json_body(&Nodes { producers: nodes })
}

async fn debug(State(s): State<HttpState>) -> Response {
    // Go marshals these maps with sorted keys; BTreeMaps do the same here.
    let mut data: BTreeMap<String, Vec<BTreeMap<&str, Value>>> = BTreeMap::new();
    for (r, producers) in s.registry.dump() {
        // nsqlookupd only creates an entry while appending a producer.
        if producers.is_empty() {
            continue;
        }
        let entries = producers
            .iter()
            .map(|p| {
                let peer = &p.peer;
                BTreeMap::from([
                    ("id", json!(peer.id)),
                    ("hostname", json!(peer.hostname)),
                    ("broadcast_address", json!(peer.broadcast_address)),
                    ("tcp_port", json!(peer.tcp_port)),
                    ("http_port", json!(peer.http_port)),
                    ("version", json!(peer.version)),
                    ("topology_zone", json!(peer.topology_zone)),
                    ("topology_region", json!(peer.topology_region)),
                    ("last_update", json!(peer.last_update())),
                    ("tombstoned", json!(p.tombstoned)),
                    (
                        "tombstoned_at",
                        json!(p.tombstoned_at.unwrap_or(GO_ZERO_TIME_UNIX_NANO)),
                    ),
                ])
            })
            .collect();
        data.insert(format!("{}:{}:{}", r.category, r.key, r.subkey), entries);
    }
    json_body(&data)
}

async fn create_topic(State(s): State<HttpState>, RawQuery(q): RawQuery) -> Reply {
    let p = query(&q)?;
    let topic = required(&p, "topic", "MISSING_ARG_TOPIC")?;
    if !is_valid_topic_name(topic) {
        return Err(err(400, "INVALID_ARG_TOPIC"));
    }
    s.opts.logf(Level::Info, &format!("DB: adding topic({topic})"));
    s.registry.add_registration(Registration::topic(topic));
    Ok(empty())
}

/// Forgets the topic and its channels here only; the nsqds producing it are not told (and
/// will register it again if they still have it).
async fn delete_topic(State(s): State<HttpState>, RawQuery(q): RawQuery) -> Reply {
    let p = query(&q)?;
    let topic = required(&p, "topic", "MISSING_ARG_TOPIC")?;
    let db = &s.registry;
    for r in db.find_registrations(Category::Channel, Some(topic), None) {
        s.opts.logf(
            Level::Info,
            &format!("DB: removing channel({}) from topic({topic})", r.subkey),
        );
        db.remove_registration(&r);
    }
    if db.remove_registration(&Registration::topic(topic)) {
        s.opts.logf(Level::Info, &format!("DB: removing topic({topic})"));
    }
    Ok(empty())
}

async fn tombstone_topic_producer(State(s): State<HttpState>, RawQuery(q): RawQuery) -> Reply {
    let p = query(&q)?;
    let topic = required(&p, "topic", "MISSING_ARG_TOPIC")?;
    let node = required(&p, "node", "MISSING_ARG_NODE")?;
    s.opts.logf(
        Level::Info,
        &format!("DB: setting tombstone for producer@{node} of topic({topic})"),
    );
    s.registry.tombstone_topic_producer(topic, node, now_ns());
    Ok(empty())
}

async fn create_channel(State(s): State<HttpState>, RawQuery(q): RawQuery) -> Reply {
    let p = query(&q)?;
    let (topic, channel) = topic_channel_args(&p)?;
    s.opts.logf(
        Level::Info,
        &format!("DB: adding channel({channel}) in topic({topic})"),
    );
    s.registry.add_registration(Registration::channel(topic, channel));
    s.opts.logf(Level::Info, &format!("DB: adding topic({topic})"));
    s.registry.add_registration(Registration::topic(topic));
    Ok(empty())
}

async fn delete_channel(State(s): State<HttpState>, RawQuery(q): RawQuery) -> Reply {
    let p = query(&q)?;
    let (topic, channel) = topic_channel_args(&p)?;
    if !s
        .registry
        .remove_registration(&Registration::channel(topic, channel))
    {
        return Err(err(404, "CHANNEL_NOT_FOUND"));
    }
    s.opts.logf(
        Level::Info,
        &format!("DB: removing channel({channel}) from topic({topic})"),
    );
    Ok(empty())
}
