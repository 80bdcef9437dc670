//! Log lines in nsqd's shape: `[nsqd] 2006/01/02 15:04:05.000000 INFO: message`.

/// Writes one log line in nsqd's shape: `[nsqd] 2006/01/02 15:04:05.000000 INFO: message`.
pub fn log(prefix: &str, level: &str, msg: &str) {
    let now = chrono::Local::now().format("%Y/%m/%d %H:%M:%S%.6f");
    eprintln!("{prefix}{now} {level}: {msg}");
}

/// Parses `--log-level` as nsqd does (case-insensitive), keeping it lower-case.
pub fn parse_log_level(s: &str) -> Result<String, String> {
    let level = s.to_ascii_lowercase();
    match level.as_str() {
        "debug" | "info" | "warn" | "error" | "fatal" => Ok(level),
        _ => Err(format!(
            "invalid log-level {s:?} (use debug, info, warn, error or fatal)"
        )),
    }
}
