//! `nsqrs bench`: a load generator and latency meter for any server that speaks NSQ's TCP
//! protocol V2 (Go nsqd as much as nsqrs). This file owns the run configuration and the
//! orchestration of a run; the protocol, the modes and the output live in the submodules.
//!
//! Every run is bounded: loops end by `runfor` or `count`, every wait for a reply has a
//! timeout, and a failed connection ends the run with one error instead of a panic.

// The tools run on this: see crate::console.
#![deny(clippy::print_stdout, clippy::print_stderr)]

pub mod latency;
pub mod load;
pub mod memory;
pub mod null_server;
pub mod report;
use report::{ConfigSummary, Report, ServerSummary, Throughput};
use std::time::Duration;
use tokio::time::Instant;

/// The bench speaks through the client's connection.
pub use crate::client::conn::{Error, Result};
use crate::protocol::identify::{IdentifyRequest, IdentifyResponse};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Writer,
    Reader,
    Both,
    Latency,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Writer => "writer",
            Mode::Reader => "reader",
            Mode::Both => "both",
            Mode::Latency => "latency",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub mode: Mode,
    pub address: String,
    pub topic: String,
    pub channel: String,
    pub size: usize,
    pub batch_size: usize,
    pub runfor: Duration,
    pub connections: usize,
    pub rdy: u64,
    /// Latency mode's publish rate; 1000 msg/s when not given.
    pub rate: Option<u64>,
    pub count: Option<u64>,
    pub server_pid: Option<u32>,
    pub identify: IdentifyRequest,
    /// TLS, compression and AUTH, as go-nsq options set them (`--client-opt`).
    pub transport: crate::client::Config,
}

/// One connection of the run, plain or TLS.
pub type BenchConn = crate::client::conn::Conn<crate::client::connect::Transport>;

/// Connects and negotiates one connection the way `cfg` says.
pub async fn open(
    addr: &str,
    identify: &IdentifyRequest,
    transport: &crate::client::Config,
) -> Result<(BenchConn, IdentifyResponse)> {
    let log = |line: &str| crate::errln!("nsqrs bench: {addr}: {line}");
    let n = crate::client::connect::connect_with(addr, transport, identify, &log).await?;
    Ok((n.conn, n.info))
}

pub const DEFAULT_LATENCY_RATE: u64 = 1000;

/// What the bench announces in IDENTIFY, before its own buffering settings.
pub fn identify_request() -> IdentifyRequest {
    IdentifyRequest::from_client("nsqrs-bench", concat!("nsqrs-bench/", env!("CARGO_PKG_VERSION")))
}

/// NSQ's topic/channel name rule (nsq-reference §1.3). Checked here because a name with a
/// space or newline would corrupt our own command framing before the server could object.
pub fn valid_name(name: &str) -> bool {
    let base = name.strip_suffix("#ephemeral").unwrap_or(name);
    (1..=64).contains(&name.len())
        && !base.is_empty()
        && base
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

impl Config {
    pub fn validate(&self) -> Result<()> {
        let fail = |msg: String| -> Result<()> { Err(msg.into()) };
        if !valid_name(&self.topic) {
            return fail(format!("invalid --topic {:?}", self.topic));
        }
        if !valid_name(&self.channel) {
            return fail(format!("invalid --channel {:?}", self.channel));
        }
        if self.size == 0 {
            return fail("--size must be at least 1 (NSQ rejects empty bodies)".into());
        }
        if self.mode == Mode::Latency && self.size < 8 {
            return fail(
                "--size must be at least 8 in latency mode (the body carries an 8-byte timestamp)".into(),
            );
        }
        if self.batch_size == 0 {
            return fail("--batch-size must be at least 1".into());
        }
        if self.connections == 0 {
            return fail("--connections must be at least 1".into());
        }
        if self.rdy == 0 {
            return fail("--rdy must be at least 1".into());
        }
        if self.runfor.is_zero() {
            return fail("--runfor must be positive".into());
        }
        if self.rate == Some(0) {
            return fail("--rate must be positive".into());
        }
        if self.count == Some(0) {
            return fail("--count must be positive".into());
        }
        Ok(())
    }
}

/// Runs one benchmark to completion and returns its numbers.
pub async fn run(cfg: Config) -> Result<Report> {
    cfg.validate()?;
    let sampler = match cfg.server_pid {
        Some(pid) => Some(memory::Sampler::start(pid)?),
        None => None,
    };
    let mut report = Report {
        mode: cfg.mode.name().to_string(),
        server: ServerSummary {
            address: cfg.address.clone(),
            version: None,
            output_buffer_size: None,
            output_buffer_timeout_ms: None,
        },
        config: ConfigSummary {
            topic: cfg.topic.clone(),
            channel: cfg.channel.clone(),
            size: cfg.size,
            batch_size: cfg.batch_size,
            runfor_secs: cfg.runfor.as_secs_f64(),
            // Latency mode always uses one publisher and one reader connection.
            connections: match cfg.mode {
                Mode::Latency => 1,
                _ => cfg.connections,
            },
            rdy: cfg.rdy,
            rate: match cfg.mode {
                Mode::Latency => Some(cfg.rate.unwrap_or(DEFAULT_LATENCY_RATE)),
                _ => None,
            },
            count: cfg.count,
        },
        writer: None,
        reader: None,
        latency: None,
        server_memory: None,
    };
    let info = match cfg.mode {
        Mode::Latency => {
            let plan = latency::LatencyPlan {
                addr: &cfg.address,
                topic: &cfg.topic,
                channel: &cfg.channel,
                size: cfg.size,
                batch: cfg.batch_size,
                rate: cfg.rate.unwrap_or(DEFAULT_LATENCY_RATE),
                rdy: cfg.rdy,
                count: cfg.count,
                runfor: cfg.runfor,
                identify: &cfg.identify,
                transport: &cfg.transport,
            };
            let (stats, info) = latency::run(plan).await?;
            report.latency = Some((&stats).into());
            info
        }
        mode => {
            let wants_writer = matches!(mode, Mode::Writer | Mode::Both);
            let wants_reader = matches!(mode, Mode::Reader | Mode::Both);
            let mut info = IdentifyResponse::default();
            // Readers subscribe before the clock starts, so `both` never publishes into a
            // channel that does not exist yet.
            let mut subs = Vec::new();
            if wants_reader {
                let (conns, server) =
                    load::open_all(&cfg.address, cfg.connections, &cfg.identify, &cfg.transport).await?;
                info = server;
                for conn in conns {
                    let sub = load::Subscriber::subscribe(
                        conn,
                        &cfg.topic,
                        &cfg.channel,
                        cfg.rdy,
                        load::FlushRule::Nsq,
                    )
                    .await?;
                    subs.push(sub);
                }
            }
            let mut writers = Vec::new();
            if wants_writer {
                let (conns, server) =
                    load::open_all(&cfg.address, cfg.connections, &cfg.identify, &cfg.transport).await?;
                info = server;
                writers = conns;
            }
            let start = Instant::now();
            let deadline = start + cfg.runfor;
            let writer_run = async {
                if wants_writer {
                    let stats = load::run_writers(
                        writers,
                        &cfg.topic,
                        cfg.size,
                        cfg.batch_size,
                        cfg.count,
                        start,
                        deadline,
                    )
                    .await?;
                    Ok::<_, Error>(Some(stats))
                } else {
                    Ok(None)
                }
            };
            let reader_run = async {
                if wants_reader {
                    Ok::<_, Error>(Some(load::run_readers(subs, cfg.count, start, deadline).await?))
                } else {
                    Ok(None)
                }
            };
            let (w, r) = tokio::try_join!(writer_run, reader_run)?;
            report.writer = w.as_ref().map(Throughput::writer);
            report.reader = r.as_ref().map(Throughput::reader);
            info
        }
    };
    report.server.version = info.version;
    report.server.output_buffer_size = info.output_buffer_size;
    report.server.output_buffer_timeout_ms = info.output_buffer_timeout;
    if let Some(sampler) = sampler {
        report.server_memory = Some((&sampler.finish().await).into());
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_nsq_rules() {
        for ok in ["sub_bench", "a", "a.b-c_D9", "t#ephemeral", &"x".repeat(64)] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in ["", "a b", "a\nb", "#ephemeral", "t#eph", &"x".repeat(65)] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    fn config(mode: Mode, address: String) -> Config {
        Config {
            mode,
            address,
            topic: "t".into(),
            channel: "c".into(),
            size: 100,
            batch_size: 50,
            runfor: Duration::from_millis(300),
            connections: 2,
            rdy: 100,
            rate: Some(2000),
            count: None,
            server_pid: Some(std::process::id()),
            identify: identify_request(),
            transport: crate::client::Config::default(),
        }
    }

    async fn null_server() -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let opts = null_server::NullOptions { body_size: 100 };
        tokio::spawn(null_server::serve(listener, opts));
        addr
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_mode_runs_against_the_null_server() {
        let addr = null_server().await;
        let both = run(config(Mode::Both, addr.clone())).await.unwrap();
        let (w, r) = (both.writer.unwrap(), both.reader.unwrap());
        assert!(w.messages > 0 && w.msgs_per_sec > 0.0 && w.us_per_op.unwrap() > 0.0);
        assert!(r.messages > 0 && r.mib_per_sec > 0.0);
        assert_eq!(
            both.server.version.as_deref(),
            Some(concat!(env!("CARGO_PKG_VERSION"), "-null"))
        );
        assert!(both.server_memory.unwrap().rss_peak_kib > 0);

        let mut counted = config(Mode::Writer, addr.clone());
        counted.count = Some(1234);
        counted.runfor = Duration::from_secs(10);
        assert_eq!(run(counted).await.unwrap().writer.unwrap().messages, 1234);

        let mut counted = config(Mode::Reader, addr.clone());
        counted.count = Some(500);
        counted.runfor = Duration::from_secs(10);
        let started = std::time::Instant::now();
        assert!(run(counted).await.unwrap().reader.unwrap().messages >= 500);
        assert!(started.elapsed() < Duration::from_secs(5));

        // The null server stamps its synthetic bodies, so latency samples arrive.
        let lat = run(config(Mode::Latency, addr)).await.unwrap().latency.unwrap();
        assert!(lat.published > 0 && lat.received > 0);
        assert!(lat.p50_us <= lat.p99_us && lat.p99_us <= lat.max_us);
    }

    #[tokio::test]
    async fn refused_connection_is_one_clear_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        drop(listener);
        let mut cfg = config(Mode::Writer, addr.clone());
        cfg.server_pid = None;
        let err = run(cfg).await.unwrap_err().to_string();
        assert!(err.starts_with(&format!("connect to {addr}: ")), "{err}");
        assert!(!err.contains('\n'));
    }
}
