"""A cluster on loopback driven by pynsq's lookupd discovery: one `nsqrs lookupd`, two
`nsqrs serve` registered with it. pynsq's Reader finds both brokers through lookupd, and the
cluster-wide delete procedure (tombstone, then delete on nsqd, then delete in lookupd) keeps
consumers from re-creating a deleted topic.
"""

import re
import signal
import subprocess
import threading
import time
import urllib.request

import nsq
import pytest
import tornado.gen

from harness import Broker, broker_binary, wait_until
from test_pynsq import run_loop, wait_for

LISTEN_RE = re.compile(r"(TCP|HTTP): listening on 127\.0\.0\.1:(\d+)")


class Lookupd:
    """One `nsqrs lookupd` process on free loopback ports."""

    def __init__(self, *extra):
        self.proc = subprocess.Popen(
            [str(broker_binary()), "lookupd", "--tcp-address=127.0.0.1:0", "--http-address=127.0.0.1:0", *extra],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        self.ports = {}
        self.lines = []
        ready = threading.Event()

        def pump():
            for raw in iter(self.proc.stderr.readline, b""):
                line = raw.decode("utf-8", "replace")
                self.lines.append(line)
                m = LISTEN_RE.search(line)
                if m:
                    self.ports.setdefault(m.group(1), int(m.group(2)))
                    if len(self.ports) == 2:
                        ready.set()

        threading.Thread(target=pump, daemon=True).start()
        if not ready.wait(20):
            self.stop()
            raise AssertionError("lookupd did not start:\n" + "".join(self.lines))

    @property
    def tcp_addr(self):
        return "127.0.0.1:%d" % self.ports["TCP"]

    @property
    def http_addr(self):
        return "127.0.0.1:%d" % self.ports["HTTP"]

    def request(self, method, path):
        req = urllib.request.Request("http://%s%s" % (self.http_addr, path), method=method)
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as err:
            return err.code, err.read()

    def producers(self, topic):
        import json

        status, body = self.request("GET", "/lookup?topic=" + topic)
        if status != 200:
            return set()
        return {p["tcp_port"] for p in json.loads(body)["producers"]}

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


@pytest.fixture
def cluster(tmp_path):
    lookupd = Lookupd("--tombstone-lifetime=30s")
    brokers = []
    try:
        for name in ("a", "b"):
            b = Broker(
                broker_binary(),
                tmp_path / name,
                ["--lookupd-tcp-address=" + lookupd.tcp_addr, "--broadcast-address=127.0.0.1"],
            )
            brokers.append(b)
            b.start()
        yield lookupd, brokers
    finally:
        for b in brokers:
            b.stop()
        lookupd.stop()


def test_reader_discovers_both_brokers_through_lookupd(cluster):
    lookupd, (a, b) = cluster
    for broker in (a, b):
        assert broker.post("/topic/create", {"topic": "orders"}).status == 200
    wait_until(lambda: lookupd.producers("orders") == {a.tcp_port, b.tcp_port}, 10, "both brokers registered")
    got = []

    def handler(message):
        got.append(message.body.decode())
        return True

    async def main():
        reader = nsq.Reader(
            topic="orders",
            channel="billing",
            message_handler=handler,
            lookupd_http_addresses=["http://" + lookupd.http_addr],
            lookupd_poll_interval=1,
            lookupd_poll_jitter=0.0,
            max_in_flight=10,
        )
        try:
            for i in range(3):
                assert a.post("/pub", {"topic": "orders"}, body=b"a%d" % i).status == 200
                assert b.post("/pub", {"topic": "orders"}, body=b"b%d" % i).status == 200
            await wait_for(lambda: len(got) == 6, 15, "messages from both brokers")
        finally:
            reader.close()

    run_loop(main)
    assert sorted(got) == ["a0", "a1", "a2", "b0", "b1", "b2"]


def test_tombstoned_topic_is_not_resurrected(cluster):
    lookupd, (a, _b) = cluster
    assert a.post("/topic/create", {"topic": "doomed"}).status == 200
    wait_until(lambda: lookupd.producers("doomed") == {a.tcp_port}, 10, "broker registered")
    got = []

    def handler(message):
        got.append(message.body)
        return True

    async def main():
        reader = nsq.Reader(
            topic="doomed",
            channel="c",
            message_handler=handler,
            lookupd_http_addresses=["http://" + lookupd.http_addr],
            lookupd_poll_interval=1,
            lookupd_poll_jitter=0.0,
        )
        try:
            assert a.post("/pub", {"topic": "doomed"}, body=b"last").status == 200
            await wait_for(lambda: got, 15, "the message before deletion")
            # The procedure of README.md: tombstone in every lookupd, delete on the nsqd...
            status, _ = lookupd.request("POST", "/topic/tombstone?topic=doomed&node=%s" % a.http_addr)
            assert status == 200
            assert lookupd.producers("doomed") == set()
            assert a.post("/topic/delete", {"topic": "doomed"}).status == 200
            # ...and consumers, which only find brokers through lookupd, stay away.
            await tornado.gen.sleep(3)
        finally:
            reader.close()

    run_loop(main)
    names = [t["topic_name"] for t in a.stats()["topics"] or []]
    assert "doomed" not in names, names
    status, _ = lookupd.request("POST", "/topic/delete?topic=doomed")
    assert status == 200
    assert lookupd.request("GET", "/lookup?topic=doomed")[0] == 404
