//! The tools against secured clusters, as an operator runs them: `nsqrs pub`, `tail` and
//! `to-db` with go-nsq's TLS (root CA, client certificate, skip-verify), snappy, deflate,
//! sampling and AUTH options against the real broker, and, in every tool that connects, one
//! clear error line for each way those options can be wrong.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use nsqrs_testkit::auth_server::AuthServer;
use nsqrs_testkit::{bin, run_tool, wait_bounded, wait_for, Certs, Nsqd, ToDb};
use serde_json::Value;

const LIMIT: Duration = Duration::from_secs(20);

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn start(certs: &Certs, extra: &[&str]) -> Nsqd {
    let mut args = certs.server_flags();
    args.extend(extra.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    Nsqd::start(&refs)
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `--<flag>=KEY,VALUE` for each go-nsq option.
fn opt_flags(flag: &str, opts: &[String]) -> Vec<String> {
    opts.iter().map(|o| format!("--{flag}={o}")).collect()
}

fn tls_opts(certs: &Certs) -> Vec<String> {
    vec![
        "tls_v1,true".into(),
        format!("tls_root_ca_file,{}", path(&certs.ca)),
    ]
}

/// `nsqrs pub` of `bodies` to `topic` with `opts` as producer options.
fn publish(n: &Nsqd, topic: &str, opts: &[String], bodies: &[&str]) -> Output {
    let mut args = vec![
        "pub".to_string(),
        format!("--topic={topic}"),
        format!("--nsqd-tcp-address={}", n.tcp),
    ];
    args.extend(opt_flags("producer-opt", opts));
    args.extend(bodies.iter().map(|b| b.to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    run_tool(&refs, b"", LIMIT)
}

fn publish_ok(n: &Nsqd, topic: &str, opts: &[String], bodies: &[&str]) {
    let out = publish(n, topic, opts, bodies);
    assert_eq!(out.status.code(), Some(0), "pub: {}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.ends_with(&format!("OK {} {}\n", bodies.len(), n.tcp)),
        "{stdout}"
    );
}

fn tail_args(n: &Nsqd, topic: &str, opts: &[String], count: usize) -> Vec<String> {
    let mut args = vec![
        "tail".to_string(),
        format!("--topic={topic}"),
        "--channel=c".into(),
        format!("--nsqd-tcp-address={}", n.tcp),
        "-n".into(),
        count.to_string(),
    ];
    args.extend(opt_flags("consumer-opt", opts));
    args
}

/// `nsqrs tail -n count`, expected to fail before printing anything.
fn tail_fails(n: &Nsqd, topic: &str, opts: &[String]) -> Output {
    let args = tail_args(n, topic, opts, 1);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    run_tool(&refs, b"", LIMIT)
}

/// The tail's connection as /stats shows it, once it is subscribed.
fn tail_client(n: &Nsqd, topic: &str) -> Value {
    let client = || n.channel_stats(topic, "c")["clients"][0].clone();
    wait_for("tail to subscribe", Duration::from_secs(20), || {
        !client().is_null()
    });
    client()
}

/// Publishes three messages with `nsqrs pub`, reads them and a fourth (published once the
/// tail is connected) with `nsqrs tail -n 4`, both using `opts`. When /stats is reachable
/// over plain HTTP (`stats`), returns the tail's client entry taken while it was connected.
fn pub_then_tail(n: &Nsqd, topic: &str, opts: &[String], stats: bool) -> Option<Value> {
    publish_ok(n, topic, opts, &["one", "two", "three"]);
    let child = Command::new(bin())
        .args(tail_args(n, topic, opts, 4))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let client = stats.then(|| tail_client(n, topic));
    publish_ok(n, topic, opts, &["four"]);
    let out = wait_bounded(child, LIMIT);
    assert_eq!(out.status.code(), Some(0), "tail: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "one\ntwo\nthree\nfour\n");
    client
}

/// A failed run: a non-zero status and exactly one stderr line, which mentions `needle`.
fn one_error_line(out: &Output, status: i32, needle: &str) {
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(status), "{err}");
    assert_eq!(err.lines().count(), 1, "not one line: {err:?}");
    assert!(err.starts_with("error: "), "{err:?}");
    assert!(err.contains(needle), "{err:?} does not mention {needle:?}");
    assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
}

#[test]
fn tls_with_a_root_ca_against_tls_required() {
    let certs = Certs::new();
    let n = start(&certs, &["--tls-required=true"]);
    pub_then_tail(&n, "tls_ca", &tls_opts(&certs), false);

    // The server's CA is not in the system store: the handshake fails, and says why.
    let out = publish(&n, "tls_ca", &["tls_v1,true".into()], &["x"]);
    one_error_line(&out, 1, "TLS handshake: invalid peer certificate");
    // Without TLS the broker refuses the client, and the tool says so.
    one_error_line(&tail_fails(&n, "tls_ca", &[]), 1, "TLS required");
}

#[test]
fn tls_with_a_client_certificate_against_require_verify() {
    let certs = Certs::new();
    let ca_flag = format!("--tls-root-ca-file={}", path(&certs.ca));
    let n = start(&certs, &["--tls-client-auth-policy=require-verify", &ca_flag]);
    let mut opts = tls_opts(&certs);
    opts.push(format!("tls_cert,{}", path(&certs.client_cert)));
    opts.push(format!("tls_key,{}", path(&certs.client_key)));
    pub_then_tail(&n, "tls_cert", &opts, false);

    // No certificate, or one from a CA the broker does not trust: refused, in one line each.
    one_error_line(
        &tail_fails(&n, "tls_cert", &tls_opts(&certs)),
        1,
        "fatal alert: CertificateRequired",
    );
    let mut rogue = tls_opts(&certs);
    rogue.push(format!("tls_cert,{}", path(&certs.rogue_cert)));
    rogue.push(format!("tls_key,{}", path(&certs.rogue_key)));
    one_error_line(
        &publish(&n, "tls_cert", &rogue, &["x"]),
        1,
        "fatal alert: UnknownCA",
    );
}

#[test]
fn tls_refused_by_the_broker_goes_on_in_plain_text_with_a_warning() {
    // go-nsq follows the IDENTIFY reply; the warning keeps that from passing unnoticed.
    let certs = Certs::new();
    let n = Nsqd::start(&[]);
    let out = publish(&n, "no_tls", &tls_opts(&certs), &["x"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("server did not enable TLS; continuing without it"),
        "{err}"
    );
}

#[test]
fn tls_insecure_skip_verify_trusts_any_certificate() {
    let certs = Certs::new();
    let n = start(&certs, &["--tls-required=tcp-https"]);
    let opts = vec!["tls_v1,true".into(), "tls_insecure_skip_verify,true".into()];
    let client = pub_then_tail(&n, "tls_skip", &opts, true).unwrap();
    assert_eq!(client["tls"], true, "{client}");
}

#[test]
fn snappy_with_sampling() {
    let n = Nsqd::start(&[]);
    // nsqd skips a message when rand(100) > sample_rate, so 99 still delivers every one.
    let opts = vec!["snappy,true".into(), "sample_rate,99".into()];
    let client = pub_then_tail(&n, "snappy", &opts, true).unwrap();
    assert_eq!(
        (
            &client["snappy"],
            &client["deflate"],
            &client["tls"],
            &client["sample_rate"]
        ),
        (
            &Value::Bool(true),
            &Value::Bool(false),
            &Value::Bool(false),
            &Value::from(99)
        ),
        "{client}"
    );
}

#[test]
fn deflate_above_the_servers_level_cap() {
    let n = Nsqd::start(&["--max-deflate-level=4"]);
    let opts = vec!["deflate,true".into(), "deflate_level,9".into()];
    let client = pub_then_tail(&n, "deflate", &opts, true).unwrap();
    assert_eq!(
        (&client["deflate"], &client["snappy"]),
        (&Value::Bool(true), &Value::Bool(false)),
        "{client}"
    );
}

#[test]
fn tls_with_snappy_and_with_deflate() {
    let certs = Certs::new();
    // tcp-https: TCP must be TLS, while /stats stays readable over plain HTTP.
    let n = start(&certs, &["--tls-required=tcp-https"]);
    for codec in ["snappy", "deflate"] {
        let mut opts = tls_opts(&certs);
        opts.push(format!("{codec},true"));
        let topic = format!("tls_{codec}");
        let client = pub_then_tail(&n, &topic, &opts, true).unwrap();
        assert_eq!(client["tls"], true, "{client}");
        assert_eq!(client[codec], true, "{client}");
    }
}

#[test]
fn auth_with_the_right_secret_and_refusals() {
    let a = AuthServer::start();
    let n = Nsqd::start(&[&format!("--auth-http-address={}", a.addr)]);
    let good = vec!["auth_secret,good".to_string()];
    publish_ok(&n, "allowed_t", &good, &["one", "two", "three"]);
    let out = run_tool(
        &[
            "tail",
            "--topic=allowed_t",
            "--channel=c",
            "--nsqd-tcp-address",
            &n.tcp,
            "-n",
            "3",
            "--consumer-opt=auth_secret,good",
        ],
        b"",
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "one\ntwo\nthree\n");
    // go-nsq's log line, so an operator sees who the auth server took the tool for.
    let err = text(&out.stderr);
    assert!(
        err.contains(r#"Auth accepted. Identity: "alice" http://id/alice Permissions: 2"#),
        "{err}"
    );
    assert!(a.seen().iter().all(|s| s.params["secret"] == "good"));

    let wrong = vec!["auth_secret,wrong".to_string()];
    one_error_line(
        &publish(&n, "allowed_t", &wrong, &["x"]),
        1,
        "AUTH failed: E_AUTH_FAILED",
    );
    one_error_line(
        &tail_fails(&n, "allowed_t", &wrong),
        1,
        "AUTH failed: E_AUTH_FAILED",
    );
    // Authenticated, but not for this topic: who we are, then the broker's refusal verbatim.
    let out = publish(&n, "forbidden_t", &good, &["x"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(
        err.lines().filter(|l| l.starts_with("error: ")).count(),
        1,
        "{err}"
    );
    assert!(
        err.lines().next().unwrap().contains(r#"Identity: "alice""#),
        "{err}"
    );
    assert!(
        err.lines()
            .last()
            .unwrap()
            .contains(r#"E_UNAUTHORIZED AUTH failed for PUB on "forbidden_t""#),
        "{err}"
    );
    one_error_line(
        &publish(&n, "allowed_t", &[], &["x"]),
        1,
        "server requires AUTH but no auth_secret is configured",
    );
}

#[test]
fn auth_secret_is_not_sent_where_auth_is_not_required() {
    // An AUTH sent here would be answered E_AUTH_DISABLED, which closes the connection.
    let n = Nsqd::start(&[]);
    pub_then_tail(&n, "no_auth", &["auth_secret,good".into()], false);
}

#[test]
fn bad_options_give_one_error_line_and_status_2() {
    let certs = Certs::new();
    let ca = format!("tls_root_ca_file,{}", path(&certs.ca));
    let cases: &[(&[&str], &str)] = &[
        (
            &["tls_v1,true", "tls_min_version,ssl3.0"],
            "tls_min_version: ssl3.0 is not available: nsqrs speaks TLS 1.2 and 1.3 only",
        ),
        (
            &["tls_v1,true", "tls_root_ca_file,/nonexistent/ca.pem"],
            "tls_root_ca_file: cannot read /nonexistent/ca.pem",
        ),
        (&[&ca], "tls_* options have no effect without tls_v1,true"),
        (
            &[
                "tls_v1,true",
                &ca,
                &format!("tls_cert,{}", path(&certs.client_cert)),
            ],
            "tls_cert is set but tls_key is not",
        ),
        (
            &["snappy,true", "deflate,true"],
            "snappy and deflate cannot both be enabled",
        ),
        (&["deflate_level,10"], "deflate_level: 10 is outside 1..9"),
        (&["sample_rate,100"], "sample_rate: 100 is outside 0..99"),
    ];
    let out = tempfile::tempdir().unwrap();
    let db = out.path().join("never.db");
    for (opts, want) in cases {
        // Go flag syntax ends at the first message, so pub's message comes last.
        let nsqd = "--nsqd-tcp-address=127.0.0.1:1";
        let tools: [(&str, Vec<&str>, &[&str]); 5] = [
            ("producer-opt", vec!["pub", "--topic=t", nsqd], &["x"]),
            ("consumer-opt", vec!["tail", "--topic=t", nsqd], &[]),
            (
                "consumer-opt",
                vec!["to-file", "--topic=t", nsqd, "--output-dir", path(out.path())],
                &[],
            ),
            (
                "consumer-opt",
                vec!["to-db", "--topic=t", nsqd, "--db", path(&db)],
                &[],
            ),
            (
                "producer-opt",
                vec!["replay", "--topic=t", "--since=1h", nsqd, "--db", path(&db)],
                &[],
            ),
        ];
        for (flag, mut args, messages) in tools {
            let flags: Vec<String> = opts.iter().map(|o| format!("--{flag}={o}")).collect();
            args.extend(flags.iter().map(String::as_str));
            args.extend(messages);
            one_error_line(&run_tool(&args, b"", LIMIT), 2, want);
        }
    }
    let left: Vec<_> = std::fs::read_dir(out.path()).unwrap().collect();
    assert!(left.is_empty(), "a tool wrote {left:?} despite bad options");
}

#[test]
fn to_db_archives_from_a_tls_cluster() {
    let certs = Certs::new();
    let n = start(&certs, &["--tls-required=true"]);
    let opts = tls_opts(&certs);
    let bodies: Vec<String> = (0..50).map(|i| format!("m{i:02}")).collect();
    let refs: Vec<&str> = bodies.iter().map(String::as_str).collect();
    publish_ok(&n, "secure_orders", &opts, &refs);

    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("a.db");
    let flags = opt_flags("consumer-opt", &opts);
    let mut extra: Vec<&str> = flags.iter().map(String::as_str).collect();
    extra.push("--flush-interval=100ms");
    let t = ToDb::start(&n, "secure_orders", path(&db), &extra);
    let count = || -> i64 {
        rusqlite::Connection::open(&db)
            .and_then(|c| c.query_row("SELECT COUNT(*) FROM messages", [], |r| r.get(0)))
            .unwrap_or_default()
    };
    wait_for("to-db to archive 50", Duration::from_secs(30), || count() >= 50);
    assert_eq!(t.terminate(), Some(0));
    let conn = rusqlite::Connection::open(&db).unwrap();
    let mut got: Vec<String> = conn
        .prepare("SELECT body FROM messages")
        .unwrap()
        .query_map([], |r| r.get::<_, Vec<u8>>(0))
        .unwrap()
        .map(|b| String::from_utf8(b.unwrap()).unwrap())
        .collect();
    got.sort();
    assert_eq!(got, bodies);
}

/// `nsqrs bench` with `--client-opt` pairs; returns its JSON report.
fn bench(n: &Nsqd, mode: &str, opts: &[String]) -> Value {
    let mut args = vec![
        "bench".to_string(),
        format!("--nsqd-tcp-address={}", n.tcp),
        format!("--mode={mode}"),
        "--topic=secure_bench".into(),
        "--connections=1".into(),
        "--count=2000".into(),
        "--runfor=10s".into(),
        "--format=json".into(),
    ];
    args.extend(opt_flags("client-opt", opts));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run_tool(&refs, b"", LIMIT);
    assert_eq!(out.status.code(), Some(0), "bench {mode}: {}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn bench_over_tls_with_snappy_and_over_deflate() {
    let certs = Certs::new();
    let n = start(
        &certs,
        &["--tls-required=true", "--snappy=true", "--deflate=true"],
    );
    for extra in ["snappy,true", "deflate,true"] {
        let mut opts = tls_opts(&certs);
        opts.push(extra.to_string());
        let wrote = bench(&n, "writer", &opts);
        assert_eq!(wrote["writer"]["messages"], 2000, "{wrote}");
        let read = bench(&n, "reader", &opts);
        assert_eq!(read["reader"]["messages"], 2000, "{read}");
    }
    // Options that shape consumers mean nothing to the bench: refused, not ignored.
    let out = run_tool(
        &[
            "bench",
            &format!("--nsqd-tcp-address={}", n.tcp),
            "--client-opt=max_in_flight,5",
        ],
        b"",
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("\"max_in_flight\" is not a transport option"),
        "{}",
        text(&out.stderr)
    );
}
