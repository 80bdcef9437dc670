//! `nsqrs lookupd` seen from outside, as nsqd and consumers see nsqlookupd: the protocol V1
//! matrix (every command and error, exact reply bytes, whether the connection survives), the
//! HTTP API's JSON shapes, status codes and error texts, inactivity and tombstones with
//! shortened timeouts, cleanup when an nsqd's connection closes, and the `nsqlookupd` role.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use nsqrs_testkit::{http_exchange, wait_bounded, wait_for, LookupConn, Lookupd};
use serde_json::{json, Value};

/// `tombstoned_at` of a producer never tombstoned: Go's zero time as Unix nanoseconds.
const GO_ZERO_TIME_UNIX_NANO: i64 = -6_795_364_578_871_345_152;

/// Runs `cmd` to completion, killing it if it takes more than 20 s.
fn run_bounded(cmd: &mut Command) -> Output {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_bounded(child, Duration::from_secs(20))
}

fn hostname() -> String {
    nsqrs::common::host::local_hostname()
}

/// Broadcast addresses (`/lookup` producers) of `topic`.
fn producers_of(l: &Lookupd, topic: &str) -> Vec<String> {
    l.json(&format!("/lookup?topic={topic}"))["producers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["broadcast_address"].as_str().unwrap().to_string())
        .collect()
}

/// Sends `bytes` on a fresh V1 connection and expects `reply` then the connection closed.
fn expect_fatal(l: &Lookupd, setup: impl FnOnce(&mut LookupConn), bytes: &[u8], reply: &str) {
    let mut c = l.connect();
    setup(&mut c);
    c.send(bytes);
    let got = c.read_reply().map(|r| String::from_utf8_lossy(&r).into_owned());
    assert_eq!(
        got.as_deref(),
        Some(reply),
        "reply to {:?}",
        String::from_utf8_lossy(bytes)
    );
    assert!(c.is_closed(), "connection open after {reply:?}");
}

fn identified(c: &mut LookupConn) {
    c.identify("nsqd-a", 4151);
}

#[test]
fn bad_magic_gets_e_bad_protocol_and_close() {
    let l = Lookupd::start(&[]);
    for magic in [&b"  V2"[..], b"V1  ", b"\0\0\0\0"] {
        let mut c = LookupConn::connect_raw(&l.tcp);
        c.send(magic);
        assert_eq!(c.read_reply().as_deref(), Some(&b"E_BAD_PROTOCOL"[..]));
        assert!(c.is_closed());
    }
    // A client that hangs up before the magic is complete does no harm.
    let mut c = LookupConn::connect_raw(&l.tcp);
    c.send(b" ");
    c.close();
    assert_eq!(l.get("/ping"), (200, "OK".into()));
}

#[test]
fn ping_is_ok_before_and_after_identify_and_keeps_the_connection() {
    let l = Lookupd::start(&[]);
    let mut c = l.connect();
    assert_eq!(c.request("PING"), "OK");
    // Surrounding whitespace (TrimSpace) and a CRLF ending are accepted.
    assert_eq!(c.request(" \tPING \r"), "OK");
    c.identify("nsqd-a", 4151);
    assert_eq!(c.request("PING"), "OK");
    assert_eq!(c.request("PING"), "OK");
    // The reply is exactly [size=2]["OK"]: no frame type.
    c.send(b"PING\n");
    let mut raw = [0u8; 6];
    std::io::Read::read_exact(&mut c.s, &mut raw).unwrap();
    assert_eq!(&raw, b"\0\0\0\x02OK");
}

#[test]
fn identify_reply_describes_the_lookupd() {
    let l = Lookupd::start(&["--broadcast-address=lookupd.example"]);
    let mut c = l.connect();
    let body = json!({"broadcast_address": "nsqd-a", "tcp_port": 4150, "http_port": 4151,
                      "version": "1.3.0"});
    let reply = c.identify_raw(body.to_string().as_bytes());
    let tcp_port: u16 = l.tcp.rsplit(':').next().unwrap().parse().unwrap();
    let http_port: u16 = l.http.rsplit(':').next().unwrap().parse().unwrap();
    // Go marshals the reply map with sorted keys.
    assert_eq!(
        reply,
        format!(
            r#"{{"broadcast_address":"lookupd.example","hostname":{},"http_port":{http_port},"tcp_port":{tcp_port},"version":"1.3.0"}}"#,
            json!(hostname())
        )
    );
    // The default broadcast address is the hostname.
    let l = Lookupd::start(&[]);
    let v = l.connect().identify("nsqd-a", 4151);
    assert_eq!(v["broadcast_address"], json!(hostname()));
}

#[test]
fn identify_errors_are_fatal() {
    let l = Lookupd::start(&[]);
    let full = json!({"broadcast_address": "b", "tcp_port": 1, "http_port": 2, "version": "v"});
    let identify = |body: &[u8]| {
        let mut out = b"IDENTIFY\n".to_vec();
        out.extend_from_slice(&(body.len() as u32).to_be_bytes());
        out.extend_from_slice(body);
        out
    };
    for missing in ["broadcast_address", "tcp_port", "http_port", "version"] {
        let mut body = full.clone();
        body.as_object_mut().unwrap().remove(missing);
        expect_fatal(
            &l,
            |_| {},
            &identify(body.to_string().as_bytes()),
            "E_BAD_BODY IDENTIFY missing fields",
        );
    }
    for zero in [
        json!({"tcp_port": 0}),
        json!({"version": ""}),
        json!({"broadcast_address": ""}),
    ] {
        let mut body = full.clone();
        for (k, v) in zero.as_object().unwrap() {
            body[k] = v.clone();
        }
        expect_fatal(
            &l,
            |_| {},
            &identify(body.to_string().as_bytes()),
            "E_BAD_BODY IDENTIFY missing fields",
        );
    }
    for bad_json in [
        &b"not json"[..],
        b"",
        b"[1]",
        br#"{"broadcast_address":"b","tcp_port":"1","http_port":2,"version":"v"}"#,
        br#"{"broadcast_address":7,"tcp_port":1,"http_port":2,"version":"v"}"#,
        br#"{"broadcast_address":"b","tcp_port":1.5,"http_port":2,"version":"v"}"#,
    ] {
        expect_fatal(
            &l,
            |_| {},
            &identify(bad_json),
            "E_BAD_BODY IDENTIFY failed to decode JSON body",
        );
    }
    // A negative size (nsqlookupd would crash on it) is a bad size.
    expect_fatal(
        &l,
        |_| {},
        b"IDENTIFY\n\xff\xff\xff\xff",
        "E_BAD_BODY IDENTIFY failed to read body size",
    );
    expect_fatal(
        &l,
        identified,
        &identify(full.to_string().as_bytes()),
        "E_INVALID cannot IDENTIFY again",
    );

    // Truncated size or body, then the client stops sending.
    for (bytes, reply) in [
        (
            &b"IDENTIFY\n\0\0"[..],
            "E_BAD_BODY IDENTIFY failed to read body size",
        ),
        (
            b"IDENTIFY\n\0\0\0\x10{\"a\":",
            "E_BAD_BODY IDENTIFY failed to read body",
        ),
        // A huge announced size is refused at once (nsqlookupd would allocate it), in the
        // words nsqd uses for its own IDENTIFY.
        (
            b"IDENTIFY\n\x7f\xff\xff\xff{",
            "E_BAD_BODY IDENTIFY body too big 2147483647 > 1048576",
        ),
    ] {
        let mut c = l.connect();
        c.send(bytes);
        c.s.shutdown(std::net::Shutdown::Write).unwrap();
        assert_eq!(c.read_reply().as_deref(), Some(reply.as_bytes()));
        assert!(c.is_closed());
    }

    // Unknown keys are ignored, keys match case-insensitively, nulls are skipped.
    let mut c = l.connect();
    let reply = c.identify_raw(
        br#"{"BROADCAST_ADDRESS":"b","tcp_port":1,"http_port":2,"version":"v","hostname":null,"x":[]}"#,
    );
    assert!(reply.starts_with('{'), "{reply}");
    assert_eq!(c.request("PING"), "OK");
}

#[test]
fn register_and_unregister_errors_are_fatal() {
    let l = Lookupd::start(&[]);
    let none = |_: &mut LookupConn| {};
    for cmd in ["REGISTER", "UNREGISTER"] {
        expect_fatal(
            &l,
            none,
            format!("{cmd} t c\n").as_bytes(),
            "E_INVALID client must IDENTIFY",
        );
        // The IDENTIFY check comes before the parameters are looked at.
        expect_fatal(
            &l,
            none,
            format!("{cmd}\n").as_bytes(),
            "E_INVALID client must IDENTIFY",
        );
        expect_fatal(
            &l,
            identified,
            format!("{cmd}\n").as_bytes(),
            &format!("E_INVALID {cmd} insufficient number of params"),
        );
        expect_fatal(
            &l,
            identified,
            format!("{cmd} bad!topic\n").as_bytes(),
            &format!("E_BAD_TOPIC {cmd} topic name 'bad!topic' is not valid"),
        );
        expect_fatal(
            &l,
            identified,
            format!("{cmd} {} c\n", "t".repeat(65)).as_bytes(),
            &format!("E_BAD_TOPIC {cmd} topic name '{}' is not valid", "t".repeat(65)),
        );
        // Two spaces: an empty topic name.
        expect_fatal(
            &l,
            identified,
            format!("{cmd}  t\n").as_bytes(),
            &format!("E_BAD_TOPIC {cmd} topic name '' is not valid"),
        );
        expect_fatal(
            &l,
            identified,
            format!("{cmd} t bad/channel\n").as_bytes(),
            &format!("E_BAD_CHANNEL {cmd} channel name 'bad/channel' is not valid"),
        );
        expect_fatal(
            &l,
            identified,
            format!("{cmd} t #ephemeral\n").as_bytes(),
            &format!("E_BAD_CHANNEL {cmd} channel name '#ephemeral' is not valid"),
        );
    }
}

#[test]
fn unknown_commands_are_fatal() {
    let l = Lookupd::start(&[]);
    let none = |_: &mut LookupConn| {};
    expect_fatal(&l, none, b"FOO bar\n", "E_INVALID invalid command FOO");
    expect_fatal(&l, none, b"ping\n", "E_INVALID invalid command ping");
    expect_fatal(&l, none, b"\n", "E_INVALID invalid command ");
    expect_fatal(&l, identified, b"NOP\n", "E_INVALID invalid command NOP");
    // Binary garbage is just another unknown command.
    let mut c = l.connect();
    c.send(b"\xff\xfe\x00\x01 \x02\n");
    assert!(c.read_reply().unwrap().starts_with(b"E_INVALID invalid command "));
    assert!(c.is_closed());
    assert_eq!(l.get("/ping"), (200, "OK".into()));
}

#[test]
fn a_fatal_error_drops_the_peers_registrations() {
    let l = Lookupd::start(&[]);
    let mut c = l.connect();
    c.identify("nsqd-a", 4151);
    assert_eq!(c.request("REGISTER t c"), "OK");
    assert_eq!(producers_of(&l, "t"), ["nsqd-a"]);
    assert_eq!(c.request("BOGUS"), "E_INVALID invalid command BOGUS");
    assert!(c.is_closed());
    wait_for("t to have no producers", Duration::from_secs(20), || {
        producers_of(&l, "t").is_empty()
    });
}

#[test]
fn registrations_show_in_every_read_endpoint() {
    let l = Lookupd::start(&[]);
    let mut a = l.connect();
    a.identify("nsqd-a", 4151);
    assert_eq!(a.request("REGISTER t2 c"), "OK");
    assert_eq!(a.request("REGISTER t1 z"), "OK");
    assert_eq!(a.request("REGISTER t1 y"), "OK");
    assert_eq!(a.request("REGISTER t1"), "OK");
    // Registering twice is harmless.
    assert_eq!(a.request("REGISTER t1 y"), "OK");
    let a_addr = a.local_addr();

    let peer = json!({
        "remote_address": a_addr,
        "hostname": "nsqd-a-host",
        "broadcast_address": "nsqd-a",
        "tcp_port": 4150,
        "http_port": 4151,
        "version": "1.3.0",
        "topology_zone": "zone-1",
        "topology_region": "region-1",
    });
    assert_eq!(l.json("/topics"), json!({"topics": ["t1", "t2"]}));
    assert_eq!(l.json("/channels?topic=t1"), json!({"channels": ["y", "z"]}));
    assert_eq!(l.json("/channels?topic=none"), json!({"channels": []}));
    assert_eq!(
        l.json("/lookup?topic=t1"),
        json!({"channels": ["y", "z"], "producers": [peer]})
    );
    // Field order of a producer is nsqlookupd's (struct order), not alphabetical.
    let (_, body) = l.get("/lookup?topic=t2");
    assert_eq!(
        body,
        format!(
            r#"{{"channels":["c"],"producers":[{{"remote_address":"{a_addr}","hostname":"nsqd-a-host","broadcast_address":"nsqd-a","tcp_port":4150,"http_port":4151,"version":"1.3.0","topology_zone":"zone-1","topology_region":"region-1"}}]}}"#
        )
    );

    let mut node = peer.clone();
    node["tombstones"] = json!([false, false]);
    node["topics"] = json!(["t1", "t2"]);
    assert_eq!(l.json("/nodes"), json!({"producers": [node]}));
    let (_, body) = l.get("/nodes");
    assert!(
        body.contains(r#""topology_region":"region-1","tombstones":[false,false],"topics":["t1","t2"]}"#),
        "{body}"
    );

    let debug = l.json("/debug");
    let keys: Vec<&String> = debug.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        [
            "channel:t1:y",
            "channel:t1:z",
            "channel:t2:c",
            "client::",
            "topic:t1:",
            "topic:t2:"
        ]
    );
    let entry = &debug["topic:t1:"][0];
    let last_update = entry["last_update"].as_i64().unwrap();
    let now_ns = nsqrs::common::time::now_ns();
    assert!(
        last_update > now_ns - 60_000_000_000 && last_update <= now_ns,
        "{entry}"
    );
    assert_eq!(
        entry,
        &json!({
            "id": a_addr,
            "hostname": "nsqd-a-host",
            "broadcast_address": "nsqd-a",
            "tcp_port": 4150,
            "http_port": 4151,
            "version": "1.3.0",
            "topology_zone": "zone-1",
            "topology_region": "region-1",
            "last_update": last_update,
            "tombstoned": false,
            "tombstoned_at": GO_ZERO_TIME_UNIX_NANO,
        })
    );

    // A second nsqd on the same topic.
    let mut b = l.connect();
    b.identify("nsqd-b", 5151);
    assert_eq!(b.request("REGISTER t1 x"), "OK");
    assert_eq!(producers_of(&l, "t1").len(), 2);
    assert_eq!(l.json("/lookup?topic=t1")["channels"], json!(["x", "y", "z"]));
    assert_eq!(l.json("/nodes")["producers"].as_array().unwrap().len(), 2);
}

#[test]
fn unregister_follows_nsqlookupds_key_rules() {
    let l = Lookupd::start(&[]);
    let mut a = l.connect();
    a.identify("nsqd-a", 4151);
    let channels = |l: &Lookupd, t: &str| l.json(&format!("/channels?topic={t}"))["channels"].clone();

    // A plain channel's key stays when its last producer leaves.
    assert_eq!(a.request("REGISTER t c"), "OK");
    assert_eq!(a.request("UNREGISTER t c"), "OK");
    assert_eq!(channels(&l, "t"), json!(["c"]));
    assert!(l.json("/debug").get("channel:t:c").is_none());
    // The topic registration is untouched by a channel UNREGISTER.
    assert_eq!(producers_of(&l, "t"), ["nsqd-a"]);
    // Unregistering what is not registered is OK too.
    assert_eq!(a.request("UNREGISTER t c"), "OK");
    assert_eq!(a.request("UNREGISTER nothing here"), "OK");

    // An ephemeral channel's key goes with its last producer.
    let mut b = l.connect();
    b.identify("nsqd-b", 4151);
    assert_eq!(a.request("REGISTER v c"), "OK");
    assert_eq!(a.request("REGISTER v e#ephemeral"), "OK");
    assert_eq!(b.request("REGISTER v e#ephemeral"), "OK");
    assert_eq!(a.request("UNREGISTER v e#ephemeral"), "OK");
    assert_eq!(channels(&l, "v"), json!(["c", "e#ephemeral"]));
    assert_eq!(b.request("UNREGISTER v e#ephemeral"), "OK");
    assert_eq!(channels(&l, "v"), json!(["c"]));

    // A topic UNREGISTER also takes the peer off every channel of the topic; keys stay.
    assert_eq!(a.request("REGISTER t c"), "OK");
    assert_eq!(a.request("REGISTER t d#ephemeral"), "OK");
    assert_eq!(a.request("UNREGISTER t"), "OK");
    assert_eq!(l.json("/topics"), json!({"topics": ["t", "v"]}));
    assert_eq!(channels(&l, "t"), json!(["c", "d#ephemeral"]));
    assert_eq!(l.json("/lookup?topic=t")["producers"], json!([]));
    let debug = l.json("/debug");
    assert!(
        debug.get("topic:t:").is_none() && debug.get("channel:t:c").is_none(),
        "{debug}"
    );

    // An ephemeral topic's key goes with its last producer; its channels' keys stay.
    assert_eq!(a.request("REGISTER x#ephemeral ch"), "OK");
    assert_eq!(b.request("REGISTER x#ephemeral"), "OK");
    assert_eq!(a.request("UNREGISTER x#ephemeral"), "OK");
    assert_eq!(producers_of(&l, "x%23ephemeral"), ["nsqd-b"]);
    assert_eq!(b.request("UNREGISTER x#ephemeral"), "OK");
    assert_eq!(l.get("/lookup?topic=x%23ephemeral").0, 404);
    assert_eq!(channels(&l, "x%23ephemeral"), json!(["ch"]));
}

#[test]
fn closing_the_connection_removes_every_registration_of_that_peer() {
    let l = Lookupd::start(&[]);
    let mut a = l.connect();
    a.identify("nsqd-a", 4151);
    let mut b = l.connect();
    b.identify("nsqd-b", 4151);
    for c in [&mut a, &mut b] {
        assert_eq!(c.request("REGISTER t c"), "OK");
        assert_eq!(c.request("REGISTER u e#ephemeral"), "OK");
    }
    a.close();
    wait_for("only nsqd-b to produce t", Duration::from_secs(20), || {
        producers_of(&l, "t") == ["nsqd-b"]
    });
    assert_eq!(producers_of(&l, "u"), ["nsqd-b"]);
    let nodes = l.json("/nodes");
    assert_eq!(nodes["producers"].as_array().unwrap().len(), 1);
    assert_eq!(nodes["producers"][0]["broadcast_address"], "nsqd-b");

    // Dropping the socket without a goodbye counts the same.
    drop(b);
    wait_for("no producers in /nodes", Duration::from_secs(20), || {
        l.json("/nodes") == json!({"producers": []})
    });
    // The keys stay, even ephemeral ones: only UNREGISTER deletes those.
    assert_eq!(l.json("/topics"), json!({"topics": ["t", "u"]}));
    assert_eq!(
        l.json("/lookup?topic=u"),
        json!({"channels": ["e#ephemeral"], "producers": []})
    );
    assert_eq!(l.json("/debug"), json!({}));
}

/// Status, headers (lower-cased) and body of one request.
fn exchange(l: &Lookupd, method: &str, path: &str) -> (u16, String, String) {
    let (code, head, body) = http_exchange(&l.http, method, path, b"").unwrap();
    (
        code,
        head.to_ascii_lowercase(),
        String::from_utf8_lossy(&body).into_owned(),
    )
}

#[test]
fn http_conventions() {
    let l = Lookupd::start(&[]);
    let cases: &[(&str, &str, u16, &str)] = &[
        ("GET", "/ping", 200, "OK"),
        ("GET", "/info", 200, r#"{"version":"1.3.0"}"#),
        ("GET", "/topics", 200, r#"{"topics":[]}"#),
        ("GET", "/nodes", 200, r#"{"producers":[]}"#),
        ("GET", "/debug", 200, "{}"),
        ("GET", "/lookup", 400, r#"{"message":"MISSING_ARG_TOPIC"}"#),
        (
            "GET",
            "/lookup?topic=nope",
            404,
            r#"{"message":"TOPIC_NOT_FOUND"}"#,
        ),
        (
            "GET",
            "/lookup?topic=%zz",
            400,
            r#"{"message":"INVALID_REQUEST"}"#,
        ),
        ("GET", "/channels", 400, r#"{"message":"MISSING_ARG_TOPIC"}"#),
        ("GET", "/nope", 404, r#"{"message":"NOT_FOUND"}"#),
        ("GET", "/debug/pprof", 404, r#"{"message":"NOT_FOUND"}"#),
        (
            "POST",
            "/lookup?topic=t",
            405,
            r#"{"message":"METHOD_NOT_ALLOWED"}"#,
        ),
        ("POST", "/ping", 405, r#"{"message":"METHOD_NOT_ALLOWED"}"#),
        (
            "GET",
            "/topic/create?topic=t",
            405,
            r#"{"message":"METHOD_NOT_ALLOWED"}"#,
        ),
        (
            "DELETE",
            "/topic/delete?topic=t",
            405,
            r#"{"message":"METHOD_NOT_ALLOWED"}"#,
        ),
        (
            "PUT",
            "/channel/create?topic=t&channel=c",
            405,
            r#"{"message":"METHOD_NOT_ALLOWED"}"#,
        ),
    ];
    for &(method, path, code, body) in cases {
        let (got_code, head, got_body) = exchange(&l, method, path);
        assert_eq!((got_code, got_body.as_str()), (code, body), "{method} {path}");
        assert!(
            head.contains("x-nsq-content-type: nsq; version=1.0"),
            "{method} {path}: {head}"
        );
        let is_json = head.contains("content-type: application/json; charset=utf-8");
        assert_eq!(is_json, body.starts_with('{'), "{method} {path}: {head}");
    }
}

#[test]
fn http_admin_actions() {
    let l = Lookupd::start(&[]);
    let cases: &[(&str, u16, &str)] = &[
        ("/topic/create", 400, r#"{"message":"MISSING_ARG_TOPIC"}"#),
        (
            "/topic/create?topic=bad!",
            400,
            r#"{"message":"INVALID_ARG_TOPIC"}"#,
        ),
        ("/topic/create?topic=", 400, r#"{"message":"INVALID_ARG_TOPIC"}"#),
        ("/topic/create?topic=t1", 200, ""),
        ("/topic/create?topic=t1", 200, ""),
        (
            "/channel/create?channel=c",
            400,
            r#"{"message":"MISSING_ARG_TOPIC"}"#,
        ),
        (
            "/channel/create?topic=b!&channel=c",
            400,
            r#"{"message":"INVALID_ARG_TOPIC"}"#,
        ),
        (
            "/channel/create?topic=t2",
            400,
            r#"{"message":"MISSING_ARG_CHANNEL"}"#,
        ),
        (
            "/channel/create?topic=t2&channel=b!",
            400,
            r#"{"message":"INVALID_ARG_CHANNEL"}"#,
        ),
        // Creates the topic too.
        ("/channel/create?topic=t2&channel=c1", 200, ""),
        ("/channel/create?topic=t2&channel=c2%23ephemeral", 200, ""),
        (
            "/channel/delete?topic=t2",
            400,
            r#"{"message":"MISSING_ARG_CHANNEL"}"#,
        ),
        (
            "/channel/delete?topic=t2&channel=b!",
            400,
            r#"{"message":"INVALID_ARG_CHANNEL"}"#,
        ),
        (
            "/channel/delete?topic=t2&channel=nope",
            404,
            r#"{"message":"CHANNEL_NOT_FOUND"}"#,
        ),
        ("/channel/delete?topic=t2&channel=c1", 200, ""),
        (
            "/channel/delete?topic=t2&channel=c1",
            404,
            r#"{"message":"CHANNEL_NOT_FOUND"}"#,
        ),
        (
            "/topic/tombstone?node=a:1",
            400,
            r#"{"message":"MISSING_ARG_TOPIC"}"#,
        ),
        (
            "/topic/tombstone?topic=t1",
            400,
            r#"{"message":"MISSING_ARG_NODE"}"#,
        ),
        ("/topic/tombstone?topic=nope&node=a:1", 200, ""),
        ("/topic/delete", 400, r#"{"message":"MISSING_ARG_TOPIC"}"#),
        // Deleting what does not exist is not an error.
        ("/topic/delete?topic=nope", 200, ""),
    ];
    for &(path, code, body) in cases {
        let (got_code, head, got_body) = exchange(&l, "POST", path);
        assert_eq!((got_code, got_body.as_str()), (code, body), "POST {path}");
        assert!(
            head.contains("x-nsq-content-type: nsq; version=1.0"),
            "{path}: {head}"
        );
    }
    assert_eq!(l.json("/topics"), json!({"topics": ["t1", "t2"]}));
    assert_eq!(
        l.json("/channels?topic=t2"),
        json!({"channels": ["c2#ephemeral"]})
    );
    // A created topic has no producers but can be looked up.
    assert_eq!(
        l.json("/lookup?topic=t1"),
        json!({"channels": [], "producers": []})
    );

    // Deleting a topic takes its channels, and its producers' registrations, with it; the
    // nsqd is not told and simply registers again.
    let mut a = l.connect();
    a.identify("nsqd-a", 4151);
    assert_eq!(a.request("REGISTER t2 c3"), "OK");
    assert_eq!(l.post("/topic/delete?topic=t2"), (200, String::new()));
    assert_eq!(l.json("/topics"), json!({"topics": ["t1"]}));
    assert_eq!(l.json("/channels?topic=t2"), json!({"channels": []}));
    assert_eq!(l.get("/lookup?topic=t2").0, 404);
    assert_eq!(l.json("/nodes")["producers"][0]["topics"], json!([]));
    assert_eq!(a.request("UNREGISTER t2 c3"), "OK");
    assert_eq!(a.request("REGISTER t2 c3"), "OK");
    assert_eq!(producers_of(&l, "t2"), ["nsqd-a"]);
}

#[test]
fn inactive_producers_are_hidden_until_they_ping() {
    // Short, but long enough that the checks right after a PING finish within it.
    let l = Lookupd::start(&["--inactive-producer-timeout=2s"]);
    let mut a = l.connect();
    a.identify("nsqd-a", 4151);
    assert_eq!(a.request("REGISTER t c"), "OK");
    let registered = Instant::now();
    assert_eq!(producers_of(&l, "t"), ["nsqd-a"]);

    wait_for(
        "the silent producer to go inactive",
        Duration::from_secs(20),
        || producers_of(&l, "t").is_empty(),
    );
    assert!(registered.elapsed() >= Duration::from_millis(1900));
    assert_eq!(l.json("/nodes"), json!({"producers": []}));
    // Still registered: listed by /debug and /topics, and back as soon as it pings.
    assert_eq!(l.json("/debug")["topic:t:"].as_array().unwrap().len(), 1);
    assert_eq!(l.json("/topics"), json!({"topics": ["t"]}));
    assert_eq!(l.json("/lookup?topic=t")["channels"], json!(["c"]));

    assert_eq!(a.request("PING"), "OK");
    assert_eq!(producers_of(&l, "t"), ["nsqd-a"]);
    assert_eq!(l.json("/nodes")["producers"].as_array().unwrap().len(), 1);
    // REGISTER is not a sign of life; only IDENTIFY and PING are.
    wait_for(
        "the producer to go inactive again",
        Duration::from_secs(20),
        || producers_of(&l, "t").is_empty(),
    );
    assert_eq!(a.request("REGISTER t2"), "OK");
    assert!(producers_of(&l, "t2").is_empty());
}

#[test]
fn tombstones_hide_a_producer_of_one_topic_for_the_lifetime() {
    let l = Lookupd::start(&["--tombstone-lifetime=2s"]);
    let mut a = l.connect();
    a.identify("nsqd-a", 4151);
    let mut b = l.connect();
    b.identify("nsqd-b", 4151);
    for c in [&mut a, &mut b] {
        assert_eq!(c.request("REGISTER t"), "OK");
        assert_eq!(c.request("REGISTER u"), "OK");
    }
    // The node must match <broadcast_address>:<http_port> exactly.
    assert_eq!(
        l.post("/topic/tombstone?topic=t&node=nsqd-a:9999"),
        (200, String::new())
    );
    assert_eq!(
        l.post("/topic/tombstone?topic=t&node=nsqd-a"),
        (200, String::new())
    );
    assert_eq!(producers_of(&l, "t"), ["nsqd-a", "nsqd-b"]);

    let before = nsqrs::common::time::now_ns();
    assert_eq!(
        l.post("/topic/tombstone?topic=t&node=nsqd-a:4151"),
        (200, String::new())
    );
    let tombstoned = Instant::now();
    assert_eq!(producers_of(&l, "t"), ["nsqd-b"]);
    assert_eq!(producers_of(&l, "u"), ["nsqd-a", "nsqd-b"]);
    // /nodes still lists the tombstoned nsqd, flagging the topic.
    let nodes = l.json("/nodes");
    let by_name = |name: &str| {
        nodes["producers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["broadcast_address"] == name)
            .unwrap()
            .clone()
    };
    assert_eq!(by_name("nsqd-a")["topics"], json!(["t", "u"]));
    assert_eq!(by_name("nsqd-a")["tombstones"], json!([true, false]));
    assert_eq!(by_name("nsqd-b")["tombstones"], json!([false, false]));
    let debug = l.json("/debug");
    let entry = |key: &str, name: &str| -> Value {
        debug[key]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["broadcast_address"] == name)
            .unwrap()
            .clone()
    };
    assert_eq!(entry("topic:t:", "nsqd-a")["tombstoned"], true);
    let at = entry("topic:t:", "nsqd-a")["tombstoned_at"].as_i64().unwrap();
    assert!(at >= before && at <= nsqrs::common::time::now_ns(), "{at}");
    assert_eq!(entry("topic:u:", "nsqd-a")["tombstoned"], false);
    assert_eq!(entry("client::", "nsqd-a")["tombstoned"], false);
    // Registering again does not lift the tombstone.
    assert_eq!(a.request("REGISTER t"), "OK");
    assert_eq!(producers_of(&l, "t"), ["nsqd-b"]);

    // After the lifetime the producer is visible again; the flag stays in /debug.
    wait_for(
        "both producers of t to be listed again",
        Duration::from_secs(20),
        || producers_of(&l, "t").len() == 2,
    );
    assert!(tombstoned.elapsed() >= Duration::from_millis(1900));
    assert_eq!(l.json("/debug")["topic:t:"].as_array().unwrap().len(), 2);
    let nodes = l.json("/nodes");
    for n in nodes["producers"].as_array().unwrap() {
        assert_eq!(n["tombstones"], json!([false, false]), "{n}");
    }
    // The usual end of a tombstone: the nsqd deletes the topic and unregisters it.
    assert_eq!(
        l.post("/topic/tombstone?topic=t&node=nsqd-a:4151"),
        (200, String::new())
    );
    assert_eq!(a.request("UNREGISTER t"), "OK");
    assert_eq!(producers_of(&l, "t"), ["nsqd-b"]);
    assert_eq!(l.json("/debug")["topic:t:"].as_array().unwrap().len(), 1);
}

#[test]
fn many_clients_and_a_restart_of_each() {
    let l = Lookupd::start(&[]);
    let mut conns: Vec<LookupConn> = (0..20)
        .map(|i| {
            let mut c = l.connect();
            c.identify(&format!("n{i:02}"), 4151);
            assert_eq!(c.request("REGISTER t c"), "OK");
            c
        })
        .collect();
    assert_eq!(producers_of(&l, "t").len(), 20);
    conns.truncate(5);
    wait_for("five producers of t", Duration::from_secs(20), || {
        producers_of(&l, "t").len() == 5
    });
    for c in &mut conns {
        assert_eq!(c.request("PING"), "OK");
    }
}

/// A directory holding a symlink named `nsqlookupd` to the built binary.
fn nsqlookupd_link() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("nsqlookupd");
    std::os::unix::fs::symlink(nsqrs_testkit::bin(), &link).unwrap();
    (dir, link)
}

fn version_line() -> String {
    format!(
        "nsqlookupd v1.3.0 (built w/nsqrs-{})\n",
        env!("CARGO_PKG_VERSION")
    )
}

#[test]
fn nsqlookupd_symlink_and_subcommand_print_nsqlookupds_version() {
    let (_dir, link) = nsqlookupd_link();
    for flag in ["--version", "-version", "--version=true"] {
        let out = run_bounded(Command::new(&link).arg(flag));
        assert_eq!(out.status.code(), Some(0), "{flag}");
        assert_eq!(String::from_utf8_lossy(&out.stdout), version_line(), "{flag}");
    }
    let out = run_bounded(Command::new(nsqrs_testkit::bin()).args(["lookupd", "-version"]));
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&out.stdout), version_line());
}

#[test]
fn nsqlookupd_symlink_reads_go_flags_and_logs_like_nsqlookupd() {
    let (_dir, link) = nsqlookupd_link();
    let args: Vec<String> = [
        "-tcp-address",
        "127.0.0.1:0",
        "-http-address=127.0.0.1:0",
        "-broadcast-address",
        "lookupd.example",
        "-verbose",
        "-log-level=debug",
        "-tombstone-lifetime=10s",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let l = Lookupd::launch(&link, &args);
    let mut c = l.connect();
    assert_eq!(c.identify("nsqd-a", 4151)["broadcast_address"], "lookupd.example");
    assert_eq!(c.request("PING"), "OK");
    {
        let log = l.log.lock().unwrap();
        assert!(log[0].starts_with("[nsqlookupd] "), "{log:?}");
        assert!(
            log[0].ends_with(&format!("INFO: {}", version_line().trim_end())),
            "{log:?}"
        );
        assert!(
            log.iter().all(|line| line.starts_with("[nsqlookupd] ")),
            "{log:?}"
        );
    }
    // --log-level=debug lets PING's debug line through.
    wait_for("a DEBUG line for the ping", Duration::from_secs(20), || {
        l.log
            .lock()
            .unwrap()
            .iter()
            .any(|line| line.contains("DEBUG: CLIENT(") && line.contains("pinged"))
    });
    assert_eq!(l.terminate(), Some(0));
}

#[test]
fn bad_command_lines_are_one_stderr_line_and_status_2() {
    let (_dir, link) = nsqlookupd_link();
    for args in [
        &["--no-such-flag"][..],
        &["--tombstone-lifetime=forever"],
        &["--config=/nonexistent/nsqlookupd.toml"],
    ] {
        let out = run_bounded(Command::new(&link).args(args));
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
    let out = run_bounded(Command::new(&link).arg("--config=/nonexistent/nsqlookupd.toml"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("error: failed to load config file"), "{err}");
}

#[test]
fn a_port_in_use_is_fatal_with_status_1() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = run_bounded(Command::new(nsqrs_testkit::bin()).args([
        "lookupd",
        &format!("--tcp-address={addr}"),
        "--http-address=127.0.0.1:0",
    ]));
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "FATAL: failed to instantiate nsqlookupd - listen ({addr}) failed"
        )),
        "{err}"
    );
}
