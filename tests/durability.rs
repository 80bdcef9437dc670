//! Crash safety, the promise nsqrs makes beyond nsqd: an acknowledged message survives
//! `kill -9`, deferred and requeued messages keep their due time, and a graceful stop
//! loses nothing either.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use nsqrs_testkit::{wait_for, Frame, Nsqd};

/// Reads messages until `want` distinct bodies arrived (FINing each) or the time is up.
fn consume_all(n: &Nsqd, topic: &str, channel: &str, want: usize, limit: Duration) -> BTreeSet<Vec<u8>> {
    let mut c = n.connect();
    c.subscribe(topic, channel, 2500);
    let mut seen = BTreeSet::new();
    let deadline = Instant::now() + limit;
    c.s.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    while seen.len() < want && Instant::now() < deadline {
        match c.read_frame() {
            Some(Frame::Message { id, body, .. }) => {
                c.cmd(&format!("FIN {id}"));
                seen.insert(body);
            }
            Some(other) => panic!("unexpected frame {other:?}"),
            None => {}
        }
    }
    seen
}

#[test]
fn kill_9_loses_no_acknowledged_message() {
    let n = Nsqd::start(&[]);
    let data = n.data.clone();
    // A consumer finishes part of the stream so there is channel state to recover as well.
    let mut sub = n.connect();
    sub.subscribe("crash", "ch", 100);
    let mut publisher = n.connect();
    let mut acked = Vec::new();
    let mut seq = 0u64;
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(1500) {
        let batch: Vec<Vec<u8>> = (0..50).map(|i| format!("m{:08}", seq + i).into_bytes()).collect();
        publisher.mpub("crash", &batch);
        assert_eq!(publisher.read_frame(), Some(Frame::Response(b"OK".to_vec())));
        seq += 50;
        acked.extend(batch);
    }
    // Finish a few hundred before the crash; they may come back (duplicates), never a gap.
    for _ in 0..300 {
        if let Some(Frame::Message { id, .. }) = sub.read_frame() {
            sub.cmd(&format!("FIN {id}"));
        }
    }
    let tmp = n.kill9();
    let n = Nsqd::start_in(&data, &[]);
    let seen = consume_all(&n, "crash", "ch", acked.len(), Duration::from_secs(30));
    let missing: Vec<_> = acked.iter().filter(|m| !seen.contains(*m)).take(5).collect();
    // Messages finished before the crash may legitimately be gone; everything else must be here.
    let lost = acked.iter().filter(|m| !seen.contains(*m)).count();
    assert!(lost <= 300, "{lost} acknowledged messages lost, e.g. {missing:?}");
    let unfinished_lost = acked[300..].iter().filter(|m| !seen.contains(*m)).count();
    assert_eq!(
        unfinished_lost, 0,
        "acknowledged, unfinished messages lost: e.g. {missing:?}"
    );
    drop(tmp);
}

#[test]
fn kill_9_with_no_channel_keeps_the_backlog() {
    let n = Nsqd::start(&[]);
    let data = n.data.clone();
    let mut p = n.connect();
    let bodies: Vec<Vec<u8>> = (0..1000).map(|i| format!("b{i}").into_bytes()).collect();
    p.mpub("backlog", &bodies);
    p.expect_ok();
    let tmp = n.kill9();
    let n = Nsqd::start_in(&data, &[]);
    let seen = consume_all(&n, "backlog", "first", 1000, Duration::from_secs(20));
    assert_eq!(seen.len(), 1000);
    drop(tmp);
}

#[test]
fn deferred_message_keeps_its_time_across_kill_9() {
    let n = Nsqd::start(&[]);
    let data = n.data.clone();
    let mut c = n.connect();
    c.subscribe("later", "ch", 1);
    let mut p = n.connect();
    let published = Instant::now();
    p.cmd_body("DPUB later 3000", b"deferred");
    p.expect_ok();
    // Most of the delay passes before the crash, so a restart that started the delay over
    // would deliver seconds late.
    wait_for("2 s of the message's 3 s delay", Duration::from_secs(20), || {
        published.elapsed() >= Duration::from_secs(2) && n.channel_stats("later", "ch")["deferred_count"] == 1
    });
    let tmp = n.kill9();
    let n = Nsqd::start_in(&data, &[]);
    let restarted = published.elapsed();
    let mut c = n.connect();
    c.subscribe("later", "ch", 1);
    c.s.set_read_timeout(Some(Duration::from_secs(6))).unwrap();
    match c.read_frame() {
        Some(Frame::Message { body, attempts, .. }) => {
            let at = published.elapsed();
            assert_eq!(body, b"deferred");
            assert_eq!(attempts, 1);
            assert!(at >= Duration::from_millis(2800), "delivered too early: {at:?}");
            // Due at 3 s, or at once if the restart took longer; a restarted delay would
            // make it 3 s after the restart.
            let due = restarted.max(Duration::from_secs(3));
            assert!(
                at <= due + Duration::from_millis(1500),
                "delivered too late: {at:?} (restarted at {restarted:?})"
            );
        }
        other => panic!("deferred message lost: {other:?}"),
    }
    drop(tmp);
}

#[test]
fn requeue_delay_and_attempts_survive_kill_9() {
    let n = Nsqd::start(&[]);
    let data = n.data.clone();
    let mut p = n.connect();
    p.cmd_body("PUB rq", b"again");
    p.expect_ok();
    let mut c = n.connect();
    c.subscribe("rq", "ch", 1);
    let Some(Frame::Message { id, attempts: 1, .. }) = c.read_frame() else {
        panic!("no first delivery")
    };
    let requeued = Instant::now();
    c.cmd(&format!("REQ {id} 2500"));
    // REQ has no reply: the channel counts it deferred once it is journalled.
    wait_for("the requeue to be recorded", Duration::from_secs(20), || {
        n.channel_stats("rq", "ch")["deferred_count"] == 1
    });
    let tmp = n.kill9();
    let n = Nsqd::start_in(&data, &[]);
    let mut c = n.connect();
    c.subscribe("rq", "ch", 1);
    c.s.set_read_timeout(Some(Duration::from_secs(6))).unwrap();
    match c.read_frame() {
        Some(Frame::Message { body, attempts, .. }) => {
            let at = requeued.elapsed();
            assert_eq!(body, b"again");
            assert_eq!(attempts, 2);
            assert!(
                at >= Duration::from_millis(2300),
                "requeue delay forgotten: {at:?}"
            );
        }
        other => panic!("requeued message lost: {other:?}"),
    }
    drop(tmp);
}

#[test]
fn sigterm_exits_zero_and_keeps_in_flight_messages() {
    let n = Nsqd::start(&["--sync-every=1"]);
    let data = n.data.clone();
    let mut p = n.connect();
    p.mpub("graceful", &[b"one".to_vec(), b"two".to_vec()]);
    p.expect_ok();
    let mut c = n.connect();
    c.subscribe("graceful", "ch", 1);
    assert!(matches!(c.read_frame(), Some(Frame::Message { .. })));
    let (code, tmp) = n.terminate();
    assert_eq!(code, Some(0));
    let n = Nsqd::start_in(&data, &[]);
    let seen = consume_all(&n, "graceful", "ch", 2, Duration::from_secs(10));
    assert_eq!(seen.len(), 2);
    // Metadata survives as nsqd's own file.
    let meta = std::fs::read_to_string(data.join("nsqd.dat")).unwrap();
    assert!(meta.contains("\"graceful\"") && meta.contains("\"ch\""), "{meta}");
    drop(tmp);
}

/// Sends a FIN for an ID nobody holds and waits for its error: every command sent before it has
/// been processed by the time the answer arrives.
fn barrier(c: &mut nsqrs_testkit::Conn) {
    c.cmd("FIN 0000000000000000");
    match c.read_frame() {
        Some(Frame::Error(e)) if e.starts_with("E_FIN_FAILED") => {}
        other => panic!("barrier: {other:?}"),
    }
}

#[test]
fn requeue_with_delay_just_before_kill_9_comes_back_once_at_its_time() {
    // The message is read, delivered, requeued and the broker killed within a few
    // milliseconds, well inside one checkpoint interval: the last snapshot still has the
    // cursor before the message, and only the journal knows about the requeue.
    let n = Nsqd::start(&[]);
    let data = n.data.clone();
    let mut c = n.connect();
    c.subscribe("rqk", "ch", 1);
    barrier(&mut c);
    // Let a checkpoint record the new channel at rest.
    std::thread::sleep(Duration::from_millis(500));
    let mut p = n.connect();
    p.cmd_body("PUB rqk", b"later");
    p.expect_ok();
    let Some(Frame::Message { id, attempts: 1, .. }) = c.read_frame() else {
        panic!("no first delivery")
    };
    let requeued = Instant::now();
    c.cmd(&format!("REQ {id} 2500"));
    barrier(&mut c);
    let tmp = n.kill9();
    let n = Nsqd::start_in(&data, &[]);
    let mut c = n.connect();
    c.subscribe("rqk", "ch", 10);
    c.s.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let mut deliveries = Vec::new();
    while requeued.elapsed() < Duration::from_millis(5000) {
        if let Some(Frame::Message {
            id, body, attempts, ..
        }) = c.read_frame()
        {
            deliveries.push((requeued.elapsed(), body, attempts));
            c.cmd(&format!("FIN {id}"));
        }
    }
    assert_eq!(
        deliveries.len(),
        1,
        "delivered once, at its due time: {deliveries:?}"
    );
    let (at, body, attempts) = &deliveries[0];
    assert_eq!((body.as_slice(), *attempts), (&b"later"[..], 2));
    assert!(
        *at >= Duration::from_millis(2500),
        "delivered before its due time: {at:?}"
    );
    drop(tmp);
}
