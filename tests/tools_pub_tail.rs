//! `nsqrs pub` and `nsqrs tail` as a user runs them, against the real broker: what they
//! print, what lands in /stats, and how bad command lines fail.

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use nsqrs_testkit::{bin, run_tool as run, wait_bounded, wait_for, Nsqd};

/// The `OK <count> <nsqd>` summary lines of `nsqrs pub`, after checking that every other line
/// is a message ID nsqrs returned (prefixed with the nsqd when there are several).
fn summary(out: &Output, nsqds: usize) -> String {
    let stdout = text(&out.stdout);
    let mut summary = String::new();
    for line in stdout.lines() {
        if line.starts_with("OK ") {
            summary.push_str(line);
            summary.push('\n');
            continue;
        }
        let id = if nsqds > 1 {
            line.rsplit(' ').next().unwrap()
        } else {
            line
        };
        assert!(
            id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()),
            "not an ID: {line:?}"
        );
    }
    summary
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn topic(n: &Nsqd, name: &str) -> serde_json::Value {
    n.stats()["topics"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|t| t["topic_name"] == name)
        .cloned()
        .unwrap_or(serde_json::Value::Null)
}

const LIMIT: Duration = Duration::from_secs(20);

#[test]
fn pub_from_arguments() {
    let n = Nsqd::start(&[]);
    let out = run(
        &["pub", "--topic", "t", "--nsqd-tcp-address", &n.tcp, "a", "b", "c"],
        b"",
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(summary(&out, 1), format!("OK 3 {}\n", n.tcp));
    assert_eq!(topic(&n, "t")["message_count"], 3);
}

#[test]
fn pub_from_stdin_to_every_nsqd_in_batches() {
    let a = Nsqd::start(&[]);
    let b = Nsqd::start(&[]);
    let mut input = Vec::new();
    for i in 0..1000 {
        input.extend_from_slice(format!("message {i}\n").as_bytes());
    }
    input.extend_from_slice(b"\n\nlast-without-newline");
    let out = run(
        &[
            "pub",
            "-topic=t",
            "-nsqd-tcp-address",
            &a.tcp,
            "--nsqd-tcp-address",
            &b.tcp,
            "--batch-size=64",
        ],
        &input,
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        summary(&out, 2),
        format!("OK 1001 {}\nOK 1001 {}\n", a.tcp, b.tcp)
    );
    for n in [&a, &b] {
        assert_eq!(topic(n, "t")["message_count"], 1001, "empty chunks are skipped");
    }
}

#[test]
fn pub_with_a_delimiter_and_defer() {
    let n = Nsqd::start(&[]);
    // A channel first, so deferred messages are counted where they wait.
    let (code, body) = n.post("/topic/create?topic=t", b"");
    assert_eq!(code, 200, "{body}");
    let (code, body) = n.post("/channel/create?topic=t&channel=c", b"");
    assert_eq!(code, 200, "{body}");
    let out = run(
        &[
            "pub",
            "--topic=t",
            "--nsqd-tcp-address",
            &n.tcp,
            "--delimiter=,",
            "--defer=1h",
        ],
        b"x,y,z",
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(summary(&out, 1), format!("OK 3 {}\n", n.tcp));
    let ch = &topic(&n, "t")["channels"][0];
    assert_eq!(ch["deferred_count"], 3, "{ch}");
}

#[test]
fn pub_to_a_dead_nsqd_fails_in_one_line() {
    let out = run(
        &["pub", "--topic=t", "--nsqd-tcp-address=127.0.0.1:1", "x"],
        b"",
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("127.0.0.1:1"), "{err}");
}

/// A message the broker refuses stops pub: what was acknowledged before it is printed as
/// for a success (IDs, then `OK <count>`), the refusal is one error line, the status is 1.
#[test]
fn pub_refused_mid_stream_reports_what_was_published() {
    let n = Nsqd::start(&["--max-msg-size=100"]);
    let big = "x".repeat(200);
    let input = format!("a\nb\nc\n{big}\n");
    let out = run(
        &["pub", "--topic=t", "--nsqd-tcp-address", &n.tcp, "--batch-size=1"],
        input.as_bytes(),
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert_eq!(summary(&out, 1), format!("OK 3 {}\n", n.tcp));
    assert_eq!(text(&out.stdout).lines().count(), 4, "three IDs and the count");
    let err = text(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("E_BAD_MESSAGE"), "{err}");
    assert!(err.contains("stopped with 3 messages published"), "{err}");
    assert_eq!(topic(&n, "t")["message_count"], 3);

    // With messages after the refused one, whatever is reported is exactly what the broker
    // holds, in MPUB batches as well.
    for batch in ["--batch-size=1", "--batch-size=2"] {
        let n = Nsqd::start(&["--max-msg-size=100"]);
        let input = format!("a\nb\nc\nd\n{big}\ne\nf\n");
        let out = run(
            &["pub", "--topic=t", "--nsqd-tcp-address", &n.tcp, batch],
            input.as_bytes(),
            LIMIT,
        );
        assert_eq!(out.status.code(), Some(1), "{batch}");
        let held = topic(&n, "t")["message_count"].as_u64().unwrap_or(0);
        assert_eq!(summary(&out, 1), format!("OK {held} {}\n", n.tcp), "{batch}");
        assert_eq!(text(&out.stdout).lines().count() as u64, held + 1, "{batch}");
    }
}

fn publish(n: &Nsqd, bodies: &[&[u8]]) {
    let mut c = n.connect();
    let bodies: Vec<Vec<u8>> = bodies.iter().map(|b| b.to_vec()).collect();
    c.mpub("t", &bodies);
    c.expect_ok();
}

#[test]
fn tail_n_prints_bodies_and_exits() {
    let n = Nsqd::start(&[]);
    publish(&n, &[b"one", b"two", b"three", b"four", b"five"]);
    let out = run(
        &[
            "tail",
            "--topic=t",
            "--channel=c",
            "--nsqd-tcp-address",
            &n.tcp,
            "-n",
            "3",
        ],
        b"",
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "one\ntwo\nthree\n");
    let ch = &topic(&n, "t")["channels"][0];
    // Three finished; the rest are back in the queue, not stuck in flight.
    assert_eq!(ch["depth"], 2, "{ch}");
    assert_eq!(ch["in_flight_count"], 0, "{ch}");
}

#[test]
fn tail_json_carries_metadata_and_base64_for_binary() {
    let n = Nsqd::start(&[]);
    publish(&n, &[b"hello", &[0xff, 0x00, 0xfe]]);
    let out = run(
        &[
            "tail",
            "--topic=t",
            "--nsqd-tcp-address",
            &n.tcp,
            "-n=2",
            "--format=json",
            "--print-topic",
        ],
        b"",
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let lines: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    let first = &lines[0];
    assert_eq!(first["topic"], "t");
    assert_eq!(first["body"], "hello");
    assert_eq!(first["body_base64"], false);
    assert_eq!(first["attempts"], 1);
    assert_eq!(first["nsqd_address"], n.tcp.as_str());
    assert_eq!(first["id"].as_str().unwrap().len(), 16);
    let ts = first["timestamp"].as_i64().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    assert!(
        (now - ts).abs() < 60_000_000_000,
        "timestamp is ns since the epoch"
    );
    assert_eq!(lines[1]["body"], "/wD+");
    assert_eq!(lines[1]["body_base64"], true);
}

#[test]
fn tail_print_topic_prefixes_raw_lines() {
    let n = Nsqd::start(&[]);
    publish(&n, &[b"x"]);
    let out = run(
        &[
            "tail",
            "-topic",
            "t",
            "-nsqd-tcp-address",
            &n.tcp,
            "-n",
            "1",
            "-print-topic",
        ],
        b"",
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "t | x\n");
}

#[test]
fn tail_stops_on_sigterm() {
    let n = Nsqd::start(&[]);
    let child = Command::new(bin())
        .args(["tail", "--topic=t", "--nsqd-tcp-address", &n.tcp])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("tail to subscribe", Duration::from_secs(20), || {
        topic(&n, "t")["channels"][0]["client_count"] == 1
    });
    let channel = topic(&n, "t")["channels"][0]["channel_name"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        channel.starts_with("tail") && channel.ends_with("#ephemeral") && channel.len() == 20,
        "{channel}"
    );
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = wait_bounded(child, LIMIT);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

#[test]
fn bad_flags_give_one_error_line() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["tail", "--topic=t"],
            "--nsqd-tcp-address or --lookupd-http-address required",
        ),
        (
            &[
                "tail",
                "--topic=t",
                "--nsqd-tcp-address=a:1",
                "--lookupd-http-address=b:2",
            ],
            "not both",
        ),
        (&["tail", "--nsqd-tcp-address=a:1"], "--topic"),
        (
            &["tail", "--topic=t", "--nsqd-tcp-address=a:1", "--max-in-flight=x"],
            "max-in-flight",
        ),
        (
            &[
                "tail",
                "--topic=t",
                "--nsqd-tcp-address=a:1",
                "--consumer-opt=tls_min_version,ssl3.0",
            ],
            "tls_min_version",
        ),
        (&["pub", "--nsqd-tcp-address=a:1", "x"], "--topic"),
        (&["pub", "--topic=t", "x"], "--nsqd-tcp-address required"),
        (
            &["pub", "--topic=t", "--nsqd-tcp-address=a:1", "--delimiter=ab"],
            "single byte",
        ),
        (
            &["pub", "--topic=t", "--nsqd-tcp-address=a:1", "--defer=5"],
            "defer",
        ),
        (
            &[
                "pub",
                "--topic=t",
                "--nsqd-tcp-address=a:1",
                "--producer-opt=snappy,true",
                "--producer-opt=deflate,true",
            ],
            "snappy and deflate",
        ),
        (&["pub", "--topic=t", "--no-such-flag"], "--no-such-flag"),
    ];
    for (args, want) in cases {
        let out = run(args, b"", LIMIT);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}
