//! Statistics as nsqd reports them on `/stats` (JSON shape of nsq-reference §1.10), built from
//! the engine's counters on demand.

use serde::Serialize;

/// End-to-end processing latency samples (publish → FIN). Percentile tracking is configured
/// with `--e2e-processing-latency-percentile`; until then only the count is kept.
#[derive(Debug, Default)]
pub struct E2eWindow {
    pub count: u64,
}

impl E2eWindow {
    pub fn record(&mut self, _latency_ns: i64) {
        self.count += 1;
    }
}

#[derive(Debug, Serialize)]
pub struct E2eStats {
    pub count: u64,
    pub percentiles: Option<Vec<serde_json::Value>>,
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
}

/// Resident set size of this process in bytes (from /proc), reported as heap in use.
pub fn process_rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1).and_then(|v| v.parse::<u64>().ok()))
        .map(|pages| pages * 4096)
        .unwrap_or(0)
}
