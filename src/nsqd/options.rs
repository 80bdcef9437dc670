//! The broker's configuration: every nsqd option with nsqd's name, meaning and default.
//!
//! Parsing (Go flag syntax in `goflags.rs`, flags and `--config` TOML in `cmd/serve.rs`) is
//! elsewhere; this file only owns the values and their defaults, so the engine never depends
//! on how they were spelled.

use std::time::Duration;

use crate::common::host::local_hostname;
use crate::protocol::identify::IdentifyLimits;
use crate::protocol::ParseLimits;

/// How strictly TLS is demanded of clients (`--tls-required`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsRequired {
    No,
    Yes,
    /// TCP must be TLS, plain HTTP is still allowed (`tcp-https`).
    TcpHttps,
}

/// Every nsqd flag (nsq-reference §1.1), plus nsqrs's own additions at the end.
#[derive(Debug, Clone)]
pub struct NsqdOptions {
    pub config: Option<String>,
    pub log_level: String,
    pub log_prefix: String,
    pub node_id: u16,
    pub tcp_address: String,
    pub http_address: String,
    pub https_address: String,
    pub auth_http_addresses: Vec<String>,
    pub auth_http_request_method: String,
    pub broadcast_address: String,
    pub broadcast_tcp_port: u16,
    pub broadcast_http_port: u16,
    pub lookupd_tcp_addresses: Vec<String>,
    pub http_client_connect_timeout: Duration,
    pub http_client_request_timeout: Duration,
    pub topology_region: String,
    pub topology_zone: String,
    pub data_path: String,
    pub mem_queue_size: i64,
    pub max_bytes_per_file: i64,
    pub sync_every: i64,
    pub sync_timeout: Duration,
    pub queue_scan_worker_pool_max: i64,
    pub queue_scan_selection_count: i64,
    pub msg_timeout: Duration,
    pub max_msg_timeout: Duration,
    pub max_msg_size: i64,
    pub max_req_timeout: Duration,
    pub max_body_size: i64,
    pub max_heartbeat_interval: Duration,
    pub max_rdy_count: i64,
    pub max_output_buffer_size: i64,
    pub max_output_buffer_timeout: Duration,
    pub min_output_buffer_timeout: Duration,
    pub output_buffer_timeout: Duration,
    pub max_channel_consumers: i64,
    pub statsd_address: String,
    pub statsd_interval: Duration,
    pub statsd_mem_stats: bool,
    pub statsd_prefix: String,
    pub statsd_udp_packet_size: i64,
    pub statsd_exclude_ephemeral: bool,
    pub e2e_processing_latency_percentiles: Vec<f64>,
    pub e2e_processing_latency_window_time: Duration,
    pub tls_cert: String,
    pub tls_key: String,
    pub tls_client_auth_policy: String,
    pub tls_root_ca_file: String,
    pub tls_required: TlsRequired,
    pub tls_min_version: String,
    pub deflate: bool,
    pub max_deflate_level: i64,
    pub snappy: bool,
    pub enable_experiment: Vec<String>,
    /// nsqrs: run a lookupd in-process and register with it when no lookupd is configured.
    pub embedded_lookupd: bool,
    pub embedded_lookupd_tcp_address: String,
    pub embedded_lookupd_http_address: String,
    /// nsqrs: serve the admin web UI in-process (reading this broker, or the embedded lookupd).
    pub embedded_admin: bool,
    pub embedded_admin_http_address: String,
    /// nsqrs: lifecycle events on `nsqrs.events`: `off`, `publish` or `all` (docs/events.md).
    pub lifecycle_events: String,
    /// nsqrs: only topics matching this regex report events (empty: all).
    pub lifecycle_events_topics: String,
    /// nsqrs: bearer token for the HTTP admin endpoints; empty leaves them open, as in nsqd.
    pub http_admin_token: String,
    /// nsqrs: peers' nsqd TCP addresses to replicate to (docs/replication.md).
    pub replicate_to: Vec<String>,
    /// nsqrs: peers that must hold a batch before `OK` (1 when peers are given and this is 0).
    pub replicas: i64,
    /// nsqrs: `strict` (refuse publishes with fewer than `replicas` peers) or `best-effort`.
    pub replica_policy: String,
    /// nsqrs: how long a publish waits for its peers' acknowledgements.
    pub replica_timeout: Duration,
    /// nsqrs: adopt a copy once its owner has been unreachable this long; zero: never.
    pub adopt_after: Duration,
}

impl Default for NsqdOptions {
    fn default() -> Self {
        NsqdOptions {
            config: None,
            log_level: "info".into(),
            log_prefix: "[nsqd] ".into(),
            node_id: default_node_id(),
            tcp_address: "0.0.0.0:4150".into(),
            http_address: "0.0.0.0:4151".into(),
            https_address: "0.0.0.0:4152".into(),
            auth_http_addresses: vec![],
            auth_http_request_method: "get".into(),
            broadcast_address: local_hostname(),
            broadcast_tcp_port: 0,
            broadcast_http_port: 0,
            lookupd_tcp_addresses: vec![],
            http_client_connect_timeout: Duration::from_secs(2),
            http_client_request_timeout: Duration::from_secs(5),
            topology_region: String::new(),
            topology_zone: String::new(),
            data_path: String::new(),
            mem_queue_size: 10000,
            max_bytes_per_file: 100 * 1024 * 1024,
            sync_every: 2500,
            sync_timeout: Duration::from_secs(2),
            queue_scan_worker_pool_max: 4,
            queue_scan_selection_count: 20,
            msg_timeout: Duration::from_secs(60),
            max_msg_timeout: Duration::from_secs(15 * 60),
            max_msg_size: 1024 * 1024,
            max_req_timeout: Duration::from_secs(3600),
            max_body_size: 5 * 1024 * 1024,
            max_heartbeat_interval: Duration::from_secs(60),
            max_rdy_count: 2500,
            max_output_buffer_size: 65536,
            max_output_buffer_timeout: Duration::from_secs(30),
            min_output_buffer_timeout: Duration::from_millis(25),
            output_buffer_timeout: Duration::from_millis(250),
            max_channel_consumers: 0,
            statsd_address: String::new(),
            statsd_interval: Duration::from_secs(60),
            statsd_mem_stats: true,
            statsd_prefix: "nsq.%s".into(),
            statsd_udp_packet_size: 508,
            statsd_exclude_ephemeral: false,
            e2e_processing_latency_percentiles: vec![],
            e2e_processing_latency_window_time: Duration::from_secs(600),
            tls_cert: String::new(),
            tls_key: String::new(),
            tls_client_auth_policy: String::new(),
            tls_root_ca_file: String::new(),
            tls_required: TlsRequired::No,
            tls_min_version: "tls1.0".into(),
            deflate: true,
            max_deflate_level: 6,
            snappy: true,
            enable_experiment: vec![],
            embedded_lookupd: true,
            embedded_lookupd_tcp_address: "0.0.0.0:4160".into(),
            embedded_lookupd_http_address: "0.0.0.0:4161".into(),
            embedded_admin: true,
            embedded_admin_http_address: "0.0.0.0:4171".into(),
            lifecycle_events: "all".into(),
            lifecycle_events_topics: String::new(),
            http_admin_token: String::new(),
            replicate_to: vec![],
            replicas: 0,
            replica_policy: "strict".into(),
            replica_timeout: Duration::from_secs(5),
            adopt_after: Duration::ZERO,
        }
    }
}

impl NsqdOptions {
    /// What IDENTIFY may ask of this server.
    pub fn identify_limits(&self) -> IdentifyLimits {
        IdentifyLimits {
            default_output_buffer_timeout: self.output_buffer_timeout,
            default_msg_timeout: self.msg_timeout,
            max_heartbeat_interval: self.max_heartbeat_interval,
            min_output_buffer_timeout: self.min_output_buffer_timeout,
            max_output_buffer_timeout: self.max_output_buffer_timeout,
            max_output_buffer_size: self.max_output_buffer_size,
            max_msg_timeout: self.max_msg_timeout,
        }
    }

    /// What the command parser enforces on this server.
    pub fn parse_limits(&self) -> ParseLimits {
        ParseLimits {
            max_msg_size: self.max_msg_size,
            max_body_size: self.max_body_size,
            max_req_timeout_ms: self.max_req_timeout.as_millis() as i64,
            max_rdy_count: self.max_rdy_count,
        }
    }
}

/// nsqd's default node id: `crc32(md5(hostname)) % 1024`.
pub fn default_node_id() -> u16 {
    use md5::{Digest, Md5};
    let digest = Md5::digest(local_hostname().as_bytes());
    (crc32fast::hash(&digest) % 1024) as u16
}
