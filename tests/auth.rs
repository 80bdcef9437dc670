//! AUTH against an nsqauthd-style server (tests/common/auth_server.rs): what nsqd sends it (GET and POST,
//! remote_ip, tls, secret, common_name), the identity reply, per-topic/channel grants and
//! refusals with nsqd's exact errors, TTL re-fetch, and tokio-nsq authenticating.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use nsqrs_testkit::auth_server::AuthServer;
use nsqrs_testkit::{Conn, Frame, Nsqd};

fn auth(c: &mut Conn, secret: &str) -> Frame {
    c.cmd_body("AUTH", secret.as_bytes());
    c.read_frame().unwrap()
}

fn err(s: &str) -> Option<Frame> {
    Some(Frame::Error(s.into()))
}

#[test]
fn grants_and_refusals_per_topic_and_channel() {
    let a = AuthServer::start();
    let n = Nsqd::start(&[&format!("--auth-http-address={}", a.addr)]);

    let mut c = Conn::connect(&n.tcp);
    let Frame::Response(json) = c.identify(serde_json::json!({"feature_negotiation": true})) else {
        panic!()
    };
    let r: serde_json::Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(r["auth_required"], true);
    c.cmd_body("PUB allowed_t", b"x");
    assert_eq!(c.read_frame(), err("E_AUTH_FIRST AUTH required before PUB"));

    let mut c = Conn::connect(&n.tcp);
    c.cmd("SUB allowed_t ch");
    assert_eq!(c.read_frame(), err("E_AUTH_FIRST AUTH required before SUB"));

    let mut c = Conn::connect(&n.tcp);
    assert_eq!(
        auth(&mut c, "wrong"),
        Frame::Error("E_AUTH_FAILED AUTH failed".into())
    );
    let mut c = Conn::connect(&n.tcp);
    assert_eq!(
        auth(&mut c, "none"),
        Frame::Error("E_UNAUTHORIZED AUTH no authorizations found".into())
    );

    let mut c = Conn::connect(&n.tcp);
    let Frame::Response(json) = auth(&mut c, "good") else {
        panic!()
    };
    let r: serde_json::Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(
        r,
        serde_json::json!({"identity":"alice","identity_url":"http://id/alice","permission_count":2})
    );
    c.cmd_body("PUB allowed_t", b"x");
    c.expect_ok();
    c.mpub("allowed_t", &[b"y".to_vec()]);
    c.expect_ok();
    c.cmd_body("DPUB allowed_t 10", b"z");
    c.expect_ok();
    assert_eq!(
        auth(&mut c, "good"),
        Frame::Error("E_INVALID AUTH already set".into())
    );

    let mut c = Conn::connect(&n.tcp);
    auth(&mut c, "good");
    c.cmd_body("PUB readonly", b"x");
    assert_eq!(
        c.read_frame(),
        err(r#"E_UNAUTHORIZED AUTH failed for PUB on "readonly" """#)
    );
    let mut c = Conn::connect(&n.tcp);
    auth(&mut c, "good");
    c.mpub("other", &[b"y".to_vec()]);
    assert_eq!(
        c.read_frame(),
        err(r#"E_UNAUTHORIZED AUTH failed for MPUB on "other" """#)
    );
    let mut c = Conn::connect(&n.tcp);
    auth(&mut c, "good");
    c.cmd("SUB readonly no");
    assert_eq!(
        c.read_frame(),
        err(r#"E_UNAUTHORIZED AUTH failed for SUB on "readonly" "no""#)
    );
    let mut c = Conn::connect(&n.tcp);
    auth(&mut c, "good");
    c.subscribe("readonly", "ok", 1);

    // /stats shows the identity of an authenticated client.
    let stats = n.stats();
    let readonly = stats["topics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["topic_name"] == "readonly")
        .unwrap();
    let client = &readonly["channels"][0]["clients"][0];
    assert_eq!(client["authed"], true, "{stats}");
    assert_eq!(client["auth_identity"], "alice");
    assert_eq!(client["auth_identity_url"], "http://id/alice");

    let seen = a.seen();
    let first = seen.iter().find(|s| s.params["secret"] == "good").unwrap();
    assert_eq!((first.method.as_str(), first.path.as_str()), ("GET", "/auth"));
    assert_eq!(first.params["remote_ip"], "127.0.0.1");
    assert_eq!(first.params["tls"], "false");
    assert_eq!(first.params["common_name"], "");
}

#[test]
fn post_method_full_url_and_ttl_refetch() {
    let a = AuthServer::start();
    let url = format!("--auth-http-address=http://{}/v1/check", a.addr);
    let n = Nsqd::start(&[&url, "--auth-http-request-method=post"]);
    let mut c = Conn::connect(&n.tcp);
    assert!(matches!(auth(&mut c, "short"), Frame::Response(_)));
    c.cmd_body("PUB allowed_a", b"x");
    c.expect_ok();
    assert_eq!(a.seen().len(), 1, "within the TTL nothing is re-fetched");
    std::thread::sleep(Duration::from_millis(1300));
    c.cmd_body("PUB allowed_a", b"x");
    c.expect_ok();
    let seen = a.seen();
    assert_eq!(seen.len(), 2, "expired authorization fetched again: {seen:?}");
    for s in &seen {
        assert_eq!((s.method.as_str(), s.path.as_str()), ("POST", "/v1/check"));
        assert_eq!(s.params["secret"], "short");
    }
}

#[test]
fn unreachable_auth_server_is_auth_failed() {
    // A port with nothing listening: bind, note it, close.
    let addr = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let n = Nsqd::start(&[&format!("--auth-http-address={addr}")]);
    let mut c = Conn::connect(&n.tcp);
    assert_eq!(
        auth(&mut c, "good"),
        Frame::Error("E_AUTH_FAILED AUTH failed".into())
    );
}

#[test]
fn auth_sees_tls_and_client_certificate_name() {
    let certs = nsqrs_testkit::Certs::new();
    let a = AuthServer::start();
    let mut args = certs.server_flags();
    args.push(format!("--auth-http-address={}", a.addr));
    args.push("--tls-client-auth-policy=require-verify".into());
    args.push(format!("--tls-root-ca-file={}", certs.ca.display()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let n = Nsqd::start(&refs);

    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut &std::fs::read(&certs.ca).unwrap()[..]) {
        roots.add(c.unwrap()).unwrap();
    }
    let chain = rustls_pemfile::certs(&mut &std::fs::read(&certs.client_cert).unwrap()[..])
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = rustls_pemfile::private_key(&mut &std::fs::read(&certs.client_key).unwrap()[..])
        .unwrap()
        .unwrap();
    let config =
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .unwrap();
    let mut c = Conn::connect(&n.tcp);
    let Frame::Response(_) = c.identify(serde_json::json!({"feature_negotiation": true, "tls_v1": true}))
    else {
        panic!()
    };
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, c.s.try_clone().unwrap());
    let frame = |tls: &mut rustls::StreamOwned<_, _>| {
        let mut hdr = [0u8; 8];
        tls.read_exact(&mut hdr).unwrap();
        let mut data = vec![0u8; u32::from_be_bytes(hdr[..4].try_into().unwrap()) as usize - 4];
        tls.read_exact(&mut data).unwrap();
        data
    };
    assert_eq!(frame(&mut tls), b"OK");
    tls.write_all(b"AUTH\n\x00\x00\x00\x04good").unwrap();
    let reply = frame(&mut tls);
    assert!(
        reply.starts_with(b"{\"identity\":\"alice\""),
        "{}",
        String::from_utf8_lossy(&reply)
    );
    let seen = a.seen();
    assert_eq!(seen[0].params["tls"], "true");
    assert_eq!(seen[0].params["common_name"], "test-client");
}

#[tokio::test]
async fn tokio_nsq_authenticates_and_consumes() {
    use tokio_nsq::*;
    let a = AuthServer::start();
    let n = Nsqd::start(&[&format!("--auth-http-address={}", a.addr)]);
    let cfg = NSQConfigShared::new().set_credentials(b"good".to_vec());
    let topic = NSQTopic::new("allowed_tn").unwrap();
    let mut p = NSQProducerConfig::new(n.tcp.clone())
        .set_shared(cfg.clone())
        .build();
    assert!(matches!(
        tokio::time::timeout(Duration::from_secs(10), p.consume()).await,
        Ok(Some(NSQEvent::Healthy()))
    ));
    p.publish(&topic, b"secret message".to_vec()).await.unwrap();
    assert!(matches!(
        tokio::time::timeout(Duration::from_secs(10), p.consume()).await,
        Ok(Some(NSQEvent::Ok()))
    ));
    let mut c = NSQConsumerConfig::new(topic, NSQChannel::new("ch").unwrap())
        .set_shared(cfg)
        .set_sources(NSQConsumerConfigSources::Daemons(vec![n.tcp.clone()]))
        .build();
    let m = tokio::time::timeout(Duration::from_secs(10), c.consume_filtered())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(m.body, b"secret message");
    m.finish().await;
}
