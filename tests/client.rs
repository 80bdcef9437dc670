//! The client library against the real broker: producer pipelining, consumer RDY sharing,
//! FIN/REQ, max attempts, backoff, heartbeats, lookupd discovery (against a stand-in lookupd
//! serving `/lookup`) and the graceful stop that waits for slow handlers.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use nsqrs::client::{Config, Consumer, Producer, Publish};
use nsqrs_testkit::{wait_for_async, Nsqd};

fn quiet() -> Config {
    Config {
        log_connections: false,
        ..Config::default()
    }
}

fn channel_stats(n: &Nsqd, topic: &str, channel: &str) -> serde_json::Value {
    let stats = n.stats();
    for t in stats["topics"].as_array().into_iter().flatten() {
        if t["topic_name"] == topic {
            for c in t["channels"].as_array().into_iter().flatten() {
                if c["channel_name"] == channel {
                    return c.clone();
                }
            }
        }
    }
    serde_json::Value::Null
}

fn topic_count(n: &Nsqd, topic: &str) -> u64 {
    n.stats()["topics"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|t| t["topic_name"] == topic)
        .map(|t| t["message_count"].as_u64().unwrap())
        .unwrap_or(0)
}

async fn recv(c: &Consumer) -> nsqrs::client::Message {
    tokio::time::timeout(Duration::from_secs(10), c.recv())
        .await
        .expect("message within 10 s")
        .expect("consumer running")
}

#[tokio::test]
async fn producer_pipelines_pub_mpub_dpub() {
    let n = Nsqd::start(&[]);
    let p = Producer::connect(&n.tcp, quiet()).await.unwrap();
    let r = p.publish("t", "one").await.unwrap();
    // nsqrs answers `OK <id>` to clients that ask, as this one does.
    assert_eq!((r.count, r.ids.len()), (1, 1));
    let r = p
        .multi_publish("t", vec![Bytes::from("a"), Bytes::from("b"), Bytes::from("c")])
        .await
        .unwrap();
    assert_eq!((r.count, r.ids.len()), (3, 3));
    assert!(
        r.ids.windows(2).all(|w| w[0] < w[1]),
        "IDs of one MPUB are increasing"
    );
    p.deferred_publish("t", Duration::from_secs(60), "later")
        .await
        .unwrap();

    // Many outstanding at once on one connection, answered in order.
    let mut pending = Vec::new();
    for i in 0..100 {
        pending.push(
            p.submit(Publish::Pub {
                topic: "t".into(),
                body: Bytes::from(format!("m{i}")),
            })
            .await
            .unwrap(),
        );
    }
    for reply in pending {
        assert_eq!(reply.await.unwrap().count, 1);
    }
    let err = p.publish("bad!topic", "x").await.unwrap_err();
    assert!(err.to_string().starts_with("E_BAD_TOPIC"), "{err}");
    // The connection nsqd closed after the error is made again on the next publish.
    p.publish("t", "after").await.unwrap();
    p.stop().await;
    assert_eq!(topic_count(&n, "t"), 1 + 3 + 1 + 100 + 1);
}

#[tokio::test]
async fn producer_reports_a_dead_address() {
    let err = Producer::connect("127.0.0.1:1", quiet()).await.err().unwrap();
    assert!(err.to_string().contains("127.0.0.1:1"), "{err}");
}

#[tokio::test]
async fn consumer_shares_rdy_across_nsqd_and_finishes() {
    let a = Nsqd::start(&[]);
    let b = Nsqd::start(&[]);
    for n in [&a, &b] {
        let p = Producer::connect(&n.tcp, quiet()).await.unwrap();
        p.multi_publish("t", (0..5).map(|i| Bytes::from(format!("{i}"))).collect())
            .await
            .unwrap();
        p.stop().await;
    }
    let c = Consumer::new(
        "t",
        "c",
        Config {
            max_in_flight: 5,
            ..quiet()
        },
    )
    .unwrap();
    c.connect_to_nsqd(&a.tcp).await.unwrap();
    c.connect_to_nsqd(&b.tcp).await.unwrap();
    let mut got = Vec::new();
    for _ in 0..10 {
        let m = recv(&c).await;
        got.push((m.nsqd_address.clone(), m.body.clone()));
        m.finish();
    }
    assert_eq!(got.iter().filter(|(a2, _)| *a2 == a.tcp).count(), 5);
    wait_for_async("FINs to land", Duration::from_secs(20), || {
        channel_stats(&a, "t", "c")["in_flight_count"] == 0
            && channel_stats(&b, "t", "c")["in_flight_count"] == 0
    })
    .await;
    // 5 over two connections: 3 + 2.
    let mut rdys: Vec<i64> = [&a, &b]
        .iter()
        .map(|n| {
            channel_stats(n, "t", "c")["clients"][0]["ready_count"]
                .as_i64()
                .unwrap()
        })
        .collect();
    rdys.sort();
    assert_eq!(rdys, vec![2, 3]);
    assert_eq!(c.stats().finished, 10);
    c.stop().await;
}

#[tokio::test]
async fn messages_past_max_attempts_are_given_up() {
    let n = Nsqd::start(&[]);
    let p = Producer::connect(&n.tcp, quiet()).await.unwrap();
    p.publish("t", "poison").await.unwrap();
    let c = Consumer::new(
        "t",
        "c",
        Config {
            max_in_flight: 1,
            max_attempts: 2,
            backoff_multiplier: Duration::from_millis(10),
            ..quiet()
        },
    )
    .unwrap();
    let given_up = Arc::new(AtomicUsize::new(0));
    let g = given_up.clone();
    c.on_give_up(move |m| {
        assert_eq!(m.attempts, 3);
        g.fetch_add(1, Ordering::SeqCst);
    });
    c.connect_to_nsqd(&n.tcp).await.unwrap();
    for attempt in 1..=2 {
        let m = recv(&c).await;
        assert_eq!(m.attempts, attempt);
        m.requeue(Some(Duration::ZERO));
    }
    wait_for_async(
        "the third delivery to be given up",
        Duration::from_secs(20),
        || given_up.load(Ordering::SeqCst) == 1,
    )
    .await;
    wait_for_async("the FIN to land", Duration::from_secs(20), || {
        channel_stats(&n, "t", "c")["depth"] == 0 && channel_stats(&n, "t", "c")["in_flight_count"] == 0
    })
    .await;
    assert_eq!(c.stats().gave_up, 1);
    c.stop().await;
    p.stop().await;
}

#[tokio::test]
async fn a_failure_backs_off_then_recovers() {
    let n = Nsqd::start(&[]);
    let p = Producer::connect(&n.tcp, quiet()).await.unwrap();
    p.multi_publish("t", vec![Bytes::from("1"), Bytes::from("2")])
        .await
        .unwrap();
    let c = Consumer::new(
        "t",
        "c",
        Config {
            max_in_flight: 10,
            backoff_multiplier: Duration::from_secs(2),
            ..quiet()
        },
    )
    .unwrap();
    c.connect_to_nsqd(&n.tcp).await.unwrap();
    let first = recv(&c).await;
    let second = recv(&c).await;
    first.requeue(Some(Duration::ZERO));
    assert_eq!(c.stats().backoff_level, 1);
    // During the backoff window nothing is ready.
    wait_for_async("RDY 0 during backoff", Duration::from_secs(20), || {
        channel_stats(&n, "t", "c")["clients"][0]["ready_count"] == 0
    })
    .await;
    second.finish();
    // After the window: RDY 1 to test, the success ends the backoff, full RDY returns.
    let again = recv(&c).await;
    assert_eq!(again.attempts, 2);
    again.finish();
    wait_for_async("full RDY after recovery", Duration::from_secs(20), || {
        channel_stats(&n, "t", "c")["clients"][0]["ready_count"] == 10
    })
    .await;
    assert_eq!(c.stats().backoff_level, 0);
    c.stop().await;
    p.stop().await;
}

#[tokio::test]
async fn heartbeats_keep_an_idle_consumer_connected() {
    let n = Nsqd::start(&[]);
    let c = Consumer::new(
        "t",
        "c",
        Config {
            heartbeat_interval: Duration::from_secs(1),
            ..quiet()
        },
    )
    .unwrap();
    c.connect_to_nsqd(&n.tcp).await.unwrap();
    // nsqd drops a client silent for two heartbeat intervals.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    assert_eq!(channel_stats(&n, "t", "c")["client_count"], 1);
    let p = Producer::connect(&n.tcp, quiet()).await.unwrap();
    p.publish("t", "still here").await.unwrap();
    recv(&c).await.finish();
    c.stop().await;
    p.stop().await;
}

#[tokio::test]
async fn graceful_stop_waits_for_slow_handlers() {
    let n = Nsqd::start(&[]);
    let p = Producer::connect(&n.tcp, quiet()).await.unwrap();
    p.multi_publish("t", (0..10).map(|i| Bytes::from(format!("{i}"))).collect())
        .await
        .unwrap();
    let c = Consumer::new(
        "t",
        "c",
        Config {
            max_in_flight: 10,
            ..quiet()
        },
    )
    .unwrap();
    let started = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let (s, d) = (started.clone(), done.clone());
    c.add_handlers(3, move |m| {
        let (s, d) = (s.clone(), d.clone());
        async move {
            s.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(1500)).await;
            m.finish();
            d.fetch_add(1, Ordering::SeqCst);
        }
    });
    c.connect_to_nsqd(&n.tcp).await.unwrap();
    wait_for_async("three handlers busy", Duration::from_secs(20), || {
        started.load(Ordering::SeqCst) == 3
    })
    .await;
    let t0 = Instant::now();
    c.stop().await;
    assert!(
        t0.elapsed() >= Duration::from_millis(1000),
        "stop returned before handlers finished"
    );
    assert_eq!(done.load(Ordering::SeqCst), 3, "every started handler finished");
    assert_eq!(
        started.load(Ordering::SeqCst),
        3,
        "no message was taken after stop"
    );
    let ch = channel_stats(&n, "t", "c");
    // The 3 handled are gone, the other 7 were given back at once, not left to time out.
    assert_eq!(ch["depth"], 7, "{ch}");
    assert_eq!(ch["in_flight_count"], 0, "{ch}");
    wait_for_async("connection closed", Duration::from_secs(20), || {
        channel_stats(&n, "t", "c")["client_count"] == 0
    })
    .await;
    p.stop().await;
}

/// A stand-in nsqlookupd answering `/lookup` with whatever producers the test sets.
async fn fake_lookupd(producers: Arc<parking_lot::Mutex<Vec<String>>>) -> String {
    use axum::{extract::State, http::HeaderMap, routing::get, Json, Router};
    async fn lookup(
        State(p): State<Arc<parking_lot::Mutex<Vec<String>>>>,
        headers: HeaderMap,
    ) -> Json<serde_json::Value> {
        assert_eq!(
            headers.get("accept").and_then(|v| v.to_str().ok()),
            Some("application/vnd.nsq; version=1.0")
        );
        let list: Vec<serde_json::Value> = p
            .lock()
            .iter()
            .map(|addr| {
                let (host, port) = addr.rsplit_once(':').unwrap();
                serde_json::json!({"broadcast_address": host, "tcp_port": port.parse::<u16>().unwrap(), "http_port": 0})
            })
            .collect();
        Json(serde_json::json!({"channels": [], "producers": list}))
    }
    let app = Router::new().route("/lookup", get(lookup)).with_state(producers);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

#[tokio::test]
async fn lookupd_polling_follows_producers() {
    let a = Nsqd::start(&[]);
    let b = Nsqd::start(&[]);
    let producers = Arc::new(parking_lot::Mutex::new(vec![a.tcp.clone()]));
    let lookupd = fake_lookupd(producers.clone()).await;
    let c = Consumer::new(
        "t",
        "c",
        Config {
            max_in_flight: 10,
            lookupd_poll_interval: Duration::from_millis(200),
            ..quiet()
        },
    )
    .unwrap();
    c.connect_to_lookupd(&format!("http://{lookupd}")).await.unwrap();
    assert_eq!(
        c.connections(),
        vec![a.tcp.clone()],
        "the first query runs at once"
    );

    *producers.lock() = vec![a.tcp.clone(), b.tcp.clone()];
    wait_for_async("connected to the new producer", Duration::from_secs(20), || {
        c.connections().len() == 2
    })
    .await;

    *producers.lock() = vec![b.tcp.clone()];
    wait_for_async("dropped the gone producer", Duration::from_secs(20), || {
        c.connections() == vec![b.tcp.clone()]
    })
    .await;
    wait_for_async("a sees no consumer", Duration::from_secs(20), || {
        channel_stats(&a, "t", "c")["client_count"] == 0
    })
    .await;

    let p = Producer::connect(&b.tcp, quiet()).await.unwrap();
    p.publish("t", "via lookupd").await.unwrap();
    let m = recv(&c).await;
    assert_eq!(&m.body[..], b"via lookupd");
    m.finish();
    c.stop().await;
    p.stop().await;
}
