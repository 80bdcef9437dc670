//! The history toolkit against the real broker: `to-db` archiving into SQLite (batches,
//! idempotence, SIGTERM drain, `kill -9` without loss), `trace` timelines built from
//! `nsqrs.events` bodies in the docs/events.md format, `replay` windows, and the one-line
//! errors. `tests/history_pg.rs` runs the same flows against PostgreSQL.

use std::collections::HashSet;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use nsqrs_testkit::{bin, wait_for, Daemon, Nsqd, ToDb};

fn publish(n: &Nsqd, topic: &str, bodies: &[String]) {
    let mut c = n.connect();
    for chunk in bodies.chunks(1000) {
        let chunk: Vec<Vec<u8>> = chunk.iter().map(|b| b.clone().into_bytes()).collect();
        c.mpub(topic, &chunk);
        c.expect_ok();
    }
}

fn numbered(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i:05}")).collect()
}

fn sqlite(db: &str) -> rusqlite::Connection {
    rusqlite::Connection::open(db).unwrap()
}

fn count(db: &str, sql: &str) -> i64 {
    // Zero before to-db has created the tables.
    sqlite(db).query_row(sql, [], |r| r.get(0)).unwrap_or_default()
}

/// True when every reader of `topic` has taken and finished all of it: each channel with a
/// client has nothing queued and nothing in flight.
fn consumed(n: &Nsqd, topic: &str) -> bool {
    let channels = n.topic_stats(topic)["channels"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let read: Vec<_> = channels
        .iter()
        .filter(|c| c["client_count"].as_u64() > Some(0))
        .collect();
    !read.is_empty() && read.iter().all(|c| c["depth"] == 0 && c["in_flight_count"] == 0)
}

fn nsqrs(args: &[&str]) -> Output {
    Command::new(bin()).args(args).output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn one_error_line(o: &Output, needle: &str) {
    assert!(
        !o.status.success(),
        "expected failure, got success: {}",
        stdout(o)
    );
    let err = stderr(o);
    assert_eq!(err.lines().count(), 1, "not one line: {err:?}");
    assert!(err.contains(needle), "{err:?} does not mention {needle:?}");
}

#[test]
fn to_db_archives_every_message_once_and_drains_on_sigterm() {
    let n = Nsqd::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("a.db");
    let db = db.to_str().unwrap();
    let bodies = numbered("m", 1234);
    publish(&n, "orders", &bodies);
    let t = ToDb::start(&n, "orders", db, &["--batch-size=100", "--flush-interval=200ms"]);
    wait_for("1234 rows", Duration::from_secs(30), || {
        count(db, "SELECT COUNT(*) FROM messages") == 1234
    });
    assert_eq!(t.terminate(), Some(0));
    let conn = sqlite(db);
    let mut stmt = conn
        .prepare("SELECT topic, id, nsqd, ts, attempts, body FROM messages ORDER BY ts, id")
        .unwrap();
    let rows: Vec<(String, String, String, i64, i64, Vec<u8>)> = stmt
        .query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let mut got: Vec<String> = rows
        .iter()
        .map(|r| String::from_utf8(r.5.clone()).unwrap())
        .collect();
    got.sort();
    assert_eq!(got, bodies);
    for r in &rows {
        assert_eq!(r.0, "orders");
        assert_eq!(r.1.len(), 16);
        assert_eq!(r.2, n.tcp);
        assert!(r.3 > 1_600_000_000_000_000_000);
        assert_eq!(r.4, 1);
    }
    // Everything was finished: nothing left on the archiver's channel.
    let stats = n.stats();
    let ch = &stats["topics"][0]["channels"][0];
    let channel = ch["channel_name"].as_str().unwrap();
    assert!(channel.starts_with("nsqrs_to_db.orders."), "{channel}");
    assert_eq!(ch["depth"], 0);
    assert_eq!(ch["in_flight_count"], 0);
}

#[test]
fn to_db_killed_mid_batch_loses_nothing() {
    let n = Nsqd::start(&["--msg-timeout=2s"]);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("a.db");
    let db = db.to_str().unwrap();
    let bodies = numbered("k", 20_000);
    publish(&n, "t", &bodies);
    let t = ToDb::start(&n, "t", db, &["--batch-size=250"]);
    wait_for("a first commit", Duration::from_secs(30), || {
        count(db, "SELECT COUNT(*) FROM messages") > 0
    });
    t.kill9();
    let after_kill = count(db, "SELECT COUNT(*) FROM messages");
    let t = ToDb::start(&n, "t", db, &["--batch-size=250"]);
    wait_for("all rows after restart", Duration::from_secs(60), || {
        count(db, "SELECT COUNT(*) FROM messages") == 20_000
    });
    assert_eq!(t.terminate(), Some(0));
    eprintln!("{after_kill} rows were committed before kill -9");
    let distinct = count(db, "SELECT COUNT(DISTINCT CAST(body AS TEXT)) FROM messages");
    assert_eq!(distinct, 20_000);
}

#[test]
fn one_clear_line_for_each_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.db");
    let missing = missing.to_str().unwrap();
    one_error_line(
        &nsqrs(&[
            "to-db",
            "--topic=t",
            "--nsqd-tcp-address=127.0.0.1:1",
            "--db=postgres://u@h:port/x",
        ]),
        "malformed database URL",
    );
    one_error_line(
        &nsqrs(&["trace", "0123456789abcdef", "--db", missing]),
        "does not exist",
    );
    one_error_line(
        &nsqrs(&[
            "replay",
            "--since=1h",
            "--topic=t",
            "--db",
            missing,
            "--nsqd-tcp-address=127.0.0.1:1",
        ]),
        "does not exist",
    );
    let n = Nsqd::start(&[]);
    let db = dir.path().join("a.db");
    let db = db.to_str().unwrap();
    publish(&n, "t", &numbered("e", 1));
    let t = ToDb::start(&n, "t", db, &[]);
    wait_for("a row", Duration::from_secs(30), || {
        count(db, "SELECT COUNT(*) FROM messages") == 1
    });
    t.terminate();
    one_error_line(
        &nsqrs(&["trace", "0123456789abcdef", "--db", db]),
        "0123456789abcdef",
    );
    one_error_line(&nsqrs(&["trace", "--db", db, "--where", "nokey"]), "key=value");
    one_error_line(
        &nsqrs(&[
            "trace",
            "0123456789abcdef",
            "--db",
            db,
            "--nsqd-http-address=https://h:1",
        ]),
        "https://",
    );

    // replay: windows and IDs that hold nothing are said, not replayed as nothing.
    let replay = |extra: &[&str]| {
        let mut args = vec!["replay", "--db", db, "--dry-run"];
        args.extend_from_slice(extra);
        nsqrs(&args)
    };
    let o = replay(&["--topic=t", "--since=1h", "--until=2h"]);
    assert_eq!(o.status.code(), Some(2));
    one_error_line(&o, "--until 2h is not after --since 1h");
    one_error_line(
        &replay(&["--topic=t", "--id=0123456789abcdef"]),
        "1 message ID not archived for topic t in the window: 0123456789abcdef",
    );
    one_error_line(
        &replay(&["--topic=typo", "--since=1h"]),
        "the archive holds no message of topic typo",
    );
    let o = replay(&["--topic=t", "--since=1h", "--until=30m"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).is_empty());
    assert!(
        stderr(&o).starts_with("warning: no archived message of topic t"),
        "{}",
        stderr(&o)
    );
    let o = replay(&["--topic=t", "--since=1h"]);
    assert!(
        stdout(&o).starts_with("would replay 1 message from topic t to topic t"),
        "{}",
        stdout(&o)
    );
}

/// Archives `bodies` on topic `t` with events on, and returns (db dir, db path, ids by body).
fn archived_with_events(
    n: &Nsqd,
    bodies: &[String],
) -> (tempfile::TempDir, String, Vec<(String, String, i64)>) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("a.db").to_str().unwrap().to_string();
    publish(n, "t", bodies);
    let t = ToDb::start(n, "t", &db, &["--events", "--flush-interval=100ms"]);
    wait_for("rows", Duration::from_secs(30), || {
        count(&db, "SELECT COUNT(*) FROM messages") == bodies.len() as i64
    });
    let conn = sqlite(&db);
    let mut stmt = conn
        .prepare("SELECT id, CAST(body AS TEXT), ts FROM messages ORDER BY ts, id")
        .unwrap();
    let rows: Vec<(String, String, i64)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    // The broker on this branch may not emit lifecycle events yet; publish what it would,
    // in the docs/events.md format, for the first message (two groups in one body, then
    // the rest one group per body, out of order on purpose).
    let (id, _, ts) = rows[0].clone();
    let nsqd = n.tcp.clone();
    let group = |ev: &str, dt: i64, extra: &str| {
        format!(
            r#"{{"ev":"{ev}","ts":{},"nsqd":"{nsqd}","topic":"t","ids":["{id}"]{extra}}}"#,
            ts + dt
        )
    };
    let first = format!(
        "{}\n{}",
        group(
            "published",
            0,
            r#","client":"127.0.0.1:1","ua":"test/1","sizes":[10],"timestamps":[0],"deliver_at":0"#
        ),
        group(
            "delivered",
            1_000,
            r#","channel":"billing","client":"127.0.0.1:2","attempts":[1]"#
        )
    );
    let rest = vec![
        group(
            "finished",
            9_000_000,
            r#","channel":"billing","client":"127.0.0.1:2""#,
        ),
        group(
            "requeued",
            2_000_000,
            r#","channel":"billing","client":"127.0.0.1:2","delay_ms":0"#,
        ),
        group(
            "delivered",
            3_000_000,
            r#","channel":"billing","client":"127.0.0.1:3","attempts":[2]"#,
        ),
        group(
            "timed_out",
            4_000_000,
            r#","channel":"billing","client":"127.0.0.1:3""#,
        ),
        group(
            "delivered",
            5_000_000,
            r#","channel":"billing","client":"127.0.0.1:2","attempts":[3],"future_field":1"#,
        ),
        group(
            "delivered",
            500,
            r#","channel":"audit","client":"127.0.0.1:4","attempts":[1]"#,
        ),
        r#"{"ev":"published","ts":1,"nsqd":"x","topic":"other","ids":["aaaaaaaaaaaaaaaa"]}"#.to_string(),
    ];
    let mut events = vec![first];
    events.extend(rest);
    publish(n, "nsqrs.events", &events);
    wait_for("events", Duration::from_secs(30), || {
        count(&db, "SELECT COUNT(*) FROM events") == 8
    });
    // Re-archiving the same events changes nothing.
    publish(n, "nsqrs.events", &events[..2]);
    wait_for(
        "to-db to commit the events again",
        Duration::from_secs(30),
        || consumed(n, "nsqrs.events"),
    );
    assert_eq!(t.terminate(), Some(0));
    assert_eq!(count(&db, "SELECT COUNT(*) FROM events"), 8);
    (dir, db, rows)
}

#[test]
fn trace_shows_every_step_in_order() {
    // The events are fed by hand, in a controlled order; the broker's own stay off.
    let n = Nsqd::start(&["--lifecycle-events=off"]);
    let bodies: Vec<String> = (0..5)
        .map(|i| format!(r#"{{"order":{i},"who":"ann"}}"#))
        .collect();
    let (_dir, db, rows) = archived_with_events(&n, &bodies);
    let id = &rows[0].0;
    let o = nsqrs(&["trace", id, "--db", &db, "--format=json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["messages"][0]["topic"], "t");
    assert_eq!(v["messages"][0]["body"], rows[0].1);
    let tl = v["timelines"].as_array().unwrap();
    assert_eq!(tl.len(), 2);
    assert_eq!(tl[0]["channel"], "audit");
    let billing = &tl[1];
    assert_eq!(billing["channel"], "billing");
    let steps: Vec<(String, i64)> = billing["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["event"].as_str().unwrap().to_string(),
                s["attempt"].as_i64().unwrap(),
            )
        })
        .collect();
    let want = [
        ("published", 0),
        ("delivered", 1),
        ("requeued", 0),
        ("delivered", 2),
        ("timed_out", 0),
        ("delivered", 3),
        ("finished", 0),
    ];
    let want: Vec<(String, i64)> = want.iter().map(|(k, a)| (k.to_string(), *a)).collect();
    assert_eq!(steps, want);
    let last = billing["steps"].as_array().unwrap().last().unwrap();
    assert_eq!(last["what"], "finished, end-to-end 9.0ms");

    let o = nsqrs(&["trace", id, "--db", &db, "--nsqd-http-address", &n.http]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    for needle in [
        "topic      t",
        "channel billing",
        "delivered, attempt 3",
        "timed out",
        "live state",
    ] {
        assert!(out.contains(needle), "{needle:?} missing from\n{out}");
    }

    // Search by JSON field: one match is traced at once; several are listed.
    let o = nsqrs(&["trace", "--db", &db, "--where", "order=3", "--format=json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["messages"][0]["body"], bodies[3]);
    let o = nsqrs(&[
        "trace",
        "--db",
        &db,
        "--grep",
        "ann",
        "--since=1h",
        "--format=json",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["matches"].as_array().unwrap().len(), 5);
    assert_eq!(v["total"], 5);
    // A limit lists the newest and still counts them all.
    let o = nsqrs(&["trace", "--db", &db, "--grep", "ann", "--limit", "2"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).starts_with("5 messages match; the newest 2 are listed"),
        "{}",
        stdout(&o)
    );
    let o = nsqrs(&[
        "trace",
        "--db",
        &db,
        "--grep",
        "ann",
        "--limit=1",
        "--format=json",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (v["matches"].as_array().unwrap().len(), &v["total"]),
        (1, &serde_json::json!(5))
    );
    one_error_line(
        &nsqrs(&["trace", "--db", &db, "--grep", "bob"]),
        "no archived message",
    );
    // Search flags with an ID would be ignored: refused instead.
    for flag in ["--grep=ann", "--where=order=3", "--since=1h", "--limit=3"] {
        let o = nsqrs(&["trace", id, "--db", &db, flag]);
        assert_eq!(o.status.code(), Some(2), "{flag}");
        one_error_line(&o, flag.split('=').next().unwrap());
    }
}

fn bodies_in_order(db: &str) -> Vec<String> {
    let conn = sqlite(db);
    let mut stmt = conn
        .prepare("SELECT CAST(body AS TEXT) FROM messages ORDER BY ts, id")
        .unwrap();
    let rows = stmt.query_map([], |r| r.get(0)).unwrap();
    rows.map(Result::unwrap).collect()
}

/// 600 numbered messages published on `src` and archived; returns the directory, the archive,
/// a second database path for the replay's own records, and the bodies.
fn archive_600(n: &Nsqd, prefix: &str) -> (tempfile::TempDir, String, String, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("a.db").to_str().unwrap().to_string();
    let out = dir.path().join("b.db").to_str().unwrap().to_string();
    let bodies = numbered(prefix, 600);
    publish(n, "src", &bodies);
    let t = ToDb::start(n, "src", &db, &["--flush-interval=100ms"]);
    wait_for("archive", Duration::from_secs(30), || {
        count(&db, "SELECT COUNT(*) FROM messages") == 600
    });
    t.terminate();
    (dir, db, out, bodies)
}

#[test]
fn replay_republishes_a_window_in_order_and_resumes() {
    let n = Nsqd::start(&[]);
    let (dir, db, out, bodies) = archive_600(&n, "r");

    let o = nsqrs(&[
        "replay",
        "--since=1h",
        "--topic=src",
        "--to-topic=dst",
        "--db",
        &db,
        "--dry-run",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).starts_with("would replay 600 messages from topic src to topic dst"));

    // Interrupted part-way by SIGTERM, then the same command again: it resumes.
    let args = [
        "replay",
        "--since=1h",
        "--topic=src",
        "--to-topic=dst",
        "--db",
        &db,
        "--batch-size=50",
        "--nsqd-tcp-address",
        &n.tcp,
    ];
    let mut first = Command::new(bin());
    first.args(args).arg("--rate=400").stdout(Stdio::null());
    let mut first = Daemon::spawn(first, "replay");
    wait_for("a first recorded batch", Duration::from_secs(30), || {
        count(&db, REPLAYED) > 0
    });
    let code = first.terminate(Duration::from_secs(20)).unwrap();
    assert_ne!(code, Some(0));
    assert!(first.stderr().contains("--resume"), "{}", first.stderr());
    let done_first = count(&db, REPLAYED);
    assert!(done_first > 0 && done_first < 600, "{done_first}");
    let o = nsqrs(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    // SIGTERM left nothing with the broker unrecorded.
    assert!(!stderr(&o).contains("sending them again"), "{}", stderr(&o));
    assert!(stderr(&o).contains("resuming replay run"), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("replayed 600 messages from topic src to topic dst"),
        "{}",
        stdout(&o)
    );
    assert_eq!(count(&db, REPLAYED), 600);
    let originals = recorded_originals(&db);
    assert_eq!(originals.len(), 600);
    assert_eq!(originals.iter().collect::<HashSet<_>>().len(), 600);

    // What reached dst: every body once, in the original publish order.
    let t = ToDb::start(&n, "dst", &out, &["--flush-interval=100ms"]);
    wait_for("every replayed copy archived", Duration::from_secs(30), || {
        count(&out, "SELECT COUNT(*) FROM messages") >= 600 && consumed(&n, "dst")
    });
    t.terminate();
    assert_eq!(bodies_in_order(&out), bodies);

    // trace tells the original was replayed.
    let id: String = sqlite(&db)
        .query_row("SELECT id FROM messages ORDER BY ts, id LIMIT 1", [], |r| {
            r.get(0)
        })
        .unwrap();
    let o = nsqrs(&["trace", &id, "--db", &db]);
    assert!(stdout(&o).contains("replayed as"), "{}", stdout(&o));
    assert!(stdout(&o).contains("into dst"), "{}", stdout(&o));
    // ... as the very message the copy became, for every message (nsqrs serve returns IDs).
    let copies = ids_by_body(&out);
    for (original, body) in ids_by_body(&db).iter().map(|(b, i)| (i, b)).take(600).step_by(37) {
        let o = nsqrs(&["trace", original, "--db", &db, "--format=json"]);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let replays = v["replays"].as_array().unwrap();
        assert_eq!(replays.len(), 1, "{v}");
        assert_eq!(replays[0]["new_id"], copies[body], "{v}");
        assert_eq!(replays[0]["resent"], false);
    }

    // A to-file JSON file is a source too; --id narrows any source.
    let file = dir.path().join("t.log");
    let lines: Vec<String> = (0..3)
        .map(|i| format!(r#"{{"id":"00000000000000{i:02}","timestamp":{},"attempts":1,"body":"f{i}","body_base64":false}}"#, 1_700_000_000_000_000_000i64 + i))
        .collect();
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    let o = nsqrs(&[
        "replay",
        "--since=100000h",
        "--topic=src",
        "--to-topic=fromfile",
        "--db",
        &db,
        "--from-file",
        file.to_str().unwrap(),
        "--id=0000000000000001",
        "--id=0000000000000002",
        "--nsqd-tcp-address",
        &n.tcp,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("replayed 2 messages"), "{}", stdout(&o));
    let stats = n.stats();
    let topic = stats["topics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["topic_name"] == "fromfile")
        .unwrap();
    assert_eq!(topic["message_count"], 2);
}

/// Messages recorded as replayed.
const REPLAYED: &str = "SELECT COALESCE(SUM(messages), 0) FROM replay_batches";

/// Every original ID recorded as replayed, in run and publish order.
fn recorded_originals(db: &str) -> Vec<String> {
    let conn = sqlite(db);
    let mut stmt = conn
        .prepare("SELECT original_ids FROM replay_batches ORDER BY run_id, seq")
        .unwrap();
    let rows = stmt.query_map([], |r| r.get::<_, String>(0)).unwrap();
    rows.map(Result::unwrap)
        .flat_map(|ids| ids.split(' ').map(str::to_string).collect::<Vec<_>>())
        .collect()
}

/// Body → ID of the archived messages.
fn ids_by_body(db: &str) -> std::collections::BTreeMap<String, String> {
    let conn = sqlite(db);
    let mut stmt = conn
        .prepare("SELECT CAST(body AS TEXT), id FROM messages")
        .unwrap();
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
    rows.map(Result::unwrap).collect()
}

/// Whether the replay run has handed the broker a batch whose reply it has not recorded:
/// its `sent_*` cursor is past its recorded one.
fn batch_unrecorded(db: &str) -> bool {
    sqlite(db)
        .query_row(
            "SELECT sent_ts > cursor_ts OR (sent_ts = cursor_ts AND (sent_id > cursor_id \
             OR (sent_id = cursor_id AND sent_nsqd > cursor_nsqd))) FROM replay_runs",
            [],
            |r| r.get::<_, Option<bool>>(0),
        )
        .ok()
        .flatten()
        .unwrap_or(false)
}

#[test]
fn replay_killed_mid_run_resends_only_the_unrecorded_batch() {
    let n = Nsqd::start(&[]);
    let (_dir, db, out, bodies) = archive_600(&n, "k");

    let args = [
        "replay",
        "--since=1h",
        "--topic=src",
        "--to-topic=dst",
        "--db",
        &db,
        "--nsqd-tcp-address",
        &n.tcp,
    ];
    // Paced at 400/s in batches of 40, a run spends most of its time waiting with the
    // previous batch answered but not yet recorded: that is where kill -9 lands.
    let mut first = Command::new(bin());
    first.args(args).arg("--rate=400").stdout(Stdio::null());
    let mut first = Daemon::spawn(first, "replay");
    wait_for(
        "a recorded batch and one with the broker",
        Duration::from_secs(30),
        || count(&db, REPLAYED) > 0 && batch_unrecorded(&db),
    );
    first.kill9();
    let done = count(&db, "SELECT done FROM replay_runs");
    assert!(done > 0 && done < 600, "{done}");
    assert_eq!(count(&db, REPLAYED), done);
    // Killed mid-run with a batch with the broker whose reply was not recorded yet.
    assert!(batch_unrecorded(&db));

    let o = nsqrs(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("replayed 600 messages"), "{}", stdout(&o));
    assert!(stderr(&o).contains("sending them again"), "{}", stderr(&o));
    assert_eq!(count(&db, REPLAYED), 600);
    let resent = count(
        &db,
        "SELECT COALESCE(SUM(messages), 0) FROM replay_batches WHERE resent = 1",
    );
    assert!(resent > 0 && resent <= 40, "{resent}");

    // dst has every body in order; only the resent batch may be there twice.
    let t = ToDb::start(&n, "dst", &out, &["--flush-interval=100ms"]);
    wait_for("every replayed copy archived", Duration::from_secs(30), || {
        count(&out, "SELECT COUNT(*) FROM messages") >= 600 && consumed(&n, "dst")
    });
    t.terminate();
    let got = bodies_in_order(&out);
    let mut seen = HashSet::new();
    let firsts: Vec<&String> = got.iter().filter(|b| seen.insert(*b)).collect();
    assert_eq!(firsts, bodies.iter().collect::<Vec<_>>());
    assert!(got.len() as i64 - 600 <= resent, "{} copies", got.len());

    let id: String = sqlite(&db)
        .query_row(
            "SELECT substr(original_ids, 1, 16) FROM replay_batches WHERE resent = 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let o = nsqrs(&["trace", &id, "--db", &db]);
    assert!(stdout(&o).contains("may be there twice"), "{}", stdout(&o));
}

#[test]
fn an_archive_from_before_batched_replay_records_is_migrated_and_still_traced() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("old.db").to_str().unwrap().to_string();
    {
        // Schema version 1 as an earlier nsqrs left it: one replay recorded per message, and
        // a run interrupted half-way.
        use nsqrs::archive::schema::{statements, Dialect, MIGRATIONS};
        let conn = sqlite(&db);
        conn.execute_batch("CREATE TABLE nsqrs_schema (version BIGINT NOT NULL)")
            .unwrap();
        for s in statements(MIGRATIONS[0], Dialect::Sqlite) {
            conn.execute_batch(&s).unwrap();
        }
        conn.execute_batch(
            "INSERT INTO nsqrs_schema VALUES (1);
             INSERT INTO messages VALUES ('src', '0000000000000001', 'h:4150', 1000, 1, X'6f6e65', 1);
             INSERT INTO messages VALUES ('src', '0000000000000002', 'h:4150', 2000, 1, X'74776f', 1);
             INSERT INTO replays VALUES ('r1', 0, '0000000000000001', '00000000000000a1', 'src', 'dst', 5000);
             INSERT INTO replay_runs (run_id, identity, from_topic, to_topic, since_ns, until_ns, total,
                 done, cursor_ts, cursor_id, cursor_nsqd, started_at, updated_at)
                 VALUES ('r1', 'x', 'src', 'dst', 0, 3000, 2, 1, 1000, '0000000000000001', 'h:4150', 1, 1);",
        )
        .unwrap();
    }
    let o = nsqrs(&["trace", "0000000000000001", "--db", &db]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("replayed as 00000000000000a1 into dst"),
        "{}",
        stdout(&o)
    );
    assert_eq!(count(&db, "SELECT MAX(version) FROM nsqrs_schema"), 3);

    // The old run resumes: only the second message goes, and nothing counts as resent.
    let n = Nsqd::start(&[]);
    let o = nsqrs(&[
        "replay",
        "--resume=r1",
        "--db",
        &db,
        "--topic=src",
        "--nsqd-tcp-address",
        &n.tcp,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!stderr(&o).contains("sending them again"), "{}", stderr(&o));
    assert!(stdout(&o).contains("replayed 2 messages"), "{}", stdout(&o));
    assert_eq!(recorded_originals(&db), ["0000000000000002"]);
    let o = nsqrs(&["trace", "0000000000000002", "--db", &db, "--format=json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["replays"][0]["to_topic"], "dst", "{v}");
    assert!(v["replays"][0]["new_id"].is_string(), "{v}");
}

#[test]
fn a_batch_larger_than_the_brokers_rdy_cap_still_commits_promptly() {
    let n = Nsqd::start(&["--max-rdy-count=50"]);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("a.db").to_str().unwrap().to_string();
    publish(&n, "t", &numbered("s", 500));
    let t = ToDb::start(&n, "t", &db, &["--batch-size=5000", "--flush-interval=1h"]);
    wait_for("rows without the flush timer", Duration::from_secs(20), || {
        count(&db, "SELECT COUNT(*) FROM messages") == 500
    });
    assert_eq!(t.terminate(), Some(0));
}

/// `topic` with `channels` created before any message (so each gets every one), and to-db
/// archiving it with `--events` and already reading `nsqrs.events`. Returns the directory,
/// the archive and the archiver.
fn archiving_events(n: &Nsqd, topic: &str, channels: &[&str]) -> (tempfile::TempDir, String, ToDb) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("events.db").to_str().unwrap().to_string();
    n.post(&format!("/topic/create?topic={topic}"), b"");
    for ch in channels {
        n.post(&format!("/channel/create?topic={topic}&channel={ch}"), b"");
    }
    let before = n.events_archivers();
    let t = ToDb::start(n, topic, &db, &["--events", "--flush-interval=100ms"]);
    wait_for("to-db on the events topic", Duration::from_secs(30), || {
        n.events_archivers() > before
    });
    (dir, db, t)
}

/// The whole story with nothing faked: the broker's own lifecycle events (`--lifecycle-events
/// =all`), a message consumed on two channels with a REQ and a timeout, archived by `to-db
/// --events`, and `trace` showing every step in order with the right attempts.
#[test]
fn trace_follows_the_brokers_own_events() {
    use nsqrs_testkit::Frame;
    let n = Nsqd::start(&["--lifecycle-events=all", "--msg-timeout=1s"]);
    let (_dir, db, t) = archiving_events(&n, "story", &["billing", "audit"]);

    let mut p = n.connect();
    p.identify(serde_json::json!({"user_agent": "story-teller/1.0", "message_id_reply": true}));
    p.cmd_body("PUB story", br#"{"order":42}"#);
    let Some(Frame::Response(ok)) = p.read_frame() else {
        panic!("PUB failed")
    };
    let id = String::from_utf8(ok)
        .unwrap()
        .trim_start_matches("OK ")
        .to_string();

    let mut billing = n.connect();
    billing.subscribe("story", "billing", 1);
    let Some(Frame::Message { attempts: 1, .. }) = billing.read_frame() else {
        panic!("delivery 1")
    };
    billing.cmd(&format!("REQ {id} 0"));
    let Some(Frame::Message { attempts: 2, .. }) = billing.read_frame() else {
        panic!("delivery 2")
    };
    // Not finished: it times out after 1 s and comes back a third time.
    let Some(Frame::Message { attempts: 3, .. }) = billing.read_frame() else {
        panic!("delivery 3")
    };
    billing.cmd(&format!("FIN {id}"));
    let mut audit = n.connect();
    audit.subscribe("story", "audit", 1);
    let Some(Frame::Message { attempts: 1, .. }) = audit.read_frame() else {
        panic!("audit delivery")
    };
    // While audit holds it, trace asks the broker for the live state as well.
    let live_states = || -> Vec<String> {
        let o = nsqrs(&[
            "trace",
            &id,
            "--db",
            &db,
            "--format=json",
            "--nsqd-http-address",
            &n.http,
        ]);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
        let channels = v["live"]["channels"].as_array().cloned().unwrap_or_default();
        channels
            .iter()
            .map(|c| {
                format!(
                    "{}={}",
                    c["channel"].as_str().unwrap_or(""),
                    c["state"].as_str().unwrap_or("")
                )
            })
            .collect()
    };
    wait_for("trace's live state", Duration::from_secs(30), || {
        let states = live_states();
        states.len() == 3
            && states[..2] == ["audit=in_flight", "billing=done"]
            && states[2].starts_with("nsqrs_to_db.story.")
            && states[2].ends_with("=done")
    });
    let table = stdout(&nsqrs(&[
        "trace",
        &id,
        "--db",
        &db,
        "--nsqd-http-address",
        &n.http,
    ]));
    assert!(table.contains(&format!("live state on {}", n.http)), "{table}");
    assert!(
        table.contains("in flight") && table.contains("finished, cancelled or dropped"),
        "{table}"
    );
    audit.cmd(&format!("FIN {id}"));

    let timeline = |channel: &str| -> Vec<(String, i64)> {
        let o = nsqrs(&["trace", &id, "--db", &db, "--format=json"]);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
        v["timelines"]
            .as_array()
            .and_then(|tl| tl.iter().find(|t| t["channel"] == channel))
            .and_then(|t| t["steps"].as_array())
            .map(|steps| {
                steps
                    .iter()
                    .map(|s| {
                        (
                            s["event"].as_str().unwrap_or("").to_string(),
                            s["attempt"].as_i64().unwrap_or(-1),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let want_billing: Vec<(String, i64)> = [
        ("published", 0),
        ("delivered", 1),
        ("requeued", 0),
        ("delivered", 2),
        ("timed_out", 0),
        ("delivered", 3),
        ("finished", 0),
    ]
    .iter()
    .map(|(k, a)| (k.to_string(), *a))
    .collect();
    wait_for("the billing timeline", Duration::from_secs(30), || {
        timeline("billing") == want_billing
    });
    let audit_steps = || -> Vec<String> { timeline("audit").into_iter().map(|(k, _)| k).collect() };
    wait_for("the audit timeline", Duration::from_secs(30), || {
        audit_steps() == ["published", "delivered", "finished"]
    });
    let o = nsqrs(&["trace", &id, "--db", &db]);
    let out = stdout(&o);
    assert!(
        out.contains("story-teller/1.0") || out.contains("published"),
        "{out}"
    );
    assert_eq!(t.terminate(), Some(0));
}

#[test]
fn trace_shows_a_cancelled_deferred_message() {
    let n = Nsqd::start(&["--lifecycle-events=all"]);
    let (_dir, db, t) = archiving_events(&n, "later", &["mail"]);
    let id = n.pub_for_id("/pub?topic=later&defer=3600000", b"reminder");
    let (code, body) = n.post(&format!("/deferred/cancel?topic=later&channel=mail&id={id}"), b"");
    assert_eq!(code, 200, "{body}");
    // The body is not archived (to-db's own channel still waits an hour for it); its events are.
    wait_for("the cancellation in the archive", Duration::from_secs(30), || {
        stdout(&nsqrs(&["trace", &id, "--db", &db])).contains("cancelled (was deferred until")
    });
    let live = stdout(&nsqrs(&[
        "trace",
        &id,
        "--db",
        &db,
        "--nsqd-http-address",
        &n.http,
    ]));
    assert!(live.contains("deferred") && live.contains("done"), "{live}");
    assert_eq!(t.terminate(), Some(0));
}

#[test]
fn runs_of_consecutive_ids_in_events_become_one_row_per_message() {
    use nsqrs_testkit::Frame;
    let n = Nsqd::start(&["--lifecycle-events=all"]);
    n.post("/topic/create?topic=nsqrs.events", b"");
    n.post("/channel/create?topic=nsqrs.events&channel=raw", b"");
    let (_dir, db, t) = archiving_events(&n, "many", &["work"]);
    publish(&n, "many", &numbered("m", 50));
    let mut c = n.connect();
    c.subscribe("many", "work", 50);
    for _ in 0..50 {
        let Some(Frame::Message { id, .. }) = c.read_frame() else {
            panic!("fewer than 50 deliveries")
        };
        c.cmd(&format!("FIN {id}"));
    }
    let per_kind = |kind: &str| {
        count(
            &db,
            &format!("SELECT COUNT(DISTINCT id) FROM events WHERE channel = 'work' AND kind = '{kind}'"),
        )
    };
    wait_for(
        "50 delivered and 50 finished rows",
        Duration::from_secs(30),
        || per_kind("delivered") == 50 && per_kind("finished") == 50,
    );
    // What the broker wrote were runs, as a second reader of the events sees.
    let mut raw = n.connect();
    raw.subscribe("nsqrs.events", "raw", 100);
    let mut saw_run = false;
    while let Some(Frame::Message { id, body, .. }) = raw.read_frame() {
        raw.cmd(&format!("FIN {id}"));
        saw_run |= String::from_utf8_lossy(&body).lines().any(|line| {
            let e: serde_json::Value = serde_json::from_str(line).unwrap_or_default();
            e["ev"] == "finished"
                && e["ids"]
                    .as_array()
                    .is_some_and(|ids| ids.iter().any(|i| i.as_str().is_some_and(|i| i.contains('-'))))
        });
        if saw_run {
            break;
        }
    }
    assert!(saw_run, "no finished group with a run of IDs");
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM events WHERE kind = 'published'"),
        50
    );
    assert_eq!(t.terminate(), Some(0));
}

/// Reads `count` messages of `topic` on `channel` and finishes each.
fn consume_all(n: &Nsqd, topic: &str, channel: &str, count: usize) {
    use nsqrs_testkit::Frame;
    let mut c = n.connect();
    c.subscribe(topic, channel, count as u32);
    for _ in 0..count {
        match c.read_frame() {
            Some(Frame::Message { id, .. }) => c.cmd(&format!("FIN {id}")),
            other => panic!("expected a message of {topic}, got {other:?}"),
        }
    }
    c.cmd("CLS");
}

/// How many distinct messages of `topic` the archive has a `kind` event for.
fn with_event(db: &str, topic: &str, kind: &str) -> i64 {
    count(
        db,
        &format!("SELECT COUNT(DISTINCT id) FROM events WHERE topic = '{topic}' AND kind = '{kind}'"),
    )
}

fn nsqrs_events_channels(n: &Nsqd) -> Vec<String> {
    n.stats()["topics"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["topic_name"] == "nsqrs.events")
        .flat_map(|t| t["channels"].as_array().unwrap().clone())
        .map(|c| c["channel_name"].as_str().unwrap().to_string())
        .collect()
}

/// Two archivers with `--events` at once, of different topics into different archives, on
/// their default channels, against a broker on its default event mode: each archive gets
/// every step of every message of its topic, not a share of them. Then one archiver is
/// stopped while its topic lives on, and started again: its channel kept its place, so the
/// steps taken while it was away are archived too.
#[test]
fn two_archivers_each_get_every_event_and_keep_their_place() {
    let n = Nsqd::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let db_a = dir.path().join("a.db").to_str().unwrap().to_string();
    let db_b = dir.path().join("b.db").to_str().unwrap().to_string();
    for topic in ["a", "b"] {
        n.post(&format!("/topic/create?topic={topic}"), b"");
        n.post(&format!("/channel/create?topic={topic}&channel=work"), b"");
    }
    let flags = ["--events", "--flush-interval=100ms"];
    let to_a = ToDb::start(&n, "a", &db_a, &flags);
    let to_b = ToDb::start(&n, "b", &db_b, &flags);
    wait_for("both archivers on nsqrs.events", Duration::from_secs(30), || {
        n.events_archivers() == 2
    });
    publish(&n, "a", &numbered("a", 40));
    publish(&n, "b", &numbered("b", 40));
    consume_all(&n, "a", "work", 40);
    consume_all(&n, "b", "work", 40);
    for (db, topic) in [(&db_a, "a"), (&db_b, "b")] {
        wait_for(
            &format!("every step of {topic} in its archive"),
            Duration::from_secs(30),
            || {
                ["published", "delivered", "finished"]
                    .iter()
                    .all(|kind| with_event(db, topic, kind) == 40)
            },
        );
    }
    let id: String = sqlite(&db_a)
        .query_row("SELECT id FROM messages LIMIT 1", [], |r| r.get(0))
        .unwrap();
    let o = nsqrs(&["trace", &id, "--db", &db_a, "--format=json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        v["notes"],
        serde_json::json!([]),
        "a whole timeline needs no note"
    );

    assert_eq!(to_a.terminate(), Some(0));
    publish(&n, "a", &numbered("later", 10));
    consume_all(&n, "a", "work", 10);
    let to_a = ToDb::start(&n, "a", &db_a, &flags);
    wait_for(
        "the steps taken while the archiver was away",
        Duration::from_secs(30),
        || with_event(&db_a, "a", "finished") == 50,
    );
    wait_for(
        "the archiver back on nsqrs.events",
        Duration::from_secs(30),
        || n.events_archivers() == 2,
    );
    assert_eq!(
        nsqrs_events_channels(&n).len(),
        2,
        "the restart reused its channel"
    );
    assert_eq!(with_event(&db_b, "a", "published"), 0, "b archives only b");
    assert_eq!(to_a.terminate(), Some(0));
    assert_eq!(to_b.terminate(), Some(0));
}

/// A broker that reports only publishes: trace shows the publish and says the rest was not
/// reported, rather than suggesting nothing happened.
#[test]
fn trace_says_when_the_broker_reported_only_publishes() {
    let n = Nsqd::start(&["--lifecycle-events=publish"]);
    let (_dir, db, t) = archiving_events(&n, "p", &["work"]);
    publish(&n, "p", &numbered("p", 1));
    consume_all(&n, "p", "work", 1);
    wait_for("the message and its publish", Duration::from_secs(30), || {
        count(&db, "SELECT COUNT(*) FROM messages") == 1 && with_event(&db, "p", "published") == 1
    });
    let id: String = sqlite(&db)
        .query_row("SELECT id FROM messages", [], |r| r.get(0))
        .unwrap();
    let o = nsqrs(&["trace", &id, "--db", &db, "--format=json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let notes = v["notes"].as_array().unwrap();
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(
        notes[0].as_str().unwrap().contains("--lifecycle-events=publish"),
        "{notes:?}"
    );
    let table = stdout(&nsqrs(&["trace", &id, "--db", &db]));
    assert!(table.contains("note: the timeline may be incomplete"), "{table}");
    assert_eq!(t.terminate(), Some(0));
}
