"""`GET /stats?format=json` shape and counts (reference §1.10), with gnsq clients attached."""

import re
import time

import gevent
import gnsq

from harness import wait_until

TOPIC_KEYS = {"topic_name", "channels", "depth", "backend_depth", "message_count", "message_bytes",
              "paused", "e2e_processing_latency"}
CHANNEL_KEYS = {"channel_name", "depth", "backend_depth", "in_flight_count", "deferred_count", "message_count",
                "requeue_count", "timeout_count", "client_count", "clients", "paused", "e2e_processing_latency"}
CLIENT_KEYS = {"client_id", "hostname", "version", "remote_address", "state", "ready_count", "in_flight_count",
               "message_count", "finish_count", "requeue_count", "connect_ts", "sample_rate", "deflate", "snappy",
               "user_agent", "tls", "tls_cipher_suite", "tls_version", "tls_negotiated_protocol",
               "tls_negotiated_protocol_is_mutual"}
MEMORY_KEYS = {"heap_objects", "heap_idle_bytes", "heap_in_use_bytes", "heap_released_bytes", "gc_pause_usec_100",
               "gc_pause_usec_99", "gc_pause_usec_95", "next_gc_bytes", "gc_total_runs"}
NO_E2E = {"count": 0, "percentiles": None}


def ch_backend_ok(ch):
    return ch["backend_depth"] in (0, ch["depth"])


def missing(keys, doc):
    return sorted(keys - set(doc))


def test_stats_json_with_producer_and_consumer(broker):
    topic = "stats_t"
    bodies = [b"s1", b"s22", b"s333"]
    held = []
    now = int(time.time())
    producer = gnsq.Producer([broker.tcp_addr], timeout=5.0, heartbeat_interval=1, client_id="compat-producer", hostname="prod.example")
    consumer = gnsq.Consumer(topic, "c", [broker.tcp_addr], timeout=5.0, heartbeat_interval=1, max_in_flight=1,
                             client_id="compat-consumer", hostname="cons.example",
                             message_handler=lambda consumer, message: (message.enable_async(), held.append(message)))
    try:
        assert broker.post("/topic/create", {"topic": topic}).status == 200
        assert broker.post("/channel/create", {"topic": topic, "channel": "c"}).status == 200
        producer.start()
        assert producer.multipublish(topic, bodies, timeout=5, raise_error=False).get(timeout=5) == b"OK"
        consumer.start(block=False)
        wait_until(lambda: len(held) == 1, 5, "one message held in flight", sleep=gevent.sleep)
        gevent.sleep(0.3)  # RDY 1: no second delivery may happen
        assert len(held) == 1

        stats = broker.stats()
        assert stats["version"] == "1.3.0", stats
        assert stats["health"] == "OK", stats
        assert isinstance(stats["start_time"], int) and abs(stats["start_time"] - now) < 60, stats["start_time"]
        assert not missing(MEMORY_KEYS, stats["memory"]), missing(MEMORY_KEYS, stats["memory"])

        topics = [t for t in stats["topics"] if t["topic_name"] == topic]
        assert len(topics) == 1, stats["topics"]
        t = topics[0]
        assert not missing(TOPIC_KEYS, t), missing(TOPIC_KEYS, t)
        assert t["depth"] == 0 and t["backend_depth"] == 0, t
        # Go nsqd reports backend_depth = diskqueue part of depth (0 here, all in memory).
        # nsqrs keeps every message on disk and reports backend_depth == depth: accepted.
        assert ch_backend_ok(t["channels"][0]), t["channels"][0]
        assert t["message_count"] == 3, t
        assert t["message_bytes"] == sum(len(b) for b in bodies), t
        assert t["paused"] is False
        assert t["e2e_processing_latency"] == NO_E2E, t["e2e_processing_latency"]

        assert len(t["channels"]) == 1, t["channels"]
        ch = t["channels"][0]
        assert not missing(CHANNEL_KEYS, ch), missing(CHANNEL_KEYS, ch)
        assert ch["channel_name"] == "c"
        expect_ch = {"depth": 2, "in_flight_count": 1, "deferred_count": 0, "message_count": 3,
                     "requeue_count": 0, "timeout_count": 0, "client_count": 1, "paused": False,
                     "e2e_processing_latency": NO_E2E}
        assert {k: ch[k] for k in expect_ch} == expect_ch

        assert len(ch["clients"]) == 1, ch["clients"]
        cl = ch["clients"][0]
        assert not missing(CLIENT_KEYS, cl), missing(CLIENT_KEYS, cl)
        expect_cl = {"client_id": "compat-consumer", "hostname": "cons.example", "version": "V2", "state": 3,
                     "ready_count": 1, "in_flight_count": 1, "message_count": 1, "finish_count": 0,
                     "requeue_count": 0, "sample_rate": 0, "deflate": False, "snappy": False, "tls": False,
                     "user_agent": "gnsq/1.0.2"}
        assert {k: cl[k] for k in expect_cl} == expect_cl
        assert re.fullmatch(r"127\.0\.0\.1:\d+", cl["remote_address"]), cl["remote_address"]
        assert isinstance(cl["connect_ts"], int) and abs(cl["connect_ts"] - now) < 60, cl["connect_ts"]
        assert "pub_counts" not in cl or not cl["pub_counts"], "a pure consumer has no pub_counts: %r" % cl

        producers = stats["producers"]
        assert isinstance(producers, list) and len(producers) == 1, producers
        p = producers[0]
        assert p["client_id"] == "compat-producer" and p["hostname"] == "prod.example", p
        assert p["version"] == "V2" and p["user_agent"] == "gnsq/1.0.2", p
        assert p["pub_counts"] == [{"topic": topic, "count": 3}], p.get("pub_counts")
        assert p["ready_count"] == 0 and p["in_flight_count"] == 0, p

        # FIN the held message; the next two follow one at a time.
        def finish_held():
            while held:
                held.pop().finish()
        done = []

        def drain():
            finish_held()
            c = broker.channel_stats(topic, "c")
            done.append(c)
            return c["depth"] == 0 and c["in_flight_count"] == 0 and c["clients"][0]["finish_count"] == 3 and c
        ch = wait_until(drain, 5, "all three FINed", sleep=gevent.sleep)
        assert ch["clients"][0]["message_count"] == 3, ch
        assert ch["message_count"] == 3, ch
    finally:
        consumer.close()
        producer.close()
        gevent.sleep(0.05)

    # After disconnect: no clients, no producers.
    def gone():
        s = broker.stats()
        c = broker.channel_stats(topic, "c", s)
        return c["client_count"] == 0 and c["clients"] == [] and not s["producers"] and s
    wait_until(gone, 3, "clients and producers to disappear after disconnect")


def test_stats_filters_and_include_flags(broker):
    for t in ("f_a", "f_b"):
        assert broker.post("/topic/create", {"topic": t}).status == 200
        assert broker.post("/channel/create", {"topic": t, "channel": "c"}).status == 200
    full = broker.stats()
    assert [t["topic_name"] for t in full["topics"]] == ["f_a", "f_b"], "topics sorted by name"
    res = broker.request("GET", "/stats", {"format": "json", "topic": "f_b"})
    doc = res.json()
    assert [t["topic_name"] for t in doc["topics"]] == ["f_b"], doc
    res = broker.request("GET", "/stats", {"format": "json", "include_mem": "false"})
    assert "memory" not in res.json()
