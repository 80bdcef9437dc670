//! Transport negotiated in IDENTIFY against the real broker binary: tokio-nsq (third-party)
//! over TLS, TLS+snappy, TLS+deflate, snappy and deflate; client certificates required and
//! refused; `--tls-required` on TCP and HTTP; the HTTPS listener.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use nsqrs_testkit::{wait_for, Certs, Conn, Frame, Nsqd};
use tokio::time::timeout;
use tokio_nsq::{
    NSQChannel, NSQConfigShared, NSQConfigSharedCompression, NSQConfigSharedTLS, NSQConsumerConfig,
    NSQConsumerConfigSources, NSQDeflateLevel, NSQEvent, NSQProducerConfig, NSQTopic,
};

fn args(certs: &Certs, extra: &[&str]) -> Vec<String> {
    let mut a = certs.server_flags();
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

fn start(certs: &Certs, extra: &[&str]) -> Nsqd {
    let a = args(certs, extra);
    let refs: Vec<&str> = a.iter().map(String::as_str).collect();
    Nsqd::start(&refs)
}

fn shared(tls: bool, compression: Option<NSQConfigSharedCompression>) -> NSQConfigShared {
    let mut s = NSQConfigShared::new();
    if tls {
        // tokio-nsq verifies nothing by default; the hand-written client below checks the CA.
        s = s.set_tls(NSQConfigSharedTLS::new("localhost"));
    }
    if let Some(c) = compression {
        s = s.set_compression(c);
    }
    s
}

/// Publishes through tokio-nsq with `cfg`, consumes with the same settings, and returns the
/// consumer's entry in /stats taken while it is connected.
async fn roundtrip(n: &Nsqd, topic: &str, cfg: NSQConfigShared) -> serde_json::Value {
    let t = NSQTopic::new(topic).unwrap();
    let mut p = NSQProducerConfig::new(n.tcp.clone())
        .set_shared(cfg.clone())
        .build();
    match timeout(Duration::from_secs(10), p.consume()).await {
        Ok(Some(NSQEvent::Healthy())) => {}
        other => panic!("producer did not become healthy: {other:?}"),
    }
    // Bodies larger than a snappy block and compressible ones, so chunking is exercised.
    let mut bodies: Vec<Vec<u8>> = (0..40).map(|i| format!("message {i}").into_bytes()).collect();
    bodies.push((0..300_000u32).map(|i| (i % 97) as u8).collect());
    bodies.push(vec![b'z'; 100_000]);
    for b in &bodies {
        p.publish(&t, b.clone()).await.unwrap();
        match timeout(Duration::from_secs(10), p.consume()).await {
            Ok(Some(NSQEvent::Ok())) => {}
            other => panic!("publish not acknowledged: {other:?}"),
        }
    }
    let mut c = NSQConsumerConfig::new(t.clone(), NSQChannel::new("ch").unwrap())
        .set_max_in_flight(5)
        .set_shared(cfg)
        .set_sources(NSQConsumerConfigSources::Daemons(vec![n.tcp.clone()]))
        .build();
    let mut got = Vec::new();
    while got.len() < bodies.len() {
        let m = timeout(Duration::from_secs(10), c.consume_filtered())
            .await
            .expect("message within 10 s")
            .expect("consumer open");
        got.push(m.body.clone());
        m.finish().await;
    }
    got.sort();
    let mut want = bodies.clone();
    want.sort();
    assert!(got == want, "bodies differ");
    let stats = n.stats();
    let clients = stats["topics"][0]["channels"][0]["clients"].clone();
    assert_eq!(clients.as_array().map(Vec::len), Some(1), "{stats}");
    clients[0].clone()
}

#[tokio::test]
async fn tokio_nsq_over_tls() {
    let certs = Certs::new();
    let n = start(&certs, &[]);
    let c = roundtrip(&n, "tr_tls", shared(true, None)).await;
    assert_eq!(c["tls"], true, "{c}");
    assert_eq!(
        (c["snappy"].clone(), c["deflate"].clone()),
        (false.into(), false.into())
    );
    assert!(c["tls_version"].as_str().unwrap().starts_with("TLS1."), "{c}");
    assert!(c["tls_cipher_suite"].as_str().unwrap().starts_with("TLS_"), "{c}");
}

#[tokio::test]
async fn tokio_nsq_over_tls_with_snappy() {
    let certs = Certs::new();
    let n = start(&certs, &[]);
    let c = roundtrip(
        &n,
        "tr_tls_snappy",
        shared(true, Some(NSQConfigSharedCompression::Snappy)),
    )
    .await;
    assert_eq!(
        (c["tls"].clone(), c["snappy"].clone()),
        (true.into(), true.into()),
        "{c}"
    );
}

#[tokio::test]
async fn tokio_nsq_over_tls_with_deflate() {
    let certs = Certs::new();
    let n = start(&certs, &[]);
    let deflate = NSQConfigSharedCompression::Deflate(NSQDeflateLevel::new(3).unwrap());
    let c = roundtrip(&n, "tr_tls_deflate", shared(true, Some(deflate))).await;
    assert_eq!(
        (c["tls"].clone(), c["deflate"].clone()),
        (true.into(), true.into()),
        "{c}"
    );
}

#[tokio::test]
async fn tokio_nsq_with_snappy() {
    let n = Nsqd::start(&[]);
    let c = roundtrip(
        &n,
        "tr_snappy",
        shared(false, Some(NSQConfigSharedCompression::Snappy)),
    )
    .await;
    assert_eq!(
        (c["tls"].clone(), c["snappy"].clone()),
        (false.into(), true.into()),
        "{c}"
    );
}

#[tokio::test]
async fn tokio_nsq_with_deflate() {
    let n = Nsqd::start(&["--max-deflate-level=4"]);
    let deflate = NSQConfigSharedCompression::Deflate(NSQDeflateLevel::new(9).unwrap());
    let c = roundtrip(&n, "tr_deflate", shared(false, Some(deflate))).await;
    assert_eq!(
        (c["tls"].clone(), c["deflate"].clone()),
        (false.into(), true.into()),
        "{c}"
    );
}

#[test]
fn identify_reply_reflects_switches_and_level_cap() {
    let n = Nsqd::start(&["--max-deflate-level=4", "--snappy=false"]);
    let mut c = Conn::connect(&n.tcp);
    let Frame::Response(json) = c.identify(serde_json::json!({
        "feature_negotiation": true, "snappy": true, "tls_v1": true
    })) else {
        panic!("no JSON")
    };
    let r: serde_json::Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(r["snappy"], false, "--snappy=false: {r}");
    assert_eq!(r["tls_v1"], false, "no certificate: {r}");
    assert_eq!(r["deflate_level"], 4, "{r}");
    assert_eq!(r["max_deflate_level"], 4, "{r}");
    // Not upgraded, so the plain protocol goes on.
    c.cmd_body("PUB t", b"x");
    c.expect_ok();

    let n = Nsqd::start(&[]);
    let mut c = Conn::connect(&n.tcp);
    c.cmd_body(
        "IDENTIFY",
        br#"{"feature_negotiation":true,"snappy":true,"deflate":true}"#,
    );
    assert_eq!(
        c.read_frame(),
        Some(Frame::Error(
            "E_IDENTIFY_FAILED cannot enable both deflate and snappy compression".into()
        ))
    );
}

// ------------------------------------------------------------ hand-written TLS client ----

type TlsStream = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

fn client_config(ca: &Path, cert: Option<(&Path, &Path)>) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut &std::fs::read(ca).unwrap()[..]) {
        roots.add(c.unwrap()).unwrap();
    }
    let builder =
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
    let config = match cert {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let certs = rustls_pemfile::certs(&mut &std::fs::read(cert).unwrap()[..])
                .collect::<Result<Vec<_>, _>>()
                .unwrap();
            let key = rustls_pemfile::private_key(&mut &std::fs::read(key).unwrap()[..])
                .unwrap()
                .unwrap();
            builder.with_client_auth_cert(certs, key).unwrap()
        }
    };
    Arc::new(config)
}

fn read_frame(r: &mut impl Read) -> Option<(i32, Vec<u8>)> {
    let mut hdr = [0u8; 8];
    r.read_exact(&mut hdr).ok()?;
    let size = u32::from_be_bytes(hdr[0..4].try_into().unwrap()) as usize;
    let kind = i32::from_be_bytes(hdr[4..8].try_into().unwrap());
    let mut data = vec![0u8; size.checked_sub(4)?];
    r.read_exact(&mut data).ok()?;
    Some((kind, data))
}

fn send_body(w: &mut impl Write, line: &str, body: &[u8]) {
    let mut out = format!("{line}\n").into_bytes();
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(body);
    w.write_all(&out).unwrap();
    w.flush().unwrap();
}

/// IDENTIFY asking for TLS, the handshake, and the encrypted `OK`; Err when any step fails.
fn tls_connect(addr: &str, config: Arc<rustls::ClientConfig>) -> Result<TlsStream, String> {
    let mut tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    tcp.write_all(b"  V2").unwrap();
    send_body(
        &mut tcp,
        "IDENTIFY",
        br#"{"feature_negotiation":true,"tls_v1":true}"#,
    );
    let (kind, json) = read_frame(&mut tcp).ok_or("no IDENTIFY reply")?;
    assert_eq!(kind, 0, "{}", String::from_utf8_lossy(&json));
    let reply: serde_json::Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(reply["tls_v1"], true, "{reply}");
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(config, name).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    match read_frame(&mut tls) {
        Some((0, ok)) if ok == b"OK" => Ok(tls),
        other => Err(format!("no OK after the handshake: {other:?}")),
    }
}

fn publish_over(tls: &mut TlsStream, topic: &str) -> Option<(i32, Vec<u8>)> {
    send_body(tls, &format!("PUB {topic}"), b"hello");
    read_frame(tls)
}

#[test]
fn client_certificate_required_and_verified() {
    let certs = Certs::new();
    let ca = format!("--tls-root-ca-file={}", certs.ca.display());
    let n = start(&certs, &["--tls-client-auth-policy=require-verify", &ca]);
    let good = client_config(&certs.ca, Some((&certs.client_cert, &certs.client_key)));
    let mut tls = tls_connect(&n.tcp, good).expect("CA-signed client certificate accepted");
    assert_eq!(publish_over(&mut tls, "certs"), Some((0, b"OK".to_vec())));

    let none = client_config(&certs.ca, None);
    assert!(
        tls_connect(&n.tcp, none).is_err(),
        "no client certificate must be refused"
    );
    let rogue = client_config(&certs.ca, Some((&certs.rogue_cert, &certs.rogue_key)));
    assert!(tls_connect(&n.tcp, rogue).is_err(), "unknown CA must be refused");

    // The policy forces --tls-required: a plain connection may only IDENTIFY.
    let mut c = Conn::connect(&n.tcp);
    c.cmd_body("PUB certs", b"x");
    assert_eq!(
        c.read_frame(),
        Some(Frame::Error(
            "E_INVALID cannot PUB in current state (TLS required)".into()
        ))
    );
}

#[test]
fn client_certificate_required_but_any_ca() {
    let certs = Certs::new();
    let n = start(&certs, &["--tls-client-auth-policy=require"]);
    let rogue = client_config(&certs.ca, Some((&certs.rogue_cert, &certs.rogue_key)));
    let mut tls = tls_connect(&n.tcp, rogue).expect("any certificate accepted under 'require'");
    assert_eq!(publish_over(&mut tls, "anyca"), Some((0, b"OK".to_vec())));
    let none = client_config(&certs.ca, None);
    assert!(
        tls_connect(&n.tcp, none).is_err(),
        "no client certificate must be refused"
    );
}

#[test]
fn tls_min_version_13_refuses_12() {
    let certs = Certs::new();
    let n = start(&certs, &["--tls-min-version=tls1.3"]);
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut &std::fs::read(&certs.ca).unwrap()[..]) {
        roots.add(c.unwrap()).unwrap();
    }
    let tls12_only =
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(&[&rustls::version::TLS12])
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
    assert!(tls_connect(&n.tcp, Arc::new(tls12_only)).is_err());
    let mut tls = tls_connect(&n.tcp, client_config(&certs.ca, None)).unwrap();
    assert_eq!(
        tls.conn.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
    assert_eq!(publish_over(&mut tls, "v13"), Some((0, b"OK".to_vec())));
}

/// One HTTP/1.0 request over TLS; returns status and body.
fn https_get(addr: &str, ca: &Path, path: &str) -> (u16, String) {
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(client_config(ca, None), name).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    tls.write_all(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes())
        .unwrap();
    let mut raw = Vec::new();
    let _ = tls.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text[9..12].parse().unwrap();
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

#[test]
fn tls_required_refuses_plain_http_and_serves_https() {
    let certs = Certs::new();
    let n = start(&certs, &["--tls-required=true"]);
    let https = n.https.clone().expect("HTTPS listener logged");
    let port: u16 = https.rsplit(':').next().unwrap().parse().unwrap();
    let (status, body) = nsqrs_testkit::http_request(&n.http, "GET", "/stats?format=json", b"").unwrap();
    assert_eq!(status, 403);
    assert_eq!(
        String::from_utf8_lossy(&body),
        format!(r#"{{"message": "TLS_REQUIRED", "https_port": {port}}}"#)
    );
    assert_eq!(https_get(&https, &certs.ca, "/ping"), (200, "OK".to_string()));
    let (status, body) = https_get(&https, &certs.ca, "/stats?format=json");
    assert_eq!(status, 200, "{body}");

    // tcp-https: TCP must be TLS, plain HTTP is fine.
    let n = start(&certs, &["--tls-required=tcp-https"]);
    assert_eq!(n.get("/ping"), (200, "OK".to_string()));
    let mut c = Conn::connect(&n.tcp);
    c.cmd("SUB a b");
    assert_eq!(
        c.read_frame(),
        Some(Frame::Error(
            "E_INVALID cannot SUB in current state (TLS required)".into()
        ))
    );
    let mut tls = tls_connect(&n.tcp, client_config(&certs.ca, None)).unwrap();
    assert_eq!(publish_over(&mut tls, "ok"), Some((0, b"OK".to_vec())));
}

#[test]
fn handshake_garbage_does_not_hurt_the_server() {
    let certs = Certs::new();
    let n = start(&certs, &[]);
    for junk in [
        &b"not tls at all\n"[..],
        &[0x16, 0x03, 0x01, 0xff, 0xff, 0, 0, 0][..],
        b"",
    ] {
        let mut tcp = TcpStream::connect(&n.tcp).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        tcp.write_all(b"  V2").unwrap();
        send_body(
            &mut tcp,
            "IDENTIFY",
            br#"{"feature_negotiation":true,"tls_v1":true,"snappy":true}"#,
        );
        read_frame(&mut tcp).unwrap();
        tcp.write_all(junk).unwrap();
        drop(tcp);
    }
    // Snappy garbage after a plain negotiation.
    let n2 = Nsqd::start(&[]);
    let mut c = Conn::connect(&n2.tcp);
    c.identify(serde_json::json!({"feature_negotiation": true, "snappy": true}));
    c.send(&[
        0xff, 0x06, 0, 0, b's', b'N', b'a', b'P', b'p', b'Y', 0x00, 0xff, 0xff, 0x00, 1, 2,
    ]);
    wait_for(
        "the garbage sender to be dropped",
        Duration::from_secs(20),
        || n2.stats()["producers"].as_array().is_none_or(|p| p.is_empty()),
    );
    assert_eq!(n.get("/ping"), (200, "OK".to_string()));
    assert_eq!(n2.get("/ping"), (200, "OK".to_string()));
}
