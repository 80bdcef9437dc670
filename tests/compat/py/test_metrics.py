"""GET /metrics read by Prometheus' own parser (prometheus_client) and checked against /stats,
including a client_id that needs escaping in a label value."""

import json
import socket
import struct
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from harness import wait_until


def v2_consumer(port, client_id, topic, channel, rdy):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    body = json.dumps({"client_id": client_id}).encode()
    s.sendall(b"  V2IDENTIFY\n" + struct.pack(">I", len(body)) + body)
    s.sendall(("SUB %s %s\nRDY %d\n" % (topic, channel, rdy)).encode())
    return s


@pytest.mark.broker_args("--e2e-processing-latency-percentile=0.99,0.5")
def test_metrics_match_stats(broker):
    weird = 'a "quoted" \\ back\nslash'
    sock = v2_consumer(broker.tcp_port, weird, "pm", "ch", 3)
    try:
        wait_until(lambda: broker.channel_stats("pm", "ch"), 5, "subscription")
        for i in range(5):
            assert broker.post("/pub", params={"topic": "pm"}, body=b"m%d" % i).status == 200
        wait_until(lambda: broker.channel_stats("pm", "ch")["in_flight_count"] == 3, 5, "3 in flight")
        res = broker.request("GET", "/metrics")
        assert res.status == 200
        assert res.headers["content-type"].startswith("text/plain; version=0.0.4")
        families = {f.name: f for f in text_string_to_metric_families(res.body.decode())}
        stats = broker.stats()
    finally:
        sock.close()

    def sample(name, **labels):
        for fam in families.values():
            for s in fam.samples:
                if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                    return s.value
        raise AssertionError("no %s %r" % (name, labels))

    topic = broker.topic_stats("pm", stats)
    ch = broker.channel_stats("pm", "ch", stats)
    assert sample("nsqrs_topic_depth", topic="pm") == topic["depth"]
    assert sample("nsqrs_topic_messages_total", topic="pm") == topic["message_count"] == 5
    assert sample("nsqrs_topic_message_bytes_total", topic="pm") == topic["message_bytes"]
    for metric, key in [("nsqrs_channel_depth", "depth"), ("nsqrs_channel_in_flight", "in_flight_count"),
                        ("nsqrs_channel_deferred", "deferred_count"), ("nsqrs_channel_messages_total", "message_count"),
                        ("nsqrs_channel_requeued_total", "requeue_count"),
                        ("nsqrs_channel_timed_out_total", "timeout_count"), ("nsqrs_channel_clients", "client_count")]:
        assert sample(metric, topic="pm", channel="ch") == ch[key], metric
    assert families["nsqrs_channel_messages"].type == "counter"
    assert families["nsqrs_channel_depth"].type == "gauge"
    # The escaped label value comes back exactly as the client sent it.
    assert sample("nsqrs_client_ready", client_id=weird) == 3
    assert sample("nsqrs_client_in_flight", client_id=weird) == 3
    assert sample("nsqrs_channel_e2e_processing_latency_samples", topic="pm", channel="ch") == 0
    for q in ("0.99", "0.5"):
        sample("nsqrs_channel_e2e_processing_latency_seconds", topic="pm", channel="ch", quantile=q)
    assert sample("process_resident_memory_bytes") > 1e6
