//! The admin's pages, rendered on the server with maud (which escapes every value it
//! interpolates: message bodies, names and errors come out as text), served with a
//! Content-Security-Policy that allows only the admin's own script, styles and images.
//!
//! Pages: streams (`/`, `/topics`), topic, channel, nodes, node, lookup, counter, and the
//! nsqrs ones: message search (`/messages`) and one message's story (`/messages/:id`).
//! Charts are SVG images (`/charts/rate.svg`, `/charts/depth.svg`) drawn from the history.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use maud::{html, Markup, DOCTYPE};
use serde::Deserialize;
use serde_json::{json, Value};

use super::api::{channel_stats, node_stats, topic_stats, NodeView};
use super::charts::{self, Metric};
use super::history::Key;
use super::messages::{self, Query as Search};
use super::stats::{ChannelStats, E2eLatency, TopicStats};
use super::{access, Admin};
use crate::archive::trace::{self, format_duration, format_ts};
use crate::archive::MessageRow;
use crate::common::http_client::query_escape;
use crate::replication::status::ReplicationStatus;

type AdminState = State<Arc<Admin>>;

const CSS: &str = include_str!("assets/admin.css");
const JS: &str = include_str!("assets/admin.js");

/// No inline script or style, nothing from elsewhere, no framing.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

pub fn routes() -> Router<Arc<Admin>> {
    Router::new()
        .route("/", get(streams))
        .route("/topics", get(streams))
        .route("/topics/:topic", get(topic))
        .route("/topics/:topic/:channel", get(channel))
        .route("/nodes", get(nodes))
        .route("/nodes/:node", get(node))
        .route("/lookup", get(lookup))
        .route("/counter", get(counter))
        .route("/messages", get(search_all))
        .route("/messages/:id", get(message))
        .route("/static/:asset", get(asset))
        .route("/charts/:chart", get(chart))
        .layer(middleware::from_fn(security_headers))
}

async fn security_headers(req: axum::extract::Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert("X-Content-Type-Options", HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    resp
}

/// A path segment, escaped (topic names may hold `#`).
fn seg(s: &str) -> String {
    query_escape(s)
}

/// What every page knows about the request.
struct Page<'a> {
    admin: &'a Admin,
    /// nsqadmin's `IsAdmin`: whether to offer actions.
    actions: bool,
}

impl Page<'_> {
    fn new<'a>(admin: &'a Admin, headers: &HeaderMap) -> Page<'a> {
        Page {
            admin,
            actions: access::may_act(admin, headers),
        }
    }

    fn url(&self, path: &str) -> String {
        self.admin.url(path)
    }

    fn layout(&self, title: &str, body: Markup) -> Response {
        let has_archive = self.admin.archive.is_some();
        let markup = html! {
            (DOCTYPE)
            html lang="en" {
                head {
                    meta charset="utf-8";
                    title { (title) " - nsqrs admin" }
                    link rel="stylesheet" href=(self.url("/static/admin.css"));
                    script src=(self.url("/static/admin.js")) defer {}
                }
                body {
                    header {
                        a.brand href=(self.url("/")) { "nsqrs admin" }
                        a href=(self.url("/")) { "Streams" }
                        a href=(self.url("/nodes")) { "Nodes" }
                        a href=(self.url("/counter")) { "Counter" }
                        a href=(self.url("/lookup")) { "Lookup" }
                        @if has_archive {
                            a href=(self.url("/messages")) { "Messages" }
                            form.inline method="get" action=(self.url("/messages")) {
                                input type="text" name="q" placeholder="message ID, text or key=value" size="30";
                                button type="submit" { "Search" }
                            }
                        }
                    }
                    main {
                        div #status hidden {}
                        (body)
                    }
                }
            }
        };
        (
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            markup.into_string(),
        )
            .into_response()
    }

    fn error(&self, title: &str, status: u16, msg: &str) -> Response {
        let mut resp = self.layout(title, html! { h1 { (title) } div.error { (msg) } });
        *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
        resp
    }

    /// An action button: the script confirms, sends and reloads (or goes to `after`).
    fn button(
        &self,
        label: &str,
        method: &str,
        url: &str,
        body: Option<Value>,
        confirm: &str,
        after: Option<&str>,
    ) -> Markup {
        let danger = matches!(label, "Delete" | "Empty" | "Tombstone" | "Cancel");
        html! {
            @if self.actions {
                button class=[danger.then_some("danger")] type="button"
                    data-method=(method) data-url=(self.url(url))
                    data-body=[body.map(|b| b.to_string())]
                    data-confirm=(confirm) data-after=[after.map(|a| self.url(a))] { (label) }
            }
        }
    }
}

/// The message of an API-style failure, for a page.
fn failure(resp: Response) -> (u16, String) {
    let status = resp.status().as_u16();
    (status, format!("the cluster did not answer (status {status})"))
}

fn warnings(w: &[String]) -> Markup {
    html! { @if !w.is_empty() { div.warning { "Some nodes did not answer: " (w.join("; ")) } } }
}

fn paused(p: bool) -> Markup {
    html! { @if p { " " span.paused { "(paused)" } } }
}

fn e2e(lat: &E2eLatency) -> Markup {
    html! {
        @match &lat.percentiles {
            Some(ps) if !ps.is_empty() => {
                @for p in ps {
                    @let q = p.get("quantile").copied().unwrap_or(0.0);
                    @let v = p.get("average").or(p.get("value")).copied().unwrap_or(0.0);
                    span { "p" ((q * 1000.0).round() / 10.0) ": " (format_duration(v as i64)) " " }
                }
            }
            _ => span.muted { "-" }
        }
    }
}

fn charts(page: &Page, topic: &str, channel: Option<&str>) -> Markup {
    let q = match channel {
        Some(c) => format!("topic={}&channel={}", seg(topic), seg(c)),
        None => format!("topic={}", seg(topic)),
    };
    html! {
        div.charts {
            img alt="messages per second, last hour" width="420" height="140" src=(page.url(&format!("/charts/rate.svg?{q}")));
            img alt="depth, last hour" width="420" height="140" src=(page.url(&format!("/charts/depth.svg?{q}")));
        }
    }
}

async fn streams(State(admin): AdminState, headers: HeaderMap) -> Response {
    let page = Page::new(&admin, &headers);
    let cluster = admin.cluster();
    let topics = match cluster.topics().await {
        Ok(t) => t,
        Err(e) => return page.error("Streams", 502, &e),
    };
    // One round of /stats for the depths beside each name.
    let rows = match cluster.producers().await {
        Ok(p) => cluster
            .node_stats(&p.value, None, None, false)
            .await
            .map(|r| r.value)
            .unwrap_or_default(),
        Err(_) => Vec::new(),
    };
    let body = html! {
        h1 { "Topics" }
        (warnings(&topics.warnings))
        @if topics.value.is_empty() {
            p.muted { "No topics yet." }
        } @else {
            table {
                tr { th.name { "topic" } th { "depth" } th { "messages" } th { "channels" } }
                @for t in &topics.value {
                    @let here: Vec<&TopicStats> = rows.iter().filter(|r| &r.topic_name == t).collect();
                    @let channels: std::collections::BTreeSet<&str> = here.iter().flat_map(|r| r.channels.iter().map(|c| c.channel_name.as_str())).collect();
                    tr {
                        td.name {
                            a href=(page.url(&format!("/topics/{}", seg(t)))) { (t) }
                            (paused(here.iter().any(|r| r.paused)))
                        }
                        td { (here.iter().map(|r| r.depth).sum::<i64>()) }
                        td { (here.iter().map(|r| r.message_count).sum::<i64>()) }
                        td { (channels.len()) }
                    }
                }
            }
        }
    };
    page.layout("Streams", body)
}

#[derive(Deserialize, Default)]
struct TopicQuery {
    #[serde(default)]
    q: String,
}

async fn topic(
    State(admin): AdminState,
    headers: HeaderMap,
    Path(topic): Path<String>,
    Query(tq): Query<TopicQuery>,
) -> Response {
    let page = Page::new(&admin, &headers);
    let (stats, warns) = match topic_stats(&admin, &topic).await {
        Ok(s) => s,
        Err(resp) => {
            let (status, msg) = failure(resp);
            return page.error(&topic, status, &msg);
        }
    };
    let api = format!("/api/topics/{}", seg(&topic));
    let nodes = stats.nodes.clone().unwrap_or_default();
    let per_node = |n: &TopicStats, f: fn(&ChannelStats) -> i64| n.channels.iter().map(f).sum::<i64>();
    let body = html! {
        h1 { "Topic " (topic) (paused(stats.paused)) }
        (warnings(&warns))
        div.actions {
            @if stats.paused {
                (page.button("Unpause", "POST", &api, Some(json!({"action": "unpause"})), &format!("Unpause topic {topic}?"), None))
            } @else {
                (page.button("Pause", "POST", &api, Some(json!({"action": "pause"})), &format!("Pause topic {topic}?"), None))
            }
            (page.button("Empty", "POST", &api, Some(json!({"action": "empty"})), &format!("Empty topic {topic}? Its queued messages are lost."), None))
            (page.button("Delete", "DELETE", &api, None, &format!("Delete topic {topic} from the whole cluster? Its channels and messages go too."), Some("/")))
        }
        (charts(&page, &topic, None))
        h2 { "Brokers" }
        @if nodes.is_empty() {
            p.muted { "No broker holds this topic." }
        } @else {
            table {
                tr {
                    th.name { "node" } th { "depth" } th { "memory + disk" } th { "in flight" } th { "deferred" }
                    th { "requeued" } th { "timed out" } th { "messages" } th { "channels" } th.name { "e2e latency" }
                }
                @for n in &nodes {
                    tr {
                        td.name { a href=(page.url(&format!("/nodes/{}", seg(&n.node)))) { (n.node) } (paused(n.paused)) }
                        td { (n.depth) }
                        td { (n.memory_depth) " + " (n.backend_depth) }
                        td { (per_node(n, |c| c.in_flight_count)) }
                        td { (per_node(n, |c| c.deferred_count)) }
                        td { (per_node(n, |c| c.requeue_count)) }
                        td { (per_node(n, |c| c.timeout_count)) }
                        td { (n.message_count) }
                        td { (n.channels.len()) }
                        td.name { (e2e(&n.e2e_processing_latency)) }
                    }
                }
                tr.total {
                    td.name { "total" } td { (stats.depth) } td { (stats.memory_depth) " + " (stats.backend_depth) }
                    td { (stats.channels.iter().map(|c| c.in_flight_count).sum::<i64>()) }
                    td { (stats.channels.iter().map(|c| c.deferred_count).sum::<i64>()) }
                    td { (stats.channels.iter().map(|c| c.requeue_count).sum::<i64>()) }
                    td { (stats.channels.iter().map(|c| c.timeout_count).sum::<i64>()) }
                    td { (stats.message_count) } td { (stats.channels.len()) }
                    td.name { (e2e(&stats.e2e_processing_latency)) }
                }
            }
        }
        h2 { "Channels" }
        @if stats.channels.is_empty() {
            p.muted { "No channels." }
        } @else {
            table {
                tr {
                    th.name { "channel" } th { "depth" } th { "memory + disk" } th { "in flight" } th { "deferred" }
                    th { "requeued" } th { "timed out" } th { "messages" } th { "connections" } th.name { "e2e latency" }
                }
                @for c in &stats.channels {
                    tr {
                        td.name { a href=(page.url(&format!("/topics/{}/{}", seg(&topic), seg(&c.channel_name)))) { (c.channel_name) } (paused(c.paused)) }
                        td { (c.depth) } td { (c.memory_depth) " + " (c.backend_depth) } td { (c.in_flight_count) }
                        td { (c.deferred_count) } td { (c.requeue_count) } td { (c.timeout_count) }
                        td { (c.message_count) } td { (c.client_count) }
                        td.name { (e2e(&c.e2e_processing_latency)) }
                    }
                }
            }
        }
        (topic_messages(&page, &topic, &tq.q).await)
    };
    page.layout(&format!("Topic {topic}"), body)
}

/// The archive's part of the topic page: recent or matching messages, and the replay form.
async fn topic_messages(page: &Page<'_>, topic: &str, q: &str) -> Markup {
    let Some(store) = page.admin.archive.as_ref() else {
        return html! {
            h2 { "Messages" }
            p.muted { "Start the admin with --db (the to-db archive) to see this topic's messages, search them and replay them." }
        };
    };
    let search = Search::parse(q);
    let found = match &search {
        Some(s) => messages::search(store, Some(topic), s, 50).await,
        None => messages::recent(store, topic, 20).await,
    };
    let replay_api = page.url("/api/replays");
    html! {
        h2 { "Messages" }
        form.inline method="get" action=(page.url(&format!("/topics/{}", seg(topic)))) {
            input type="text" name="q" value=(q) placeholder="message ID, text or key=value" size="40";
            button type="submit" { "Search" }
            @if search.is_some() { a href=(page.url(&format!("/topics/{}", seg(topic)))) { "recent" } }
        }
        @match found {
            Ok(rows) => (message_table(page, &rows, search.is_some())),
            Err(e) => div.error { "archive: " (e) },
        }
        h2 { "Replay" }
        form.inline data-replay=(replay_api) {
            input type="hidden" name="topic" value=(topic);
            label { "since " input type="text" name="since" value="1h" size="8"; }
            label { "until " input type="text" name="until" placeholder="now" size="8"; }
            label { "to topic " input type="text" name="to_topic" placeholder=(topic) size="16"; }
            button type="button" data-replay-count { "Count" }
            span #replay-count {}
            @if page.actions { button type="button" data-replay-start hidden { "Replay" } }
        }
        p.muted { "Since and until: a duration ago (2h, 30m) or an RFC 3339 time. Count is a dry run." }
        progress #replay-progress hidden value="0" max="1" {}
        div #replay-state {}
        @let runs = page.admin.replays.all();
        @let runs: Vec<_> = runs.iter().filter(|r| r.from_topic == topic).collect();
        @if !runs.is_empty() {
            table {
                tr { th.name { "run" } th.name { "to topic" } th { "done" } th { "total" } th.name { "state" } }
                @for r in runs {
                    tr { td.name { (r.run_id) } td.name { (r.to_topic) } td { (r.done) } td { (r.total) } td.name { (r.state) @if let Some(e) = &r.error { " - " (e) } } }
                }
            }
        }
    }
}

fn preview(body: &[u8]) -> String {
    let (text, b64) = crate::protocol::body_text(body);
    let mut p: String = text
        .chars()
        .take(100)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.chars().count() > 100 {
        p.push('…');
    }
    if b64 {
        format!("(base64) {p}")
    } else {
        p
    }
}

fn message_table(page: &Page, rows: &[MessageRow], searched: bool) -> Markup {
    html! {
        @if rows.is_empty() {
            p.muted { @if searched { "No archived message matches." } @else { "No archived messages yet." } }
        } @else {
            table.messages {
                tr { th.name { "id" } th.name { "topic" } th.name { "published" } th.name { "nsqd" } th { "size" } th.name { "body" } }
                @for m in rows {
                    tr {
                        td.name { a href=(page.url(&format!("/messages/{}?topic={}", seg(&m.id), seg(&m.topic)))) { (m.id) } }
                        td.name { (m.topic) }
                        td.name { (format_ts(m.ts)) }
                        td.name { (m.nsqd) }
                        td { (m.body.len()) }
                        td.name.body { (preview(&m.body)) }
                    }
                }
            }
        }
    }
}

async fn channel(
    State(admin): AdminState,
    headers: HeaderMap,
    Path((topic, channel)): Path<(String, String)>,
) -> Response {
    let page = Page::new(&admin, &headers);
    let title = format!("{topic} / {channel}");
    let (stats, warns) = match channel_stats(&admin, &topic, &channel).await {
        Ok(s) => s,
        Err(resp) => {
            let (status, msg) = failure(resp);
            return page.error(&title, status, &msg);
        }
    };
    let Some(stats) = stats else {
        return page.error(&title, 404, "No broker has this channel.");
    };
    let api = format!("/api/topics/{}/{}", seg(&topic), seg(&channel));
    let (deferred, deferred_total, deferred_warnings) =
        messages::deferred(&admin, &topic, &channel, 100).await;
    let body = html! {
        h1 { "Channel " (channel) " of " a href=(page.url(&format!("/topics/{}", seg(&topic)))) { (topic) } (paused(stats.paused)) }
        (warnings(&warns))
        div.actions {
            @if stats.paused {
                (page.button("Unpause", "POST", &api, Some(json!({"action": "unpause"})), &format!("Unpause channel {channel}?"), None))
            } @else {
                (page.button("Pause", "POST", &api, Some(json!({"action": "pause"})), &format!("Pause channel {channel}?"), None))
            }
            (page.button("Empty", "POST", &api, Some(json!({"action": "empty"})), &format!("Empty channel {channel}? Its queued, in-flight and deferred messages are lost."), None))
            (page.button("Delete", "DELETE", &api, None, &format!("Delete channel {channel}?"), Some(&format!("/topics/{}", seg(&topic)))))
        }
        (charts(&page, &topic, Some(&channel)))
        h2 { "Brokers" }
        table {
            tr {
                th.name { "node" } th { "depth" } th { "memory + disk" } th { "in flight" } th { "deferred" }
                th { "requeued" } th { "timed out" } th { "messages" } th { "connections" } th.name { "e2e latency" }
            }
            @for n in stats.nodes.iter().flatten() {
                tr {
                    td.name { a href=(page.url(&format!("/nodes/{}", seg(&n.node)))) { (n.node) } (paused(n.paused)) }
                    td { (n.depth) } td { (n.memory_depth) " + " (n.backend_depth) } td { (n.in_flight_count) }
                    td { (n.deferred_count) } td { (n.requeue_count) } td { (n.timeout_count) }
                    td { (n.message_count) } td { (n.client_count) } td.name { (e2e(&n.e2e_processing_latency)) }
                }
            }
            tr.total {
                td.name { "total" } td { (stats.depth) } td { (stats.memory_depth) " + " (stats.backend_depth) }
                td { (stats.in_flight_count) } td { (stats.deferred_count) } td { (stats.requeue_count) }
                td { (stats.timeout_count) } td { (stats.message_count) } td { (stats.client_count) }
                td.name { (e2e(&stats.e2e_processing_latency)) }
            }
        }
        h2 { "Clients" }
        @match &stats.clients {
            Some(clients) if !clients.is_empty() => {
                table {
                    tr {
                        th.name { "client" } th.name { "node" } th.name { "user agent" } th.name { "TLS" } th.name { "compression" }
                        th { "ready" } th { "in flight" } th { "finished" } th { "requeued" } th { "messages" } th.name { "connected" }
                    }
                    @for c in clients {
                        tr {
                            td.name { (c.hostname) " " span.muted { (c.remote_address) } }
                            td.name { (c.node) }
                            td.name { (c.user_agent) @if c.sample_rate > 0 { " (sampled " (c.sample_rate) "%)" } }
                            td.name { @if c.tls { (c.tls_version) " " (c.tls_cipher_suite) } @else { "-" } }
                            td.name { @if c.snappy { "snappy" } @else if c.deflate { "deflate" } @else { "-" } }
                            td { (c.ready_count) } td { (c.in_flight_count) } td { (c.finish_count) }
                            td { (c.requeue_count) } td { (c.message_count) }
                            td.name { (format_duration(c.connected)) }
                        }
                    }
                }
            }
            _ => p.muted { "No clients connected." }
        }
        h2 { "Deferred messages" }
        (warnings(&deferred_warnings))
        @if deferred.is_empty() {
            p.muted { "None deferred." }
        } @else {
            p { (deferred_total) " deferred; the soonest " (deferred.len()) ":" }
            table.deferred {
                tr { th.name { "id" } th.name { "node" } th.name { "due" } th { "attempts" } th { "size" } th.name { "body" } th {} }
                @for d in &deferred {
                    tr {
                        td.name { a href=(page.url(&format!("/messages/{}?topic={}", seg(&d.id), seg(&topic)))) { (d.id) } }
                        td.name { (d.node) }
                        td.name { (format_ts(d.due_ns)) }
                        td { (d.attempts) } td { (d.size) }
                        td.name.body { @if let Some((b, b64)) = &d.body { @if *b64 { "(base64) " } (b.chars().take(100).collect::<String>()) } }
                        td { (page.button("Cancel", "POST", "/api/deferred/cancel",
                            Some(json!({"node": d.node, "topic": topic, "channel": channel, "id": d.id})),
                            &format!("Cancel deferred message {}? It will never be delivered on {channel}.", d.id), None)) }
                    }
                }
            }
        }
    };
    page.layout(&title, body)
}

async fn nodes(State(admin): AdminState, headers: HeaderMap) -> Response {
    let page = Page::new(&admin, &headers);
    let producers = match admin.cluster().producers().await {
        Ok(p) => p,
        Err(e) => return page.error("Nodes", 502, &e),
    };
    let replication = admin.cluster().replication(&producers.value).await;
    let body = html! {
        h1 { "Nodes" }
        (warnings(&producers.warnings))
        table {
            tr { th.name { "hostname" } th.name { "broadcast address" } th { "TCP" } th { "HTTP" } th.name { "version" } th { "topics" } th.name { "lookupd connections" } th.name { "replication" } }
            @for (p, r) in producers.value.iter().zip(&replication) {
                tr {
                    td.name { a href=(page.url(&format!("/nodes/{}", seg(&p.http_address())))) { (p.hostname) } }
                    td.name { (p.broadcast_address) }
                    td { (p.tcp_port) } td { (p.http_port) }
                    td.name { (p.version) @if p.out_of_date { " " span.paused { "(out of date)" } } }
                    td { (p.topics.len()) }
                    td.name { @for r in p.remote_addresses.iter().flatten() { (r) br; } }
                    td.name { @match r { Some(r) => { @if r.degraded { span.paused { (replication_summary(r)) } } @else { (replication_summary(r)) } }, None => "-" } }
                }
            }
        }
    };
    page.layout("Nodes", body)
}

async fn node(State(admin): AdminState, headers: HeaderMap, Path(node): Path<String>) -> Response {
    let page = Page::new(&admin, &headers);
    let NodeView {
        stats: v,
        producer,
        warnings: warns,
    } = match node_stats(&admin, &node).await {
        Ok(x) => x,
        Err(resp) => {
            let status = resp.status().as_u16();
            let msg = if status == 404 {
                "No such node in the cluster.".to_string()
            } else {
                failure(resp).1
            };
            return page.error(&node, status, &msg);
        }
    };
    let topics: Vec<TopicStats> = serde_json::from_value(v["topics"].clone()).unwrap_or_default();
    let node_api = format!("/api/nodes/{}", seg(&node));
    let replication = admin.cluster().replication(&[producer]).await.pop().flatten();
    let body = html! {
        h1 { "Node " (node) }
        (warnings(&warns))
        p { (v["total_messages"]) " messages, " (v["total_clients"]) " clients" }
        table {
            tr { th.name { "topic" } th.name { "channel" } th { "depth" } th { "in flight" } th { "deferred" } th { "messages" } th { "clients" } th {} }
            @for t in &topics {
                tr {
                    td.name { a href=(page.url(&format!("/topics/{}", seg(&t.topic_name)))) { (t.topic_name) } (paused(t.paused)) }
                    td.name {} td { (t.depth) } td {} td {} td { (t.message_count) } td {}
                    td { (page.button("Tombstone", "DELETE", &node_api, Some(json!({"topic": t.topic_name})),
                        &format!("Tombstone topic {} on {node}? lookupd stops handing this node out for it and the topic is deleted here.", t.topic_name), None)) }
                }
                @for c in &t.channels {
                    tr {
                        td.name {}
                        td.name { a href=(page.url(&format!("/topics/{}/{}", seg(&t.topic_name), seg(&c.channel_name)))) { (c.channel_name) } (paused(c.paused)) }
                        td { (c.depth) } td { (c.in_flight_count) } td { (c.deferred_count) } td { (c.message_count) }
                        td { (c.clients.as_ref().map_or(0, Vec::len)) } td {}
                    }
                }
            }
        }
        @if let Some(r) = &replication {
            (replication_section(r))
        }
    };
    page.layout(&format!("Node {node}"), body)
}

/// One line for the nodes table: what an operator checks first.
fn replication_summary(r: &ReplicationStatus) -> String {
    if r.peers.is_empty() && r.copies.is_empty() {
        return "-".into();
    }
    let mut parts = Vec::new();
    if !r.peers.is_empty() {
        let connected = r.peers.iter().filter(|p| p.connected).count();
        let lag = r.peers.iter().map(|p| p.log_lag_bytes).max().unwrap_or(0);
        let degraded = if r.degraded { ", DEGRADED" } else { "" };
        parts.push(format!(
            "{connected}/{} peers connected, lag {lag} B{degraded}",
            r.peers.len()
        ));
    }
    match r.copies.len() {
        0 => {}
        1 => parts.push("holds 1 copy".into()),
        n => parts.push(format!("holds {n} copies")),
    }
    parts.join("; ")
}

/// A node's replication: where its topics are copied and how far each copy lags, and the
/// copies it holds of other brokers (adopted or not).
fn replication_section(r: &ReplicationStatus) -> Markup {
    html! {
        h2 { "Replication" }
        p {
            "node " code { (r.node_id) } ", epoch " (r.epoch)
            @if let Some(policy) = &r.policy { ", " (r.replicas) " replica(s) required, policy " (policy) }
            @if r.degraded { " " span.paused { "DEGRADED: publishes " @if r.policy.as_deref() == Some("strict") { "are refused" } @else { "are not copied" } } }
        }
        @if r.peers.is_empty() {
            p.muted { "This node copies its topics to no peer." }
        } @else {
            table.replication-peers {
                tr { th.name { "peer" } th.name { "node" } th.name { "connected" } th { "log lag (bytes)" } th { "state lag (ms)" } th { "states unconfirmed" } th.name { "last error" } }
                @for p in &r.peers {
                    tr {
                        td.name { (p.address) }
                        td.name { (p.node_id.as_deref().unwrap_or("-")) }
                        td.name { @if p.connected { "yes" } @else { span.paused { "no" } } }
                        td { (p.log_lag_bytes) } td { (p.state_lag_ms) } td { (p.state_lag_channels) }
                        td.name { (p.last_error) }
                    }
                }
            }
        }
        @if !r.copies.is_empty() {
            h3 { "Copies held here" }
            table.replication-copies {
                tr { th.name { "owner" } th.name { "node" } th { "epoch" } th { "topics" } th { "bytes" } th.name { "owner connected" } th.name { "last contact" } th.name { "adopted" } }
                @for c in &r.copies {
                    tr {
                        td.name { (c.name) } td.name { code { (c.owner) } } td { (c.epoch) }
                        td { (c.topics) } td { (c.bytes) }
                        td.name { @if c.connected { "yes" } @else { span.paused { "no" } } }
                        td.name { (format_ts(c.last_contact.saturating_mul(1_000_000_000))) }
                        td.name { @if c.adopting { "adopting…" } @else if c.adopted { "by " (c.adopted_by.as_deref().unwrap_or("?")) } @else { "no" } }
                    }
                }
            }
        }
    }
}

async fn lookup(State(admin): AdminState, headers: HeaderMap) -> Response {
    let page = Page::new(&admin, &headers);
    let cluster = admin.cluster();
    if cluster.lookupd.is_empty() {
        return page.layout(
            "Lookup",
            html! { h1 { "Lookup" } p.muted { "This admin reads nsqd directly (--nsqd-http-address): there is no lookupd to show." } },
        );
    }
    let topics = cluster.topics().await;
    let mut rows = Vec::new();
    if let Ok(t) = &topics {
        for name in &t.value {
            let producers = cluster
                .topic_producers(name)
                .await
                .map(|p| p.value.len())
                .unwrap_or(0);
            let channels = cluster
                .lookupd_channels(name)
                .await
                .map(|c| c.value)
                .unwrap_or_default();
            rows.push((name.clone(), producers, channels));
        }
    }
    let body = html! {
        h1 { "Lookup" }
        p { "lookupd: " @for l in &cluster.lookupd { code { (l) } " " } }
        @match &topics {
            Err(e) => div.error { (e) },
            Ok(t) => {
                (warnings(&t.warnings))
                table {
                    tr { th.name { "topic" } th { "producers" } th.name { "channels" } }
                    @for (name, producers, channels) in &rows {
                        tr {
                            td.name { a href=(page.url(&format!("/topics/{}", seg(name)))) { (name) } @if *producers == 0 { " " span.muted { "(inactive)" } } }
                            td { (producers) }
                            td.name { (channels.join(", ")) }
                        }
                    }
                }
            }
        }
        @if page.actions {
            h2 { "Create a topic or channel" }
            form.inline data-api=(page.url("/api/topics")) {
                input type="text" name="topic" placeholder="topic" required;
                input type="text" name="channel" placeholder="channel (optional)";
                button type="submit" { "Create" }
            }
        }
    };
    page.layout("Lookup", body)
}

async fn counter(State(admin): AdminState, headers: HeaderMap) -> Response {
    let page = Page::new(&admin, &headers);
    let body = html! {
        h1 { "Messages processed" }
        div.counter data-counter=(page.url("/api/counter")) { "…" }
        p.muted { "The sum of every channel's message count over the cluster, updated every 2 seconds." }
    };
    page.layout("Counter", body)
}

#[derive(Deserialize, Default)]
struct SearchQuery {
    #[serde(default)]
    q: String,
    #[serde(default)]
    topic: String,
}

async fn search_all(State(admin): AdminState, headers: HeaderMap, Query(sq): Query<SearchQuery>) -> Response {
    let page = Page::new(&admin, &headers);
    let Some(store) = admin.archive.as_ref() else {
        return page.error(
            "Messages",
            404,
            "Start the admin with --db (the to-db archive) to search messages.",
        );
    };
    let search = Search::parse(&sq.q);
    if let Some(Search::Id(id)) = &search {
        let to = page.url(&format!("/messages/{}", seg(id)));
        return (StatusCode::SEE_OTHER, [(header::LOCATION, to)]).into_response();
    }
    let topic = (!sq.topic.is_empty()).then_some(sq.topic.as_str());
    let found = match &search {
        Some(s) => messages::search(store, topic, s, 50).await,
        None => Ok(Vec::new()),
    };
    let body = html! {
        h1 { "Messages" }
        form.inline method="get" action=(page.url("/messages")) {
            input type="text" name="q" value=(sq.q) placeholder="message ID, text or key=value" size="40";
            button type="submit" { "Search" }
        }
        p.muted { "A 16-character ID opens the message; key=value matches a JSON field; anything else (or text:…) is found in the body." }
        @match found {
            Ok(rows) => (message_table(&page, &rows, search.is_some())),
            Err(e) => div.error { "archive: " (e) },
        }
    };
    page.layout("Messages", body)
}

#[derive(Deserialize, Default)]
struct MessageQuery {
    #[serde(default)]
    topic: String,
}

async fn message(
    State(admin): AdminState,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(mq): Query<MessageQuery>,
) -> Response {
    let page = Page::new(&admin, &headers);
    if !trace::valid_id(&id) {
        return page.error("Message", 400, "Not a message ID (16 hex characters).");
    }
    let id = id.to_ascii_lowercase();
    let story = match admin.archive.as_ref() {
        Some(store) => messages::story(store, &id).await.ok(),
        None => None,
    };
    let topic = story
        .as_ref()
        .and_then(|t| {
            t.messages
                .first()
                .map(|m| m.topic.clone())
                .or_else(|| t.events.first().map(|e| e.topic.clone()))
        })
        .unwrap_or(mq.topic.clone());
    let nsqd = story
        .as_ref()
        .and_then(|t| t.messages.first().map(|m| m.nsqd.clone()));
    let live = if topic.is_empty() {
        Vec::new()
    } else {
        messages::live_state(&admin, &topic, &id, nsqd.as_deref()).await
    };
    let body = html! {
        h1 { "Message " (id) }
        @match &story {
            None => p.muted { @if admin.archive.is_some() { "This message is not in the archive." } @else { "No archive (--db): only the broker's live state is shown." } },
            Some(t) => {
                @for m in &t.messages {
                    @let (kind, text) = messages::render_body(&m.body);
                    table {
                        tr { th.name { "topic" } td.name { a href=(page.url(&format!("/topics/{}", seg(&m.topic)))) { (m.topic) } } }
                        tr { th.name { "nsqd" } td.name { (m.nsqd) } }
                        tr { th.name { "published" } td.name { (format_ts(m.ts)) } }
                        tr { th.name { "attempts when archived" } td.name { (m.attempts) } }
                        tr { th.name { "size" } td.name { (m.body.len()) " bytes (" (kind) ")" } }
                    }
                    pre.body { (text) }
                }
                @if t.messages.is_empty() { p.muted { "The body was not archived: only its events are." } }
                @for (channel, steps) in trace::timelines(t) {
                    h2 { @if channel.is_empty() { "Timeline" } @else { "Channel " (channel) } }
                    table.timeline {
                        tr { th.name { "time" } th { "+" } th.name { "event" } th.name { "client" } }
                        @for s in steps {
                            tr { td.name { (format_ts(s.ts)) } td { (s.elapsed_ns.map(format_duration).unwrap_or_default()) } td.name { (s.what) } td.name { (s.client) } }
                        }
                    }
                }
                @if !t.replays.is_empty() {
                    h2 { "Replays" }
                    table {
                        tr { th.name { "time" } th.name { "replayed as" } th.name { "into" } th.name { "run" } }
                        @for r in &t.replays {
                            tr {
                                td.name { (format_ts(r.replayed_at)) }
                                td.name { @match &r.new_id { Some(n) => a href=(page.url(&format!("/messages/{}?topic={}", seg(n), seg(&r.to_topic)))) { (n) }, None => span.muted { "id unknown" } }
                                    @if r.resent { " (sent again after the run was killed: may be there twice)" } }
                                td.name { (r.to_topic) } td.name { (r.run_id) }
                            }
                        }
                    }
                }
            }
        }
        h2 { "Live state" }
        @if live.is_empty() { p.muted { "No broker holds the topic now." } }
        @for (node, state) in &live {
            @match state {
                Err(why) => p { (node) ": " (why) },
                Ok(v) => {
                    p { "on " (node) @if v["topic_paused"] == true { " " span.paused { "(topic paused)" } } @if v["held_by_topic"] == true { " - held by the topic until its first channel exists" } }
                    table.live {
                        tr { th.name { "channel" } th.name { "state" } th { "attempts" } th.name { "detail" } }
                        @for c in v["channels"].as_array().into_iter().flatten() {
                            tr {
                                td.name { (c["channel"].as_str().unwrap_or("")) (paused(c["paused"] == true)) }
                                td.name { (c["state"].as_str().unwrap_or("")) }
                                td { (c["attempts"].as_u64().map(|a| a.to_string()).unwrap_or_default()) }
                                td.name { (live_detail(c)) }
                            }
                        }
                    }
                }
            }
        }
    };
    page.layout(&format!("Message {id}"), body)
}

fn live_detail(c: &Value) -> String {
    match c["state"].as_str().unwrap_or("") {
        "in_flight" => {
            let who = c["client"]["remote_address"].as_str().unwrap_or("a client");
            let until = c["timeout_at"].as_i64().map(format_ts).unwrap_or_default();
            format!("to {who}, times out {until}")
        }
        "deferred" => format!("until {}", c["due"].as_i64().map(format_ts).unwrap_or_default()),
        "queued" => "waiting for a consumer".into(),
        "before_channel" => "published before the channel existed".into(),
        "done" => "finished, cancelled or dropped".into(),
        _ => String::new(),
    }
}

async fn asset(Path(name): Path<String>) -> Response {
    let (body, ct) = match name.as_str() {
        "admin.css" => (CSS, "text/css; charset=utf-8"),
        "admin.js" => (JS, "text/javascript; charset=utf-8"),
        _ => return (StatusCode::NOT_FOUND, "not found").into_response(),
    };
    (
        [(header::CONTENT_TYPE, ct), (header::CACHE_CONTROL, "max-age=300")],
        body,
    )
        .into_response()
}

#[derive(Deserialize, Default)]
struct ChartQuery {
    #[serde(default)]
    topic: String,
    channel: Option<String>,
}

async fn chart(State(admin): AdminState, Path(file): Path<String>, Query(cq): Query<ChartQuery>) -> Response {
    let Some(metric) = file.strip_suffix(".svg").and_then(Metric::parse) else {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    };
    let key = Key {
        topic: cq.topic,
        channel: cq.channel.filter(|c| !c.is_empty()),
    };
    let now = crate::common::time::now_ns() / 1_000_000_000;
    let svg = charts::render(metric, &admin.history.series(&key), now);
    (
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        svg,
    )
        .into_response()
}
