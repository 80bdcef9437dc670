"""Replication failover with the clients people run (docs/replication.md): three brokers with
--replicas=1 and a lookupd; producers from two third-party clients (pynsq's Writer and an
nsqjs Writer in a Node process) publish under load to broker A; A is killed with SIGKILL and
its data directory deleted; B adopts A's copy (explicitly, or one of B and C automatically);
a pynsq Reader that finds brokers only through lookupd receives every acknowledged message,
and the deferred ones at their due time.
"""

import shutil
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import nsq
import pytest
import tornado.gen

from harness import Broker, broker_binary, wait_until
from test_cluster import Lookupd
from test_pynsq import run_loop, wait_for

JS_PRODUCER = Path(__file__).resolve().parents[1] / "js" / "replication_producer.js"
DEFER_MS = 4000


def http_post(addr, path):
    req = urllib.request.Request("http://%s%s" % (addr, path), method="POST", data=b"")
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def start_cluster(tmp_path, holder_args):
    lookupd = Lookupd()
    common = ["--lookupd-tcp-address=" + lookupd.tcp_addr, "--broadcast-address=127.0.0.1"]
    b = Broker(broker_binary(), tmp_path / "b", common + holder_args).start()
    c = Broker(broker_binary(), tmp_path / "c", common + holder_args).start()
    a = Broker(
        broker_binary(),
        tmp_path / "a",
        common + ["--replicate-to=" + b.tcp_addr, "--replicate-to=" + c.tcp_addr, "--replicas=1"],
    ).start()
    return lookupd, a, b, c


def run_failover(tmp_path, holder_args, adopt):
    lookupd, a, b, c = start_cluster(tmp_path, holder_args)
    brokers = [a, b, c]
    js = None
    try:
        assert a.post("/topic/create", {"topic": "orders"}).status == 200
        assert a.post("/channel/create", {"topic": "orders", "channel": "billing"}).status == 200
        wait_until(lambda: lookupd.producers("orders") == {a.tcp_port}, 10, "A registered with lookupd")

        acked = set()
        due = {}  # deferred body -> monotonic time it is due
        received = {}  # body -> monotonic arrival time
        lock = threading.Lock()

        # nsqjs producer, in its own process.
        js = subprocess.Popen(
            ["node", str(JS_PRODUCER), "127.0.0.1", str(a.tcp_port), "orders", "js", "100000"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            cwd=str(JS_PRODUCER.parent),
        )

        def pump_js():
            for raw in iter(js.stdout.readline, b""):
                line = raw.decode().strip()
                if line.startswith("ACK "):
                    with lock:
                        acked.add(line[4:])

        threading.Thread(target=pump_js, daemon=True).start()

        def handler(message):
            with lock:
                received.setdefault(message.body.decode(), time.monotonic())
            return True

        async def main():
            reader = nsq.Reader(
                topic="orders",
                channel="billing",
                message_handler=handler,
                lookupd_http_addresses=["http://" + lookupd.http_addr],
                lookupd_poll_interval=1,
                lookupd_poll_jitter=0.0,
                max_in_flight=200,
            )
            writer = nsq.Writer([a.tcp_addr])
            try:
                await wait_for(lambda: writer.conns, 10, "pynsq Writer connected to A")
                batch = 0
                killed = False

                def on_mpub(bodies):
                    def cb(conn, data):
                        if not isinstance(data, Exception) and data == b"OK":
                            with lock:
                                acked.update(bodies)

                    return cb

                def on_dpub(body):
                    sent = time.monotonic()

                    def cb(conn, data):
                        if not isinstance(data, Exception) and data == b"OK":
                            with lock:
                                acked.add(body)
                                due[body] = sent + DEFER_MS / 1000.0

                    return cb

                # Publish under load until both producers have had plenty acknowledged.
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline:
                    bodies = ["py-%d" % (batch * 20 + i) for i in range(20)]
                    writer.mpub("orders", [x.encode() for x in bodies], callback=on_mpub(bodies))
                    if batch % 25 == 0:
                        body = "py-deferred-%d" % batch
                        writer.dpub("orders", DEFER_MS, body.encode(), callback=on_dpub(body))
                    batch += 1
                    await tornado.gen.sleep(0.005)
                    with lock:
                        js_acked = sum(1 for x in acked if x.startswith("js-"))
                        py_acked = sum(1 for x in acked if x.startswith("py-"))
                        deferred = len(due)
                    if js_acked >= 500 and py_acked >= 2000 and deferred >= 2:
                        break
                # A's machine is lost while both producers are still publishing.
                a.proc.kill()
                a.proc.wait(timeout=10)
                killed = True
                shutil.rmtree(a.data_dir)
                with lock:
                    snapshot = set(acked)
                    deferred_due = dict(due)
                killed_at = time.monotonic()
                assert killed
                await adopt(lookupd, a, b, c)
                # Every acknowledged message arrives through lookupd from the adopter.
                await wait_for(lambda: snapshot <= set(received), 60, "every acknowledged message")
                return snapshot, deferred_due, killed_at
            finally:
                writer.close() if hasattr(writer, "close") else None
                reader.close()

        snapshot, deferred_due, killed_at = run_loop(main, timeout=120)
        with lock:
            got = dict(received)
        missing = snapshot - set(got)
        assert not missing, "acknowledged and never delivered: %r" % sorted(missing)[:10]
        js_acked = sum(1 for x in snapshot if x.startswith("js-"))
        py_acked = sum(1 for x in snapshot if x.startswith("py-"))
        assert js_acked >= 500 and py_acked >= 2000 and len(deferred_due) >= 2, (js_acked, py_acked, deferred_due)
        print("acknowledged before the kill: nsqjs %d, pynsq %d (%d deferred)" % (js_acked, py_acked, len(deferred_due)))
        for body, due_at in deferred_due.items():
            # Deferred messages keep their due time across the failover: not delivered early.
            assert got[body] >= due_at - 0.5, "%s came %.2fs early" % (body, due_at - got[body])
        return a, b, c
    finally:
        if js is not None and js.poll() is None:
            js.kill()
        for broker in brokers:
            if broker.proc is not None and broker.proc.poll() is None:
                broker.stop()
        lookupd.stop()


def test_explicit_adoption_delivers_every_acknowledged_message(tmp_path):
    async def adopt(lookupd, a, b, c):
        status, body = http_post(b.http_addr, "/replication/adopt?node=" + a.tcp_addr)
        assert status == 200, body
        wait_until(lambda: b.tcp_port in lookupd.producers("orders"), 10, "B registered orders")

    run_failover(tmp_path, [], adopt)


def test_automatic_adoption_delivers_every_acknowledged_message(tmp_path):
    async def adopt(lookupd, a, b, c):
        await wait_for(
            lambda: lookupd.producers("orders") & {b.tcp_port, c.tcp_port},
            30,
            "B or C adopted A and registered orders",
        )

    run_failover(tmp_path, ["--adopt-after=2s"], adopt)
