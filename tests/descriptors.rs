//! File descriptors: the broker keeps a bounded number of files open however many topics and
//! channels it has, raises its soft limit to the hard limit at start as Go programs do, and
//! when descriptors do run out it says so on `/ping` and in its log, never with `EXITING`.

use std::time::{Duration, Instant};

use nsqrs_testkit::{http_request, Conn, Frame, Nsqd};

fn open_descriptors(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count()
}

fn hard_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes only into the struct we pass.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
    lim.rlim_max
}

#[test]
fn the_soft_limit_is_raised_to_the_hard_limit() {
    let hard = hard_limit().min(4096);
    assert!(
        hard > 256,
        "this test needs a hard descriptor limit above 256, have {hard}"
    );
    let tmp = tempfile::tempdir().unwrap();
    let n = Nsqd::start_with_descriptor_limit(tmp.path(), &[], 256, hard);
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", n.pid())).unwrap();
    let line = limits.lines().find(|l| l.starts_with("Max open files")).unwrap();
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(fields[3..5], [hard.to_string(), hard.to_string()], "{line}");
}

/// Topics and channels created here: each costs two fsyncs of `nsqd.dat`, as in nsqd.
const TOPICS: usize = 400;

#[test]
fn many_more_topics_and_channels_than_descriptors() {
    let tmp = tempfile::tempdir().unwrap();
    let n = Nsqd::start_with_descriptor_limit(tmp.path(), &[], 128, 128);
    let mut p = n.connect();
    for i in 0..TOPICS {
        p.cmd_body(&format!("PUB t{i:04}"), format!("m{i}").as_bytes());
        match p.read_frame() {
            Some(Frame::Response(ok)) if ok == b"OK" => {}
            other => panic!("PUB to topic {i}: {other:?}"),
        }
    }
    drop(p);
    for i in 0..TOPICS {
        let path = format!("/channel/create?topic=t{i:04}&channel=c");
        assert_eq!(n.post(&path, b""), (200, String::new()), "{path}");
    }
    let stats = n.stats();
    let topics = stats["topics"].as_array().unwrap();
    assert_eq!(topics.len(), TOPICS);
    assert!(topics.iter().all(|t| t["channels"][0]["depth"] == 1));
    let held = open_descriptors(n.pid());
    assert!(
        held < 64,
        "{held} descriptors open for {TOPICS} idle topics and channels"
    );
    // Clients still connect, and a round trip works on the first topic and on the last.
    let last = TOPICS - 1;
    for (topic, body) in [
        ("t0000".to_string(), "m0".to_string()),
        (format!("t{last:04}"), format!("m{last}")),
    ] {
        let mut c = n.connect();
        c.subscribe(&topic, "c", 1);
        match c.read_frame() {
            Some(Frame::Message { id, body: got, .. }) => {
                assert_eq!(got, body.as_bytes());
                c.cmd(&format!("FIN {id}"));
            }
            other => panic!("{topic}: {other:?}"),
        }
    }
    let mut c = n.connect();
    c.subscribe("fresh", "c", 1);
    let mut p = n.connect();
    p.cmd_body("PUB fresh", b"after a thousand");
    p.expect_ok();
    assert!(matches!(c.read_frame(), Some(Frame::Message { body, .. }) if body == b"after a thousand"));
    assert_eq!(n.get("/ping"), (200, "OK".to_string()));
}

#[test]
fn running_out_of_descriptors_is_reported_and_never_called_exiting() {
    let tmp = tempfile::tempdir().unwrap();
    let n = Nsqd::start_with_descriptor_limit(tmp.path(), &[], 64, 64);
    // Idle clients until the broker cannot take another one: a client is either answered or
    // left waiting while the broker reports that it is out of descriptors.
    let mut served = Vec::new();
    let mut waiting = None;
    for _ in 0..200 {
        let mut c = Conn::connect(&n.tcp);
        c.s.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        c.cmd_body("IDENTIFY", b"{}");
        let deadline = Instant::now() + Duration::from_secs(30);
        let answered = loop {
            if let Some(frame) = c.read_frame() {
                assert!(matches!(frame, Frame::Response(_)), "{frame:?}");
                break true;
            }
            if !n.log_lines("out of file descriptors").is_empty() {
                break false;
            }
            assert!(Instant::now() < deadline, "neither an answer nor a report");
        };
        c.s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        if !answered {
            waiting = Some(c);
            break;
        }
        served.push(c);
    }
    assert!(waiting.is_some(), "200 clients never exhausted a limit of 64");
    // Let a few go, so that HTTP requests can be accepted at all.
    drop(waiting);
    served.truncate(served.len() - 6);
    let deadline = Instant::now() + Duration::from_secs(20);
    let (code, health) = loop {
        if let Ok((code, body)) = http_request(&n.http, "GET", "/ping", b"") {
            break (code, String::from_utf8_lossy(&body).into_owned());
        }
        assert!(Instant::now() < deadline, "/ping never answered");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(code, 500, "{health}");
    assert!(health.starts_with("NOK - out of file descriptors"), "{health}");
    // Topics are still created: the broker's own files give way.
    for i in 0..20 {
        let (code, body) = n.post(&format!("/topic/create?topic=tight{i}"), b"");
        assert!(!body.contains("EXITING"), "{code} {body}");
        assert_eq!(code, 200, "{body}");
    }
    // And the clients still connected keep working.
    let mut consumer = served.pop().unwrap();
    consumer.subscribe("tight0", "c", 1);
    let producer = served.last_mut().unwrap();
    producer.cmd_body("PUB tight0", b"still here");
    producer.expect_ok();
    assert!(matches!(consumer.read_frame(), Some(Frame::Message { body, .. }) if body == b"still here"));
}
