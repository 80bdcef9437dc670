//! Lifecycle events (docs/events.md): with `--lifecycle-events=all`, the default, the broker
//! reports each step of a message's life on `nsqrs.events`, readable by any consumer.

use std::time::{Duration, Instant};

use nsqrs_testkit::{Frame, Nsqd};

/// Reads event groups from `nsqrs.events` until `done` says enough or the time is up.
fn collect_events(n: &Nsqd, done: impl Fn(&[serde_json::Value]) -> bool) -> Vec<serde_json::Value> {
    let mut c = n.connect();
    c.subscribe("nsqrs.events", "test", 100);
    c.s.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
    let mut events = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done(&events) && Instant::now() < deadline {
        if let Some(Frame::Message { id, body, .. }) = c.read_frame() {
            c.cmd(&format!("FIN {id}"));
            for line in String::from_utf8(body).unwrap().lines() {
                events.push(serde_json::from_str(line).unwrap());
            }
        }
    }
    events
}

#[test]
fn every_step_is_reported_in_order() {
    let n = Nsqd::start(&["--lifecycle-events=all", "--msg-timeout=1s"]);
    // The events topic must exist with a channel before anything happens, to see it all.
    n.post("/topic/create?topic=nsqrs.events", b"");
    n.post("/channel/create?topic=nsqrs.events&channel=test", b"");
    let mut p = n.connect();
    p.identify(serde_json::json!({"user_agent": "events-test/1.0"}));
    p.cmd_body("PUB orders", b"order-1");
    p.expect_ok();
    let mut c = n.connect();
    c.subscribe("orders", "billing", 1);
    let Some(Frame::Message { id, attempts: 1, .. }) = c.read_frame() else {
        panic!("no delivery")
    };
    c.cmd(&format!("REQ {id} 0"));
    let Some(Frame::Message { attempts: 2, .. }) = c.read_frame() else {
        panic!("no redelivery")
    };
    // Let it time out once, then finish the third delivery.
    let Some(Frame::Message { attempts: 3, .. }) = c.read_frame() else {
        panic!("no delivery after timeout")
    };
    c.cmd(&format!("FIN {id}"));

    let events = collect_events(&n, |evs| evs.iter().any(|e| e["ev"] == "finished"));
    let mine: Vec<&serde_json::Value> = events
        .iter()
        .filter(|e| {
            e["ids"]
                .as_array()
                .is_some_and(|ids| ids.iter().any(|i| i == &id))
        })
        .collect();
    let kinds: Vec<&str> = mine.iter().map(|e| e["ev"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        vec![
            "published",
            "delivered",
            "requeued",
            "delivered",
            "timed_out",
            "delivered",
            "finished"
        ],
        "{mine:#?}"
    );
    assert_eq!(mine[0]["topic"], "orders");
    assert_eq!(mine[0]["ua"], "events-test/1.0");
    assert_eq!(mine[0]["sizes"], serde_json::json!([7]));
    assert_eq!(mine[1]["channel"], "billing");
    assert_eq!(mine[1]["attempts"], serde_json::json!([1]));
    assert_eq!(mine[3]["attempts"], serde_json::json!([2]));
    assert_eq!(mine[5]["attempts"], serde_json::json!([3]));
    assert_eq!(mine[2]["delay_ms"], 0);
    let ts: Vec<i64> = mine.iter().map(|e| e["ts"].as_i64().unwrap()).collect();
    assert!(
        ts.windows(2).all(|w| w[0] <= w[1]),
        "timestamps out of order: {ts:?}"
    );
    assert!(mine.iter().all(|e| e["nsqd"]
        .as_str()
        .is_some_and(|a| a.ends_with(n.tcp.rsplit(':').next().unwrap()))));
}

#[test]
fn a_cancelled_deferred_message_is_reported() {
    let n = Nsqd::start(&["--lifecycle-events=all"]);
    n.post("/topic/create?topic=nsqrs.events", b"");
    n.post("/channel/create?topic=nsqrs.events&channel=test", b"");
    n.post("/topic/create?topic=later", b"");
    n.post("/channel/create?topic=later&channel=mail", b"");
    let id = n.pub_for_id("/pub?topic=later&defer=60000", b"x");
    let (code, body) = n.post(&format!("/deferred/cancel?topic=later&id={id}"), b"");
    assert_eq!(code, 200, "{body}");
    let events = collect_events(&n, |evs| evs.iter().any(|e| e["ev"] == "cancelled"));
    let cancelled = events
        .iter()
        .find(|e| e["ev"] == "cancelled")
        .expect("a cancelled event");
    assert_eq!(cancelled["topic"], "later");
    assert_eq!(cancelled["channel"], "mail");
    assert_eq!(cancelled["ids"], serde_json::json!([id]));
    assert!(cancelled["due"].as_i64().unwrap() > cancelled["ts"].as_i64().unwrap());
}

#[test]
fn events_are_kept_only_while_someone_reads_them() {
    // Events on by default, but no channel on the events topic: nothing accumulates.
    let n = Nsqd::start(&[]);
    n.post("/pub?topic=quiet", b"x");
    std::thread::sleep(Duration::from_millis(300));
    let names: Vec<String> = n.stats()["topics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["topic_name"].as_str().unwrap().to_string())
        .collect();
    assert!(!names.contains(&"nsqrs.events".to_string()), "{names:?}");

    // `off` records nothing even with a reader.
    let n = Nsqd::start(&["--lifecycle-events=off"]);
    n.post("/topic/create?topic=nsqrs.events", b"");
    n.post("/channel/create?topic=nsqrs.events&channel=test", b"");
    n.post("/pub?topic=quiet", b"x");
    std::thread::sleep(Duration::from_millis(300));
    let stats = n.stats();
    let events = stats["topics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["topic_name"] == "nsqrs.events")
        .unwrap();
    assert_eq!(events["message_count"], 0);
}

#[test]
fn publish_mode_reports_only_publishes_of_matching_topics() {
    let n = Nsqd::start(&["--lifecycle-events=publish", "--lifecycle-events-topics=^audited"]);
    n.post("/topic/create?topic=nsqrs.events", b"");
    n.post("/channel/create?topic=nsqrs.events&channel=test", b"");
    n.post("/pub?topic=audited", b"a");
    n.post("/pub?topic=ignored", b"b");
    let mut c = n.connect();
    c.subscribe("audited", "c", 1);
    let Some(Frame::Message { id, .. }) = c.read_frame() else {
        panic!()
    };
    c.cmd(&format!("FIN {id}"));
    let events = collect_events(&n, |evs| evs.iter().any(|e| e["ev"] == "published"));
    std::thread::sleep(Duration::from_millis(200));
    let (batches, groups): (Vec<_>, Vec<_>) = events.iter().partition(|e| e["ev"] == "batch");
    assert!(
        groups
            .iter()
            .all(|e| e["ev"] == "published" && e["topic"] == "audited"),
        "{events:#?}"
    );
    assert_eq!(groups[0]["client"], "http");
    // Each body says the mode and filter it was written under, so a reader can tell that no
    // deliveries were reported rather than that none happened.
    assert!(!batches.is_empty());
    for b in batches {
        assert_eq!(b["mode"], "publish", "{b}");
        assert_eq!(b["topics"], "^audited", "{b}");
        let port = n.tcp.rsplit(':').next().unwrap();
        assert!(b["nsqd"].as_str().unwrap().ends_with(&format!(":{port}")), "{b}");
    }
}

/// Without the flag, everything is reported: `trace` has whole timelines out of the box.
#[test]
fn every_step_is_reported_by_default() {
    let n = Nsqd::start(&[]);
    n.post("/topic/create?topic=nsqrs.events", b"");
    n.post("/channel/create?topic=nsqrs.events&channel=test", b"");
    n.post("/pub?topic=orders", b"a");
    let mut c = n.connect();
    c.subscribe("orders", "c", 1);
    let Some(Frame::Message { id, .. }) = c.read_frame() else {
        panic!()
    };
    c.cmd(&format!("FIN {id}"));
    let events = collect_events(&n, |evs| evs.iter().any(|e| e["ev"] == "finished"));
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["ev"].as_str()).collect();
    for kind in ["published", "delivered", "finished"] {
        assert!(kinds.contains(&kind), "{kind} missing from {kinds:?}");
    }
    let batch = events.iter().find(|e| e["ev"] == "batch").expect("a batch line");
    assert_eq!(batch["mode"], "all");
    assert!(batch.get("topics").is_none(), "no filter, no field: {batch}");
}

#[test]
fn bad_event_flags_are_one_line_errors() {
    for (flag, want) in [
        (
            "--lifecycle-events=loud",
            "--lifecycle-events must be off, publish or all",
        ),
        (
            "--lifecycle-events-topics=(",
            "--lifecycle-events-topics is not a valid regex",
        ),
    ] {
        let out = std::process::Command::new(nsqrs_testkit::bin())
            .args(["serve", flag])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains(want) && err.lines().count() == 1, "{err}");
    }
}
