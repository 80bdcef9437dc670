//! The tools' lookupd paths (`--lookupd-http-address`) against a stand-in nsqlookupd that
//! serves `/lookup`, `/topics` and `/nodes` for one real broker: to-file's topic discovery
//! with `--topic-pattern`, stat's discovery of nsqd, and tail through lookupd.

use std::process::{Command, Stdio};
use std::time::Duration;

use nsqrs_testkit::{bin, run_tool, wait_for, Daemon, Nsqd};

/// A stand-in lookupd on a runtime of its own; it lists `topics`, all on `nsqd`.
struct FakeLookupd {
    addr: String,
    _rt: tokio::runtime::Runtime,
}

fn fake_lookupd(nsqd: &Nsqd, topics: &[&str]) -> FakeLookupd {
    use axum::extract::Query;
    use axum::http::StatusCode;
    use axum::routing::get;
    use axum::{Json, Router};
    use serde_json::{json, Value};
    use std::collections::HashMap;

    let tcp_port: u16 = nsqd.tcp.rsplit_once(':').unwrap().1.parse().unwrap();
    let http_port: u16 = nsqd.http.rsplit_once(':').unwrap().1.parse().unwrap();
    let producer = json!({"broadcast_address": "127.0.0.1", "hostname": "h", "tcp_port": tcp_port, "http_port": http_port, "version": "1.3.0"});
    let topics: Vec<String> = topics.iter().map(|t| t.to_string()).collect();

    let (p1, p2, t1, t2) = (producer.clone(), producer, topics.clone(), topics);
    let app = Router::new()
        .route(
            "/lookup",
            get(move |Query(q): Query<HashMap<String, String>>| {
                let (p, topics) = (p1.clone(), t1.clone());
                async move {
                    match q.get("topic") {
                        Some(t) if topics.contains(t) => Ok(Json(json!({"channels": [], "producers": [p]}))),
                        _ => Err((StatusCode::NOT_FOUND, Json(json!({"message": "TOPIC_NOT_FOUND"})))),
                    }
                }
            }),
        )
        .route("/topics", get(move || async move { Json(json!({"topics": t2})) }))
        .route(
            "/nodes",
            get(move || async move { Json::<Value>(json!({"producers": [p2]})) }),
        );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    rt.spawn(async move { axum::serve(listener, app).await.unwrap() });
    FakeLookupd { addr, _rt: rt }
}

fn publish(n: &Nsqd, topic: &str, body: &str) {
    let (code, text) = n.post(&format!("/pub?topic={topic}"), body.as_bytes());
    assert_eq!(code, 200, "{text}");
}

#[test]
fn to_file_discovers_topics_matching_the_pattern() {
    let n = Nsqd::start(&[]);
    for t in ["archive_a", "archive_b", "other"] {
        publish(&n, t, &format!("{t}-body"));
    }
    let lookupd = fake_lookupd(&n, &["archive_a", "archive_b", "other"]);
    let out = tempfile::tempdir().unwrap();
    let mut to_file = Command::new(bin());
    to_file
        .args([
            "to-file",
            "--lookupd-http-address",
            &lookupd.addr,
            "--topic-pattern=^archive_",
            "--topic-refresh=200ms",
            "--sync-interval=100ms",
            "--output-dir",
            out.path().to_str().unwrap(),
        ])
        .stdout(Stdio::null());
    let mut to_file = Daemon::spawn(to_file, "to-file");
    let read = || -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(out.path())
            .unwrap()
            .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
            .collect();
        v.sort();
        v
    };
    wait_for("a file per matching topic", Duration::from_secs(20), || {
        read() == vec!["archive_a-body\n".to_string(), "archive_b-body\n".to_string()]
    });
    assert_eq!(to_file.terminate(Duration::from_secs(20)), Ok(Some(0)));
    let names: Vec<String> = std::fs::read_dir(out.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(names.iter().all(|n| n.starts_with("archive_")), "{names:?}");
    let stats = n.stats();
    let other = stats["topics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["topic_name"] == "other")
        .unwrap();
    assert!(
        other["channels"].as_array().unwrap().is_empty(),
        "other was not consumed"
    );
}

#[test]
fn stat_and_tail_find_nsqd_through_lookupd() {
    let n = Nsqd::start(&[]);
    assert_eq!(n.post("/topic/create?topic=t", b"").0, 200);
    assert_eq!(n.post("/channel/create?topic=t&channel=c", b"").0, 200);
    publish(&n, "t", "hello");
    let lookupd = fake_lookupd(&n, &["t"]);

    let out = run_tool(
        &[
            "stat",
            "--lookupd-http-address",
            &lookupd.addr,
            "--topic=t",
            "--channel=c",
            "--interval=100ms",
            "--count=1",
            "--format=json",
        ],
        b"",
        Duration::from_secs(20),
    );
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
    assert_eq!(v["total"], 1, "{v}");

    let out = run_tool(
        &[
            "stat",
            "--lookupd-http-address",
            &lookupd.addr,
            "--interval=100ms",
            "--count=1",
            "--format=csv",
        ],
        b"",
        Duration::from_secs(20),
    );
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.lines().any(|l| l.contains(",t,c,1,")), "{text}");

    let out = run_tool(
        &[
            "tail",
            "--lookupd-http-address",
            &lookupd.addr,
            "--topic=t",
            "--channel=c",
            "-n",
            "1",
        ],
        b"",
        Duration::from_secs(20),
    );
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text, "hello\n");
}
