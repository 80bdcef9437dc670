//! Hostile input against the real binary (issue 10): every length and count a client sends
//! is bounded before anything is allocated, over-limit bodies get nsqd's errors at once, a
//! client that does not read cannot grow the broker, memory comes back after connection
//! storms, and heartbeats follow the interval IDENTIFY asks for. After each attack the broker
//! is alive and a message makes a round trip.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use nsqrs_testkit::{http_request, proc_status_kib, Conn, Frame, LookupConn, Lookupd, Nsqd};
use serde_json::json;

const MIB: u64 = 1024;

fn be(n: i32) -> Vec<u8> {
    n.to_be_bytes().to_vec()
}

fn error_json(message: &str) -> String {
    json!({ "message": message }).to_string()
}

/// Publishes one message over TCP and receives it on a fresh channel: the broker still works.
fn round_trip(n: &Nsqd) {
    let topic = format!("rt{}", rand_suffix());
    let mut sub = n.connect();
    sub.subscribe(&topic, "c", 1);
    let mut publisher = n.connect();
    publisher.cmd_body(&format!("PUB {topic}"), b"still here");
    publisher.expect_ok();
    match sub.read_frame() {
        Some(Frame::Message { body, .. }) => assert_eq!(body, b"still here"),
        other => panic!("round trip failed: {other:?}"),
    }
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        % 1_000_000_007
}

/// Sends `request` as raw bytes and reads the answer for at most `wait`: the status line's
/// code, the body, and how long the answer took. Tolerates the server closing the connection
/// before it has read everything sent (it may refuse a body it will not read).
fn raw_http(addr: &str, request: &[u8], wait: Duration) -> (u16, String, Duration) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(wait)).unwrap();
    s.set_write_timeout(Some(wait)).unwrap();
    let started = Instant::now();
    let _ = s.write_all(request);
    let mut resp = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => resp.extend_from_slice(&chunk[..n]),
        }
        // The answers tested here are complete once their JSON body has closed.
        if resp.ends_with(b"}") {
            break;
        }
    }
    let elapsed = started.elapsed();
    let text = String::from_utf8_lossy(&resp).to_string();
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (code, body, elapsed)
}

fn chunked(method: &str, path: &str, body: &[u8]) -> Vec<u8> {
    let mut out =
        format!("{method} {path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n").into_bytes();
    for piece in body.chunks(64 * 1024) {
        out.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        out.extend_from_slice(piece);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

#[test]
fn a_four_byte_binary_mpub_with_a_huge_count_is_refused() {
    let n = Nsqd::start(&[]);
    // (5 MiB - 4) / 5 messages fit in --max-body-size; one more, or a huge count, cannot.
    for count in [i32::MAX, 1_048_576, 0, -1] {
        let got = http_request(&n.http, "POST", "/mpub?topic=t&binary=true", &be(count)).unwrap();
        assert_eq!(
            (got.0, String::from_utf8_lossy(&got.1).to_string()),
            (413, error_json("BAD_BODY")),
            "count {count}"
        );
    }
    round_trip(&n);
}

#[test]
fn a_huge_content_length_is_answered_at_once() {
    let n = Nsqd::start(&[]);
    for (method, path, message) in [
        ("POST", "/pub?topic=t", "MSG_TOO_BIG"),
        ("POST", "/mpub?topic=t", "BODY_TOO_BIG"),
        ("POST", "/mpub?topic=t&binary=true", "BODY_TOO_BIG"),
        ("PUT", "/config/log_level", "INVALID_VALUE"),
    ] {
        let request =
            format!("{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 999999999999\r\n\r\nabc");
        let (code, body, took) = raw_http(&n.http, request.as_bytes(), Duration::from_secs(10));
        assert_eq!((code, body), (413, error_json(message)), "{method} {path}");
        assert!(took < Duration::from_secs(5), "{method} {path} took {took:?}");
    }
    round_trip(&n);
}

#[test]
fn over_limit_bodies_get_nsqds_errors() {
    let n = Nsqd::start(&["--max-msg-size=100", "--max-body-size=1000"]);
    let line = [vec![b'x'; 99], b"\n".to_vec()].concat();
    let cases: Vec<(Vec<u8>, u16, &str)> = vec![
        // Without a Content-Length the limit is found while reading.
        (chunked("POST", "/pub?topic=t", &[b'x'; 101]), 413, "MSG_TOO_BIG"),
        (
            chunked("POST", "/mpub?topic=t", &line.repeat(11)),
            413,
            "BODY_TOO_BIG",
        ),
        (
            chunked(
                "POST",
                "/mpub?topic=t",
                &[b"ok\n".as_slice(), &[b'y'; 101]].concat(),
            ),
            413,
            "MSG_TOO_BIG",
        ),
        // Binary: the count is checked against what the body size allows ((1000 - 4) / 5).
        (
            chunked("POST", "/mpub?topic=t&binary=true", &be(200)),
            413,
            "BAD_BODY",
        ),
        (
            chunked(
                "POST",
                "/mpub?topic=t&binary=true",
                &[be(2), be(1), b"a".to_vec()].concat(),
            ),
            413,
            "BAD_MESSAGE",
        ),
        (
            chunked("POST", "/mpub?topic=t&binary=true", &[be(1), be(101)].concat()),
            413,
            "BAD_MESSAGE",
        ),
        (
            chunked("PUT", "/config/log_level", &[b'x'; 101]),
            413,
            "INVALID_VALUE",
        ),
    ];
    for (request, code, message) in cases {
        let (got, body, _) = raw_http(&n.http, &request, Duration::from_secs(10));
        assert_eq!(
            (got, body),
            (code, error_json(message)),
            "{}",
            String::from_utf8_lossy(&request[..40])
        );
    }
    // Within the limits everything is published.
    let (code, _) = http_request(&n.http, "POST", "/mpub?topic=t", &line.repeat(10)).unwrap();
    assert_eq!(code, 200);
    round_trip(&n);
}

/// IDENTIFY announcing 2 GiB, then the client keeps sending: the error comes at once.
fn identify_with_huge_size(addr: &str) {
    let mut c = LookupConn::connect(addr);
    c.send(&[b"IDENTIFY\n".as_slice(), &be(i32::MAX)].concat());
    c.s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    // Keep sending in the background as an attacker would; the reply must not wait for it.
    let mut writer = c.s.try_clone().unwrap();
    let feeder = std::thread::spawn(move || {
        let junk = vec![b' '; 1 << 20];
        for _ in 0..32 {
            if writer.write_all(&junk).is_err() {
                break;
            }
        }
    });
    assert_eq!(
        c.read_reply().as_deref(),
        Some(&b"E_BAD_BODY IDENTIFY body too big 2147483647 > 1048576"[..])
    );
    assert!(c.is_closed());
    feeder.join().unwrap();
    // The lookupd still serves.
    let mut ok = LookupConn::connect(addr);
    assert!(ok.identify("127.0.0.1", 4151).is_object());
    assert_eq!(ok.request("REGISTER t"), "OK");
}

#[test]
fn lookupd_refuses_a_huge_identify_at_once() {
    let l = Lookupd::start(&[]);
    let before = proc_status_kib(l.pid(), "VmRSS");
    identify_with_huge_size(&l.tcp);
    let grown = proc_status_kib(l.pid(), "VmRSS").saturating_sub(before);
    assert!(grown < 16 * MIB, "lookupd grew by {grown} KiB");
    // The same from the lookupd embedded in `serve`.
    let n = Nsqd::start(&[
        "--embedded-lookupd=true",
        "--embedded-lookupd-tcp-address=127.0.0.1:0",
        "--embedded-lookupd-http-address=127.0.0.1:0",
    ]);
    let deadline = Instant::now() + Duration::from_secs(10);
    let lookupd_tcp = loop {
        let found = n.log.lock().unwrap().iter().find_map(|l| {
            l.contains("[nsqlookupd]")
                .then(|| l.split("TCP: listening on ").nth(1).map(|a| a.trim().to_string()))
                .flatten()
        });
        if let Some(addr) = found {
            break addr;
        }
        assert!(Instant::now() < deadline, "embedded lookupd never listened");
        std::thread::sleep(Duration::from_millis(20));
    };
    identify_with_huge_size(&lookupd_tcp);
    round_trip(&n);
}

/// `NSQRS_FLOOD_MIB` sets how much it tries to send (BENCHMARKS.md).
#[test]
fn a_client_that_streams_bad_fins_and_never_reads_cannot_grow_the_broker() {
    let n = Nsqd::start(&[]);
    let pid = n.pid();
    let mut c = n.connect();
    c.subscribe("flood", "ch", 1);
    let before = proc_status_kib(pid, "VmRSS");
    // Each bad FIN earns a ~60-byte error frame the client never reads. nsqd stops reading a
    // client whose writes block; so must we, and the sender's writes then block too.
    c.s.set_write_timeout(Some(Duration::from_secs(3))).unwrap();
    let fins = b"FIN 0000000000000000\n".repeat(50_000);
    let limit = env_or("NSQRS_FLOOD_MIB", 32) as u64 * MIB * 1024;
    let mut sent = 0u64;
    while sent < limit {
        if c.s.write_all(&fins).is_err() {
            break;
        }
        sent += fins.len() as u64;
    }
    let grown = proc_status_kib(pid, "VmRSS").saturating_sub(before);
    eprintln!("sent {} KiB of bad FINs, broker grew by {grown} KiB", sent >> 10);
    assert!(
        grown < 16 * MIB,
        "broker grew by {grown} KiB after {} MiB of bad FINs",
        sent >> 20
    );
    drop(c);
    round_trip(&n);
}

#[test]
fn a_consumer_that_never_reads_large_messages_cannot_grow_the_broker() {
    let n = Nsqd::start(&[]);
    let pid = n.pid();
    // 40 messages of 900 KB on disk: 36 MB a consumer with RDY 40 may have in flight.
    let mut publisher = n.connect();
    for _ in 0..8 {
        publisher.mpub("big", &vec![vec![b'b'; 900_000]; 5]);
        publisher.expect_ok();
    }
    let before = proc_status_kib(pid, "VmRSS");
    let mut c = n.connect();
    c.subscribe("big", "c", 40);
    // Never read. The broker writes what the socket takes and keeps about a batch in hand.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut in_flight = 0;
    while Instant::now() < deadline {
        in_flight = n.stats()["topics"][0]["channels"][0]["in_flight_count"]
            .as_u64()
            .unwrap_or(0);
        if in_flight > 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(in_flight > 0, "nothing was delivered");
    std::thread::sleep(Duration::from_millis(500));
    let grown = proc_status_kib(pid, "VmRSS").saturating_sub(before);
    eprintln!("{in_flight} in flight to a client that does not read, broker grew by {grown} KiB");
    assert!(grown < 16 * MIB, "broker grew by {grown} KiB");
    drop(c);
    round_trip(&n);
}

#[test]
fn an_mpub_that_lies_about_its_size_fails_at_the_first_byte_past_it() {
    let n = Nsqd::start(&[]);
    let mut c = n.connect();
    // Declares 100 bytes, then announces a 1 MB message: refused before the message is sent.
    c.send(&[b"MPUB t\n".as_slice(), &be(100), &be(1), &be(1_000_000)].concat());
    c.s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert_eq!(
        c.read_frame(),
        Some(Frame::Error(
            "E_BAD_BODY MPUB messages exceed the body size 100".into()
        ))
    );
    assert!(c.is_closed());
    // An honest MPUB still works.
    let mut honest = n.connect();
    honest.mpub("t", &[b"a".to_vec(), b"bc".to_vec()]);
    honest.expect_ok();
    round_trip(&n);
}

/// Reads one raw frame (heartbeats included): (type, data), or None on EOF or timeout.
fn raw_frame(s: &mut TcpStream) -> Option<(i32, Vec<u8>)> {
    let mut hdr = [0u8; 8];
    s.read_exact(&mut hdr).ok()?;
    let size = u32::from_be_bytes(hdr[0..4].try_into().unwrap()) as usize;
    let kind = i32::from_be_bytes(hdr[4..8].try_into().unwrap());
    let mut data = vec![0u8; size - 4];
    s.read_exact(&mut data).ok()?;
    Some((kind, data))
}

#[test]
fn an_idle_client_gets_heartbeats_at_the_interval_it_identified_with() {
    let n = Nsqd::start(&[]);
    let mut c = Conn::connect(&n.tcp);
    // Let the connection's writer start with the 30 s default before IDENTIFY arrives.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        c.identify(json!({"heartbeat_interval": 1000})),
        Frame::Response(b"OK".to_vec())
    );
    c.s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    // The broker drops a client silent for two intervals, so heartbeats must come sooner,
    // and answering them keeps the connection open well past that.
    let started = Instant::now();
    for _ in 0..3 {
        let since = Instant::now();
        let frame = raw_frame(&mut c.s);
        assert_eq!(
            frame,
            Some((0, b"_heartbeat_".to_vec())),
            "after {:?}",
            started.elapsed()
        );
        assert!(
            since.elapsed() < Duration::from_millis(1900),
            "{:?}",
            since.elapsed()
        );
        c.cmd("NOP");
    }
    assert!(started.elapsed() >= Duration::from_millis(2500));
    round_trip(&n);
}

/// Opens `count` connections at once (half publish, half subscribe with RDY 0), waits for each
/// to be answered, then closes them all.
fn storm(n: &Nsqd, count: usize) {
    let identify = json!({"heartbeat_interval": 5000}).to_string();
    let mut conns = Vec::with_capacity(count);
    for i in 0..count {
        let mut c = Conn::connect(&n.tcp);
        c.cmd_body("IDENTIFY", identify.as_bytes());
        if i % 2 == 0 {
            c.cmd_body("PUB storm", &[b's'; 200]);
        } else {
            c.cmd(&format!("SUB storm ch{}", i % 4));
        }
        conns.push(c);
    }
    for c in &mut conns {
        assert_eq!(c.read_frame(), Some(Frame::Response(b"OK".to_vec())));
        assert_eq!(c.read_frame(), Some(Frame::Response(b"OK".to_vec())));
    }
    for c in conns {
        c.close();
    }
}

/// Anonymous memory (heap and stacks; not the binary's own pages) once it stops falling, or
/// after `limit`.
fn settled_anon_kib(pid: u32, limit: Duration, target: u64) -> u64 {
    let deadline = Instant::now() + limit;
    loop {
        let anon = proc_status_kib(pid, "RssAnon");
        if anon <= target || Instant::now() > deadline {
            return anon;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A number from the environment, for the longer runs BENCHMARKS.md records.
fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `NSQRS_STORM_CONNECTIONS` and `NSQRS_STORM_ROUNDS` scale it up (BENCHMARKS.md).
#[test]
fn memory_comes_back_after_connection_storms() {
    let connections = env_or("NSQRS_STORM_CONNECTIONS", 500);
    let rounds = env_or("NSQRS_STORM_ROUNDS", 3);
    let n = Nsqd::start(&[]);
    let pid = n.pid();
    round_trip(&n);
    let start = proc_status_kib(pid, "RssAnon");
    let start_rss = proc_status_kib(pid, "VmRSS");
    // Room for what stays (the runtime's connection slab, 750 published messages' state):
    // with memory given back a round ends under 1 MiB above the start, without it near 7.
    let bound = start + 3 * MIB;
    let mut peak = 0;
    for round in 0..rounds {
        storm(&n, connections);
        peak = peak.max(proc_status_kib(pid, "RssAnon"));
        let after = settled_anon_kib(pid, Duration::from_secs(20), bound);
        eprintln!(
            "round {round}: anonymous RSS {start} KiB at start, peak {peak}, now {after}; \
             RSS {start_rss} KiB at start, now {}",
            proc_status_kib(pid, "VmRSS")
        );
        assert!(
            after <= bound,
            "round {round}: anonymous RSS {after} KiB, started at {start} KiB (peak {peak} KiB)"
        );
        round_trip(&n);
    }
}
