//! Operations features against the real broker binary: statsd packets received on a UDP
//! socket here and checked key by key; e2e latency percentiles in /stats (JSON and text);
//! `/metrics` parsed by a Prometheus text parser and checked against /stats; the admin token.

use std::collections::HashMap;
use std::net::UdpSocket;
use std::time::{Duration, Instant};

use nsqrs_testkit::{http_request, wait_for, Conn, Frame, Nsqd};

/// Publishes `n` messages to `topic` and consumes them all on `channel` with FIN.
fn publish_and_finish(nsqd: &Nsqd, topic: &str, channel: &str, n: usize) {
    let mut sub = Conn::connect(&nsqd.tcp);
    sub.subscribe(topic, channel, n as u32);
    let mut p = Conn::connect(&nsqd.tcp);
    for i in 0..n {
        p.cmd_body(&format!("PUB {topic}"), format!("m{i}").as_bytes());
        p.expect_ok();
    }
    for _ in 0..n {
        match sub.read_frame() {
            Some(Frame::Message { id, .. }) => sub.cmd(&format!("FIN {id}")),
            other => panic!("expected a message, got {other:?}"),
        }
    }
    // FIN has no reply: wait until the channel shows nothing in flight.
    wait_for("the FINs to be processed", Duration::from_secs(20), || {
        let st = nsqd.stats();
        st["topics"].as_array().into_iter().flatten().any(|t| {
            t["topic_name"] == topic
                && t["channels"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|c| c["channel_name"] == channel && c["in_flight_count"] == 0 && c["depth"] == 0)
        })
    });
}

#[test]
fn statsd_keys_match_nsqd() {
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let addr = udp.local_addr().unwrap();
    let n = Nsqd::start(&[
        &format!("--statsd-address={addr}"),
        "--statsd-interval=1s",
        "--statsd-prefix=nsq.%s",
        "--statsd-udp-packet-size=200",
        "--statsd-exclude-ephemeral",
        "--broadcast-address=test.host",
        "--e2e-processing-latency-percentile=0.99,0.5",
    ]);
    let http_port: u16 = n.http.rsplit(':').next().unwrap().parse().unwrap();
    publish_and_finish(&n, "sd_topic", "sd_chan", 3);
    let mut eph = Conn::connect(&n.tcp);
    eph.subscribe("sd_topic", "skip#ephemeral", 0);

    // Read pushes until one shows the published messages (a push may land before them).
    let prefix = format!("nsq.test_host_{http_port}.");
    let mut buf = [0u8; 2048];
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut push: HashMap<String, (i64, String)> = HashMap::new();
    let mut order = Vec::new();
    while Instant::now() < deadline {
        let Ok(len) = udp.recv(&mut buf) else { continue };
        assert!(
            len <= 200,
            "packet of {len} bytes exceeds --statsd-udp-packet-size"
        );
        let text = std::str::from_utf8(&buf[..len]).unwrap();
        assert!(text.ends_with('\n'), "packets carry whole lines: {text:?}");
        for line in text.lines() {
            let (key, rest) = line.split_once(':').unwrap();
            let (v, kind) = rest.split_once('|').unwrap();
            let key = key
                .strip_prefix(&prefix)
                .unwrap_or_else(|| panic!("{line} lacks {prefix}"));
            push.insert(key.to_string(), (v.parse().unwrap(), kind.to_string()));
            order.push(key.to_string());
        }
        // mem.gc_runs is the last key of a push.
        if order.last().map(String::as_str) == Some("mem.gc_runs") {
            if push.get("topic.sd_topic.message_count").map(|v| v.0) == Some(3) {
                break;
            }
            push.clear();
            order.clear();
        }
    }
    let want: &[(&str, i64, &str)] = &[
        ("topic.sd_topic.message_count", 3, "c"),
        ("topic.sd_topic.message_bytes", 6, "c"),
        ("topic.sd_topic.depth", 0, "g"),
        ("topic.sd_topic.backend_depth", 0, "g"),
        ("topic.sd_topic.channel.sd_chan.message_count", 3, "c"),
        ("topic.sd_topic.channel.sd_chan.depth", 0, "g"),
        ("topic.sd_topic.channel.sd_chan.backend_depth", 0, "g"),
        ("topic.sd_topic.channel.sd_chan.in_flight_count", 0, "g"),
        ("topic.sd_topic.channel.sd_chan.deferred_count", 0, "g"),
        ("topic.sd_topic.channel.sd_chan.requeue_count", 0, "c"),
        ("topic.sd_topic.channel.sd_chan.timeout_count", 0, "c"),
        ("topic.sd_topic.channel.sd_chan.clients", 0, "g"),
        ("mem.heap_objects", 0, "g"),
        ("mem.gc_runs", 0, "c"),
    ];
    for (key, v, kind) in want {
        let got = push.get(*key).unwrap_or_else(|| panic!("no {key} in {order:?}"));
        assert_eq!((got.0, got.1.as_str()), (*v, *kind), "{key}");
    }
    for key in [
        "topic.sd_topic.e2e_processing_latency_99",
        "topic.sd_topic.e2e_processing_latency_50",
        "topic.sd_topic.channel.sd_chan.e2e_processing_latency_99",
        "topic.sd_topic.channel.sd_chan.e2e_processing_latency_50",
    ] {
        let (v, kind) = push.get(key).unwrap_or_else(|| panic!("no {key} in {order:?}"));
        assert_eq!(kind, "g");
        assert!(*v > 0, "{key} = {v}");
    }
    assert!(push["mem.heap_in_use_bytes"].0 > 0);
    assert!(
        !order.iter().any(|k| k.contains("#ephemeral")),
        "ephemeral channel excluded: {order:?}"
    );
    // Counters are deltas: the next push reports no new messages.
    let mut next = HashMap::new();
    while Instant::now() < deadline + Duration::from_secs(5) {
        let Ok(len) = udp.recv(&mut buf) else { continue };
        let text = std::str::from_utf8(&buf[..len]).unwrap();
        for line in text.lines() {
            let (key, rest) = line.split_once(':').unwrap();
            next.insert(key.to_string(), rest.to_string());
        }
        if next.contains_key(&format!("{prefix}mem.gc_runs")) {
            break;
        }
    }
    assert_eq!(next[&format!("{prefix}topic.sd_topic.message_count")], "0|c");
}

#[test]
fn e2e_percentiles_in_stats() {
    let n = Nsqd::start(&[
        "--e2e-processing-latency-percentile=1.0",
        "--e2e-processing-latency-percentile=0.5",
        "--e2e-processing-latency-window-time=10m",
    ]);
    publish_and_finish(&n, "e2e_t", "c", 20);
    let st = n.stats();
    let t = &st["topics"][0];
    let c = &t["channels"][0];
    for e in [&t["e2e_processing_latency"], &c["e2e_processing_latency"]] {
        assert_eq!(e["count"], 20, "{e}");
        let p = e["percentiles"].as_array().expect("percentiles listed");
        assert_eq!(p.len(), 2, "{e}");
        assert_eq!(p[0]["quantile"], 1.0);
        assert_eq!(p[1]["quantile"], 0.5);
        let (max, median) = (p[0]["value"].as_f64().unwrap(), p[1]["value"].as_f64().unwrap());
        assert!(median > 0.0 && median <= max, "{e}");
        assert!(max < 10e9, "latency under 10 s: {e}");
    }
    let (_, text) = n.get("/stats");
    let topic_line = text.lines().find(|l| l.contains("[e2e_t")).unwrap();
    let e2e = topic_line.split("e2e%: ").nth(1).unwrap();
    assert_eq!(e2e.split(", ").count(), 2, "{topic_line}");
    assert!(e2e.ends_with('s'), "{topic_line}");

    // Without the flag nsqd reports nothing.
    let n = Nsqd::start(&[]);
    publish_and_finish(&n, "e2e_off", "c", 2);
    let st = n.stats();
    assert_eq!(
        st["topics"][0]["channels"][0]["e2e_processing_latency"],
        serde_json::json!({"count": 0, "percentiles": null})
    );
}

#[test]
fn metrics_parse_and_match_stats() {
    let n = Nsqd::start(&["--e2e-processing-latency-percentile=0.99"]);
    publish_and_finish(&n, "pm_topic", "done", 4);
    // A channel gets only what is published after it exists.
    let mut sub = Conn::connect(&n.tcp);
    // prometheus-parse does not unescape label values; the compat suite checks escaping
    // with Prometheus' own Python parser.
    sub.cmd_body("IDENTIFY", br#"{"client_id":"slow-one"}"#);
    sub.expect_ok();
    sub.subscribe("pm_topic", "slow", 2);
    let mut p = Conn::connect(&n.tcp);
    for _ in 0..3 {
        p.cmd_body("PUB pm_topic", b"waiting");
        p.expect_ok();
    }
    wait_for(
        "two messages in flight to slow-one",
        Duration::from_secs(20),
        || n.channel_stats("pm_topic", "slow")["in_flight_count"] == 2,
    );

    let (status, body) = http_request(&n.http, "GET", "/metrics", b"").unwrap();
    assert_eq!(status, 200);
    let text = String::from_utf8(body).unwrap();
    let lines = text.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("valid Prometheus text format");
    let stats = n.stats();

    let value = |name: &str, labels: &[(&str, &str)]| -> f64 {
        let s = scrape
            .samples
            .iter()
            .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .unwrap_or_else(|| panic!("no {name}{labels:?} in\n{text}"));
        match s.value {
            prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Untyped(v) => v,
            ref other => panic!("{name}: {other:?}"),
        }
    };
    let topic = stats["topics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["topic_name"] == "pm_topic")
        .unwrap();
    let t = [("topic", "pm_topic")];
    assert_eq!(value("nsqrs_topic_depth", &t), topic["depth"].as_f64().unwrap());
    assert_eq!(value("nsqrs_topic_messages_total", &t), 7.0);
    assert_eq!(
        value("nsqrs_topic_message_bytes_total", &t),
        topic["message_bytes"].as_f64().unwrap()
    );
    for ch in topic["channels"].as_array().unwrap() {
        let name = ch["channel_name"].as_str().unwrap();
        let l = [("topic", "pm_topic"), ("channel", name)];
        for (metric, key) in [
            ("nsqrs_channel_depth", "depth"),
            ("nsqrs_channel_in_flight", "in_flight_count"),
            ("nsqrs_channel_deferred", "deferred_count"),
            ("nsqrs_channel_messages_total", "message_count"),
            ("nsqrs_channel_requeued_total", "requeue_count"),
            ("nsqrs_channel_timed_out_total", "timeout_count"),
            ("nsqrs_channel_clients", "client_count"),
        ] {
            assert_eq!(value(metric, &l), ch[key].as_f64().unwrap(), "{metric} {name}");
        }
    }
    let slow = [("topic", "pm_topic"), ("channel", "slow")];
    assert_eq!(value("nsqrs_channel_in_flight", &slow), 2.0);
    let done = [("topic", "pm_topic"), ("channel", "done"), ("quantile", "0.99")];
    let stats_p99 = topic["channels"][0]["e2e_processing_latency"]["percentiles"][0]["value"]
        .as_f64()
        .unwrap();
    assert!((value("nsqrs_channel_e2e_processing_latency_seconds", &done) - stats_p99 / 1e9).abs() < 1e-3);
    let client = [("client_id", "slow-one")];
    assert_eq!(value("nsqrs_client_ready", &client), 2.0);
    assert_eq!(value("nsqrs_client_in_flight", &client), 2.0);
    assert!(value("process_resident_memory_bytes", &[]) > 1e6);
    assert_eq!(value("nsqrs_healthy", &[]), 1.0);
}

#[test]
fn admin_token_protects_admin_endpoints_only() {
    let n = Nsqd::start(&["--http-admin-token=s3cret"]);
    let (status, body) = http_request(&n.http, "POST", "/topic/create?topic=x", b"").unwrap();
    assert_eq!(status, 401);
    assert_eq!(body, br#"{"message":"UNAUTHORIZED"}"#);
    assert_eq!(
        http_request(&n.http, "POST", "/channel/create?topic=x&channel=c", b"")
            .unwrap()
            .0,
        401
    );
    assert_eq!(
        http_request(&n.http, "GET", "/config/log_level", b"").unwrap().0,
        401
    );
    for path in ["/ping", "/stats", "/info", "/metrics"] {
        assert_eq!(http_request(&n.http, "GET", path, b"").unwrap().0, 200, "{path}");
    }
    assert_eq!(n.post("/pub?topic=x", b"hello").0, 200);

    let authed = |method: &str, path: &str, token: &str| {
        let mut s = std::net::TcpStream::connect(&n.http).unwrap();
        use std::io::{Read, Write};
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out[9..12].parse::<u16>().unwrap()
    };
    assert_eq!(authed("POST", "/topic/create?topic=y", "s3cret"), 200);
    assert_eq!(authed("POST", "/topic/create?topic=y", "s3cres"), 401);
    assert_eq!(authed("GET", "/config/log_level", "s3cret"), 200);
}

#[test]
fn max_channel_consumers_and_sample_rate() {
    let n = Nsqd::start(&["--max-channel-consumers=1"]);
    let mut a = Conn::connect(&n.tcp);
    a.subscribe("limited", "ch", 0);
    let mut b = Conn::connect(&n.tcp);
    b.cmd("SUB limited ch");
    assert_eq!(
        b.read_frame(),
        Some(Frame::Error(
            "E_SUB_FAILED consumers for limited:ch exceeds limit of 1".into()
        ))
    );

    // sample_rate 10: about one message in ten reaches the client; the rest leave the channel.
    let n = Nsqd::start(&[]);
    let mut s = Conn::connect(&n.tcp);
    s.cmd_body("IDENTIFY", br#"{"sample_rate":10}"#);
    s.expect_ok();
    s.subscribe("sampled", "ch", 2500);
    let bodies: Vec<Vec<u8>> = (0..1000).map(|i| format!("{i}").into_bytes()).collect();
    let mut p = Conn::connect(&n.tcp);
    p.mpub("sampled", &bodies);
    p.expect_ok();
    s.s.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    let mut got = 0;
    while let Some(Frame::Message { .. }) = s.read_frame() {
        got += 1;
    }
    assert!(
        (40..=200).contains(&got),
        "{got} of 1000 delivered at sample_rate 10"
    );
    let ch = &n.stats()["topics"][0]["channels"][0];
    assert_eq!(ch["depth"], 0, "{ch}");
    assert_eq!(ch["in_flight_count"], got, "{ch}");
}
