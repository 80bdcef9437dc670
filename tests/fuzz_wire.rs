//! Fuzzing over the wire, against the real binary: mutated and random protocol V2 sessions
//! (plain, snappy and deflate), HTTP requests to `/pub`, `/mpub` (text and binary),
//! `/deferred/cancel` and the read endpoints, and lookupd protocol V1 sessions.
//!
//! After every input the server must still answer `/ping` and must not have logged a panic
//! (tokio survives a panicking connection task, so a panic would otherwise go unseen); at the
//! end a PUB→SUB round trip (or REGISTER→/lookup) must work. Inputs share one server, so
//! failures are not shrunk: the input reported is the one that did the damage.
//!
//! `NSQRS_FUZZ_CASES=N` sets the number of inputs per fuzzer and `NSQRS_FUZZ_SEED=S` replays
//! a run (docs/testing.md).

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;

use nsqrs::protocol::compress::Encoder;
use nsqrs_testkit::fuzz::{hostile, mutated, mutation_strategy, runner, Input, Mutation};
use nsqrs_testkit::{http_request, Frame, Lookupd, Nsqd};

/// Small limits, so that mutated sizes and counts cross them often.
const BROKER_FLAGS: &[&str] = &[
    "--max-msg-size=4096",
    "--max-body-size=65536",
    "--max-rdy-count=100",
];

/// Sends `bytes` on a fresh connection, half-closes it, and reads whatever comes back until
/// the server closes (or a bounded wait ends: a reply is not what is being tested).
fn exchange(addr: &str, bytes: &[u8]) -> Vec<u8> {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return Vec::new();
    };
    let _ = s.set_write_timeout(Some(Duration::from_secs(5)));
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    // The server may close early on a fatal error; what it did not read does not matter.
    let _ = s.write_all(bytes);
    let _ = s.shutdown(Shutdown::Write);
    let mut reply = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = [0u8; 16 * 1024];
    while Instant::now() < deadline && reply.len() < 4 << 20 {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => reply.extend_from_slice(&buf[..n]),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut => {
            }
            Err(_) => break,
        }
    }
    reply
}

/// The first log line that reports a panic, if any.
fn panic_line(log: &std::sync::Mutex<Vec<String>>) -> Option<String> {
    log.lock()
        .unwrap()
        .iter()
        .find(|l| l.contains("panicked"))
        .cloned()
}

fn ping_ok(http: &str) -> bool {
    matches!(http_request(http, "GET", "/ping", b""), Ok((200, body)) if body == b"OK")
}

// ---------------------------------------------------------------------------------------------
// nsqd, protocol V2

fn line(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(text.as_bytes());
    out.push(b'\n');
}

fn sized(out: &mut Vec<u8>, body: &[u8]) {
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(body);
}

fn identify(out: &mut Vec<u8>, json: &str) {
    line(out, "IDENTIFY");
    sized(out, json.as_bytes());
}

fn publishes() -> Vec<u8> {
    let mut out = Vec::new();
    line(&mut out, "PUB fuzz");
    sized(&mut out, b"hello");
    line(&mut out, "MPUB fuzz");
    let mut inner = 3u32.to_be_bytes().to_vec();
    for b in [&b"one"[..], b"two", b"three"] {
        sized(&mut inner, b);
    }
    sized(&mut out, &inner);
    line(&mut out, "DPUB fuzz 100");
    sized(&mut out, b"later");
    line(&mut out, "NOP");
    out
}

fn consumes() -> Vec<u8> {
    let mut out = Vec::new();
    line(&mut out, "SUB fuzz ch");
    line(&mut out, "RDY 5");
    line(&mut out, "FIN 18a3ea5e4ea69000");
    line(&mut out, "REQ 18a3ea5e4ea69001 100");
    line(&mut out, "TOUCH 18a3ea5e4ea69002");
    line(&mut out, "CLS");
    out
}

/// Whole sessions a real client sends, magic included; compressed ones switch after IDENTIFY.
fn v2_sessions() -> Vec<Vec<u8>> {
    let plain = r#"{"client_id":"fuzz","hostname":"h","feature_negotiation":true,"user_agent":"fuzz/1"}"#;
    let mut sessions = Vec::new();
    for body in [publishes(), consumes(), [publishes(), consumes()].concat()] {
        let mut s = b"  V2".to_vec();
        identify(&mut s, plain);
        s.extend_from_slice(&body);
        sessions.push(s);
    }
    let mut bare = b"  V2".to_vec();
    line(&mut bare, "AUTH");
    sized(&mut bare, b"secret");
    bare.extend_from_slice(&publishes());
    sessions.push(bare);
    for (json, mut encoder) in [
        (r#"{"feature_negotiation":true,"snappy":true}"#, Encoder::snappy()),
        (
            r#"{"feature_negotiation":true,"deflate":true,"deflate_level":6}"#,
            Encoder::deflate(6),
        ),
    ] {
        let mut s = b"  V2".to_vec();
        identify(&mut s, json);
        let plain = [publishes(), consumes()].concat();
        encoder.encode(&plain[..10], &mut s).unwrap();
        encoder.encode(&plain[10..], &mut s).unwrap();
        sessions.push(s);
    }
    sessions
}

fn round_trip(n: &Nsqd) {
    let mut sub = n.connect();
    sub.subscribe("fuzz_round_trip", "ch", 1);
    let mut publisher = n.connect();
    publisher.cmd_body("PUB fuzz_round_trip", b"still here");
    publisher.expect_ok();
    match sub.read_frame() {
        Some(Frame::Message { body, id, .. }) => {
            assert_eq!(body, b"still here");
            sub.cmd(&format!("FIN {id}"));
        }
        other => panic!("no message after the fuzzing: {other:?}"),
    }
}

#[test]
fn v2_sessions_cannot_stop_the_broker() {
    let n = Nsqd::start(BROKER_FLAGS);
    runner("v2 over the wire", 1000, false)
        .run(&hostile(v2_sessions(), 8, 400), |Input(bytes)| {
            exchange(&n.tcp, &bytes);
            prop_assert!(ping_ok(&n.http), "/ping failed after this session");
            prop_assert_eq!(panic_line(&n.log), None);
            Ok(())
        })
        .unwrap();
    round_trip(&n);
}

// ---------------------------------------------------------------------------------------------
// nsqd, HTTP

/// A request: method, path with query, body.
type Request = (&'static str, String, Vec<u8>);

fn binary_mpub(bodies: &[&[u8]]) -> Vec<u8> {
    let mut out = (bodies.len() as u32).to_be_bytes().to_vec();
    for b in bodies {
        sized(&mut out, b);
    }
    out
}

fn http_seeds() -> Vec<Request> {
    let ids = "18a3ea5e4ea69000,18a3ea5e4ea69001";
    vec![
        ("POST", "/pub?topic=fuzz".into(), b"hello".to_vec()),
        ("POST", "/pub?topic=fuzz&defer=100".into(), b"later".to_vec()),
        ("POST", "/mpub?topic=fuzz".into(), b"one\ntwo\nthree\n".to_vec()),
        (
            "POST",
            "/mpub?topic=fuzz&binary=true".into(),
            binary_mpub(&[b"one", b"two", b"three"]),
        ),
        (
            "POST",
            format!("/deferred/cancel?topic=fuzz&id={ids}"),
            Vec::new(),
        ),
        (
            "POST",
            format!("/deferred/cancel?topic=fuzz&channel=ch&id={ids}"),
            Vec::new(),
        ),
        (
            "GET",
            "/deferred?topic=fuzz&include_body=true&limit=5".into(),
            Vec::new(),
        ),
        (
            "GET",
            "/message?topic=fuzz&id=18a3ea5e4ea69000".into(),
            Vec::new(),
        ),
    ]
}

fn raw_request((method, path, body): &(&str, Vec<u8>, Vec<u8>)) -> Vec<u8> {
    let mut out = format!("{method} ").into_bytes();
    out.extend_from_slice(path);
    out.extend_from_slice(
        format!(
            " HTTP/1.1\r\nHost: fuzz\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    out.extend_from_slice(body);
    out
}

/// A seed request with its body mutated (mostly) and its query (sometimes); or the whole
/// request mutated as bytes, head included.
fn http_input() -> impl Strategy<Value = Input> {
    let apply = |mut data: Vec<u8>, mutations: &[Mutation]| {
        for m in mutations {
            m.apply(&mut data);
        }
        data
    };
    let structured = (
        select(http_seeds()),
        vec(mutation_strategy(), 0..8),
        vec(mutation_strategy(), 0..2),
        vec(any::<u8>(), 0..300),
        proptest::bool::weighted(0.1),
    )
        .prop_map(
            move |((method, path, body), body_mutations, path_mutations, random, random_body)| {
                let body = if random_body {
                    random
                } else {
                    apply(body, &body_mutations)
                };
                Input(raw_request(&(
                    method,
                    apply(path.into_bytes(), &path_mutations),
                    body,
                )))
            },
        );
    let raw = mutated(
        http_seeds()
            .iter()
            .map(|(m, p, b)| raw_request(&(m, p.clone().into_bytes(), b.clone())))
            .collect(),
        6,
    );
    prop_oneof![4 => structured, 1 => raw]
}

/// The status code of an HTTP response, if it is one.
fn status(reply: &[u8]) -> Option<u16> {
    let text = std::str::from_utf8(reply.get(..12)?).ok()?;
    text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

/// True when a request announces more body bytes than it carries (or its length is not a number).
fn body_cut_short(request: &[u8]) -> bool {
    // The head ends at the first empty line; HTTP parsers accept a bare "\n" as a line end.
    let end = (0..request.len()).find_map(|i| match &request[i..] {
        [b'\n', b'\n', ..] => Some((i, i + 2)),
        [b'\n', b'\r', b'\n', ..] => Some((i, i + 3)),
        _ => None,
    });
    let Some((split, body_start)) = end else {
        return false;
    };
    let head = String::from_utf8_lossy(&request[..split]).to_ascii_lowercase();
    let sent = request.len() - body_start;
    head.lines()
        .filter_map(|l| l.strip_prefix("content-length:"))
        .any(|v| v.trim().parse::<usize>().map_or(true, |n| n > sent))
}

#[test]
fn http_requests_cannot_stop_the_broker() {
    let n = Nsqd::start(BROKER_FLAGS);
    // A channel with deferred messages, so cancellations have something to find.
    let mut sub = n.connect();
    sub.subscribe("fuzz", "ch", 0);
    runner("http over the wire", 2000, false)
        .run(&http_input(), |Input(bytes)| {
            let reply = exchange(&n.http, &bytes);
            prop_assert!(ping_ok(&n.http), "/ping failed after this request");
            prop_assert_eq!(panic_line(&n.log), None);
            // nsqd answers 500 INTERNAL_ERROR to a body cut short of its Content-Length, and so
            // do we; any other 500 is a fault.
            if !body_cut_short(&bytes) {
                prop_assert_ne!(status(&reply), Some(500), "{}", String::from_utf8_lossy(&reply));
            }
            Ok(())
        })
        .unwrap();
    sub.close();
    round_trip(&n);
}

/// Regression: a binary /mpub's count was used to size a vector before it was checked, so
/// four bytes claiming 2^31-1 messages aborted the process (found by
/// `http_requests_cannot_stop_the_broker`).
#[test]
fn binary_mpub_with_a_huge_count_is_refused() {
    let n = Nsqd::start(&[]);
    let (code, body) = n.post("/mpub?topic=t&binary=true", &0x7fff_ffffu32.to_be_bytes());
    assert!(ping_ok(&n.http), "the broker died");
    assert_eq!(code / 100, 4, "{code} {body}");
    assert!(body.contains("BAD_"), "{code} {body}");
}

// ---------------------------------------------------------------------------------------------
// lookupd, protocol V1

fn lookup_identify(out: &mut Vec<u8>) {
    line(out, "IDENTIFY");
    sized(
        out,
        br#"{"version":"1.3.0","tcp_port":4150,"http_port":4151,"hostname":"h","broadcast_address":"h","topology_zone":"z","topology_region":"r"}"#,
    );
}

fn v1_sessions() -> Vec<Vec<u8>> {
    let mut full = b"  V1".to_vec();
    line(&mut full, "PING");
    lookup_identify(&mut full);
    for l in [
        "REGISTER fuzz",
        "REGISTER fuzz ch",
        "PING",
        "UNREGISTER fuzz ch",
        "UNREGISTER fuzz",
    ] {
        line(&mut full, l);
    }
    let mut unidentified = b"  V1".to_vec();
    line(&mut unidentified, "REGISTER fuzz ch");
    let mut twice = b"  V1".to_vec();
    lookup_identify(&mut twice);
    lookup_identify(&mut twice);
    vec![full, unidentified, twice]
}

#[test]
fn v1_sessions_cannot_stop_lookupd() {
    let l = Lookupd::start(&[]);
    runner("lookupd over the wire", 1000, false)
        .run(&hostile(v1_sessions(), 8, 300), |Input(bytes)| {
            exchange(&l.tcp, &bytes);
            prop_assert!(ping_ok(&l.http), "/ping failed after this session");
            prop_assert_eq!(panic_line(&l.log), None);
            Ok(())
        })
        .unwrap();
    // Still a registry: a peer that registers is found, and gone when it leaves.
    let mut peer = l.connect();
    peer.identify("fuzz-check", 4151);
    assert_eq!(peer.request("REGISTER fuzz_check ch"), "OK");
    let found = l.json("/lookup?topic=fuzz_check");
    assert_eq!(found["producers"].as_array().map(Vec::len), Some(1), "{found}");
    peer.close();
}

/// A line that never ends is cut off at `MAX_LINE_LEN` rather than buffered without bound.
#[test]
fn v1_line_without_end_closes_the_connection() {
    let l = Lookupd::start(&[]);
    let mut c = l.connect();
    let chunk = vec![b'A'; 64 * 1024];
    // The lookupd stops reading at 16 KiB; writes beyond what the socket buffers may fail.
    let _ = c.s.write_all(&chunk);
    c.s.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut byte = [0u8; 1];
    let closed = loop {
        match c.s.read(&mut byte) {
            Ok(0) => break true,
            Err(e)
                if e.kind() != std::io::ErrorKind::WouldBlock && e.kind() != std::io::ErrorKind::TimedOut =>
            {
                break true
            }
            _ if Instant::now() > deadline => break false,
            _ => {}
        }
    };
    assert!(closed, "lookupd kept buffering an endless line");
    assert!(ping_ok(&l.http));
}
