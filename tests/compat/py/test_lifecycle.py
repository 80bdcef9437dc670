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
