//! The `nsqrs` binary's command line, seen from outside: the `nsqd` role taken from the program
//! name, version strings, and how errors reach scripts (one stderr line, exit status 2).
//!
//! A command line that parses starts a real broker; what it resolved to is read back through
//! nsqd's `GET /config/:opt`.

use nsqrs_testkit::{bin, Nsqd};

use std::path::PathBuf;
use std::process::{Command, Output};

/// A directory holding a symlink named `nsqd` to the built binary.
fn nsqd_link() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("nsqd");
    std::os::unix::fs::symlink(bin(), &link).unwrap();
    (dir, link)
}

fn run(program: &std::path::Path, args: &[&str]) -> Output {
    Command::new(program).args(args).output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn nsqd_version() -> String {
    format!("nsqd v1.3.0 (built w/nsqrs-{})\n", env!("CARGO_PKG_VERSION"))
}

#[test]
fn nsqd_symlink_prints_nsqds_version() {
    let (_dir, nsqd) = nsqd_link();
    for flag in ["--version", "-version"] {
        let out = run(&nsqd, &[flag]);
        assert_eq!(out.status.code(), Some(0), "{flag}");
        assert_eq!(text(&out.stdout), nsqd_version(), "{flag}");
    }
}

#[test]
fn nsqd_symlink_reads_go_flag_syntax() {
    let (dir, nsqd) = nsqd_link();
    let args: Vec<String> = [
        "-tcp-address=127.0.0.1:0",
        "-http-address",
        "127.0.0.1:0",
        "--snappy",
        "--mem-queue-size",
        "5",
        "--verbose",
        "-msg-timeout=90s",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([format!("-data-path={}", dir.path().display())])
    .collect();
    let n = Nsqd::launch(&nsqd, &args, dir.path());
    assert_eq!(n.config("mem_queue_size"), 5);
    assert_eq!(n.config("snappy"), true);
    assert_eq!(n.config("msg_timeout"), 90_000_000_000u64);
}

#[test]
fn serve_subcommand_reads_go_flag_syntax() {
    let dir = tempfile::tempdir().unwrap();
    let args: Vec<String> = [
        "serve",
        "-http-address",
        "127.0.0.1:0",
        "-tcp-address=127.0.0.1:0",
        "-deflate=false",
        "-embedded-lookupd-tcp-address=127.0.0.1:0",
        "-embedded-lookupd-http-address",
        "127.0.0.1:0",
        "-embedded-admin-http-address",
        "127.0.0.1:0",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([format!("--data-path={}", dir.path().display())])
    .collect();
    let n = Nsqd::launch(&bin(), &args, dir.path());
    assert_eq!(n.config("deflate"), false);
    // `serve` registers with its embedded lookupd.
    let peers = n.config("nsqlookupd_tcp_addresses");
    let peers = peers.as_array().unwrap();
    assert_eq!(peers.len(), 1);
    assert!(peers[0].as_str().unwrap().starts_with("127.0.0.1:"), "{peers:?}");
}

#[test]
fn version_strings() {
    let out = run(&bin(), &["serve", "--version"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(text(&out.stdout), nsqd_version());

    let out = run(&bin(), &["--version"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        text(&out.stdout),
        format!("nsqrs {}\n", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn resolution_errors_are_one_stderr_line_and_exit_2() {
    let (_dir, nsqd) = nsqd_link();
    for (program, args, want) in [
        (
            nsqd.as_path(),
            &["-max-deflate-level", "0"][..],
            "--max-deflate-level must be [1,9]",
        ),
        (&bin(), &["serve", "--node-id=1024"], "--node-id must be [0,1024)"),
        (
            &bin(),
            &["serve", "--tls-required"],
            "cannot require TLS client connections without TLS key and cert",
        ),
    ] {
        let out = run(program, args);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.contains(want), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn config_file_is_read_and_flags_win() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("nsqd.toml");
    std::fs::write(
        &cfg,
        "mem_queue_size = 77\ntcp_address = \"127.0.0.1:1\"\nmax_rdy_count = 9\nembedded_lookupd = false\nembedded_admin = false\n",
    )
    .unwrap();
    let args: Vec<String> = vec![
        "serve".into(),
        "-config".into(),
        cfg.to_str().unwrap().into(),
        "-tcp-address=127.0.0.1:0".into(),
        "-http-address=127.0.0.1:0".into(),
        "-max-rdy-count=11".into(),
        format!("-data-path={}", dir.path().display()),
    ];
    let n = Nsqd::launch(&bin(), &args, dir.path());
    assert_eq!(n.config("mem_queue_size"), 77);
    assert_eq!(n.config("nsqlookupd_tcp_addresses"), serde_json::json!([]));
    assert_eq!(n.config("max_rdy_count"), 11);
    assert!(n.tcp.starts_with("127.0.0.1:") && n.tcp != "127.0.0.1:1");
}

#[test]
fn usage_errors_exit_2() {
    let (_dir, nsqd) = nsqd_link();
    let out = run(&nsqd, &["--no-such-flag"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--no-such-flag"));
    let out = run(&bin(), &["serve", "--msg-timeout", "60"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("missing unit"));
}

#[test]
fn help_works_in_go_spelling() {
    let (_dir, nsqd) = nsqd_link();
    let out = run(&nsqd, &["-help"]);
    assert_eq!(out.status.code(), Some(0));
    let help = text(&out.stdout);
    assert!(help.contains("--lookupd-tcp-address"), "{help}");
    assert!(help.contains("--e2e-processing-latency-percentile"), "{help}");
}
