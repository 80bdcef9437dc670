//! Bad days: a full disk and a corrupt log segment. The broker reports the problem, refuses
//! what it cannot store with NSQ's error, keeps serving what it has, and never panics.

mod common;

use std::time::{Duration, Instant};

use common::{Frame, Nsqd};

#[test]
fn full_disk_fails_publishes_and_turns_ping_unhealthy() {
    let tmp = tempfile::tempdir().unwrap();
    let n = Nsqd::start_with_file_limit(tmp.path(), &[], 256 * 1024);
    let mut p = n.connect();
    let body = vec![b'x'; 1000];
    let mut acked = 0;
    let failure = loop {
        p.cmd_body("PUB full", &body);
        match p.read_frame() {
            Some(Frame::Response(ok)) if ok == b"OK" => acked += 1,
            other => break other,
        }
        assert!(acked < 10_000, "the file size limit never hit");
    };
    match failure {
        Some(Frame::Error(e)) => assert!(e.starts_with("E_PUB_FAILED PUB failed "), "{e}"),
        other => panic!("expected E_PUB_FAILED, got {other:?}"),
    }
    let (code, health) = n.get("/ping");
    assert_eq!(code, 500);
    assert!(health.starts_with("NOK - "), "{health}");
    // nsqd answers a failed HTTP publish with 503 EXITING.
    assert_eq!(
        n.post("/pub?topic=full", &body),
        (503, r#"{"message":"EXITING"}"#.to_string())
    );
    // Everything acknowledged before the disk filled is still delivered.
    let mut c = n.connect();
    c.subscribe("full", "ch", 100);
    c.s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut got = 0;
    while got < acked {
        match c.read_frame() {
            Some(Frame::Message { id, .. }) => {
                c.cmd(&format!("FIN {id}"));
                got += 1;
            }
            other => panic!("after {got} of {acked}: {other:?}"),
        }
    }
}

#[test]
fn corrupt_segment_is_set_aside_and_the_rest_served() {
    let n = Nsqd::start(&["--max-bytes-per-file=4096"]);
    let data = n.data.clone();
    let mut p = n.connect();
    for batch in 0..10 {
        let bodies: Vec<Vec<u8>> = (0..20)
            .map(|i| format!("{batch:02}-{i:02}-{}", "p".repeat(100)).into_bytes())
            .collect();
        p.mpub("dmg", &bodies);
        p.expect_ok();
    }
    let tmp = n.kill9();
    let dir = data.join("nsqrs-data/topics/t_dmg");
    let mut segments: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    segments.sort();
    assert!(segments.len() >= 3, "expected several segments, got {segments:?}");
    let victim = &segments[1];
    let mut bytes = std::fs::read(victim).unwrap();
    bytes[40] ^= 0xff;
    std::fs::write(victim, bytes).unwrap();

    let n = Nsqd::start_in(&data, &[]);
    let mut c = n.connect();
    c.subscribe("dmg", "ch", 500);
    c.s.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    let mut got = 0;
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        match c.read_frame() {
            Some(Frame::Message { id, .. }) => {
                c.cmd(&format!("FIN {id}"));
                got += 1;
            }
            _ if got > 0 => break,
            _ => {}
        }
    }
    assert!(
        got > 100 && got < 200,
        "served {got} of 200 with one segment lost"
    );
    assert!(
        victim.with_extension("seg.bad").exists(),
        "corrupt segment not set aside"
    );
    assert_eq!(n.get("/ping"), (200, "OK".to_string()));
    drop(tmp);
}
