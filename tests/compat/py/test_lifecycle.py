"""Broker process behaviour the clients' test harnesses rely on (CLIENTS.md)."""

import time


def test_sigterm_exits_cleanly(broker):
    assert broker.post("/topic/create", {"topic": "lc"}).status == 200
    t0 = time.monotonic()
    code = broker.stop()
    took = time.monotonic() - t0
    assert code == 0, "nsqd exits 0 after SIGTERM; got %r after %.2fs" % (code, took)
    assert took < 5.0, "graceful shutdown took %.2fs" % took


def test_ports_are_distinct_and_not_defaults(broker):
    assert broker.tcp_port not in (4150, 4151) and broker.http_port not in (4150, 4151)
    assert broker.tcp_port != broker.http_port


def test_restart_keeps_topics_channels_pause_and_queued_messages(broker, tmp_path):
    from harness import Broker, broker_binary, wait_until
    assert broker.post("/topic/create", {"topic": "keep"}).status == 200
    assert broker.post("/channel/create", {"topic": "keep", "channel": "c"}).status == 200
    assert broker.post("/channel/create", {"topic": "keep", "channel": "gone#ephemeral"}).status == 200
    for i in range(3):
        assert broker.post("/pub", {"topic": "keep"}, body=b"k%d" % i).status == 200
    assert broker.post("/channel/pause", {"topic": "keep", "channel": "c"}).status == 200
    wait_until(lambda: broker.channel_stats("keep", "c")["depth"] == 3, 2, "depth 3 before restart")
    assert broker.stop() == 0

    again = Broker(broker_binary(), broker.data_dir, [])
    try:
        again.start()
        t = again.topic_stats("keep")
        assert t is not None, "topic must survive a graceful restart"
        assert [c["channel_name"] for c in t["channels"]] == ["c"], "ephemeral channels are not persisted: %r" % t
        ch = t["channels"][0]
        assert ch["paused"] is True, ch
        assert ch["depth"] == 3, ch
        assert t["depth"] == 0, t
    finally:
        again.stop()
        print(again.output())
