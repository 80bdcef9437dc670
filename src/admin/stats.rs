//! nsqadmin's view of the cluster, in nsqadmin's JSON shapes (`/api/topics/:t`,
//! `/api/topics/:t/:c`, `/api/nodes`, ...): producers as lookupd or nsqd report them, and the
//! `/stats` of each nsqd tagged with its node and summed over the cluster.
//!
//! Every field is named and typed as Go nsqadmin 1.3.0 writes it (recorded answers are in
//! tests/fixtures/nsqadmin), including its `null`s, so scripts written against nsqadmin read
//! these answers unchanged. Reading is lenient: a field an nsqd does not send is zero.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One percentile of an e2e latency aggregate; nsqadmin writes it as a map, keys sorted.
pub type Percentile = BTreeMap<String, f64>;

/// `e2e_processing_latency`: nsqd's quantiles, and their merge over nodes.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct E2eLatency {
    #[serde(default)]
    pub count: i64,
    #[serde(default)]
    pub percentiles: Option<Vec<Percentile>>,
    #[serde(default)]
    pub topic: String,
    #[serde(default)]
    pub channel: String,
    #[serde(default, rename = "host")]
    pub addr: String,
}

impl E2eLatency {
    /// As nsqadmin reads one nsqd's quantiles: each also stands as its own min, max and
    /// average over `count` samples.
    fn node_view(mut self) -> E2eLatency {
        let count = self.count as f64;
        for p in self.percentiles.iter_mut().flatten() {
            let value = p.get("value").copied().unwrap_or(0.0);
            for key in ["min", "max", "average"] {
                p.insert(key.into(), value);
            }
            p.insert("count".into(), count);
        }
        self
    }

    /// Merges a node's quantiles into a cluster aggregate: max of maxes, min of mins, and the
    /// count-weighted average, quantile by quantile (highest quantile first).
    fn add(&mut self, other: &E2eLatency) {
        self.addr = "*".into();
        self.count += other.count;
        let Some(theirs) = &other.percentiles else {
            return;
        };
        let ours = self.percentiles.get_or_insert_with(Vec::new);
        for value in theirs {
            let get = |k: &str| value.get(k).copied().unwrap_or(0.0);
            let i = match ours
                .iter()
                .position(|p| p.get("quantile") == value.get("quantile"))
            {
                Some(i) => i,
                None => {
                    let mut fresh = Percentile::new();
                    fresh.insert("quantile".into(), get("quantile"));
                    fresh.insert("min".into(), get("min"));
                    ours.push(fresh);
                    ours.len() - 1
                }
            };
            let p = &mut ours[i];
            let max = p.get("max").copied().unwrap_or(0.0).max(get("max"));
            let min = p.get("min").copied().unwrap_or(f64::MAX).min(get("min"));
            let count = p.get("count").copied().unwrap_or(0.0) + get("count");
            let average = if count == 0.0 {
                0.0
            } else {
                let before = p.get("average").copied().unwrap_or(0.0);
                before + (get("average") - before) * get("count") / count
            };
            p.insert("max".into(), max);
            p.insert("min".into(), min);
            p.insert("count".into(), count);
            p.insert("average".into(), average);
        }
        ours.sort_by(|a, b| {
            let q = |p: &Percentile| p.get("quantile").copied().unwrap_or(0.0);
            q(b).total_cmp(&q(a))
        });
    }
}

/// One topic on one nsqd, or (`node` = `*`) summed over the cluster with the per-node rows
/// in `nodes`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TopicStats {
    #[serde(default)]
    pub node: String,
    #[serde(default)]
    pub hostname: String,
    #[serde(default)]
    pub topic_name: String,
    #[serde(default)]
    pub depth: i64,
    #[serde(default)]
    pub memory_depth: i64,
    #[serde(default)]
    pub backend_depth: i64,
    #[serde(default)]
    pub message_count: i64,
    #[serde(default)]
    pub nodes: Option<Vec<TopicStats>>,
    #[serde(default)]
    pub channels: Vec<ChannelStats>,
    #[serde(default)]
    pub paused: bool,
    #[serde(default)]
    pub e2e_processing_latency: E2eLatency,
}

/// One channel on one nsqd, or summed over the cluster (`node` = `*`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ChannelStats {
    #[serde(default)]
    pub node: String,
    #[serde(default)]
    pub hostname: String,
    #[serde(default)]
    pub topic_name: String,
    #[serde(default)]
    pub channel_name: String,
    #[serde(default)]
    pub depth: i64,
    #[serde(default)]
    pub memory_depth: i64,
    #[serde(default)]
    pub backend_depth: i64,
    #[serde(default)]
    pub in_flight_count: i64,
    #[serde(default)]
    pub deferred_count: i64,
    #[serde(default)]
    pub requeue_count: i64,
    #[serde(default)]
    pub timeout_count: i64,
    #[serde(default)]
    pub message_count: i64,
    #[serde(default)]
    pub client_count: i64,
    #[serde(default)]
    pub nodes: Option<Vec<ChannelStats>>,
    #[serde(default)]
    pub clients: Option<Vec<ClientStats>>,
    #[serde(default)]
    pub paused: bool,
    #[serde(default)]
    pub e2e_processing_latency: E2eLatency,
}

/// One consumer connection, as nsqd's `/stats` lists it plus the node it is on.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ClientStats {
    #[serde(default)]
    pub node: String,
    #[serde(default)]
    pub remote_address: String,
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub client_id: String,
    #[serde(default)]
    pub hostname: String,
    #[serde(default)]
    pub user_agent: String,
    #[serde(default)]
    pub connect_ts: i64,
    /// How long it has been connected, ns (nsqadmin's Go duration).
    #[serde(default)]
    pub connected: i64,
    #[serde(default)]
    pub in_flight_count: i64,
    #[serde(default)]
    pub ready_count: i64,
    #[serde(default)]
    pub finish_count: i64,
    #[serde(default)]
    pub requeue_count: i64,
    #[serde(default)]
    pub message_count: i64,
    #[serde(default)]
    pub sample_rate: i64,
    #[serde(default)]
    pub deflate: bool,
    #[serde(default)]
    pub snappy: bool,
    #[serde(default)]
    pub authed: bool,
    #[serde(default)]
    pub auth_identity: String,
    #[serde(default)]
    pub auth_identity_url: String,
    #[serde(default)]
    pub tls: bool,
    #[serde(default)]
    pub tls_cipher_suite: String,
    #[serde(default)]
    pub tls_version: String,
    #[serde(default)]
    pub tls_negotiated_protocol: String,
    #[serde(default)]
    pub tls_negotiated_protocol_is_mutual: bool,
}

/// A topic as a producer carries it in `/api/nodes`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct ProducerTopic {
    pub topic: String,
    pub tombstoned: bool,
}

/// One nsqd as `/api/nodes` lists it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Producer {
    /// `lookupd/remote address` once per lookupd that knows it (null without lookupd).
    pub remote_addresses: Option<Vec<String>>,
    pub remote_address: String,
    pub hostname: String,
    pub broadcast_address: String,
    pub tcp_port: u16,
    pub http_port: u16,
    pub version: String,
    pub topics: Vec<ProducerTopic>,
    pub out_of_date: bool,
}

impl Producer {
    /// `broadcast_address:http_port`, the name nsqadmin gives a node.
    pub fn http_address(&self) -> String {
        join_host_port(&self.broadcast_address, self.http_port)
    }

    pub fn tcp_address(&self) -> String {
        join_host_port(&self.broadcast_address, self.tcp_port)
    }
}

pub fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// `major.minor.patch` as numbers, for telling out-of-date nodes; unparsable is 0.0.0.
pub fn version_key(v: &str) -> (u64, u64, u64) {
    let mut parts = v
        .split(['-', '+'])
        .next()
        .unwrap_or("")
        .split('.')
        .map(|p| p.parse::<u64>());
    match (parts.next(), parts.next(), parts.next()) {
        (Some(Ok(a)), Some(Ok(b)), Some(Ok(c))) => (a, b, c),
        _ => (0, 0, 0),
    }
}

/// `/stats?format=json` as nsqd answers it; only what nsqadmin reads.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct NodeStats {
    #[serde(default)]
    pub topics: Option<Vec<TopicStats>>,
}

impl NodeStats {
    /// Tags every row with the node and host it came from and fills in what nsqadmin derives
    /// (memory depth, latency aggregates).
    pub fn tagged(self, node: &str, hostname: &str) -> Vec<TopicStats> {
        let mut topics = self.topics.unwrap_or_default();
        for t in &mut topics {
            t.node = node.to_string();
            t.hostname = hostname.to_string();
            t.memory_depth = t.depth - t.backend_depth;
            t.e2e_processing_latency = std::mem::take(&mut t.e2e_processing_latency).node_view();
            for c in &mut t.channels {
                c.node = node.to_string();
                c.hostname = hostname.to_string();
                c.topic_name = t.topic_name.clone();
                c.memory_depth = c.depth - c.backend_depth;
                c.e2e_processing_latency = std::mem::take(&mut c.e2e_processing_latency).node_view();
                let now = crate::common::time::now_ns() / 1_000_000_000;
                for client in c.clients.iter_mut().flatten() {
                    client.node = node.to_string();
                    client.connected = (now - client.connect_ts).max(0) * 1_000_000_000;
                }
            }
        }
        topics
    }
}

impl TopicStats {
    /// The cluster-wide sum of `rows` (one per node), as nsqadmin's `/api/topics/:topic`.
    pub fn sum(topic: &str, rows: &[TopicStats]) -> TopicStats {
        let mut total = TopicStats {
            node: "*".into(),
            topic_name: topic.to_string(),
            nodes: Some(Vec::new()),
            ..TopicStats::default()
        };
        let mut channels: Vec<ChannelStats> = Vec::new();
        for t in rows {
            total.depth += t.depth;
            total.memory_depth += t.memory_depth;
            total.backend_depth += t.backend_depth;
            total.message_count += t.message_count;
            total.paused |= t.paused;
            for c in &t.channels {
                match channels.iter_mut().find(|s| s.channel_name == c.channel_name) {
                    // The first node's row stands for the channel until another adds to it.
                    Some(sum) => sum.add_plain(c),
                    None => channels.push(c.clone()),
                }
            }
            total.e2e_processing_latency.topic = topic.to_string();
            total.e2e_processing_latency.add(&t.e2e_processing_latency);
            total.nodes.get_or_insert_with(Vec::new).push(t.clone());
        }
        total.channels = channels;
        if let Some(nodes) = &mut total.nodes {
            nodes.sort_by(|a, b| a.hostname.cmp(&b.hostname));
        }
        total
    }
}

impl ChannelStats {
    /// nsqadmin's topic view folds later nodes' rows into the first one's.
    fn add_plain(&mut self, a: &ChannelStats) {
        self.node = "*".into();
        self.add_counts(a);
        self.e2e_processing_latency.add(&a.e2e_processing_latency);
    }

    fn add_counts(&mut self, a: &ChannelStats) {
        self.depth += a.depth;
        self.memory_depth += a.memory_depth;
        self.backend_depth += a.backend_depth;
        self.in_flight_count += a.in_flight_count;
        self.deferred_count += a.deferred_count;
        self.requeue_count += a.requeue_count;
        self.timeout_count += a.timeout_count;
        self.message_count += a.message_count;
        self.client_count += a.client_count;
        self.paused |= a.paused;
    }

    /// The cluster-wide sum of one channel's per-node `rows`, as `/api/topics/:t/:c`.
    pub fn sum(topic: &str, channel: &str, rows: &[ChannelStats]) -> ChannelStats {
        let mut total = ChannelStats {
            node: "*".into(),
            topic_name: topic.to_string(),
            channel_name: channel.to_string(),
            ..ChannelStats::default()
        };
        let mut clients: Vec<ClientStats> = Vec::new();
        let mut nodes = Vec::new();
        for c in rows {
            total.add_counts(c);
            total.e2e_processing_latency.topic = topic.to_string();
            total.e2e_processing_latency.channel = channel.to_string();
            total.e2e_processing_latency.add(&c.e2e_processing_latency);
            clients.extend(c.clients.iter().flatten().cloned());
            nodes.push(c.clone());
        }
        nodes.sort_by(|a, b| a.hostname.cmp(&b.hostname));
        clients.sort_by(|a, b| a.hostname.cmp(&b.hostname));
        total.nodes = Some(nodes);
        total.clients = (!clients.is_empty()).then_some(clients);
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node_stats(json: &str) -> NodeStats {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn nodes_are_tagged_and_summed() {
        let a = node_stats(
            r#"{"topics":[{"topic_name":"t","depth":5,"backend_depth":2,"message_count":7,"paused":false,
            "channels":[{"channel_name":"c","depth":1,"in_flight_count":2,"client_count":1,"clients":[{"hostname":"h1","connect_ts":1}],
            "e2e_processing_latency":{"count":2,"percentiles":[{"quantile":0.99,"value":10.0}]}}],
            "e2e_processing_latency":{"count":0,"percentiles":null}}]}"#,
        )
        .tagged("a:1", "ha");
        let b = node_stats(
            r#"{"topics":[{"topic_name":"t","depth":1,"message_count":1,"paused":true,
            "channels":[{"channel_name":"c","depth":3,"clients":[]},{"channel_name":"d"}]}]}"#,
        )
        .tagged("b:1", "hb");
        assert_eq!(a[0].memory_depth, 3);
        assert_eq!(a[0].channels[0].node, "a:1");
        assert_eq!(a[0].channels[0].topic_name, "t");
        let p = &a[0].channels[0]
            .e2e_processing_latency
            .percentiles
            .as_ref()
            .unwrap()[0];
        assert_eq!(
            (p["min"], p["max"], p["average"], p["count"]),
            (10.0, 10.0, 10.0, 2.0)
        );

        let t = TopicStats::sum("t", &[a[0].clone(), b[0].clone()]);
        assert_eq!(
            (t.node.as_str(), t.depth, t.message_count, t.paused),
            ("*", 6, 8, true)
        );
        assert_eq!(t.nodes.as_ref().unwrap().len(), 2);
        let names: Vec<&str> = t.channels.iter().map(|c| c.channel_name.as_str()).collect();
        assert_eq!(names, ["c", "d"]);
        assert_eq!(t.channels[0].depth, 4);

        let c = ChannelStats::sum("t", "c", &[a[0].channels[0].clone(), b[0].channels[0].clone()]);
        assert_eq!((c.depth, c.in_flight_count, c.client_count), (4, 2, 1));
        assert_eq!(c.clients.as_ref().unwrap()[0].node, "a:1");
        let e2e = c.e2e_processing_latency;
        assert_eq!((e2e.count, e2e.addr.as_str()), (2, "*"));
        assert!(!e2e.percentiles.unwrap()[0].contains_key("value"));
    }

    #[test]
    fn versions_order() {
        assert!(version_key("1.3.0") > version_key("1.2.1"));
        assert_eq!(version_key("junk"), (0, 0, 0));
        assert_eq!(version_key("1.3.0-alpha"), (1, 3, 0));
    }
}
