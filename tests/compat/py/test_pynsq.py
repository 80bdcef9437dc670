"""nsqrs driven by pynsq 0.9.1 (tornado nsq.Reader / nsq.Writer).

Each test runs its client code inside a private tornado IOLoop with an overall
time limit; the broker fixture gives a fresh broker per test.
"""

import time
from datetime import timedelta

import nsq
import pytest
import tornado.concurrent
import tornado.gen
import tornado.ioloop

from harness import HEX_ID, assert_admin_ok

LOOP_TIMEOUT = 20  # seconds; hard ceiling for one test's client code


def run_loop(coro_fn, timeout=LOOP_TIMEOUT):
    loop = tornado.ioloop.IOLoop()
    loop.make_current()
    try:
        return loop.run_sync(coro_fn, timeout=timeout)
    finally:
        loop.clear_current()
        loop.close(all_fds=True)


async def wait_for(predicate, timeout, desc, interval=0.05):
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            value = predicate()
            if value:
                return value
            last = value
        except Exception as exc:
            last = exc
        if time.monotonic() >= deadline:
            raise AssertionError("timed out after %.1fs waiting for %s (last: %r)" % (timeout, desc, last))
        await tornado.gen.sleep(interval)


class Clients:
    """Creates pynsq readers/writers bound to one broker and closes them all at the end."""

    def __init__(self, broker):
        self.broker = broker
        self.readers = []
        self.writers = []

    def reader(self, topic, channel, handler, **kwargs):
        kwargs.setdefault("max_in_flight", 1)
        r = nsq.Reader(
            topic=topic,
            channel=channel,
            message_handler=handler,
            nsqd_tcp_addresses=[self.broker.tcp_addr],
            **kwargs
        )
        self.readers.append(r)
        return r

    async def writer(self):
        w = nsq.Writer([self.broker.tcp_addr])
        self.writers.append(w)
        await wait_for(lambda: w.conns, 5, "pynsq Writer to connect (IDENTIFY)")
        return w

    async def subscribed(self, topic, channel):
        """Wait until the reader's SUB shows up as a channel in /stats."""
        await wait_for(
            lambda: self.broker.channel_stats(topic, channel) is not None,
            5,
            "channel %s/%s to appear in /stats after SUB" % (topic, channel),
        )

    async def close(self):
        for r in self.readers:
            try:
                r.close()
            except Exception:
                pass
        for w in self.writers:
            for conn in list(w.conns.values()):
                conn.close()
        await tornado.gen.sleep(0.05)


async def call_writer(writer, method, *args):
    """Run Writer.pub/mpub/dpub and wait (≤5 s) for nsqd's response frame."""
    fut = tornado.concurrent.Future()

    def done(conn, data):
        if not fut.done():
            fut.set_result(data)

    getattr(writer, method)(*args, callback=done)
    return await tornado.gen.with_timeout(timedelta(seconds=5), fut)


def in_flight_drained(broker, topic, channel):
    c = broker.channel_stats(topic, channel)
    return c is not None and c["in_flight_count"] == 0 and c["depth"] == 0 and c


def client_finished(broker, topic, channel, n):
    """Channel stats once its single client has FINished n messages and nothing is in flight."""
    c = broker.channel_stats(topic, channel)
    if c and c["clients"] and c["clients"][0]["finish_count"] == n and c["in_flight_count"] == 0:
        return c
    return None


# --------------------------------------------------------------------------- tests


def test_pynsq_pub_sub_two_channels(broker):
    topic = "pynsq_fanout"
    bodies = [("fanout-%d" % i).encode() for i in range(5)]
    got = {"ch1": [], "ch2": []}

    def handler_for(ch):
        def handler(msg):
            got[ch].append((msg.id, msg.body, msg.attempts, msg.timestamp))
            return True
        return handler

    async def body():
        c = Clients(broker)
        try:
            c.reader(topic, "ch1", handler_for("ch1"))
            c.reader(topic, "ch2", handler_for("ch2"))
            await c.subscribed(topic, "ch1")
            await c.subscribed(topic, "ch2")
            w = await c.writer()
            t_before = time.time_ns()
            for b in bodies:
                res = await call_writer(w, "pub", topic, b)
                assert res == b"OK", "PUB %r answered %r" % (b, res)
            t_after = time.time_ns()
            await wait_for(lambda: len(got["ch1"]) >= 5 and len(got["ch2"]) >= 5, 5,
                           "5 messages on each channel (got %r)" % got)
            await tornado.gen.sleep(0.3)  # nothing extra may arrive
            for ch in ("ch1", "ch2"):
                await wait_for(lambda: in_flight_drained(broker, topic, ch), 3, "FINs to drain %s" % ch)
            return t_before, t_after, broker.stats()
        finally:
            await c.close()

    t_before, t_after, stats = run_loop(body)

    for ch in ("ch1", "ch2"):
        msgs = got[ch]
        assert len(msgs) == 5, "%s received %d messages: %r" % (ch, len(msgs), msgs)
        assert sorted(m[1] for m in msgs) == sorted(bodies)
        assert [m[2] for m in msgs] == [1] * 5, "first delivery must have attempts == 1"
        for mid, _, _, ts in msgs:
            assert HEX_ID.fullmatch(mid), "message id must be 16 lowercase hex bytes, got %r" % mid
            assert t_before - 2_000_000_000 <= ts <= t_after + 2_000_000_000, "timestamp %d not in ns near publish time" % ts
        assert len({m[0] for m in msgs}) == 5, "message ids must be unique"
    # Each channel gets a copy of the same message: same id for the same body.
    ids1 = {m[1]: m[0] for m in got["ch1"]}
    ids2 = {m[1]: m[0] for m in got["ch2"]}
    assert ids1 == ids2, "channel copies must carry the same message id"

    t = broker.topic_stats(topic, stats)
    assert t["message_count"] == 5
    assert t["message_bytes"] == sum(len(b) for b in bodies)
    assert t["depth"] == 0
    assert [ch["channel_name"] for ch in t["channels"]] == ["ch1", "ch2"], "channels sorted by name"
    for ch in t["channels"]:
        assert ch["message_count"] == 5, ch
        assert ch["depth"] == 0, ch
        assert ch["in_flight_count"] == 0, ch
        assert ch["requeue_count"] == 0, ch
        assert ch["timeout_count"] == 0, ch
        assert ch["client_count"] == 1, ch
        assert ch["clients"][0]["finish_count"] == 5, ch["clients"][0]


def test_pynsq_mpub(broker):
    topic = "pynsq_mpub"
    bodies = [b"mpub-%d" % i for i in range(9)] + [b"bin\x00\x01\nline\xff"]
    got = []

    def handler(msg):
        got.append((msg.body, msg.attempts))
        return True

    async def body():
        c = Clients(broker)
        try:
            c.reader(topic, "ch", handler, max_in_flight=10)
            await c.subscribed(topic, "ch")
            w = await c.writer()
            res = await call_writer(w, "mpub", topic, bodies)
            assert res == b"OK", "MPUB answered %r" % res
            await wait_for(lambda: len(got) >= len(bodies), 5, "%d MPUB messages (got %d)" % (len(bodies), len(got)))
            await tornado.gen.sleep(0.3)
            await wait_for(lambda: in_flight_drained(broker, topic, "ch"), 3, "FINs to drain")
            return broker.stats()
        finally:
            await c.close()

    stats = run_loop(body)
    assert sorted(b for b, _ in got) == sorted(bodies), "MPUB bodies must arrive intact (binary-safe)"
    assert all(a == 1 for _, a in got)
    t = broker.topic_stats(topic, stats)
    assert t["message_count"] == len(bodies)
    assert t["message_bytes"] == sum(len(b) for b in bodies)
    ch = broker.channel_stats(topic, "ch", stats)
    assert ch["message_count"] == len(bodies)
    assert ch["clients"][0]["finish_count"] == len(bodies)


def test_pynsq_dpub_timing(broker):
    topic = "pynsq_dpub"
    arrivals = {}

    def handler(msg):
        arrivals[msg.body] = (time.monotonic(), msg.attempts)
        return True

    async def body():
        c = Clients(broker)
        try:
            c.reader(topic, "ch", handler, max_in_flight=5)
            await c.subscribed(topic, "ch")
            w = await c.writer()
            t0 = time.monotonic()
            res = await call_writer(w, "dpub", topic, 1500, b"deferred")
            assert res == b"OK", "DPUB answered %r" % res
            res = await call_writer(w, "pub", topic, b"immediate")
            assert res == b"OK", "PUB answered %r" % res
            # The deferred copy sits in the channel's deferred queue meanwhile.
            deferred = await wait_for(
                lambda: (broker.channel_stats(topic, "ch") or {}).get("deferred_count") == 1, 1.0,
                "channel deferred_count == 1 while the DPUB is pending")
            assert deferred
            assert b"deferred" not in arrivals, "deferred message arrived after %.3fs" % (arrivals[b"deferred"][0] - t0)
            await wait_for(lambda: len(arrivals) == 2, 5, "both messages")
            return t0
        finally:
            await c.close()

    t0 = run_loop(body)
    imm = arrivals[b"immediate"][0] - t0
    dfr = arrivals[b"deferred"][0] - t0
    assert imm < 1.0, "immediate message took %.3fs" % imm
    assert 1.4 <= dfr <= 3.0, "DPUB 1500ms arrived after %.3fs (want 1.4..3.0)" % dfr
    assert arrivals[b"deferred"][1] == 1
    assert arrivals[b"immediate"][1] == 1


def test_pynsq_dpub_listed_and_cancelled_over_http(broker):
    """An operator finds a pynsq DPUB in /deferred by its body and cancels it: the reader
    never sees it, the other deferred message still arrives."""
    topic = "pynsq_cancel"
    arrivals = []

    def handler(msg):
        arrivals.append(msg.body)
        return True

    async def body():
        c = Clients(broker)
        try:
            c.reader(topic, "ch", handler, max_in_flight=5)
            await c.subscribed(topic, "ch")
            w = await c.writer()
            for text in (b"keep", b"cancel-me"):
                res = await call_writer(w, "dpub", topic, 1500, text)
                assert res == b"OK", "DPUB answered %r" % res
            res = broker.request("GET", "/deferred", params={"topic": topic, "channel": "ch", "include_body": "true"})
            assert res.status == 200, res
            listed = res.json()["channels"][0]
            assert listed["total"] == 2, listed
            by_body = {m["body"]: m["id"] for m in listed["messages"]}
            assert HEX_ID.fullmatch(by_body["cancel-me"].encode()), listed
            res = broker.post("/deferred/cancel", params={"topic": topic, "channel": "ch", "id": by_body["cancel-me"]})
            assert res.status == 200, res
            assert res.json()["cancelled"][0]["id"] == by_body["cancel-me"]
            await wait_for(lambda: arrivals == [b"keep"], 5, "the message that was not cancelled")
            # Well past the cancelled one's due time nothing else arrives.
            await tornado.gen.sleep(1.0)
            assert arrivals == [b"keep"]
            assert broker.channel_stats(topic, "ch")["deferred_count"] == 0
        finally:
            await c.close()

    run_loop(body)


def test_pynsq_req_attempts(broker):
    topic = "pynsq_req"
    deliveries = []

    def handler(msg):
        deliveries.append((msg.id, msg.body, msg.attempts))
        if msg.attempts == 1:
            msg.requeue(delay=0, backoff=False)  # REQ <id> 0
            return None
        return True

    async def body():
        c = Clients(broker)
        try:
            c.reader(topic, "ch", handler)
            await c.subscribed(topic, "ch")
            w = await c.writer()
            assert await call_writer(w, "pub", topic, b"again") == b"OK"
            await wait_for(lambda: len(deliveries) >= 2, 5, "redelivery after REQ 0 (got %r)" % deliveries)
            await tornado.gen.sleep(0.3)
            return await wait_for(lambda: client_finished(broker, topic, "ch", 1), 3, "client finish_count == 1")
        finally:
            await c.close()

    ch = run_loop(body)
    assert len(deliveries) == 2, deliveries
    (id1, b1, a1), (id2, b2, a2) = deliveries
    assert (a1, a2) == (1, 2), "attempts must be 1 then 2, got %r" % ((a1, a2),)
    assert id1 == id2 and b1 == b2 == b"again"
    assert ch["requeue_count"] == 1, ch
    assert ch["timeout_count"] == 0, ch
    assert ch["message_count"] == 1, ch
    assert ch["in_flight_count"] == 0, ch
    assert ch["depth"] == 0, ch
    client = ch["clients"][0]
    assert client["message_count"] == 2, client
    assert client["requeue_count"] == 1, client
    assert client["finish_count"] == 1, client
    assert client["in_flight_count"] == 0, client


def test_pynsq_touch_keeps_message_in_flight(broker):
    """IDENTIFY msg_timeout=2000. 'touched' is TOUCHed every 0.7 s for ~4 s and must not
    time out; 'control' is held without TOUCH and must come back (attempts 2) after ~2 s."""
    topic = "pynsq_touch"
    deliveries = []
    held = {}

    def handler(msg):
        deliveries.append((time.monotonic(), msg.body, msg.attempts))
        if msg.attempts == 1:
            msg.enable_async()
            held[msg.body] = msg
            return None
        return True  # redelivery of the control message: FIN

    async def body():
        c = Clients(broker)
        try:
            c.reader(topic, "ch", handler, max_in_flight=2, msg_timeout=2)
            await c.subscribed(topic, "ch")
            w = await c.writer()
            assert await call_writer(w, "mpub", topic, [b"touched", b"control"]) == b"OK"
            await wait_for(lambda: len(held) == 2, 5, "both messages delivered (got %r)" % deliveries)
            t0 = time.monotonic()
            while time.monotonic() - t0 < 4.0:
                await tornado.gen.sleep(0.7)
                held[b"touched"].touch()
            held[b"touched"].finish()
            await tornado.gen.sleep(0.3)
            ch = await wait_for(lambda: in_flight_drained(broker, topic, "ch"), 3, "in-flight to drain")
            return t0, ch
        finally:
            await c.close()

    t0, ch = run_loop(body)
    touched = [d for d in deliveries if d[1] == b"touched"]
    control = [d for d in deliveries if d[1] == b"control"]
    assert len(touched) == 1, "TOUCHed message was redelivered: %r" % touched
    assert len(control) == 2, "untouched message must time out and be redelivered once: %r" % control
    assert control[1][2] == 2
    redeliver_after = control[1][0] - control[0][0]
    assert 1.7 <= redeliver_after <= 3.5, "IDENTIFY msg_timeout=2000 but redelivery after %.3fs" % redeliver_after
    assert ch["timeout_count"] == 1, ch
    assert ch["requeue_count"] == 0, ch
    client = ch["clients"][0]
    assert client["finish_count"] == 2, client
    assert client["message_count"] == 3, client


@pytest.mark.broker_args("--msg-timeout=1s")
def test_pynsq_in_flight_timeout_redelivery(broker):
    topic = "pynsq_timeout"
    deliveries = []

    def handler(msg):
        deliveries.append((time.monotonic(), msg.id, msg.body, msg.attempts))
        if msg.attempts == 1:
            msg.enable_async()  # never FIN: let --msg-timeout expire
            return None
        return True

    async def body():
        c = Clients(broker)
        try:
            c.reader(topic, "ch", handler)
            await c.subscribed(topic, "ch")
            w = await c.writer()
            assert await call_writer(w, "pub", topic, b"slow") == b"OK"
            await wait_for(lambda: len(deliveries) >= 2, 5, "redelivery after --msg-timeout=1s (got %r)" % deliveries)
            await tornado.gen.sleep(0.3)
            return await wait_for(lambda: in_flight_drained(broker, topic, "ch"), 3, "in-flight to drain")
        finally:
            await c.close()

    ch = run_loop(body)
    assert len(deliveries) == 2, deliveries
    (t1, id1, b1, a1), (t2, id2, b2, a2) = deliveries
    assert (a1, a2) == (1, 2)
    assert id1 == id2 and b1 == b2 == b"slow"
    assert 0.9 <= t2 - t1 <= 2.5, "redelivered after %.3fs with --msg-timeout=1s" % (t2 - t1)
    assert ch["timeout_count"] == 1, ch
    assert ch["requeue_count"] == 0, ch
    assert ch["message_count"] == 1, ch
    client = ch["clients"][0]
    assert client["message_count"] == 2, client
    assert client["finish_count"] == 1, client
    assert client["requeue_count"] == 0, client


def test_pynsq_ephemeral_channel_and_topic(broker):
    got = []

    def handler(msg):
        got.append(msg.body)
        return True

    async def body():
        c = Clients(broker)
        try:
            r1 = c.reader("durable_t", "eph#ephemeral", handler)
            r2 = c.reader("tmp#ephemeral", "c#ephemeral", handler)
            await c.subscribed("durable_t", "eph#ephemeral")
            await c.subscribed("tmp#ephemeral", "c#ephemeral")
            w = await c.writer()
            assert await call_writer(w, "pub", "durable_t", b"e1") == b"OK"
            assert await call_writer(w, "pub", "tmp#ephemeral", b"e2") == b"OK"
            await wait_for(lambda: len(got) == 2, 5, "messages on ephemeral channels")
            ch = await wait_for(lambda: broker.channel_stats("durable_t", "eph#ephemeral"), 1, "ephemeral channel stats")
            assert ch["client_count"] == 1, ch
            r1.close()
            r2.close()
            await wait_for(lambda: broker.channel_stats("durable_t", "eph#ephemeral") is None, 3,
                           "ephemeral channel to disappear from /stats after its only consumer left")
            await wait_for(lambda: broker.topic_stats("tmp#ephemeral") is None, 3,
                           "ephemeral topic to disappear once its last (ephemeral) channel is gone")
            return broker.stats()
        finally:
            await c.close()

    stats = run_loop(body)
    assert sorted(got) == [b"e1", b"e2"]
    t = broker.topic_stats("durable_t", stats)
    assert t is not None, "a normal topic stays after its ephemeral channel is deleted"
    assert t["channels"] == [], t
    assert t["message_count"] == 1


def test_pynsq_topic_created_over_http_then_consumed(broker):
    """Messages published before any channel exists wait in the topic and go to the first channel."""
    topic = "pynsq_backlog"
    assert_admin_ok(broker.post("/topic/create", {"topic": topic}), "/topic/create")
    for i in range(3):
        res = broker.post("/pub", {"topic": topic}, body=b"backlog-%d" % i)
        assert (res.status, res.body) == (200, b"OK"), res
    t = broker.topic_stats(topic)
    assert t["depth"] == 3 and t["channels"] == [], t
    got = []

    def handler(msg):
        got.append(msg.body)
        return True

    async def body():
        c = Clients(broker)
        try:
            c.reader(topic, "late", handler, max_in_flight=3)
            await wait_for(lambda: len(got) == 3, 5, "backlog delivered to the first channel (got %r)" % got)
            await tornado.gen.sleep(0.2)
            return await wait_for(lambda: in_flight_drained(broker, topic, "late"), 3, "FINs to drain")
        finally:
            await c.close()

    ch = run_loop(body)
    assert sorted(got) == [b"backlog-0", b"backlog-1", b"backlog-2"]
    assert ch["message_count"] == 3, ch
    assert broker.topic_stats(topic)["depth"] == 0


def test_pynsq_two_consumers_share_one_channel(broker):
    """Consumers on the same channel split the stream: each message goes to exactly one of them."""
    topic = "pynsq_share"
    got = {"r1": [], "r2": []}

    def handler_for(name):
        def handler(msg):
            got[name].append(msg.body)
            return True
        return handler

    bodies = [b"share-%02d" % i for i in range(20)]

    async def body():
        c = Clients(broker)
        try:
            c.reader(topic, "workers", handler_for("r1"), max_in_flight=2)
            c.reader(topic, "workers", handler_for("r2"), max_in_flight=2)
            await wait_for(lambda: (broker.channel_stats(topic, "workers") or {}).get("client_count") == 2, 5,
                           "two clients on the channel")
            w = await c.writer()
            assert await call_writer(w, "mpub", topic, bodies) == b"OK"
            await wait_for(lambda: len(got["r1"]) + len(got["r2"]) >= 20, 5, "20 messages across both consumers")
            await tornado.gen.sleep(0.5)
            return await wait_for(lambda: in_flight_drained(broker, topic, "workers"), 3, "FINs to drain")
        finally:
            await c.close()

    ch = run_loop(body)
    all_got = got["r1"] + got["r2"]
    assert len(all_got) == 20, "each message exactly once across the channel's consumers: %r" % got
    assert sorted(all_got) == bodies
    assert ch["message_count"] == 20 and ch["requeue_count"] == 0 and ch["timeout_count"] == 0, ch
    assert sum(cl["finish_count"] for cl in ch["clients"]) == 20, ch["clients"]


@pytest.mark.broker_args("--msg-timeout=1s")
def test_pynsq_timed_out_message_comes_back_behind_the_queued_ones(broker):
    """nsqd puts a timed-out message back through the channel's queue: behind what is queued."""
    topic = "pynsq_order"
    got = []

    def handler(msg):
        got.append((msg.body, msg.attempts))
        if msg.body == b"m1" and msg.attempts == 1:
            msg.enable_async()  # neither FIN nor REQ: it times out
            return None
        return True

    async def body():
        c = Clients(broker)
        try:
            w = await c.writer()
            assert await call_writer(w, "pub", topic, b"m1") == b"OK"
            c.reader(topic, "ch", handler, max_in_flight=1)
            await wait_for(lambda: got, 5, "the first delivery")
            # Queued while m1 is in flight: max_in_flight=1 keeps them waiting.
            assert await call_writer(w, "mpub", topic, [b"m2", b"m3"]) == b"OK"
            await wait_for(lambda: len(got) >= 4, 8, "m1's timeout and three more deliveries (got %r)" % got)
            await tornado.gen.sleep(0.3)
        finally:
            await c.close()

    run_loop(body)
    assert got == [(b"m1", 1), (b"m2", 1), (b"m3", 1), (b"m1", 2)], got
