//! `nsqrs stat`'s reports: nsq_stat's report for one topic/channel summed over every nsqd that
//! has it (nsq-reference §4.3), and without a channel a whole-cluster table of topics and
//! channels. nsqd are given by address or found through lookupd on every poll.
//!
//! Rates are differences between two polls, so the first poll prints only the header (or,
//! for the cluster table, nothing) and every later one prints a report. `--replication`
//! reports each broker's replication peers and their lag instead (docs/replication.md).

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use clap::ValueEnum;
use comfy_table::{presets, CellAlignment, Table};
use serde_json::{json, Value};

use crate::client::lookup;
use crate::common::http_client::{api_url, query_escape, HttpClient, HttpTimeouts, ACCEPT_NSQ_V1};
use crate::errln;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StatFormat {
    /// nsq_stat's columns (one channel) or a table of the cluster
    Table,
    /// One JSON object per report
    Json,
    /// A header row, then one row per report (per topic/channel for the cluster)
    Csv,
}

/// What to report on, where, and how often.
#[derive(Debug, Clone)]
pub struct StatPlan {
    /// Required with `channel`; filters the cluster table otherwise.
    pub topic: Option<String>,
    /// One channel's report; without it, the whole cluster's table.
    pub channel: Option<String>,
    /// nsqd HTTP addresses; when empty, nsqd are found through `lookupd_http_address`.
    pub nsqd_http_address: Vec<String>,
    pub lookupd_http_address: Vec<String>,
    pub interval: Duration,
    /// Reports before returning; 0 is forever.
    pub count: u64,
    pub format: StatFormat,
    pub timeouts: HttpTimeouts,
}

/// nsq_stat repeats its header every this many reports.
const HEADER_EVERY: u64 = 25;

/// Counters of one channel (or one topic), summed over nsqd.
#[derive(Debug, Clone, Default, PartialEq)]
struct Counts {
    depth: i64,
    backend_depth: i64,
    in_flight: i64,
    deferred: i64,
    requeued: i64,
    timed_out: i64,
    messages: i64,
    clients: i64,
    /// nsqd reporting it, and how many of those have it paused.
    nodes: usize,
    paused: usize,
}

impl Counts {
    fn add(&mut self, v: &Value) {
        let n = |k: &str| v.get(k).and_then(Value::as_i64).unwrap_or(0);
        self.depth += n("depth");
        self.backend_depth += n("backend_depth");
        self.in_flight += n("in_flight_count");
        self.deferred += n("deferred_count");
        self.requeued += n("requeue_count");
        self.timed_out += n("timeout_count");
        self.messages += n("message_count");
        self.clients += n("client_count");
        self.nodes += 1;
        if v.get("paused").and_then(Value::as_bool) == Some(true) {
            self.paused += 1;
        }
    }

    fn paused_text(&self) -> &'static str {
        match self.paused {
            0 => "no",
            p if p == self.nodes => "yes",
            _ => "partial",
        }
    }
}

/// One poll of the cluster: topic → (topic counts, channel → channel counts).
type Snapshot = BTreeMap<String, (Counts, BTreeMap<String, Counts>)>;

async fn nsqd_addresses(plan: &StatPlan, timeouts: HttpTimeouts) -> Result<Vec<String>, String> {
    if !plan.nsqd_http_address.is_empty() {
        return Ok(plan.nsqd_http_address.clone());
    }
    let mut found = std::collections::BTreeSet::new();
    let mut errors = Vec::new();
    for l in &plan.lookupd_http_address {
        let peers = match &plan.topic {
            Some(t) => lookup::lookup(l, t, timeouts).await,
            None => lookup::nodes(l, timeouts).await,
        };
        match peers {
            Ok(p) => found.extend(p.iter().map(lookup::Peer::http_addr)),
            Err(e) => errors.push(e),
        }
    }
    if found.is_empty() && !errors.is_empty() {
        return Err(errors.join("; "));
    }
    Ok(found.into_iter().collect())
}

async fn snapshot(plan: &StatPlan, timeouts: HttpTimeouts) -> Result<Snapshot, String> {
    let nodes = nsqd_addresses(plan, timeouts).await?;
    let mut path = "/stats?format=json&include_clients=false&include_mem=false".to_string();
    if let Some(t) = &plan.topic {
        path.push_str(&format!("&topic={}", query_escape(t)));
    }
    // No channel filter: nsqd would then leave the topic out too, and a missing channel could
    // not be told from a missing topic. A topic's channels are few.
    let mut snap = Snapshot::new();
    for node in &nodes {
        let mut stats = HttpClient::new(timeouts)
            .get_json(&api_url(node, &path), Some(ACCEPT_NSQ_V1))
            .await
            .map_err(|e| format!("nsqd {node}: {e}"))?;
        // Pre-1.0 nsqd wrap the reply in {"status_code":..,"data":..}.
        if let Some(data) = stats.get_mut("data").map(Value::take) {
            stats = data;
        }
        for t in stats["topics"].as_array().into_iter().flatten() {
            let Some(name) = t["topic_name"].as_str() else {
                continue;
            };
            let (tc, channels) = snap.entry(name.to_string()).or_default();
            tc.add(t);
            for c in t["channels"].as_array().into_iter().flatten() {
                let Some(cname) = c["channel_name"].as_str() else {
                    continue;
                };
                channels.entry(cname.to_string()).or_default().add(c);
            }
        }
    }
    Ok(snap)
}

/// Polls and writes a report per interval to stdout until `count` reports are out (or
/// forever). The first poll failing is an error (the command line is wrong); later failures
/// are warnings, since a monitor keeps going. A closed stdout ends the run quietly.
pub async fn poll(plan: &StatPlan) -> Result<(), String> {
    let timeouts = plan.timeouts;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut previous: Option<Snapshot> = None;
    let mut reports = 0u64;
    let mut warned_absent = false;
    let mut ticker = tokio::time::interval(plan.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let snap = match snapshot(plan, timeouts).await {
            Ok(s) => s,
            // The first poll failing means the command line is wrong; later ones are
            // transient for a monitor, which keeps going.
            Err(e) if previous.is_none() => return Err(e),
            Err(e) => {
                errln!("warning: {}", e.replace('\n', " "));
                continue;
            }
        };
        // Rows of zeros for a name nobody has would look like an idle channel: say so instead,
        // and fail outright when it is absent from the start (a typo, most likely).
        match absent(plan, &snap) {
            Some(what) if previous.is_none() => return Err(what),
            Some(what) if !warned_absent => {
                errln!("warning: {what}");
                warned_absent = true;
            }
            Some(_) => {}
            None => warned_absent = false,
        }
        let result = match &plan.channel {
            Some(channel) => report_channel(plan, channel, previous.as_ref(), &snap, reports, &mut out),
            None => match &previous {
                Some(prev) => report_cluster(plan, prev, &snap, reports, &mut out),
                None => Ok(()),
            },
        };
        if let Err(e) = result.and_then(|_| out.flush()) {
            return if e.kind() == std::io::ErrorKind::BrokenPipe {
                Ok(())
            } else {
                Err(e.to_string())
            };
        }
        if previous.is_some() {
            reports += 1;
            if plan.count > 0 && reports >= plan.count {
                return Ok(());
            }
        }
        previous = Some(snap);
    }
}

/// What the plan's topic/channel name that no polled nsqd has, in words.
fn absent(plan: &StatPlan, snap: &Snapshot) -> Option<String> {
    let topic = plan.topic.as_deref()?;
    let whom = if plan.nsqd_http_address.is_empty() {
        format!(
            "on any nsqd lookupd ({}) knows",
            plan.lookupd_http_address.join(", ")
        )
    } else {
        format!("on nsqd {}", plan.nsqd_http_address.join(", "))
    };
    let Some((_, channels)) = snap.get(topic) else {
        return Some(format!("topic {topic} does not exist {whom}"));
    };
    match &plan.channel {
        Some(c) if !channels.contains_key(c) => Some(format!("topic {topic} has no channel {c} {whom}")),
        _ => None,
    }
}

fn channel_counts(snap: &Snapshot, topic: &str, channel: &str) -> Counts {
    snap.get(topic)
        .and_then(|(_, chans)| chans.get(channel))
        .cloned()
        .unwrap_or_default()
}

/// Messages per second between two counters, truncated as nsq_stat does.
fn rate(now: i64, before: i64, interval: Duration) -> i64 {
    ((now - before) as f64 / interval.as_secs_f64()) as i64
}

fn timestamp() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

const CHANNEL_CSV_HEADER: &str =
    "time,topic,channel,ingress,egress,total,mem,disk,in_flight,deferred,requeued,timed_out,messages,clients";

fn report_channel(
    plan: &StatPlan,
    channel: &str,
    previous: Option<&Snapshot>,
    snap: &Snapshot,
    reports: u64,
    out: &mut impl Write,
) -> std::io::Result<()> {
    let topic = plan.topic.as_deref().expect("validated: --channel needs --topic");
    let c = channel_counts(snap, topic, channel);
    let Some(prev) = previous else {
        return match plan.format {
            StatFormat::Table => channel_header(out),
            StatFormat::Csv => writeln!(out, "{CHANNEL_CSV_HEADER}"),
            StatFormat::Json => Ok(()),
        };
    };
    let o = channel_counts(prev, topic, channel);
    let ingress = rate(c.messages, o.messages, plan.interval);
    let egress = rate(c.messages - c.depth, o.messages - o.depth, plan.interval);
    match plan.format {
        StatFormat::Table => {
            if reports > 0 && reports.is_multiple_of(HEADER_EVERY) {
                channel_header(out)?;
            }
            writeln!(
                out,
                "{:>7} {:>7} | {:>7} {:>7} {:>7} {:>5} {:>5} | {:>7} {:>7} {:>12} {:>7}",
                ingress,
                egress,
                c.depth,
                c.depth - c.backend_depth,
                c.backend_depth,
                c.in_flight,
                c.deferred,
                c.requeued,
                c.timed_out,
                c.messages,
                c.clients
            )
        }
        StatFormat::Json => writeln!(
            out,
            "{}",
            json!({
                "time": timestamp(), "topic": topic, "channel": channel,
                "ingress": ingress, "egress": egress, "total": c.depth,
                "mem": c.depth - c.backend_depth, "disk": c.backend_depth,
                "in_flight": c.in_flight, "deferred": c.deferred, "requeued": c.requeued,
                "timed_out": c.timed_out, "messages": c.messages, "clients": c.clients,
            })
        ),
        StatFormat::Csv => {
            let mut w = csv::Writer::from_writer(Vec::new());
            w.write_record([
                timestamp(),
                topic.to_string(),
                channel.to_string(),
                ingress.to_string(),
                egress.to_string(),
                c.depth.to_string(),
                (c.depth - c.backend_depth).to_string(),
                c.backend_depth.to_string(),
                c.in_flight.to_string(),
                c.deferred.to_string(),
                c.requeued.to_string(),
                c.timed_out.to_string(),
                c.messages.to_string(),
                c.clients.to_string(),
            ])
            .map_err(std::io::Error::other)?;
            out.write_all(&w.into_inner().map_err(|e| std::io::Error::other(e.to_string()))?)
        }
    }
}

fn channel_header(out: &mut impl Write) -> std::io::Result<()> {
    writeln!(
        out,
        "------rate------+----------------depth----------------+--------------metadata---------------"
    )?;
    writeln!(
        out,
        "{:>7} {:>7} | {:>7} {:>7} {:>7} {:>5} {:>5} | {:>7} {:>7} {:>12} {:>7}",
        "ingress", "egress", "total", "mem", "disk", "inflt", "def", "req", "t-o", "msgs", "clients"
    )
}

/// One row of the cluster report.
struct Row<'a> {
    topic: &'a str,
    /// Empty for the topic's own row.
    channel: &'a str,
    counts: &'a Counts,
    /// Ingress for a topic, egress for a channel.
    rate: i64,
}

fn cluster_rows<'a>(prev: &Snapshot, snap: &'a Snapshot, interval: Duration) -> Vec<Row<'a>> {
    let mut rows = Vec::new();
    for (topic, (tc, channels)) in snap {
        let before = prev.get(topic);
        let t_before = before.map(|(c, _)| c.messages).unwrap_or(tc.messages);
        rows.push(Row {
            topic,
            channel: "",
            counts: tc,
            rate: rate(tc.messages, t_before, interval),
        });
        for (channel, cc) in channels {
            let o = before.and_then(|(_, chans)| chans.get(channel));
            let (om, od) = o
                .map(|o| (o.messages, o.depth))
                .unwrap_or((cc.messages, cc.depth));
            rows.push(Row {
                topic,
                channel,
                counts: cc,
                rate: rate(cc.messages - cc.depth, om - od, interval),
            });
        }
    }
    rows
}

const CLUSTER_CSV_HEADER: &str =
    "time,topic,channel,depth,in_flight,deferred,requeued,timed_out,messages,rate,clients,paused,nsqd";

fn report_cluster(
    plan: &StatPlan,
    prev: &Snapshot,
    snap: &Snapshot,
    reports: u64,
    out: &mut impl Write,
) -> std::io::Result<()> {
    let rows = cluster_rows(prev, snap, plan.interval);
    let now = timestamp();
    match plan.format {
        StatFormat::Table => {
            let mut table = Table::new();
            table.load_style(presets::UTF8_FULL_CONDENSED);
            table.set_header([
                "TOPIC",
                "CHANNEL",
                "DEPTH",
                "IN-FLIGHT",
                "DEFERRED",
                "REQUEUED",
                "TIMED-OUT",
                "MESSAGES",
                "MSG/S",
                "CLIENTS",
                "PAUSED",
                "NSQD",
            ]);
            for r in &rows {
                let c = r.counts;
                let topic_row = r.channel.is_empty();
                // A topic has no in-flight, deferred or clients of its own: those are its channels'.
                let own = |v: i64| if topic_row { String::new() } else { v.to_string() };
                table.add_row([
                    r.topic.to_string(),
                    if topic_row {
                        "-".to_string()
                    } else {
                        r.channel.to_string()
                    },
                    c.depth.to_string(),
                    own(c.in_flight),
                    own(c.deferred),
                    own(c.requeued),
                    own(c.timed_out),
                    c.messages.to_string(),
                    r.rate.to_string(),
                    own(c.clients),
                    c.paused_text().to_string(),
                    c.nodes.to_string(),
                ]);
            }
            for i in 2..10 {
                if let Some(col) = table.column_mut(i) {
                    col.set_cell_alignment(CellAlignment::Right);
                }
            }
            writeln!(out, "{now}")?;
            writeln!(out, "{table}")
        }
        StatFormat::Json => {
            let topics: Vec<Value> = snap
                .keys()
                .map(|topic| {
                    let mut t = Value::Null;
                    let mut chans = Vec::new();
                    for r in rows.iter().filter(|r| r.topic == topic) {
                        let c = r.counts;
                        if r.channel.is_empty() {
                            t = json!({
                                "topic": topic, "depth": c.depth, "backend_depth": c.backend_depth,
                                "messages": c.messages, "rate": r.rate,
                                "paused": c.paused > 0, "nsqd": c.nodes,
                            });
                        } else {
                            chans.push(json!({
                                "channel": r.channel, "depth": c.depth, "backend_depth": c.backend_depth,
                                "in_flight": c.in_flight, "deferred": c.deferred,
                                "requeued": c.requeued, "timed_out": c.timed_out,
                                "messages": c.messages, "rate": r.rate, "clients": c.clients,
                                "paused": c.paused > 0, "nsqd": c.nodes,
                            }));
                        }
                    }
                    t["channels"] = Value::Array(chans);
                    t
                })
                .collect();
            writeln!(out, "{}", json!({"time": now, "topics": topics}))
        }
        StatFormat::Csv => {
            let mut w = csv::Writer::from_writer(Vec::new());
            if reports == 0 {
                w.write_record(CLUSTER_CSV_HEADER.split(','))
                    .map_err(std::io::Error::other)?;
            }
            for r in &rows {
                let c = r.counts;
                w.write_record([
                    now.clone(),
                    r.topic.to_string(),
                    r.channel.to_string(),
                    c.depth.to_string(),
                    c.in_flight.to_string(),
                    c.deferred.to_string(),
                    c.requeued.to_string(),
                    c.timed_out.to_string(),
                    c.messages.to_string(),
                    r.rate.to_string(),
                    c.clients.to_string(),
                    (c.paused > 0).to_string(),
                    c.nodes.to_string(),
                ])
                .map_err(std::io::Error::other)?;
            }
            out.write_all(&w.into_inner().map_err(|e| std::io::Error::other(e.to_string()))?)
        }
    }
}

/// One peer of one broker, as `--replication` reports it.
#[derive(Debug, serde::Serialize)]
struct PeerLag {
    time: String,
    node: String,
    peer: String,
    connected: bool,
    log_lag_bytes: u64,
    state_lag_ms: u64,
    state_lag_channels: u64,
}

/// `nsqrs stat --replication`: every interval, each broker's replication peers and their lag,
/// until `count` reports are out (or forever). The first poll failing is an error, later ones
/// are warnings; a closed stdout ends the run quietly.
pub async fn poll_replication(plan: &StatPlan) -> Result<(), String> {
    let timeouts = plan.timeouts;
    let mut ticker = tokio::time::interval(plan.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut reports = 0u64;
    loop {
        ticker.tick().await;
        let nodes = match nsqd_addresses(plan, timeouts).await {
            Ok(n) => n,
            Err(e) if reports == 0 => return Err(e),
            Err(e) => {
                errln!("warning: {}", e.replace('\n', " "));
                continue;
            }
        };
        let mut rows = Vec::new();
        for node in &nodes {
            let stats = match HttpClient::new(timeouts)
                .get_json(
                    &api_url(node, "/stats?format=json&include_clients=false"),
                    Some(ACCEPT_NSQ_V1),
                )
                .await
            {
                Ok(s) => s,
                Err(e) if reports == 0 => return Err(format!("nsqd {node}: {e}")),
                Err(e) => {
                    errln!("warning: nsqd {node}: {}", e.replace('\n', " "));
                    continue;
                }
            };
            for p in stats["replication"]["peers"].as_array().into_iter().flatten() {
                let n = |k: &str| p[k].as_u64().unwrap_or(0);
                rows.push(PeerLag {
                    time: timestamp(),
                    node: node.clone(),
                    peer: p["address"].as_str().unwrap_or("").to_string(),
                    connected: p["connected"].as_bool().unwrap_or(false),
                    log_lag_bytes: n("log_lag_bytes"),
                    state_lag_ms: n("state_lag_ms"),
                    state_lag_channels: n("state_lag_channels"),
                });
            }
        }
        let stdout = std::io::stdout();
        let mut out = stdout.lock();
        let result = (|| -> std::io::Result<()> {
            match plan.format {
                StatFormat::Table => {
                    if reports.is_multiple_of(HEADER_EVERY) {
                        writeln!(
                            out,
                            "{:<21} {:<21} {:>9} {:>12} {:>12} {:>10}",
                            "nsqd", "peer", "connected", "log-lag(B)", "state-lag(ms)", "states"
                        )?;
                    }
                    if rows.is_empty() {
                        writeln!(out, "(no replication peers)")?;
                    }
                    for r in &rows {
                        writeln!(
                            out,
                            "{:<21} {:<21} {:>9} {:>12} {:>12} {:>10}",
                            r.node,
                            r.peer,
                            r.connected,
                            r.log_lag_bytes,
                            r.state_lag_ms,
                            r.state_lag_channels
                        )?;
                    }
                }
                StatFormat::Csv => {
                    if reports == 0 {
                        writeln!(
                            out,
                            "time,nsqd,peer,connected,log_lag_bytes,state_lag_ms,state_lag_channels"
                        )?;
                    }
                    for r in &rows {
                        writeln!(
                            out,
                            "{},{},{},{},{},{},{}",
                            r.time,
                            r.node,
                            r.peer,
                            r.connected,
                            r.log_lag_bytes,
                            r.state_lag_ms,
                            r.state_lag_channels
                        )?;
                    }
                }
                StatFormat::Json => {
                    for r in &rows {
                        writeln!(out, "{}", serde_json::to_string(r).unwrap_or_default())?;
                    }
                }
            }
            out.flush()
        })();
        if let Err(e) = result {
            return if e.kind() == std::io::ErrorKind::BrokenPipe {
                Ok(())
            } else {
                Err(e.to_string())
            };
        }
        reports += 1;
        if plan.count > 0 && reports >= plan.count {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_matches_nsq_stat() {
        let mut out = Vec::new();
        channel_header(&mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text.lines().nth(1).unwrap(),
            "ingress  egress |   total     mem    disk inflt   def |     req     t-o         msgs clients"
        );
    }

    #[test]
    fn rates_are_per_second_and_truncated() {
        assert_eq!(rate(110, 100, Duration::from_secs(2)), 5);
        assert_eq!(rate(103, 100, Duration::from_secs(2)), 1);
        assert_eq!(rate(100, 100, Duration::from_millis(500)), 0);
    }
}
