//! `nsqrs bench` on the command line: flags (named after NSQ's bench_writer/bench_reader
//! where they exist), Go-style durations, and turning results or errors into output and
//! an exit code. The benchmark itself is `nsqrs::bench`.

use clap::{Args, ValueEnum};
use nsqrs::bench::{self, null_server, Config, Mode};
use nsqrs::errln;
use nsqrs::protocol::identify::IdentifyRequest;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ModeArg {
    /// MPUB batches on every connection, waiting for each OK (bench_writer)
    Writer,
    /// SUB + RDY on every connection, FIN every message (bench_reader)
    Reader,
    /// Writer and reader at the same time on the same topic
    Both,
    /// Publish at --rate with timestamps in the bodies and measure publish→deliver latency
    Latency,
    /// Serve a storeless V2 endpoint on --listen, to validate the bench and find its ceiling
    NullServer,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Tables for people
    Table,
    /// One JSON object
    Json,
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// <addr>:<port> of the nsqd TCP endpoint to load
    #[arg(long, default_value = "127.0.0.1:4150")]
    pub nsqd_tcp_address: String,
    /// Topic the writers publish to and the readers consume
    #[arg(long, default_value = "sub_bench")]
    pub topic: String,
    /// Channel the readers consume on
    #[arg(long, default_value = "ch")]
    pub channel: String,
    /// Message body size in bytes
    #[arg(long, default_value_t = 200)]
    pub size: usize,
    /// Messages per MPUB (1 publishes with PUB)
    #[arg(long, default_value_t = 200)]
    pub batch_size: usize,
    /// How long to run, Go duration syntax (10s, 500ms, 1m30s)
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub runfor: Duration,
    /// Connections per role [default: number of CPUs]
    #[arg(long)]
    pub connections: Option<usize>,
    /// RDY window of each reader connection
    #[arg(long, default_value_t = 2500)]
    pub rdy: u64,
    /// Latency mode: messages per second to publish [default: 1000]
    #[arg(long)]
    pub rate: Option<u64>,
    /// Stop after this many messages (writers share it out; readers stop once it is reached)
    #[arg(long)]
    pub count: Option<u64>,
    /// What to run
    #[arg(long, value_enum, default_value_t = ModeArg::Both)]
    pub mode: ModeArg,
    /// How the report is printed
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Sample this process's resident memory, now and at its peak (the broker's, say),
    /// during the run
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// IDENTIFY output_buffer_size for every connection (-1 = unbuffered) [default: server's]
    #[arg(long, allow_hyphen_values = true)]
    pub output_buffer_size: Option<i64>,
    /// IDENTIFY output_buffer_timeout, Go duration or -1 to disable [default: server's 250ms]
    #[arg(long, allow_hyphen_values = true, value_parser = parse_buffer_timeout)]
    pub output_buffer_timeout: Option<i64>,
    /// go-nsq option for every connection, for TLS, compression and AUTH (tls_v1,true,
    /// tls_root_ca_file,PATH, snappy,true, deflate,true, auth_secret,S, …); repeatable
    #[arg(long, value_name = "KEY,VALUE")]
    pub client_opt: Vec<String>,
    /// null-server mode: address to listen on (port 0 picks a free one)
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: String,
}

/// Go's `time.ParseDuration` syntax: a sequence of decimal numbers with units
/// (ns, us/µs, ms, s, m, h), e.g. `10s`, `1.5m`, `1m30s`; a bare `0` is allowed.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let invalid = || format!("invalid duration {text:?} (use Go syntax like 10s, 500ms, 1m)");
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let mut rest = text;
    let mut total_ns = 0f64;
    if rest.is_empty() {
        return Err(invalid());
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("missing unit in duration {text:?}"))?;
        let value: f64 = rest[..digits].parse().map_err(|_| invalid())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(invalid()),
        };
        rest = &rest[unit_len..];
        total_ns += value * scale;
    }
    if !total_ns.is_finite() || total_ns > u64::MAX as f64 {
        return Err(invalid());
    }
    Ok(Duration::from_nanos(total_ns.round() as u64))
}

/// IDENTIFY wants milliseconds; -1 is NSQ's "no periodic flush".
fn parse_buffer_timeout(text: &str) -> Result<i64, String> {
    if text == "-1" {
        return Ok(-1);
    }
    Ok(parse_duration(text)?.as_millis() as i64)
}

pub fn run(args: BenchArgs) -> i32 {
    let runtime = match nsqrs::common::process::runtime(None) {
        Ok(rt) => rt,
        Err(e) => {
            errln!("nsqrs bench: cannot start runtime: {e}");
            return 1;
        }
    };
    let result = match args.mode {
        ModeArg::NullServer => runtime.block_on(serve_null(&args)),
        ModeArg::Writer => runtime.block_on(bench_once(&args, Mode::Writer)),
        ModeArg::Reader => runtime.block_on(bench_once(&args, Mode::Reader)),
        ModeArg::Both => runtime.block_on(bench_once(&args, Mode::Both)),
        ModeArg::Latency => runtime.block_on(bench_once(&args, Mode::Latency)),
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            errln!("nsqrs bench: {e}");
            1
        }
    }
}

async fn bench_once(args: &BenchArgs, mode: Mode) -> bench::Result<()> {
    let connections = args
        .connections
        .unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
    // Options that shape a consumer or producer (max_in_flight, backoff…) mean nothing to the
    // bench, which has flags of its own; only the connection's transport is taken.
    const TRANSPORT_KEYS: [&str; 10] = [
        "tls_v1",
        "tls_root_ca_file",
        "tls_insecure_skip_verify",
        "tls_cert",
        "tls_key",
        "tls_min_version",
        "snappy",
        "deflate",
        "deflate_level",
        "auth_secret",
    ];
    if let Some(other) = args
        .client_opt
        .iter()
        .map(|pair| pair.split(',').next().unwrap_or(""))
        .find(|key| !TRANSPORT_KEYS.contains(key))
    {
        return Err(format!(
            "--client-opt: {other:?} is not a transport option (bench takes {})",
            TRANSPORT_KEYS.join(", ")
        )
        .into());
    }
    let transport =
        crate::tools::client_config(&args.client_opt).map_err(|e| format!("--client-opt: {e}"))?;
    let cfg = Config {
        transport,
        mode,
        address: args.nsqd_tcp_address.clone(),
        topic: args.topic.clone(),
        channel: args.channel.clone(),
        size: args.size,
        batch_size: args.batch_size,
        runfor: args.runfor,
        connections,
        rdy: args.rdy,
        rate: args.rate,
        count: args.count,
        server_pid: args.server_pid,
        identify: IdentifyRequest {
            output_buffer_size: args.output_buffer_size.unwrap_or(0),
            output_buffer_timeout: args.output_buffer_timeout.unwrap_or(0),
            ..bench::identify_request()
        },
    };
    let report = bench::run(cfg).await?;
    match args.format {
        Format::Table => outln!("{}", report.to_table().trim_end_matches('\n')),
        Format::Json => outln!("{}", report.to_json()),
    }
    Ok(())
}

/// Serves until SIGINT or SIGTERM; the listening line goes to stderr so a parent process
/// can learn the port when it asked for port 0.
async fn serve_null(args: &BenchArgs) -> bench::Result<()> {
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .map_err(|e| format!("listen on {}: {e}", args.listen))?;
    let addr = listener.local_addr()?;
    errln!("TCP: listening on {addr}");
    let opts = null_server::NullOptions { body_size: args.size };
    tokio::select! {
        served = null_server::serve(listener, opts) => served?,
        signalled = nsqrs::common::process::wait_for_signal() => signalled?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_durations() {
        let cases = [
            ("10s", Duration::from_secs(10)),
            ("500ms", Duration::from_millis(500)),
            ("1m", Duration::from_secs(60)),
            ("1m30s", Duration::from_secs(90)),
            ("1.5h", Duration::from_secs(5400)),
            ("250us", Duration::from_micros(250)),
            ("250µs", Duration::from_micros(250)),
            ("7ns", Duration::from_nanos(7)),
            ("0", Duration::ZERO),
        ];
        for (text, want) in cases {
            assert_eq!(parse_duration(text), Ok(want), "{text}");
        }
        for bad in ["", "10", "s", "10x", "1..5s", "-1s", "ms10"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn buffer_timeout_accepts_minus_one() {
        assert_eq!(parse_buffer_timeout("-1"), Ok(-1));
        assert_eq!(parse_buffer_timeout("25ms"), Ok(25));
        assert!(parse_buffer_timeout("-2").is_err());
    }

    #[test]
    fn cli_shape_is_valid() {
        use clap::CommandFactory;
        #[derive(clap::Parser)]
        struct Wrapper {
            #[command(flatten)]
            args: BenchArgs,
        }
        Wrapper::command().debug_assert();
    }
}
