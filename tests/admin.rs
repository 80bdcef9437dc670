//! `nsqrs admin` against real brokers and lookupds: nsqadmin's API compared field by field
//! with what Go nsqadmin 1.3.0 answered (tests/fixtures/nsqadmin, recorded from Go nsqadmin,
//! nsqd and nsqlookupd), its actions and their guards, the pages (escaping, CSP), the Go nsqd
//! `/stats` it must read, `serve`'s embedded admin, the `nsqadmin` role, and the `topic` /
//! `channel` commands on one broker and on a two-broker cluster.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nsqrs_testkit::{bin, run_tool, wait_for, Admin, Conn, Lookupd, Nsqd};
use serde_json::Value;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/nsqadmin");

fn fixture(name: &str) -> Value {
    let text = std::fs::read_to_string(Path::new(FIXTURES).join(name)).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Every difference in shape between `ours` and Go's answer `go`: keys present on one side
/// only, or values of another JSON type. Arrays are compared element by element as far as
/// both go; map-like objects (`wildcard`) by their first entries.
fn shape_diff(path: &str, ours: &Value, go: &Value, out: &mut Vec<String>) {
    match (ours, go) {
        (Value::Object(a), Value::Object(b)) => {
            let wildcard = path.ends_with(".stats") || path.ends_with(".topics");
            if wildcard {
                if let (Some(x), Some(y)) = (a.values().next(), b.values().next()) {
                    shape_diff(&format!("{path}.*"), x, y, out);
                }
                return;
            }
            let ka: BTreeSet<&String> = a.keys().collect();
            let kb: BTreeSet<&String> = b.keys().collect();
            for k in ka.difference(&kb) {
                out.push(format!("{path}.{k}: only in ours"));
            }
            for k in kb.difference(&ka) {
                out.push(format!("{path}.{k}: missing (Go has it)"));
            }
            for k in ka.intersection(&kb) {
                shape_diff(&format!("{path}.{k}"), &a[*k], &b[*k], out);
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                shape_diff(&format!("{path}[{i}]"), x, y, out);
            }
        }
        (a, b) if kind(a) != kind(b) => out.push(format!("{path}: {} here, {} in Go", kind(a), kind(b))),
        _ => {}
    }
}

fn assert_same_shape(what: &str, ours: &Value, go_fixture: &str) {
    let mut diffs = Vec::new();
    shape_diff(what, ours, &fixture(go_fixture), &mut diffs);
    assert!(
        diffs.is_empty(),
        "{what} differs from Go nsqadmin ({go_fixture}):\n{}\nours: {ours}",
        diffs.join("\n")
    );
}

/// A broker registered with `lookupd`, tracking e2e latency as the fixtures' nsqd did.
fn broker(lookupd: &Lookupd, extra: &[&str]) -> Nsqd {
    let mut args = vec![
        format!("--lookupd-tcp-address={}", lookupd.tcp),
        "--broadcast-address=127.0.0.1".to_string(),
        "--e2e-processing-latency-percentile=0.99,0.5".to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    Nsqd::start(&refs)
}

fn registered(lookupd: &Lookupd, topic: &str, brokers: usize) {
    wait_for("lookupd registration", Duration::from_secs(15), || {
        let (code, body) = lookupd.get(&format!("/lookup?topic={topic}"));
        code == 200
            && serde_json::from_str::<Value>(&body).unwrap()["producers"]
                .as_array()
                .is_some_and(|p| p.len() == brokers)
    });
}

/// The cluster of the fixtures: topic `orders` with channel `billing` and one consumer that
/// finished five messages, an empty topic `idle`, and `ghost` known only to lookupd.
fn fixture_cluster() -> (Lookupd, Nsqd, Conn) {
    let lookupd = Lookupd::start(&[]);
    let n = broker(&lookupd, &[]);
    assert_eq!(n.post("/topic/create?topic=orders", b"").0, 200);
    assert_eq!(n.post("/channel/create?topic=orders&channel=billing", b"").0, 200);
    let mut consumer = n.connect();
    consumer.identify(
        serde_json::json!({"client_id": "vm", "hostname": "vm", "user_agent": "nsq_tail/1.3.0 go-nsq/1.1.0"}),
    );
    consumer.subscribe("orders", "billing", 200);
    for i in 0..5 {
        assert_eq!(n.post("/pub?topic=orders", format!("msg {i}").as_bytes()).0, 200);
        match consumer.read_frame() {
            Some(nsqrs_testkit::Frame::Message { id, .. }) => consumer.cmd(&format!("FIN {id}")),
            other => panic!("expected a message, got {other:?}"),
        }
    }
    assert_eq!(n.post("/topic/create?topic=idle", b"").0, 200);
    assert_eq!(lookupd.post("/topic/create?topic=ghost").0, 200);
    assert_eq!(lookupd.post("/channel/create?topic=ghost&channel=gc").0, 200);
    registered(&lookupd, "orders", 1);
    registered(&lookupd, "idle", 1);
    wait_for("the finishes in /stats", Duration::from_secs(10), || {
        n.stats()["topics"][1]["channels"][0]["e2e_processing_latency"]["count"] == 5
    });
    (lookupd, n, consumer)
}

#[test]
fn api_answers_have_go_nsqadmins_shapes() {
    let (lookupd, n, _consumer) = fixture_cluster();
    let admin = Admin::start(&[&format!("--lookupd-http-address={}", lookupd.http)]);
    let node = n.http.clone();
    for (path, go) in [
        ("/api/topics".to_string(), "topics.json"),
        (
            "/api/topics?inactive=true".to_string(),
            "topics_inactive_true.json",
        ),
        ("/api/topics/orders".to_string(), "topics_orders.json"),
        (
            "/api/topics/orders/billing".to_string(),
            "topics_orders_billing.json",
        ),
        ("/api/nodes".to_string(), "nodes.json"),
        (format!("/api/nodes/{node}"), "nodes_127.0.0.1_24151.json"),
        ("/api/counter".to_string(), "counter.json"),
    ] {
        assert_same_shape(&path, &admin.json(&path), go);
    }
    // Values where they are the cluster's, not the recording machine's.
    assert_eq!(
        admin.json("/api/topics")["topics"],
        serde_json::json!(["ghost", "idle", "orders"])
    );
    assert_eq!(
        admin.json("/api/topics?inactive=true")["topics"],
        serde_json::json!({"ghost": ["gc"]})
    );
    let t = admin.json("/api/topics/orders");
    assert_eq!(
        (t["node"].as_str(), t["message_count"].as_i64()),
        (Some("*"), Some(5))
    );
    let c = admin.json("/api/topics/orders/billing");
    assert_eq!(c["clients"][0]["user_agent"], "nsq_tail/1.3.0 go-nsq/1.1.0");
    assert_eq!(c["clients"][0]["node"], node.as_str());
    assert_eq!(c["e2e_processing_latency"]["count"], 5);
    let counter = admin.json("/api/counter");
    assert_eq!(
        counter["stats"][format!("orders:billing:{node}")]["message_count"],
        5
    );

    // nsqadmin's errors and quirks.
    assert_eq!(
        admin.get("/api/nodes/nope:1"),
        (404, r#"{"message":"NODE_NOT_FOUND"}"#.into())
    );
    let (code, body) = admin.get("/api/topics/nosuch");
    assert_eq!(code, 200, "lookupd's 404 means no producers: {body}");
    // A channel nobody has: Go embeds a nil struct, leaving only the message.
    assert_eq!(
        admin.json("/api/topics/orders/nosuch"),
        serde_json::json!({"message": ""})
    );
    assert_eq!(admin.get("/ping"), (200, "OK".into()));
    assert_eq!(admin.get("/api/nothing").0, 404);
    assert_eq!(admin.send("PUT", "/api/topics", "", &[]).0, 405);
    assert_eq!(
        admin.json("/config/nsqlookupd_http_addresses"),
        serde_json::json!([lookupd.http])
    );
    assert_eq!(admin.json("/config/log_level"), 2);
    assert_eq!(admin.get("/config/nope").0, 400);

    // The same API with --nsqd-http-address.
    let direct = Admin::start(&[&format!("--nsqd-http-address={node}")]);
    for (path, go) in [
        ("/api/topics", "nsqdmode_topics.json"),
        ("/api/topics/orders", "nsqdmode_topics_orders.json"),
        ("/api/nodes", "nsqdmode_nodes.json"),
    ] {
        assert_same_shape(path, &direct.json(path), go);
    }
    assert_eq!(
        direct.json("/api/nodes")["nodes"][0]["remote_addresses"],
        Value::Null
    );
}

fn stats_paused(n: &Nsqd, topic: &str, channel: Option<&str>) -> bool {
    let s = n.stats();
    let t = s["topics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["topic_name"] == topic)
        .cloned()
        .unwrap();
    match channel {
        None => t["paused"] == true,
        Some(c) => t["channels"]
            .as_array()
            .unwrap()
            .iter()
            .any(|ch| ch["channel_name"] == c && ch["paused"] == true),
    }
}

fn topic_names(n: &Nsqd) -> Vec<String> {
    n.stats()["topics"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|t| t["topic_name"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn actions_reach_every_broker_and_are_guarded() {
    let lookupd = Lookupd::start(&[]);
    let a = broker(&lookupd, &["--http-admin-token=s3cret"]);
    let b = broker(&lookupd, &["--http-admin-token=s3cret"]);
    for n in [&a, &b] {
        assert_eq!(n.post("/pub?topic=work", b"x").0, 200);
    }
    let auth = ("Authorization", "Bearer s3cret");
    for n in [&a, &b] {
        let mut c = n.connect();
        c.subscribe("work", "jobs", 0);
        c.close();
    }
    registered(&lookupd, "work", 2);
    let admin = Admin::start(&[
        &format!("--lookupd-http-address={}", lookupd.http),
        "--http-admin-token=s3cret",
        "--admin-user=alice",
        "--acl-http-header=X-User",
    ]);
    let alice = ("X-User", "alice");
    let pause = r#"{"action":"pause"}"#;
    // No token: 401; a token but not an admin user: 403; both: done on both brokers.
    assert_eq!(
        admin.send("POST", "/api/topics/work/jobs", pause, &[alice]).0,
        401
    );
    assert_eq!(
        admin
            .send(
                "POST",
                "/api/topics/work/jobs",
                pause,
                &[auth, ("X-User", "mallory")]
            )
            .0,
        403
    );
    assert!(!stats_paused(&a, "work", Some("jobs")));
    assert_eq!(
        admin.send("POST", "/api/topics/work/jobs", pause, &[auth, alice]),
        (200, r#"{"message":""}"#.into())
    );
    assert!(stats_paused(&a, "work", Some("jobs")) && stats_paused(&b, "work", Some("jobs")));
    assert_eq!(
        admin
            .send(
                "POST",
                "/api/topics/work/jobs",
                r#"{"action":"unpause"}"#,
                &[auth, alice]
            )
            .0,
        200
    );
    assert!(!stats_paused(&a, "work", Some("jobs")) && !stats_paused(&b, "work", Some("jobs")));
    assert_eq!(
        admin.send("POST", "/api/topics/work", pause, &[auth, alice]).0,
        200
    );
    assert!(stats_paused(&a, "work", None) && stats_paused(&b, "work", None));
    assert_eq!(
        admin.send(
            "POST",
            "/api/topics/work",
            r#"{"action":"bogus"}"#,
            &[auth, alice]
        ),
        (400, r#"{"message":"INVALID_ACTION"}"#.into())
    );
    assert_eq!(
        admin.send("POST", "/api/topics", r#"{"topic":"bad!"}"#, &[auth, alice]),
        (400, r#"{"message":"INVALID_TOPIC"}"#.into())
    );
    assert_eq!(
        admin.send("POST", "/api/topics", "notjson", &[auth, alice]).0,
        400
    );
    // Empty, then delete the channel and the topic from the whole cluster.
    assert_eq!(
        admin
            .send(
                "POST",
                "/api/topics/work/jobs",
                r#"{"action":"empty"}"#,
                &[auth, alice]
            )
            .0,
        200
    );
    assert_eq!(a.stats()["topics"][0]["channels"][0]["depth"], 0);
    assert_eq!(
        admin
            .send("DELETE", "/api/topics/work/jobs", "", &[auth, alice])
            .0,
        200
    );
    assert!(a.stats()["topics"][0]["channels"].as_array().unwrap().is_empty());
    assert_eq!(
        admin.send("DELETE", "/api/topics/work", "", &[auth, alice]).0,
        200
    );
    assert!(topic_names(&a).is_empty() && topic_names(&b).is_empty());
    wait_for("lookupd to forget the topic", Duration::from_secs(10), || {
        !lookupd.get("/topics").1.contains("\"work\"")
    });
    // Creating through lookupd registers the topic there.
    assert_eq!(
        admin
            .send("POST", "/api/topics", r#"{"topic":"fresh"}"#, &[auth, alice])
            .0,
        200
    );
    assert!(lookupd.get("/topics").1.contains("\"fresh\""));
    // A broker whose token the admin does not have refuses; the failure is a warning.
    let c = broker(&lookupd, &["--http-admin-token=other"]);
    assert_eq!(c.post("/pub?topic=solo", b"x").0, 200);
    registered(&lookupd, "solo", 1);
    let (code, body) = admin.send("POST", "/api/topics/solo", pause, &[auth, alice]);
    assert_eq!(code, 200);
    assert!(body.contains("WARNING") && body.contains("401"), "{body}");
    assert!(!stats_paused(&c, "solo", None));
}

#[test]
fn config_is_only_for_the_allowed_network() {
    let n = Nsqd::start(&[]);
    let open = Admin::start(&[&format!("--nsqd-http-address={}", n.http)]);
    assert_eq!(open.send("PUT", "/config/log_level", "debug", &[]).0, 200);
    assert_eq!(open.json("/config/log_level"), 1);
    assert_eq!(open.send("PUT", "/config/log_level", "loud", &[]).0, 400);
    assert_eq!(open.send("PUT", "/config/http_address", "x", &[]).0, 400);
    let closed = Admin::start(&[
        &format!("--nsqd-http-address={}", n.http),
        "--allow-config-from-cidr=10.0.0.0/8",
    ]);
    assert_eq!(
        closed.get("/config/log_level"),
        (403, r#"{"message":"FORBIDDEN"}"#.into())
    );
}

#[test]
fn notifications_post_nsqadmins_record() {
    let hook = TcpListener::bind("127.0.0.1:0").unwrap();
    let hook_addr = hook.local_addr().unwrap();
    let received = Arc::new(Mutex::new(Vec::<String>::new()));
    let sink = received.clone();
    std::thread::spawn(move || {
        for stream in hook.incoming().map_while(Result::ok) {
            let mut reader = BufReader::new(stream);
            let mut len = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; len];
            let _ = reader.read_exact(&mut body);
            sink.lock()
                .unwrap()
                .push(String::from_utf8_lossy(&body).into_owned());
            let _ = reader
                .get_mut()
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    });
    let n = Nsqd::start(&[]);
    assert_eq!(n.post("/pub?topic=t", b"x").0, 200);
    let admin = Admin::start(&[
        &format!("--nsqd-http-address={}", n.http),
        &format!("--notification-http-endpoint=http://{hook_addr}/hook"),
    ]);
    assert_eq!(
        admin
            .send(
                "POST",
                "/api/topics/t",
                r#"{"action":"pause"}"#,
                &[("Authorization", "Basic YWxpY2U6eA==")]
            )
            .0,
        200
    );
    wait_for("the notification", Duration::from_secs(10), || {
        !received.lock().unwrap().is_empty()
    });
    let record: Value = serde_json::from_str(&received.lock().unwrap()[0]).unwrap();
    assert_eq!(record["action"], "pause_topic");
    assert_eq!(record["topic"], "t");
    assert_eq!(record["user"], "alice");
    assert!(
        record["url"].as_str().unwrap().ends_with("/api/topics/t"),
        "{record}"
    );
    assert!(record.get("channel").is_none(), "omitted when empty: {record}");
    for key in ["timestamp", "remote_ip", "user_agent", "via"] {
        assert!(record.get(key).is_some(), "{key}: {record}");
    }
}

#[test]
fn pages_escape_names_and_forbid_inline_script() {
    let lookupd = Lookupd::start(&[]);
    let n = broker(&lookupd, &[]);
    assert_eq!(n.post("/pub?topic=page_t", b"x").0, 200);
    assert_eq!(
        n.post("/channel/create?topic=page_t&channel=c%23ephemeral", b"")
            .0,
        200
    );
    registered(&lookupd, "page_t", 1);
    let admin = Admin::start(&[
        &format!("--lookupd-http-address={}", lookupd.http),
        "--base-path=/ops",
    ]);
    let (code, head, _) = nsqrs_testkit::http_exchange(&admin.http, "GET", "/ops/", b"").unwrap();
    assert!(
        code == 308 && head.to_ascii_lowercase().contains("location: /ops"),
        "{head}"
    );
    for path in [
        "/ops",
        "/ops/topics/page_t",
        "/ops/topics/page_t/c%23ephemeral",
        "/ops/nodes",
        &format!("/ops/nodes/{}", n.http),
        "/ops/lookup",
        "/ops/counter",
    ] {
        let (code, head, body) = nsqrs_testkit::http_exchange(&admin.http, "GET", path, b"").unwrap();
        let body = String::from_utf8_lossy(&body);
        assert_eq!(code, 200, "{path}: {body}");
        let head = head.to_ascii_lowercase();
        assert!(
            head.contains("content-security-policy: default-src 'none'; script-src 'self'"),
            "{path}: {head}"
        );
        // The only script is the admin's own file; every link stays under the base path.
        assert_eq!(body.matches("<script").count(), 1, "{path}");
        assert!(
            body.contains(r#"<script src="/ops/static/admin.js" defer>"#),
            "{path}"
        );
        assert!(
            !body.contains("href=\"/topics"),
            "{path}: a link escaped the base path"
        );
    }
    let (_, topic_page) = admin.get("/ops/topics/page_t");
    assert!(
        topic_page.contains("/ops/topics/page_t/c%23ephemeral"),
        "{topic_page}"
    );
    assert!(topic_page.contains(r#"src="/ops/charts/rate.svg?topic=page_t""#));
    let (code, svg) = admin.get("/ops/charts/rate.svg?topic=page_t");
    assert_eq!(code, 200);
    assert!(svg.starts_with("<svg"), "{svg}");
    assert_eq!(admin.get("/ops/static/admin.js").0, 200);
    assert_eq!(admin.get("/ops/api/topics").0, 200);
    assert_eq!(admin.get("/api/topics").0, 404, "outside the base path");
}

/// A stand-in for Go nsqd: answers `/info` and `/stats` with what Go nsqd 1.3.0 answered
/// (recorded in the fixtures), so the admin is shown to read Go's JSON.
fn go_nsqd_stand_in() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let port = listener.local_addr().unwrap().port();
    let mut info = fixture("go_nsqd_info.json");
    info["http_port"] = port.into();
    let stats = fixture("go_nsqd_stats.json").to_string();
    let info = info.to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming().map_while(Result::ok) {
            let mut reader = BufReader::new(stream);
            let mut request = String::new();
            let _ = reader.read_line(&mut request);
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
            }
            let path = request.split_whitespace().nth(1).unwrap_or("");
            let (status, body) = if path.starts_with("/info") {
                ("200 OK", info.clone())
            } else if path.starts_with("/stats") {
                ("200 OK", stats.clone())
            } else {
                ("404 Not Found", r#"{"message":"NOT_FOUND"}"#.to_string())
            };
            let resp = format!(
                "HTTP/1.1 {status}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = reader.get_mut().write_all(resp.as_bytes());
        }
    });
    addr
}

#[test]
fn pages_read_go_nsqds_stats() {
    let go = go_nsqd_stand_in();
    let admin = Admin::start(&[&format!("--nsqd-http-address={go}")]);
    let t = admin.json("/api/topics/orders");
    assert_eq!(t["message_count"], 5);
    assert_eq!(t["channels"][0]["channel_name"], "billing");
    let c = admin.json("/api/topics/orders/billing");
    assert_eq!(c["clients"][0]["user_agent"], "nsq_tail/1.3.0 go-nsq/1.1.0");
    assert_eq!(c["e2e_processing_latency"]["count"], 5);
    let (code, page) = admin.get("/topics/orders");
    assert_eq!(code, 200, "{page}");
    assert!(page.contains("billing") && page.contains("p99"), "{page}");
    let (code, page) = admin.get("/topics/orders/billing");
    assert_eq!(code, 200, "{page}");
    assert!(page.contains("nsq_tail/1.3.0 go-nsq/1.1.0"), "{page}");
    // Go nsqd has no /deferred: the channel page says so instead of failing.
    assert!(page.contains("not nsqrs"), "{page}");
    let (code, page) = admin.get("/nodes");
    assert_eq!(code, 200, "{page}");
    assert_eq!(admin.get(&format!("/nodes/{go}")).0, 200);
    // Go nsqd has no replication to report: the API says null, the pages leave it out.
    let r = admin.json("/api/replication");
    assert_eq!(r["nodes"].as_array().map(Vec::len), Some(1), "{r}");
    assert!(r["nodes"][0]["replication"].is_null(), "{r}");
    let (_, page) = admin.get(&format!("/nodes/{go}"));
    assert!(!page.contains("<h2>Replication</h2>"), "{page}");
}

/// The replication state an operator checks after a machine is lost: on the owner's node page
/// where its topics are copied and how far behind, on the peer's the copy it holds; and the
/// nodes page and `/api/replication` sum it up.
#[test]
fn replication_state_is_shown_per_node() {
    let peer = Nsqd::start(&["--broadcast-address=127.0.0.1"]);
    let owner = Nsqd::start(&[
        "--broadcast-address=127.0.0.1",
        &format!("--replicate-to={}", peer.tcp),
    ]);
    assert_eq!(owner.post("/pub?topic=kept", b"copied").0, 200);
    let admin = Admin::start(&[
        &format!("--nsqd-http-address={}", owner.http),
        &format!("--nsqd-http-address={}", peer.http),
    ]);
    let find = |r: &Value, node: &str| -> Value {
        r["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["node"] == node)
            .cloned()
            .unwrap_or(Value::Null)
    };
    wait_for(
        "the owner's peer connected and caught up",
        Duration::from_secs(20),
        || {
            let r = admin.json("/api/replication");
            let peers = &find(&r, &owner.http)["replication"]["peers"];
            peers[0]["connected"] == true && peers[0]["log_lag_bytes"] == 0
        },
    );
    let r = admin.json("/api/replication");
    let held = &find(&r, &peer.http)["replication"]["copies"];
    assert_eq!(held.as_array().map(Vec::len), Some(1), "{r}");
    assert_eq!(held[0]["adopted"], false, "{r}");

    let (code, page) = admin.get(&format!("/nodes/{}", owner.http));
    assert_eq!(code, 200, "{page}");
    assert!(page.contains("<h2>Replication</h2>"), "{page}");
    assert!(
        page.contains(&peer.tcp),
        "the owner's page names its peer: {page}"
    );
    let (code, page) = admin.get(&format!("/nodes/{}", peer.http));
    assert_eq!(code, 200, "{page}");
    assert!(page.contains("Copies held here"), "{page}");
    let (code, page) = admin.get("/nodes");
    assert_eq!(code, 200, "{page}");
    assert!(page.contains("1/1 peers connected"), "{page}");
    assert!(page.contains("holds 1 copy"), "{page}");
}

#[test]
fn https_brokers_are_read_with_the_client_tls_flags() {
    let certs = nsqrs_testkit::Certs::new();
    let flags = certs.server_flags();
    let refs: Vec<&str> = flags.iter().map(String::as_str).collect();
    let n = Nsqd::start(&refs);
    assert_eq!(n.post("/pub?topic=secure", b"x").0, 200);
    let https = format!("https://{}", n.https.clone().expect("an HTTPS listener"));
    let ca = format!("--http-client-tls-root-ca-file={}", certs.ca.display());
    let admin = Admin::start(&[&format!("--nsqd-http-address={https}"), &ca]);
    let t = admin.json("/api/topics/secure");
    assert_eq!(t["message_count"], 1, "{t}");
    assert_eq!(
        admin
            .send("POST", "/api/topics/secure", r#"{"action":"pause"}"#, &[])
            .0,
        200
    );
    assert!(stats_paused(&n, "secure", None));
    // Without the CA the broker's certificate is not trusted: nothing is read.
    let blind = Admin::start(&[&format!("--nsqd-http-address={https}")]);
    let (code, body) = blind.get("/api/topics/secure");
    assert_eq!(code, 502, "{body}");
    assert!(body.contains("UPSTREAM_ERROR"), "{body}");
}

#[test]
fn serve_embeds_the_admin_and_nsqd_does_not() {
    let n = Nsqd::start(&[
        "--embedded-lookupd=true",
        "--embedded-lookupd-tcp-address=127.0.0.1:0",
        "--embedded-lookupd-http-address=127.0.0.1:0",
        "--embedded-admin=true",
        "--embedded-admin-http-address=127.0.0.1:0",
        "--broadcast-address=127.0.0.1",
    ]);
    let mut admin_addr = None;
    wait_for("the embedded admin", Duration::from_secs(10), || {
        admin_addr = n.log.lock().unwrap().iter().find_map(|l| {
            l.starts_with("[nsqadmin]")
                .then(|| {
                    l.split("HTTP: listening on ")
                        .nth(1)
                        .map(|a| a.trim().to_string())
                })
                .flatten()
        });
        admin_addr.is_some()
    });
    let admin_addr = admin_addr.unwrap();
    assert_eq!(n.post("/pub?topic=embedded", b"x").0, 200);
    wait_for(
        "the broker in the embedded admin",
        Duration::from_secs(15),
        || {
            let (code, body) =
                nsqrs_testkit::http_request(&admin_addr, "GET", "/api/topics/embedded", b"").unwrap();
            code == 200 && String::from_utf8_lossy(&body).contains("\"message_count\":1")
        },
    );
    let (code, body) = nsqrs_testkit::http_request(&admin_addr, "GET", "/", b"").unwrap();
    assert_eq!(code, 200);
    assert!(String::from_utf8_lossy(&body).contains("embedded"));

    // As `nsqd`, the same flags start no admin; its listener line would precede nothing
    // later than the broker's own shutdown line.
    let dir = tempfile::tempdir().unwrap();
    let nsqd = dir.path().join("nsqd");
    std::os::unix::fs::symlink(bin(), &nsqd).unwrap();
    let args: Vec<String> = [
        "-tcp-address=127.0.0.1:0",
        "-http-address=127.0.0.1:0",
        "-embedded-admin-http-address=127.0.0.1:0",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([format!("-data-path={}", dir.path().display())])
    .collect();
    let plain = Nsqd::launch(&nsqd, &args, dir.path());
    let log = plain.log.clone();
    let (code, _) = plain.terminate();
    assert_eq!(code, Some(0));
    let log = log.lock().unwrap();
    assert!(log.iter().any(|l| l.contains("exiting")), "{log:?}");
    assert!(!log.iter().any(|l| l.contains("[nsqadmin]")), "{log:?}");
}

#[test]
fn nsqadmin_role_takes_nsqadmins_command_line() {
    let n = Nsqd::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("nsqadmin");
    std::os::unix::fs::symlink(bin(), &link).unwrap();
    let out = std::process::Command::new(&link)
        .arg("-version")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("nsqadmin v1.3.0 (built w/nsqrs-"));
    let out = std::process::Command::new(&link).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "error: --nsqd-http-address or --lookupd-http-address required"
    );
    let admin = Admin::launch(
        &link,
        &[
            "-http-address".into(),
            "127.0.0.1:0".into(),
            "-nsqd-http-address".into(),
            n.http.clone(),
        ],
    );
    assert_eq!(admin.get("/ping"), (200, "OK".into()));
}

fn tool(args: &[&str]) -> (i32, String, String) {
    let out = run_tool(args, b"", Duration::from_secs(60));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn topic_and_channel_commands_on_one_broker() {
    let n = Nsqd::start(&["--http-admin-token=tok"]);
    let at = format!("--nsqd-http-address={}", n.http);
    let token = "--http-admin-token=tok";
    assert_eq!(tool(&["topic", "create", "cli_t", &at, token]).0, 0);
    assert_eq!(topic_names(&n), ["cli_t"]);
    assert_eq!(tool(&["channel", "create", "cli_t", "c1", &at, token]).0, 0);
    let (code, out, _) = tool(&["channel", "pause", "cli_t", "c1", &at, token]);
    assert_eq!((code, out.trim()), (0, "OK paused channel cli_t/c1"));
    assert!(stats_paused(&n, "cli_t", Some("c1")));
    assert_eq!(tool(&["channel", "unpause", "cli_t", "c1", &at, token]).0, 0);
    assert!(!stats_paused(&n, "cli_t", Some("c1")));
    assert_eq!(tool(&["topic", "pause", "cli_t", &at, token]).0, 0);
    assert!(stats_paused(&n, "cli_t", None));
    assert_eq!(tool(&["topic", "unpause", "cli_t", &at, token]).0, 0);
    assert_eq!(n.post("/pub?topic=cli_t", b"x").0, 200);
    assert_eq!(tool(&["channel", "empty", "cli_t", "c1", &at, token]).0, 0);
    assert_eq!(n.stats()["topics"][0]["channels"][0]["depth"], 0);
    assert_eq!(tool(&["topic", "empty", "cli_t", &at, token]).0, 0);
    assert_eq!(tool(&["channel", "delete", "cli_t", "c1", &at, token]).0, 0);
    assert!(n.stats()["topics"][0]["channels"].as_array().unwrap().is_empty());
    assert_eq!(tool(&["topic", "delete", "cli_t", &at, token]).0, 0);
    assert!(topic_names(&n).is_empty());

    // Without the token the broker refuses: one warning line per node, status 1.
    assert_eq!(tool(&["topic", "create", "other", &at, token]).0, 0);
    let (code, _, err) = tool(&["topic", "pause", "other", &at]);
    assert_eq!(code, 1);
    assert!(err.contains("warning:") && err.contains("401"), "{err}");
    // Usage errors: one line, status 2.
    for args in [
        &["topic", "pause", "bad!", &at][..],
        &["topic", "pause", "t"],
        &["topic", "frobnicate", "t", &at],
        &["topic", "tombstone", "t", &at],
        &["channel", "pause", "t", "bad!", &at],
    ] {
        let (code, _, err) = tool(args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
    }
    let (code, _, err) = tool(&["topic", "pause", "nosuch", &at, token]);
    assert_eq!(code, 1);
    assert!(err.contains("no nsqd holds topic nosuch"), "{err}");
}

#[test]
fn topic_commands_act_on_a_two_broker_cluster() {
    let lookupd = Lookupd::start(&[]);
    let a = broker(&lookupd, &[]);
    let b = broker(&lookupd, &[]);
    for n in [&a, &b] {
        assert_eq!(n.post("/pub?topic=wide", b"x").0, 200);
        assert_eq!(n.post("/channel/create?topic=wide&channel=c", b"").0, 200);
    }
    registered(&lookupd, "wide", 2);
    let via = format!("--lookupd-http-address={}", lookupd.http);
    assert_eq!(tool(&["channel", "pause", "wide", "c", &via]).0, 0);
    assert!(stats_paused(&a, "wide", Some("c")) && stats_paused(&b, "wide", Some("c")));
    assert_eq!(tool(&["topic", "pause", "wide", &via]).0, 0);
    assert!(stats_paused(&a, "wide", None) && stats_paused(&b, "wide", None));
    let (code, out, err) = tool(&["topic", "delete", "wide", &via]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(topic_names(&a).is_empty() && topic_names(&b).is_empty());
    wait_for("lookupd to forget the topic", Duration::from_secs(10), || {
        !lookupd.get("/topics").1.contains("\"wide\"")
    });
    // Tombstone one broker's topic: hidden in lookupd, deleted on that broker only.
    for n in [&a, &b] {
        assert_eq!(n.post("/pub?topic=tomb", b"x").0, 200);
    }
    registered(&lookupd, "tomb", 2);
    let node = a.http.clone();
    assert_eq!(tool(&["topic", "tombstone", "tomb", "--node", &node, &via]).0, 0);
    assert!(topic_names(&a).is_empty());
    assert_eq!(topic_names(&b), ["tomb"]);
}

/// A fake cluster of HTTP nodes that answer every request and record it, in one log, so the
/// order of a cluster-wide delete can be read.
fn recording_node(log: Arc<Mutex<Vec<String>>>, name: &'static str, lookup_body: String) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming().map_while(Result::ok) {
            let mut reader = BufReader::new(stream);
            let mut request = String::new();
            let _ = reader.read_line(&mut request);
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
            }
            let mut parts = request.split_whitespace();
            let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            let body = if path.starts_with("/lookup") {
                lookup_body.clone()
            } else {
                String::new()
            };
            if method == "POST" {
                log.lock()
                    .unwrap()
                    .push(format!("{name} {}", path.split('?').next().unwrap_or("")));
            }
            let resp = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = reader.get_mut().write_all(resp.as_bytes());
        }
    });
    addr
}

#[test]
fn cluster_delete_tombstones_first_and_unregisters_last() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let a = recording_node(log.clone(), "nsqd-a", String::new());
    let b = recording_node(log.clone(), "nsqd-b", String::new());
    let producer = |addr: &str| {
        let (host, port) = addr.rsplit_once(':').unwrap();
        serde_json::json!({"broadcast_address": host, "tcp_port": 1, "http_port": port.parse::<u16>().unwrap(), "version": "1.3.0"})
    };
    let lookup = serde_json::json!({"channels": [], "producers": [producer(&a), producer(&b)]}).to_string();
    let l1 = recording_node(log.clone(), "lookupd-1", lookup.clone());
    let l2 = recording_node(log.clone(), "lookupd-2", lookup);
    let (code, out, err) = tool(&[
        "topic",
        "delete",
        "doomed",
        &format!("--lookupd-http-address={l1}"),
        &format!("--lookupd-http-address={l2}"),
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let log = log.lock().unwrap().clone();
    assert_eq!(
        log,
        [
            "lookupd-1 /topic/tombstone",
            "lookupd-2 /topic/tombstone",
            "lookupd-1 /topic/tombstone",
            "lookupd-2 /topic/tombstone",
            "nsqd-a /topic/delete",
            "nsqd-b /topic/delete",
            "lookupd-1 /topic/delete",
            "lookupd-2 /topic/delete",
        ]
    );
}
