//! `nsqrs serve` (and `nsqd`): nsqd's command line and `--config` file, resolved into
//! `NsqdOptions`.
//!
//! Owns every nsqd flag under its exact name, the TOML config layer beneath the flags, nsqd's
//! startup validations, and the refusal of options whose feature nsqrs does not have yet.
//! Values mean exactly what they mean to nsqd v1.3.0 (nsq-reference §1.1).

use std::time::Duration;

use clap::parser::ValueSource;
use clap::{ArgAction, ArgMatches, Args, Command, FromArgMatches};
use nsqrs::common::config::{
    cfg_bool, cfg_duration, cfg_floats, cfg_int, cfg_scalar_text, cfg_string, cfg_strings, load_config_table,
};
use nsqrs::common::goflags::{parse_go_bool, parse_go_duration};
use nsqrs::common::log::parse_log_level;
use nsqrs::nsqd::options::{NsqdOptions, TlsRequired};

/// The nsqd release whose behaviour nsqrs reproduces; clients and tools parse this version.
pub const NSQD_VERSION: &str = "1.3.0";

/// What `nsqd --version` prints: nsqd's format, naming nsqrs where nsqd names its Go toolchain.
pub fn nsqd_version_string() -> String {
    format!(
        "nsqd v{NSQD_VERSION} (built w/nsqrs-{})",
        env!("CARGO_PKG_VERSION")
    )
}

// Every nsqd flag, under nsqd's long name. (Plain comments: a doc comment here would become
// the `nsqd --help` text.)
//
// Boolean flags take an optional `=value` (Go's bool flags do), so `--snappy` and
// `--snappy=false` both work. Defaults shown in `--help` are nsqd's; the values actually used
// for flags not given come from `NsqdOptions::default()` and the config file.
#[derive(Debug, Args)]
// Go lets any flag be repeated, the last one winning; nsqd command lines rely on it when a
// wrapper script appends overrides.
#[command(args_override_self = true)]
pub struct ServeArgs {
    /// Print version string and exit
    #[arg(long, action = ArgAction::Set, value_name = "BOOL", num_args = 0..=1,
          require_equals = true, default_missing_value = "true", default_value = "false",
          value_parser = parse_go_bool)]
    pub version: bool,

    /// Path to a TOML config file; keys are flag names with '-' as '_' [default: none]
    #[arg(long, value_name = "FILE")]
    pub config: Option<String>,

    /// Log verbosity: debug, info, warn, error, or fatal
    #[arg(long, value_name = "LEVEL", default_value = "info", value_parser = parse_log_level)]
    pub log_level: String,

    /// Log message prefix
    #[arg(long, value_name = "PREFIX", default_value = "[nsqd] ")]
    pub log_prefix: String,

    /// [deprecated] has no effect, use --log-level
    #[arg(long, action = ArgAction::Set, value_name = "BOOL", num_args = 0..=1,
          require_equals = true, default_missing_value = "true", default_value = "false",
          value_parser = parse_go_bool)]
    pub verbose: bool,

    /// Unique part for message IDs, (int) in range [0,1024) [default: hash of hostname]
    #[arg(long, value_name = "ID", allow_negative_numbers = true)]
    pub node_id: Option<i64>,

    /// [deprecated] use --node-id
    #[arg(long, action = ArgAction::Set, value_name = "BOOL", num_args = 0..=1,
          require_equals = true, default_missing_value = "true", default_value = "false",
          value_parser = parse_go_bool)]
    pub worker_id: bool,

    /// <addr>:<port> to listen on for TCP clients (port 0 picks a free one; nsqrs has no
    /// unix-socket listener)
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:4150")]
    pub tcp_address: String,

    /// <addr>:<port> to listen on for HTTP clients; empty disables HTTP
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:4151")]
    pub http_address: String,

    /// <addr>:<port> to listen on for HTTPS clients (opened only with --tls-cert/--tls-key)
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:4152")]
    pub https_address: String,

    /// <addr>:<port> or URL of an auth server (may be given multiple times) [default: none]
    #[arg(long, value_name = "ADDR", action = ArgAction::Append)]
    pub auth_http_address: Vec<String>,

    /// HTTP method for auth server requests: get or post
    #[arg(long, value_name = "METHOD", default_value = "get")]
    pub auth_http_request_method: String,

    /// Address registered with nsqlookupd [default: the OS hostname]
    #[arg(long, value_name = "ADDR")]
    pub broadcast_address: Option<String>,

    /// TCP port registered with nsqlookupd; 0 means the port actually listened on
    #[arg(long, value_name = "PORT", default_value = "0")]
    pub broadcast_tcp_port: i64,

    /// HTTP port registered with nsqlookupd; 0 means the port actually listened on
    #[arg(long, value_name = "PORT", default_value = "0")]
    pub broadcast_http_port: i64,

    /// nsqlookupd TCP address to register with (may be given multiple times) [default: none]
    #[arg(long, value_name = "ADDR", action = ArgAction::Append)]
    pub lookupd_tcp_address: Vec<String>,

    /// Timeout for outbound HTTP connects (nsqlookupd, auth server)
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = parse_go_duration)]
    pub http_client_connect_timeout: Duration,

    /// Timeout for outbound HTTP requests (nsqlookupd, auth server)
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_go_duration)]
    pub http_client_request_timeout: Duration,

    /// Region of this nsqd, told to lookupd and to clients in IDENTIFY (nsqrs itself does not
    /// prefer consumers of the same region) [default: none]
    #[arg(long, value_name = "REGION", default_value = "", hide_default_value = true)]
    pub topology_region: String,

    /// Zone of this nsqd, told to lookupd and to clients in IDENTIFY (nsqrs itself does not
    /// prefer consumers of the same zone) [default: none]
    #[arg(long, value_name = "ZONE", default_value = "", hide_default_value = true)]
    pub topology_zone: String,

    /// Directory for nsqd.dat and nsqrs's topic logs and channel journals (in nsqrs-data/)
    /// [default: current directory]
    #[arg(long, value_name = "DIR")]
    pub data_path: Option<String>,

    /// How far an #ephemeral channel may fall behind before its oldest messages are dropped,
    /// and the size of an #ephemeral topic (nsqrs writes every other message to disk, so a
    /// backlog never fills memory; 0 keeps one)
    #[arg(
        long,
        value_name = "N",
        default_value = "10000",
        allow_negative_numbers = true
    )]
    pub mem_queue_size: i64,

    /// Size of each topic log segment file; a segment is deleted once every channel has
    /// finished its messages
    #[arg(
        long,
        value_name = "BYTES",
        default_value = "104857600",
        allow_negative_numbers = true
    )]
    pub max_bytes_per_file: i64,

    /// fsync the logs after this many messages (1: before every OK, one fsync shared by the
    /// publishers waiting)
    #[arg(long, value_name = "N", default_value = "2500", allow_negative_numbers = true)]
    pub sync_every: i64,

    /// fsync the logs at least this often
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = parse_go_duration)]
    pub sync_timeout: Duration,

    /// Accepted for nsqd's sake, no effect: nsqrs checks every channel's timeouts every 20ms
    #[arg(long, value_name = "N", default_value = "4", allow_negative_numbers = true)]
    pub queue_scan_worker_pool_max: i64,

    /// Accepted for nsqd's sake, no effect: nsqrs checks every channel's timeouts every 20ms
    #[arg(long, value_name = "N", default_value = "20", allow_negative_numbers = true)]
    pub queue_scan_selection_count: i64,

    /// Time a delivered message may stay unanswered before it is delivered again (clients
    /// may ask for another up to --max-msg-timeout)
    #[arg(long, value_name = "DURATION", default_value = "1m0s", value_parser = parse_go_duration)]
    pub msg_timeout: Duration,

    /// Longest message timeout a client may ask for in IDENTIFY
    #[arg(long, value_name = "DURATION", default_value = "15m0s", value_parser = parse_go_duration)]
    pub max_msg_timeout: Duration,

    /// Largest message body accepted; larger ones are refused with E_BAD_MESSAGE
    #[arg(
        long,
        value_name = "BYTES",
        default_value = "1048576",
        allow_negative_numbers = true
    )]
    pub max_msg_size: i64,

    /// Longest delay a REQ or a DPUB may ask for
    #[arg(long, value_name = "DURATION", default_value = "1h0m0s", value_parser = parse_go_duration)]
    pub max_req_timeout: Duration,

    /// Largest command body accepted (an MPUB's, say); larger ones are refused
    #[arg(
        long,
        value_name = "BYTES",
        default_value = "5242880",
        allow_negative_numbers = true
    )]
    pub max_body_size: i64,

    /// Longest heartbeat interval a client may ask for in IDENTIFY
    #[arg(long, value_name = "DURATION", default_value = "1m0s", value_parser = parse_go_duration)]
    pub max_heartbeat_interval: Duration,

    /// Largest RDY a client may send
    #[arg(long, value_name = "N", default_value = "2500", allow_negative_numbers = true)]
    pub max_rdy_count: i64,

    /// Largest output buffer a client may ask for in IDENTIFY
    #[arg(
        long,
        value_name = "BYTES",
        default_value = "65536",
        allow_negative_numbers = true
    )]
    pub max_output_buffer_size: i64,

    /// Longest output buffer timeout a client may ask for in IDENTIFY
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_go_duration)]
    pub max_output_buffer_timeout: Duration,

    /// Shortest output buffer timeout a client may ask for in IDENTIFY
    #[arg(long, value_name = "DURATION", default_value = "25ms", value_parser = parse_go_duration)]
    pub min_output_buffer_timeout: Duration,

    /// How long messages for a client may wait to be written together, unless it asks
    /// otherwise in IDENTIFY
    #[arg(long, value_name = "DURATION", default_value = "250ms", value_parser = parse_go_duration)]
    pub output_buffer_timeout: Duration,

    /// Most consumers one channel may have (more are refused at SUB); 0 means unlimited
    #[arg(long, value_name = "N", default_value = "0", allow_negative_numbers = true)]
    pub max_channel_consumers: i64,

    /// UDP <addr>:<port> of a statsd daemon for pushing stats [default: none]
    #[arg(long, value_name = "ADDR")]
    pub statsd_address: Option<String>,

    /// Duration between pushing to statsd
    #[arg(long, value_name = "DURATION", default_value = "1m0s", value_parser = parse_go_duration)]
    pub statsd_interval: Duration,

    /// Also send mem.* keys to statsd (the process's resident memory; nsqd's Go heap and GC
    /// keys are sent as 0)
    #[arg(long, action = ArgAction::Set, value_name = "BOOL", num_args = 0..=1,
          require_equals = true, default_missing_value = "true", default_value = "true",
          value_parser = parse_go_bool)]
    pub statsd_mem_stats: bool,

    /// Prefix used for keys sent to statsd (%s for host replacement)
    #[arg(long, value_name = "PREFIX", default_value = "nsq.%s")]
    pub statsd_prefix: String,

    /// The size in bytes of statsd UDP packets
    #[arg(
        long,
        value_name = "BYTES",
        default_value = "508",
        allow_negative_numbers = true
    )]
    pub statsd_udp_packet_size: i64,

    /// Skip ephemeral topics and channels when sending stats to statsd
    #[arg(long, action = ArgAction::Set, value_name = "BOOL", num_args = 0..=1,
          require_equals = true, default_missing_value = "true", default_value = "false",
          value_parser = parse_go_bool)]
    pub statsd_exclude_ephemeral: bool,

    /// Message processing time percentiles (as float (0, 1.0]) to track (may be given multiple
    /// times or comma separated '1.0,0.99,0.95') [default: none]
    #[arg(long, value_name = "FLOAT", action = ArgAction::Append, value_delimiter = ',')]
    pub e2e_processing_latency_percentile: Vec<f64>,

    /// Calculate end to end latency quantiles for this duration of time
    #[arg(long, value_name = "DURATION", default_value = "10m0s", value_parser = parse_go_duration)]
    pub e2e_processing_latency_window_time: Duration,

    /// Path to certificate file [default: none]
    #[arg(long, value_name = "FILE")]
    pub tls_cert: Option<String>,

    /// Path to key file [default: none]
    #[arg(long, value_name = "FILE")]
    pub tls_key: Option<String>,

    /// Client certificate auth policy ('require' or 'require-verify'); forces --tls-required
    /// [default: none]
    #[arg(long, value_name = "POLICY")]
    pub tls_client_auth_policy: Option<String>,

    /// Path to certificate authority file [default: none]
    #[arg(long, value_name = "FILE")]
    pub tls_root_ca_file: Option<String>,

    /// Require TLS for client connections (true, false, tcp-https)
    #[arg(long, value_name = "MODE", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", default_value = "false",
          value_parser = parse_tls_required)]
    pub tls_required: TlsRequired,

    /// Oldest TLS version accepted: tls1.2 or tls1.3 (tls1.0 and tls1.1 are accepted and mean
    /// tls1.2, the oldest rustls speaks)
    #[arg(long, value_name = "VERSION", default_value = "tls1.0",
          value_parser = parse_tls_min_version)]
    pub tls_min_version: String,

    /// Enable deflate feature negotiation (client compression)
    #[arg(long, action = ArgAction::Set, value_name = "BOOL", num_args = 0..=1,
          require_equals = true, default_missing_value = "true", default_value = "true",
          value_parser = parse_go_bool)]
    pub deflate: bool,

    /// Max deflate compression level a client can negotiate (> values == > nsqd CPU usage)
    #[arg(
        long,
        value_name = "LEVEL",
        default_value = "6",
        allow_negative_numbers = true
    )]
    pub max_deflate_level: i64,

    /// nsqrs: also run a lookupd in this process and register with it, when no
    /// --lookupd-tcp-address is given (never in the `nsqd` role)
    #[arg(long, action = ArgAction::Set, value_name = "BOOL", num_args = 0..=1,
          require_equals = true, default_missing_value = "true", default_value = "true",
          value_parser = parse_go_bool)]
    pub embedded_lookupd: bool,

    /// nsqrs: <addr>:<port> of the embedded lookupd's TCP listener
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:4160")]
    pub embedded_lookupd_tcp_address: String,

    /// nsqrs: <addr>:<port> of the embedded lookupd's HTTP listener
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:4161")]
    pub embedded_lookupd_http_address: String,

    /// nsqrs: also serve the admin web UI (nsqadmin) in this process (never in the `nsqd`
    /// role)
    #[arg(long, action = ArgAction::Set, value_name = "BOOL", num_args = 0..=1,
          require_equals = true, default_missing_value = "true", default_value = "true",
          value_parser = parse_go_bool)]
    pub embedded_admin: bool,

    /// nsqrs: <addr>:<port> of the embedded admin web UI
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:4171")]
    pub embedded_admin_http_address: String,

    /// nsqrs: report what happens to messages as JSON lines on topic nsqrs.events (kept only
    /// while that topic has a channel; docs/events.md): all (publishes, deliveries, requeues,
    /// timeouts, finishes, ...), publish (publishes only), or off
    #[arg(long, value_name = "MODE", default_value = "all")]
    pub lifecycle_events: String,

    /// nsqrs: only topics matching this regex report lifecycle events [default: all]
    #[arg(long, value_name = "REGEX", default_value = "", hide_default_value = true)]
    pub lifecycle_events_topics: String,

    /// Enable snappy feature negotiation (client compression)
    #[arg(long, action = ArgAction::Set, value_name = "BOOL", num_args = 0..=1,
          require_equals = true, default_missing_value = "true", default_value = "true",
          value_parser = parse_go_bool)]
    pub snappy: bool,

    /// Accepted for nsqd's sake (topology-aware-consumption), no effect in nsqrs; may be given
    /// multiple times [default: none]
    #[arg(long, value_name = "NAME", action = ArgAction::Append)]
    pub enable_experiment: Vec<String>,

    /// nsqrs: bearer token required by the HTTP admin endpoints (/topic/*, /channel/*,
    /// /config/*, /deferred*) as `Authorization: Bearer <token>`; /pub, /mpub, /stats, /ping,
    /// /info, /message and /metrics stay open [default: none, everything open as in nsqd]
    #[arg(long, value_name = "TOKEN")]
    pub http_admin_token: Option<String>,

    /// nsqrs: a peer's nsqd TCP address to replicate every publish to (may be given multiple
    /// times); see docs/replication.md [default: none]
    #[arg(long, value_name = "HOST:PORT", action = ArgAction::Append)]
    pub replicate_to: Vec<String>,

    /// nsqrs: peers that must hold a batch before OK is answered (1..=number of peers)
    /// [default: 1 with --replicate-to, else 0]
    #[arg(long, value_name = "K", allow_negative_numbers = true)]
    pub replicas: Option<i64>,

    /// nsqrs: with fewer than --replicas peers reachable, refuse publishes (strict) or accept
    /// them unreplicated (best-effort)
    #[arg(long, value_name = "POLICY", default_value = "strict")]
    pub replica_policy: String,

    /// nsqrs: how long a publish waits for its peers' acknowledgements
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_go_duration)]
    pub replica_timeout: Duration,

    /// nsqrs: adopt a peer's copy once the peer has been unreachable this long; 0 = never
    /// (adopt explicitly with `nsqrs adopt`)
    #[arg(long, value_name = "DURATION", default_value = "0s", value_parser = parse_go_duration)]
    pub adopt_after: Duration,

    /// Arguments after the flags. Go's flag parsing stops at the first non-flag and nsqd then
    /// ignores the rest, so command lines with leftovers must still start.
    #[arg(hide = true, num_args = 0.., trailing_var_arg = true)]
    pub trailing: Vec<String>,
}

/// The clap command that parses a command line given to a binary invoked as `nsqd`.
pub fn nsqd_command() -> Command {
    let cmd = Command::new("nsqd")
        .about("nsqd-compatible message broker (nsqrs)")
        .disable_version_flag(true);
    ServeArgs::augment_args(cmd)
}

/// Long names of the flags Go parses as booleans, for `normalize_go_args`.
///
/// Derived from `ServeArgs` (a flag whose value is optional is a Go bool flag) so a new
/// boolean flag cannot be forgotten here.
#[cfg(test)]
pub fn go_bool_flags() -> Vec<String> {
    nsqrs::common::goflags::bool_flags(&ServeArgs::augment_args(Command::new("serve")))
}

/// Rewrites Go-style flags (the arguments after the program name or after `serve`) for clap.
pub fn normalize_serve_args(args: &[String]) -> Vec<String> {
    nsqrs::common::goflags::normalize_for(&ServeArgs::augment_args(Command::new("serve")), args)
}

/// Parses the arguments of a binary invoked as `nsqd` (without the program name), Go syntax
/// included, returning the flags and the matches `ServeArgs::into_options` needs.
pub fn parse_as_nsqd(args: &[String]) -> Result<(ServeArgs, ArgMatches), clap::Error> {
    let mut cmd = nsqd_command();
    let argv = std::iter::once("nsqd".to_string()).chain(normalize_serve_args(args));
    let matches = cmd.try_get_matches_from_mut(argv)?;
    let args = ServeArgs::from_arg_matches(&matches).map_err(|e| e.format(&mut cmd))?;
    Ok((args, matches))
}

/// Integer options whose Go type is wider than the field in `NsqdOptions`: they are range
/// checked only once config and flags are both applied, as nsqd does.
struct WideInts {
    node_id: i64,
    broadcast_tcp_port: i64,
    broadcast_http_port: i64,
}

impl ServeArgs {
    /// Resolves defaults, then the `--config` file, then flags given on the command line (the
    /// layers nsqd uses, highest last) and applies nsqd's startup validations. `matches` must
    /// be the matches `self` was built from.
    pub fn into_options(self, matches: &ArgMatches) -> Result<NsqdOptions, String> {
        // In release builds clap answers `None` for an id it does not know, which would make
        // every flag look "not given"; fail loudly rather than silently ignore the command line.
        if matches.try_contains_id("tcp_address").is_err() {
            return Err("internal error: argument matches do not belong to `serve`".into());
        }
        let given = |id: &str| matches.value_source(id) == Some(ValueSource::CommandLine);
        self.resolve(&given)
    }

    /// Flags, config file and validations; `given` tells whether a flag (by clap id) was typed
    /// on the command line.
    fn resolve(self, given: &dyn Fn(&str) -> bool) -> Result<NsqdOptions, String> {
        // Destructured so that adding a flag without deciding how it resolves fails to compile.
        let ServeArgs {
            version: _,
            config,
            log_level,
            log_prefix,
            verbose: _,
            node_id,
            worker_id: _,
            tcp_address,
            http_address,
            https_address,
            auth_http_address,
            auth_http_request_method,
            broadcast_address,
            broadcast_tcp_port,
            broadcast_http_port,
            lookupd_tcp_address,
            http_client_connect_timeout,
            http_client_request_timeout,
            topology_region,
            topology_zone,
            data_path,
            mem_queue_size,
            max_bytes_per_file,
            sync_every,
            sync_timeout,
            queue_scan_worker_pool_max,
            queue_scan_selection_count,
            msg_timeout,
            max_msg_timeout,
            max_msg_size,
            max_req_timeout,
            max_body_size,
            max_heartbeat_interval,
            max_rdy_count,
            max_output_buffer_size,
            max_output_buffer_timeout,
            min_output_buffer_timeout,
            output_buffer_timeout,
            max_channel_consumers,
            statsd_address,
            statsd_interval,
            statsd_mem_stats,
            statsd_prefix,
            statsd_udp_packet_size,
            statsd_exclude_ephemeral,
            e2e_processing_latency_percentile,
            e2e_processing_latency_window_time,
            tls_cert,
            tls_key,
            tls_client_auth_policy,
            tls_root_ca_file,
            tls_required,
            tls_min_version,
            deflate,
            max_deflate_level,
            snappy,
            embedded_lookupd,
            embedded_lookupd_tcp_address,
            embedded_lookupd_http_address,
            embedded_admin,
            embedded_admin_http_address,
            lifecycle_events,
            lifecycle_events_topics,
            enable_experiment,
            http_admin_token,
            replicate_to,
            replicas,
            replica_policy,
            replica_timeout,
            adopt_after,
            trailing: _,
        } = self;

        let mut o = NsqdOptions::default();
        let mut wide = WideInts {
            node_id: i64::from(o.node_id),
            broadcast_tcp_port: i64::from(o.broadcast_tcp_port),
            broadcast_http_port: i64::from(o.broadcast_http_port),
        };

        if let Some(path) = config {
            apply_config_file(&mut o, &mut wide, &path)?;
            o.config = Some(path);
        }

        // Flags typed on the command line win over the config file, even when the typed value
        // equals the default.
        macro_rules! from_flag {
            ($($arg:ident => $dst:expr),* $(,)?) => {
                $( if given(stringify!($arg)) { $dst = $arg; } )*
            };
        }
        from_flag! {
            log_level => o.log_level,
            log_prefix => o.log_prefix,
            tcp_address => o.tcp_address,
            http_address => o.http_address,
            https_address => o.https_address,
            auth_http_address => o.auth_http_addresses,
            auth_http_request_method => o.auth_http_request_method,
            broadcast_tcp_port => wide.broadcast_tcp_port,
            broadcast_http_port => wide.broadcast_http_port,
            lookupd_tcp_address => o.lookupd_tcp_addresses,
            http_client_connect_timeout => o.http_client_connect_timeout,
            http_client_request_timeout => o.http_client_request_timeout,
            topology_region => o.topology_region,
            topology_zone => o.topology_zone,
            mem_queue_size => o.mem_queue_size,
            max_bytes_per_file => o.max_bytes_per_file,
            sync_every => o.sync_every,
            sync_timeout => o.sync_timeout,
            queue_scan_worker_pool_max => o.queue_scan_worker_pool_max,
            queue_scan_selection_count => o.queue_scan_selection_count,
            msg_timeout => o.msg_timeout,
            max_msg_timeout => o.max_msg_timeout,
            max_msg_size => o.max_msg_size,
            max_req_timeout => o.max_req_timeout,
            max_body_size => o.max_body_size,
            max_heartbeat_interval => o.max_heartbeat_interval,
            max_rdy_count => o.max_rdy_count,
            max_output_buffer_size => o.max_output_buffer_size,
            max_output_buffer_timeout => o.max_output_buffer_timeout,
            min_output_buffer_timeout => o.min_output_buffer_timeout,
            output_buffer_timeout => o.output_buffer_timeout,
            max_channel_consumers => o.max_channel_consumers,
            statsd_interval => o.statsd_interval,
            statsd_mem_stats => o.statsd_mem_stats,
            statsd_prefix => o.statsd_prefix,
            statsd_udp_packet_size => o.statsd_udp_packet_size,
            statsd_exclude_ephemeral => o.statsd_exclude_ephemeral,
            e2e_processing_latency_window_time => o.e2e_processing_latency_window_time,
            tls_required => o.tls_required,
            deflate => o.deflate,
            max_deflate_level => o.max_deflate_level,
            snappy => o.snappy,
            embedded_lookupd => o.embedded_lookupd,
            embedded_lookupd_tcp_address => o.embedded_lookupd_tcp_address,
            embedded_lookupd_http_address => o.embedded_lookupd_http_address,
            embedded_admin => o.embedded_admin,
            embedded_admin_http_address => o.embedded_admin_http_address,
            lifecycle_events => o.lifecycle_events,
            lifecycle_events_topics => o.lifecycle_events_topics,
            enable_experiment => o.enable_experiment,
            replicate_to => o.replicate_to,
            replica_policy => o.replica_policy,
            replica_timeout => o.replica_timeout,
            adopt_after => o.adopt_after,
        }
        // Flags without a clap default: present only when typed.
        macro_rules! from_optional_flag {
            ($($arg:ident => $dst:expr),* $(,)?) => {
                $( if let Some(v) = $arg { $dst = v; } )*
            };
        }
        from_optional_flag! {
            node_id => wide.node_id,
            broadcast_address => o.broadcast_address,
            data_path => o.data_path,
            statsd_address => o.statsd_address,
            tls_cert => o.tls_cert,
            tls_key => o.tls_key,
            tls_client_auth_policy => o.tls_client_auth_policy,
            tls_root_ca_file => o.tls_root_ca_file,
            http_admin_token => o.http_admin_token,
            replicas => o.replicas,
        }
        if given("e2e_processing_latency_percentile") {
            let mut p = e2e_processing_latency_percentile;
            // nsqd's flag type keeps its values sorted high to low (values from the config
            // file keep their order); /stats lists quantiles in this order.
            p.sort_by(|a, b| b.total_cmp(a));
            o.e2e_processing_latency_percentiles = p;
        }
        // nsqd ignores an empty --tls-min-version and keeps its default.
        if given("tls_min_version") && !tls_min_version.is_empty() {
            o.tls_min_version = tls_min_version;
        }

        validate(&mut o, &wide)?;
        Ok(o)
    }
}

/// nsqd's startup validations, in the order nsqd's `New` applies them, with nsqd's messages.
fn validate(o: &mut NsqdOptions, wide: &WideInts) -> Result<(), String> {
    nsqrs::nsqd::broker::events::EventMode::parse(&o.lifecycle_events)?;
    if !o.lifecycle_events_topics.is_empty() {
        regex::Regex::new(&o.lifecycle_events_topics)
            .map_err(|e| format!("--lifecycle-events-topics is not a valid regex - {e}"))?;
    }
    if !(1..=9).contains(&o.max_deflate_level) {
        return Err("--max-deflate-level must be [1,9]".into());
    }
    if !(0..1024).contains(&wide.node_id) {
        return Err("--node-id must be [0,1024)".into());
    }
    o.node_id = wide.node_id as u16;
    o.broadcast_tcp_port = port(wide.broadcast_tcp_port, "--broadcast-tcp-port")?;
    o.broadcast_http_port = port(wide.broadcast_http_port, "--broadcast-http-port")?;

    if !o.tls_client_auth_policy.is_empty() && o.tls_required == TlsRequired::No {
        o.tls_required = TlsRequired::Yes;
    }
    if o.tls_cert.is_empty() != o.tls_key.is_empty() {
        // nsqd fails here too, when loading a key pair with one half missing.
        return Err("--tls-cert and --tls-key must be given together".into());
    }
    if o.tls_required != TlsRequired::No && o.tls_cert.is_empty() {
        return Err("cannot require TLS client connections without TLS key and cert".into());
    }
    if o.auth_http_request_method != "post" && o.auth_http_request_method != "get" {
        return Err("--auth-http-request-method must be post or get".into());
    }
    nsqrs::replication::Policy::parse(&o.replica_policy)?;
    if o.replicate_to.iter().any(|a| a.trim().is_empty()) {
        return Err("--replicate-to must be HOST:PORT".into());
    }
    if o.replicate_to.is_empty() {
        if o.replicas > 0 {
            return Err("--replicas needs --replicate-to peers".into());
        }
    } else {
        if o.replicas == 0 {
            o.replicas = 1;
        }
        if o.replicas < 1 || o.replicas as usize > o.replicate_to.len() {
            return Err(format!(
                "--replicas must be [1,{}] (the number of --replicate-to peers)",
                o.replicate_to.len()
            ));
        }
    }
    for &p in &o.e2e_processing_latency_percentiles {
        // Written so NaN fails too.
        if !(p > 0.0 && p <= 1.0) {
            return Err(format!("invalid E2E processing latency percentile: {p}"));
        }
    }
    Ok(())
}

fn port(value: i64, flag: &str) -> Result<u16, String> {
    u16::try_from(value).map_err(|_| format!("{flag} must be [0,65535]"))
}

/// Parses `--tls-required` as nsqd does: `tcp-https`, or any Go boolean (case-insensitive).
pub fn parse_tls_required(s: &str) -> Result<TlsRequired, String> {
    let lower = s.to_ascii_lowercase();
    if lower == "tcp-https" {
        return Ok(TlsRequired::TcpHttps);
    }
    match parse_go_bool(&lower) {
        Ok(true) => Ok(TlsRequired::Yes),
        Ok(false) => Ok(TlsRequired::No),
        Err(_) => Err(format!(
            "invalid tls-required {s:?} (use true, false or tcp-https)"
        )),
    }
}

/// Parses `--tls-min-version`, keeping it lower-case. Empty means "keep the default", as in
/// nsqd.
pub fn parse_tls_min_version(s: &str) -> Result<String, String> {
    let lower = s.to_ascii_lowercase();
    match lower.as_str() {
        "" | "tls1.0" | "tls1.1" | "tls1.2" | "tls1.3" => Ok(lower),
        "ssl3.0" => Err("tls-min-version ssl3.0 is not supported (use tls1.0 or later)".into()),
        _ => Err(format!(
            "unknown tls-min-version {s:?} (use tls1.0, tls1.1, tls1.2 or tls1.3)"
        )),
    }
}

/// Config keys nsqd spells differently from its flags, as (clap id of the flag, config key).
const RENAMED_CONFIG_KEYS: &[(&str, &str)] = &[
    ("node_id", "id"),
    ("lookupd_tcp_address", "nsqlookupd_tcp_addresses"),
    ("auth_http_address", "auth_http_addresses"),
    (
        "e2e_processing_latency_percentile",
        "e2e_processing_latency_percentiles",
    ),
];

fn apply_config_file(o: &mut NsqdOptions, wide: &mut WideInts, path: &str) -> Result<(), String> {
    let table = load_config_table(path)?;
    for (key, value) in &table {
        apply_config_key(o, wide, key, value).map_err(|e| format!("config file {path}: key {key:?}: {e}"))?;
    }
    Ok(())
}

fn apply_config_key(
    o: &mut NsqdOptions,
    wide: &mut WideInts,
    key: &str,
    v: &toml::Value,
) -> Result<(), String> {
    match key {
        "id" => wide.node_id = cfg_int(v)?,
        "log_level" => o.log_level = parse_log_level(&cfg_scalar_text(v)?)?,
        "log_prefix" => o.log_prefix = cfg_string(v)?,
        // nsqd's own sample config still sets `verbose`; both are accepted and do nothing.
        "verbose" | "worker_id" => {
            cfg_bool(v)?;
        }
        "tcp_address" => o.tcp_address = cfg_string(v)?,
        "http_address" => o.http_address = cfg_string(v)?,
        "https_address" => o.https_address = cfg_string(v)?,
        "auth_http_addresses" => o.auth_http_addresses = cfg_strings(v)?,
        "auth_http_request_method" => o.auth_http_request_method = cfg_string(v)?,
        "broadcast_address" => o.broadcast_address = cfg_string(v)?,
        "broadcast_tcp_port" => wide.broadcast_tcp_port = cfg_int(v)?,
        "broadcast_http_port" => wide.broadcast_http_port = cfg_int(v)?,
        "nsqlookupd_tcp_addresses" => o.lookupd_tcp_addresses = cfg_strings(v)?,
        "http_client_connect_timeout" => o.http_client_connect_timeout = cfg_duration(v)?,
        "http_client_request_timeout" => o.http_client_request_timeout = cfg_duration(v)?,
        "topology_region" => o.topology_region = cfg_string(v)?,
        "topology_zone" => o.topology_zone = cfg_string(v)?,
        "data_path" => o.data_path = cfg_string(v)?,
        "mem_queue_size" => o.mem_queue_size = cfg_int(v)?,
        "max_bytes_per_file" => o.max_bytes_per_file = cfg_int(v)?,
        "sync_every" => o.sync_every = cfg_int(v)?,
        "sync_timeout" => o.sync_timeout = cfg_duration(v)?,
        "queue_scan_worker_pool_max" => o.queue_scan_worker_pool_max = cfg_int(v)?,
        "queue_scan_selection_count" => o.queue_scan_selection_count = cfg_int(v)?,
        "msg_timeout" => o.msg_timeout = cfg_duration(v)?,
        "max_msg_timeout" => o.max_msg_timeout = cfg_duration(v)?,
        "max_msg_size" => o.max_msg_size = cfg_int(v)?,
        "max_req_timeout" => o.max_req_timeout = cfg_duration(v)?,
        "max_body_size" => o.max_body_size = cfg_int(v)?,
        "max_heartbeat_interval" => o.max_heartbeat_interval = cfg_duration(v)?,
        "max_rdy_count" => o.max_rdy_count = cfg_int(v)?,
        "max_output_buffer_size" => o.max_output_buffer_size = cfg_int(v)?,
        "max_output_buffer_timeout" => o.max_output_buffer_timeout = cfg_duration(v)?,
        "min_output_buffer_timeout" => o.min_output_buffer_timeout = cfg_duration(v)?,
        "output_buffer_timeout" => o.output_buffer_timeout = cfg_duration(v)?,
        "max_channel_consumers" => o.max_channel_consumers = cfg_int(v)?,
        "statsd_address" => o.statsd_address = cfg_string(v)?,
        "statsd_interval" => o.statsd_interval = cfg_duration(v)?,
        "statsd_mem_stats" => o.statsd_mem_stats = cfg_bool(v)?,
        "statsd_prefix" => o.statsd_prefix = cfg_string(v)?,
        "statsd_udp_packet_size" => o.statsd_udp_packet_size = cfg_int(v)?,
        "statsd_exclude_ephemeral" => o.statsd_exclude_ephemeral = cfg_bool(v)?,
        "e2e_processing_latency_percentiles" => o.e2e_processing_latency_percentiles = cfg_floats(v)?,
        "e2e_processing_latency_window_time" => o.e2e_processing_latency_window_time = cfg_duration(v)?,
        "tls_cert" => o.tls_cert = cfg_string(v)?,
        "tls_key" => o.tls_key = cfg_string(v)?,
        "tls_client_auth_policy" => o.tls_client_auth_policy = cfg_string(v)?,
        "tls_root_ca_file" => o.tls_root_ca_file = cfg_string(v)?,
        "tls_required" => o.tls_required = parse_tls_required(&cfg_scalar_text(v)?)?,
        "tls_min_version" => {
            let version = parse_tls_min_version(&cfg_scalar_text(v)?)?;
            if !version.is_empty() {
                o.tls_min_version = version;
            }
        }
        "deflate" => o.deflate = cfg_bool(v)?,
        "max_deflate_level" => o.max_deflate_level = cfg_int(v)?,
        "snappy" => o.snappy = cfg_bool(v)?,
        "embedded_lookupd" => o.embedded_lookupd = cfg_bool(v)?,
        "embedded_lookupd_tcp_address" => o.embedded_lookupd_tcp_address = cfg_string(v)?,
        "embedded_lookupd_http_address" => o.embedded_lookupd_http_address = cfg_string(v)?,
        "embedded_admin" => o.embedded_admin = cfg_bool(v)?,
        "embedded_admin_http_address" => o.embedded_admin_http_address = cfg_string(v)?,
        "lifecycle_events" => o.lifecycle_events = cfg_string(v)?,
        "lifecycle_events_topics" => o.lifecycle_events_topics = cfg_string(v)?,
        "enable_experiment" => o.enable_experiment = cfg_strings(v)?,
        "http_admin_token" => o.http_admin_token = cfg_string(v)?,
        "replicate_to" => o.replicate_to = cfg_strings(v)?,
        "replicas" => o.replicas = cfg_int(v)?,
        "replica_policy" => o.replica_policy = cfg_string(v)?,
        "replica_timeout" => o.replica_timeout = cfg_duration(v)?,
        "adopt_after" => o.adopt_after = cfg_duration(v)?,
        _ => {
            let hint = RENAMED_CONFIG_KEYS
                .iter()
                .find(|(flag_id, _)| *flag_id == key)
                .map(|(_, cfg_key)| format!(" (nsqd's config key is {cfg_key:?})"))
                .unwrap_or_default();
            return Err(format!("unknown config key{hint}"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| s.to_string()).collect()
    }

    /// The full nsqd pipeline: Go syntax, clap, config, validations.
    fn nsqd(args: &[&str]) -> Result<NsqdOptions, String> {
        let (serve, matches) = parse_as_nsqd(&strings(args)).map_err(|e| e.to_string())?;
        serve.into_options(&matches)
    }

    fn err(args: &[&str]) -> String {
        match nsqd(args) {
            Ok(_) => panic!("{args:?} should fail"),
            Err(e) => e,
        }
    }

    fn config_file(contents: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(contents.as_bytes()).unwrap();
        f
    }

    fn with_config(contents: &str, args: &[&str]) -> Result<NsqdOptions, String> {
        let f = config_file(contents);
        let path = f.path().to_str().unwrap().to_string();
        let mut all = vec!["--config", path.as_str()];
        all.extend_from_slice(args);
        nsqd(&all)
    }

    fn config_only(contents: &str) -> Result<NsqdOptions, String> {
        with_config(contents, &[])
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn clap_command_is_well_formed() {
        nsqd_command().debug_assert();
    }

    #[test]
    fn no_arguments_give_nsqd_defaults() {
        let got = nsqd(&[]).unwrap();
        assert_eq!(format!("{got:?}"), format!("{:?}", NsqdOptions::default()));
    }

    #[test]
    fn help_defaults_are_the_defaults_of_options_rs() {
        // Treat every clap default as if typed: the result must still be NsqdOptions::default().
        let (serve, _) = parse_as_nsqd(&[]).unwrap();
        let got = serve.resolve(&|_| true).unwrap();
        assert_eq!(format!("{got:?}"), format!("{:?}", NsqdOptions::default()));
    }

    #[test]
    fn go_bool_flags_are_exactly_nsqds_bool_flags() {
        let mut got = go_bool_flags();
        got.sort();
        let mut want = strings(&[
            "version",
            "verbose",
            "worker-id",
            "statsd-mem-stats",
            "statsd-exclude-ephemeral",
            "tls-required",
            "deflate",
            "snappy",
            // nsqrs's own: whether `serve` runs a lookupd and an admin in-process.
            "embedded-lookupd",
            "embedded-admin",
        ]);
        want.sort();
        assert_eq!(got, want);
    }

    #[test]
    fn every_value_syntax_form() {
        for form in [
            &[
                "-tcp-address",
                "127.0.0.1:7",
                "-msg-timeout",
                "5s",
                "-max-rdy-count",
                "7",
            ][..],
            &["-tcp-address=127.0.0.1:7", "-msg-timeout=5s", "-max-rdy-count=7"],
            &[
                "--tcp-address",
                "127.0.0.1:7",
                "--msg-timeout",
                "5s",
                "--max-rdy-count",
                "7",
            ],
            &[
                "--tcp-address=127.0.0.1:7",
                "--msg-timeout=5s",
                "--max-rdy-count=7",
            ],
        ] {
            let o = nsqd(form).unwrap();
            assert_eq!(o.tcp_address, "127.0.0.1:7", "{form:?}");
            assert_eq!(o.msg_timeout, secs(5), "{form:?}");
            assert_eq!(o.max_rdy_count, 7, "{form:?}");
        }
    }

    #[test]
    fn every_boolean_syntax_form() {
        let o = nsqd(&["--snappy=false", "-deflate=0", "--statsd-exclude-ephemeral"]).unwrap();
        assert!(!o.snappy && !o.deflate && o.statsd_exclude_ephemeral);
        let o = nsqd(&["-snappy=f", "--deflate=FALSE", "-statsd-mem-stats=False"]).unwrap();
        assert!(!o.snappy && !o.deflate && !o.statsd_mem_stats);
        let o = nsqd(&["--snappy", "-deflate", "--statsd-mem-stats=1"]).unwrap();
        assert!(o.snappy && o.deflate && o.statsd_mem_stats);
        // Deprecated flags are accepted in every form and change nothing.
        let o = nsqd(&["--verbose", "-worker-id", "--verbose=false"]).unwrap();
        assert_eq!(format!("{o:?}"), format!("{:?}", NsqdOptions::default()));
    }

    #[test]
    fn replication_flags_and_config_keys() {
        let o = nsqd(&["--replicate-to=b:4150", "--replicate-to", "c:4150"]).unwrap();
        assert_eq!(o.replicate_to, ["b:4150", "c:4150"]);
        assert_eq!(o.replicas, 1, "one replica by default when peers are given");
        assert_eq!(
            (o.replica_policy.as_str(), o.replica_timeout),
            ("strict", secs(5))
        );
        assert_eq!(o.adopt_after, Duration::ZERO);
        let o = nsqd(&[
            "--replicate-to=b:4150",
            "--replicate-to=c:4150",
            "--replicas=2",
            "--replica-policy=best-effort",
            "--replica-timeout=250ms",
            "--adopt-after=30s",
        ])
        .unwrap();
        assert_eq!(o.replicas, 2);
        assert_eq!(o.replica_policy, "best-effort");
        assert_eq!(o.replica_timeout, Duration::from_millis(250));
        assert_eq!(o.adopt_after, secs(30));
        assert_eq!(nsqd(&[]).unwrap().replicas, 0, "no peers, no replicas");
        assert!(err(&["--replicate-to=b:4150", "--replicas=2"]).contains("--replicas must be [1,1]"));
        assert!(err(&["--replicas=1"]).contains("--replicas needs --replicate-to"));
        assert!(err(&["--replicate-to=b:4150", "--replica-policy=maybe"]).contains("strict or best-effort"));
        let o = config_only(
            "replicate_to = [\"b:4150\", \"c:4150\"]\nreplicas = 2\nreplica_policy = \"best-effort\"\nreplica_timeout = \"1s\"\nadopt_after = \"10s\"\n",
        )
        .unwrap();
        assert_eq!((o.replicate_to.len(), o.replicas), (2, 2));
        assert_eq!(o.replica_policy, "best-effort");
        assert_eq!((o.replica_timeout, o.adopt_after), (secs(1), secs(10)));
    }

    #[test]
    fn a_repeated_flag_takes_its_last_value_and_repeatable_ones_collect() {
        let o = nsqd(&[
            "--tcp-address=127.0.0.1:1",
            "-tcp-address",
            "127.0.0.1:2",
            "--snappy=false",
            "--snappy",
            "--lookupd-tcp-address=a:1",
            "--lookupd-tcp-address=b:1",
        ])
        .unwrap();
        assert_eq!(o.tcp_address, "127.0.0.1:2");
        assert!(o.snappy);
        assert_eq!(o.lookupd_tcp_addresses, ["a:1", "b:1"]);
    }

    #[test]
    fn a_bare_boolean_does_not_swallow_the_next_flag() {
        let o = nsqd(&["--snappy", "--mem-queue-size", "5", "--verbose"]).unwrap();
        assert!(o.snappy);
        assert_eq!(o.mem_queue_size, 5);
    }

    #[test]
    fn bad_boolean_value_names_the_flag() {
        let e = err(&["--snappy=yes"]);
        assert!(e.contains("--snappy"), "{e}");
    }

    #[test]
    fn version_flag() {
        let (serve, _) = parse_as_nsqd(&strings(&["--version"])).unwrap();
        assert!(serve.version);
        let (serve, _) = parse_as_nsqd(&strings(&["-version=false"])).unwrap();
        assert!(!serve.version);
        assert_eq!(
            nsqd_version_string(),
            format!("nsqd v1.3.0 (built w/nsqrs-{})", env!("CARGO_PKG_VERSION"))
        );
    }

    #[test]
    fn every_flag_reaches_its_option() {
        let o = nsqd(&[
            "--log-level=DEBUG",
            "--log-prefix=[x] ",
            "--node-id=1023",
            "--tcp-address=127.0.0.1:1",
            "--http-address=127.0.0.1:2",
            "--https-address=127.0.0.1:3",
            "--auth-http-request-method=post",
            "--broadcast-address=example.org",
            "--broadcast-tcp-port=4",
            "--broadcast-http-port=65535",
            "--http-client-connect-timeout=1s",
            "--http-client-request-timeout=2s",
            "--topology-region=eu",
            "--topology-zone=eu-1a",
            "--data-path=/tmp/d",
            "--mem-queue-size=0",
            "--max-bytes-per-file=6",
            "--sync-every=7",
            "--sync-timeout=3s",
            "--queue-scan-worker-pool-max=8",
            "--queue-scan-selection-count=9",
            "--msg-timeout=4s",
            "--max-msg-timeout=5s",
            "--max-msg-size=10",
            "--max-req-timeout=6s",
            "--max-body-size=11",
            "--max-heartbeat-interval=7s",
            "--max-rdy-count=12",
            "--max-output-buffer-size=13",
            "--max-output-buffer-timeout=8s",
            "--min-output-buffer-timeout=9ms",
            "--output-buffer-timeout=10ms",
            "--max-channel-consumers=14",
            "--statsd-interval=11s",
            "--statsd-mem-stats=false",
            "--statsd-prefix=p.%s",
            "--statsd-udp-packet-size=15",
            "--statsd-exclude-ephemeral",
            "--e2e-processing-latency-window-time=12s",
            "--tls-min-version=TLS1.2",
            "--deflate=false",
            "--max-deflate-level=9",
            "--snappy=false",
            "--enable-experiment=topology-aware-consumption",
        ])
        .unwrap();
        assert_eq!(o.log_level, "debug");
        assert_eq!(o.log_prefix, "[x] ");
        assert_eq!(o.node_id, 1023);
        assert_eq!(o.tcp_address, "127.0.0.1:1");
        assert_eq!(o.http_address, "127.0.0.1:2");
        assert_eq!(o.https_address, "127.0.0.1:3");
        assert_eq!(o.auth_http_request_method, "post");
        assert_eq!(o.broadcast_address, "example.org");
        assert_eq!(o.broadcast_tcp_port, 4);
        assert_eq!(o.broadcast_http_port, 65535);
        assert_eq!(o.http_client_connect_timeout, secs(1));
        assert_eq!(o.http_client_request_timeout, secs(2));
        assert_eq!(o.topology_region, "eu");
        assert_eq!(o.topology_zone, "eu-1a");
        assert_eq!(o.data_path, "/tmp/d");
        assert_eq!(o.mem_queue_size, 0);
        assert_eq!(o.max_bytes_per_file, 6);
        assert_eq!(o.sync_every, 7);
        assert_eq!(o.sync_timeout, secs(3));
        assert_eq!(o.queue_scan_worker_pool_max, 8);
        assert_eq!(o.queue_scan_selection_count, 9);
        assert_eq!(o.msg_timeout, secs(4));
        assert_eq!(o.max_msg_timeout, secs(5));
        assert_eq!(o.max_msg_size, 10);
        assert_eq!(o.max_req_timeout, secs(6));
        assert_eq!(o.max_body_size, 11);
        assert_eq!(o.max_heartbeat_interval, secs(7));
        assert_eq!(o.max_rdy_count, 12);
        assert_eq!(o.max_output_buffer_size, 13);
        assert_eq!(o.max_output_buffer_timeout, secs(8));
        assert_eq!(o.min_output_buffer_timeout, Duration::from_millis(9));
        assert_eq!(o.output_buffer_timeout, Duration::from_millis(10));
        assert_eq!(o.max_channel_consumers, 14);
        assert_eq!(o.statsd_interval, secs(11));
        assert!(!o.statsd_mem_stats);
        assert_eq!(o.statsd_prefix, "p.%s");
        assert_eq!(o.statsd_udp_packet_size, 15);
        assert!(o.statsd_exclude_ephemeral);
        assert_eq!(o.e2e_processing_latency_window_time, secs(12));
        assert_eq!(o.tls_min_version, "tls1.2");
        assert!(!o.deflate);
        assert_eq!(o.max_deflate_level, 9);
        assert!(!o.snappy);
        assert_eq!(o.enable_experiment, ["topology-aware-consumption"]);
        assert_eq!(o.config, None);
    }

    #[test]
    fn integration_flags_parse() {
        let o = nsqd(&[
            "--lookupd-tcp-address=a:4160",
            "-lookupd-tcp-address",
            "b:4160",
            "--auth-http-address=a:1",
            "--auth-http-address",
            "http://b/auth",
            "--statsd-address=127.0.0.1:8125",
            "--e2e-processing-latency-percentile=0.5,1.0",
            "-e2e-processing-latency-percentile",
            "0.99",
            "--tls-cert=c.pem",
            "--tls-key=k.pem",
            "--tls-root-ca-file=ca.pem",
            "--tls-required=TCP-HTTPS",
        ])
        .unwrap();
        assert_eq!(o.lookupd_tcp_addresses, ["a:4160", "b:4160"]);
        assert_eq!(o.auth_http_addresses, ["a:1", "http://b/auth"]);
        assert_eq!(o.statsd_address, "127.0.0.1:8125");
        assert_eq!(o.e2e_processing_latency_percentiles, [1.0, 0.99, 0.5]);
        assert_eq!(o.tls_cert, "c.pem");
        assert_eq!(o.tls_key, "k.pem");
        assert_eq!(o.tls_root_ca_file, "ca.pem");
        assert_eq!(o.tls_required, TlsRequired::TcpHttps);
    }

    #[test]
    fn empty_values_are_values() {
        let o = nsqd(&["--http-address=", "-broadcast-address", ""]).unwrap();
        assert_eq!(o.http_address, "");
        assert_eq!(o.broadcast_address, "");
        // An empty --tls-min-version keeps the default, as in nsqd.
        assert_eq!(nsqd(&["--tls-min-version="]).unwrap().tls_min_version, "tls1.0");
    }

    #[test]
    fn arguments_after_the_flags_are_kept_aside_and_ignored() {
        let (serve, m) = parse_as_nsqd(&strings(&["--snappy", "extra", "--tcp-address", "x:1"])).unwrap();
        assert_eq!(serve.trailing, ["extra", "--tcp-address", "x:1"]);
        assert_eq!(serve.into_options(&m).unwrap().tcp_address, "0.0.0.0:4150");
        let (serve, _) = parse_as_nsqd(&strings(&["--", "--snappy=false"])).unwrap();
        assert_eq!(serve.trailing, ["--snappy=false"]);
    }

    #[test]
    fn bad_values_are_clap_errors_naming_the_flag() {
        for (args, flag) in [
            (&["--msg-timeout=5"][..], "--msg-timeout"),
            (&["--msg-timeout=-5s"], "--msg-timeout"),
            (&["--sync-timeout", "2 s"], "--sync-timeout"),
            (&["--mem-queue-size=lots"], "--mem-queue-size"),
            (&["--log-level=chatty"], "--log-level"),
            (&["--tls-required=maybe"], "--tls-required"),
            (&["--tls-min-version=ssl3.0"], "--tls-min-version"),
            (&["--tls-min-version=tls9"], "--tls-min-version"),
            (
                &["--e2e-processing-latency-percentile=0.9,x"],
                "--e2e-processing-latency-percentile",
            ),
            (&["--no-such-flag=1"], "--no-such-flag"),
            (&["--tcp-address"], "--tcp-address"),
        ] {
            let e = err(args);
            assert!(e.contains(flag), "{args:?}: {e}");
        }
    }

    #[test]
    fn node_id_must_be_below_1024() {
        assert_eq!(nsqd(&["--node-id=0"]).unwrap().node_id, 0);
        assert_eq!(nsqd(&["-node-id", "1023"]).unwrap().node_id, 1023);
        for bad in ["1024", "-1", "70000"] {
            assert_eq!(err(&["--node-id", bad]), "--node-id must be [0,1024)", "{bad}");
        }
    }

    #[test]
    fn max_deflate_level_must_be_1_to_9() {
        assert_eq!(nsqd(&["--max-deflate-level=1"]).unwrap().max_deflate_level, 1);
        for bad in ["0", "10", "-3"] {
            assert_eq!(
                err(&["--max-deflate-level", bad]),
                "--max-deflate-level must be [1,9]"
            );
        }
    }

    #[test]
    fn auth_method_must_be_get_or_post() {
        assert_eq!(
            nsqd(&["--auth-http-request-method=post"])
                .unwrap()
                .auth_http_request_method,
            "post"
        );
        for bad in ["put", "GET", ""] {
            assert_eq!(
                err(&["--auth-http-request-method", bad]),
                "--auth-http-request-method must be post or get"
            );
        }
    }

    #[test]
    fn e2e_percentiles_must_be_in_0_exclusive_to_1() {
        for bad in ["0", "1.5", "-0.5", "NaN"] {
            let e = nsqd(&["--e2e-processing-latency-percentile", bad]).unwrap_err();
            assert!(
                e.starts_with("invalid E2E processing latency percentile"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn broadcast_ports_must_fit_a_port() {
        assert_eq!(
            err(&["--broadcast-tcp-port=65536"]),
            "--broadcast-tcp-port must be [0,65535]"
        );
        assert_eq!(
            err(&["--broadcast-http-port=-1"]),
            "--broadcast-http-port must be [0,65535]"
        );
    }

    #[test]
    fn tls_validations() {
        let no_cert = "cannot require TLS client connections without TLS key and cert";
        assert_eq!(err(&["--tls-required"]), no_cert);
        assert_eq!(err(&["--tls-required=tcp-https"]), no_cert);
        // A client auth policy implies required TLS, so it needs a cert and key too.
        assert_eq!(err(&["--tls-client-auth-policy=require"]), no_cert);
        assert_eq!(
            err(&["--tls-cert=c.pem"]),
            "--tls-cert and --tls-key must be given together"
        );

        let o = nsqd(&[
            "--tls-cert=c.pem",
            "--tls-key=k.pem",
            "--tls-client-auth-policy=require-verify",
        ])
        .unwrap();
        assert_eq!(o.tls_required, TlsRequired::Yes);
        // An explicit tcp-https is not upgraded by the policy.
        let o = nsqd(&[
            "--tls-cert=c.pem",
            "--tls-key=k.pem",
            "--tls-client-auth-policy=require",
            "--tls-required=tcp-https",
        ])
        .unwrap();
        assert_eq!(o.tls_required, TlsRequired::TcpHttps);
        assert_eq!(
            nsqd(&["--tls-required=false"]).unwrap().tls_required,
            TlsRequired::No
        );
    }

    #[test]
    fn config_file_sets_options() {
        let o = with_config(
            r#"
            id = 7
            log_level = "WARN"
            tcp_address = "127.0.0.1:4"
            mem_queue_size = 5
            max_bytes_per_file = "1234"
            msg_timeout = "90s"
            sync_timeout = 1500
            snappy = false
            deflate = "f"
            tls_required = false
            tls_min_version = ""
            max_deflate_level = 3
            enable_experiment = ["topology-aware-consumption"]
            verbose = true
            "#,
            &[],
        )
        .unwrap();
        assert_eq!(o.node_id, 7);
        assert_eq!(o.log_level, "warn");
        assert_eq!(o.tcp_address, "127.0.0.1:4");
        assert_eq!(o.mem_queue_size, 5);
        assert_eq!(o.max_bytes_per_file, 1234);
        assert_eq!(o.msg_timeout, secs(90));
        // A bare integer duration is milliseconds, as in nsqd.
        assert_eq!(o.sync_timeout, Duration::from_millis(1500));
        assert!(!o.snappy && !o.deflate);
        assert_eq!(o.tls_required, TlsRequired::No);
        assert_eq!(o.tls_min_version, "tls1.0");
        assert_eq!(o.max_deflate_level, 3);
        assert_eq!(o.enable_experiment, ["topology-aware-consumption"]);
        assert!(o.config.is_some());
    }

    #[test]
    fn a_typed_flag_wins_over_the_config_even_at_its_default_value() {
        let cfg = "tcp_address = \"127.0.0.1:4\"\nmem_queue_size = 5\nsnappy = false\nid = 9\n";
        let o = with_config(cfg, &["-tcp-address", "127.0.0.1:5", "--snappy", "--node-id=3"]).unwrap();
        assert_eq!(o.tcp_address, "127.0.0.1:5");
        assert!(o.snappy);
        assert_eq!(o.node_id, 3);
        assert_eq!(o.mem_queue_size, 5, "config value for a flag not typed");
        let o = with_config(cfg, &["--mem-queue-size=10000"]).unwrap();
        assert_eq!(o.mem_queue_size, 10000);
    }

    #[test]
    fn config_keys_nsqd_renames() {
        let o = config_only(
            r#"
            id = 12
            nsqlookupd_tcp_addresses = ["a:4160", "b:4160"]
            auth_http_addresses = "a:1,b:2"
            e2e_processing_latency_percentiles = [0.5, 0.99, 1]
            auth_http_request_method = "post"
            http_client_connect_timeout = "3s"
            http_client_request_timeout = "4s"
            "#,
        )
        .unwrap();
        assert_eq!(o.node_id, 12);
        assert_eq!(o.lookupd_tcp_addresses, ["a:4160", "b:4160"]);
        assert_eq!(o.auth_http_addresses, ["a:1", "b:2"]);
        assert_eq!(o.e2e_processing_latency_percentiles, [0.5, 0.99, 1.0]);
        assert_eq!(o.auth_http_request_method, "post");
        assert_eq!(o.http_client_connect_timeout, secs(3));
        assert_eq!(o.http_client_request_timeout, secs(4));

        let o = config_only("e2e_processing_latency_percentiles = \"1.0, 0.9\"").unwrap();
        assert_eq!(o.e2e_processing_latency_percentiles, [1.0, 0.9]);
    }

    #[test]
    fn config_tls_keys_are_parsed_like_nsqd() {
        let base = "tls_cert = \"c\"\ntls_key = \"k\"\n";
        for (value, want) in [
            ("true", TlsRequired::Yes),
            ("\"TRUE\"", TlsRequired::Yes),
            ("1", TlsRequired::Yes),
            ("\"tcp-https\"", TlsRequired::TcpHttps),
            ("false", TlsRequired::No),
        ] {
            let o = config_only(&format!("{base}tls_required = {value}\n")).unwrap();
            assert_eq!(o.tls_required, want, "{value}");
        }
        let o = config_only("tls_min_version = \"TLS1.3\"").unwrap();
        assert_eq!(o.tls_min_version, "tls1.3");
        let e = config_only("tls_required = \"sometimes\"").unwrap_err();
        assert!(e.contains("tls_required") && e.contains("sometimes"), "{e}");
        let e = config_only("tls_min_version = \"ssl3.0\"").unwrap_err();
        assert!(e.contains("tls_min_version"), "{e}");
        let e = config_only("log_level = \"loud\"").unwrap_err();
        assert!(e.contains("log_level") && e.contains("loud"), "{e}");
    }

    #[test]
    fn a_config_value_failing_validation_is_reported_like_a_flag() {
        assert_eq!(
            with_config("id = 5000", &[]).unwrap_err(),
            "--node-id must be [0,1024)"
        );
        assert_eq!(
            with_config("max_deflate_level = 0", &[]).unwrap_err(),
            "--max-deflate-level must be [1,9]"
        );
        // ...unless the flag overrides it.
        assert_eq!(
            with_config("max_deflate_level = 0", &["--max-deflate-level=2"])
                .unwrap()
                .max_deflate_level,
            2
        );
    }

    #[test]
    fn unknown_config_key_is_named() {
        let e = with_config("tcp_address = \"x:1\"\nbogus_key = 1\n", &[]).unwrap_err();
        assert!(
            e.contains("\"bogus_key\"") && e.contains("unknown config key"),
            "{e}"
        );
        let e = with_config("node_id = 5", &[]).unwrap_err();
        assert!(e.contains("\"node_id\"") && e.contains("\"id\""), "{e}");
        let e = with_config("lookupd_tcp_address = [\"a:1\"]", &[]).unwrap_err();
        assert!(e.contains("nsqlookupd_tcp_addresses"), "{e}");
        // Sections are not flags either.
        let e = with_config("[nsqd]\ntcp_address = \"x:1\"\n", &[]).unwrap_err();
        assert!(e.contains("\"nsqd\""), "{e}");
    }

    #[test]
    fn config_type_errors_name_the_key() {
        for (cfg, key) in [
            ("tcp_address = 4150", "tcp_address"),
            ("mem_queue_size = \"many\"", "mem_queue_size"),
            ("mem_queue_size = 1.5", "mem_queue_size"),
            ("msg_timeout = \"60\"", "msg_timeout"),
            ("msg_timeout = -5", "msg_timeout"),
            ("msg_timeout = true", "msg_timeout"),
            ("snappy = \"yes\"", "snappy"),
            ("nsqlookupd_tcp_addresses = [1, 2]", "nsqlookupd_tcp_addresses"),
            (
                "e2e_processing_latency_percentiles = [\"x\"]",
                "e2e_processing_latency_percentiles",
            ),
            ("verbose = \"loud\"", "verbose"),
        ] {
            let e = config_only(cfg).unwrap_err();
            assert!(e.contains(&format!("{key:?}")), "{cfg}: {e}");
            assert!(!e.contains('\n'), "{cfg}: {e}");
        }
    }

    #[test]
    fn unreadable_or_malformed_config_is_one_line() {
        let e = nsqd(&["--config=/nonexistent/nsqd.toml"]).unwrap_err();
        assert!(
            e.starts_with("failed to load config file /nonexistent/nsqd.toml"),
            "{e}"
        );
        let e = with_config("tcp_address = \"x:1\"\nmem_queue_size = = 5\n", &[]).unwrap_err();
        assert!(e.contains("line 2"), "{e}");
        assert!(!e.contains('\n'), "{e}");
    }

    #[test]
    fn a_config_in_the_style_of_nsqds_sample_loads() {
        // The keys and value styles of nsqd's contrib/nsqd.cfg.example, lookupd and e2e aside.
        let o = with_config(
            r#"
            verbose = false
            tcp_address = "0.0.0.0:4150"
            http_address = "0.0.0.0:4151"
            http_client_connect_timeout = "2s"
            http_client_request_timeout = "5s"
            mem_queue_size = 10000
            max_bytes_per_file = 104857600
            sync_every = 2500
            sync_timeout = "2s"
            msg_timeout = "60s"
            max_msg_timeout = "15m"
            max_msg_size = 1024768
            max_req_timeout = "1h"
            max_body_size = 5123840
            max_heartbeat_interval = "60s"
            max_rdy_count = 2500
            max_output_buffer_size = 65536
            max_output_buffer_timeout = "1s"
            statsd_prefix = "nsq.%s"
            statsd_interval = "60s"
            statsd_mem_stats = true
            e2e_processing_latency_window_time = "10m"
            tls_cert = ""
            tls_key = ""
            tls_required = false
            tls_min_version = ""
            deflate = true
            max_deflate_level = 6
            snappy = true
            "#,
            &[],
        )
        .unwrap();
        assert_eq!(o.max_msg_size, 1024768);
        assert_eq!(o.max_output_buffer_timeout, secs(1));
    }
}
