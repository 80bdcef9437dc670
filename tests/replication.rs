//! Replication (docs/replication.md): an acknowledged message is on K+1 machines; when its
//! broker is lost with its data directory, a peer adopts the copy and delivers every message
//! that was not finished, with its ID, attempts and due time. Also the degraded modes, a
//! returning peer catching up, a returning adopted broker, TLS, and hostile replication input.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use nsqrs_testkit::{Certs, Frame, Nsqd};

/// Polls `check` (the test kit's bounded poll) until it returns Some, at most `limit`.
fn wait_for<T>(limit: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let mut found = None;
    nsqrs_testkit::wait_for(what, limit, || {
        found = check();
        found.is_some()
    });
    found.expect("waited for")
}

fn replication(n: &Nsqd) -> serde_json::Value {
    let (code, body) = n.get("/replication");
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// The copy of `owner` (by TCP address) held by `holder`, once it exists.
fn copy_of(holder: &Nsqd, owner_tcp: &str) -> Option<serde_json::Value> {
    replication(holder)["copies"]
        .as_array()?
        .iter()
        .find(|c| c["name"].as_str().is_some_and(|n| n.ends_with(&port(owner_tcp))))
        .cloned()
}

fn port(addr: &str) -> String {
    format!(":{}", addr.rsplit(':').next().unwrap())
}

/// A peer's entry in `owner`'s replication status.
fn peer(owner: &Nsqd, addr: &str) -> serde_json::Value {
    replication(owner)["peers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["address"] == addr)
        .cloned()
        .unwrap()
}

fn connected(owner: &Nsqd, addr: &str) -> bool {
    peer(owner, addr)["connected"] == true
}

/// Reads from `topic`/`channel` until `want` distinct bodies arrived or `limit` passed;
/// returns body → (ID, attempts, arrival).
fn consume(
    n: &Nsqd,
    topic: &str,
    channel: &str,
    want: usize,
    limit: Duration,
) -> BTreeMap<Vec<u8>, (String, u16, Instant)> {
    let mut c = n.connect();
    c.subscribe(topic, channel, 2500);
    let mut seen = BTreeMap::new();
    let deadline = Instant::now() + limit;
    c.s.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    while seen.len() < want && Instant::now() < deadline {
        match c.read_frame() {
            Some(Frame::Message {
                id, body, attempts, ..
            }) => {
                c.cmd(&format!("FIN {id}"));
                seen.entry(body).or_insert((id, attempts, Instant::now()));
            }
            Some(other) => panic!("unexpected frame {other:?}"),
            None => {}
        }
    }
    seen
}

fn adopt(holder: &Nsqd, owner_tcp: &str) -> serde_json::Value {
    let (code, body) = holder.post(
        &format!("/replication/adopt?node=127.0.0.1{}", port(owner_tcp)),
        b"",
    );
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

fn flags(peers: &[&Nsqd], extra: &[&str]) -> Vec<String> {
    let mut f: Vec<String> = peers
        .iter()
        .map(|p| format!("--replicate-to={}", p.tcp))
        .collect();
    f.push("--broadcast-address=127.0.0.1".into());
    f.extend(extra.iter().map(|s| s.to_string()));
    f
}

fn start(peers: &[&Nsqd], extra: &[&str]) -> Nsqd {
    let f = flags(peers, extra);
    let refs: Vec<&str> = f.iter().map(String::as_str).collect();
    Nsqd::start(&refs)
}

#[test]
fn a_lost_broker_is_adopted_with_ids_attempts_and_due_times() {
    let b = start(&[], &[]);
    let a = start(&[&b], &["--msg-timeout=60s"]);
    wait_for(Duration::from_secs(10), "A connected to B", || {
        connected(&a, &b.tcp).then_some(())
    });

    // Channel "work" exists before publishing; "audit" only on the copy's topic metadata later.
    let mut consumer = a.connect();
    consumer.subscribe("orders", "work", 0);
    let mut p = a.connect();
    p.identify(serde_json::json!({"message_id_reply": true}));
    let bodies: Vec<Vec<u8>> = (0..500).map(|i| format!("order-{i:04}").into_bytes()).collect();
    p.mpub("orders", &bodies);
    let ids: Vec<String> = match p.read_frame() {
        Some(Frame::Response(r)) => String::from_utf8(r)
            .unwrap()
            .split(' ')
            .skip(1)
            .map(String::from)
            .collect(),
        other => panic!("MPUB answered {other:?}"),
    };
    assert_eq!(ids.len(), bodies.len());
    let id_of: BTreeMap<Vec<u8>, String> = bodies.iter().cloned().zip(ids).collect();
    // One deferred message, due 3 s from now.
    p.cmd_body("DPUB orders 3000", b"deferred-one");
    assert!(matches!(p.read_frame(), Some(Frame::Response(r)) if r.starts_with(b"OK ")));
    let deferred_sent = Instant::now();
    // Finish the first 100 and requeue one (attempts 1, goes back ready).
    consumer.cmd("RDY 101");
    let mut finished = BTreeSet::new();
    let mut requeued = None;
    while finished.len() < 100 || requeued.is_none() {
        match consumer.read_frame() {
            Some(Frame::Message { id, body, .. }) => {
                if finished.len() < 100 {
                    consumer.cmd(&format!("FIN {id}"));
                    finished.insert(body);
                } else {
                    consumer.cmd(&format!("REQ {id} 0"));
                    requeued = Some(body);
                }
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    let requeued = requeued.unwrap();
    consumer.cmd("RDY 0");
    // Channel state ships within the checkpoint interval; wait until B confirmed it.
    wait_for(Duration::from_secs(10), "state shipped to B", || {
        let p = peer(&a, &b.tcp);
        (p["state_lag_channels"] == 0 && p["log_lag_bytes"] == 0).then_some(())
    });
    std::thread::sleep(Duration::from_millis(500));
    wait_for(Duration::from_secs(10), "state shipped to B", || {
        (peer(&a, &b.tcp)["state_lag_channels"] == 0).then_some(())
    });
    let copy = copy_of(&b, &a.tcp).expect("B holds a copy of A");
    assert!(copy["bytes"].as_u64().unwrap() > 500 * 10, "{copy}");

    // A's machine is lost: kill -9 and its data directory deleted.
    let a_tcp = a.tcp.clone();
    let tmp = a.kill9();
    drop(tmp);
    let report = adopt(&b, &a_tcp);
    assert!(
        report["adopted"][0]["messages"].as_u64().unwrap() >= 400,
        "{report}"
    );

    // Every message not finished on A arrives from B, with its original ID.
    let got = consume(&b, "orders", "work", 401, Duration::from_secs(20));
    for body in &bodies {
        if !finished.contains(body) {
            let (id, _, _) = got
                .get(body)
                .unwrap_or_else(|| panic!("lost {}", String::from_utf8_lossy(body)));
            assert_eq!(id, &id_of[body], "the adopted message keeps its ID");
        }
    }
    let redelivered_finished = finished.iter().filter(|b| got.contains_key(*b)).count();
    assert_eq!(
        redelivered_finished, 0,
        "finished messages came back though the state was shipped"
    );
    assert_eq!(got[&requeued].1, 2, "the requeued message keeps its attempt");
    // The deferred one arrives at its due time, not at once.
    let (_, _, at) = got.get(&b"deferred-one"[..]).expect("deferred message delivered");
    assert!(
        at.duration_since(deferred_sent) >= Duration::from_millis(2800),
        "deferred message came {:?} after DPUB",
        at.duration_since(deferred_sent)
    );
    // B says it adopted the copy.
    let copy = copy_of(&b, &a_tcp).unwrap();
    assert_eq!(copy["adopted"], true);
}

/// A loopback address nothing listens on right now, for a broker that must come back on the
/// same port.
fn free_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

/// Starts a broker on a fixed TCP address and data directory.
fn start_at(addr: &str, data: &std::path::Path, peers: &[&Nsqd], extra: &[&str]) -> Nsqd {
    let mut f = flags(peers, extra);
    f.push(format!("--tcp-address={addr}"));
    let refs: Vec<&str> = f.iter().map(String::as_str).collect();
    Nsqd::start_in(data, &refs)
}

/// One sample of `/metrics`, parsed with Prometheus' text-format parser.
fn metric(n: &Nsqd, name: &str, labels: &[(&str, &str)]) -> f64 {
    let (code, text) = n.get("/metrics");
    assert_eq!(code, 200);
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .expect("valid Prometheus text");
    let sample = scrape
        .samples
        .iter()
        .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .unwrap_or_else(|| panic!("no {name}{labels:?} in\n{text}"));
    match sample.value {
        prometheus_parse::Value::Gauge(v) | prometheus_parse::Value::Untyped(v) => v,
        ref other => panic!("{name}: {other:?}"),
    }
}

/// Publishes `body` with PUB on a fresh connection: Ok, or the error frame's text.
fn pub_once(n: &Nsqd, topic: &str, body: &[u8]) -> Result<(), String> {
    let mut c = n.connect();
    c.cmd_body(&format!("PUB {topic}"), body);
    match c.read_frame() {
        Some(Frame::Response(r)) if r == b"OK" => Ok(()),
        Some(Frame::Error(e)) => Err(e),
        other => Err(format!("{other:?}")),
    }
}

fn lag_is_zero(owner: &Nsqd, peer_addr: &str) -> Option<()> {
    let p = peer(owner, peer_addr);
    (p["connected"] == true
        && p["log_lag_bytes"] == 0
        && p["state_lag_channels"] == 0
        && p["state_lag_ms"] == 0)
        .then_some(())
}

#[test]
fn strict_refuses_while_the_peer_is_away_and_the_peer_catches_up() {
    let b_addr = free_addr();
    let b_dir = tempfile::tempdir().unwrap();
    let b = start_at(&b_addr, b_dir.path(), &[], &[]);
    let a = start(&[&b], &["--replica-timeout=1s"]);
    wait_for(Duration::from_secs(10), "A connected to B", || {
        connected(&a, &b.tcp).then_some(())
    });
    let mut acked = Vec::new();
    for i in 0..50 {
        let body = format!("before-{i}").into_bytes();
        pub_once(&a, "t", &body).unwrap();
        acked.push(body);
    }
    // The peer stops: publishes are refused with nsqd's error, over TCP and HTTP.
    let _ = b.terminate();
    wait_for(Duration::from_secs(10), "A notices B is gone", || {
        (!connected(&a, &b_addr)).then_some(())
    });
    let err = pub_once(&a, "t", b"refused-1").unwrap_err();
    assert!(err.starts_with("E_PUB_FAILED"), "{err}");
    let (code, body) = a.post("/pub?topic=t", b"refused-2");
    assert_eq!((code, body.as_str()), (503, r#"{"message":"PUB_FAILED"}"#));
    let (code, body) = a.post("/mpub?topic=t", b"refused-3\nrefused-4");
    assert_eq!((code, body.as_str()), (503, r#"{"message":"MPUB_FAILED"}"#));
    let mut c = a.connect();
    c.cmd_body("DPUB t 1000", b"refused-5");
    assert!(matches!(c.read_frame(), Some(Frame::Error(e)) if e.starts_with("E_DPUB_FAILED")));
    let (code, body) = a.get("/ping");
    assert_eq!(code, 503);
    assert!(body.starts_with("NOK - replication degraded"), "{body}");
    assert_eq!(replication(&a)["degraded"], true);
    assert_eq!(metric(&a, "nsqrs_replication_degraded", &[]), 1.0);
    assert_eq!(
        metric(&a, "nsqrs_replication_peer_connected", &[("peer", &b_addr)]),
        0.0
    );

    // The peer returns and catches up from the log; publishes are accepted again.
    let b = start_at(&b_addr, b_dir.path(), &[], &[]);
    wait_for(Duration::from_secs(15), "B caught up", || lag_is_zero(&a, &b.tcp));
    assert_eq!(a.get("/ping"), (200, "OK".to_string()));
    assert_eq!(metric(&a, "nsqrs_replication_degraded", &[]), 0.0);
    assert_eq!(
        metric(&a, "nsqrs_replication_log_lag_bytes", &[("peer", &b_addr)]),
        0.0
    );
    for i in 0..50 {
        let body = format!("after-{i}").into_bytes();
        pub_once(&a, "t", &body).unwrap();
        acked.push(body);
    }
    wait_for(Duration::from_secs(15), "B caught up", || lag_is_zero(&a, &b.tcp));

    // Lose A: every acknowledged message is on B. What was refused was written on A and
    // replicated once B returned, so it comes too (at least once, never lost).
    let a_tcp = a.tcp.clone();
    drop(a.kill9());
    // Adopted with the command-line tool this time.
    let out = nsqrs_testkit::run_tool(
        &["adopt", "--node", &a_tcp, "--nsqd-http-address", &b.http],
        b"",
        Duration::from_secs(30),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.starts_with("adopted 127.0.0.1:"), "{text}");
    let again = nsqrs_testkit::run_tool(
        &["adopt", "--node", &a_tcp, "--nsqd-http-address", &b.http],
        b"",
        Duration::from_secs(30),
    );
    assert_eq!(again.status.code(), Some(1), "a second adoption finds no copy");
    let got = consume(&b, "t", "c", acked.len() + 5, Duration::from_secs(10));
    for body in &acked {
        assert!(got.contains_key(body), "lost {}", String::from_utf8_lossy(body));
    }
}

#[test]
fn best_effort_accepts_while_the_peer_is_away_and_streams_the_backlog_on_return() {
    let b_addr = free_addr();
    let b_dir = tempfile::tempdir().unwrap();
    let b = start_at(&b_addr, b_dir.path(), &[], &[]);
    let a = start(&[&b], &["--replica-policy=best-effort", "--replica-timeout=1s"]);
    wait_for(Duration::from_secs(10), "A connected to B", || {
        connected(&a, &b.tcp).then_some(())
    });
    // A channel that finishes some messages, so state ships too.
    let _ = b.terminate();
    wait_for(Duration::from_secs(10), "A notices B is gone", || {
        (!connected(&a, &b_addr)).then_some(())
    });
    let mut p = a.connect();
    let bodies: Vec<Vec<u8>> = (0..2000).map(|i| format!("away-{i}").into_bytes()).collect();
    for chunk in bodies.chunks(200) {
        p.mpub("t", chunk);
        p.expect_ok();
    }
    let (code, body) = a.get("/ping");
    assert_eq!(code, 200);
    assert!(body.starts_with("OK - replication degraded"), "{body}");
    assert_eq!(replication(&a)["degraded"], true);
    assert!(peer(&a, &b_addr)["log_lag_bytes"].as_u64().unwrap() > 0);
    let (code, _) = a.post("/pub?topic=t", b"away-http");
    assert_eq!(code, 200);

    // `nsqrs stat --replication` shows the lag: B away, bytes behind.
    let stat = |n: &Nsqd| {
        let out = nsqrs_testkit::run_tool(
            &[
                "stat",
                "--replication",
                "--nsqd-http-address",
                &n.http,
                "--count",
                "1",
                "--interval",
                "100ms",
                "--format",
                "csv",
            ],
            b"",
            Duration::from_secs(20),
        );
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .nth(1)
            .unwrap_or_default()
            .to_string()
    };
    let row = stat(&a);
    let fields: Vec<&str> = row.split(',').collect();
    assert_eq!(fields[2..4], [b_addr.as_str(), "false"], "{row}");
    assert!(fields[4].parse::<u64>().unwrap() > 0, "{row}");

    let b = start_at(&b_addr, b_dir.path(), &[], &[]);
    wait_for(Duration::from_secs(15), "B caught up", || lag_is_zero(&a, &b.tcp));
    assert_eq!(replication(&a)["degraded"], false);
    let row = stat(&a);
    assert!(row.ends_with(&format!("{b_addr},true,0,0,0")), "{row}");
    let a_tcp = a.tcp.clone();
    drop(a.kill9());
    adopt(&b, &a_tcp);
    let got = consume(&b, "t", "c", bodies.len() + 1, Duration::from_secs(15));
    assert_eq!(
        got.len(),
        bodies.len() + 1,
        "the backlog published while B was away reached it"
    );
}

#[test]
fn a_broker_that_returns_after_being_adopted_does_not_redeliver_what_was_adopted() {
    let b = start(&[], &[]);
    let a_dir = tempfile::tempdir().unwrap();
    let a = start_at(&free_addr(), a_dir.path(), &[&b], &[]);
    wait_for(Duration::from_secs(10), "A connected to B", || {
        connected(&a, &b.tcp).then_some(())
    });
    let mut c = a.connect();
    c.subscribe("t", "c", 0);
    let mut p = a.connect();
    let bodies: Vec<Vec<u8>> = (0..300).map(|i| format!("m{i}").into_bytes()).collect();
    p.mpub("t", &bodies);
    p.expect_ok();
    wait_for(Duration::from_secs(10), "B caught up", || lag_is_zero(&a, &b.tcp));
    let epoch_before = replication(&a)["epoch"].as_u64().unwrap();
    let a_tcp = a.tcp.clone();
    let _ = a.kill9(); // the data directory survives this time

    adopt(&b, &a_tcp);
    let got = consume(&b, "t", "c", bodies.len(), Duration::from_secs(10));
    assert_eq!(got.len(), bodies.len());

    // A comes back with its data: it asks B before serving, learns it was adopted, and skips
    // everything B took; it starts a new epoch, and B starts a fresh copy of it.
    let a = start_at(&free_addr(), a_dir.path(), &[&b], &[]);
    assert!(
        a.log.lock().unwrap().iter().any(|l| l.contains("was adopted by")),
        "A logs that it was adopted"
    );
    assert_eq!(replication(&a)["epoch"].as_u64().unwrap(), epoch_before + 1);
    let again = consume(&a, "t", "c", 1, Duration::from_secs(2));
    assert!(again.is_empty(), "A redelivered {} adopted messages", again.len());
    // New messages flow from A as usual, and are replicated into B's fresh copy.
    pub_once(&a, "t", b"new").unwrap();
    let fresh = consume(&a, "t", "c", 1, Duration::from_secs(5));
    assert!(fresh.contains_key(&b"new"[..]));
    wait_for(Duration::from_secs(10), "B holds a fresh copy", || {
        copy_of(&b, &a.tcp).filter(|c| c["adopted"] == false && c["epoch"] == epoch_before + 1)
    });
}

#[test]
fn replication_runs_over_tls_and_a_tls_required_peer_refuses_plain_replication() {
    let certs = Certs::new();
    let tls: Vec<String> = certs
        .server_flags()
        .into_iter()
        .chain([format!("--tls-root-ca-file={}", certs.ca.display())])
        .collect();
    let mut b_flags = tls.clone();
    b_flags.push("--tls-required=tcp-https".into());
    let b = start(&[], &b_flags.iter().map(String::as_str).collect::<Vec<_>>());
    let a = start(&[&b], &tls.iter().map(String::as_str).collect::<Vec<_>>());
    wait_for(Duration::from_secs(10), "A connected to B over TLS", || {
        connected(&a, &b.tcp).then_some(())
    });
    // A broker without a certificate is refused by B.
    let plain = start(&[&b], &[]);
    wait_for(Duration::from_secs(10), "plain replication refused", || {
        let p = peer(&plain, &b.tcp);
        p["last_error"]
            .as_str()
            .filter(|e| e.contains("E_TLS_REQUIRED"))
            .map(|_| ())
    });
    assert!(!connected(&plain, &b.tcp));

    let mut p = a.connect();
    let bodies: Vec<Vec<u8>> = (0..100).map(|i| format!("tls-{i}").into_bytes()).collect();
    p.mpub("t", &bodies);
    p.expect_ok();
    let a_tcp = a.tcp.clone();
    drop(a.kill9());
    // B requires TLS of clients too: read it with a TLS client (nsqrs tail).
    adopt(&b, &a_tcp);
    let out = nsqrs_testkit::run_tool(
        &[
            "tail",
            "--topic",
            "t",
            "--nsqd-tcp-address",
            &b.tcp,
            "-n",
            "100",
            "--consumer-opt",
            "tls_v1,true",
            "--consumer-opt",
            &format!("tls_root_ca_file,{}", certs.ca.display()),
        ],
        b"",
        Duration::from_secs(30),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    for b in &bodies {
        assert!(
            text.contains(std::str::from_utf8(b).unwrap()),
            "missing {:?}",
            String::from_utf8_lossy(b)
        );
    }
}

#[test]
fn automatic_adoption_by_exactly_one_of_two_holders() {
    let b = start(&[], &["--adopt-after=1s"]);
    let c = start(&[], &["--adopt-after=1s"]);
    let a = start(&[&b, &c], &["--replicas=1"]);
    wait_for(Duration::from_secs(10), "A connected to B and C", || {
        (connected(&a, &b.tcp) && connected(&a, &c.tcp)).then_some(())
    });
    let mut p = a.connect();
    let bodies: Vec<Vec<u8>> = (0..400).map(|i| format!("auto-{i}").into_bytes()).collect();
    for chunk in bodies.chunks(100) {
        p.mpub("t", chunk);
        p.expect_ok();
    }
    let a_tcp = a.tcp.clone();
    drop(a.kill9());
    let killed = Instant::now();
    // One holder adopts; the other learns it and keeps no second copy to deliver.
    let adopter = wait_for(Duration::from_secs(20), "an adoption", || {
        let b_adopted = copy_of(&b, &a_tcp).is_some_and(|x| x["adopted"] == true);
        let c_adopted = copy_of(&c, &a_tcp).is_some_and(|x| x["adopted"] == true);
        (b_adopted && c_adopted).then_some(())?;
        let b_by = copy_of(&b, &a_tcp).unwrap()["adopted_by"].clone();
        let c_by = copy_of(&c, &a_tcp).unwrap()["adopted_by"].clone();
        assert_eq!(b_by, c_by, "both holders name the same adopter");
        Some(b_by)
    });
    eprintln!("adopted {:?} after kill -9", killed.elapsed());
    let b_node = replication(&b)["node_id"].clone();
    let (winner, loser) = if adopter == b_node { (&b, &c) } else { (&c, &b) };
    let got = consume(winner, "t", "c", bodies.len(), Duration::from_secs(15));
    assert_eq!(got.len(), bodies.len());
    let dup = consume(loser, "t", "c", 1, Duration::from_secs(1));
    assert!(dup.is_empty(), "the other holder delivered too");
}

/// A raw replication connection to `n`, speaking the wire format by hand.
struct RawPeer {
    s: std::net::TcpStream,
    buf: bytes::BytesMut,
}

impl RawPeer {
    fn connect(n: &Nsqd, magic: &[u8; 4]) -> RawPeer {
        use std::io::Write;
        let mut s = std::net::TcpStream::connect(&n.tcp).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(magic).unwrap();
        RawPeer {
            s,
            buf: bytes::BytesMut::new(),
        }
    }

    fn send_raw(&mut self, data: &[u8]) {
        use std::io::Write;
        let _ = self.s.write_all(data);
    }

    fn send(&mut self, frame: &wire::Frame) {
        let mut out = Vec::new();
        wire::encode(frame, &mut out);
        self.send_raw(&out);
    }

    /// The next frame, or None once the broker closed the connection.
    fn next(&mut self) -> Option<wire::Frame> {
        use std::io::Read;
        loop {
            if let Some(f) = wire::decode(&mut self.buf, wire::BASE_FRAME_LIMIT).unwrap() {
                return Some(f);
            }
            let mut chunk = [0u8; 4096];
            match self.s.read(&mut chunk) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    fn expect_error(&mut self, contains: &str) {
        match self.next() {
            Some(wire::Frame::Error(e)) => assert!(e.contains(contains), "error {e:?} lacks {contains:?}"),
            other => panic!("expected an error containing {contains:?}, got {other:?}"),
        }
        assert!(self.next().is_none(), "connection left open after the error");
    }
}

use nsqrs::replication::wire;

/// One log record as the engine stores it.
fn record(seq: u64, body: &[u8]) -> Vec<u8> {
    let mut payload = Vec::new();
    payload.extend_from_slice(&1i64.to_be_bytes());
    payload.extend_from_slice(&(1000 + seq).to_be_bytes());
    payload.extend_from_slice(&seq.to_be_bytes());
    payload.extend_from_slice(&0u16.to_be_bytes());
    payload.extend_from_slice(&0i64.to_be_bytes());
    payload.extend_from_slice(body);
    let mut out = (payload.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(&crc32fast::hash(&payload).to_be_bytes());
    out.extend_from_slice(&payload);
    out
}

fn hello(node: &str) -> wire::Frame {
    wire::Frame::Hello(wire::Hello {
        node: node.into(),
        name: "raw:1".into(),
        tcp_address: "127.0.0.1:1".into(),
        epoch: 1,
        peers: vec![],
        replicas: 1,
        max_msg_size: 1 << 20,
    })
}

#[test]
fn hostile_replication_input_gets_one_error_and_damages_nothing() {
    let b = start(&[], &[]);
    let owner = "0123456789abcdef0123456789abcdef";

    // An absurd frame length: refused before anything is buffered.
    let mut raw = RawPeer::connect(&b, b"  R1");
    raw.send_raw(&[0xff, 0xff, 0xff, 0xff, 1]);
    raw.expect_error("bad frame");
    // A node id that would name a directory outside the data path.
    let mut raw = RawPeer::connect(&b, b"  R1");
    let mut out = Vec::new();
    wire::encode(&hello(owner), &mut out);
    let text = String::from_utf8_lossy(&out[5..]).replace(owner, "../../../../tmp/x00000000000000000000000");
    let mut evil = ((text.len() + 1) as u32).to_be_bytes().to_vec();
    evil.push(1);
    evil.extend_from_slice(text.as_bytes());
    raw.send_raw(&evil);
    raw.expect_error("invalid node id");
    // TLS asked of a broker without a certificate.
    let mut raw = RawPeer::connect(&b, b"  RS");
    raw.expect_error("E_TLS_NOT_AVAILABLE");
    // A broker that replicates to itself.
    let own = replication(&b)["node_id"].as_str().unwrap().to_string();
    let mut raw = RawPeer::connect(&b, b"  R1");
    raw.send(&hello(&own));
    raw.expect_error("itself");

    // A valid owner: good records are kept, damaged ones are refused whole.
    let mut raw = RawPeer::connect(&b, b"  R1");
    raw.send(&hello(owner));
    assert!(matches!(raw.next(), Some(wire::Frame::Welcome(w)) if w.ends.is_empty()));
    let good: Vec<u8> = [record(0, b"one"), record(1, b"two")].concat();
    raw.send(&wire::Frame::Append {
        topic: "t".into(),
        pos: 0,
        records: good.clone().into(),
    });
    let end = match raw.next() {
        Some(wire::Frame::Ack { topic, end }) if topic == "t" => end,
        other => panic!("expected ACK, got {other:?}"),
    };
    assert_eq!((end.pos, end.seq), (good.len() as u64, 2));
    let mut damaged = record(2, b"three");
    let last = damaged.len() - 1;
    damaged[last] ^= 0x55;
    raw.send(&wire::Frame::Append {
        topic: "t".into(),
        pos: end.pos,
        records: damaged.into(),
    });
    raw.expect_error("damaged records");
    // Records that overlap what the copy has, or skip sequence numbers.
    let mut raw = RawPeer::connect(&b, b"  R1");
    raw.send(&hello(owner));
    let welcome = match raw.next() {
        Some(wire::Frame::Welcome(w)) => w,
        other => panic!("expected WELCOME, got {other:?}"),
    };
    assert_eq!(welcome.ends["t"], end, "the damaged append changed nothing");
    raw.send(&wire::Frame::Append {
        topic: "t".into(),
        pos: 0,
        records: record(0, b"again").into(),
    });
    raw.expect_error("overlaps");
    let mut raw = RawPeer::connect(&b, b"  R1");
    raw.send(&hello(owner));
    raw.next();
    raw.send(&wire::Frame::Append {
        topic: "t".into(),
        pos: end.pos,
        records: [record(5, b"x"), record(9, b"y")].concat().into(),
    });
    raw.expect_error("damaged records");
    // Through all of it the broker serves clients.
    assert_eq!(b.get("/ping"), (200, "OK".to_string()));
    pub_once(&b, "still", b"fine").unwrap();
    let copy = replication(&b)["copies"][0].clone();
    assert_eq!(copy["bytes"].as_u64().unwrap(), good.len() as u64, "{copy}");
}

#[test]
fn adoption_survives_a_kill_9_of_the_adopter() {
    let b_dir = tempfile::tempdir().unwrap();
    let b_addr = free_addr();
    let b = start_at(&b_addr, b_dir.path(), &[], &[]);
    let a = start(&[&b], &[]);
    let mut p = a.connect();
    let bodies: Vec<Vec<u8>> = (0..1000).map(|i| format!("k{i}").into_bytes()).collect();
    for chunk in bodies.chunks(250) {
        p.mpub("t", chunk);
        p.expect_ok();
    }
    let a_tcp = a.tcp.clone();
    drop(a.kill9());
    // Killed right after adopting: what it adopted is on disk.
    adopt(&b, &a_tcp);
    let _ = b.kill9();
    let b = start_at(&b_addr, b_dir.path(), &[], &[]);
    let got = consume(&b, "t", "c", bodies.len(), Duration::from_secs(10));
    assert_eq!(
        got.len(),
        bodies.len(),
        "adopted messages lost in a crash of the adopter"
    );
}

#[test]
fn an_interrupted_adoption_is_done_again_at_start() {
    let b_dir = tempfile::tempdir().unwrap();
    let b_addr = free_addr();
    let b = start_at(&b_addr, b_dir.path(), &[], &[]);
    let a = start(&[&b], &[]);
    let mut p = a.connect();
    let bodies: Vec<Vec<u8>> = (0..500).map(|i| format!("i{i}").into_bytes()).collect();
    p.mpub("t", &bodies);
    p.expect_ok();
    let owner = replication(&b)["copies"][0]["owner"]
        .as_str()
        .unwrap()
        .to_string();
    drop(a.kill9());
    let _ = b.kill9();
    // A kill -9 in the middle of an adoption leaves its marker behind (what was appended
    // before the kill may be delivered twice, nothing is lost).
    std::fs::write(
        b_dir
            .path()
            .join("nsqrs-data/copies")
            .join(&owner)
            .join("adopting"),
        b"",
    )
    .unwrap();
    let b = start_at(&b_addr, b_dir.path(), &[], &[]);
    let got = consume(&b, "t", "c", bodies.len(), Duration::from_secs(15));
    assert_eq!(got.len(), bodies.len());
    assert!(b
        .log
        .lock()
        .unwrap()
        .iter()
        .any(|l| l.contains("resuming the interrupted adoption")));
}

#[test]
fn symmetric_replication_each_broker_holds_the_other() {
    let (a_addr, b_addr) = (free_addr(), free_addr());
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut a_flags = flags(&[], &[]);
    a_flags.push(format!("--replicate-to={b_addr}"));
    let a = start_at(
        &a_addr,
        a_dir.path(),
        &[],
        &a_flags.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let mut b_flags = flags(&[], &[]);
    b_flags.push(format!("--replicate-to={a_addr}"));
    let b = start_at(
        &b_addr,
        b_dir.path(),
        &[],
        &b_flags.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    wait_for(Duration::from_secs(10), "both connected", || {
        (connected(&a, &b_addr) && connected(&b, &a_addr)).then_some(())
    });
    for i in 0..100 {
        pub_once(&a, "t", format!("from-a-{i}").as_bytes()).unwrap();
        pub_once(&b, "t", format!("from-b-{i}").as_bytes()).unwrap();
    }
    drop(a.kill9());
    adopt(&b, &a_addr);
    let got = consume(&b, "t", "c", 200, Duration::from_secs(10));
    assert_eq!(got.len(), 200, "B delivers its own messages and A's");
}

#[test]
fn a_go_nsqd_named_as_a_peer_is_unaffected_and_counts_as_unreachable() {
    let go = std::path::Path::new("/root/.cache/nsq-anchor/bin/nsqd");
    if !go.exists() {
        eprintln!("skipped: no Go nsqd at {}", go.display());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let args: Vec<String> = vec![
        "--tcp-address=127.0.0.1:0".into(),
        "--http-address=127.0.0.1:0".into(),
        format!("--data-path={}", dir.path().display()),
    ];
    let g = Nsqd::launch(go, &args, dir.path());
    let a = start(&[&g], &["--replica-policy=best-effort"]);
    wait_for(Duration::from_secs(10), "the Go peer refused", || {
        let p = peer(&a, &g.tcp);
        (p["connected"] == false && !p["last_error"].as_str().unwrap_or("").is_empty()).then_some(())
    });
    assert_eq!(replication(&a)["degraded"], true);
    pub_once(&a, "t", b"accepted").unwrap();
    // The Go broker goes on serving its own clients.
    pub_once(&g, "t", b"go").unwrap();
    let got = consume(&g, "t", "c", 1, Duration::from_secs(5));
    assert!(got.contains_key(&b"go"[..]));
}

#[test]
fn adoption_first_pulls_what_only_another_holder_has() {
    let b_addr = free_addr();
    let b_dir = tempfile::tempdir().unwrap();
    let b = start_at(&b_addr, b_dir.path(), &[], &[]);
    let c = start(&[], &[]);
    let a = start(&[&b, &c], &["--replicas=1"]);
    wait_for(Duration::from_secs(10), "A connected to B and C", || {
        (connected(&a, &b.tcp) && connected(&a, &c.tcp)).then_some(())
    });
    pub_once(&a, "t", b"both-have-it").unwrap();
    wait_for(Duration::from_secs(10), "B caught up", || lag_is_zero(&a, &b.tcp));
    // B is away while more is published: only C acknowledges it.
    let _ = b.terminate();
    let only_c: Vec<Vec<u8>> = (0..200).map(|i| format!("only-c-{i}").into_bytes()).collect();
    let mut p = a.connect();
    p.mpub("t", &only_c);
    p.expect_ok();
    let a_tcp = a.tcp.clone();
    drop(a.kill9());
    // B comes back after A is gone and adopts: it must fetch from C what it never received.
    let b = start_at(&b_addr, b_dir.path(), &[], &[]);
    let report = adopt(&b, &a_tcp);
    assert_eq!(report["adopted"][0]["pulled_from"][0], c.tcp, "{report}");
    let got = consume(&b, "t", "c", only_c.len() + 1, Duration::from_secs(10));
    assert_eq!(got.len(), only_c.len() + 1, "messages only C held were lost");
    // C learned of the adoption and will not deliver them a second time.
    wait_for(Duration::from_secs(5), "C knows", || {
        copy_of(&c, &a_tcp).filter(|x| x["adopted"] == true).map(|_| ())
    });
}

#[test]
fn adoption_over_http_needs_the_admin_token_when_one_is_set() {
    let b = start(&[], &["--http-admin-token=s3cret"]);
    let (code, _) = b.post("/replication/adopt?node=nobody", b"");
    assert_eq!(code, 401);
    let out = nsqrs_testkit::run_tool(
        &[
            "adopt",
            "--node",
            "nobody",
            "--nsqd-http-address",
            &b.http,
            "--http-admin-token",
            "s3cret",
        ],
        b"",
        Duration::from_secs(30),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("COPY_NOT_FOUND") || err.contains("no copy"), "{err}");
    // The status stays readable without the token, like /stats.
    assert_eq!(b.get("/replication").0, 200);
}

#[test]
fn a_broker_that_returns_with_an_empty_data_directory_is_a_new_node() {
    let b = start(&[], &[]);
    let a_addr = free_addr();
    let a_dir = tempfile::tempdir().unwrap();
    let a = start_at(&a_addr, a_dir.path(), &[&b], &[]);
    pub_once(&a, "t", b"old").unwrap();
    let old_node = replication(&a)["node_id"].clone();
    drop(a.kill9());
    std::fs::remove_dir_all(a_dir.path()).unwrap();
    std::fs::create_dir_all(a_dir.path()).unwrap();
    let a = start_at(&a_addr, a_dir.path(), &[&b], &[]);
    let new_node = replication(&a)["node_id"].clone();
    assert_ne!(old_node, new_node, "a fresh data directory is a fresh node");
    assert_eq!(replication(&a)["epoch"], 1);
    assert!(!a.log.lock().unwrap().iter().any(|l| l.contains("was adopted by")));
    pub_once(&a, "t", b"new").unwrap();
    let got = consume(&a, "t", "c", 2, Duration::from_secs(3));
    assert_eq!(got.keys().cloned().collect::<Vec<_>>(), vec![b"new".to_vec()]);
    // B still holds the old node's copy, adoptable by its node id, beside the new one.
    wait_for(Duration::from_secs(10), "two copies on B", || {
        let copies = replication(&b)["copies"].as_array().cloned().unwrap_or_default();
        (copies.len() == 2).then_some(())
    });
    let (code, body) = b.post(
        &format!("/replication/adopt?node={}", old_node.as_str().unwrap()),
        b"",
    );
    assert_eq!(code, 200, "{body}");
    let got = consume(&b, "t", "c", 1, Duration::from_secs(5));
    assert!(got.contains_key(&b"old"[..]));
}
