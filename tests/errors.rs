//! The error matrix: every client error of nsq-reference §1.2 and §1.9, each checked for
//! nsqd's exact code and text and for whether the connection stays open.

use nsqrs_testkit::{Conn, Frame, Nsqd};
use serde_json::json;

fn be(n: i32) -> Vec<u8> {
    n.to_be_bytes().to_vec()
}

/// Sends `setup` lines (each must succeed silently or with OK), then `bytes`, and checks the
/// error text and fatality.
fn check(n: &Nsqd, subscribe_first: bool, bytes: &[u8], expected: &str, fatal: bool) {
    let mut c = n.connect();
    if subscribe_first {
        c.subscribe("errs", "ch", 0);
    }
    c.send(bytes);
    assert_eq!(
        c.read_frame(),
        Some(Frame::Error(expected.to_string())),
        "after {:?}",
        String::from_utf8_lossy(bytes)
    );
    if fatal {
        assert!(c.is_closed(), "{expected} should close the connection");
    } else {
        // Still usable: a PUB gets its OK.
        c.cmd_body("PUB errs_alive", b"x");
        c.expect_ok();
    }
}

#[test]
fn tcp_error_matrix() {
    let n = Nsqd::start(&[]);
    let big = 5 * 1024 * 1024 + 1;
    let mut cases: Vec<(bool, Vec<u8>, String, bool)> = vec![
        (
            false,
            b"IDENTIFY\n".iter().copied().chain(be(0)).collect(),
            "E_BAD_BODY IDENTIFY invalid body size 0".into(),
            true,
        ),
        (
            false,
            b"IDENTIFY\n".iter().copied().chain(be(big)).collect(),
            format!("E_BAD_BODY IDENTIFY body too big {big} > 5242880"),
            true,
        ),
        (
            false,
            b"IDENTIFY\n"
                .iter()
                .copied()
                .chain(be(3))
                .chain(*b"{x}")
                .collect(),
            "E_BAD_BODY IDENTIFY failed to decode JSON body".into(),
            true,
        ),
        (
            true,
            b"IDENTIFY\n".to_vec(),
            "E_INVALID cannot IDENTIFY in current state".into(),
            true,
        ),
        (
            false,
            b"AUTH\n".iter().copied().chain(be(2)).chain(*b"pw").collect(),
            "E_AUTH_DISABLED AUTH disabled".into(),
            true,
        ),
        (
            false,
            b"AUTH x\n".to_vec(),
            "E_INVALID AUTH invalid number of parameters".into(),
            true,
        ),
        (
            true,
            b"AUTH\n".to_vec(),
            "E_INVALID cannot AUTH in current state".into(),
            true,
        ),
        (
            false,
            b"SUB t\n".to_vec(),
            "E_INVALID SUB insufficient number of parameters".into(),
            true,
        ),
        (
            false,
            b"SUB t! c\n".to_vec(),
            "E_BAD_TOPIC SUB topic name \"t!\" is not valid".into(),
            true,
        ),
        (
            false,
            b"SUB t c!\n".to_vec(),
            "E_BAD_CHANNEL SUB channel name \"c!\" is not valid".into(),
            true,
        ),
        (
            true,
            b"SUB errs ch\n".to_vec(),
            "E_INVALID cannot SUB in current state".into(),
            true,
        ),
        (
            false,
            b"RDY 1\n".to_vec(),
            "E_INVALID cannot RDY in current state".into(),
            true,
        ),
        (
            true,
            b"RDY x\n".to_vec(),
            "E_INVALID RDY could not parse count x".into(),
            true,
        ),
        (
            true,
            b"RDY 2501\n".to_vec(),
            "E_INVALID RDY count 2501 out of range 0-2500".into(),
            true,
        ),
        (
            false,
            b"FIN 0000000000000000\n".to_vec(),
            "E_INVALID cannot FIN in current state".into(),
            true,
        ),
        (
            true,
            b"FIN\n".to_vec(),
            "E_INVALID FIN insufficient number of params".into(),
            true,
        ),
        (
            true,
            b"FIN 123\n".to_vec(),
            "E_INVALID invalid message ID".into(),
            true,
        ),
        (
            true,
            b"FIN 0000000000000000\n".to_vec(),
            "E_FIN_FAILED FIN 0000000000000000 failed ID not in flight".into(),
            false,
        ),
        (
            false,
            b"REQ 0000000000000000 0\n".to_vec(),
            "E_INVALID cannot REQ in current state".into(),
            true,
        ),
        (
            true,
            b"REQ 0000000000000000\n".to_vec(),
            "E_INVALID REQ insufficient number of params".into(),
            true,
        ),
        (
            true,
            b"REQ 0000000000000000 x\n".to_vec(),
            "E_INVALID REQ could not parse timeout x".into(),
            true,
        ),
        (
            true,
            b"REQ 0000000000000000 0\n".to_vec(),
            "E_REQ_FAILED REQ 0000000000000000 failed ID not in flight".into(),
            false,
        ),
        (
            false,
            b"TOUCH 0000000000000000\n".to_vec(),
            "E_INVALID cannot TOUCH in current state".into(),
            true,
        ),
        (
            true,
            b"TOUCH\n".to_vec(),
            "E_INVALID TOUCH insufficient number of params".into(),
            true,
        ),
        (
            true,
            b"TOUCH 0000000000000000\n".to_vec(),
            "E_TOUCH_FAILED TOUCH 0000000000000000 failed ID not in flight".into(),
            false,
        ),
        (
            false,
            b"CLS\n".to_vec(),
            "E_INVALID cannot CLS in current state".into(),
            true,
        ),
        (
            false,
            b"PUB\n".to_vec(),
            "E_INVALID PUB insufficient number of parameters".into(),
            true,
        ),
        (
            false,
            b"PUB t/x\n".to_vec(),
            "E_BAD_TOPIC PUB topic name \"t/x\" is not valid".into(),
            true,
        ),
        (
            false,
            b"PUB t\n".iter().copied().chain(be(0)).collect(),
            "E_BAD_MESSAGE PUB invalid message body size 0".into(),
            true,
        ),
        (
            false,
            b"PUB t\n".iter().copied().chain(be(1048577)).collect(),
            "E_BAD_MESSAGE PUB message too big 1048577 > 1048576".into(),
            true,
        ),
        (
            false,
            b"DPUB t\n".to_vec(),
            "E_INVALID DPUB insufficient number of parameters".into(),
            true,
        ),
        (
            false,
            b"DPUB t x\n".to_vec(),
            "E_INVALID DPUB could not parse timeout x".into(),
            true,
        ),
        (
            false,
            b"DPUB t 3600001\n".to_vec(),
            "E_INVALID DPUB timeout 3600001 out of range 0-3600000".into(),
            true,
        ),
        (
            false,
            b"DPUB t 10\n".iter().copied().chain(be(-1)).collect(),
            "E_BAD_MESSAGE DPUB invalid message body size -1".into(),
            true,
        ),
        (
            false,
            b"MPUB\n".to_vec(),
            "E_INVALID MPUB insufficient number of parameters".into(),
            true,
        ),
        (
            false,
            b"MPUB t*\n".to_vec(),
            "E_BAD_TOPIC E_BAD_TOPIC MPUB topic name \"t*\" is not valid".into(),
            true,
        ),
        (
            false,
            b"MPUB t\n".iter().copied().chain(be(0)).collect(),
            "E_BAD_BODY MPUB invalid body size 0".into(),
            true,
        ),
        (
            false,
            b"MPUB t\n".iter().copied().chain(be(big)).collect(),
            format!("E_BAD_BODY MPUB body too big {big} > 5242880"),
            true,
        ),
        (
            false,
            b"MPUB t\n".iter().copied().chain(be(8)).chain(be(0)).collect(),
            "E_BAD_BODY MPUB invalid message count 0".into(),
            true,
        ),
        (
            false,
            b"MPUB t\n"
                .iter()
                .copied()
                .chain(be(8))
                .chain(be(1))
                .chain(be(0))
                .collect(),
            "E_BAD_MESSAGE MPUB invalid message(0) body size 0".into(),
            true,
        ),
        (
            false,
            b"MPUB t\n"
                .iter()
                .copied()
                .chain(be(8))
                .chain(be(1))
                .chain(be(1048577))
                .collect(),
            "E_BAD_MESSAGE MPUB message too big 1048577 > 1048576".into(),
            true,
        ),
        (
            false,
            b"HELLO\n".to_vec(),
            "E_INVALID invalid command HELLO".into(),
            true,
        ),
    ];
    for field in [
        ("heartbeat_interval", 999),
        ("output_buffer_size", 65537),
        ("output_buffer_timeout", 24),
        ("sample_rate", 100),
        ("msg_timeout", 999),
    ] {
        let body = json!({ field.0: field.1 }).to_string();
        let text = field.0.replace('_', " ");
        cases.push((
            false,
            b"IDENTIFY\n"
                .iter()
                .copied()
                .chain(be(body.len() as i32))
                .chain(body.bytes())
                .collect(),
            format!("E_BAD_BODY IDENTIFY {text} ({}) is invalid", field.1),
            true,
        ));
    }
    for (sub, bytes, expected, fatal) in &cases {
        check(&n, *sub, bytes, expected, *fatal);
    }
}

#[test]
fn bad_magic_and_overlong_lines_close() {
    let n = Nsqd::start(&[]);
    let mut s = std::net::TcpStream::connect(&n.tcp).unwrap();
    use std::io::{Read, Write};
    s.write_all(b"  V1").unwrap();
    let mut buf = Vec::new();
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    let _ = s.read_to_end(&mut buf);
    assert_eq!(&buf[8..], b"E_BAD_PROTOCOL");

    let mut c = Conn::connect(&n.tcp);
    c.send(&vec![b'A'; 20 * 1024]);
    assert!(c.is_closed());
    // Nothing a client sent hurt the server.
    assert_eq!(n.get("/ping"), (200, "OK".to_string()));
}

#[test]
fn heartbeats_disabled_refuses_sub_and_snappy_with_deflate_refused() {
    let n = Nsqd::start(&[]);
    let mut c = n.connect();
    assert_eq!(
        c.identify(json!({"heartbeat_interval": -1})),
        Frame::Response(b"OK".to_vec())
    );
    c.cmd("SUB t c");
    assert_eq!(
        c.read_frame(),
        Some(Frame::Error(
            "E_INVALID cannot SUB with heartbeats disabled".into()
        ))
    );
    assert!(c.is_closed());
    let mut c = n.connect();
    let reply = c.identify(json!({"feature_negotiation": true, "snappy": true, "deflate": true}));
    assert_eq!(
        reply,
        Frame::Error("E_IDENTIFY_FAILED cannot enable both deflate and snappy compression".into())
    );
    assert!(c.is_closed());
}

#[test]
fn http_error_matrix() {
    let n = Nsqd::start(&[]);
    let big = vec![b'x'; 1048577];
    let cases: Vec<(&str, &str, Vec<u8>, u16, &str)> = vec![
        ("POST", "/pub", b"m".to_vec(), 400, "MISSING_ARG_TOPIC"),
        ("POST", "/pub?topic=a!", b"m".to_vec(), 400, "INVALID_TOPIC"),
        ("POST", "/pub?topic=a", vec![], 400, "MSG_EMPTY"),
        ("POST", "/pub?topic=a", big.clone(), 413, "MSG_TOO_BIG"),
        (
            "POST",
            "/pub?topic=a&defer=x",
            b"m".to_vec(),
            400,
            "INVALID_DEFER",
        ),
        (
            "POST",
            "/pub?topic=a&defer=3600001",
            b"m".to_vec(),
            400,
            "INVALID_DEFER",
        ),
        (
            "POST",
            "/mpub?topic=a",
            vec![b'x'; 5 * 1024 * 1024 + 1],
            413,
            "BODY_TOO_BIG",
        ),
        (
            "POST",
            "/mpub?topic=a",
            [b"ok\n".as_slice(), &big].concat(),
            413,
            "MSG_TOO_BIG",
        ),
        ("POST", "/mpub?topic=a&binary=true", be(0), 413, "BAD_BODY"),
        (
            "POST",
            "/mpub?topic=a&binary=true",
            [be(1), be(5), b"ab".to_vec()].concat(),
            413,
            "BAD_MESSAGE",
        ),
        ("POST", "/topic/create", vec![], 400, "MISSING_ARG_TOPIC"),
        ("POST", "/topic/create?topic=a%21", vec![], 400, "INVALID_TOPIC"),
        ("POST", "/topic/delete?topic=nope", vec![], 404, "TOPIC_NOT_FOUND"),
        ("POST", "/topic/pause?topic=nope", vec![], 404, "TOPIC_NOT_FOUND"),
        ("POST", "/topic/empty?topic=nope", vec![], 404, "TOPIC_NOT_FOUND"),
        (
            "POST",
            "/channel/create?topic=nope&channel=c",
            vec![],
            404,
            "TOPIC_NOT_FOUND",
        ),
        (
            "POST",
            "/channel/create?topic=a",
            vec![],
            400,
            "MISSING_ARG_CHANNEL",
        ),
        (
            "POST",
            "/channel/create?topic=a&channel=c!",
            vec![],
            400,
            "INVALID_ARG_CHANNEL",
        ),
        (
            "POST",
            "/channel/delete?topic=a&channel=none",
            vec![],
            404,
            "CHANNEL_NOT_FOUND",
        ),
        ("GET", "/nowhere", vec![], 404, "NOT_FOUND"),
        ("GET", "/pub?topic=a", vec![], 405, "METHOD_NOT_ALLOWED"),
        ("GET", "/config/not_an_option", vec![], 400, "INVALID_OPTION"),
        ("GET", "/stats?x=%zz", vec![], 400, "INVALID_REQUEST"),
    ];
    for (method, path, body, code, message) in cases {
        let (got, resp) = nsqrs_testkit::http_request(&n.http, method, path, &body).unwrap();
        let expected = json!({ "message": message }).to_string();
        assert_eq!(
            (got, String::from_utf8_lossy(&resp).to_string()),
            (code, expected),
            "{method} {path}"
        );
    }
    // Success conventions: plain OK, empty admin bodies, the NSQ content-type header.
    assert_eq!(n.post("/pub?topic=a", b"m"), (200, "OK".into()));
    assert_eq!(n.post("/topic/pause?topic=a", b""), (200, String::new()));
    let mut s = std::net::TcpStream::connect(&n.http).unwrap();
    use std::io::{Read, Write};
    s.write_all(b"GET /ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    assert!(
        raw.to_ascii_lowercase()
            .contains("x-nsq-content-type: nsq; version=1.0"),
        "{raw}"
    );
}
