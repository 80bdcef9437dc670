//! `nsqrs to-nsq` and `nsqrs to-http` against real destinations: a second broker (and, in an
//! ignored test, Go nsqd), and HTTP endpoints this test serves, plain and TLS. What is
//! checked is the contract: every message reaches a destination, a message is finished only
//! once a destination took it, a refused one is requeued and stays on the source, and the
//! tools say how it goes.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nsqrs_testkit::{bin, wait_for, Daemon, HttpServer, Nsqd};

/// A running forwarding tool, its stderr collected; killed when dropped.
struct Tool {
    process: Daemon,
}

impl Tool {
    fn start(args: &[&str]) -> Tool {
        Tool::start_with_env(args, &[])
    }

    fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Tool {
        let mut cmd = Command::new(bin());
        cmd.args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        let label = if args[0] == "to-http" { "to-http" } else { "to-nsq" };
        Tool {
            process: Daemon::spawn(cmd, label),
        }
    }

    /// SIGTERM; the exit status.
    fn terminate(mut self) -> Option<i32> {
        self.process
            .terminate(LIMIT)
            .unwrap_or_else(|e| panic!("after SIGTERM: {e}"))
    }
}

const LIMIT: Duration = Duration::from_secs(30);

/// The topic's entry in /stats (Null when it does not exist).
fn topic(n: &Nsqd, name: &str) -> serde_json::Value {
    n.stats()["topics"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|t| t["topic_name"] == name)
        .cloned()
        .unwrap_or(serde_json::Value::Null)
}

fn count(n: &Nsqd, name: &str) -> i64 {
    topic(n, name)["message_count"].as_i64().unwrap_or(0)
}

/// The channel's messages not finished yet: queued, in flight or deferred (requeued).
fn unfinished(n: &Nsqd, t: &str, channel: &str) -> i64 {
    let t = topic(n, t);
    let Some(c) = t["channels"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["channel_name"] == channel))
    else {
        return -1;
    };
    ["depth", "in_flight_count", "deferred_count"]
        .iter()
        .map(|k| c[k].as_i64().unwrap_or(0))
        .sum()
}

/// A topic with its channel, so what is published before the tool starts waits for it.
fn prepare(n: &Nsqd, t: &str, channel: &str) {
    assert_eq!(n.post(&format!("/topic/create?topic={t}"), b"").0, 200);
    assert_eq!(
        n.post(&format!("/channel/create?topic={t}&channel={channel}"), b"")
            .0,
        200
    );
}

fn publish(n: &Nsqd, t: &str, bodies: &[String]) {
    let mut c = n.connect();
    for chunk in bodies.chunks(100) {
        let chunk: Vec<Vec<u8>> = chunk.iter().map(|b| b.clone().into_bytes()).collect();
        c.mpub(t, &chunk);
        c.expect_ok();
    }
}

/// Every body of `t` on `n`, read on a fresh channel made before anything was published
/// (`reader`), as a set.
fn bodies_on(n: &Nsqd, t: &str, reader: &str, expect: usize) -> BTreeSet<String> {
    let mut c = n.connect();
    c.subscribe(t, reader, expect as u32);
    let mut got = BTreeSet::new();
    for _ in 0..expect {
        match c.read_frame() {
            Some(nsqrs_testkit::Frame::Message { id, body, .. }) => {
                c.cmd(&format!("FIN {id}"));
                got.insert(String::from_utf8(body).unwrap());
            }
            other => panic!("expected a message of {t}, got {other:?}"),
        }
    }
    got
}

fn numbered(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i:04}")).collect()
}

#[test]
fn to_nsq_finishes_only_what_the_destination_took() {
    let source = Nsqd::start(&[]);
    // The destination refuses bodies over 100 bytes.
    let dest = Nsqd::start(&["--max-msg-size=100"]);
    prepare(&source, "t", "nsq_to_nsq");
    prepare(&dest, "copy", "check");
    let small = numbered("m", 200);
    let big: Vec<String> = (0..3).map(|i| format!("{i}{}", "x".repeat(200))).collect();
    publish(&source, "t", &small);
    publish(&source, "t", &big);
    let tool = Tool::start(&[
        "to-nsq",
        "--topic=t",
        "--nsqd-tcp-address",
        &source.tcp,
        "--destination-nsqd-tcp-address",
        &dest.tcp,
        "--destination-topic=copy",
        "--status-every=50",
    ]);
    wait_for("200 messages at the destination", LIMIT, || {
        count(&dest, "copy") == 200
    });
    // The refused ones went back to the source, requeued, and are still there.
    wait_for("the refused ones requeued", LIMIT, || {
        let t = topic(&source, "t");
        t["channels"][0]["requeue_count"].as_i64().unwrap_or(0) >= 3
    });
    wait_for("only the refused ones left", LIMIT, || {
        unfinished(&source, "t", "nsq_to_nsq") == 3
    });
    assert_eq!(count(&dest, "copy"), 200, "nothing refused was counted as sent");
    assert_eq!(
        bodies_on(&dest, "copy", "check", 200),
        small.into_iter().collect()
    );
    // The first failure of a run is the one reported: the refused publish itself
    // ("failed (E_BAD_MESSAGE ...") or, when another send on the same connection finishes
    // first, the connection nsqd closed after refusing it ("failed (addr: closed after
    // E_BAD_MESSAGE ...").
    let log = tool.process.log.clone();
    assert_eq!(
        tool.terminate_and_log_has(&["[aggregate] 50 sent", "to-nsq: forwarded 200"]),
        Some(0)
    );
    let log = log.lock().unwrap();
    assert!(
        log.iter()
            .any(|l| l.starts_with("warning:") && l.contains(" failed (") && l.contains("E_BAD_MESSAGE")),
        "no warning naming the refusal:\n{}",
        log.join("\n")
    );
}

impl Tool {
    /// SIGTERM; checks that stderr said each of `needles`, and returns the exit status.
    fn terminate_and_log_has(self, needles: &[&str]) -> Option<i32> {
        let log = self.process.log.clone();
        let code = self.terminate();
        let log = log.lock().unwrap().join("\n");
        for n in needles {
            assert!(log.contains(n), "{n:?} not in the log:\n{log}");
        }
        code
    }
}

#[test]
fn to_nsq_filters_json_and_takes_turns_between_destinations() {
    let source = Nsqd::start(&[]);
    let (d1, d2) = (Nsqd::start(&[]), Nsqd::start(&[]));
    prepare(&source, "in", "nsq_to_nsq");
    for d in [&d1, &d2] {
        prepare(d, "in", "check");
    }
    let mut bodies: Vec<String> = (0..10)
        .map(|i| format!(r#"{{"kind":"order","id":{i},"secret":"s{i}"}}"#))
        .collect();
    bodies.extend((0..5).map(|i| format!(r#"{{"kind":"refund","id":{i}}}"#)));
    bodies.push("not json".into());
    publish(&source, "in", &bodies);
    let tool = Tool::start(&[
        "to-nsq",
        "--topic=in",
        "--nsqd-tcp-address",
        &source.tcp,
        "--destination-nsqd-tcp-address",
        &d1.tcp,
        "--destination-nsqd-tcp-address",
        &d2.tcp,
        "--mode=round-robin",
        "--require-json-field=kind",
        "--require-json-value=order",
        "--whitelist-json-field=kind",
        "--whitelist-json-field=id",
    ]);
    wait_for("ten orders forwarded", LIMIT, || {
        count(&d1, "in") + count(&d2, "in") == 10
    });
    wait_for("the others finished unsent", LIMIT, || {
        unfinished(&source, "in", "nsq_to_nsq") == 0
    });
    assert_eq!((count(&d1, "in"), count(&d2, "in")), (5, 5), "in turn");
    let mut got = bodies_on(&d1, "in", "check", 5);
    got.extend(bodies_on(&d2, "in", "check", 5));
    let want: BTreeSet<String> = (0..10)
        .map(|i| format!(r#"{{"id":{i},"kind":"order"}}"#))
        .collect();
    assert_eq!(got, want, "only the whitelisted fields");
    assert_eq!(
        tool.terminate_and_log_has(&["is not a JSON object", "forwarded 10", "skipped 6"]),
        Some(0)
    );
}

/// Go nsqd as the destination (run by hand, or where Go NSQ is built: CI has no Go).
#[test]
#[ignore]
fn to_nsq_into_go_nsqd() {
    let go = Path::new("/root/.cache/nsq-anchor/bin/nsqd");
    let dir = tempfile::tempdir().unwrap();
    let args: Vec<String> = [
        "-tcp-address=127.0.0.1:0".to_string(),
        "-http-address=127.0.0.1:0".into(),
        format!("-data-path={}", dir.path().display()),
    ]
    .into();
    let dest = Nsqd::launch(go, &args, dir.path());
    let source = Nsqd::start(&[]);
    prepare(&source, "t", "nsq_to_nsq");
    prepare(&dest, "t", "check");
    let bodies = numbered("go", 300);
    publish(&source, "t", &bodies);
    let tool = Tool::start(&[
        "to-nsq",
        "--topic=t",
        "--nsqd-tcp-address",
        &source.tcp,
        "--destination-nsqd-tcp-address",
        &dest.tcp,
    ]);
    wait_for("everything in Go nsqd", LIMIT, || count(&dest, "t") == 300);
    wait_for("everything finished", LIMIT, || {
        unfinished(&source, "t", "nsq_to_nsq") == 0
    });
    assert_eq!(bodies_on(&dest, "t", "check", 300), bodies.into_iter().collect());
    assert_eq!(tool.terminate(), Some(0));
}

/// Arguments for to-http consuming topic `t` of `n`, requeues retried at once.
fn to_http_args<'a>(n: &'a Nsqd, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "to-http",
        "--topic=t",
        "--nsqd-tcp-address",
        &n.tcp,
        "--consumer-opt=default_requeue_delay,50ms",
        "--consumer-opt=backoff_multiplier,50ms",
    ];
    args.extend_from_slice(extra);
    args
}

#[test]
fn to_http_posts_every_message_and_retries_what_failed() {
    let n = Nsqd::start(&[]);
    prepare(&n, "t", "nsq_to_http");
    // The endpoint fails each "flaky" message the first time it sees it.
    let seen = Arc::new(Mutex::new(BTreeSet::new()));
    let server = HttpServer::start(move |r| {
        let body = String::from_utf8_lossy(&r.body).into_owned();
        match body.starts_with("flaky") && seen.lock().unwrap().insert(body) {
            true => 503,
            false => 200,
        }
    });
    let mut bodies = numbered("m", 100);
    bodies.extend(numbered("flaky", 5));
    publish(&n, "t", &bodies);
    let url = format!("http://{}/in?src=nsq", server.addr);
    let tool = Tool::start(&to_http_args(
        &n,
        &[
            "--post",
            &url,
            "--content-type=text/plain",
            "--header=X-Source: nsqrs test",
            "-n=4",
            "--status-every=20",
        ],
    ));
    wait_for("every message accepted", LIMIT, || {
        server.accepted().into_iter().collect::<BTreeSet<_>>().len() == 105
    });
    wait_for("all finished", LIMIT, || unfinished(&n, "t", "nsq_to_http") == 0);
    let requests = server.requests();
    assert_eq!(requests.iter().filter(|r| r.status == 503).count(), 5);
    for r in &requests {
        assert_eq!((r.method.as_str(), r.path.as_str()), ("POST", "/in?src=nsq"));
        assert_eq!(r.headers["content-type"], "text/plain");
        assert_eq!(r.headers["x-source"], "nsqrs test");
        assert!(
            r.headers["user-agent"].starts_with("nsq_to_http"),
            "{:?}",
            r.headers
        );
    }
    assert!(
        server.accepted().len() <= 105 + 4,
        "finished messages are not sent again"
    );
    assert_eq!(
        tool.terminate_and_log_has(&["[aggregate] 20 sent", "failed (POST", "503", "forwarded 105"]),
        Some(0)
    );
}

#[test]
fn to_http_get_multicast_and_sample() {
    let n = Nsqd::start(&[]);
    prepare(&n, "t", "nsq_to_http");
    let (a, b) = (HttpServer::start(|_| 200), HttpServer::start(|_| 204));
    publish(&n, "t", &["a b&c=d/é".to_string(), "plain".to_string()]);
    let (ua, ub) = (
        format!("http://{}/hit?m=%s", a.addr),
        format!("http://{}/hit/%s", b.addr),
    );
    let tool = Tool::start(&to_http_args(
        &n,
        &["--get", &ua, "--get", &ub, "--mode=multicast"],
    ));
    wait_for("both endpoints got both", LIMIT, || {
        a.accepted().len() == 2 && b.accepted().len() == 2
    });
    wait_for("all finished", LIMIT, || unfinished(&n, "t", "nsq_to_http") == 0);
    let paths: BTreeSet<String> = a.requests().into_iter().map(|r| r.path).collect();
    assert!(paths.contains("/hit?m=a%20b%26c%3Dd%2F%C3%A9"), "{paths:?}");
    assert!(paths.contains("/hit?m=plain"), "{paths:?}");
    assert!(b
        .requests()
        .iter()
        .all(|r| r.method == "GET" && !r.headers.contains_key("content-type")));
    assert_eq!(tool.terminate(), Some(0));

    // --sample=0 sends nothing and finishes everything.
    publish(&n, "t", &numbered("s", 20));
    let tool = Tool::start(&to_http_args(&n, &["--get", &ua, "--sample=0"]));
    wait_for("all finished unsent", LIMIT, || {
        unfinished(&n, "t", "nsq_to_http") == 0
    });
    assert_eq!(a.requests().len(), 2);
    assert_eq!(tool.terminate_and_log_has(&["skipped 20"]), Some(0));
}

#[test]
fn to_http_over_tls() {
    let certs = nsqrs_testkit::Certs::new();
    let server = HttpServer::start_tls(&certs.server_cert, &certs.server_key, |_| 200);
    let n = Nsqd::start(&[]);
    prepare(&n, "t", "nsq_to_http");
    publish(&n, "t", &numbered("tls", 10));
    let port = server.addr.rsplit(':').next().unwrap();
    let url = format!("https://localhost:{port}/secure");
    let ca = certs.ca.to_str().unwrap();
    let tool = Tool::start_with_env(&to_http_args(&n, &["--post", &url]), &[("SSL_CERT_FILE", ca)]);
    wait_for("ten over TLS", LIMIT, || server.accepted().len() == 10);
    assert_eq!(tool.terminate(), Some(0));
}

#[test]
fn bad_flags_give_one_error_line() {
    let cases: &[(&[&str], &str)] = &[
        (
            &[
                "to-nsq",
                "--nsqd-tcp-address=a:1",
                "--destination-nsqd-tcp-address=b:1",
            ],
            "--topic",
        ),
        (
            &["to-nsq", "--topic=t", "--nsqd-tcp-address=a:1"],
            "--destination-nsqd-tcp-address",
        ),
        (
            &["to-nsq", "--topic=t", "--destination-nsqd-tcp-address=b:1"],
            "--lookupd-http-address",
        ),
        (
            &[
                "to-nsq",
                "--topic=t",
                "--nsqd-tcp-address=a:1",
                "--destination-nsqd-tcp-address=b:1",
                "--mode=multicast",
            ],
            "--mode",
        ),
        (
            &[
                "to-nsq",
                "--topic=t",
                "--nsqd-tcp-address=a:1",
                "--destination-nsqd-tcp-address=b:1",
                "--require-json-value=x",
            ],
            "--require-json-field",
        ),
        (
            &[
                "to-nsq",
                "--topic=t",
                "--nsqd-tcp-address=a:1",
                "--destination-nsqd-tcp-address=b:1",
                "--destination-topic=a b",
            ],
            "a b",
        ),
        (
            &["to-http", "--topic=t", "--nsqd-tcp-address=a:1"],
            "--get or --post",
        ),
        (
            &[
                "to-http",
                "--topic=t",
                "--nsqd-tcp-address=a:1",
                "--get=http://h/x",
            ],
            "%s",
        ),
        (
            &["to-http", "--topic=t", "--nsqd-tcp-address=a:1", "--post=h:1/x"],
            "scheme",
        ),
        (
            &[
                "to-http",
                "--topic=t",
                "--nsqd-tcp-address=a:1",
                "--post=http://h/",
                "--get=http://h/%s",
            ],
            "not both",
        ),
        (
            &[
                "to-http",
                "--topic=t",
                "--nsqd-tcp-address=a:1",
                "--get=http://h/%s",
                "--content-type=text/plain",
            ],
            "--content-type",
        ),
        (
            &[
                "to-http",
                "--topic=t",
                "--nsqd-tcp-address=a:1",
                "--post=http://h/",
                "--sample=2",
            ],
            "--sample",
        ),
        (
            &[
                "to-http",
                "--topic=t",
                "--nsqd-tcp-address=a:1",
                "--post=http://h/",
                "--header=x",
            ],
            "key:value",
        ),
        (
            &[
                "to-http",
                "--topic=t",
                "--nsqd-tcp-address=a:1",
                "--post=http://h/",
                "--mode=all",
            ],
            "--mode",
        ),
    ];
    for (args, want) in cases {
        let out = Command::new(bin()).args(*args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
    }
}
