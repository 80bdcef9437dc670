//! The admin's pages that nsqadmin never had, over HTTP, against a real broker, lookupd and
//! `to-db` archive: search by text, JSON field and ID, a message's story with its timeline
//! and live state, bodies shown as text (a `<script>` body included), deferred messages
//! listed and cancelled, and a replay counted, run and recorded.

use std::time::Duration;

use nsqrs_testkit::{wait_for, Admin, Conn, Frame, Lookupd, Nsqd, ToDb};
use serde_json::Value;

const SCRIPT_BODY: &str = "hello <script>window.pwned=1</script>";
const JSON_BODY: &str = r#"{"customer":42,"item":"book"}"#;

struct Setup {
    _dir: tempfile::TempDir,
    lookupd: Lookupd,
    nsqd: Nsqd,
    _to_db: ToDb,
    admin: Admin,
    deferred_id: String,
}

fn count(db: &str, sql: &str) -> i64 {
    rusqlite::Connection::open(db)
        .and_then(|c| c.query_row(sql, [], |r| r.get(0)))
        .unwrap_or_default()
}

/// Three archived messages on `orders`, each delivered to and finished by `billing` (so the
/// archive holds their events), and one deferred for an hour.
fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("archive.db").to_str().unwrap().to_string();
    let lookupd = Lookupd::start(&[]);
    let nsqd = Nsqd::start(&[
        &format!("--lookupd-tcp-address={}", lookupd.tcp),
        "--broadcast-address=127.0.0.1",
        "--lifecycle-events=all",
    ]);
    let to_db = ToDb::start(&nsqd, "orders", &db, &["--events", "--flush-interval=100ms"]);
    wait_for("to-db on the events topic", Duration::from_secs(20), || {
        nsqd.events_have_a_reader()
    });
    let mut billing = Conn::connect(&nsqd.tcp);
    billing.subscribe("orders", "billing", 10);
    for body in [
        SCRIPT_BODY.as_bytes(),
        JSON_BODY.as_bytes(),
        &[0xff, 0x00, 0xfe][..],
    ] {
        assert_eq!(nsqd.post("/pub?topic=orders", body).0, 200);
        match billing.read_frame() {
            Some(Frame::Message { id, .. }) => billing.cmd(&format!("FIN {id}")),
            other => panic!("expected a message, got {other:?}"),
        }
    }
    let deferred_id = nsqd.pub_for_id("/pub?topic=orders&defer=3600000", b"later, maybe");
    wait_for("the archive", Duration::from_secs(20), || {
        count(&db, "SELECT COUNT(*) FROM messages") == 3
            && count(
                &db,
                "SELECT COUNT(*) FROM events WHERE channel = 'billing' AND kind = 'finished'",
            ) == 3
    });
    wait_for("lookupd registration", Duration::from_secs(15), || {
        lookupd.get("/lookup?topic=orders").0 == 200
    });
    let admin = Admin::start(&[
        &format!("--lookupd-http-address={}", lookupd.http),
        &format!("--db={db}"),
    ]);
    Setup {
        _dir: dir,
        lookupd,
        nsqd,
        _to_db: to_db,
        admin,
        deferred_id,
    }
}

fn id_of(page: &str, needle: &str) -> String {
    // Rows read `<a href="/messages/ID?topic=…">ID</a>…body…`; take the ID of the row that
    // holds `needle`.
    let row = page
        .split("<tr>")
        .skip(1)
        .find(|r| r.contains(needle))
        .unwrap_or_else(|| panic!("no row with {needle:?} in {page}"));
    let start = row.find("/messages/").unwrap() + "/messages/".len();
    row[start..start + 16].to_string()
}

#[test]
fn messages_are_found_shown_as_text_and_traced() {
    let s = setup();
    let admin = &s.admin;

    // The topic page lists them, the script body as text.
    let (code, page) = admin.get("/topics/orders");
    assert_eq!(code, 200, "{page}");
    assert!(
        page.contains("hello &lt;script&gt;window.pwned=1&lt;/script&gt;"),
        "{page}"
    );
    assert!(!page.contains("<script>window"), "{page}");
    assert!(page.contains("(base64)"), "{page}");

    // Search by body text, by JSON field, by ID.
    let (_, found) = admin.get("/messages?q=pwned");
    assert!(
        found.contains("window.pwned") && !found.contains("customer"),
        "{found}"
    );
    let (_, found) = admin.get("/topics/orders?q=customer%3D42");
    let json_id = id_of(&found, "book");
    assert!(!found.contains("pwned"), "{found}");
    let (code, head, _) =
        nsqrs_testkit::http_exchange(&admin.http, "GET", &format!("/messages?q={json_id}"), b"").unwrap();
    assert_eq!(code, 303);
    assert!(head.contains(&format!("/messages/{json_id}")), "{head}");

    // One message's story: header, pretty JSON body, the billing timeline, live state.
    let (code, story) = admin.get(&format!("/messages/{json_id}"));
    assert_eq!(code, 200, "{story}");
    assert!(
        story.contains("&quot;customer&quot;: 42"),
        "pretty-printed JSON: {story}"
    );
    assert!(story.contains("Channel billing"), "{story}");
    assert!(
        story.contains("delivered, attempt 1") && story.contains("finished, end-to-end"),
        "{story}"
    );
    // Finished on every channel, as the broker says now.
    let live = &story[story.find("Live state").expect("a live state section")..];
    assert!(
        live.contains("billing") && live.contains(">done<") && !live.contains("queued"),
        "{live}"
    );

    let script_id = id_of(&admin.get("/messages?q=pwned").1, "pwned");
    let (_, story) = admin.get(&format!("/messages/{script_id}"));
    assert!(
        story.contains("<pre class=\"body\">hello &lt;script&gt;window.pwned=1&lt;/script&gt;</pre>"),
        "{story}"
    );
    assert_eq!(
        story.matches("<script").count(),
        1,
        "only the admin's own script: {story}"
    );

    // A message only the broker knows (deferred, not yet archived): its live state.
    let (_, story) = admin.get(&format!("/messages/{}?topic=orders", s.deferred_id));
    assert!(story.contains("body was not archived"), "{story}");
    assert!(story.contains("deferred") && story.contains("until"), "{story}");
    assert_eq!(admin.get("/messages/nothex").0, 400);
}

#[test]
fn deferred_messages_are_listed_and_cancelled() {
    let s = setup();
    let admin = &s.admin;
    let (code, page) = admin.get("/topics/orders/billing");
    assert_eq!(code, 200, "{page}");
    assert!(
        page.contains(&s.deferred_id) && page.contains("later, maybe"),
        "{page}"
    );
    let body = serde_json::json!({
        "node": s.nsqd.http, "topic": "orders", "channel": "billing", "id": s.deferred_id,
    })
    .to_string();
    // Only nodes holding the topic: the admin is no proxy to anywhere.
    let elsewhere = body.replace(&s.nsqd.http, &s.lookupd.http);
    assert_eq!(admin.send("POST", "/api/deferred/cancel", &elsewhere, &[]).0, 404);
    assert_eq!(
        admin.send("POST", "/api/deferred/cancel", &body, &[]),
        (200, r#"{"message":""}"#.into())
    );
    let listing: Value =
        serde_json::from_str(&s.nsqd.get("/deferred?topic=orders&channel=billing").1).unwrap();
    assert_eq!(listing["channels"][0]["total"], 0, "{listing}");
    let (_, page) = admin.get("/topics/orders/billing");
    assert!(page.contains("None deferred"), "{page}");
    // Again: the broker's 404 comes back as an upstream error.
    assert_eq!(admin.send("POST", "/api/deferred/cancel", &body, &[]).0, 502);
}

#[test]
fn replays_count_first_then_run_with_progress() {
    let s = setup();
    let admin = &s.admin;
    let (code, body) = admin.send(
        "POST",
        "/api/replays",
        r#"{"topic":"orders","since":"1h","dry_run":true}"#,
        &[],
    );
    assert_eq!(code, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["count"], 3);
    assert_eq!(
        admin
            .send(
                "POST",
                "/api/replays",
                r#"{"topic":"orders","since":"soon","dry_run":true}"#,
                &[]
            )
            .0,
        400
    );
    let (code, body) = admin.send(
        "POST",
        "/api/replays",
        r#"{"topic":"orders","since":"1h","to_topic":"orders_again"}"#,
        &[],
    );
    assert_eq!(code, 200, "{body}");
    let run: Value = serde_json::from_str(&body).unwrap();
    let run_id = run["run_id"].as_str().unwrap().to_string();
    wait_for("the replay to finish", Duration::from_secs(20), || {
        let p = admin.json(&format!("/api/replays/{run_id}"));
        assert_ne!(p["state"], "failed", "{p}");
        p["state"] == "finished" && p["done"] == 3
    });
    let stats = s.nsqd.stats();
    let again = stats["topics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["topic_name"] == "orders_again")
        .expect("the target topic");
    assert_eq!(again["message_count"], 3);
    // The story of a replayed message names its new ID.
    let json_id = id_of(&admin.get("/topics/orders?q=customer%3D42").1, "book");
    let (_, story) = admin.get(&format!("/messages/{json_id}"));
    assert!(
        story.contains("Replays") && story.contains("orders_again") && story.contains(&run_id),
        "{story}"
    );
    let (_, page) = admin.get("/topics/orders");
    assert!(page.contains(&run_id) && page.contains("finished"), "{page}");
    assert_eq!(admin.get("/api/replays/0000000000000000").0, 404);
}
