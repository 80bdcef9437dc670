//! Deferred messages over HTTP: `/deferred` lists them per channel, `/deferred/cancel`
//! cancels them by ID (read by the channel or not yet), the cancellation survives `kill -9`,
//! and `/message` tells where one message stands on each channel.

use std::time::Duration;

use nsqrs_testkit::{wait_for, Frame, Nsqd};
use serde_json::Value;

/// Publishes over HTTP with a delay; returns the message's ID.
fn dpub(n: &Nsqd, topic: &str, body: &str, defer_ms: u64) -> String {
    n.pub_for_id(&format!("/pub?topic={topic}&defer={defer_ms}"), body.as_bytes())
}

fn json(n: &Nsqd, path: &str) -> Value {
    let (code, body) = n.get(path);
    assert_eq!(code, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap()
}

/// The deferred IDs per channel, in due order.
fn deferred_ids(n: &Nsqd, topic: &str) -> Vec<(String, Vec<String>)> {
    let v = json(n, &format!("/deferred?topic={topic}"));
    v["channels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let ids: Vec<String> = c["messages"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["id"].as_str().unwrap().to_string())
                .collect();
            assert_eq!(c["total"].as_u64().unwrap() as usize, ids.len());
            (c["channel"].as_str().unwrap().to_string(), ids)
        })
        .collect()
}

fn channel_deferred_count(n: &Nsqd, topic: &str, channel: &str) -> u64 {
    let st = n.stats();
    let t = st["topics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["topic_name"] == topic)
        .unwrap();
    let c = t["channels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["channel_name"] == channel)
        .unwrap();
    c["deferred_count"].as_u64().unwrap()
}

#[test]
fn deferred_messages_are_listed_and_cancelled_and_stay_cancelled() {
    let n = Nsqd::start(&[]);
    assert_eq!(n.post("/topic/create?topic=later", b"").0, 200);
    for ch in ["a", "b"] {
        assert_eq!(
            n.post(&format!("/channel/create?topic=later&channel={ch}"), b"")
                .0,
            200
        );
    }
    let ids: Vec<String> = (0..3)
        .map(|i| dpub(&n, "later", &format!("job {i}"), 60_000 + i * 1000))
        .collect();
    let all = vec![("a".to_string(), ids.clone()), ("b".to_string(), ids.clone())];
    assert_eq!(deferred_ids(&n, "later"), all);
    let listed = json(&n, "/deferred?topic=later&channel=a&include_body=true&limit=2");
    let first = &listed["channels"][0];
    assert_eq!(first["total"], 3);
    assert_eq!(first["messages"].as_array().unwrap().len(), 2);
    assert_eq!(first["messages"][0]["body"], "job 0");
    assert_eq!(first["messages"][0]["size"], 5);
    assert_eq!(first["messages"][0]["attempts"], 0);

    // Unread by channel a: cut out of what it still has to read.
    let (code, body) = n.post(
        &format!("/deferred/cancel?topic=later&channel=a&id={}", ids[0]),
        b"",
    );
    assert_eq!(code, 200, "{body}");
    let reply: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(reply["cancelled"][0]["id"], ids[0].as_str());
    assert_eq!(reply["cancelled"][0]["channels"][0]["channel"], "a");
    assert_eq!(channel_deferred_count(&n, "later", "a"), 2);
    assert_eq!(channel_deferred_count(&n, "later", "b"), 3);

    // A consumer on b makes it read the deferred messages: it receives a message published
    // after them only once the channel has read past them. Cancelling on every channel then
    // takes the read one out of b and the unread one out of a.
    let mut consumer = n.connect();
    consumer.subscribe("later", "b", 10);
    assert_eq!(n.post("/pub?topic=later", b"marker").0, 200);
    match consumer.read_frame() {
        Some(Frame::Message { id, body, .. }) => {
            assert_eq!(body, b"marker");
            consumer.cmd(&format!("FIN {id}"));
        }
        other => panic!("{other:?}"),
    }
    let (code, body) = n.post(&format!("/deferred/cancel?topic=later&id={}", ids[1]), b"");
    assert_eq!(code, 200, "{body}");
    let reply: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(reply["cancelled"][0]["channels"].as_array().unwrap().len(), 2);
    assert_eq!(
        deferred_ids(&n, "later"),
        vec![
            ("a".to_string(), vec![ids[2].clone()]),
            ("b".to_string(), vec![ids[0].clone(), ids[2].clone()]),
        ]
    );

    // Cancelling what is no longer deferred, or an ID that never was, is refused.
    let (code, body) = n.post(
        &format!("/deferred/cancel?topic=later&channel=a&id={}", ids[0]),
        b"",
    );
    assert_eq!(
        (code, body.as_str()),
        (404, r#"{"message":"MESSAGE_NOT_DEFERRED"}"#)
    );
    let (code, _) = n.post("/deferred/cancel?topic=later&id=00000000000000ff", b"");
    assert_eq!(code, 404);
    let (code, _) = n.post("/deferred/cancel?topic=later&id=not-an-id", b"");
    assert_eq!(code, 400);
    // Several at once: what was deferred is cancelled, the rest is named.
    let (code, body) = n.post(
        &format!(
            "/deferred/cancel?topic=later&channel=b&id={},00000000000000ff",
            ids[0]
        ),
        b"",
    );
    assert_eq!(code, 200, "{body}");
    let reply: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(reply["cancelled"][0]["id"], ids[0].as_str());
    assert_eq!(reply["not_deferred"], serde_json::json!(["00000000000000ff"]));
    consumer.close();

    // The cancellations and the deferred index survive a crash.
    let data = n.data.clone();
    let tmp = n.kill9();
    let n = Nsqd::start_in(&data, &[]);
    wait_for(
        "the deferred index to be rebuilt",
        Duration::from_secs(20),
        || {
            deferred_ids(&n, "later")
                == vec![
                    ("a".to_string(), vec![ids[2].clone()]),
                    ("b".to_string(), vec![ids[2].clone()]),
                ]
        },
    );
    assert_eq!(channel_deferred_count(&n, "later", "a"), 1);
    drop(n);
    drop(tmp);
}

#[test]
fn a_cancelled_message_is_never_delivered() {
    let n = Nsqd::start(&[]);
    assert_eq!(n.post("/topic/create?topic=soon", b"").0, 200);
    assert_eq!(n.post("/channel/create?topic=soon&channel=work", b"").0, 200);
    let keep = dpub(&n, "soon", "keep", 1200);
    let drop_id = dpub(&n, "soon", "drop", 1200);
    let (code, body) = n.post(
        &format!("/deferred/cancel?topic=soon&channel=work&id={drop_id}"),
        b"",
    );
    assert_eq!(code, 200, "{body}");
    let mut c = n.connect();
    c.subscribe("soon", "work", 10);
    match c.read_frame() {
        Some(Frame::Message { id, body, .. }) => {
            assert_eq!(
                (id.as_str(), body.as_slice()),
                (keep.as_str(), b"keep".as_slice())
            );
            c.cmd(&format!("FIN {id}"));
        }
        other => panic!("{other:?}"),
    }
    // Well past the cancelled one's due time, nothing else arrives.
    c.s.set_read_timeout(Some(Duration::from_millis(1500))).unwrap();
    assert_eq!(c.read_frame(), None);
    let st = n.stats();
    let ch = &st["topics"][0]["channels"][0];
    assert_eq!(
        (ch["depth"].as_u64(), ch["deferred_count"].as_u64()),
        (Some(0), Some(0))
    );
}

#[test]
fn message_state_follows_a_message_across_channels() {
    let n = Nsqd::start(&["--msg-timeout=60s"]);
    assert_eq!(n.post("/topic/create?topic=st", b"").0, 200);
    for ch in ["busy", "idle", "done"] {
        assert_eq!(
            n.post(&format!("/channel/create?topic=st&channel={ch}"), b"").0,
            200
        );
    }
    let mut p = n.connect();
    p.cmd_body("PUB st", b"payload");
    p.expect_ok();
    let mut busy = n.connect();
    busy.identify(serde_json::json!({"client_id": "worker-7"}));
    busy.subscribe("st", "busy", 1);
    let Some(Frame::Message { id, .. }) = busy.read_frame() else {
        panic!("no message")
    };
    let mut done = n.connect();
    done.subscribe("st", "done", 1);
    let Some(Frame::Message { id: same, .. }) = done.read_frame() else {
        panic!("no message")
    };
    assert_eq!(id, same);
    done.cmd(&format!("FIN {id}"));

    wait_for("the FIN to land", Duration::from_secs(20), || {
        let v = json(&n, &format!("/message?topic=st&id={id}"));
        v["channels"][1]["state"] == "done"
    });
    let v = json(&n, &format!("/message?topic=st&id={id}"));
    assert_eq!(v["size"], 7);
    assert_eq!(v["held_by_topic"], false);
    let states: Vec<(&str, &str)> = v["channels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["channel"].as_str().unwrap(), c["state"].as_str().unwrap()))
        .collect();
    assert_eq!(
        states,
        vec![("busy", "in_flight"), ("done", "done"), ("idle", "queued")]
    );
    let busy_state = &v["channels"][0];
    assert_eq!(busy_state["attempts"], 1);
    assert_eq!(busy_state["client"]["client_id"], "worker-7");
    assert!(busy_state["timeout_at"].as_i64().unwrap() > busy_state["delivered_at"].as_i64().unwrap());

    // A REQ with a delay shows as deferred with its attempts.
    busy.cmd(&format!("REQ {id} 30000"));
    wait_for("the REQ to land", Duration::from_secs(20), || {
        let v = json(&n, &format!("/message?topic=st&id={id}"));
        v["channels"][0]["state"] == "deferred" && v["channels"][0]["attempts"] == 1
    });

    let (code, body) = n.get("/message?topic=st&id=0000000000000001");
    assert_eq!((code, body.as_str()), (404, r#"{"message":"MESSAGE_NOT_FOUND"}"#));
    assert_eq!(n.get("/message?topic=st&id=xyz").0, 400);
    assert_eq!(n.get("/message?topic=nope&id=0000000000000001").0, 404);
    assert_eq!(n.get("/message?topic=st").0, 400);
}

#[test]
fn deferred_endpoints_need_the_admin_token_when_one_is_set() {
    let n = Nsqd::start(&["--http-admin-token=s3cret"]);
    dpub(&n, "guarded", "x", 60_000);
    assert_eq!(n.get("/deferred?topic=guarded").0, 401);
    assert_eq!(
        n.post("/deferred/cancel?topic=guarded&id=0000000000000001", b"")
            .0,
        401
    );
}
