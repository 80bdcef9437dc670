//! NSQ semantics that are easy to get subtly wrong: deferred accounting, `#ephemeral`
//! overflow, consumers of a deleted channel, and mass in-flight timeouts.

use std::time::{Duration, Instant};

use nsqrs_testkit::{Frame, Nsqd};

fn channel_stats(n: &Nsqd, topic: &str, channel: &str) -> serde_json::Value {
    let stats = n.stats();
    let topics = stats["topics"].as_array().cloned().unwrap_or_default();
    let t = topics
        .iter()
        .find(|t| t["topic_name"] == topic)
        .expect("topic in stats")
        .clone();
    let channels = t["channels"].as_array().cloned().unwrap_or_default();
    channels
        .into_iter()
        .find(|c| c["channel_name"] == channel)
        .expect("channel in stats")
}

#[test]
fn deferred_messages_count_as_deferred_before_any_consumer_reads() {
    let n = Nsqd::start(&[]);
    n.post("/topic/create?topic=dq", b"");
    n.post("/channel/create?topic=dq&channel=c", b"");
    n.post("/pub?topic=dq", b"now");
    n.post("/pub?topic=dq&defer=60000", b"later");
    let mut p = n.connect();
    p.cmd_body("DPUB dq 60000", b"later too");
    p.expect_ok();
    let c = channel_stats(&n, "dq", "c");
    assert_eq!(
        (c["depth"].as_u64(), c["deferred_count"].as_u64()),
        (Some(1), Some(2)),
        "{c}"
    );
}

#[test]
fn ephemeral_channel_drops_beyond_mem_queue_size() {
    let n = Nsqd::start(&["--mem-queue-size=100"]);
    let mut c = n.connect();
    c.subscribe("eph", "watch#ephemeral", 0);
    let mut p = n.connect();
    let bodies: Vec<Vec<u8>> = (0..500).map(|i| format!("{i:03}").into_bytes()).collect();
    p.mpub("eph", &bodies);
    p.expect_ok();
    c.cmd("RDY 1000");
    c.s.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    let mut got = Vec::new();
    while let Some(Frame::Message { id, body, .. }) = c.read_frame() {
        c.cmd(&format!("FIN {id}"));
        got.push(String::from_utf8(body).unwrap());
    }
    assert_eq!(got.len(), 100, "kept {} messages", got.len());
    assert_eq!(
        got.first().map(String::as_str),
        Some("400"),
        "oldest were not the ones dropped"
    );
}

#[test]
fn deleting_a_channel_disconnects_its_consumers() {
    let n = Nsqd::start(&[]);
    let mut c = n.connect();
    c.subscribe("del", "c", 1);
    assert_eq!(n.post("/channel/delete?topic=del&channel=c", b"").0, 200);
    assert!(c.is_closed(), "consumer of a deleted channel still connected");
    let mut c = n.connect();
    c.subscribe("del", "c2", 1);
    assert_eq!(n.post("/topic/delete?topic=del", b"").0, 200);
    assert!(c.is_closed(), "consumer of a deleted topic still connected");
}

#[test]
fn mass_timeouts_redeliver_everything_with_attempts_two() {
    let n = Nsqd::start(&["--msg-timeout=1s"]);
    let mut p = n.connect();
    let bodies: Vec<Vec<u8>> = (0..2000).map(|i| format!("t{i}").into_bytes()).collect();
    p.mpub("to", &bodies);
    p.expect_ok();
    let mut c = n.connect();
    c.subscribe("to", "c", 2500);
    let mut first = 0;
    while first < 2000 {
        match c.read_frame() {
            Some(Frame::Message { attempts: 1, .. }) => first += 1,
            other => panic!("{other:?}"),
        }
    }
    let start = Instant::now();
    let mut again = 0;
    while again < 2000 {
        match c.read_frame() {
            Some(Frame::Message { id, attempts: 2, .. }) => {
                c.cmd(&format!("FIN {id}"));
                again += 1;
            }
            other => panic!("after {again}: {other:?}"),
        }
    }
    assert!(start.elapsed() < Duration::from_secs(5));
    let ch = channel_stats(&n, "to", "c");
    assert_eq!(ch["timeout_count"], 2000);
}

/// Reads the next message frame: (ID, body, attempts).
fn next_message(c: &mut nsqrs_testkit::Conn) -> (String, String, u16) {
    match c.read_frame() {
        Some(Frame::Message {
            id, body, attempts, ..
        }) => (id, String::from_utf8(body).unwrap(), attempts),
        other => panic!("expected a message, got {other:?}"),
    }
}

#[test]
fn a_timed_out_message_goes_behind_the_messages_already_queued() {
    // nsqd puts a timed-out message back through the channel's queue, behind what is queued.
    let n = Nsqd::start(&["--msg-timeout=1s"]);
    let mut p = n.connect();
    p.cmd_body("PUB order", b"m1");
    p.expect_ok();
    let mut c = n.connect();
    c.subscribe("order", "c", 1);
    let (_, body, _) = next_message(&mut c);
    assert_eq!(body, "m1");
    // Queued while m1 is in flight (RDY 1 keeps them waiting).
    p.mpub("order", &[b"m2".to_vec(), b"m3".to_vec()]);
    p.expect_ok();
    c.s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut order = Vec::new();
    for _ in 0..3 {
        let (id, body, attempts) = next_message(&mut c);
        c.cmd(&format!("FIN {id}"));
        order.push((body, attempts));
        if order.len() == 2 {
            // Published after m1 timed out: behind it.
            p.cmd_body("PUB order", b"m4");
            p.expect_ok();
        }
    }
    order.push({
        let (id, body, attempts) = next_message(&mut c);
        c.cmd(&format!("FIN {id}"));
        (body, attempts)
    });
    let expected: Vec<(String, u16)> = [("m2", 1), ("m3", 1), ("m1", 2), ("m4", 1)]
        .iter()
        .map(|(b, a)| (b.to_string(), *a))
        .collect();
    assert_eq!(order, expected);
}

#[test]
fn a_requeued_message_coming_due_goes_behind_the_messages_already_queued() {
    let n = Nsqd::start(&[]);
    let mut p = n.connect();
    p.mpub("order2", &[b"m1".to_vec(), b"m2".to_vec()]);
    p.expect_ok();
    let mut c = n.connect();
    c.subscribe("order2", "c", 1);
    let (id1, body, _) = next_message(&mut c);
    assert_eq!(body, "m1");
    c.cmd(&format!("REQ {id1} 300"));
    let (id2, body, _) = next_message(&mut c);
    assert_eq!(body, "m2");
    // m3 is queued before m1 comes due; m2 stays in flight meanwhile (RDY 1).
    p.cmd_body("PUB order2", b"m3");
    p.expect_ok();
    let deadline = Instant::now() + Duration::from_secs(5);
    while channel_stats(&n, "order2", "c")["deferred_count"] != 0 {
        assert!(Instant::now() < deadline, "m1 never came due");
        std::thread::sleep(Duration::from_millis(20));
    }
    c.cmd(&format!("FIN {id2}"));
    let mut order = Vec::new();
    for _ in 0..2 {
        let (id, body, attempts) = next_message(&mut c);
        c.cmd(&format!("FIN {id}"));
        order.push((body, attempts));
    }
    assert_eq!(order, vec![("m3".to_string(), 1), ("m1".to_string(), 2)]);
}

fn depth(n: &Nsqd, topic: &str, channel: &str) -> u64 {
    channel_stats(n, topic, channel)["depth"].as_u64().unwrap()
}

#[test]
fn channels_created_while_the_backlog_is_read_get_all_of_it() {
    let n = Nsqd::start(&[]);
    let mut p = n.connect();
    let bodies: Vec<Vec<u8>> = (0..3000).map(|i| format!("b{i}").into_bytes()).collect();
    p.mpub("bk", &bodies);
    p.expect_ok();
    // The main consumer starts on the backlog and gets part way.
    let mut main = n.connect();
    main.subscribe("bk", "main", 10);
    for _ in 0..100 {
        let (id, _, _) = next_message(&mut main);
        main.cmd(&format!("FIN {id}"));
    }
    main.cmd("RDY 0");
    // Published after the first channel: for every channel that exists.
    p.cmd_body("PUB bk", b"after");
    p.expect_ok();
    // An archiver joins a moment later, and one more over HTTP.
    let mut archive = n.connect();
    archive.subscribe("bk", "archive", 0);
    n.post("/channel/create?topic=bk&channel=audit", b"");
    assert_eq!(depth(&n, "bk", "archive"), 3001);
    assert_eq!(depth(&n, "bk", "audit"), 3001);
    // Survives a restart while the backlog is still being read.
    let data = n.data.clone();
    drop((main, archive));
    let tmp = n.kill9();
    let n = Nsqd::start_in(&data, &[]);
    n.post("/channel/create?topic=bk&channel=late", b"");
    assert_eq!(depth(&n, "bk", "late"), 3001);
    // Once every channel has read the whole backlog, a new channel starts at the head.
    let mut seen = 0;
    for ch in ["main", "archive", "audit", "late"] {
        let want = depth(&n, "bk", ch);
        let mut c = n.connect();
        c.subscribe("bk", ch, 2500);
        for _ in 0..want {
            let (id, _, _) = next_message(&mut c);
            c.cmd(&format!("FIN {id}"));
            seen += 1;
        }
        c.close();
    }
    assert!(seen >= 3 * 3001 + 2901, "{seen}");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        n.post("/channel/create?topic=bk&channel=after_all", b"");
        let d = depth(&n, "bk", "after_all");
        if d == 0 {
            break;
        }
        // FINs are processed asynchronously: until the last one lands, the window is open.
        n.post("/channel/delete?topic=bk&channel=after_all", b"");
        assert!(
            Instant::now() < deadline,
            "a channel created after the backlog was read got {d}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(tmp);
}
