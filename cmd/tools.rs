//! What the client tools share on the command line: Go flag syntax, the one-line error
//! contract, output that ends quietly when its reader goes away, the runtime they run on,
//! and go-nsq option pairs.

use std::io::Write;

use nsqrs::client::Config;
use nsqrs::common::goflags::normalize_go_args;
use nsqrs::errln;

/// `println!` for a tool's output: see `out_line`. Every line the binary prints goes through
/// it (clippy's `print_stdout` lint, denied in main.rs, keeps it that way).
macro_rules! outln {
    () => {
        $crate::tools::out_line(format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::tools::out_line(format_args!($($arg)*))
    };
}

/// Writes one line of output. Output is what a tool is for: once its reader has gone
/// (`nsqrs trace … | head -1`), there is nothing left to do, and the process ends quietly
/// with status 0, as `tail` and `stat` end. Rust ignores SIGPIPE (a vectored write to a reset
/// TCP connection would raise it too), so the closed pipe arrives here as an EPIPE error
/// rather than as a signal. Any other write error (a full disk) is one error line and status 1.
pub fn out_line(args: std::fmt::Arguments) {
    let mut out = std::io::stdout().lock();
    let written = out
        .write_fmt(args)
        .and_then(|_| out.write_all(b"\n"))
        .and_then(|_| out.flush());
    if let Err(e) = written {
        std::process::exit(match e.kind() {
            std::io::ErrorKind::BrokenPipe => 0,
            _ => fail(format!("writing output: {e}")),
        });
    }
}

/// The subcommands that imitate a Go tool, with the flags Go treats as booleans.
pub fn go_bool_flags(subcommand: &str) -> Option<&'static [&'static str]> {
    match subcommand {
        "pub" => Some(&["version"]),
        "tail" => Some(&["print-topic", "version"]),
        "to-file" => Some(&["gzip", "skip-empty-files", "version"]),
        "stat" => Some(&["replication", "version"]),
        "to-db" => Some(&["events"]),
        "replay" => Some(&["dry-run"]),
        "to-nsq" | "to-http" => Some(&["version"]),
        _ => None,
    }
}

/// Subcommands whose parse errors are reduced to one stderr line: the Go-style tools, and
/// `trace`, `topic` and `channel`, which take positional arguments first and so keep clap's
/// own syntax (Go stops reading flags at the first positional argument).
pub fn one_line_errors(subcommand: &str) -> bool {
    go_bool_flags(subcommand).is_some() || matches!(subcommand, "trace" | "topic" | "channel" | "adopt")
}

/// Rewrites a tool's arguments from Go flag syntax; `None` for other subcommands.
pub fn normalize_tool_args(subcommand: &str, args: &[String]) -> Option<Vec<String>> {
    go_bool_flags(subcommand).map(|bools| normalize_go_args(args, bools))
}

/// The version line the Go tools print, naming nsqrs.
pub fn tool_version(tool: &str) -> String {
    format!("{tool} v1.3.0 (built w/nsqrs-{})", env!("CARGO_PKG_VERSION"))
}

pub use nsqrs::common::console::count;

/// Reports a failure the way scripts expect: one stderr line, exit status 1.
pub fn fail(msg: impl std::fmt::Display) -> i32 {
    errln!("error: {}", msg.to_string().replace('\n', " "));
    1
}

/// A usage error found after parsing: one stderr line, exit status 2 like clap's.
pub fn usage(msg: impl std::fmt::Display) -> i32 {
    errln!("error: {}", msg.to_string().replace('\n', " "));
    2
}

/// The runtime every tool runs on: two workers are plenty for a handful of connections.
pub fn runtime() -> tokio::runtime::Runtime {
    nsqrs::common::process::runtime(Some(2)).expect("build tokio runtime")
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

/// `client_config` for the tools that forward messages (to-nsq, to-http): they finish a
/// message only once it is delivered, and go-nsq's default of giving up after 5 attempts
/// would finish undelivered ones, so they never give up unless `max_attempts` is set.
pub fn relay_config(opts: &[String]) -> Result<Config, String> {
    let mut config = Config {
        max_attempts: 0,
        ..Config::default()
    };
    for pair in opts {
        config.set_opt(pair)?;
    }
    config.validate()?;
    Ok(config)
}

/// The nsq tools' source rule: exactly one of the two address kinds, lookupd's in a form
/// `check_http_addresses` takes.
pub fn check_sources(nsqd: &[String], lookupd: &[String]) -> Result<(), String> {
    match (nsqd.is_empty(), lookupd.is_empty()) {
        (true, true) => Err("--nsqd-tcp-address or --lookupd-http-address required".into()),
        (false, false) => Err("use --nsqd-tcp-address or --lookupd-http-address not both".into()),
        _ => check_http_addresses("--lookupd-http-address", lookupd),
    }
}

/// Every tool takes an HTTP address as `host:port` or `http://host:port`.
pub fn check_http_addresses(flag: &str, addrs: &[String]) -> Result<(), String> {
    for a in addrs {
        nsqrs::common::http_client::check_http_address(a).map_err(|e| format!("{flag}: {e}"))?;
    }
    Ok(())
}
