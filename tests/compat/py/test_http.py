"""nsqd HTTP API (reference §1.9) exercised with plain HTTP requests (http.client)."""

import struct
import time

from harness import assert_admin_ok, assert_http_error, wait_until

V1_HEADER = "nsq; version=1.0"


def settle():
    time.sleep(0.3)


def test_ping_info_and_headers(broker):
    res = broker.request("GET", "/ping")
    assert (res.status, res.body) == (200, b"OK"), res
    info = broker.request("GET", "/info")
    assert info.status == 200, info
    assert info.headers.get("x-nsq-content-type") == V1_HEADER, info.headers
    assert "application/json" in info.headers.get("content-type", ""), info.headers
    doc = info.json()
    assert doc["version"] == "1.3.0", doc
    assert doc["tcp_port"] == broker.tcp_port, doc
    assert doc["http_port"] == broker.http_port, doc
    for key in ("broadcast_address", "hostname", "start_time", "max_heartbeat_interval",
                "max_output_buffer_size", "max_output_buffer_timeout", "max_deflate_level"):
        assert key in doc, "missing /info key %r in %r" % (key, doc)
    assert doc["max_heartbeat_interval"] == 60 * 10**9, "durations in /info are nanoseconds"
    assert doc["max_deflate_level"] == 6


def test_http_pub_and_mpub_counts(broker):
    topic = "http_pub"
    res = broker.post("/pub", {"topic": topic}, body=b"hello")
    assert (res.status, res.body) == (200, b"OK"), res
    assert res.headers.get("x-nsq-content-type") == V1_HEADER, res.headers

    # Text mode: split on \n, empty lines dropped.
    res = broker.post("/mpub", {"topic": topic}, body=b"a\nbb\n\nccc\n")
    assert (res.status, res.body) == (200, b"OK"), res

    # Binary mode: [4B count]([4B size][data])*
    msgs = [b"bin\n1", b"\x00\x00two"]
    payload = struct.pack(">I", len(msgs)) + b"".join(struct.pack(">I", len(m)) + m for m in msgs)
    res = broker.post("/mpub", {"topic": topic, "binary": "true"}, body=payload)
    assert (res.status, res.body) == (200, b"OK"), res

    t = broker.topic_stats(topic)
    assert t is not None, "topic must be created by /pub"
    assert t["message_count"] == 6, t
    assert t["message_bytes"] == 5 + 1 + 2 + 3 + len(msgs[0]) + len(msgs[1]), t
    assert t["depth"] == 6, "no channel yet: messages wait in the topic (%r)" % t
    assert t["channels"] == [], t

    # The first channel receives the topic's backlog.
    assert_admin_ok(broker.post("/channel/create", {"topic": topic, "channel": "c"}), "/channel/create")
    ch = wait_until(lambda: (lambda c: c if c and c["depth"] == 6 else None)(broker.channel_stats(topic, "c")),
                    3, "channel depth 6 after create")
    assert ch["message_count"] == 6, ch
    assert broker.topic_stats(topic)["depth"] == 0


def test_http_pub_defer(broker):
    topic = "http_defer"
    assert_admin_ok(broker.post("/topic/create", {"topic": topic}), "/topic/create")
    assert_admin_ok(broker.post("/channel/create", {"topic": topic, "channel": "c"}), "/channel/create")
    res = broker.post("/pub", {"topic": topic, "defer": "5000"}, body=b"later")
    assert (res.status, res.body) == (200, b"OK"), res
    ch = wait_until(lambda: (lambda c: c if c and c["deferred_count"] == 1 else None)(broker.channel_stats(topic, "c")),
                    2, "deferred_count 1 after /pub?defer=5000")
    assert ch["depth"] == 0, ch
    assert ch["message_count"] == 1, ch
    res = broker.post("/pub", {"topic": topic, "defer": "3600001"}, body=b"too late")
    assert_http_error(res, 400, "INVALID_DEFER", "/pub?defer above --max-req-timeout")


def test_http_errors(broker):
    assert_http_error(broker.post("/pub", None, body=b"x"), 400, "MISSING_ARG_TOPIC", "/pub without topic")
    assert_http_error(broker.post("/pub", {"topic": "bad/name"}, body=b"x"), 400, "INVALID_TOPIC", "/pub bad topic")
    assert_http_error(broker.post("/pub", {"topic": "t"}, body=b""), 400, "MSG_EMPTY", "/pub empty body")
    assert_http_error(broker.post("/topic/delete", {"topic": "nope"}), 404, "TOPIC_NOT_FOUND", "/topic/delete unknown")
    assert_http_error(broker.post("/topic/pause", {"topic": "nope"}), 404, "TOPIC_NOT_FOUND", "/topic/pause unknown")
    assert_http_error(broker.post("/channel/create", {"topic": "nope", "channel": "c"}), 404, "TOPIC_NOT_FOUND",
                      "/channel/create on a missing topic")
    assert_admin_ok(broker.post("/topic/create", {"topic": "exists"}), "/topic/create")
    assert_http_error(broker.post("/channel/delete", {"topic": "exists", "channel": "nope"}), 404,
                      "CHANNEL_NOT_FOUND", "/channel/delete unknown channel")
    assert_http_error(broker.post("/channel/create", {"topic": "exists"}), 400, "MISSING_ARG_CHANNEL",
                      "/channel/create without channel")
    assert_http_error(broker.request("GET", "/no/such/path"), 404, "NOT_FOUND", "unknown path")
    assert_http_error(broker.request("GET", "/pub", {"topic": "t"}), 405, "METHOD_NOT_ALLOWED", "GET /pub")


def test_topic_admin_lifecycle(broker):
    topic = "admin_t"
    assert_admin_ok(broker.post("/topic/create", {"topic": topic}), "/topic/create")
    assert_admin_ok(broker.post("/channel/create", {"topic": topic, "channel": "c"}), "/channel/create")
    t = broker.topic_stats(topic)
    assert t["paused"] is False and [c["channel_name"] for c in t["channels"]] == ["c"], t

    # Paused topic: messages accumulate in the topic, nothing reaches the channel.
    assert_admin_ok(broker.post("/topic/pause", {"topic": topic}), "/topic/pause")
    assert broker.topic_stats(topic)["paused"] is True
    for i in range(3):
        assert broker.post("/pub", {"topic": topic}, body=b"p%d" % i).status == 200
    settle()
    t = broker.topic_stats(topic)
    assert t["depth"] == 3, "paused topic keeps its messages (%r)" % t
    assert t["message_count"] == 3, t
    assert broker.channel_stats(topic, "c")["depth"] == 0

    assert_admin_ok(broker.post("/topic/unpause", {"topic": topic}), "/topic/unpause")
    wait_until(lambda: broker.channel_stats(topic, "c")["depth"] == 3, 3, "channel depth 3 after /topic/unpause")
    t = broker.topic_stats(topic)
    assert t["depth"] == 0 and t["paused"] is False, t

    # /channel/empty drops the channel's queued messages.
    assert_admin_ok(broker.post("/channel/empty", {"topic": topic, "channel": "c"}), "/channel/empty")
    assert broker.channel_stats(topic, "c")["depth"] == 0

    # /topic/empty drops the topic's own queue; the channel is untouched.
    assert_admin_ok(broker.post("/topic/pause", {"topic": topic}), "/topic/pause")
    for i in range(2):
        assert broker.post("/pub", {"topic": topic}, body=b"q%d" % i).status == 200
    settle()
    assert broker.topic_stats(topic)["depth"] == 2
    assert_admin_ok(broker.post("/topic/empty", {"topic": topic}), "/topic/empty")
    assert broker.topic_stats(topic)["depth"] == 0
    assert_admin_ok(broker.post("/topic/unpause", {"topic": topic}), "/topic/unpause")
    settle()
    assert broker.channel_stats(topic, "c")["depth"] == 0, "emptied topic messages must not reach the channel"
    assert broker.topic_stats(topic)["message_count"] == 5

    # Channel pause/unpause is reflected in stats.
    assert_admin_ok(broker.post("/channel/pause", {"topic": topic, "channel": "c"}), "/channel/pause")
    assert broker.channel_stats(topic, "c")["paused"] is True
    assert_admin_ok(broker.post("/channel/unpause", {"topic": topic, "channel": "c"}), "/channel/unpause")
    assert broker.channel_stats(topic, "c")["paused"] is False

    assert_admin_ok(broker.post("/channel/delete", {"topic": topic, "channel": "c"}), "/channel/delete")
    assert broker.channel_stats(topic, "c") is None
    assert broker.topic_stats(topic)["channels"] == []
    assert_admin_ok(broker.post("/topic/delete", {"topic": topic}), "/topic/delete")
    assert broker.topic_stats(topic) is None


def test_stats_text_format(broker):
    assert_admin_ok(broker.post("/topic/create", {"topic": "text_t"}), "/topic/create")
    res = broker.request("GET", "/stats")
    assert res.status == 200, res
    text = res.body.decode()
    assert text.startswith("nsqd v1.3.0"), text[:200]
    assert "Health: OK" in text, text
    assert "text_t" in text, text


def test_new_channel_only_gets_later_messages(broker):
    """Once a topic has a channel, a channel created later starts empty (no replay of old messages)."""
    topic = "late_channel"
    assert_admin_ok(broker.post("/topic/create", {"topic": topic}), "/topic/create")
    assert_admin_ok(broker.post("/channel/create", {"topic": topic, "channel": "a"}), "/channel/create a")
    for i in range(3):
        assert broker.post("/pub", {"topic": topic}, body=b"old%d" % i).status == 200
    wait_until(lambda: broker.channel_stats(topic, "a")["depth"] == 3, 2, "channel a depth 3")
    assert_admin_ok(broker.post("/channel/create", {"topic": topic, "channel": "b"}), "/channel/create b")
    settle()
    b = broker.channel_stats(topic, "b")
    assert (b["depth"], b["message_count"]) == (0, 0), b
    assert broker.post("/pub", {"topic": topic}, body=b"new").status == 200
    wait_until(lambda: broker.channel_stats(topic, "b")["depth"] == 1, 2, "channel b depth 1")
    a = broker.channel_stats(topic, "a")
    assert (a["depth"], a["message_count"]) == (4, 4), a
