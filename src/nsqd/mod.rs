//! Runs `nsqrs serve`: opens the broker, binds the TCP, HTTP and HTTPS listeners, logs their
//! addresses the way nsqd does (clients' test harnesses parse those lines), starts the statsd
//! pusher, and shuts down gracefully on SIGINT/SIGTERM.

pub mod auth;
pub mod broker;
pub mod http;
pub mod lookup_peer;
pub mod options;
pub mod statsd;
pub mod tcp;
pub mod tls;

use std::sync::Arc;

use tokio::net::TcpListener;

use crate::common::log::log;
use crate::common::process::{run_until_exit, ExitSignals};
use crate::nsqd::broker::Broker;
use crate::nsqd::options::NsqdOptions;

/// Runs the broker until a signal; returns the process exit code.
pub fn run(opts: NsqdOptions) -> i32 {
    run_until_exit(serve(opts))
}

async fn serve(opts: NsqdOptions) -> i32 {
    let prefix = opts.log_prefix.clone();
    let mut signals = match ExitSignals::install() {
        Ok(s) => s,
        Err(e) => {
            log(
                &prefix,
                "FATAL",
                &format!("failed to install signal handlers - {e}"),
            );
            return 1;
        }
    };
    // Before the broker sizes its file cache from the limit.
    crate::nsqd::broker::files::raise_descriptor_limit();
    let broker = match Broker::open(opts) {
        Ok(b) => b,
        Err(e) => {
            log(&prefix, "FATAL", &format!("failed to instantiate nsqd - {e}"));
            return 1;
        }
    };
    log(
        &prefix,
        "INFO",
        &format!(
            "nsqd v{} (built w/nsqrs-{})",
            crate::nsqd::broker::NSQ_VERSION,
            env!("CARGO_PKG_VERSION")
        ),
    );
    log(&prefix, "INFO", &format!("ID: {}", broker.opts.node_id));
    let tls_config = match tls::server_config(&broker.opts) {
        Ok(c) => c,
        Err(e) => {
            log(&prefix, "FATAL", &format!("failed to build TLS config - {e}"));
            return 1;
        }
    };
    let auth = match auth::Authenticator::new(&broker.opts) {
        Ok(a) => a,
        Err(e) => {
            log(&prefix, "FATAL", &format!("failed to set up auth - {e}"));
            return 1;
        }
    };
    let tcp = match TcpListener::bind(&broker.opts.tcp_address).await {
        Ok(l) => l,
        Err(e) => {
            log(
                &prefix,
                "FATAL",
                &format!("listen ({}) failed - {e}", broker.opts.tcp_address),
            );
            return 1;
        }
    };
    let tcp_addr = tcp.local_addr().map(|a| a.to_string()).unwrap_or_default();
    log(&prefix, "INFO", &format!("TCP: listening on {tcp_addr}"));
    let http = if broker.opts.http_address.is_empty() {
        None
    } else {
        match TcpListener::bind(&broker.opts.http_address).await {
            Ok(l) => Some(l),
            Err(e) => {
                log(
                    &prefix,
                    "FATAL",
                    &format!("listen ({}) failed - {e}", broker.opts.http_address),
                );
                return 1;
            }
        }
    };
    // nsqd opens HTTPS only with a certificate, on 0.0.0.0:4152 unless told otherwise.
    let https = match (&tls_config, broker.opts.https_address.is_empty()) {
        (Some(_), false) => match TcpListener::bind(&broker.opts.https_address).await {
            Ok(l) => Some(l),
            Err(e) => {
                log(
                    &prefix,
                    "FATAL",
                    &format!("listen ({}) failed - {e}", broker.opts.https_address),
                );
                return 1;
            }
        },
        _ => None,
    };
    let https_port = https
        .as_ref()
        .and_then(|l| l.local_addr().ok())
        .map(|a| a.port())
        .unwrap_or(0);
    let http_port = http
        .as_ref()
        .and_then(|l| l.local_addr().ok())
        .map(|a| a.port())
        .unwrap_or(0);
    let tcp_port = tcp.local_addr().map(|a| a.port()).unwrap_or(0);
    broker.start_background();
    let identity = crate::protocol::lookup::PeerIdentity {
        broadcast_address: broker.opts.broadcast_address.clone(),
        hostname: crate::common::host::local_hostname(),
        tcp_port: i64::from(nonzero_or(broker.opts.broadcast_tcp_port, tcp_port)),
        http_port: i64::from(nonzero_or(broker.opts.broadcast_http_port, http_port)),
        topology_zone: broker.opts.topology_zone.clone(),
        topology_region: broker.opts.topology_region.clone(),
        version: crate::nsqd::broker::NSQ_VERSION.into(),
    };
    broker
        .events
        .set_nsqd_address(format!("{}:{}", identity.broadcast_address, identity.tcp_port));
    let replication_name = format!("{}:{}", identity.broadcast_address, identity.tcp_port);
    let reachable_at = match tcp.local_addr() {
        Ok(a) if !a.ip().is_unspecified() => a.to_string(),
        _ => replication_name.clone(),
    };
    let lookup = lookup_peer::LookupPeers::new(broker.clone(), identity);
    lookup.set_addresses(&broker.opts.lookupd_tcp_addresses);
    // Replication starts before clients are served: a broker that was adopted while it was
    // away learns it from its peers, and skips what the adopter took, before anyone reads.
    let replication = match crate::replication::Replication::open(&broker) {
        Ok(r) => r,
        Err(e) => {
            log(&prefix, "FATAL", &format!("failed to set up replication - {e}"));
            return 1;
        }
    };
    let _ = broker.replication.set(replication.clone());
    replication.start(replication_name, reachable_at).await;
    let services = Arc::new(tcp::Services {
        broker: broker.clone(),
        tls: tls_config
            .as_ref()
            .map(|c| tokio_rustls::TlsAcceptor::from(tls::tcp_config(c))),
        auth,
    });
    tokio::spawn(tcp::serve(tcp, services));
    let http_state = crate::nsqd::http::HttpState {
        broker: broker.clone(),
        lookup: lookup.clone(),
        tcp_port,
        http_port,
        https_port,
    };
    // Logged before HTTP: test harnesses read listeners until the HTTP line.
    if let (Some(https), Some(config)) = (https, tls_config) {
        let addr = https.local_addr().map(|a| a.to_string()).unwrap_or_default();
        log(&prefix, "INFO", &format!("HTTPS: listening on {addr}"));
        let app = crate::nsqd::http::router(http_state.clone(), true);
        tokio::spawn(serve_https(https, config, app));
    }
    if let Some(http) = &http {
        let addr = http.local_addr().map(|a| a.to_string()).unwrap_or_default();
        log(&prefix, "INFO", &format!("HTTP: listening on {addr}"));
    }
    // After nsqd's own listener lines (tools read the first `TCP: listening on`), and before
    // HTTP serves, so that once /ping answers the broker is registered with it.
    let embedded = start_embedded_lookupd(&broker, &lookup, &prefix).await;
    let http_addr = http.as_ref().and_then(|l| l.local_addr().ok());
    if let Some(http) = http {
        let app = crate::nsqd::http::router(http_state.clone(), false);
        tokio::spawn(async move {
            if let Err(e) = axum::serve(http, app).await {
                eprintln!("[nsqd] ERROR: http server - {e}");
            }
        });
    }
    if !broker.opts.statsd_address.is_empty() {
        tokio::spawn(statsd::run(broker.clone(), http_port));
    }
    let admin = start_embedded_admin(&broker, embedded.as_ref(), http_addr, &prefix).await;
    signals.recv().await;
    if let Some(running) = admin {
        running.stop();
    }
    if let Some(running) = embedded {
        running.stop();
    }
    log(&prefix, "INFO", "TERM signal received, exiting");
    shutdown(&broker).await;
    0
}

/// With no lookupd configured, `serve` runs one in-process and registers with it, so a
/// consumer pointed at lookupd works on a single machine out of the box. The broker comes up
/// either way: a port already taken is a warning, not a failure.
async fn start_embedded_lookupd(
    broker: &Arc<Broker>,
    lookup: &Arc<lookup_peer::LookupPeers>,
    prefix: &str,
) -> Option<crate::nsqlookupd::Running> {
    let o = &broker.opts;
    if !o.embedded_lookupd || !o.lookupd_tcp_addresses.is_empty() {
        return None;
    }
    let opts = crate::nsqlookupd::LookupdOptions {
        tcp_address: o.embedded_lookupd_tcp_address.clone(),
        http_address: o.embedded_lookupd_http_address.clone(),
        broadcast_address: o.broadcast_address.clone(),
        log_level: o.log_level.clone(),
        ..Default::default()
    };
    match crate::nsqlookupd::start(Arc::new(opts)).await {
        Ok(running) => {
            let mut addr = running.tcp_addr;
            if addr.ip().is_unspecified() {
                addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
            }
            lookup.set_addresses(&[addr.to_string()]);
            Some(running)
        }
        Err(e) => {
            let hint = "(--embedded-lookupd=false silences this)";
            log(
                prefix,
                "WARNING",
                &format!("embedded lookupd not started - {e} {hint}"),
            );
            None
        }
    }
}

/// `serve` also serves the admin web UI, so one command gives a working page on a fresh
/// machine. It reads the embedded lookupd when there is one (so it sees every broker that
/// registers there), else this broker alone. As with the lookupd, a port already taken is a
/// warning, not a failure.
async fn start_embedded_admin(
    broker: &Arc<Broker>,
    lookupd: Option<&crate::nsqlookupd::Running>,
    http_addr: Option<std::net::SocketAddr>,
    prefix: &str,
) -> Option<crate::admin::Running> {
    let o = &broker.opts;
    if !o.embedded_admin {
        return None;
    }
    let loopback = |mut a: std::net::SocketAddr| {
        if a.ip().is_unspecified() {
            a.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        a.to_string()
    };
    let mut opts = crate::admin::AdminOptions {
        http_address: o.embedded_admin_http_address.clone(),
        log_level: o.log_level.clone(),
        http_admin_token: o.http_admin_token.clone(),
        http_client_connect_timeout: o.http_client_connect_timeout,
        http_client_request_timeout: o.http_client_request_timeout,
        ..Default::default()
    };
    match (lookupd, http_addr) {
        (Some(l), _) => opts.lookupd_http_addresses = vec![loopback(l.http_addr)],
        (None, Some(h)) => opts.nsqd_http_addresses = vec![loopback(h)],
        (None, None) => {
            log(
                prefix,
                "WARNING",
                "embedded admin not started - HTTP is off (--http-address is empty)",
            );
            return None;
        }
    }
    match crate::admin::start(opts).await {
        Ok(running) => Some(running),
        Err(e) => {
            let hint = "(--embedded-admin=false silences this)";
            log(
                prefix,
                "WARNING",
                &format!("embedded admin not started - {e} {hint}"),
            );
            None
        }
    }
}

/// nsqd registers its broadcast ports, or the bound ones when those are 0.
fn nonzero_or(configured: u16, actual: u16) -> u16 {
    if configured == 0 {
        actual
    } else {
        configured
    }
}

/// The HTTP API over TLS: each accepted socket does its handshake in its own task, then
/// hyper serves the same router on it.
async fn serve_https(listener: TcpListener, config: Arc<rustls::ServerConfig>, app: axum::Router) {
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("[nsqd] ERROR: https accept failed - {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let app = app.clone();
        tokio::spawn(async move {
            let handshake = tokio::time::timeout(std::time::Duration::from_secs(10), acceptor.accept(stream));
            let Ok(Ok(tls)) = handshake.await else {
                return;
            };
            let service = hyper_util::service::TowerToHyperService::new(app);
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                .await;
        });
    }
}

async fn shutdown(broker: &Arc<Broker>) {
    let broker = broker.clone();
    let _ = tokio::task::spawn_blocking(move || broker.shutdown()).await;
}
