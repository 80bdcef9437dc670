//! The admin's HTTP routes: nsqadmin's JSON API under `/api` with its shapes, status codes and
//! `{"message": ...}` warnings (nsq-reference §3), `/config/:opt`, `/ping`, and the pages and
//! nsqrs's own endpoints (messages, deferred, replays), all under `--base-path`.
#![allow(clippy::result_large_err)]

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, OriginalUri, Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, Method};
use axum::middleware;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;
use serde_json::{json, Value};

use super::access::{self, ActionSource, Refusal};
use super::cluster::Partial;
use super::stats::{ChannelStats, Producer, TopicStats};
use super::{messages, pages, replays, Admin};
use crate::common::http_api::{err, json_body, nsq_headers, params};
use crate::protocol::names::{is_valid_channel_name, is_valid_topic_name};

type Reply = Result<Response, Response>;
type AdminState = State<Arc<Admin>>;

pub fn router(admin: Arc<Admin>) -> Router {
    let api = Router::new()
        .route("/ping", get(|| async { "OK" }))
        .route("/api/topics", get(topics).post(create_topic_channel))
        .route(
            "/api/topics/:topic",
            get(topic).post(topic_action).delete(delete_topic),
        )
        .route(
            "/api/topics/:topic/:channel",
            get(channel).post(channel_action).delete(delete_channel),
        )
        .route("/api/nodes", get(nodes))
        .route("/api/nodes/:node", get(node).delete(tombstone_node))
        .route("/api/counter", get(counter))
        .route("/api/replication", get(replication))
        .route("/config/:opt", get(config).put(config))
        .route("/api/deferred/cancel", post(messages::cancel_deferred))
        .route("/api/replays", post(replays::start_replay))
        .route("/api/replays/:run", get(replays::replay_progress))
        .fallback(|| async { err(404, "NOT_FOUND") })
        .layer(middleware::from_fn(nsq_headers));
    let app = pages::routes().merge(api).with_state(admin.clone());
    let base = admin.opts().base_path;
    if base == "/" {
        app
    } else {
        // nsqadmin serves its index at the bare base path; the slash form goes there too.
        let index = base.clone();
        Router::new()
            .route(
                &format!("{base}/"),
                get(move || async move { axum::response::Redirect::permanent(&index) }),
            )
            .nest(&base, app)
    }
}

/// nsqadmin's warning text for partial failures: empty when all answered.
fn warning(msgs: &[String]) -> String {
    if msgs.is_empty() {
        String::new()
    } else {
        format!("WARNING: {}", msgs.join("; "))
    }
}

/// A failure of the whole request: nsqadmin's 502 `UPSTREAM_ERROR`.
pub fn upstream(admin: &Admin, what: &str, e: String) -> Response {
    admin.logf("error", &format!("failed to {what} - {e}"));
    err(502, &format!("UPSTREAM_ERROR: {e}"))
}

/// `value` (an object) with nsqadmin's `message` field added.
fn with_message(value: impl serde::Serialize, warnings: &[String]) -> Response {
    let mut v = serde_json::to_value(value).unwrap_or(Value::Null);
    match &mut v {
        Value::Object(m) => {
            m.insert("message".into(), json!(warning(warnings)));
        }
        // A missing channel: nsqadmin embeds a nil struct, leaving only the message.
        _ => v = json!({ "message": warning(warnings) }),
    }
    json_body(&v)
}

fn log_warnings(admin: &Admin, warnings: &[String]) {
    for w in warnings {
        admin.logf("warn", w);
    }
}

async fn topics(State(admin): AdminState, RawQuery(q): RawQuery) -> Reply {
    let p = params(&q).ok_or_else(|| err(400, "INVALID_REQUEST"))?;
    let cluster = admin.cluster();
    let Partial {
        value: topics,
        warnings,
    } = cluster
        .topics()
        .await
        .map_err(|e| upstream(&admin, "get topics", e))?;
    if p.get("inactive").map(String::as_str) == Some("true") {
        // Topics lookupd knows that no nsqd produces any more, with their channels.
        let mut inactive = serde_json::Map::new();
        if !cluster.lookupd.is_empty() {
            for t in &topics {
                let producers = cluster
                    .topic_producers(t)
                    .await
                    .map(|p| p.value)
                    .unwrap_or_default();
                if producers.is_empty() {
                    let channels = cluster
                        .lookupd_channels(t)
                        .await
                        .map(|c| c.value)
                        .unwrap_or_default();
                    inactive.insert(t.clone(), json!(channels));
                }
            }
        }
        log_warnings(&admin, &warnings);
        return Ok(json_body(
            &json!({ "topics": inactive, "message": warning(&warnings) }),
        ));
    }
    log_warnings(&admin, &warnings);
    Ok(json_body(
        &json!({ "topics": topics, "message": warning(&warnings) }),
    ))
}

/// The topic summed over the cluster, per-node rows included, and the warnings.
pub async fn topic_stats(admin: &Admin, topic: &str) -> Result<(TopicStats, Vec<String>), Response> {
    let cluster = admin.cluster();
    let producers = cluster
        .topic_producers(topic)
        .await
        .map_err(|e| upstream(admin, "get topic producers", e))?;
    let mut warnings = producers.warnings;
    let rows = cluster
        .node_stats(&producers.value, Some(topic), None, false)
        .await
        .map_err(|e| upstream(admin, "get topic metadata", e))?;
    warnings.extend(rows.warnings);
    log_warnings(admin, &warnings);
    Ok((TopicStats::sum(topic, &rows.value), warnings))
}

/// The channel summed over the cluster, per-node rows and clients included.
pub async fn channel_stats(
    admin: &Admin,
    topic: &str,
    channel: &str,
) -> Result<(Option<ChannelStats>, Vec<String>), Response> {
    let cluster = admin.cluster();
    let producers = cluster
        .topic_producers(topic)
        .await
        .map_err(|e| upstream(admin, "get topic producers", e))?;
    let mut warnings = producers.warnings;
    let rows = cluster
        .node_stats(&producers.value, Some(topic), Some(channel), true)
        .await
        .map_err(|e| upstream(admin, "get channel metadata", e))?;
    warnings.extend(rows.warnings);
    log_warnings(admin, &warnings);
    let found = super::cluster::Cluster::channel_rows(&rows.value, channel);
    let sum = (!found.is_empty()).then(|| ChannelStats::sum(topic, channel, &found));
    Ok((sum, warnings))
}

async fn topic(State(admin): AdminState, Path(topic): Path<String>) -> Reply {
    let (stats, warnings) = topic_stats(&admin, &topic).await?;
    Ok(with_message(stats, &warnings))
}

async fn channel(State(admin): AdminState, Path((topic, channel)): Path<(String, String)>) -> Reply {
    let (stats, warnings) = channel_stats(&admin, &topic, &channel).await?;
    Ok(with_message(stats, &warnings))
}

async fn nodes(State(admin): AdminState) -> Reply {
    let producers = admin
        .cluster()
        .producers()
        .await
        .map_err(|e| upstream(&admin, "get nodes", e))?;
    log_warnings(&admin, &producers.warnings);
    Ok(json_body(
        &json!({ "nodes": producers.value, "message": warning(&producers.warnings) }),
    ))
}

/// nsqrs: every node's replication state (peers, lag, copies held); `null` for a node that
/// has none to report (Go nsqd).
async fn replication(State(admin): AdminState) -> Reply {
    let producers = admin
        .cluster()
        .producers()
        .await
        .map_err(|e| upstream(&admin, "get nodes", e))?;
    log_warnings(&admin, &producers.warnings);
    let states = admin.cluster().replication(&producers.value).await;
    let nodes: Vec<Value> = producers
        .value
        .iter()
        .zip(states)
        .map(|(p, r)| json!({ "node": p.http_address(), "hostname": p.hostname, "replication": r }))
        .collect();
    Ok(json_body(
        &json!({ "nodes": nodes, "message": warning(&producers.warnings) }),
    ))
}

/// One node as its page and `/api/nodes/:node` show it.
pub struct NodeView {
    /// nsqadmin's answer: the node's topics with their channels and clients, and its totals.
    pub stats: Value,
    /// The node as lookupd (or `--nsqd-http-address`) reported it.
    pub producer: Producer,
    pub warnings: Vec<String>,
}

/// One node's topics with their channels and clients, and its totals.
pub async fn node_stats(admin: &Admin, node: &str) -> Result<NodeView, Response> {
    let cluster = admin.cluster();
    let producers = cluster
        .producers()
        .await
        .map_err(|e| upstream(admin, "get producers", e))?;
    let Some(producer) = producers.value.iter().find(|p| p.http_address() == node) else {
        return Err(err(404, "NODE_NOT_FOUND"));
    };
    let rows = cluster
        .node_stats(std::slice::from_ref(producer), None, None, true)
        .await
        .map_err(|e| upstream(admin, "get nsqd stats", e))?;
    let total_clients: usize = rows
        .value
        .iter()
        .flat_map(|t| &t.channels)
        .map(|c| c.clients.as_ref().map_or(0, Vec::len))
        .sum();
    let total_messages: i64 = rows.value.iter().map(|t| t.message_count).sum();
    let mut warnings = producers.warnings;
    warnings.extend(rows.warnings);
    Ok(NodeView {
        stats: json!({
            "node": node,
            "topics": rows.value,
            "total_messages": total_messages,
            "total_clients": total_clients,
        }),
        producer: producer.clone(),
        warnings,
    })
}

async fn node(State(admin): AdminState, Path(node): Path<String>) -> Reply {
    let view = node_stats(&admin, &node).await?;
    Ok(with_message(view.stats, &view.warnings))
}

async fn counter(State(admin): AdminState) -> Reply {
    let cluster = admin.cluster();
    let producers = cluster
        .producers()
        .await
        .map_err(|e| upstream(&admin, "get counter producer list", e))?;
    let rows = cluster
        .node_stats(&producers.value, None, None, false)
        .await
        .map_err(|e| upstream(&admin, "get nsqd stats", e))?;
    let mut stats = serde_json::Map::new();
    for t in &rows.value {
        for c in &t.channels {
            let key = format!("{}:{}:{}", t.topic_name, c.channel_name, c.node);
            let entry = stats.entry(key).or_insert_with(|| {
                json!({"node": c.node, "topic_name": t.topic_name, "channel_name": c.channel_name, "message_count": 0})
            });
            entry["message_count"] = json!(entry["message_count"].as_i64().unwrap_or(0) + c.message_count);
        }
    }
    let mut warnings = producers.warnings;
    warnings.extend(rows.warnings);
    Ok(json_body(
        &json!({ "stats": stats, "message": warning(&warnings) }),
    ))
}

/// Refuses an action nobody authorised; `Ok` lets it go ahead.
pub fn check_action(admin: &Admin, headers: &HeaderMap) -> Result<(), Response> {
    match access::authorize(admin, headers) {
        Ok(()) => Ok(()),
        Err(Refusal::Forbidden) => Err(err(403, "FORBIDDEN")),
        Err(Refusal::Unauthenticated) => {
            let mut resp = err(401, "UNAUTHORIZED");
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            Err(resp)
        }
    }
}

fn source(headers: HeaderMap, peer: SocketAddr, uri: &axum::http::Uri) -> ActionSource {
    ActionSource {
        headers,
        peer,
        uri: uri.path_and_query().map(|p| p.to_string()).unwrap_or_default(),
    }
}

/// Go's json decoder message for a body that is not the expected object.
fn bad_body(e: serde_json::Error) -> Response {
    err(400, &e.to_string())
}

fn action_done(admin: &Admin, what: &str, r: Result<Vec<String>, String>) -> Reply {
    let warnings = r.map_err(|e| upstream(admin, what, e))?;
    log_warnings(admin, &warnings);
    Ok(json_body(&json!({ "message": warning(&warnings) })))
}

#[derive(Deserialize)]
struct CreateBody {
    #[serde(default)]
    topic: String,
    #[serde(default)]
    channel: String,
}

async fn create_topic_channel(
    State(admin): AdminState,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Reply {
    check_action(&admin, &headers)?;
    let body: CreateBody = serde_json::from_slice(&body).map_err(bad_body)?;
    if !is_valid_topic_name(&body.topic) {
        return Err(err(400, "INVALID_TOPIC"));
    }
    if !body.channel.is_empty() && !is_valid_channel_name(&body.channel) {
        return Err(err(400, "INVALID_CHANNEL"));
    }
    let channel = (!body.channel.is_empty()).then_some(body.channel.as_str());
    let r = admin.cluster().create(&body.topic, channel).await;
    let src = source(headers, peer, &uri);
    access::notify(&admin, "create_topic", &body.topic, "", "", &src);
    if let Some(c) = channel {
        access::notify(&admin, "create_channel", &body.topic, c, "", &src);
    }
    action_done(&admin, "create topic/channel", r)
}

#[derive(Deserialize)]
struct ActionBody {
    #[serde(default)]
    action: String,
}

async fn topic_action(
    State(admin): AdminState,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    Path(topic): Path<String>,
    body: Bytes,
) -> Reply {
    let src = source(headers, peer, &uri);
    topic_channel_action(&admin, &topic, None, &body, &src).await
}

async fn channel_action(
    State(admin): AdminState,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    Path((topic, channel)): Path<(String, String)>,
    body: Bytes,
) -> Reply {
    let src = source(headers, peer, &uri);
    topic_channel_action(&admin, &topic, Some(&channel), &body, &src).await
}

async fn topic_channel_action(
    admin: &Arc<Admin>,
    topic: &str,
    channel: Option<&str>,
    body: &[u8],
    src: &ActionSource,
) -> Reply {
    check_action(admin, &src.headers)?;
    let body: ActionBody = serde_json::from_slice(body).map_err(bad_body)?;
    if !matches!(body.action.as_str(), "pause" | "unpause" | "empty") {
        return Err(err(400, "INVALID_ACTION"));
    }
    let r = admin
        .cluster()
        .topic_channel_action(topic, channel, &body.action)
        .await;
    let what = format!(
        "{}_{}",
        body.action,
        if channel.is_some() { "channel" } else { "topic" }
    );
    access::notify(admin, &what, topic, channel.unwrap_or(""), "", src);
    action_done(admin, &format!("{} topic/channel", body.action), r)
}

async fn delete_topic(
    State(admin): AdminState,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    Path(topic): Path<String>,
) -> Reply {
    check_action(&admin, &headers)?;
    let r = admin.cluster().delete_topic(&topic).await;
    access::notify(
        &admin,
        "delete_topic",
        &topic,
        "",
        "",
        &source(headers, peer, &uri),
    );
    action_done(&admin, "delete topic", r)
}

async fn delete_channel(
    State(admin): AdminState,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    Path((topic, channel)): Path<(String, String)>,
) -> Reply {
    check_action(&admin, &headers)?;
    let r = admin.cluster().delete_channel(&topic, &channel).await;
    access::notify(
        &admin,
        "delete_channel",
        &topic,
        &channel,
        "",
        &source(headers, peer, &uri),
    );
    action_done(&admin, "delete channel", r)
}

#[derive(Deserialize)]
struct TombstoneBody {
    #[serde(default)]
    topic: String,
}

async fn tombstone_node(
    State(admin): AdminState,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    Path(node): Path<String>,
    body: Bytes,
) -> Reply {
    check_action(&admin, &headers)?;
    let body: TombstoneBody = serde_json::from_slice(&body).map_err(|_| err(400, "INVALID_BODY"))?;
    if !is_valid_topic_name(&body.topic) {
        return Err(err(400, "INVALID_TOPIC"));
    }
    let r = admin.cluster().tombstone(&body.topic, &node).await;
    access::notify(
        &admin,
        "tombstone_topic_producer",
        &body.topic,
        "",
        &node,
        &source(headers, peer, &uri),
    );
    action_done(&admin, "tombstone node for topic", r)
}

/// nsqadmin's `/config/:opt`: read any option by its config name; change the lookupds or
/// the log level.
async fn config(
    State(admin): AdminState,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    method: Method,
    Path(opt): Path<String>,
    body: Bytes,
) -> Reply {
    if !access::config_allowed(&admin, peer) {
        return Err(err(403, "FORBIDDEN"));
    }
    if method == Method::PUT {
        if body.is_empty() || body.len() > 1024 * 1024 {
            return Err(err(413, "INVALID_VALUE"));
        }
        match opt.as_str() {
            "nsqlookupd_http_addresses" => {
                let addrs: Vec<String> =
                    serde_json::from_slice(&body).map_err(|_| err(400, "INVALID_VALUE"))?;
                admin.update_opts(|o| o.lookupd_http_addresses = addrs);
            }
            "log_level" => {
                let level = String::from_utf8_lossy(&body).trim().to_ascii_lowercase();
                if !matches!(level.as_str(), "debug" | "info" | "warn" | "error" | "fatal") {
                    return Err(err(400, "INVALID_VALUE"));
                }
                admin.update_opts(|o| o.log_level = level);
            }
            _ => return Err(err(400, "INVALID_OPTION")),
        }
    }
    config_value(&admin.opts(), &opt)
        .map(|v| json_body(&v))
        .ok_or_else(|| err(400, "INVALID_OPTION"))
}

/// An option by nsqadmin's config name, as nsqadmin's JSON writes it (durations in ns,
/// the log level as its number).
fn config_value(o: &super::AdminOptions, name: &str) -> Option<Value> {
    let ns = |d: std::time::Duration| json!(d.as_nanos() as u64);
    Some(match name {
        "log_level" => json!(match o.log_level.as_str() {
            "debug" => 1,
            "info" => 2,
            "warn" => 3,
            "error" => 4,
            _ => 5,
        }),
        "log_prefix" => json!(o.log_prefix),
        "http_address" => json!(o.http_address),
        "base_path" => json!(o.base_path),
        "dev_static_dir" => json!(""),
        "graphite_url" => json!(o.graphite_url),
        "proxy_graphite" => json!(o.proxy_graphite),
        "statsd_prefix" => json!(o.statsd_prefix),
        "statsd_counter_format" => json!(o.statsd_counter_format),
        "statsd_gauge_format" => json!(o.statsd_gauge_format),
        "statsd_interval" => ns(o.statsd_interval),
        "nsqlookupd_http_addresses" => json!(o.lookupd_http_addresses),
        "nsqd_http_addresses" => json!(o.nsqd_http_addresses),
        "http_client_connect_timeout" => ns(o.http_client_connect_timeout),
        "http_client_request_timeout" => ns(o.http_client_request_timeout),
        "http_client_tls_insecure_skip_verify" => json!(o.http_client_tls_insecure_skip_verify),
        "http_client_tls_root_ca_file" => json!(o.http_client_tls_root_ca_file),
        "http_client_tls_cert" => json!(o.http_client_tls_cert),
        "http_client_tls_key" => json!(o.http_client_tls_key),
        "allow_config_from_cidr" => json!(o.allow_config_from_cidr),
        "notification_http_endpoint" => json!(o.notification_http_endpoint),
        "acl_http_header" => json!(o.acl_http_header),
        "admin_users" => json!(o.admin_users),
        _ => return None,
    })
}
