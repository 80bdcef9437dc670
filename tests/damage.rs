//! Bad days: a full disk, and damaged files in the data directory. The broker reports the
//! problem, refuses what it cannot store with NSQ's error, keeps serving everything that is
//! intact, loses only what is damaged, says so in one log line per repair and on `/stats`, and
//! never panics or refuses to start because of one bad file.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nsqrs_testkit::{Frame, Nsqd};

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

/// One record of a segment file, as the test reads it back (layout in src/broker/record.rs).
#[derive(Debug, Clone)]
struct Record {
    offset: usize,
    id: String,
}

fn records(segment: &Path) -> Vec<Record> {
    let data = std::fs::read(segment).unwrap();
    let mut out = Vec::new();
    let mut at = 0;
    while at + 42 <= data.len() {
        let len = u32::from_be_bytes(data[at..at + 4].try_into().unwrap()) as usize;
        let id = u64::from_be_bytes(data[at + 16..at + 24].try_into().unwrap());
        out.push(Record {
            offset: at,
            id: format!("{id:016x}"),
        });
        at += 8 + len;
    }
    out
}

fn segments(data: &Path, topic: &str) -> Vec<PathBuf> {
    let mut segs: Vec<PathBuf> = std::fs::read_dir(data.join(format!("nsqrs-data/topics/t_{topic}")))
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    segs.sort();
    segs
}

fn flip_byte(path: &Path, at: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[at] ^= 0x5a;
    std::fs::write(path, bytes).unwrap();
}

/// Publishes `count` messages to `topic` in MPUB batches of 100.
fn publish(n: &Nsqd, topic: &str, count: usize) {
    publish_batches(n, topic, count, 100);
}

/// Publishes `count` messages to `topic` in MPUB batches of `batch` (a batch is one write, and
/// a log segment holds whole batches).
fn publish_batches(n: &Nsqd, topic: &str, count: usize, batch: usize) {
    let mut p = n.connect();
    for start in (0..count).step_by(batch) {
        let bodies: Vec<Vec<u8>> = (start..count.min(start + batch))
            .map(|i| format!("{topic}-{i:05}-{}", "p".repeat(90)).into_bytes())
            .collect();
        p.mpub(topic, &bodies);
        p.expect_ok();
    }
}

/// Subscribes, FINs until `want` messages came, then listens a moment longer so that an extra
/// one would be seen. Returns the IDs in delivery order.
fn drain(n: &Nsqd, topic: &str, channel: &str, want: usize) -> Vec<String> {
    let mut c = n.connect();
    c.subscribe(topic, channel, 500);
    c.s.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut settle = None;
    loop {
        match c.read_frame() {
            Some(Frame::Message { id, .. }) => {
                c.cmd(&format!("FIN {id}"));
                got.push(id);
            }
            _ if got.len() >= want => {
                let since = *settle.get_or_insert_with(Instant::now);
                if since.elapsed() > Duration::from_millis(700) {
                    return got;
                }
            }
            _ => {}
        }
        assert!(
            Instant::now() < deadline,
            "{topic}:{channel}: {} of {want} delivered",
            got.len()
        );
    }
}

/// The repairs `/stats` lists.
fn repairs(n: &Nsqd) -> Vec<serde_json::Value> {
    let stats = n.stats();
    let list = stats["repairs"].as_array().cloned().unwrap_or_default();
    assert_eq!(stats["repair_count"].as_u64(), Some(list.len() as u64));
    list
}

fn assert_distinct(ids: &[String]) {
    let set: HashSet<&String> = ids.iter().collect();
    assert_eq!(set.len(), ids.len(), "a message was delivered twice");
}

#[test]
fn a_flipped_byte_mid_active_segment_loses_only_that_message() {
    let n = Nsqd::start(&[]);
    let data = n.data.clone();
    publish(&n, "active", 2000);
    let tmp = n.kill9();
    let segs = segments(&data, "active");
    assert_eq!(segs.len(), 1, "all 2000 messages in the active segment");
    let recs = records(&segs[0]);
    assert_eq!(recs.len(), 2000);
    let victim = recs[1000].clone();
    flip_byte(&segs[0], victim.offset + 60);

    let n = Nsqd::start_in(&data, &[]);
    // Found while the log opens: one line naming the file, the offset and the lost message.
    let lines = n.log_lines("repair:");
    assert_eq!(lines.len(), 1, "{lines:?}");
    let name = segs[0].file_name().unwrap().to_str().unwrap();
    for part in [
        name,
        &format!("offset {}", victim.offset),
        &victim.id,
        "lost 1 message",
    ] {
        assert!(lines[0].contains(part), "{part:?} not in {}", lines[0]);
    }
    let got = drain(&n, "active", "ch", 1999);
    assert_eq!(got.len(), 1999);
    assert_distinct(&got);
    assert!(!got.contains(&victim.id));
    let expected: HashSet<&String> = recs
        .iter()
        .map(|r| &r.id)
        .filter(|id| **id != victim.id)
        .collect();
    assert_eq!(got.iter().collect::<HashSet<_>>(), expected);
    let listed = repairs(&n);
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["action"], "records_skipped");
    assert_eq!(listed[0]["offset"], victim.offset as u64);
    assert!(listed[0]["detail"].as_str().unwrap().contains(&victim.id));
    // Nothing is left over: the depth counts exactly what the log holds.
    let stats = n.stats();
    let topic = &stats["topics"][0];
    assert_eq!(topic["channels"][0]["depth"], 0, "{topic}");
    assert_eq!(topic["channels"][0]["message_count"], 2000, "{topic}");
    assert_eq!(n.get("/ping"), (200, "OK".to_string()));
    drop(tmp);
}

#[test]
fn a_flipped_byte_in_an_earlier_segment_loses_only_that_message() {
    let n = Nsqd::start(&["--max-bytes-per-file=4096"]);
    let data = n.data.clone();
    publish_batches(&n, "sealed", 200, 10);
    let tmp = n.kill9();
    let segs = segments(&data, "sealed");
    assert!(segs.len() >= 3, "expected several segments, got {segs:?}");
    let recs = records(&segs[1]);
    assert!(recs.len() > 10);
    let victim = recs[3].clone();
    flip_byte(&segs[1], victim.offset + 50);

    let n = Nsqd::start_in(&data, &["--max-bytes-per-file=4096"]);
    let got = drain(&n, "sealed", "ch", 199);
    assert_eq!(
        got.len(),
        199,
        "every intact message of the damaged segment is served"
    );
    assert_distinct(&got);
    assert!(!got.contains(&victim.id));
    // Found by the reader that got there: one line, once.
    let line = n.wait_log("repair:", Duration::from_secs(5));
    assert_eq!(n.log_lines("repair:").len(), 1);
    let name = segs[1].file_name().unwrap().to_str().unwrap();
    for part in [name, &format!("offset {}", victim.offset), &victim.id] {
        assert!(line.contains(part), "{part:?} not in {line}");
    }
    let bad = segs[1].with_extension(format!("seg.{}.bad", victim.offset));
    assert!(bad.exists(), "the damaged bytes are kept in {bad:?}");
    assert_eq!(repairs(&n).len(), 1);
    assert_eq!(n.stats()["topics"][0]["channels"][0]["depth"], 0);
    drop(tmp);
}

#[test]
fn a_torn_tail_is_still_cut_and_reported() {
    let n = Nsqd::start(&[]);
    let data = n.data.clone();
    publish(&n, "torn", 100);
    let tmp = n.kill9();
    let seg = segments(&data, "torn").pop().unwrap();
    // The first 30 bytes of a record: what a crash in the middle of a write leaves.
    let bytes = std::fs::read(&seg).unwrap();
    let mut torn = bytes.clone();
    torn.extend_from_slice(&bytes[..30]);
    std::fs::write(&seg, &torn).unwrap();

    let n = Nsqd::start_in(&data, &[]);
    let lines = n.log_lines("repair:");
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("torn tail cut"), "{}", lines[0]);
    assert!(
        lines[0].contains(&format!("offset {}", bytes.len())),
        "{}",
        lines[0]
    );
    assert_eq!(std::fs::metadata(&seg).unwrap().len(), bytes.len() as u64);
    publish(&n, "torn", 1);
    assert_eq!(drain(&n, "torn", "ch", 101).len(), 101);
    // The cut log is whole: the next start finds nothing to repair.
    let tmp2 = n.kill9();
    let n = Nsqd::start_in(&data, &[]);
    assert!(n.log_lines("repair:").is_empty());
    assert!(repairs(&n).is_empty());
    drop((tmp, tmp2));
}

/// Topic `a` with channel `c` (50 messages, the first 20 finished) and topic `b` with channel
/// `d` (30 messages, none read), stopped cleanly. Returns the data directory and the IDs of
/// `a`'s 30 unfinished messages.
fn two_topics() -> (Nsqd, HashSet<String>) {
    let n = Nsqd::start(&[]);
    let mut c = n.connect();
    c.subscribe("a", "c", 0);
    let mut d = n.connect();
    d.subscribe("b", "d", 0);
    publish(&n, "a", 50);
    publish(&n, "b", 30);
    c.cmd("RDY 20");
    let mut delivered = Vec::new();
    while delivered.len() < 20 {
        match c.read_frame() {
            Some(Frame::Message { id, .. }) => delivered.push(id),
            other => panic!("{other:?}"),
        }
    }
    // No more deliveries: the FINs would otherwise make room for the next messages.
    c.cmd("RDY 0");
    for id in delivered {
        c.cmd(&format!("FIN {id}"));
    }
    let all: Vec<String> = records(&segments(&n.data, "a")[0])
        .into_iter()
        .map(|r| r.id)
        .collect();
    let unfinished = all[20..].iter().cloned().collect();
    // FINs are processed in order: once the topic reports no in-flight message, all 20 are in.
    let deadline = Instant::now() + Duration::from_secs(10);
    while n.stats()["topics"][0]["channels"][0]["in_flight_count"] != 0 {
        assert!(Instant::now() < deadline, "FINs not processed");
        std::thread::sleep(Duration::from_millis(20));
    }
    (n, unfinished)
}

#[test]
fn a_damaged_channel_snapshot_or_journal_never_stops_the_broker() {
    for damage in ["empty", "truncated", "flipped", "journal"] {
        let (n, unfinished) = two_topics();
        let data = n.data.clone();
        let (code, tmp) = n.terminate();
        assert_eq!(code, Some(0));
        let channels = data.join("nsqrs-data/topics/t_a/channels");
        let (snap, journal) = (channels.join("c.snap"), channels.join("c.journal"));
        let bytes = std::fs::read(&snap).unwrap();
        match damage {
            "empty" => std::fs::write(&snap, b"").unwrap(),
            "truncated" => std::fs::write(&snap, &bytes[..bytes.len() / 2]).unwrap(),
            "flipped" => flip_byte(&snap, 20),
            _ => std::fs::write(&journal, b"this is not a channel journal").unwrap(),
        }

        let n = Nsqd::start_in(&data, &[]);
        // The other topic is served, whole.
        assert_eq!(drain(&n, "b", "d", 30).len(), 30, "{damage}");
        // The damaged channel loses nothing: every unfinished message is delivered (a rebuilt
        // channel may deliver finished ones again).
        let got = drain(&n, "a", "c", 30);
        assert_distinct(&got);
        let got: HashSet<String> = got.into_iter().collect();
        assert!(
            got.is_superset(&unfinished),
            "{damage}: lost {:?}",
            unfinished.difference(&got)
        );
        let lines = n.log_lines("repair:");
        assert_eq!(lines.len(), 1, "{damage}: {lines:?}");
        let listed = repairs(&n);
        assert_eq!(listed.len(), 1);
        if damage == "journal" {
            assert!(lines[0].contains("c.journal"), "{}", lines[0]);
            assert_eq!(got.len(), 30, "an intact snapshot is used as it is");
        } else {
            assert!(
                lines[0].contains("c.snap") && lines[0].contains("rebuilt"),
                "{}",
                lines[0]
            );
            assert_eq!(listed[0]["action"], "channel_rebuilt");
            assert!(snap.with_extension("snap.bad").exists());
        }
        assert_eq!(n.get("/ping"), (200, "OK".to_string()));
        drop(n);
        drop(tmp);
    }
}

#[test]
fn damaged_metadata_orphan_start_and_an_unopenable_topic_leave_the_rest_served() {
    let n = Nsqd::start(&[]);
    let data = n.data.clone();
    let mut g = n.connect();
    g.subscribe("good", "g", 0);
    publish(&n, "good", 10);
    // A topic whose only channel was deleted keeps what comes next for its next channel.
    assert_eq!(n.post("/topic/create?topic=orphaned", b"").0, 200);
    assert_eq!(n.post("/channel/create?topic=orphaned&channel=old", b"").0, 200);
    assert_eq!(n.post("/channel/delete?topic=orphaned&channel=old", b"").0, 200);
    publish(&n, "orphaned", 10);
    publish(&n, "broken", 5);
    let (code, tmp) = n.terminate();
    assert_eq!(code, Some(0));
    std::fs::write(data.join("nsqd.dat"), b"{\"topics\": [{\"name\": ").unwrap();
    let orphan = data.join("nsqrs-data/topics/t_orphaned/orphan_start");
    assert!(orphan.exists());
    std::fs::write(&orphan, b"12 garbage").unwrap();
    // A log that cannot be opened at all: its segment replaced by a directory.
    let seg = segments(&data, "broken").pop().unwrap();
    std::fs::remove_file(&seg).unwrap();
    std::fs::create_dir(&seg).unwrap();

    let n = Nsqd::start_in(&data, &[]);
    let listed = repairs(&n);
    let actions: Vec<&str> = listed.iter().map(|r| r["action"].as_str().unwrap()).collect();
    for action in ["metadata_rebuilt", "file_set_aside", "topic_set_aside"] {
        assert!(actions.contains(&action), "{action} not in {actions:?}");
    }
    assert_eq!(n.log_lines("repair:").len(), listed.len());
    assert!(data.join("nsqd.dat.bad").exists());
    assert_eq!(drain(&n, "good", "g", 10).len(), 10);
    assert!(drain(&n, "orphaned", "new", 10).len() >= 10);
    // The broken topic answers an error that is not EXITING, and can be deleted.
    let (code, body) = n.post("/pub?topic=broken", b"x");
    assert_eq!((code, body.as_str()), (500, r#"{"message":"INTERNAL_ERROR"}"#));
    let mut p = n.connect();
    p.cmd_body("PUB broken", b"x");
    match p.read_frame() {
        Some(Frame::Error(e)) => assert!(e.starts_with("E_PUB_FAILED"), "{e}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(n.post("/topic/delete?topic=broken", b"").0, 200);
    assert_eq!(n.post("/pub?topic=broken", b"fresh").0, 200);
    assert_eq!(drain(&n, "broken", "c", 1).len(), 1);
    assert_eq!(n.get("/ping"), (200, "OK".to_string()));
    drop(tmp);
}

#[test]
fn a_channel_that_cannot_be_restored_is_set_aside_retried_and_deletable() {
    let (n, unfinished) = two_topics();
    let data = n.data.clone();
    let (code, tmp) = n.terminate();
    assert_eq!(code, Some(0));
    // Where the next snapshot of each channel would be written, a directory: neither channel
    // can be given a store.
    let a = data.join("nsqrs-data/topics/t_a/channels/c.snap.tmp");
    let b = data.join("nsqrs-data/topics/t_b/channels/d.snap.tmp");
    std::fs::create_dir(&a).unwrap();
    std::fs::create_dir(&b).unwrap();

    let n = Nsqd::start_in(&data, &[]);
    let listed = repairs(&n);
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert!(listed.iter().all(|r| r["action"] == "file_set_aside"));
    assert_eq!(n.log_lines("repair:").len(), 2);
    // Still not restorable: SUB fails with NSQ's error, the broker serves on.
    let mut c = n.connect();
    c.cmd("SUB a c");
    match c.read_frame() {
        Some(Frame::Error(e)) => assert!(e.starts_with("E_SUB_FAILED"), "{e}"),
        other => panic!("{other:?}"),
    }
    publish(&n, "other", 3);
    assert_eq!(drain(&n, "other", "x", 3).len(), 3);
    // Once it can be, the next client gets the channel as it was: its 30 unfinished messages.
    std::fs::remove_dir(&a).unwrap();
    let got: HashSet<String> = drain(&n, "a", "c", 30).into_iter().collect();
    assert_eq!(got, unfinished);
    // A channel set aside can be deleted; it is gone from nsqd.dat too.
    assert_eq!(n.post("/channel/delete?topic=b&channel=d", b"").0, 200);
    let meta = std::fs::read_to_string(data.join("nsqd.dat")).unwrap();
    assert!(meta.contains("\"c\"") && !meta.contains("\"d\""), "{meta}");
    assert_eq!(n.get("/ping"), (200, "OK".to_string()));
    drop(tmp);
}
