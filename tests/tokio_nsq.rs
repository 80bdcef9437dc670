//! Compatibility with tokio-nsq 0.14 (a third-party Rust client): PUB, MPUB, DPUB, two
//! channels, REQ with attempts, and TOUCH, against the real broker binary.

use std::time::{Duration, Instant};

use nsqrs_testkit::{wait_for_async, Nsqd};
use tokio::time::timeout;
use tokio_nsq::{
    NSQChannel, NSQConsumer, NSQConsumerConfig, NSQConsumerConfigSources, NSQEvent, NSQProducer,
    NSQProducerConfig, NSQRequeueDelay, NSQTopic,
};

async fn producer(n: &Nsqd) -> NSQProducer {
    let mut p = NSQProducerConfig::new(n.tcp.clone()).build();
    match timeout(Duration::from_secs(10), p.consume()).await {
        Ok(Some(NSQEvent::Healthy())) => p,
        other => panic!("producer did not become healthy: {other:?}"),
    }
}

async fn acked(p: &mut NSQProducer) {
    match timeout(Duration::from_secs(10), p.consume()).await {
        Ok(Some(NSQEvent::Ok())) => {}
        other => panic!("publish not acknowledged: {other:?}"),
    }
}

fn consumer(n: &Nsqd, topic: &str, channel: &str, max_in_flight: u32) -> NSQConsumer {
    NSQConsumerConfig::new(NSQTopic::new(topic).unwrap(), NSQChannel::new(channel).unwrap())
        .set_max_in_flight(max_in_flight)
        .set_sources(NSQConsumerConfigSources::Daemons(vec![n.tcp.clone()]))
        .build()
}

async fn next(c: &mut NSQConsumer) -> tokio_nsq::NSQMessage {
    timeout(Duration::from_secs(10), c.consume_filtered())
        .await
        .expect("message within 10 s")
        .expect("consumer open")
}

#[tokio::test]
async fn publish_and_consume_on_two_channels() {
    let n = Nsqd::start(&[]);
    let topic = NSQTopic::new("tn_orders").unwrap();
    let mut a = consumer(&n, "tn_orders", "billing", 10);
    let mut b = consumer(&n, "tn_orders", "audit", 10);
    // Let both subscriptions exist before publishing, so each channel gets every message.
    wait_for_async("both consumers to subscribe", Duration::from_secs(20), || {
        n.topic_stats("tn_orders")["channels"]
            .as_array()
            .map_or(0, |c| c.len())
            >= 2
    })
    .await;
    let mut p = producer(&n).await;
    p.publish(&topic, b"one".to_vec()).await.unwrap();
    acked(&mut p).await;
    p.publish_multiple(&topic, vec![b"two".to_vec(), b"three".to_vec()])
        .await
        .unwrap();
    acked(&mut p).await;
    for c in [&mut a, &mut b] {
        let mut bodies = Vec::new();
        for _ in 0..3 {
            let m = next(c).await;
            assert_eq!(m.attempt, 1);
            bodies.push(String::from_utf8(m.body.clone()).unwrap());
            m.finish().await;
        }
        bodies.sort();
        assert_eq!(bodies, vec!["one", "three", "two"]);
    }
}

#[tokio::test]
async fn deferred_publish_waits() {
    let n = Nsqd::start(&[]);
    let topic = NSQTopic::new("tn_later").unwrap();
    let mut c = consumer(&n, "tn_later", "ch", 1);
    let mut p = producer(&n).await;
    let sent = Instant::now();
    p.publish_deferred(&topic, b"later".to_vec(), 1500).await.unwrap();
    acked(&mut p).await;
    let m = next(&mut c).await;
    let waited = sent.elapsed();
    assert_eq!(m.body, b"later");
    assert!(
        waited >= Duration::from_millis(1400),
        "DPUB delivered after {waited:?}"
    );
    m.finish().await;
}

#[tokio::test]
async fn requeue_counts_attempts_and_touch_keeps_message() {
    let n = Nsqd::start(&["--msg-timeout=1500ms"]);
    let topic = NSQTopic::new("tn_retry").unwrap();
    let mut c = consumer(&n, "tn_retry", "ch", 1);
    let mut p = producer(&n).await;
    p.publish(&topic, b"retry-me".to_vec()).await.unwrap();
    acked(&mut p).await;
    let m = next(&mut c).await;
    assert_eq!(m.attempt, 1);
    m.requeue(NSQRequeueDelay::NoDelay).await;
    let m = next(&mut c).await;
    assert_eq!(m.attempt, 2);
    // Keep it in flight past its 1.5 s timeout by touching it.
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(600)).await;
        m.touch().await;
    }
    let stats = n.stats();
    let ch = &stats["topics"][0]["channels"][0];
    assert_eq!(ch["timeout_count"], 0, "touched message timed out: {ch}");
    assert_eq!(ch["in_flight_count"], 1);
    assert_eq!(ch["requeue_count"], 1);
    m.finish().await;
}
