//! What replication reports: the `replication` object of `/stats` (peers with their lag,
//! copies held), the `nsqrs_replication_*` lines of `/metrics`, and the `/stats` text section.
//! The same types read that answer back (the admin's pages): leniently, since a broker of
//! another version may send fewer fields.

use std::fmt::Write;
use std::sync::atomic::Ordering;

use serde::{Deserialize, Serialize};

use super::Replication;
use crate::common::time::now_ns;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct PeerStatus {
    pub address: String,
    pub node_id: Option<String>,
    pub connected: bool,
    /// Bytes appended locally and not yet acknowledged by this peer.
    pub log_lag_bytes: u64,
    /// Age of the oldest channel or topic state change not yet confirmed by this peer.
    pub state_lag_ms: u64,
    /// Channel and topic states shipped and not yet confirmed.
    pub state_lag_channels: usize,
    pub last_error: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct CopyStatus {
    pub owner: String,
    pub name: String,
    pub epoch: u64,
    pub topics: usize,
    pub bytes: u64,
    pub connected: bool,
    /// Unix time (s) the owner was last heard from.
    pub last_contact: i64,
    pub adopted: bool,
    pub adopted_by: Option<String>,
    pub adopting: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ReplicationStatus {
    pub node_id: String,
    pub epoch: u64,
    pub replicas: usize,
    pub policy: Option<String>,
    pub degraded: bool,
    pub peers: Vec<PeerStatus>,
    pub copies: Vec<CopyStatus>,
}

pub fn collect(repl: &Replication) -> ReplicationStatus {
    let now = now_ns();
    // Each durable topic's kept stretch of log: what a peer lacks of it is its lag.
    let logs: Vec<(String, u64, u64)> = repl
        .broker()
        .map(|b| b.topics())
        .unwrap_or_default()
        .iter()
        .filter_map(|t| match &t.core.log {
            crate::nsqd::broker::topic::LogStore::Disk(log) => {
                let tail = log.lock().tail().pos;
                Some((t.name().to_string(), tail, t.core.head().pos))
            }
            crate::nsqd::broker::topic::LogStore::Memory(_) => None,
        })
        .collect();
    let peers = repl
        .owner
        .iter()
        .flat_map(|o| o.peers.iter())
        .map(|p| {
            let st = p.status.lock();
            let (state_lag_ms, state_lag_channels) = st.state_lag(now);
            PeerStatus {
                address: p.address.clone(),
                node_id: p.node.lock().clone(),
                connected: p.is_connected(),
                log_lag_bytes: logs
                    .iter()
                    .map(|(name, tail, head)| head.saturating_sub(p.acked(name).max(*tail)))
                    .sum(),
                state_lag_ms,
                state_lag_channels,
                last_error: st.last_error.clone(),
            }
        })
        .collect();
    let copies = repl
        .copies
        .all()
        .iter()
        .map(|c| {
            let info = c.info.lock().clone();
            let adopted = c.adopted.lock().clone();
            // An adoption holds the copy's topics while it works; report it without waiting.
            let adopting = c.adopting.load(Ordering::Acquire);
            let (topics, bytes) = if adopting {
                (0, 0)
            } else {
                let topics = c.topics.lock().len();
                (topics, c.bytes())
            };
            CopyStatus {
                owner: c.owner.clone(),
                name: info.name,
                epoch: info.epoch,
                topics,
                bytes,
                connected: c.connected.load(Ordering::Acquire) > 0,
                last_contact: (c.last_contact_ns.load(Ordering::Relaxed) / 1_000_000_000) as i64,
                adopted: adopted.is_some(),
                adopted_by: adopted.map(|a| a.adopter),
                adopting,
            }
        })
        .collect();
    ReplicationStatus {
        node_id: repl.node.clone(),
        epoch: repl.epoch(),
        replicas: repl.owner.as_ref().map_or(0, |o| o.replicas),
        policy: repl.owner.as_ref().map(|o| o.policy.name().to_string()),
        degraded: repl.degraded().is_some(),
        peers,
        copies,
    }
}

/// A per-peer gauge: name, help text, and how to read it.
type Gauge = (&'static str, &'static str, fn(&PeerStatus) -> f64);

/// Prometheus lines for `/metrics`.
pub fn render_metrics(st: &ReplicationStatus) -> String {
    let mut out = String::new();
    let esc = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
    let _ = writeln!(
        out,
        "# HELP nsqrs_replication_degraded 1 when fewer than --replicas peers are connected"
    );
    let _ = writeln!(out, "# TYPE nsqrs_replication_degraded gauge");
    let _ = writeln!(out, "nsqrs_replication_degraded {}", st.degraded as u8);
    let gauges: [Gauge; 4] = [
        (
            "nsqrs_replication_peer_connected",
            "1 when the peer is connected",
            |p| p.connected as u8 as f64,
        ),
        (
            "nsqrs_replication_log_lag_bytes",
            "log bytes the peer has not acknowledged",
            |p| p.log_lag_bytes as f64,
        ),
        (
            "nsqrs_replication_state_lag_seconds",
            "age of the oldest channel state change the peer has not confirmed",
            |p| p.state_lag_ms as f64 / 1000.0,
        ),
        (
            "nsqrs_replication_state_lag_channels",
            "channel and topic states the peer has not confirmed",
            |p| p.state_lag_channels as f64,
        ),
    ];
    for (name, help, value) in gauges {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} gauge");
        for p in &st.peers {
            let _ = writeln!(out, "{name}{{peer=\"{}\"}} {}", esc(&p.address), value(p));
        }
    }
    let _ = writeln!(
        out,
        "# HELP nsqrs_replication_copy_bytes log bytes held in a copy of another broker"
    );
    let _ = writeln!(out, "# TYPE nsqrs_replication_copy_bytes gauge");
    for c in &st.copies {
        let _ = writeln!(
            out,
            "nsqrs_replication_copy_bytes{{owner=\"{}\",name=\"{}\",adopted=\"{}\"}} {}",
            esc(&c.owner),
            esc(&c.name),
            c.adopted,
            c.bytes
        );
    }
    out
}

/// The `/stats` text section.
pub fn render_text(st: &ReplicationStatus) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\nReplication: node {} epoch {}{}",
        st.node_id,
        st.epoch,
        match &st.policy {
            Some(p) => format!(
                " replicas {} policy {p}{}",
                st.replicas,
                if st.degraded { " DEGRADED" } else { "" }
            ),
            None => String::new(),
        }
    );
    for p in &st.peers {
        let _ = writeln!(
            out,
            "   [peer {:<21}] connected: {:<5} log-lag: {:<8} state-lag: {}ms/{} {}",
            p.address, p.connected, p.log_lag_bytes, p.state_lag_ms, p.state_lag_channels, p.last_error
        );
    }
    for c in &st.copies {
        let _ = writeln!(
            out,
            "   [copy {:<21}] owner: {} epoch: {} topics: {} bytes: {} connected: {} adopted: {}",
            c.name, c.owner, c.epoch, c.topics, c.bytes, c.connected, c.adopted
        );
    }
    out
}
