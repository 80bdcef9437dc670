//! A three-process cluster on loopback: one `nsqrs lookupd`, two `nsqrs serve` registered with
//! it, and a third-party consumer (tokio-nsq) that finds both through lookupd. Losing a broker
//! does not stop consumption from the other, and a restarted lookupd is re-populated by the
//! brokers' re-registration.

use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

use nsqrs_testkit::{wait_for, wait_for_async, Lookupd, Nsqd};
use tokio::time::timeout;
use tokio_nsq::{NSQChannel, NSQConsumerConfig, NSQConsumerConfigSources, NSQConsumerLookupConfig, NSQTopic};

fn producer_ports(lookupd: &Lookupd, topic: &str) -> BTreeSet<u64> {
    let (code, body) = lookupd.get(&format!("/lookup?topic={topic}"));
    if code != 200 {
        return BTreeSet::new();
    }
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["producers"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["tcp_port"].as_u64())
        .collect()
}

fn wait_producers(lookupd: &Lookupd, topic: &str, want: &BTreeSet<u64>) {
    wait_for(
        &format!("lookupd to list producers {want:?} of {topic}"),
        Duration::from_secs(20),
        || &producer_ports(lookupd, topic) == want,
    );
}

fn port(addr: &str) -> u64 {
    addr.rsplit(':').next().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_follows_the_cluster_through_lookupd() {
    let lookupd = Lookupd::start(&[]);
    let peer = format!("--lookupd-tcp-address={}", lookupd.tcp);
    let a = Nsqd::start(&[&peer, "--broadcast-address=127.0.0.1"]);
    let b = Nsqd::start(&[&peer, "--broadcast-address=127.0.0.1"]);
    a.post("/topic/create?topic=cl", b"");
    b.post("/topic/create?topic=cl", b"");
    wait_producers(&lookupd, "cl", &[port(&a.tcp), port(&b.tcp)].into());

    let lookup = NSQConsumerLookupConfig::new()
        .set_addresses(HashSet::from([format!("http://{}", lookupd.http)]))
        .set_poll_interval(Duration::from_millis(500));
    let mut consumer = NSQConsumerConfig::new(NSQTopic::new("cl").unwrap(), NSQChannel::new("work").unwrap())
        .set_max_in_flight(10)
        .set_sources(NSQConsumerConfigSources::Lookup(lookup))
        .build();
    for i in 0..5 {
        assert_eq!(a.post("/pub?topic=cl", format!("a{i}").as_bytes()).0, 200);
        assert_eq!(b.post("/pub?topic=cl", format!("b{i}").as_bytes()).0, 200);
    }
    let mut got = BTreeSet::new();
    while got.len() < 10 {
        let m = timeout(Duration::from_secs(15), consumer.consume_filtered())
            .await
            .unwrap_or_else(|_| panic!("only got {got:?}"))
            .unwrap();
        got.insert(String::from_utf8(m.body.clone()).unwrap());
        m.finish().await;
    }
    assert_eq!(got.iter().filter(|m| m.starts_with('a')).count(), 5);
    assert_eq!(got.iter().filter(|m| m.starts_with('b')).count(), 5);

    // One broker dies: lookupd forgets it, and the consumer keeps reading from the other.
    let b_port = port(&b.tcp);
    let _ = a.kill9();
    wait_producers(&lookupd, "cl", &[b_port].into());
    for i in 5..10 {
        assert_eq!(b.post("/pub?topic=cl", format!("b{i}").as_bytes()).0, 200);
    }
    let mut after = BTreeSet::new();
    while after.len() < 5 {
        let m = timeout(Duration::from_secs(15), consumer.consume_filtered())
            .await
            .unwrap_or_else(|_| panic!("after losing a broker only got {after:?}"))
            .unwrap();
        after.insert(String::from_utf8(m.body.clone()).unwrap());
        m.finish().await;
    }
    assert_eq!(after, (5..10).map(|i| format!("b{i}")).collect());

    // lookupd restarts on the same ports and knows nothing; the survivor re-registers.
    let (tcp, http) = (lookupd.tcp.clone(), lookupd.http.clone());
    lookupd.terminate();
    let lookupd = Lookupd::launch(
        &nsqrs_testkit::bin(),
        &[
            "lookupd".into(),
            format!("--tcp-address={tcp}"),
            format!("--http-address={http}"),
        ],
    );
    wait_producers(&lookupd, "cl", &[b_port].into());
    let channels = lookupd.json("/channels?topic=cl");
    assert_eq!(channels["channels"], serde_json::json!(["work"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_embeds_a_lookupd_that_consumers_can_use() {
    let n = Nsqd::start(&[
        "--embedded-lookupd=true",
        "--embedded-lookupd-tcp-address=127.0.0.1:0",
        "--embedded-lookupd-http-address=127.0.0.1:0",
        "--broadcast-address=127.0.0.1",
    ]);
    let embedded_http = || {
        n.log.lock().unwrap().iter().find_map(|l| {
            l.contains("[nsqlookupd]")
                .then(|| {
                    l.split("HTTP: listening on ")
                        .nth(1)
                        .map(|a| a.trim().to_string())
                })
                .flatten()
        })
    };
    wait_for_async("the embedded lookupd to listen", Duration::from_secs(20), || {
        embedded_http().is_some()
    })
    .await;
    let lookupd_http = embedded_http().expect("waited for");
    assert_eq!(n.post("/pub?topic=emb", b"hello").0, 200);
    let lookup = NSQConsumerLookupConfig::new()
        .set_addresses(HashSet::from([format!("http://{lookupd_http}")]))
        .set_poll_interval(Duration::from_millis(300));
    let mut consumer = NSQConsumerConfig::new(NSQTopic::new("emb").unwrap(), NSQChannel::new("c").unwrap())
        .set_max_in_flight(1)
        .set_sources(NSQConsumerConfigSources::Lookup(lookup))
        .build();
    let m = timeout(Duration::from_secs(15), consumer.consume_filtered())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(m.body, b"hello");
    m.finish().await;
}
