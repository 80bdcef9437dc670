//! Runs `nsqrs serve`: opens the broker, binds the TCP and HTTP listeners, logs their
//! addresses the way nsqd does (clients' test harnesses parse those lines), and shuts down
//! gracefully on SIGINT/SIGTERM.

pub mod lookup_peer;
pub mod tcp;

use std::sync::Arc;

use tokio::net::TcpListener;

use crate::broker::Broker;
use crate::options::NsqdOptions;

/// Writes one log line in nsqd's shape: `[nsqd] 2006/01/02 15:04:05.000000 INFO: message`.
pub fn log(prefix: &str, level: &str, msg: &str) {
    let now = chrono::Local::now().format("%Y/%m/%d %H:%M:%S%.6f");
    eprintln!("{prefix}{now} {level}: {msg}");
}

/// Runs the broker until a signal; returns the process exit code.
pub fn run(opts: NsqdOptions) -> i32 {
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("nsqrs: failed to start runtime - {e}");
            return 1;
        }
    };
    runtime.block_on(serve(opts))
}

async fn serve(opts: NsqdOptions) -> i32 {
    let prefix = opts.log_prefix.clone();
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
            crate::broker::NSQ_VERSION,
            env!("CARGO_PKG_VERSION")
        ),
    );
    log(&prefix, "INFO", &format!("ID: {}", broker.opts.node_id));
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
    let http_port = http
        .as_ref()
        .and_then(|l| l.local_addr().ok())
        .map(|a| a.port())
        .unwrap_or(0);
    let tcp_port = tcp.local_addr().map(|a| a.port()).unwrap_or(0);
    broker.start_background();
    let identity = lookup_peer::Identity {
        broadcast_address: broker.opts.broadcast_address.clone(),
        hostname: crate::options::local_hostname(),
        tcp_port: nonzero_or(broker.opts.broadcast_tcp_port, tcp_port),
        http_port: nonzero_or(broker.opts.broadcast_http_port, http_port),
        topology_zone: broker.opts.topology_zone.clone(),
        topology_region: broker.opts.topology_region.clone(),
    };
    broker
        .events
        .set_nsqd_address(format!("{}:{}", identity.broadcast_address, identity.tcp_port));
    let lookup = lookup_peer::LookupPeers::new(broker.clone(), identity);
    lookup.set_addresses(&broker.opts.lookupd_tcp_addresses);
    tokio::spawn(crate::server::tcp::serve(tcp, broker.clone()));
    if let Some(http) = http {
        let addr = http.local_addr().map(|a| a.to_string()).unwrap_or_default();
        log(&prefix, "INFO", &format!("HTTP: listening on {addr}"));
        let app = crate::http::router(crate::http::HttpState {
            broker: broker.clone(),
            lookup: lookup.clone(),
            tcp_port,
            http_port,
        });
        tokio::spawn(async move {
            if let Err(e) = axum::serve(http, app).await {
                eprintln!("[nsqd] ERROR: http server - {e}");
            }
        });
    }
    // Started after nsqd's own listeners are logged, so tools reading the first
    // `TCP: listening on` line find nsqd's.
    let embedded = start_embedded_lookupd(&broker, &lookup, &prefix).await;
    wait_for_signal().await;
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
) -> Option<crate::lookup::Running> {
    let o = &broker.opts;
    if !o.embedded_lookupd || !o.lookupd_tcp_addresses.is_empty() {
        return None;
    }
    let opts = crate::lookup::LookupdOptions {
        tcp_address: o.embedded_lookupd_tcp_address.clone(),
        http_address: o.embedded_lookupd_http_address.clone(),
        broadcast_address: o.broadcast_address.clone(),
        log_level: o.log_level.clone(),
        ..Default::default()
    };
    match crate::lookup::start(Arc::new(opts)).await {
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

/// nsqd registers its broadcast ports, or the bound ones when those are 0.
fn nonzero_or(configured: u16, actual: u16) -> u16 {
    if configured == 0 {
        actual
    } else {
        configured
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("install SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

async fn shutdown(broker: &Arc<Broker>) {
    let broker = broker.clone();
    let _ = tokio::task::spawn_blocking(move || broker.shutdown()).await;
}
