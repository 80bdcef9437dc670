//! What the client tools (`pub`, `tail`, `to-file`, `stat`) share on the command line: Go
//! flag syntax, the one-line error contract, the runtime they run on, go-nsq option pairs,
//! and waiting for SIGINT/SIGTERM.

use nsqrs::client::Config;
use nsqrs::goflags::normalize_go_args;

/// The subcommands that imitate a Go tool, with the flags Go treats as booleans.
pub fn go_bool_flags(subcommand: &str) -> Option<&'static [&'static str]> {
    match subcommand {
        "pub" => Some(&["version"]),
        "tail" => Some(&["print-topic", "version"]),
        "to-file" => Some(&["gzip", "skip-empty-files", "version"]),
        "stat" => Some(&["replication", "version"]),
        "to-db" => Some(&["events"]),
        "replay" => Some(&["dry-run"]),
        _ => None,
    }
}

/// Subcommands whose parse errors are reduced to one stderr line: the Go-style tools, and
/// `trace`, which takes its message ID first and so keeps clap's own syntax (Go stops reading
/// flags at the first positional argument).
pub fn one_line_errors(subcommand: &str) -> bool {
    go_bool_flags(subcommand).is_some() || subcommand == "trace" || subcommand == "adopt"
}

/// Rewrites a tool's arguments from Go flag syntax; `None` for other subcommands.
pub fn normalize_tool_args(subcommand: &str, args: &[String]) -> Option<Vec<String>> {
    go_bool_flags(subcommand).map(|bools| normalize_go_args(args, bools))
}

/// The version line the Go tools print, naming nsqrs.
pub fn tool_version(tool: &str) -> String {
    format!("{tool} v1.3.0 (built w/nsqrs-{})", env!("CARGO_PKG_VERSION"))
}

/// Reports a failure the way scripts expect: one stderr line, exit status 1.
pub fn fail(msg: impl std::fmt::Display) -> i32 {
    eprintln!("error: {}", msg.to_string().replace('\n', " "));
    1
}

/// A usage error found after parsing: one stderr line, exit status 2 like clap's.
pub fn usage(msg: impl std::fmt::Display) -> i32 {
    eprintln!("error: {}", msg.to_string().replace('\n', " "));
    2
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("build tokio runtime")
}

/// go-nsq defaults, then `--consumer-opt`/`--producer-opt` pairs, checked together (TLS
/// files are read here, so a wrong path fails before anything connects).
pub fn client_config(opts: &[String]) -> Result<Config, String> {
    let mut config = Config::default();
    for pair in opts {
        config.set_opt(pair)?;
    }
    config.validate()?;
    Ok(config)
}

/// The nsq tools' source rule: exactly one of the two address kinds.
pub fn check_sources(nsqd: &[String], lookupd: &[String]) -> Result<(), String> {
    match (nsqd.is_empty(), lookupd.is_empty()) {
        (true, true) => Err("--nsqd-tcp-address or --lookupd-http-address required".into()),
        (false, false) => Err("use --nsqd-tcp-address or --lookupd-http-address not both".into()),
        _ => Ok(()),
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn terminated() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("install SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
