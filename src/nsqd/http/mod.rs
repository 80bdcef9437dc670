//! nsqd's HTTP API (nsq-reference §1.9) with NSQ's response conventions: plain `OK`, empty
//! 200s for admin actions, `{"message": ...}` errors, and `X-NSQ-Content-Type` on everything.
// Handlers return finished responses as errors; boxing them would only add noise.
#![allow(clippy::result_large_err)]

pub mod body;
mod messages;
mod metrics;

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;
use serde_json::json;

use crate::common::http_api::{empty, err, json_body, nsq_headers, ok_text, params};
use crate::common::time::now_ns;
use crate::nsqd::broker::topic::{PublishError, Topic};
use crate::nsqd::broker::{stats, Broker, TopicError, NSQ_VERSION};
use crate::protocol::names::{is_valid_channel_name, is_valid_topic_name};

#[derive(Clone)]
pub struct HttpState {
    pub broker: Arc<Broker>,
    pub lookup: Arc<crate::nsqd::lookup_peer::LookupPeers>,
    pub tcp_port: u16,
    pub http_port: u16,
    /// 0 when HTTPS is off.
    pub https_port: u16,
}

type Reply = Result<Response, Response>;

/// The API router; `over_tls` tells the HTTPS listener's router from the plain one.
pub fn router(state: HttpState, over_tls: bool) -> Router {
    let o = &state.broker.opts;
    let tls_required = !over_tls && o.tls_required == crate::nsqd::options::TlsRequired::Yes;
    Router::new()
        .route("/ping", get(ping))
        .route("/info", get(info))
        .route("/stats", get(stats_handler))
        .route("/pub", any(publish))
        .route("/mpub", any(multi_publish))
        .route("/topic/:action", any(topic_action))
        .route("/channel/:action", any(channel_action))
        .route("/config/:opt", any(config))
        .route("/metrics", get(metrics_handler))
        .route("/message", get(messages::message_state))
        .route("/deferred", get(messages::list_deferred))
        .route("/deferred/cancel", any(messages::cancel_deferred))
        .route("/replication", get(replication_status))
        .route("/replication/adopt", any(replication_adopt))
        .fallback(|| async { err(404, "NOT_FOUND") })
        .layer(middleware::from_fn_with_state(
            Arc::new(o.http_admin_token.clone()),
            admin_token,
        ))
        .layer(middleware::from_fn(nsq_headers))
        .layer(middleware::from_fn_with_state(
            (tls_required, state.https_port),
            require_tls,
        ))
        .with_state(state)
}

/// `--http-admin-token`: the endpoints that change or reveal configuration need the token;
/// publishing and reading stats stay open, as operators wire those to other systems.
async fn admin_token(State(token): State<Arc<String>>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    let admin = path.starts_with("/topic/")
        || path.starts_with("/channel/")
        || path.starts_with("/config")
        || path.starts_with("/deferred")
        || path.starts_with("/replication/");
    if token.is_empty() || !admin {
        return next.run(req).await;
    }
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    // Compare without an early exit so timing does not reveal a matching prefix.
    let same = given.len() == token.len()
        && given
            .bytes()
            .zip(token.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    if same {
        next.run(req).await
    } else {
        let mut resp = err(401, "UNAUTHORIZED");
        resp.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        resp
    }
}

async fn metrics_handler(State(s): State<HttpState>) -> Response {
    let st = stats::collect(&s.broker, None, None, true, false);
    let mut text = metrics::render(&st, stats::process_rss_bytes());
    if let Some(r) = s.broker.replication.get() {
        text.push_str(&crate::replication::status::render_metrics(
            &crate::replication::status::collect(r),
        ));
    }
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        text,
    )
        .into_response()
}

/// nsqrs: replication's peers, lag and copies (the `replication` object of `/stats`).
async fn replication_status(State(s): State<HttpState>) -> Reply {
    let r = s
        .broker
        .replication
        .get()
        .ok_or_else(|| err(404, "REPLICATION_OFF"))?;
    Ok(json_body(&crate::replication::status::collect(r)))
}

/// nsqrs: `POST /replication/adopt?node=<owner>`: this broker adopts a lost broker's copy.
async fn replication_adopt(State(s): State<HttpState>, method: Method, RawQuery(q): RawQuery) -> Reply {
    require_post(&method)?;
    let p = params(&q).ok_or_else(|| err(400, "INVALID_REQUEST"))?;
    let node = p
        .get("node")
        .filter(|n| !n.is_empty())
        .ok_or_else(|| err(400, "MISSING_ARG_NODE"))?;
    let r = s
        .broker
        .replication
        .get()
        .ok_or_else(|| err(404, "REPLICATION_OFF"))?;
    match crate::replication::adopt::adopt(r, node).await {
        Ok(reports) => Ok(json_body(&json!({ "adopted": reports }))),
        Err(e) if e.starts_with("no copy") => Err(json_error(404, "COPY_NOT_FOUND", &e)),
        Err(e) if e.contains("is connected") => Err(json_error(409, "OWNER_ALIVE", &e)),
        Err(e) => Err(json_error(500, "ADOPT_FAILED", &e)),
    }
}

/// An error with NSQ's `message` and nsqrs's explanation beside it.
fn json_error(code: u16, message: &str, detail: &str) -> Response {
    let mut resp = json_body(&json!({ "message": message, "error": detail }));
    *resp.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    resp
}

/// `--tls-required=true`: every plain-HTTP request is refused with nsqd's exact body.
async fn require_tls(
    State((required, https_port)): State<(bool, u16)>,
    req: Request,
    next: Next,
) -> Response {
    if !required {
        return next.run(req).await;
    }
    let mut resp = (
        StatusCode::FORBIDDEN,
        format!(r#"{{"message": "TLS_REQUIRED", "https_port": {https_port}}}"#),
    )
        .into_response();
    resp.headers_mut()
        .insert("X-NSQ-Content-Type", HeaderValue::from_static("nsq; version=1.0"));
    resp
}

fn require_post(method: &Method) -> Result<(), Response> {
    if method == Method::POST || method == Method::PUT {
        Ok(())
    } else {
        Err(err(405, "METHOD_NOT_ALLOWED"))
    }
}

async fn ping(State(s): State<HttpState>) -> Response {
    if let Some(e) = s.broker.health() {
        return (StatusCode::INTERNAL_SERVER_ERROR, format!("NOK - {e}")).into_response();
    }
    // Replication degraded: strict refuses publishes, so this broker is not ready for them;
    // best-effort accepts them, and stays healthy while saying so.
    match s.broker.replication.get().and_then(|r| r.degraded()) {
        Some((crate::replication::Policy::Strict, why)) => {
            (StatusCode::SERVICE_UNAVAILABLE, format!("NOK - {why}")).into_response()
        }
        Some((crate::replication::Policy::BestEffort, why)) => {
            (StatusCode::OK, format!("OK - {why}")).into_response()
        }
        None => ok_text("OK"),
    }
}

async fn info(State(s): State<HttpState>) -> Response {
    let o = &s.broker.opts;
    json_body(&json!({
        "version": NSQ_VERSION,
        "broadcast_address": o.broadcast_address,
        "hostname": crate::common::host::local_hostname(),
        "http_port": s.http_port,
        "tcp_port": s.tcp_port,
        "start_time": s.broker.start_time_unix(),
        "max_heartbeat_interval": o.max_heartbeat_interval.as_nanos() as u64,
        "max_output_buffer_size": o.max_output_buffer_size,
        "max_output_buffer_timeout": o.max_output_buffer_timeout.as_nanos() as u64,
        "max_deflate_level": o.max_deflate_level,
        "topology_zone": o.topology_zone,
        "topology_region": o.topology_region,
    }))
}

fn bool_param(p: &HashMap<String, String>, key: &str) -> bool {
    !matches!(p.get(key).map(String::as_str), Some("false") | Some("0"))
}

async fn stats_handler(State(s): State<HttpState>, RawQuery(q): RawQuery) -> Reply {
    let p = params(&q).ok_or_else(|| err(400, "INVALID_REQUEST"))?;
    let topic = p.get("topic").filter(|t| !t.is_empty()).map(String::as_str);
    let channel = p.get("channel").filter(|t| !t.is_empty()).map(String::as_str);
    let include_clients = bool_param(&p, "include_clients");
    let include_mem = bool_param(&p, "include_mem");
    let st = stats::collect(&s.broker, topic, channel, include_clients, include_mem);
    let replication = s
        .broker
        .replication
        .get()
        .map(|r| crate::replication::status::collect(r));
    if p.get("format").map(String::as_str) == Some("json") {
        let mut doc = serde_json::to_value(&st).unwrap_or_default();
        if let (Some(r), Some(obj)) = (&replication, doc.as_object_mut()) {
            obj.insert("replication".into(), serde_json::to_value(r).unwrap_or_default());
        }
        return Ok(json_body(&doc));
    }
    let uptime = s.broker.start_time.elapsed().unwrap_or_default();
    let mut text = stats::render_text(&st, uptime);
    if let Some(r) = &replication {
        text.push_str(&crate::replication::status::render_text(r));
    }
    Ok((StatusCode::OK, text).into_response())
}

/// Topic from the query for publishing: created if missing.
fn publish_topic(s: &HttpState, p: &HashMap<String, String>) -> Result<Arc<Topic>, Response> {
    let name = p.get("topic").ok_or_else(|| err(400, "MISSING_ARG_TOPIC"))?;
    if !is_valid_topic_name(name) {
        return Err(err(400, "INVALID_TOPIC"));
    }
    s.broker.get_or_create_topic(name).map_err(topic_error)
}

/// nsqd answers EXITING only when it is exiting; a topic whose files cannot be opened (out of
/// descriptors, a damaged directory) is an internal error, and the log says why.
fn topic_error(e: TopicError) -> Response {
    match e {
        TopicError::Exiting => err(503, "EXITING"),
        TopicError::Unavailable(_) => err(500, "INTERNAL_ERROR"),
    }
}

/// A failed publish: nsqd's 503 EXITING for a failed write (a full disk), but running out of
/// descriptors is not the broker exiting.
/// The HTTP error for a failed publish; `failed` names the command (`PUB_FAILED`,
/// `MPUB_FAILED`) for a batch fewer replicas than `--replicas` hold (strict policy).
fn publish_error(e: PublishError, failed: &str) -> Response {
    match e {
        PublishError::Io(io) if crate::nsqd::broker::files::is_out_of_descriptors(&io) => {
            err(500, "INTERNAL_ERROR")
        }
        PublishError::Replication(_) => err(503, failed),
        _ => err(503, "EXITING"),
    }
}

/// `/pub`, in nsqd's order: a declared length over the limit is refused before any of the body
/// is read, then the body is read up to one byte past the limit, then the query is checked.
async fn publish(State(s): State<HttpState>, RawQuery(q): RawQuery, req: Request) -> Reply {
    require_post(req.method())?;
    let max = s.broker.opts.max_msg_size as usize;
    if body::declared_length(&req).is_some_and(|n| n > max as u64) {
        return Err(err(413, "MSG_TOO_BIG"));
    }
    let body = body::read_limited(req.into_body(), max + 1, |_| false)
        .await
        .map_err(|_| err(500, "INTERNAL_ERROR"))?;
    if body.len() > max {
        return Err(err(413, "MSG_TOO_BIG"));
    }
    if body.is_empty() {
        return Err(err(400, "MSG_EMPTY"));
    }
    let p = params(&q).ok_or_else(|| err(400, "INVALID_REQUEST"))?;
    let topic = publish_topic(&s, &p)?;
    let mut deliver_at = 0;
    if let Some(d) = p.get("defer") {
        let ms: i64 = d.parse().map_err(|_| err(400, "INVALID_DEFER"))?;
        if ms < 0 || ms > s.broker.opts.max_req_timeout.as_millis() as i64 {
            return Err(err(400, "INVALID_DEFER"));
        }
        if ms > 0 {
            deliver_at = now_ns() + ms * 1_000_000;
        }
    }
    let ids = s
        .broker
        .publish(&topic, &[&body], deliver_at, ("http", ""))
        .await
        .map_err(|e| publish_error(e, "PUB_FAILED"))?;
    Ok(with_ids(ok_text("OK"), MESSAGE_ID_HEADER, &ids))
}

/// nsqrs: the ID of a message published over HTTP (the body stays nsqd's plain `OK`).
const MESSAGE_ID_HEADER: &str = "X-Nsqrs-Message-Id";
/// nsqrs: the IDs of an `/mpub`, comma-separated, in publish order.
const MESSAGE_IDS_HEADER: &str = "X-Nsqrs-Message-Ids";
/// Beyond this many IDs the header is left out unless asked for (`?message_ids=true`): common
/// HTTP clients refuse response headers over 16 KiB.
const MAX_DEFAULT_IDS: usize = 500;

fn with_ids(mut resp: Response, name: &'static str, ids: &[crate::protocol::MessageId]) -> Response {
    let list: Vec<String> = ids.iter().map(|id| id.to_string()).collect();
    if let Ok(value) = HeaderValue::from_str(&list.join(",")) {
        resp.headers_mut().insert(name, value);
    }
    resp
}

/// `/mpub`, in nsqd's order: declared length, then the query and topic, then the body, which is
/// read no further than `--max-body-size` (nsqd reads a binary body without limit) and, in
/// binary mode, no further than its last message: a bad count is answered from its four bytes.
async fn multi_publish(State(s): State<HttpState>, RawQuery(q): RawQuery, req: Request) -> Reply {
    require_post(req.method())?;
    let max_body = s.broker.opts.max_body_size as usize;
    if body::declared_length(&req).is_some_and(|n| n > max_body as u64) {
        return Err(err(413, "BODY_TOO_BIG"));
    }
    let p = params(&q).ok_or_else(|| err(400, "INVALID_REQUEST"))?;
    let topic = publish_topic(&s, &p)?;
    let max_msg = s.broker.opts.max_msg_size as usize;
    let binary = p.get("binary").is_some_and(|v| v != "false" && v != "0");
    let read_error = |_| err(500, "INTERNAL_ERROR");
    let data = if binary {
        let mut scan = body::BinaryMpubScan::default();
        let data = body::read_limited(req.into_body(), max_body + 1, |buf| {
            scan.advance(buf, max_msg, max_body) != Ok(false)
        })
        .await
        .map_err(read_error)?;
        match scan.advance(&data, max_msg, max_body) {
            Err(code) => return Err(err(413, code)),
            Ok(true) => data,
            Ok(false) if data.len() > max_body => return Err(err(413, "BODY_TOO_BIG")),
            Ok(false) => return Err(err(413, scan.ended_early())),
        }
    } else {
        body::read_limited(req.into_body(), max_body + 1, |_| false)
            .await
            .map_err(read_error)?
    };
    let messages = if binary {
        body::split_binary_mpub(&data, max_msg, max_body).map_err(|code| err(413, code))?
    } else {
        body::split_text_mpub(&data, max_msg, max_body).map_err(|(status, m)| err(status, m))?
    };
    let mut ids = Vec::new();
    if !messages.is_empty() {
        ids = s
            .broker
            .publish(&topic, &messages, 0, ("http", ""))
            .await
            .map_err(|e| publish_error(e, "MPUB_FAILED"))?;
    }
    let asked = p.get("message_ids").is_some_and(|v| v == "true" || v == "1");
    if ids.len() <= MAX_DEFAULT_IDS || asked {
        return Ok(with_ids(ok_text("OK"), MESSAGE_IDS_HEADER, &ids));
    }
    Ok(ok_text("OK"))
}

async fn topic_action(
    State(s): State<HttpState>,
    method: Method,
    Path(action): Path<String>,
    RawQuery(q): RawQuery,
) -> Reply {
    require_post(&method)?;
    let p = params(&q).ok_or_else(|| err(400, "INVALID_REQUEST"))?;
    let name = p.get("topic").ok_or_else(|| err(400, "MISSING_ARG_TOPIC"))?;
    let b = &s.broker;
    let existing = || b.topic(name).ok_or_else(|| err(404, "TOPIC_NOT_FOUND"));
    match action.as_str() {
        "create" => {
            if !is_valid_topic_name(name) {
                return Err(err(400, "INVALID_TOPIC"));
            }
            b.get_or_create_topic(name).map_err(topic_error)?;
        }
        "delete" => {
            if !b.delete_topic(name) {
                return Err(err(404, "TOPIC_NOT_FOUND"));
            }
        }
        "empty" => {
            if !is_valid_topic_name(name) {
                return Err(err(400, "INVALID_TOPIC"));
            }
            existing()?.empty();
        }
        "pause" | "unpause" => {
            existing()?.set_paused(action == "pause");
            b.persist_metadata();
        }
        _ => return Err(err(404, "NOT_FOUND")),
    }
    Ok(empty())
}

async fn channel_action(
    State(s): State<HttpState>,
    method: Method,
    Path(action): Path<String>,
    RawQuery(q): RawQuery,
) -> Reply {
    require_post(&method)?;
    let p = params(&q).ok_or_else(|| err(400, "INVALID_REQUEST"))?;
    let topic_name = p.get("topic").ok_or_else(|| err(400, "MISSING_ARG_TOPIC"))?;
    if !is_valid_topic_name(topic_name) {
        return Err(err(400, "INVALID_ARG_TOPIC"));
    }
    let channel_name = p.get("channel").ok_or_else(|| err(400, "MISSING_ARG_CHANNEL"))?;
    if !is_valid_channel_name(channel_name) {
        return Err(err(400, "INVALID_ARG_CHANNEL"));
    }
    let b = &s.broker;
    let topic = b.topic(topic_name).ok_or_else(|| err(404, "TOPIC_NOT_FOUND"))?;
    let existing = || {
        topic
            .channel(channel_name)
            .ok_or_else(|| err(404, "CHANNEL_NOT_FOUND"))
    };
    match action.as_str() {
        "create" => {
            b.get_or_create_channel(&topic, channel_name)
                .map_err(|e| err(500, &e))?;
        }
        "delete" => {
            // A channel set aside at start-up is not served but can be deleted.
            if !b.delete_channel(&topic, channel_name) {
                return Err(err(404, "CHANNEL_NOT_FOUND"));
            }
        }
        "empty" => existing()?.empty(),
        "pause" | "unpause" => {
            existing()?.set_paused(action == "pause");
            b.persist_metadata();
        }
        _ => return Err(err(404, "NOT_FOUND")),
    }
    Ok(empty())
}

const LOG_LEVELS: [&str; 5] = ["debug", "info", "warn", "error", "fatal"];

async fn config(State(s): State<HttpState>, Path(opt): Path<String>, req: Request) -> Reply {
    let o = &s.broker.opts;
    let method = req.method().clone();
    if method == Method::PUT {
        // nsqd reads up to --max-msg-size; a longer declared body is refused without reading it.
        let max = o.max_msg_size as usize;
        if body::declared_length(&req).is_some_and(|n| n > max as u64) {
            return Err(err(413, "INVALID_VALUE"));
        }
        let bytes = body::read_limited(req.into_body(), max + 1, |_| false)
            .await
            .map_err(|_| err(500, "INTERNAL_ERROR"))?;
        if bytes.is_empty() || bytes.len() > max {
            return Err(err(413, "INVALID_VALUE"));
        }
        return match opt.as_str() {
            "nsqlookupd_tcp_addresses" => {
                let addresses: Vec<String> =
                    serde_json::from_slice(&bytes).map_err(|_| err(400, "INVALID_VALUE"))?;
                s.lookup.set_addresses(&addresses);
                Ok(json_body(&addresses))
            }
            "log_level" => {
                let level = String::from_utf8_lossy(&bytes).trim().to_lowercase();
                let n = LOG_LEVELS
                    .iter()
                    .position(|l| *l == level)
                    .ok_or_else(|| err(400, "INVALID_VALUE"))?;
                Ok(json_body(&(n + 1)))
            }
            _ => Err(err(400, "INVALID_OPTION")),
        };
    }
    if method != Method::GET {
        return Err(err(405, "METHOD_NOT_ALLOWED"));
    }
    let value = match opt.as_str() {
        "nsqlookupd_tcp_addresses" => json!(s.lookup.addresses()),
        "log_level" => json!(LOG_LEVELS
            .iter()
            .position(|l| *l == o.log_level)
            .map(|n| n + 1)
            .unwrap_or(2)),
        "mem_queue_size" => json!(o.mem_queue_size),
        "max_msg_size" => json!(o.max_msg_size),
        "max_body_size" => json!(o.max_body_size),
        "max_rdy_count" => json!(o.max_rdy_count),
        "sync_every" => json!(o.sync_every),
        "max_bytes_per_file" => json!(o.max_bytes_per_file),
        "data_path" => json!(o.data_path),
        "tcp_address" => json!(o.tcp_address),
        "http_address" => json!(o.http_address),
        "broadcast_address" => json!(o.broadcast_address),
        "node_id" | "id" => json!(o.node_id),
        "msg_timeout" => json!(o.msg_timeout.as_nanos() as u64),
        "max_msg_timeout" => json!(o.max_msg_timeout.as_nanos() as u64),
        "max_req_timeout" => json!(o.max_req_timeout.as_nanos() as u64),
        "sync_timeout" => json!(o.sync_timeout.as_nanos() as u64),
        "snappy" => json!(o.snappy),
        "deflate" => json!(o.deflate),
        "max_deflate_level" => json!(o.max_deflate_level),
        "max_heartbeat_interval" => json!(o.max_heartbeat_interval.as_nanos() as u64),
        "max_output_buffer_size" => json!(o.max_output_buffer_size),
        "max_channel_consumers" => json!(o.max_channel_consumers),
        "https_address" => json!(o.https_address),
        "log_prefix" => json!(o.log_prefix),
        "statsd_prefix" => json!(o.statsd_prefix),
        "e2e_processing_latency_percentiles" => json!(o.e2e_processing_latency_percentiles),
        _ => return Err(err(400, "INVALID_OPTION")),
    };
    Ok(json_body(&value))
}
