//! Taking over a data directory written by Go nsqd. The fixture is built from the documented
//! formats (nsq-reference §1.6–1.7): `nsqd.dat` JSON, and go-diskqueue data files of
//! `[4B len][8B ts][2B attempts][16B hex id][body]` records with a text meta file.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use nsqrs_testkit::{Frame, Nsqd};

fn record(id: u64, attempts: u16, body: &str) -> Vec<u8> {
    let mut msg = 1_700_000_000_000_000_000i64.to_be_bytes().to_vec();
    msg.extend_from_slice(&attempts.to_be_bytes());
    msg.extend_from_slice(format!("{id:016x}").as_bytes());
    msg.extend_from_slice(body.as_bytes());
    let mut rec = (msg.len() as u32).to_be_bytes().to_vec();
    rec.extend(msg);
    rec
}

/// Writes a diskqueue whose first `consumed` records were already read by Go nsqd, spread over
/// two data files.
fn write_queue(dir: &Path, name: &str, bodies: &[&str], consumed: usize) {
    let split = bodies.len() / 2;
    let file0: Vec<u8> = bodies[..split]
        .iter()
        .enumerate()
        .flat_map(|(i, b)| record(100 + i as u64, 1, b))
        .collect();
    let file1: Vec<u8> = bodies[split..]
        .iter()
        .enumerate()
        .flat_map(|(i, b)| record(200 + i as u64, 0, b))
        .collect();
    let read_pos: usize = bodies[..consumed]
        .iter()
        .enumerate()
        .map(|(i, b)| record(100 + i as u64, 1, b).len())
        .sum();
    std::fs::write(dir.join(format!("{name}.diskqueue.000000.dat")), &file0).unwrap();
    std::fs::write(dir.join(format!("{name}.diskqueue.000001.dat")), &file1).unwrap();
    let depth = bodies.len() - consumed;
    let meta = format!("{depth}\n0,{read_pos}\n1,{}\n", file1.len());
    std::fs::write(dir.join(format!("{name}.diskqueue.meta.dat")), meta).unwrap();
}

fn drain(n: &Nsqd, channel: &str, want: usize) -> BTreeMap<String, u16> {
    let mut c = n.connect();
    c.subscribe("orders", channel, 100);
    c.s.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
    let mut got = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while got.len() < want && Instant::now() < deadline {
        if let Some(Frame::Message {
            id, body, attempts, ..
        }) = c.read_frame()
        {
            c.cmd(&format!("FIN {id}"));
            got.insert(String::from_utf8(body).unwrap(), attempts);
        }
    }
    got
}

#[test]
fn go_data_directory_is_taken_over() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(
        dir.join("nsqd.dat"),
        r#"{"topics":[{"channels":[{"name":"billing","paused":false},{"name":"audit","paused":true}],"name":"orders","paused":false}],"version":"1.3.0"}"#,
    )
    .unwrap();
    // Pending in the topic itself: goes to every channel.
    write_queue(dir, "orders", &["t1", "t2", "t3", "t4"], 1);
    // Pending in one channel only.
    write_queue(dir, "orders:billing", &["b1", "b2", "b3"], 0);

    let n = Nsqd::start_in(dir, &[]);
    let stats = n.stats();
    let channels = &stats["topics"][0]["channels"];
    assert_eq!(channels[0]["channel_name"], "audit");
    assert_eq!(channels[0]["paused"], true);
    assert_eq!(channels[0]["depth"], 3);
    assert_eq!(channels[1]["channel_name"], "billing");
    assert_eq!(channels[1]["depth"], 6);

    let billing = drain(&n, "billing", 6);
    let expected: Vec<&str> = vec!["b1", "b2", "b3", "t2", "t3", "t4"];
    assert_eq!(billing.keys().map(String::as_str).collect::<Vec<_>>(), expected);
    // Attempts carry over: b1 had been delivered once under Go nsqd.
    assert_eq!(billing["b1"], 2);
    assert_eq!(billing["t3"], 1);

    n.post("/channel/unpause?topic=orders&channel=audit", b"");
    let audit = drain(&n, "audit", 3);
    assert_eq!(
        audit.keys().map(String::as_str).collect::<Vec<_>>(),
        vec!["t2", "t3", "t4"]
    );

    // A restart does not import twice.
    let _ = n.kill9();
    let n = Nsqd::start_in(dir, &[]);
    let stats = n.stats();
    let total: u64 = stats["topics"][0]["channels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["depth"].as_u64().unwrap())
        .sum();
    assert!(total <= 9, "re-imported: depth {total}");
    drop(n);
}
