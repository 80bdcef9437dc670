//! The publisher learns the message ID (NSQ never tells it, nsqio/nsq#633): an IDENTIFY key
//! turns `OK` into `OK <id>…` on TCP, HTTP publishes carry a response header, and
//! `nsqrs pub` prints the IDs. Clients that do not ask see exactly nsqd's replies.

use nsqrs_testkit::{Frame, Nsqd};
use serde_json::json;

fn consume_ids(n: &Nsqd, topic: &str, count: usize) -> Vec<String> {
    let mut c = n.connect();
    c.subscribe(topic, "c", 100);
    (0..count)
        .map(|_| match c.read_frame() {
            Some(Frame::Message { id, .. }) => {
                c.cmd(&format!("FIN {id}"));
                id
            }
            other => panic!("{other:?}"),
        })
        .collect()
}

#[test]
fn tcp_publishers_that_ask_get_ids() {
    let n = Nsqd::start(&[]);
    let mut p = n.connect();
    let Frame::Response(reply) = p.identify(json!({"feature_negotiation": true, "message_id_reply": true}))
    else {
        panic!("IDENTIFY failed")
    };
    let reply: serde_json::Value = serde_json::from_slice(&reply).unwrap();
    assert_eq!(reply["message_id_reply"], true);
    p.cmd_body("PUB ids", b"one");
    let Some(Frame::Response(one)) = p.read_frame() else {
        panic!()
    };
    p.mpub("ids", &[b"two".to_vec(), b"three".to_vec()]);
    let Some(Frame::Response(more)) = p.read_frame() else {
        panic!()
    };
    let mut told: Vec<String> = String::from_utf8(one)
        .unwrap()
        .split(' ')
        .map(str::to_string)
        .collect();
    assert_eq!(told.remove(0), "OK");
    let more = String::from_utf8(more).unwrap();
    let mut more: Vec<String> = more.split(' ').map(str::to_string).collect();
    assert_eq!(more.remove(0), "OK");
    told.extend(more);
    assert_eq!(told.len(), 3);
    assert_eq!(consume_ids(&n, "ids", 3), told);

    // A client that does not ask sees nsqd's exact replies.
    let mut plain = n.connect();
    let Frame::Response(reply) = plain.identify(json!({"feature_negotiation": true})) else {
        panic!()
    };
    let reply: serde_json::Value = serde_json::from_slice(&reply).unwrap();
    assert!(reply.get("message_id_reply").is_none(), "{reply}");
    plain.cmd_body("PUB ids", b"four");
    plain.expect_ok();
}

#[test]
fn http_publishes_carry_ids_in_headers() {
    let n = Nsqd::start(&[]);
    let (code, head, body) = nsqrs_testkit::http_exchange(&n.http, "POST", "/pub?topic=h", b"one").unwrap();
    assert_eq!((code, body.as_slice()), (200, b"OK".as_slice()));
    let id = header(&head, "x-nsqrs-message-id");
    let (_, head, _) =
        nsqrs_testkit::http_exchange(&n.http, "POST", "/mpub?topic=h", b"two\nthree\n").unwrap();
    let ids = header(&head, "x-nsqrs-message-ids");
    let mut told = vec![id];
    told.extend(ids.split(',').map(str::to_string));
    assert_eq!(consume_ids(&n, "h", 3), told);

    // Large batches leave the header out unless asked (clients limit header sizes).
    let big: Vec<u8> = (0..600).flat_map(|i| format!("m{i}\n").into_bytes()).collect();
    let (_, head, _) = nsqrs_testkit::http_exchange(&n.http, "POST", "/mpub?topic=big", &big).unwrap();
    assert!(!head.to_ascii_lowercase().contains("x-nsqrs-message-ids"));
    let (_, head, _) =
        nsqrs_testkit::http_exchange(&n.http, "POST", "/mpub?topic=big&message_ids=true", &big).unwrap();
    assert_eq!(header(&head, "x-nsqrs-message-ids").split(',').count(), 600);
}

fn header(head: &str, name: &str) -> String {
    head.lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim().eq_ignore_ascii_case(name)).then(|| v.trim().to_string())
        })
        .unwrap_or_else(|| panic!("no {name} in {head}"))
}

#[test]
fn nsqrs_pub_prints_the_ids() {
    let n = Nsqd::start(&[]);
    let out = std::process::Command::new(nsqrs_testkit::bin())
        .args([
            "pub",
            "--topic",
            "cli",
            "--nsqd-tcp-address",
            &n.tcp,
            "first",
            "second",
        ])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    assert_eq!(lines[2], format!("OK 2 {}", n.tcp));
    assert_eq!(
        consume_ids(&n, "cli", 2),
        vec![lines[0].to_string(), lines[1].to_string()]
    );
}
