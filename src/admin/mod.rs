//! `nsqrs admin` (and `nsqadmin`, and the admin `serve` embeds): nsqadmin's web UI and JSON
//! API, plus what nsqadmin never had: the archived messages and their timelines, deferred
//! messages, replays, and charts of the last hour kept in memory.
//!
//! This file owns the options (nsqadmin's flags, nsq-reference §3, and nsqrs's own), the
//! shared state, and running the HTTP server. The admin talks to brokers and lookupds only
//! over HTTP (`cluster.rs`) and reads the archive directly (`crate::archive`).

pub mod access;
pub mod api;
pub mod charts;
pub mod cluster;
pub mod history;
pub mod messages;
pub mod pages;
pub mod replays;
pub mod stats;

use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use tokio::net::TcpListener;

use crate::archive::store::OpenMode;
use crate::archive::Store;
use crate::common::http_client::HttpTimeouts;
use cluster::Cluster;

/// Every nsqadmin option with nsqadmin's name, meaning and default, then nsqrs's own.
#[derive(Debug, Clone)]
pub struct AdminOptions {
    pub config: Option<String>,
    pub log_level: String,
    pub log_prefix: String,
    pub http_address: String,
    /// URL prefix of every page and API path, normalised to `/` or `/x/y`.
    pub base_path: String,
    pub lookupd_http_addresses: Vec<String>,
    pub nsqd_http_addresses: Vec<String>,
    pub http_client_connect_timeout: Duration,
    pub http_client_request_timeout: Duration,
    pub http_client_tls_insecure_skip_verify: bool,
    pub http_client_tls_root_ca_file: String,
    pub http_client_tls_cert: String,
    pub http_client_tls_key: String,
    /// Who may read and change `/config/*` (CIDR); empty lets everyone.
    pub allow_config_from_cidr: String,
    /// POSTed a JSON record of every action taken.
    pub notification_http_endpoint: String,
    /// The header naming the authenticated user (set by a proxy in front of the admin).
    pub acl_http_header: String,
    /// When not empty, only these users (per `acl_http_header`) may take actions.
    pub admin_users: Vec<String>,
    /// nsqadmin's Graphite and statsd options. The charts here come from the admin's own
    /// samples of `/stats`, so these are accepted for command-line compatibility only.
    pub graphite_url: String,
    pub proxy_graphite: bool,
    pub statsd_prefix: String,
    pub statsd_counter_format: String,
    pub statsd_gauge_format: String,
    pub statsd_interval: Duration,
    /// nsqrs: required as `Authorization: Bearer` on actions, and sent to the brokers with
    /// them (their `--http-admin-token`).
    pub http_admin_token: String,
    /// nsqrs: the archive (`to-db --db`) the messages pages and replays read.
    pub db: String,
    /// nsqrs: how often every broker's `/stats` is sampled for the charts.
    pub sample_interval: Duration,
}

impl Default for AdminOptions {
    fn default() -> Self {
        AdminOptions {
            config: None,
            log_level: "info".into(),
            log_prefix: "[nsqadmin] ".into(),
            http_address: "0.0.0.0:4171".into(),
            base_path: "/".into(),
            lookupd_http_addresses: vec![],
            nsqd_http_addresses: vec![],
            http_client_connect_timeout: Duration::from_secs(2),
            http_client_request_timeout: Duration::from_secs(5),
            http_client_tls_insecure_skip_verify: false,
            http_client_tls_root_ca_file: String::new(),
            http_client_tls_cert: String::new(),
            http_client_tls_key: String::new(),
            allow_config_from_cidr: "127.0.0.1/8".into(),
            notification_http_endpoint: String::new(),
            acl_http_header: "X-Forwarded-User".into(),
            admin_users: vec![],
            graphite_url: String::new(),
            proxy_graphite: false,
            statsd_prefix: "nsq.%s".into(),
            statsd_counter_format: "stats.counters.%s.count".into(),
            statsd_gauge_format: "stats.gauges.%s".into(),
            statsd_interval: Duration::from_secs(60),
            http_admin_token: String::new(),
            db: String::new(),
            sample_interval: Duration::from_secs(5),
        }
    }
}

/// nsqadmin's `--base-path` normalisation: a leading slash, no trailing one, `.`/`..` folded.
pub fn normalize_base_path(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for seg in p.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            s => parts.push(s),
        }
    }
    format!("/{}", parts.join("/"))
}

impl AdminOptions {
    /// nsqadmin's start-up checks, with its messages; also reads the TLS files.
    pub fn validate(&mut self) -> Result<(), String> {
        match (
            self.nsqd_http_addresses.is_empty(),
            self.lookupd_http_addresses.is_empty(),
        ) {
            (true, true) => return Err("--nsqd-http-address or --lookupd-http-address required".into()),
            (false, false) => return Err("use --nsqd-http-address or --lookupd-http-address not both".into()),
            _ => {}
        }
        if !self.http_client_tls_cert.is_empty() && self.http_client_tls_key.is_empty() {
            return Err("--http-client-tls-key must be specified with --http-client-tls-cert".into());
        }
        if !self.http_client_tls_key.is_empty() && self.http_client_tls_cert.is_empty() {
            return Err("--http-client-tls-cert must be specified with --http-client-tls-key".into());
        }
        if !self.allow_config_from_cidr.is_empty() {
            access::Cidr::parse(&self.allow_config_from_cidr).map_err(|e| {
                format!(
                    "failed to parse --allow-config-from-cidr ({}) - {e}",
                    self.allow_config_from_cidr
                )
            })?;
        }
        if !self.notification_http_endpoint.is_empty()
            && !self.notification_http_endpoint.starts_with("http://")
            && !self.notification_http_endpoint.starts_with("https://")
        {
            return Err(format!(
                "--notification-http-endpoint {:?} must be an http:// or https:// URL",
                self.notification_http_endpoint
            ));
        }
        if !self.db.is_empty() {
            crate::archive::store::Location::parse(&self.db)?;
        }
        if self.sample_interval.is_zero() {
            return Err("--stats-sample-interval must be positive".into());
        }
        self.tls_config()?;
        self.base_path = normalize_base_path(&self.base_path);
        Ok(())
    }

    /// The client TLS for `https://` addresses and notification endpoints.
    pub fn tls_config(&self) -> Result<Option<Arc<rustls::ClientConfig>>, String> {
        let nonempty = |s: &str| (!s.is_empty()).then(|| std::path::PathBuf::from(s));
        let opts = crate::client::tls::TlsOptions {
            root_ca_file: nonempty(&self.http_client_tls_root_ca_file),
            insecure_skip_verify: self.http_client_tls_insecure_skip_verify,
            cert: nonempty(&self.http_client_tls_cert),
            key: nonempty(&self.http_client_tls_key),
            min_version: Default::default(),
        };
        opts.client_config().map(Some)
    }

    pub fn timeouts(&self) -> HttpTimeouts {
        HttpTimeouts {
            connect: self.http_client_connect_timeout,
            request: self.http_client_request_timeout,
        }
    }

    /// Writes an nsqadmin-shaped log line if `level` passes `--log-level`.
    pub fn logf(&self, level: &str, msg: &str) {
        let rank = |l: &str| match l {
            "debug" => 0,
            "info" => 1,
            "warn" => 2,
            "error" => 3,
            _ => 4,
        };
        if rank(level) >= rank(&self.log_level) {
            let label = match level {
                "warn" => "WARNING".to_string(),
                other => other.to_ascii_uppercase(),
            };
            crate::common::log::log(&self.log_prefix, &label, msg);
        }
    }
}

/// What every handler shares.
pub struct Admin {
    /// Options; `PUT /config/*` changes the lookupds and the log level at runtime.
    opts: RwLock<AdminOptions>,
    tls: Option<Arc<rustls::ClientConfig>>,
    pub history: history::History,
    pub archive: Option<Store>,
    pub replays: replays::Replays,
}

impl Admin {
    pub fn opts(&self) -> AdminOptions {
        self.opts.read().clone()
    }

    pub fn logf(&self, level: &str, msg: &str) {
        self.opts.read().logf(level, msg);
    }

    /// The cluster as the options name it now.
    pub fn cluster(&self) -> Cluster {
        let o = self.opts.read();
        Cluster {
            lookupd: o.lookupd_http_addresses.clone(),
            nsqd: o.nsqd_http_addresses.clone(),
            timeouts: o.timeouts(),
            token: (!o.http_admin_token.is_empty()).then(|| o.http_admin_token.clone()),
            tls: self.tls.clone(),
        }
    }

    pub fn update_opts(&self, change: impl FnOnce(&mut AdminOptions)) {
        change(&mut self.opts.write());
    }

    /// `path` under `--base-path`.
    pub fn url(&self, path: &str) -> String {
        let o = self.opts.read();
        if o.base_path == "/" {
            path.to_string()
        } else {
            format!("{}{path}", o.base_path)
        }
    }
}

/// An admin serving in the background (`serve`'s embedded one, or `nsqrs admin`'s).
pub struct Running {
    pub http_addr: std::net::SocketAddr,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Running {
    pub fn stop(&self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Opens the archive (if any), binds the listener, and serves in the background.
pub async fn start(mut opts: AdminOptions) -> Result<Running, String> {
    opts.validate()?;
    let tls = opts.tls_config()?;
    if !opts.graphite_url.is_empty() {
        opts.logf(
            "warn",
            "--graphite-url is not used: charts come from the admin's own samples of /stats",
        );
    }
    let archive = if opts.db.is_empty() {
        None
    } else {
        Some(Store::open(&opts.db, OpenMode::Existing).await?)
    };
    let listener = TcpListener::bind(&opts.http_address)
        .await
        .map_err(|e| format!("listen ({}) failed - {e}", opts.http_address))?;
    let http_addr = listener
        .local_addr()
        .map_err(|e| format!("listen ({}) failed - {e}", opts.http_address))?;
    let sample_interval = opts.sample_interval;
    let admin = Arc::new(Admin {
        opts: RwLock::new(opts),
        tls,
        history: history::History::new(sample_interval),
        archive,
        replays: replays::Replays::default(),
    });
    admin.logf("info", &format!("HTTP: listening on {http_addr}"));
    let sampler = tokio::spawn(history::sample_forever(admin.clone()));
    let app = api::router(admin.clone());
    let server_admin = admin.clone();
    let server = tokio::spawn(async move {
        let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
        if let Err(e) = axum::serve(listener, app).await {
            server_admin.logf("error", &format!("http server - {e}"));
        }
    });
    Ok(Running {
        http_addr,
        tasks: vec![sampler, server],
    })
}

/// Runs `nsqrs admin` until SIGINT/SIGTERM; returns the process exit code.
pub fn run(opts: AdminOptions) -> i32 {
    crate::common::process::run_until_exit(async move {
        let prefix = opts.log_prefix.clone();
        let mut signals = match crate::common::process::ExitSignals::install() {
            Ok(s) => s,
            Err(e) => {
                crate::common::log::log(
                    &prefix,
                    "FATAL",
                    &format!("failed to install signal handlers - {e}"),
                );
                return 1;
            }
        };
        opts.logf(
            "info",
            &format!("nsqadmin v1.3.0 (built w/nsqrs-{})", env!("CARGO_PKG_VERSION")),
        );
        let running = match start(opts).await {
            Ok(r) => r,
            Err(e) => {
                crate::common::log::log(&prefix, "FATAL", &format!("failed to instantiate nsqadmin - {e}"));
                return 1;
            }
        };
        signals.recv().await;
        running.stop();
        0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_paths_normalise_as_nsqadmin_does() {
        for (given, want) in [
            ("", "/"),
            ("/", "/"),
            ("admin", "/admin"),
            ("/a/b/", "/a/b"),
            ("/a/../b", "/b"),
        ] {
            assert_eq!(normalize_base_path(given), want, "{given}");
        }
    }

    #[test]
    fn validation_messages_are_nsqadmins() {
        let mut o = AdminOptions::default();
        assert!(o.validate().unwrap_err().contains("required"));
        o.lookupd_http_addresses = vec!["a:1".into()];
        o.nsqd_http_addresses = vec!["b:1".into()];
        assert!(o.validate().unwrap_err().contains("not both"));
        o.nsqd_http_addresses.clear();
        o.http_client_tls_cert = "c.pem".into();
        assert!(o.validate().unwrap_err().contains("--http-client-tls-key"));
        o.http_client_tls_cert.clear();
        o.allow_config_from_cidr = "nope".into();
        assert!(o.validate().unwrap_err().contains("--allow-config-from-cidr"));
        o.allow_config_from_cidr = "10.0.0.0/8".into();
        o.base_path = "x/".into();
        o.validate().unwrap();
        assert_eq!(o.base_path, "/x");
    }
}
