//! `nsqrs to-file` against the real broker: rotation by size and by interval, gzip files that
//! both flate2 and the system `gunzip` read, moves out of the work dir, SIGHUP, the JSON
//! format, and the at-least-once contract across a `kill -9` (duplicates, never a gap).

use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use nsqrs_testkit::{bin, wait_for, Daemon, Nsqd};

struct ToFile {
    process: Daemon,
}

impl ToFile {
    fn start(n: &Nsqd, extra: &[&str]) -> ToFile {
        let mut cmd = Command::new(bin());
        cmd.args(["to-file", "--topic=t", "--nsqd-tcp-address", &n.tcp])
            .args(extra)
            .stdout(Stdio::null());
        ToFile {
            process: Daemon::spawn(cmd, "to-file"),
        }
    }

    fn signal(&self, sig: i32) {
        self.process.signal(sig);
    }

    /// SIGTERM and the exit code, within 20 s.
    fn terminate(mut self) -> Option<i32> {
        self.process
            .terminate(Duration::from_secs(20))
            .unwrap_or_else(|e| panic!("to-file {e} after SIGTERM"))
    }

    fn kill9(mut self) {
        self.process.kill9();
    }
}

fn publish(n: &Nsqd, bodies: impl IntoIterator<Item = String>) {
    let mut c = n.connect();
    let bodies: Vec<Vec<u8>> = bodies.into_iter().map(String::into_bytes).collect();
    c.mpub("t", &bodies);
    c.expect_ok();
}

fn numbered(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("message-{i:04}")).collect()
}

fn channel(n: &Nsqd) -> serde_json::Value {
    n.stats()["topics"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|t| t["topic_name"] == "t")
        .and_then(|t| t["channels"].as_array().and_then(|c| c.first().cloned()))
        .unwrap_or(serde_json::Value::Null)
}

/// Waits until nsqd has `finished` messages finished on the channel and none in flight.
fn wait_finished(n: &Nsqd, depth_zero: bool) {
    wait_for("every message finished", Duration::from_secs(20), || {
        let c = channel(n);
        c["in_flight_count"] == 0 && (!depth_zero || c["depth"] == 0) && c["client_count"] == 1
    });
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

fn lines_of(path: &Path) -> Vec<String> {
    let mut data = Vec::new();
    if path.extension().is_some_and(|e| e == "gz") {
        flate2::read::MultiGzDecoder::new(std::fs::File::open(path).unwrap())
            .read_to_end(&mut data)
            .unwrap();
    } else {
        data = std::fs::read(path).unwrap();
    }
    String::from_utf8(data)
        .unwrap()
        .lines()
        .map(String::from)
        .collect()
}

fn all_lines(dir: &Path) -> Vec<String> {
    files(dir).iter().flat_map(|f| lines_of(f)).collect()
}

#[test]
fn rotates_by_size() {
    let n = Nsqd::start(&[]);
    let out = tempfile::tempdir().unwrap();
    publish(&n, numbered(0..100));
    let tf = ToFile::start(
        &n,
        &[
            "--output-dir",
            out.path().to_str().unwrap(),
            "--rotate-size=200",
            "--sync-interval=100ms",
            "--max-in-flight=10",
        ],
    );
    wait_finished(&n, true);
    assert_eq!(tf.terminate(), Some(0));
    let names = files(out.path());
    assert!(names.len() >= 5, "{names:?}");
    for f in &names {
        let name = f.file_name().unwrap().to_str().unwrap();
        assert!(name.starts_with("t.") && name.ends_with(".log"), "{name}");
        assert!(name.contains("-00000"), "REV in {name}");
        // A file rotates once it is over the limit, so it holds at most one line more.
        assert!(std::fs::metadata(f).unwrap().len() <= 200 + 13, "{name}");
    }
    assert_eq!(all_lines(out.path()), numbered(0..100));
}

#[test]
fn rotates_by_interval() {
    let n = Nsqd::start(&[]);
    let out = tempfile::tempdir().unwrap();
    publish(&n, numbered(0..10));
    let tf = ToFile::start(
        &n,
        &[
            "-output-dir",
            out.path().to_str().unwrap(),
            "-rotate-interval=1s",
            "-sync-interval=200ms",
            "-skip-empty-files",
        ],
    );
    wait_finished(&n, true);
    std::thread::sleep(Duration::from_millis(1500));
    publish(&n, numbered(10..20));
    wait_finished(&n, true);
    assert_eq!(tf.terminate(), Some(0));
    let names = files(out.path());
    assert!(names.len() >= 2, "{names:?}");
    let mut lines = all_lines(out.path());
    lines.sort();
    assert_eq!(lines, numbered(0..20));
}

#[test]
fn gzip_files_decompress_with_flate2_and_gunzip_and_leave_the_work_dir() {
    let n = Nsqd::start(&[]);
    let out = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let tf = ToFile::start(
        &n,
        &[
            "--output-dir",
            out.path().to_str().unwrap(),
            "--work-dir",
            work.path().to_str().unwrap(),
            "--gzip",
            "--gzip-level=9",
            "--sync-interval=100ms",
        ],
    );
    // Two batches with syncs between them: the file is a series of gzip members.
    publish(&n, numbered(0..50));
    wait_finished(&n, true);
    publish(&n, numbered(50..100));
    wait_finished(&n, true);
    assert_eq!(files(work.path()).len(), 1, "in progress in the work dir");
    assert!(files(out.path()).is_empty());
    assert_eq!(tf.terminate(), Some(0));
    assert!(files(work.path()).is_empty(), "moved out on exit");
    let names = files(out.path());
    assert_eq!(names.len(), 1, "{names:?}");
    let name = names[0].file_name().unwrap().to_str().unwrap().to_string();
    assert!(name.ends_with(".log.gz") && name.contains("-000000."), "{name}");
    assert_eq!(lines_of(&names[0]), numbered(0..100));
    let gunzip = Command::new("gunzip").arg("-c").arg(&names[0]).output().unwrap();
    assert!(
        gunzip.status.success(),
        "{}",
        String::from_utf8_lossy(&gunzip.stderr)
    );
    let text = String::from_utf8(gunzip.stdout).unwrap();
    assert_eq!(
        text.lines().map(String::from).collect::<Vec<_>>(),
        numbered(0..100)
    );
}

/// Files closed without a message (a rotation with nothing after it, an exit right after one)
/// are still gzip: `zcat dir/*.gz` reads every file the archiver left.
#[test]
fn every_gzip_file_left_behind_is_valid_even_when_empty() {
    let n = Nsqd::start(&[]);
    let out = tempfile::tempdir().unwrap();
    let tf = ToFile::start(
        &n,
        &[
            "--output-dir",
            out.path().to_str().unwrap(),
            "--gzip",
            "--rotate-interval=300ms",
            "--sync-interval=100ms",
        ],
    );
    publish(&n, numbered(0..10));
    wait_finished(&n, true);
    // Rotation opens the next file at once (no --skip-empty-files), with nothing in it yet.
    wait_for("a rotation", Duration::from_secs(30), || {
        files(out.path()).len() >= 2
    });
    assert_eq!(tf.terminate(), Some(0));
    let names = files(out.path());
    let zcat = Command::new("gzip").arg("-dc").args(&names).output().unwrap();
    assert!(
        zcat.status.success(),
        "{names:?}: {}",
        String::from_utf8_lossy(&zcat.stderr)
    );
    let text = String::from_utf8(zcat.stdout).unwrap();
    assert_eq!(
        text.lines().map(String::from).collect::<Vec<_>>(),
        numbered(0..10)
    );
}

#[test]
fn sighup_closes_and_moves_the_file() {
    let n = Nsqd::start(&[]);
    let out = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let tf = ToFile::start(
        &n,
        &[
            "--output-dir",
            out.path().to_str().unwrap(),
            "--work-dir",
            work.path().to_str().unwrap(),
            "--sync-interval=100ms",
        ],
    );
    publish(&n, numbered(0..5));
    wait_finished(&n, true);
    tf.signal(libc::SIGHUP);
    wait_for("the file to move on SIGHUP", Duration::from_secs(20), || {
        files(out.path()).len() == 1
    });
    publish(&n, numbered(5..10));
    wait_finished(&n, true);
    assert_eq!(tf.terminate(), Some(0));
    let names = files(out.path());
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(names[1].to_str().unwrap().contains("-000001."), "{names:?}");
    assert_eq!(all_lines(out.path()), numbered(0..10));
}

#[test]
fn json_format_carries_metadata() {
    let n = Nsqd::start(&[]);
    let out = tempfile::tempdir().unwrap();
    publish(&n, numbered(0..3));
    let tf = ToFile::start(
        &n,
        &[
            "--output-dir",
            out.path().to_str().unwrap(),
            "--format=json",
            "--sync-interval=100ms",
        ],
    );
    wait_finished(&n, true);
    assert_eq!(tf.terminate(), Some(0));
    let lines = all_lines(out.path());
    assert_eq!(lines.len(), 3);
    for (i, line) in lines.iter().enumerate() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["body"], format!("message-{i:04}"));
        assert_eq!(v["attempts"], 1);
        assert_eq!(v["id"].as_str().unwrap().len(), 16);
        assert!(v["timestamp"].as_i64().unwrap() > 1_600_000_000_000_000_000);
    }
}

#[test]
fn kill_between_write_and_fin_duplicates_but_never_loses() {
    let n = Nsqd::start(&[]);
    let out = tempfile::tempdir().unwrap();
    publish(&n, numbered(0..100));
    let dir = out.path().to_str().unwrap();
    // Nothing triggers a sync: a long interval and more in flight than messages.
    let first = ToFile::start(
        &n,
        &[
            "--output-dir",
            dir,
            "--sync-interval=1h",
            "--max-in-flight=1000",
            "--consumer-opt=msg_timeout,1s",
        ],
    );
    wait_for("all 100 written", Duration::from_secs(20), || {
        all_lines(out.path()).len() == 100
    });
    assert_eq!(channel(&n)["in_flight_count"], 100, "written but not finished");
    first.kill9();
    // The unfinished messages time out and are written again by the next run.
    let second = ToFile::start(
        &n,
        &[
            "--output-dir",
            dir,
            "--sync-interval=100ms",
            "--consumer-opt=msg_timeout,1s",
        ],
    );
    wait_for("redelivered and finished", Duration::from_secs(20), || {
        let c = channel(&n);
        c["depth"] == 0 && c["in_flight_count"] == 0 && all_lines(out.path()).len() >= 200
    });
    assert_eq!(second.terminate(), Some(0));
    let lines = all_lines(out.path());
    let distinct: BTreeSet<&String> = lines.iter().collect();
    let expected = numbered(0..100);
    assert_eq!(distinct, expected.iter().collect(), "no gap");
    assert_eq!(
        lines.len(),
        200,
        "each message twice: written, killed, written again"
    );
}

#[test]
fn bad_flags_give_one_error_line() {
    let cases: &[(&[&str], &str)] = &[
        (
            &[
                "to-file",
                "--topic=t",
                "--nsqd-tcp-address=a:1",
                "--gzip",
                "--gzip-level=10",
            ],
            "gzip-level",
        ),
        (
            &[
                "to-file",
                "--topic=t",
                "--nsqd-tcp-address=a:1",
                "--gzip",
                "--filename-format=<TOPIC>.log",
            ],
            "<REV>",
        ),
        (&["to-file", "--nsqd-tcp-address=a:1"], "--topic is required"),
        (
            &[
                "to-file",
                "--topic=t",
                "--lookupd-http-address=a:1",
                "--topic-pattern=x",
            ],
            "not both",
        ),
        (
            &[
                "to-file",
                "--topic=t",
                "--nsqd-tcp-address=a:1",
                "--datetime-format=%Q",
            ],
            "%Q",
        ),
        (
            &[
                "to-file",
                "--topic=t",
                "--nsqd-tcp-address=a:1",
                "--rotate-interval=5",
            ],
            "rotate-interval",
        ),
        (&["to-file", "--topic=t"], "required"),
    ];
    for (args, want) in cases {
        let out = Command::new(bin()).args(*args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
    }
}
