//! nsqd's side of discovery, checked byte for byte: a V1 listener in the test records every
//! command the broker sends (IDENTIFY, REGISTER, UNREGISTER, PING) and serves `/channels`,
//! so the registration sequence, channel pre-creation, re-registration after a lookupd
//! restart and runtime reconfiguration are all observable.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nsqrs_testkit::{wait_for, Nsqd};

type Log = Arc<Mutex<Vec<String>>>;

/// A recording lookupd: returns its TCP address; `http` is the address served as its
/// HTTP port (for `/channels`).
fn recorder(log: Log, http_port: u16) -> (String, Arc<Mutex<Vec<TcpStream>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let conns: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
    let keep = conns.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            keep.lock().unwrap().push(stream.try_clone().unwrap());
            let log = log.clone();
            std::thread::spawn(move || serve_v1(stream, log, http_port));
        }
    });
    (addr, conns)
}

fn reply(s: &mut TcpStream, data: &[u8]) {
    let mut out = (data.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(data);
    let _ = s.write_all(&out);
}

fn serve_v1(stream: TcpStream, log: Log, http_port: u16) {
    let mut w = stream.try_clone().unwrap();
    let mut r = BufReader::new(stream);
    let mut magic = [0u8; 4];
    if r.read_exact(&mut magic).is_err() || &magic != b"  V1" {
        return;
    }
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let line = line.trim_end().to_string();
        if line == "IDENTIFY" {
            let mut len = [0u8; 4];
            r.read_exact(&mut len).unwrap();
            let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
            r.read_exact(&mut body).unwrap();
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
            log.lock().unwrap().push(format!(
                "IDENTIFY {}",
                v["broadcast_address"].as_str().unwrap_or("")
            ));
            let info = serde_json::json!({"tcp_port": 1, "http_port": http_port, "version": "1.3.0",
                "broadcast_address": "127.0.0.1", "hostname": "recorder"});
            reply(&mut w, info.to_string().as_bytes());
        } else {
            log.lock().unwrap().push(line);
            reply(&mut w, b"OK");
        }
    }
}

/// Serves `{"channels": [...]}` for any request.
fn channels_server(channels: &'static str) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            let mut buf = [0u8; 2048];
            let _ = s.read(&mut buf);
            let body = format!(r#"{{"channels":{channels}}}"#);
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    port
}

/// Waits until the recorder has seen exactly the line `what`.
fn wait_for_line(log: &Log, what: &str) {
    wait_for(
        &format!("the lookupd to receive {what:?}"),
        Duration::from_secs(20),
        || log.lock().unwrap().iter().any(|l| l == what),
    );
}

#[test]
fn registers_precreates_reregisters_and_reconfigures() {
    let log: Log = Arc::default();
    let http_port = channels_server(r#"["pre1","pre2","eph#ephemeral"]"#);
    let (addr, conns) = recorder(log.clone(), http_port);
    // A topic that exists before start-up is registered on connect.
    let tmp = tempfile::tempdir().unwrap();
    {
        let n = Nsqd::start_in(tmp.path(), &[]);
        n.post("/topic/create?topic=early", b"");
        let _ = n.terminate();
    }
    let n = Nsqd::start_in(
        tmp.path(),
        &[
            &format!("--lookupd-tcp-address={addr}"),
            "--broadcast-address=10.1.2.3",
        ],
    );
    wait_for_line(&log, "IDENTIFY 10.1.2.3");
    wait_for_line(&log, "REGISTER early");

    // A new topic: registered, then lookupd's channels are pre-created and get its messages.
    assert_eq!(n.post("/pub?topic=reg", b"first").0, 200);
    wait_for_line(&log, "REGISTER reg");
    wait_for_line(&log, "REGISTER reg pre1");
    wait_for_line(&log, "REGISTER reg pre2");
    let stats = n.stats();
    let topic = stats["topics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["topic_name"] == "reg")
        .unwrap()
        .clone();
    let names: Vec<&str> = topic["channels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["channel_name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        vec!["pre1", "pre2"],
        "ephemeral channels are never pre-created"
    );
    for c in topic["channels"].as_array().unwrap() {
        assert_eq!(c["depth"], 1, "pre-created channel missed the first message: {c}");
    }

    // Channel and topic deletion unregister.
    n.post("/channel/delete?topic=reg&channel=pre1", b"");
    wait_for_line(&log, "UNREGISTER reg pre1");
    n.post("/topic/delete?topic=early", b"");
    wait_for_line(&log, "UNREGISTER early");

    // The lookupd "restarts": the broker reconnects and registers everything again.
    log.lock().unwrap().clear();
    for c in conns.lock().unwrap().drain(..) {
        let _ = c.shutdown(std::net::Shutdown::Both);
    }
    wait_for_line(&log, "IDENTIFY 10.1.2.3");
    wait_for_line(&log, "REGISTER reg pre2");

    // Runtime reconfiguration: an empty list drops the peer.
    let (code, body) =
        nsqrs_testkit::http_request(&n.http, "PUT", "/config/nsqlookupd_tcp_addresses", b"[]").unwrap();
    assert_eq!(
        (code, String::from_utf8_lossy(&body).to_string()),
        (200, "[]".to_string())
    );
    assert_eq!(n.config("nsqlookupd_tcp_addresses"), serde_json::json!([]));
    log.lock().unwrap().clear();
    n.post("/topic/create?topic=unheard", b"");
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !log.lock().unwrap().iter().any(|l| l.contains("unheard")),
        "{:?}",
        log.lock().unwrap()
    );
    let (code, _) =
        nsqrs_testkit::http_request(&n.http, "PUT", "/config/nsqlookupd_tcp_addresses", b"not json").unwrap();
    assert_eq!(code, 400);
}
