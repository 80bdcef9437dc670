"""nsqrs driven by gnsq 1.0.2 (gevent): Producer, Consumer and NsqdHTTPClient.

gnsq does not monkey-patch; all waiting here uses gevent.sleep so gnsq's
greenlets (connection readers) get to run.
"""

import time

import gevent
import gnsq
import gnsq.errors
import pytest

from harness import HEX_ID, wait_until

# timeout is gnsq's socket read timeout, so ask nsqd for 1 s heartbeats to keep
# idle connections alive (this also exercises heartbeat + NOP handling).
CONN_KW = {"timeout": 5.0, "heartbeat_interval": 1}


def gwait(predicate, timeout, desc):
    return wait_until(predicate, timeout, desc, sleep=gevent.sleep)


class GClients:
    def __init__(self, broker):
        self.broker = broker
        self.items = []

    def producer(self, **kw):
        p = gnsq.Producer([self.broker.tcp_addr], **dict(CONN_KW, **kw))
        self.items.append(p)
        p.start()
        return p

    def consumer(self, topic, channel, handler, **kw):
        kw.setdefault("max_in_flight", 1)
        c = gnsq.Consumer(topic, channel, [self.broker.tcp_addr], message_handler=handler, **dict(CONN_KW, **kw))
        self.items.append(c)
        c.start(block=False)
        gwait(lambda: self.broker.channel_stats(topic, channel) is not None, 5,
              "channel %s/%s to appear in /stats after gnsq SUB" % (topic, channel))
        return c

    def close(self):
        for item in reversed(self.items):
            try:
                item.close()
            except Exception:
                pass
        gevent.sleep(0.05)


@pytest.fixture
def gclients(broker):
    c = GClients(broker)
    try:
        yield c
    finally:
        c.close()


def publish(producer, topic, data, **kw):
    return producer.publish(topic, data, timeout=5, raise_error=False, **kw).get(timeout=5)


def multipublish(producer, topic, msgs):
    return producer.multipublish(topic, msgs, timeout=5, raise_error=False).get(timeout=5)


def test_gnsq_pub_sub_two_channels(broker, gclients):
    topic = "gnsq_fanout"
    got = {"a": [], "b": []}

    def handler_for(name):
        def handler(consumer, message):
            got[name].append((message.id, message.body, message.attempts))
        return handler  # returning normally lets gnsq FIN the message

    gclients.consumer(topic, "a", handler_for("a"), max_in_flight=5)
    gclients.consumer(topic, "b", handler_for("b"), max_in_flight=5)
    producer = gclients.producer()

    singles = [b"g-%d" % i for i in range(3)]
    batch = [b"gm-%d" % i for i in range(3)]
    for body in singles:
        assert publish(producer, topic, body) == b"OK"
    assert multipublish(producer, topic, batch) == b"OK"

    gwait(lambda: len(got["a"]) >= 6 and len(got["b"]) >= 6, 5, "6 messages on each channel (got %r)" % got)
    gevent.sleep(0.3)
    expected = sorted(singles + batch)
    for name in ("a", "b"):
        msgs = got[name]
        assert len(msgs) == 6, (name, msgs)
        assert sorted(m[1] for m in msgs) == expected
        assert all(m[2] == 1 for m in msgs)
        assert all(HEX_ID.fullmatch(m[0]) for m in msgs), msgs
    assert {m[1]: m[0] for m in got["a"]} == {m[1]: m[0] for m in got["b"]}

    ch = gwait(lambda: (lambda c: c if c and c["in_flight_count"] == 0 and c["clients"]
                        and c["clients"][0]["finish_count"] == 6 else None)(broker.channel_stats(topic, "a")),
               3, "gnsq FINs to be counted")
    assert ch["message_count"] == 6
    assert broker.topic_stats(topic)["message_count"] == 6


def test_gnsq_deferred_publish(broker, gclients):
    topic = "gnsq_defer"
    arrivals = []
    gclients.consumer(topic, "c", lambda consumer, message: arrivals.append((time.monotonic(), message.body)))
    producer = gclients.producer()
    t0 = time.monotonic()
    assert publish(producer, topic, b"soon", defer=1000) == b"OK"
    gwait(lambda: arrivals, 4, "deferred gnsq message")
    elapsed = arrivals[0][0] - t0
    assert 0.9 <= elapsed <= 2.5, "DPUB 1000ms arrived after %.3fs" % elapsed
    assert arrivals[0][1] == b"soon"


def test_gnsq_requeue_with_delay(broker, gclients):
    topic = "gnsq_req"
    deliveries = []

    def handler(consumer, message):
        deliveries.append((time.monotonic(), message.id, message.attempts))
        if message.attempts == 1:
            message.requeue(time_ms=1000, backoff=False)

    gclients.consumer(topic, "c", handler)
    producer = gclients.producer()
    assert publish(producer, topic, b"retry-me") == b"OK"
    gwait(lambda: len(deliveries) >= 1, 3, "first delivery")
    ch = gwait(lambda: (lambda c: c if c and c["deferred_count"] == 1 else None)(broker.channel_stats(topic, "c")),
               0.8, "deferred_count == 1 during a REQ with 1000 ms delay")
    assert ch["in_flight_count"] == 0, ch
    gwait(lambda: len(deliveries) >= 2, 4, "redelivery after REQ 1000")
    (t1, id1, a1), (t2, id2, a2) = deliveries[:2]
    assert id1 == id2 and (a1, a2) == (1, 2)
    assert 0.9 <= t2 - t1 <= 2.5, "REQ 1000 ms redelivered after %.3fs" % (t2 - t1)
    ch = gwait(lambda: (lambda c: c if c and c["in_flight_count"] == 0 and c["clients"][0]["finish_count"] == 1
                        else None)(broker.channel_stats(topic, "c")), 3, "FIN counted")
    assert ch["requeue_count"] == 1 and ch["deferred_count"] == 0, ch


def test_gnsq_http_client(broker):
    http = gnsq.NsqdHTTPClient("127.0.0.1", broker.http_port)
    topic = "gnsq_http"
    assert http.ping() == b"OK"
    info = http.info()
    assert info["version"] == "1.3.0" and info["tcp_port"] == broker.tcp_port, info
    assert http.create_topic(topic) == b""
    assert http.create_channel(topic, "c") == b""
    assert http.publish(topic, b"one") == b"OK"
    assert http.multipublish(topic, [b"two", b"three"]) == b"OK"
    assert http.multipublish(topic, [b"four\nwith newline", b"five"], binary=True) == b"OK"
    stats = http.stats()
    t = [x for x in stats["topics"] if x["topic_name"] == topic][0]
    assert t["message_count"] == 5, t
    assert t["channels"][0]["depth"] == 5, t
    text = http.stats(text=True)
    assert text.startswith(b"nsqd v1.3.0"), text[:100]
    assert http.pause_topic(topic) == b""
    assert http.unpause_topic(topic) == b""
    assert http.empty_channel(topic, "c") == b""
    assert broker.channel_stats(topic, "c")["depth"] == 0
    assert http.empty_topic(topic) == b""
    assert http.delete_channel(topic, "c") == b""
    assert http.delete_topic(topic) == b""
    assert broker.topic_stats(topic) is None
    with pytest.raises(gnsq.errors.NSQHttpError):
        http.delete_topic(topic)


def test_gnsq_paused_channel_delivers_nothing_until_unpaused(broker, gclients):
    http = gnsq.NsqdHTTPClient("127.0.0.1", broker.http_port)
    topic = "gnsq_pause"
    got = []
    assert http.create_topic(topic) == b""
    assert http.create_channel(topic, "c") == b""
    assert http.pause_channel(topic, "c") == b""
    gclients.consumer(topic, "c", lambda consumer, message: got.append(message.body), max_in_flight=5)
    producer = gclients.producer()
    assert multipublish(producer, topic, [b"x1", b"x2"]) == b"OK"
    gevent.sleep(1.0)
    assert got == [], "paused channel delivered %r" % got
    ch = broker.channel_stats(topic, "c")
    assert ch["paused"] is True and ch["depth"] == 2 and ch["in_flight_count"] == 0, ch
    assert http.unpause_channel(topic, "c") == b""
    gwait(lambda: len(got) == 2, 3, "delivery after /channel/unpause")
    assert sorted(got) == [b"x1", b"x2"]


def test_gnsq_channel_empty_drops_in_flight_and_deferred(broker, gclients):
    """/channel/empty clears queued, in-flight and deferred messages (reference §1.9); a later FIN
    of a dropped message fails with non-fatal E_FIN_FAILED and the connection keeps working."""
    http = gnsq.NsqdHTTPClient("127.0.0.1", broker.http_port)
    topic = "gnsq_empty"
    held = []
    errors = []
    after = []

    def handler(consumer, message):
        if message.body.startswith(b"after") or message.body == b"warm-up":
            after.append(message.body)
            return  # gnsq FINs it
        message.enable_async()
        held.append(message)

    consumer = gclients.consumer(topic, "c", handler, max_in_flight=2)
    consumer.on_error.connect(lambda c, error: errors.append(error), weak=False)
    producer = gclients.producer()
    # gnsq keeps RDY at 1 until its first FIN; a warm-up message gets it to max_in_flight.
    assert publish(producer, topic, b"warm-up") == b"OK"
    gwait(lambda: after == [b"warm-up"] and consumer.total_ready_count == 2, 3, "gnsq RDY 2 after warm-up FIN")
    assert multipublish(producer, topic, [b"m1", b"m2", b"m3", b"m4"]) == b"OK"
    gwait(lambda: len(held) == 2, 3, "two messages in flight")
    held[0].requeue(time_ms=60000, backoff=False)  # -> deferred
    gwait(lambda: len(held) == 3, 3, "a third message after the REQ")
    ch = gwait(lambda: (lambda c: c if c and c["in_flight_count"] == 2 and c["deferred_count"] == 1
                        and c["depth"] == 1 else None)(broker.channel_stats(topic, "c")),
               2, "2 in flight, 1 deferred, 1 queued")
    assert ch["message_count"] == 5
    assert http.empty_channel(topic, "c") == b""
    ch = broker.channel_stats(topic, "c")
    assert (ch["depth"], ch["in_flight_count"], ch["deferred_count"]) == (0, 0, 0), ch
    assert ch["clients"][0]["in_flight_count"] == 0, ch["clients"][0]
    held[1].finish()  # no longer in flight on the broker
    gwait(lambda: errors, 3, "E_FIN_FAILED for a FIN after /channel/empty")
    # gnsq maps the E_FIN_FAILED code to NSQFinishFailed (and drops the code from the text).
    assert isinstance(errors[0], gnsq.errors.NSQFinishFailed), errors
    assert b"FIN" in errors[0].args[0], errors
    assert publish(producer, topic, b"after-empty") == b"OK"
    gwait(lambda: after == [b"warm-up", b"after-empty"], 3, "delivery on the same connection after E_FIN_FAILED")


@pytest.mark.broker_args("--msg-timeout=1s")
def test_gnsq_timed_out_message_comes_back_behind_the_queued_ones(broker, gclients):
    """nsqd puts a timed-out message back through the channel's queue: behind what is queued."""
    topic = "gnsq_order"
    got = []

    def handler(consumer, message):
        got.append((message.body, message.attempts))
        if message.body == b"m1" and message.attempts == 1:
            message.enable_async()  # neither FIN nor REQ: it times out

    producer = gclients.producer()
    assert publish(producer, topic, b"m1") == b"OK"
    gclients.consumer(topic, "c", handler, max_in_flight=1)
    gwait(lambda: got, 5, "the first delivery")
    # Queued while m1 is in flight: max_in_flight=1 keeps them waiting.
    assert multipublish(producer, topic, [b"m2", b"m3"]) == b"OK"
    gwait(lambda: len(got) >= 4, 8, "m1's timeout and three more deliveries (got %r)" % got)
    gevent.sleep(0.3)
    assert got == [(b"m1", 1), (b"m2", 1), (b"m3", 1), (b"m1", 2)], got
