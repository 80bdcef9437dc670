//! `nsqrs stat` against two real brokers given with `--nsqd-http-address`: nsq_stat's
//! columns summed over both, the cluster table, the JSON and CSV shapes, and bad flags.

use std::process::{Command, Output};
use std::time::Duration;

use nsqrs_testkit::{bin, run_tool, Nsqd};

/// Two brokers with topic `t`, channel `c`: 3 messages on one, 5 on the other, and the
/// channel paused on the first only.
fn cluster() -> (Nsqd, Nsqd) {
    let a = Nsqd::start(&[]);
    let b = Nsqd::start(&[]);
    for (n, count) in [(&a, 3), (&b, 5)] {
        assert_eq!(n.post("/topic/create?topic=t", b"").0, 200);
        assert_eq!(n.post("/channel/create?topic=t&channel=c", b"").0, 200);
        let body: Vec<u8> = (0..count).flat_map(|i| format!("m{i}\n").into_bytes()).collect();
        assert_eq!(n.post("/mpub?topic=t", &body).0, 200);
    }
    assert_eq!(a.post("/channel/pause?topic=t&channel=c", b"").0, 200);
    (a, b)
}

fn stat(a: &Nsqd, b: &Nsqd, extra: &[&str]) -> Output {
    let mut args = vec![
        "stat",
        "--nsqd-http-address",
        &a.http,
        "--nsqd-http-address",
        &b.http,
        "--interval=200ms",
    ];
    args.extend_from_slice(extra);
    let out = run_tool(&args, b"", Duration::from_secs(20));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

#[test]
fn channel_report_has_nsq_stats_columns_summed_over_nsqd() {
    let (a, b) = cluster();
    let text = stdout(&stat(&a, &b, &["--topic=t", "--channel=c", "--count=2"]));
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "header twice + two reports:\n{text}");
    assert_eq!(
        lines[0],
        "------rate------+----------------depth----------------+--------------metadata---------------"
    );
    assert_eq!(
        lines[1],
        "ingress  egress |   total     mem    disk inflt   def |     req     t-o         msgs clients"
    );
    for row in &lines[2..] {
        let mut cols: Vec<i64> = row
            .split_whitespace()
            .filter(|c| *c != "|")
            .map(|c| c.parse().unwrap())
            .collect();
        // ingress egress | total mem disk inflt def | req t-o msgs clients; where the depth
        // is held (memory or disk) is the broker's business, the sum is not.
        assert_eq!(cols[3] + cols[4], cols[2], "{row}");
        cols[3] = 0;
        cols[4] = 0;
        assert_eq!(cols, vec![0, 0, 8, 0, 0, 0, 0, 0, 0, 8, 0], "{row}");
    }
}

#[test]
fn channel_report_as_json_and_csv() {
    let (a, b) = cluster();
    let text = stdout(&stat(
        &a,
        &b,
        &["--topic=t", "--channel=c", "--count=1", "--format=json"],
    ));
    let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
    assert_eq!(
        (v["total"].as_i64(), v["messages"].as_i64()),
        (Some(8), Some(8)),
        "{v}"
    );
    assert_eq!(v["topic"], "t");
    assert_eq!(v["channel"], "c");
    assert!(v["ingress"].is_i64() && v["egress"].is_i64() && v["time"].is_string());

    let text = stdout(&stat(
        &a,
        &b,
        &["--topic=t", "--channel=c", "--count=2", "--format=csv"],
    ));
    let mut rows = csv::Reader::from_reader(text.as_bytes());
    let headers = rows.headers().unwrap().clone();
    assert_eq!(&headers[0], "time");
    assert_eq!(headers.len(), 14);
    let records: Vec<csv::StringRecord> = rows.records().map(Result::unwrap).collect();
    assert_eq!(records.len(), 2);
    assert_eq!(&records[0][5], "8", "total depth");
}

#[test]
fn cluster_table_lists_topics_and_channels() {
    let (a, b) = cluster();
    let text = stdout(&stat(&a, &b, &["--count=1"]));
    for want in [
        "TOPIC",
        "CHANNEL",
        "DEPTH",
        "IN-FLIGHT",
        "DEFERRED",
        "MSG/S",
        "CLIENTS",
        "PAUSED",
        "NSQD",
    ] {
        assert!(text.contains(want), "{want} missing:\n{text}");
    }
    let channel_row = text
        .lines()
        .find(|l| l.contains(" c "))
        .unwrap_or_else(|| panic!("no channel row:\n{text}"));
    assert!(
        channel_row.contains("partial"),
        "paused on one of two nsqd: {channel_row}"
    );
    assert!(channel_row.contains(" 8 "), "{channel_row}");
}

#[test]
fn cluster_report_as_json() {
    let (a, b) = cluster();
    let text = stdout(&stat(&a, &b, &["--count=2", "--format=json"]));
    let reports: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(reports.len(), 2);
    let t = &reports[1]["topics"][0];
    assert_eq!(t["topic"], "t");
    assert_eq!(t["messages"], 8);
    assert_eq!(t["nsqd"], 2);
    let c = &t["channels"][0];
    assert_eq!(
        (c["channel"].as_str(), c["depth"].as_i64()),
        (Some("c"), Some(8)),
        "{c}"
    );
    assert_eq!(c["paused"], true);
    assert_eq!(c["nsqd"], 2);
}

#[test]
fn bad_flags_give_one_error_line() {
    let cases: &[(&[&str], &str)] = &[
        (&["stat", "--topic=t", "--channel=c"], "required"),
        (
            &["stat", "--nsqd-http-address=a:1", "--lookupd-http-address=b:1"],
            "not both",
        ),
        (&["stat", "--nsqd-http-address=https://a:1"], "scheme https://"),
        (&["stat", "--lookupd-http-address=a:1/lookup"], "has a path"),
        (&["stat", "--lookupd-http-address=a"], "has no port"),
        (
            &["stat", "--nsqd-http-address=a:1", "--channel=c"],
            "--topic is required",
        ),
        (&["stat", "--nsqd-http-address=a:1", "--format=xml"], "xml"),
        (&["stat", "--nsqd-http-address=a:1", "--interval=2"], "interval"),
    ];
    for (args, want) in cases {
        let out = Command::new(bin()).args(*args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
    }
    // An address nobody answers on is a runtime failure: exit 1, one line.
    let out = Command::new(bin())
        .args(["stat", "--nsqd-http-address=127.0.0.1:1", "--count=1"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("127.0.0.1:1"), "{err}");
}

/// Both address forms `tail` takes, `host:port` and `http://host:port`, work here too.
#[test]
fn addresses_with_the_http_scheme() {
    let (a, b) = cluster();
    let out = Command::new(bin())
        .args([
            "stat",
            "--topic=t",
            "--channel=c",
            &format!("--nsqd-http-address=http://{}", a.http),
            &format!("--nsqd-http-address=http://{}/", b.http),
            "--interval=100ms",
            "--count=1",
            "--format=json",
        ])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(v["total"], 8);
}

/// A topic or channel no nsqd has is said in one line, with status 1, not shown as rows of
/// zeros that look like an idle channel.
#[test]
fn a_topic_or_channel_nobody_has_is_an_error() {
    let (a, b) = cluster();
    for (args, want) in [
        (
            vec!["--topic=nope", "--channel=c"],
            "topic nope does not exist on nsqd",
        ),
        (
            vec!["--topic=t", "--channel=nope"],
            "topic t has no channel nope on nsqd",
        ),
        (vec!["--topic=nope"], "topic nope does not exist on nsqd"),
    ] {
        let out = Command::new(bin())
            .args([
                "stat",
                "--nsqd-http-address",
                &a.http,
                "--nsqd-http-address",
                &b.http,
            ])
            .args(&args)
            .args(["--interval=100ms", "--count=1"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}
