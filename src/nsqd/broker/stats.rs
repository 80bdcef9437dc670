//! Statistics as nsqd reports them on `/stats` (JSON shape of nsq-reference §1.10), built from
//! the engine's counters on demand.

use std::time::{Duration, Instant};

use serde::Serialize;

/// `--e2e-processing-latency-percentile` and `-window-time`; no percentiles means off.
#[derive(Debug, Clone, Default)]
pub struct E2eConfig {
    pub percentiles: Vec<f64>,
    pub window: Duration,
}

/// Samples kept per half-window: enough for a stable p99, bounded whatever the rate.
const RESERVOIR: usize = 2048;

#[derive(Debug, Default)]
struct Half {
    /// Latencies recorded in this half (not all kept).
    count: u64,
    /// A uniform sample of them (reservoir sampling).
    samples: Vec<i64>,
}

/// End-to-end processing latency (publish → FIN) over a sliding window, laid out as nsqd
/// does: two half-windows, the older one dropped each time a half-window passes, both
/// merged for a query. Each half keeps a fixed-size uniform sample, so memory and the cost
/// of a FIN stay constant; a query weighs each sample by how many latencies it stands for.
#[derive(Debug)]
pub struct E2eWindow {
    percentiles: Vec<f64>,
    half: Duration,
    halves: [Half; 2],
    current: usize,
    last_move: Instant,
}

impl Default for E2eWindow {
    fn default() -> Self {
        E2eWindow::new(&E2eConfig::default())
    }
}

/// Samples weighted by how many latencies each represents.
pub type WeightedSamples = Vec<(i64, f64)>;

impl E2eWindow {
    pub fn new(config: &E2eConfig) -> E2eWindow {
        E2eWindow {
            percentiles: config.percentiles.clone(),
            half: (config.window / 2).max(Duration::from_millis(1)),
            halves: Default::default(),
            current: 0,
            last_move: Instant::now(),
        }
    }

    pub fn enabled(&self) -> bool {
        !self.percentiles.is_empty()
    }

    fn rotate(&mut self, now: Instant) {
        if now.duration_since(self.last_move) >= self.half * 2 {
            // Idle for a whole window: everything is stale.
            self.halves = Default::default();
            self.last_move = now;
            return;
        }
        while now.duration_since(self.last_move) > self.half {
            self.current ^= 1;
            self.halves[self.current] = Half::default();
            self.last_move += self.half;
        }
    }

    pub fn record(&mut self, latency_ns: i64) {
        if !self.enabled() {
            return;
        }
        self.rotate(Instant::now());
        let h = &mut self.halves[self.current];
        h.count += 1;
        if h.samples.len() < RESERVOIR {
            h.samples.push(latency_ns);
        } else {
            let j = rand::Rng::gen_range(&mut rand::thread_rng(), 0..h.count);
            if (j as usize) < RESERVOIR {
                h.samples[j as usize] = latency_ns;
            }
        }
    }

    /// Adds this window's weighted samples to `out`; returns how many latencies they cover.
    pub fn collect(&mut self, out: &mut WeightedSamples) -> u64 {
        if !self.enabled() {
            return 0;
        }
        self.rotate(Instant::now());
        let mut count = 0;
        for h in &self.halves {
            if h.samples.is_empty() {
                continue;
            }
            let weight = h.count as f64 / h.samples.len() as f64;
            out.extend(h.samples.iter().map(|&v| (v, weight)));
            count += h.count;
        }
        count
    }

    pub fn percentiles(&self) -> &[f64] {
        &self.percentiles
    }
}

/// The quantiles of weighted samples, in the order asked; `samples` is sorted in place.
pub fn quantiles(samples: &mut WeightedSamples, percentiles: &[f64]) -> Vec<Quantile> {
    samples.sort_by_key(|&(v, _)| v);
    let total: f64 = samples.iter().map(|&(_, w)| w).sum();
    percentiles
        .iter()
        .map(|&q| {
            let target = q * total;
            let mut seen = 0.0;
            let mut value = samples.last().map_or(0, |&(v, _)| v);
            for &(v, w) in samples.iter() {
                seen += w;
                if seen >= target {
                    value = v;
                    break;
                }
            }
            Quantile {
                quantile: q,
                value: value as f64,
            }
        })
        .collect()
}

#[derive(Debug, Clone, Serialize)]
pub struct Quantile {
    pub quantile: f64,
    pub value: f64,
}

#[derive(Debug, Serialize)]
pub struct E2eStats {
    pub count: u64,
    pub percentiles: Option<Vec<Quantile>>,
}

impl E2eStats {
    fn from_samples(count: u64, mut samples: WeightedSamples, percentiles: &[f64]) -> E2eStats {
        if percentiles.is_empty() {
            return E2eStats {
                count: 0,
                percentiles: None,
            };
        }
        E2eStats {
            count,
            percentiles: Some(quantiles(&mut samples, percentiles)),
        }
    }

    /// nsqd's text form: each quantile's value as a Go-style duration, comma-separated.
    pub fn text(&self) -> String {
        self.percentiles
            .iter()
            .flatten()
            .map(|q| {
                let ns = q.value;
                let (v, unit) = if ns < 1e3 {
                    (ns, "ns")
                } else if ns < 1e6 {
                    (ns / 1e3, "us")
                } else if ns < 1e9 {
                    (ns / 1e6, "ms")
                } else {
                    (ns / 1e9, "s")
                };
                format!("{v:.1}{unit}")
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[derive(Debug, Serialize)]
pub struct ClientStats {
    pub client_id: String,
    pub hostname: String,
    pub version: String,
    pub remote_address: String,
    pub state: u8,
    pub ready_count: i64,
    pub in_flight_count: i64,
    pub message_count: u64,
    pub finish_count: u64,
    pub requeue_count: u64,
    pub connect_ts: i64,
    pub sample_rate: i32,
    pub deflate: bool,
    pub snappy: bool,
    pub user_agent: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub authed: bool,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub auth_identity: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub auth_identity_url: String,
    pub tls: bool,
    pub tls_cipher_suite: String,
    pub tls_version: String,
    pub tls_negotiated_protocol: String,
    pub tls_negotiated_protocol_is_mutual: bool,
    pub topology_zone: String,
    pub topology_region: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pub_counts: Vec<PubCount>,
}

#[derive(Debug, Serialize)]
pub struct PubCount {
    pub topic: String,
    pub count: u64,
}

#[derive(Debug, Serialize)]
pub struct ChannelStats {
    pub channel_name: String,
    pub depth: u64,
    pub backend_depth: u64,
    pub in_flight_count: u64,
    pub deferred_count: u64,
    pub message_count: u64,
    pub requeue_count: u64,
    pub timeout_count: u64,
    pub client_count: usize,
    pub clients: Option<Vec<ClientStats>>,
    pub paused: bool,
    pub e2e_processing_latency: E2eStats,
}

#[derive(Debug, Serialize)]
pub struct TopicStats {
    pub topic_name: String,
    pub channels: Vec<ChannelStats>,
    pub depth: u64,
    pub backend_depth: u64,
    pub message_count: u64,
    pub message_bytes: u64,
    pub paused: bool,
    pub e2e_processing_latency: E2eStats,
}

#[derive(Debug, Serialize)]
pub struct MemoryStats {
    pub heap_objects: u64,
    pub heap_idle_bytes: u64,
    pub heap_in_use_bytes: u64,
    pub heap_released_bytes: u64,
    pub gc_pause_usec_100: u64,
    pub gc_pause_usec_99: u64,
    pub gc_pause_usec_95: u64,
    pub next_gc_bytes: u64,
    pub gc_total_runs: u64,
}

#[derive(Debug, Serialize)]
pub struct Stats {
    pub version: String,
    pub health: String,
    pub start_time: i64,
    pub topics: Option<Vec<TopicStats>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<MemoryStats>,
    pub producers: Option<Vec<ClientStats>>,
    /// nsqrs: how many repairs of damaged files this process made (torn tails cut, damaged
    /// records skipped, files set aside, channels rebuilt), and the latest ones.
    pub repair_count: u64,
    pub repairs: Vec<super::repairs::Repair>,
}

/// Resident set size of this process in bytes (from /proc), reported as heap in use.
pub fn process_rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1).and_then(|v| v.parse::<u64>().ok()))
        .map(|pages| pages * 4096)
        .unwrap_or(0)
}

use std::sync::atomic::Ordering;

use super::client::ClientHandle;
use super::Broker;

fn client_stats(c: &ClientHandle, with_pub_counts: bool) -> ClientStats {
    let s = c.settings.read();
    let t = c.transport.read().clone();
    ClientStats {
        client_id: s.client_id.clone(),
        hostname: s.hostname.clone(),
        version: "V2".into(),
        remote_address: c.remote_address.clone(),
        state: c.state.load(Ordering::Relaxed),
        ready_count: c.ready_count.load(Ordering::Relaxed),
        in_flight_count: c.in_flight.load(Ordering::Relaxed),
        message_count: c.message_count.load(Ordering::Relaxed),
        finish_count: c.finish_count.load(Ordering::Relaxed),
        requeue_count: c.requeue_count.load(Ordering::Relaxed),
        connect_ts: c.connect_ts,
        sample_rate: s.sample_rate,
        deflate: t.deflate,
        snappy: t.snappy,
        user_agent: s.user_agent.clone(),
        authed: t.authed,
        auth_identity: t.auth_identity,
        auth_identity_url: t.auth_identity_url,
        tls: t.tls,
        tls_cipher_suite: t.tls_cipher_suite,
        tls_version: t.tls_version,
        tls_negotiated_protocol: t.tls_negotiated_protocol,
        // Go reports the deprecated NegotiatedProtocolIsMutual, which is always true.
        tls_negotiated_protocol_is_mutual: t.tls,
        topology_zone: String::new(),
        topology_region: String::new(),
        pub_counts: if with_pub_counts {
            c.pub_counts
                .lock()
                .iter()
                .map(|(t, n)| PubCount {
                    topic: t.clone(),
                    count: *n,
                })
                .collect()
        } else {
            vec![]
        },
    }
}

/// Builds `/stats`: topics and channels sorted by name, optionally filtered.
pub fn collect(
    broker: &Broker,
    topic: Option<&str>,
    channel: Option<&str>,
    include_clients: bool,
    include_mem: bool,
) -> Stats {
    let mut topics = Vec::new();
    for t in broker.topics() {
        if topic.is_some_and(|name| name != t.name()) {
            continue;
        }
        let mut channels = Vec::new();
        // nsqd's topic figure merges its channels' windows.
        let mut topic_samples = Vec::new();
        let mut topic_e2e_count = 0;
        // Like nsqd, a topic with no channel has no figure at all.
        let mut topic_percentiles: Vec<f64> = Vec::new();
        for ch in t.channels() {
            if channel.is_some_and(|name| name != ch.name) {
                continue;
            }
            let counts = ch.counts();
            let clients = ch.clients();
            let mut samples = Vec::new();
            let (e2e_count, percentiles) = {
                let mut w = ch.e2e.lock();
                (w.collect(&mut samples), w.percentiles().to_vec())
            };
            topic_e2e_count += e2e_count;
            topic_samples.extend_from_slice(&samples);
            topic_percentiles = percentiles.clone();
            channels.push(ChannelStats {
                channel_name: ch.name.clone(),
                depth: counts.depth,
                backend_depth: if ch.ephemeral || t.is_ephemeral() {
                    0
                } else {
                    counts.depth
                },
                in_flight_count: counts.in_flight,
                deferred_count: counts.deferred,
                message_count: counts.message_count,
                requeue_count: ch.requeue_count.load(Ordering::Relaxed),
                timeout_count: ch.timeout_count.load(Ordering::Relaxed),
                client_count: clients.len(),
                clients: include_clients.then(|| clients.iter().map(|c| client_stats(c, false)).collect()),
                paused: ch.is_paused(),
                e2e_processing_latency: E2eStats::from_samples(e2e_count, samples, &percentiles),
            });
        }
        // A channel filter that matches nothing omits the topic, as nsqd does.
        if channel.is_some() && channels.is_empty() {
            continue;
        }
        let depth = t.depth();
        topics.push(TopicStats {
            topic_name: t.name().to_string(),
            channels,
            depth,
            backend_depth: if t.is_ephemeral() { 0 } else { depth },
            message_count: t.message_count.load(Ordering::Relaxed),
            message_bytes: t.message_bytes.load(Ordering::Relaxed),
            paused: t.is_paused(),
            e2e_processing_latency: E2eStats::from_samples(
                topic_e2e_count,
                topic_samples,
                &topic_percentiles,
            ),
        });
    }
    let producers: Vec<ClientStats> = if include_clients {
        broker
            .clients()
            .iter()
            .filter(|c| !c.pub_counts.lock().is_empty())
            .map(|c| client_stats(c, true))
            .collect()
    } else {
        vec![]
    };
    let rss = process_rss_bytes();
    Stats {
        version: super::NSQ_VERSION.into(),
        health: broker
            .health()
            .map(|e| format!("NOK - {e}"))
            .unwrap_or_else(|| "OK".into()),
        start_time: broker.start_time_unix(),
        topics: if topics.is_empty() && topic.is_some() {
            None
        } else {
            Some(topics)
        },
        memory: include_mem.then_some(MemoryStats {
            heap_objects: 0,
            heap_idle_bytes: 0,
            heap_in_use_bytes: rss,
            heap_released_bytes: 0,
            gc_pause_usec_100: 0,
            gc_pause_usec_99: 0,
            gc_pause_usec_95: 0,
            next_gc_bytes: 0,
            gc_total_runs: 0,
        }),
        repair_count: broker.repairs.count(),
        repairs: broker.repairs.recent(),
        producers: if producers.is_empty() {
            None
        } else {
            Some(producers)
        },
    }
}

/// nsqd's plain-text `/stats` rendering.
pub fn render_text(stats: &Stats, uptime: std::time::Duration) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "nsqd v{} (built w/nsqrs-{})",
        stats.version,
        env!("CARGO_PKG_VERSION")
    );
    let start = chrono::DateTime::from_timestamp(stats.start_time, 0).unwrap_or_default();
    let _ = writeln!(out, "start_time {}", start.format("%Y-%m-%dT%H:%M:%SZ"));
    let _ = writeln!(out, "uptime {:?}\n", uptime);
    let _ = writeln!(out, "Health: {}\n", stats.health);
    if stats.repair_count > 0 {
        let _ = writeln!(out, "Repairs: {}", stats.repair_count);
        for r in &stats.repairs {
            let _ = writeln!(out, "   {}", r.line());
        }
        out.push('\n');
    }
    if let Some(m) = &stats.memory {
        let _ = writeln!(out, "Memory:");
        for (k, v) in [
            ("heap_objects", m.heap_objects),
            ("heap_idle_bytes", m.heap_idle_bytes),
            ("heap_in_use_bytes", m.heap_in_use_bytes),
            ("heap_released_bytes", m.heap_released_bytes),
            ("gc_pause_usec_100", m.gc_pause_usec_100),
            ("gc_pause_usec_99", m.gc_pause_usec_99),
            ("gc_pause_usec_95", m.gc_pause_usec_95),
            ("next_gc_bytes", m.next_gc_bytes),
            ("gc_total_runs", m.gc_total_runs),
        ] {
            let _ = writeln!(out, "   {k:<25}\t{v}");
        }
        out.push('\n');
    }
    match stats.topics.as_deref() {
        None | Some([]) => out.push_str("Topics: None\n"),
        Some(topics) => {
            out.push_str("Topics:");
            for t in topics {
                let paused = if t.paused { "*P " } else { "   " };
                let _ = write!(
                    out,
                    "\n{paused}[{:<15}] depth: {:<5} be-depth: {:<5} msgs: {:<8} e2e%: {}",
                    t.topic_name,
                    t.depth,
                    t.backend_depth,
                    t.message_count,
                    t.e2e_processing_latency.text()
                );
                for c in &t.channels {
                    let paused = if c.paused { "   *P " } else { "      " };
                    let _ = write!(
                        out,
                        "\n{paused}[{:<25}] depth: {:<5} be-depth: {:<5} inflt: {:<4} def: {:<4} re-q: {:<5} timeout: {:<5} msgs: {:<8} e2e%: {}",
                        c.channel_name, c.depth, c.backend_depth, c.in_flight_count, c.deferred_count,
                        c.requeue_count, c.timeout_count, c.message_count, c.e2e_processing_latency.text()
                    );
                    for cl in c.clients.iter().flatten() {
                        let _ = write!(
                            out,
                            "\n        [{} {:<21} {}] state: {} inflt: {:<4} rdy: {:<4} fin: {:<8} re-q: {:<8} msgs: {:<8} connected: {}s",
                            cl.version, cl.remote_address, cl.user_agent, cl.state, cl.in_flight_count,
                            cl.ready_count, cl.finish_count, cl.requeue_count, cl.message_count,
                            (crate::common::time::now_ns() / 1_000_000_000 - cl.connect_ts).max(0)
                        );
                    }
                }
            }
            out.push('\n');
        }
    }
    match stats.producers.as_deref() {
        None | Some([]) => out.push_str("\nProducers: None\n"),
        Some(producers) => {
            out.push_str("\nProducers:");
            for p in producers {
                let total: u64 = p.pub_counts.iter().map(|c| c.count).sum();
                let topics: Vec<String> = p
                    .pub_counts
                    .iter()
                    .map(|c| format!("{}={}", c.topic, c.count))
                    .collect();
                let _ = write!(
                    out,
                    "\n   [{} {:<21} {}] msgs: {:<8} topics: {} connected: {}s",
                    p.version,
                    p.remote_address,
                    p.user_agent,
                    total,
                    topics.join(","),
                    (crate::common::time::now_ns() / 1_000_000_000 - p.connect_ts).max(0)
                );
            }
            out.push('\n');
        }
    }
    out
}
