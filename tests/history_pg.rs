//! The history toolkit against PostgreSQL: `to-db --db postgres://…` with events, `trace`,
//! and `replay`, on a throwaway cluster this test starts (initdb + pg_ctl on a temp dir and a
//! free port, as the `postgres` user when run as root) and stops. PostgreSQL missing is a
//! failure with a clear message, never a skip: `tests/pg.sh` installs it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use nsqrs_testkit::{bin, wait_for, Nsqd, ToDb};

struct Postgres {
    bin: PathBuf,
    dir: tempfile::TempDir,
    url: String,
}

fn pg_bin() -> PathBuf {
    let out = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/pg.sh"))
        .output()
        .expect("run tests/pg.sh");
    assert!(
        out.status.success(),
        "PostgreSQL is required for this test and could not be installed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

fn is_root() -> bool {
    // SAFETY: getuid has no preconditions.
    unsafe { libc::getuid() == 0 }
}

/// Runs a PostgreSQL program, as `postgres` when we are root (the server refuses root).
fn pg_command(bin: &Path, program: &str, args: &[&str]) -> Output {
    let exe = bin.join(program);
    let mut cmd = if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(&exe);
        c
    } else {
        Command::new(&exe)
    };
    cmd.args(args).stdin(Stdio::null()).output().unwrap()
}

impl Postgres {
    fn start() -> Postgres {
        let bin = pg_bin();
        let dir = tempfile::Builder::new().prefix("nsqrs-pg").tempdir().unwrap();
        if is_root() {
            let ok = Command::new("chown")
                .args(["-R", "postgres:", dir.path().to_str().unwrap()])
                .status()
                .unwrap()
                .success();
            assert!(ok, "chown the PostgreSQL data dir to postgres");
        }
        let data = dir.path().join("data");
        let data = data.to_str().unwrap();
        let o = pg_command(
            &bin,
            "initdb",
            &["-D", data, "-U", "nsqrs", "--auth=trust", "-E", "UTF8"],
        );
        assert!(
            o.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let opts = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            dir.path().display()
        );
        let log = dir.path().join("log");
        let o = pg_command(
            &bin,
            "pg_ctl",
            &[
                "-D",
                data,
                "-o",
                &opts,
                "-l",
                log.to_str().unwrap(),
                "-w",
                "-t",
                "60",
                "start",
            ],
        );
        assert!(
            o.status.success(),
            "pg_ctl start: {} {}",
            String::from_utf8_lossy(&o.stderr),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        let url = format!("postgres://nsqrs@127.0.0.1:{port}/postgres");
        Postgres { bin, dir, url }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        pg_command(
            &self.bin,
            "pg_ctl",
            &["-D", data.to_str().unwrap(), "-m", "immediate", "stop"],
        );
    }
}

fn nsqrs(args: &[&str]) -> Output {
    Command::new(bin()).args(args).output().unwrap()
}

fn publish(n: &Nsqd, topic: &str, bodies: &[String]) {
    let mut c = n.connect();
    let bodies: Vec<Vec<u8>> = bodies.iter().map(|b| b.clone().into_bytes()).collect();
    c.mpub(topic, &bodies);
    c.expect_ok();
}

/// How many archived messages of `topic` a replay would take (the archive's own count).
fn archived(db: &str, topic: &str) -> usize {
    let o = nsqrs(&["replay", "--since=1h", "--topic", topic, "--db", db, "--dry-run"]);
    let out = String::from_utf8_lossy(&o.stdout);
    out.strip_prefix("would replay ")
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[test]
fn archive_trace_and_replay_through_postgres() {
    let pg = Postgres::start();
    // The events below are fed by hand; the broker's own stay off.
    let n = Nsqd::start(&["--lifecycle-events=off"]);
    let bodies: Vec<String> = (0..300)
        .map(|i| format!(r#"{{"n":{i},"tag":"pg-{i:03}"}}"#))
        .collect();
    publish(&n, "src", &bodies);
    let t = ToDb::start(
        &n,
        "src",
        &pg.url,
        &["--events", "--batch-size=64", "--flush-interval=100ms"],
    );
    wait_for("archive in postgres", Duration::from_secs(60), || {
        archived(&pg.url, "src") == 300
    });

    let o = nsqrs(&["trace", "--db", &pg.url, "--where", "tag=pg-000", "--format=json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let id = v["id"].as_str().unwrap().to_string();
    let ts = v["messages"][0]["timestamp"].as_i64().unwrap();
    assert_eq!(v["messages"][0]["body"], bodies[0]);

    let events = format!(
        concat!(
            r#"{{"ev":"published","ts":{t0},"nsqd":"{a}","topic":"src","client":"x","ids":["{id}"],"sizes":[5],"timestamps":[{t0}],"deliver_at":0}}"#,
            "\n",
            r#"{{"ev":"delivered","ts":{t1},"nsqd":"{a}","topic":"src","channel":"c","client":"y","ids":["{id}"],"attempts":[1]}}"#,
            "\n",
            r#"{{"ev":"requeued","ts":{t2},"nsqd":"{a}","topic":"src","channel":"c","client":"y","ids":["{id}"],"delay_ms":10}}"#,
            "\n",
            r#"{{"ev":"delivered","ts":{t3},"nsqd":"{a}","topic":"src","channel":"c","client":"y","ids":["{id}"],"attempts":[2]}}"#,
            "\n",
            r#"{{"ev":"finished","ts":{t4},"nsqd":"{a}","topic":"src","channel":"c","client":"y","ids":["{id}"]}}"#
        ),
        t0 = ts,
        t1 = ts + 10,
        t2 = ts + 20,
        t3 = ts + 30,
        t4 = ts + 2_000_000,
        a = n.tcp,
        id = id
    );
    // Each body opens with the broker's batch line; the same body twice, then a later one
    // from the broker restarted in publish mode, so the spans are merged by upsert.
    let batch = |at: i64, mode: &str| {
        format!(
            r#"{{"ev":"batch","ts":{at},"nsqd":"{}","mode":"{mode}","ids":[]}}"#,
            n.tcp
        )
    };
    let events = format!("{}\n{events}", batch(ts + 3_000_000, "all"));
    let restarted = batch(ts + 5_000_000, "publish");
    publish(&n, "nsqrs.events", &[events.clone(), events, restarted]);
    let steps = || -> Vec<String> {
        let o = nsqrs(&["trace", &id, "--db", &pg.url, "--format=json"]);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
        v["timelines"][0]["steps"]
            .as_array()
            .map(|s| {
                s.iter()
                    .map(|s| s["what"].as_str().unwrap_or("").to_string())
                    .collect()
            })
            .unwrap_or_default()
    };
    wait_for("events in postgres", Duration::from_secs(60), || {
        steps().len() == 5
    });
    assert_eq!(
        steps(),
        [
            "published",
            "delivered, attempt 1",
            "requeued, delay 10ms",
            "delivered, attempt 2",
            "finished, end-to-end 2.0ms"
        ]
    );
    let notes = || -> serde_json::Value {
        let o = nsqrs(&["trace", &id, "--db", &pg.url, "--format=json"]);
        serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap_or_default()["notes"].clone()
    };
    wait_for("the publish-mode span", Duration::from_secs(60), || {
        notes().as_array().is_some_and(|n| !n.is_empty())
    });
    let notes = notes();
    assert_eq!(notes.as_array().unwrap().len(), 1, "{notes}");
    assert!(
        notes[0].as_str().unwrap().contains("--lifecycle-events=publish"),
        "{notes}"
    );
    assert_eq!(t.terminate(), Some(0));

    let o = nsqrs(&[
        "replay",
        "--since=1h",
        "--topic=src",
        "--to-topic=dst",
        "--db",
        &pg.url,
        "--batch-size=100",
        "--nsqd-tcp-address",
        &n.tcp,
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("replayed 300 messages"));
    let o = nsqrs(&["trace", &id, "--db", &pg.url]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("into dst"));

    // The copies, archived too, come back in the original order.
    let t = ToDb::start(&n, "dst", &pg.url, &["--flush-interval=100ms"]);
    wait_for("replayed copies", Duration::from_secs(60), || {
        archived(&pg.url, "dst") == 300
    });
    t.terminate();
    let o = nsqrs(&[
        "trace",
        "--db",
        &pg.url,
        "--topic=dst",
        "--grep=pg-",
        "--limit=1000",
        "--format=json",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let mut got: Vec<(i64, String, String)> = v["matches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["timestamp"].as_i64().unwrap(),
                m["id"].as_str().unwrap().to_string(),
                m["body"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    got.sort();
    // trace names the copy the first message became.
    let o = nsqrs(&["trace", &id, "--db", &pg.url, "--format=json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let copy = got.iter().find(|g| g.2 == bodies[0]).unwrap();
    assert_eq!(v["replays"][0]["new_id"], copy.1.as_str(), "{v}");
    let got: Vec<String> = got.into_iter().map(|g| g.2).collect();
    assert_eq!(got, bodies);

    // Malformed URL: one line.
    let o = nsqrs(&["trace", &id, "--db", "postgres://nsqrs@127.0.0.1:notaport/x"]);
    assert!(!o.status.success());
    assert_eq!(String::from_utf8_lossy(&o.stderr).lines().count(), 1);
}
