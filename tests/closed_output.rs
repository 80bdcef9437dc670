//! Every tool when the reader of its output goes away (`nsqrs trace … | head -1`): it ends
//! quietly with its normal status instead of panicking on the closed pipe, and a closed
//! stderr only loses diagnostics, never the work (an archiver keeps archiving).
//!
//! The pipes here are closed before the tool starts, so every write meets EPIPE: the test
//! cannot pass by the tool writing into a buffer before the reader left.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use nsqrs_testkit::{bin, wait_bounded, wait_exit, wait_for, Nsqd};

const LIMIT: Duration = Duration::from_secs(30);

/// The write end of a pipe whose reader is already gone.
fn closed_pipe() -> std::io::PipeWriter {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    writer
}

/// Runs `nsqrs args` with stdout closed; returns its exit status and stderr.
fn with_closed_stdout(args: &[&str]) -> (Option<i32>, String) {
    let child = Command::new(bin())
        .args(args)
        .stdin(Stdio::null())
        .stdout(closed_pipe())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = wait_bounded(child, LIMIT);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn assert_quiet(args: &[&str]) {
    let (code, err) = with_closed_stdout(args);
    assert_eq!(code, Some(0), "nsqrs {args:?} with stdout closed: {err}");
    assert!(!err.contains("panicked"), "nsqrs {args:?}: {err}");
}

/// Starts `nsqrs args` with stdout and stderr closed (a daemon whose log reader died).
fn spawn_with_closed_stderr(args: &[&str]) -> Child {
    Command::new(bin())
        .args(args)
        .stdin(Stdio::null())
        .stdout(closed_pipe())
        .stderr(closed_pipe())
        .spawn()
        .unwrap()
}

fn terminate(mut child: Child) -> Option<i32> {
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    wait_exit(&mut child, LIMIT).unwrap_or_else(|e| panic!("after SIGTERM: {e}"))
}

fn publish(n: &Nsqd, topic: &str, bodies: &[&str]) {
    let mut c = n.connect();
    let bodies: Vec<Vec<u8>> = bodies.iter().map(|b| b.as_bytes().to_vec()).collect();
    c.mpub(topic, &bodies);
    c.expect_ok();
}

fn message_count(n: &Nsqd, topic: &str) -> i64 {
    n.stats()["topics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["topic_name"] == topic)
        .map_or(0, |t| t["message_count"].as_i64().unwrap())
}

fn archived(db: &Path) -> i64 {
    rusqlite::Connection::open(db)
        .and_then(|c| c.query_row("SELECT COUNT(*) FROM messages", [], |r| r.get(0)))
        .unwrap_or(0)
}

#[test]
fn version_lines_of_every_role() {
    for tool in [
        "serve", "lookupd", "pub", "tail", "to-file", "stat", "to-nsq", "to-http",
    ] {
        assert_quiet(&[tool, "--version"]);
    }
    assert_quiet(&["--version"]);
    assert_quiet(&["trace", "--help"]);
}

#[test]
fn pub_publishes_everything_and_ends_quietly() {
    let n = Nsqd::start(&[]);
    assert_quiet(&["pub", "--topic", "t", "--nsqd-tcp-address", &n.tcp, "a", "b", "c"]);
    assert_eq!(message_count(&n, "t"), 3);
}

#[test]
fn tail_and_stat_end_quietly() {
    let n = Nsqd::start(&[]);
    n.post("/topic/create?topic=t", b"");
    n.post("/channel/create?topic=t&channel=c", b"");
    publish(&n, "t", &["a", "b", "c"]);
    assert_quiet(&[
        "tail",
        "--topic",
        "t",
        "--channel",
        "c",
        "--nsqd-tcp-address",
        &n.tcp,
        "-n",
        "3",
    ]);
    assert_quiet(&[
        "stat",
        "--topic",
        "t",
        "--channel",
        "c",
        "--nsqd-http-address",
        &n.http,
        "--interval",
        "100ms",
        "--count",
        "1",
    ]);
}

#[test]
fn bench_ends_quietly() {
    let n = Nsqd::start(&[]);
    assert_quiet(&[
        "bench",
        "--nsqd-tcp-address",
        &n.tcp,
        "--mode",
        "writer",
        "--runfor",
        "200ms",
        "--size",
        "10",
    ]);
}

/// to-db with stderr closed archives and warns (an unreadable events line) without dying,
/// then trace and replay print into closed pipes.
#[test]
fn to_db_trace_and_replay() {
    let n = Nsqd::start(&["--lifecycle-events=off"]);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("a.db");
    let db_arg = db.to_str().unwrap();
    let to_db = spawn_with_closed_stderr(&[
        "to-db",
        "--topic",
        "t",
        "--nsqd-tcp-address",
        &n.tcp,
        "--db",
        db_arg,
        "--events",
        "--flush-interval=100ms",
    ]);
    wait_for("to-db on the events topic", LIMIT, || n.events_archivers() == 1);
    // An unreadable line makes to-db warn on its (closed) stderr.
    publish(&n, "nsqrs.events", &["not json"]);
    publish(&n, "t", &["one", "two"]);
    wait_for("two archived messages", LIMIT, || archived(&db) == 2);
    assert_eq!(terminate(to_db), Some(0));

    let id: String = rusqlite::Connection::open(&db)
        .unwrap()
        .query_row("SELECT id FROM messages LIMIT 1", [], |r| r.get(0))
        .unwrap();
    assert_quiet(&["trace", &id, "--db", db_arg]);
    assert_quiet(&["trace", "--grep", "o", "--db", db_arg]);
    assert_quiet(&[
        "replay",
        "--topic",
        "t",
        "--since",
        "1h",
        "--db",
        db_arg,
        "--dry-run",
    ]);
}

/// to-file logs every file it opens (`--log-level info`, the default): with nobody reading
/// its stderr, it still archives every message.
#[test]
fn to_file_keeps_archiving_with_stderr_closed() {
    let n = Nsqd::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap();
    let to_file = spawn_with_closed_stderr(&[
        "to-file",
        "--topic",
        "t",
        "--nsqd-tcp-address",
        &n.tcp,
        "--output-dir",
        out,
        "--sync-interval",
        "100ms",
    ]);
    publish(&n, "t", &["a", "b", "c"]);
    let lines = || -> usize {
        std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| std::fs::read_to_string(e.unwrap().path()).ok())
            .map(|s| s.lines().count())
            .sum()
    };
    wait_for("three archived lines", LIMIT, || lines() == 3);
    assert_eq!(terminate(to_file), Some(0));
    assert_eq!(lines(), 3);
}
