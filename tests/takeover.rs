//! Taking over a data directory written by Go nsqd: one that Go nsqd 1.3.0 wrote itself
//! (tests/fixtures/go-nsqd, made by its generate.py), and one built here from the documented
//! formats (nsq-reference §1.6–1.7): `nsqd.dat` JSON, and go-diskqueue data files of
//! `[4B len][8B ts][2B attempts][16B hex id][body]` records with a text meta file. A takeover
//! that fails half way leaves nothing a later start could take for a finished one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
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

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/go-nsqd/v1.3.0")
}

/// A copy of the directory Go nsqd 1.3.0 wrote, in a fresh temp dir.
fn go_fixture() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(fixture_dir()).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), tmp.path().join(entry.file_name())).unwrap();
    }
    tmp
}

fn expected() -> serde_json::Value {
    let text = std::fs::read_to_string(fixture_dir().parent().unwrap().join("v1.3.0.expected.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Every message of `topic`/`channel` (FINed), until none comes for a while.
fn drain_all(n: &Nsqd, topic: &str, channel: &str, want: usize) -> Vec<(String, u16)> {
    let mut c = n.connect();
    c.subscribe(topic, channel, 500);
    c.s.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut quiet_since = Instant::now();
    while Instant::now() < deadline {
        match c.read_frame() {
            Some(Frame::Message {
                id, body, attempts, ..
            }) => {
                c.cmd(&format!("FIN {id}"));
                got.push((String::from_utf8(body).unwrap(), attempts));
                quiet_since = Instant::now();
            }
            Some(other) => panic!("{topic}/{channel}: {other:?}"),
            // Past what is expected, a short silence shows nothing more (no duplicate) follows.
            None if got.len() >= want && quiet_since.elapsed() > Duration::from_millis(500) => break,
            None => {}
        }
    }
    got
}

/// Checks that the broker serves exactly what Go nsqd had queued, channel by channel.
fn assert_fixture_delivered(n: &Nsqd) {
    let expected = expected();
    let stats = n.stats();
    let topics = stats["topics"].as_array().unwrap();
    let topic = |name: &str| topics.iter().find(|t| t["topic_name"] == name).unwrap().clone();
    assert_eq!(topic("held")["paused"], true);
    assert!(topic("lonely")["channels"].as_array().unwrap().is_empty());
    let orders = topic("orders");
    let names: Vec<&str> = orders["channels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["channel_name"].as_str().unwrap())
        .collect();
    // The ephemeral channel lived in Go's memory only.
    assert_eq!(names, vec!["audit", "billing"]);
    assert_eq!(orders["channels"][0]["paused"], true);
    n.post("/topic/unpause?topic=held", b"");
    n.post("/channel/unpause?topic=orders&channel=audit", b"");
    for (key, want) in expected.as_object().unwrap() {
        let Some(bodies) = want["bodies"].as_array() else {
            continue;
        };
        let (topic, channel) = key.split_once('/').unwrap();
        // A topic without channels keeps its backlog for the first one.
        let channel = if channel.is_empty() { "first" } else { channel };
        let got = drain_all(n, topic, channel, bodies.len());
        let mut got_bodies: Vec<&str> = got.iter().map(|(b, _)| b.as_str()).collect();
        got_bodies.sort();
        let want_bodies: Vec<&str> = bodies.iter().map(|b| b.as_str().unwrap()).collect();
        assert_eq!(got_bodies.len(), want_bodies.len(), "{key}: count");
        assert_eq!(got_bodies, want_bodies, "{key}");
        for (body, attempts) in &got {
            let want = want["attempts"][body.as_str()].as_u64().unwrap_or(1);
            assert_eq!(*attempts as u64, want, "{key}: attempts of {body}");
        }
    }
}

#[test]
fn a_directory_go_nsqd_1_3_0_wrote_is_taken_over() {
    let tmp = go_fixture();
    let n = Nsqd::start_in(tmp.path(), &[]);
    assert!(
        n.log
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("took over Go nsqd data")),
        "no takeover line"
    );
    assert_fixture_delivered(&n);
    // The store is in place; a restart does not import again.
    drop(n);
    let n = Nsqd::start_in(tmp.path(), &[]);
    let stats = n.stats();
    for t in stats["topics"].as_array().unwrap() {
        for c in t["channels"].as_array().unwrap() {
            assert_eq!(
                c["depth"], 0,
                "re-imported into {}/{}",
                t["topic_name"], c["channel_name"]
            );
        }
    }
}

/// Runs `nsqrs serve` on `data` expecting it to fail at start-up; returns its stderr. With
/// `max_file_bytes`, no file it writes may grow past that (writes fail with EFBIG).
fn failed_start(data: &Path, max_file_bytes: Option<u64>) -> String {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new(nsqrs_testkit::bin());
    cmd.args([
        "serve",
        "--tcp-address=127.0.0.1:0",
        "--http-address=127.0.0.1:0",
        "--embedded-lookupd=false",
        &format!("--data-path={}", data.display()),
    ])
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    if let Some(limit) = max_file_bytes {
        // SAFETY: only async-signal-safe calls (signal, setrlimit) between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
                let lim = libc::rlimit {
                    rlim_cur: limit,
                    rlim_max: limit,
                };
                if libc::setrlimit(libc::RLIMIT_FSIZE, &lim) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let out = nsqrs_testkit::wait_bounded(cmd.spawn().unwrap(), Duration::from_secs(30));
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success(),
        "started although the takeover must fail: {stderr}"
    );
    stderr
}

#[test]
fn a_takeover_that_fails_on_a_damaged_go_file_is_done_again_once_it_is_repaired() {
    let tmp = go_fixture();
    let dir = tmp.path();
    let go_meta = std::fs::read(dir.join("nsqd.dat")).unwrap();
    // Damage the queue of the topic imported last, so the others are imported before it fails.
    let meta: serde_json::Value = serde_json::from_slice(&go_meta).unwrap();
    let last = meta["topics"].as_array().unwrap().last().unwrap()["name"]
        .as_str()
        .unwrap()
        .to_string();
    let queue_meta = dir.join(format!("{last}.diskqueue.meta.dat"));
    let original = std::fs::read(&queue_meta).unwrap();
    std::fs::write(&queue_meta, b"not a diskqueue\n").unwrap();
    let stderr = failed_start(dir, None);
    assert!(
        !dir.join("nsqrs-data").exists(),
        "a failed takeover left nsqrs-data/ behind"
    );
    assert!(stderr.contains("failed to take over Go nsqd data"), "{stderr}");
    assert!(stderr.contains(&format!("{last}.diskqueue.meta.dat")), "{stderr}");
    assert_eq!(
        std::fs::read(dir.join("nsqd.dat")).unwrap(),
        go_meta,
        "nsqd.dat changed"
    );
    std::fs::write(&queue_meta, original).unwrap();
    let n = Nsqd::start_in(dir, &[]);
    assert_fixture_delivered(&n);
}

#[test]
fn a_takeover_cut_short_by_a_full_disk_is_done_again() {
    let tmp = go_fixture();
    let dir = tmp.path();
    // Topic logs are tens of kB; the limit lets the takeover start and stops it part way.
    let stderr = failed_start(dir, Some(12_000));
    assert!(
        !dir.join("nsqrs-data").exists(),
        "a failed takeover left nsqrs-data/ behind"
    );
    assert!(stderr.contains("failed to take over Go nsqd data"), "{stderr}");
    assert!(
        dir.join("nsqrs.takeover").exists(),
        "the takeover did not get far enough to leave a partial store: {stderr}"
    );
    let n = Nsqd::start_in(dir, &[]);
    assert!(
        n.log
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("starting it again")),
        "the partial store was not noticed"
    );
    assert_fixture_delivered(&n);
}
