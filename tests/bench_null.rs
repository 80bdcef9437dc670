//! End to end through the real binary: `nsqrs bench --mode null-server` on an ephemeral
//! port, then `nsqrs bench` runs against it as a separate process and its JSON is checked.

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use nsqrs_testkit::{bin, run_tool, Daemon};

/// Starts the null server and returns it with the address it printed on stderr.
fn start_null_server() -> (Daemon, String) {
    let mut cmd = Command::new(bin());
    cmd.args(["bench", "--mode", "null-server", "--listen", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    let mut server = Daemon::spawn(cmd, "null-server");
    let addr = server.listeners(&["TCP"], &[]).remove(0).1;
    (server, addr)
}

/// Runs the bench binary with a hard time limit.
fn bench(args: &[&str], limit: Duration) -> Output {
    let argv: Vec<&str> = std::iter::once("bench").chain(args.iter().copied()).collect();
    run_tool(&argv, b"", limit)
}

fn json(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "bench failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("bench printed JSON")
}

#[test]
fn both_mode_reports_positive_rates_against_null_server() {
    let (_server, addr) = start_null_server();
    let out = bench(
        &[
            "--nsqd-tcp-address",
            &addr,
            "--mode",
            "both",
            "--runfor",
            "1s",
            "--format",
            "json",
        ],
        Duration::from_secs(30),
    );
    let report = json(&out);
    assert_eq!(report["mode"], "both");
    for role in ["writer", "reader"] {
        let rate = report[role]["msgs_per_sec"].as_f64().unwrap_or_default();
        let mib = report[role]["mib_per_sec"].as_f64().unwrap_or_default();
        assert!(rate > 0.0 && mib > 0.0, "{role}: {}", report[role]);
    }
    assert!(report["writer"]["us_per_op"].as_f64().unwrap_or_default() > 0.0);
    // Publish latency: each batch's time to its OK.
    let p50 = report["writer"]["ok_p50_us"].as_f64().unwrap_or_default();
    let p99 = report["writer"]["ok_p99_us"].as_f64().unwrap_or_default();
    assert!(p50 > 0.0 && p99 >= p50, "{}", report["writer"]);
}

#[test]
fn latency_and_memory_are_reported() {
    let (server, addr) = start_null_server();
    let pid = server.id().to_string();
    let out = bench(
        &[
            "--nsqd-tcp-address",
            &addr,
            "--mode",
            "latency",
            "--runfor",
            "500ms",
            "--rate",
            "200",
            "--format",
            "json",
            "--server-pid",
            &pid,
        ],
        Duration::from_secs(30),
    );
    let report = json(&out);
    let latency = &report["latency"];
    assert!(latency["published"].as_u64().unwrap_or_default() > 0, "{latency}");
    for key in ["p50_us", "p99_us", "p999_us", "max_us"] {
        assert!(latency[key].as_f64().is_some(), "{key} missing: {latency}");
    }
    assert!(
        report["server_memory"]["rss_peak_kib"]
            .as_u64()
            .unwrap_or_default()
            > 0
    );
}

#[test]
fn unreachable_server_is_one_error_line_and_non_zero_exit() {
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("bind probe");
        probe.local_addr().expect("probe addr").port()
    };
    let addr = format!("127.0.0.1:{port}");
    let out = bench(
        &["--nsqd-tcp-address", &addr, "--runfor", "1s"],
        Duration::from_secs(30),
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with(&format!("nsqrs bench: connect to {addr}")),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
}
