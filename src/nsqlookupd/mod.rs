//! `nsqrs lookupd` (and `nsqlookupd`): an nsqlookupd-compatible discovery server.
//!
//! Owns nsqlookupd's options and defaults (nsq-reference §2.1), its log lines, and running
//! the server: binding the TCP listener (protocol V1, for nsqd, in `tcp.rs`) and the HTTP
//! listener (for consumers and admins, in `http.rs`) over one shared `Registry`, until
//! SIGINT/SIGTERM. The pieces are public so `serve` can embed a lookupd in-process.

pub mod http;
pub mod registry;
pub mod tcp;

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

pub use http::router;
pub use registry::Registry;
pub use tcp::serve_tcp;

/// The nsqlookupd release whose behaviour is reproduced; nsqd and tools read this version.
pub const NSQLOOKUPD_VERSION: &str = "1.3.0";

/// What `nsqlookupd --version` prints and the first log line: nsqlookupd's format, naming
/// nsqrs where nsqlookupd names its Go toolchain.
pub fn version_string() -> String {
    format!(
        "nsqlookupd v{NSQLOOKUPD_VERSION} (built w/nsqrs-{})",
        env!("CARGO_PKG_VERSION")
    )
}

/// Every nsqlookupd option, with nsqlookupd's name, meaning and default.
#[derive(Debug, Clone)]
pub struct LookupdOptions {
    pub config: Option<String>,
    /// `debug`, `info`, `warn`, `error` or `fatal`; lines below it are not written.
    pub log_level: String,
    pub log_prefix: String,
    pub tcp_address: String,
    pub http_address: String,
    /// Returned to nsqd in the IDENTIFY response.
    pub broadcast_address: String,
    /// Producers not heard from (IDENTIFY or PING) for longer are hidden from `/lookup` and
    /// `/nodes`; their registrations stay until the connection closes.
    pub inactive_producer_timeout: Duration,
    /// How long a tombstoned producer stays hidden from `/lookup`.
    pub tombstone_lifetime: Duration,
}

impl Default for LookupdOptions {
    fn default() -> Self {
        LookupdOptions {
            config: None,
            log_level: "info".into(),
            log_prefix: "[nsqlookupd] ".into(),
            tcp_address: "0.0.0.0:4160".into(),
            http_address: "0.0.0.0:4161".into(),
            broadcast_address: crate::common::host::local_hostname(),
            inactive_producer_timeout: Duration::from_secs(300),
            tombstone_lifetime: Duration::from_secs(45),
        }
    }
}

/// Log severities, lowest first, with the names nsqlookupd writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Debug,
    Info,
    Warn,
    Error,
    Fatal,
}

impl Level {
    fn label(self) -> &'static str {
        match self {
            Level::Debug => "DEBUG",
            Level::Info => "INFO",
            Level::Warn => "WARNING",
            Level::Error => "ERROR",
            Level::Fatal => "FATAL",
        }
    }

    fn parse(s: &str) -> Option<Level> {
        Some(match s.to_ascii_lowercase().as_str() {
            "debug" => Level::Debug,
            "info" => Level::Info,
            "warn" => Level::Warn,
            "error" => Level::Error,
            "fatal" => Level::Fatal,
            _ => return None,
        })
    }
}

impl LookupdOptions {
    /// Writes one nsqlookupd-shaped log line if `level` passes `--log-level`.
    pub fn logf(&self, level: Level, msg: &str) {
        // The CLI validates the level; an embedder's typo should not silence errors.
        let min = Level::parse(&self.log_level).unwrap_or(Level::Info);
        if level >= min {
            crate::common::log::log(&self.log_prefix, level.label(), msg);
        }
    }
}

/// Runs nsqlookupd until SIGINT/SIGTERM; returns the process exit code.
pub fn run(opts: LookupdOptions) -> i32 {
    crate::common::process::run_until_exit(serve(opts))
}

/// A lookupd running inside another process (`nsqrs serve`'s embedded one).
pub struct Running {
    pub tcp_addr: std::net::SocketAddr,
    pub http_addr: std::net::SocketAddr,
    tcp_task: tokio::task::JoinHandle<()>,
    http_task: tokio::task::JoinHandle<()>,
}

impl Running {
    pub fn stop(&self) {
        self.tcp_task.abort();
        self.http_task.abort();
    }
}

/// Binds both listeners and serves them in the background.
pub async fn start(opts: Arc<LookupdOptions>) -> Result<Running, String> {
    let tcp = TcpListener::bind(&opts.tcp_address)
        .await
        .map_err(|e| format!("listen ({}) failed - {e}", opts.tcp_address))?;
    let http = TcpListener::bind(&opts.http_address)
        .await
        .map_err(|e| format!("listen ({}) failed - {e}", opts.http_address))?;
    let (Ok(tcp_addr), Ok(http_addr)) = (tcp.local_addr(), http.local_addr()) else {
        return Err("failed to read the listeners' addresses".into());
    };
    let registry = Arc::new(Registry::new());
    opts.logf(Level::Info, &format!("TCP: listening on {tcp_addr}"));
    let tcp_task = tokio::spawn(serve_tcp(tcp, registry.clone(), opts.clone(), http_addr.port()));
    opts.logf(Level::Info, &format!("HTTP: listening on {http_addr}"));
    let app = router(registry, opts.clone());
    let http_opts = opts.clone();
    let http_task = tokio::spawn(async move {
        if let Err(e) = axum::serve(http, app).await {
            http_opts.logf(Level::Error, &format!("http.Serve() - {e}"));
        }
    });
    Ok(Running {
        tcp_addr,
        http_addr,
        tcp_task,
        http_task,
    })
}

async fn serve(opts: LookupdOptions) -> i32 {
    let opts = Arc::new(opts);
    let mut signals = match crate::common::process::ExitSignals::install() {
        Ok(s) => s,
        Err(e) => {
            opts.logf(Level::Fatal, &format!("failed to install signal handlers - {e}"));
            return 1;
        }
    };
    opts.logf(Level::Info, &version_string());
    let running = match start(opts.clone()).await {
        Ok(r) => r,
        Err(e) => {
            opts.logf(Level::Fatal, &format!("failed to instantiate nsqlookupd - {e}"));
            return 1;
        }
    };
    signals.recv().await;
    running.stop();
    opts.logf(Level::Info, &format!("TCP: closing {}", running.tcp_addr));
    opts.logf(Level::Info, &format!("HTTP: closing {}", running.http_addr));
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_nsqlookupds() {
        let o = LookupdOptions::default();
        assert_eq!(o.tcp_address, "0.0.0.0:4160");
        assert_eq!(o.http_address, "0.0.0.0:4161");
        assert_eq!(o.log_prefix, "[nsqlookupd] ");
        assert_eq!(o.inactive_producer_timeout, Duration::from_secs(300));
        assert_eq!(o.tombstone_lifetime, Duration::from_secs(45));
        assert_eq!(o.broadcast_address, crate::common::host::local_hostname());
    }

    #[test]
    fn levels_order_and_parse() {
        assert!(Level::Debug < Level::Info && Level::Error < Level::Fatal);
        assert_eq!(Level::parse("WARN"), Some(Level::Warn));
        assert_eq!(Level::parse("warning"), None);
        assert_eq!(Level::Warn.label(), "WARNING");
    }
}
