"""The history story, driven by pynsq: publish with pynsq's Writer, consume on two channels
with pynsq Readers (one REQs its first delivery and lets the second time out), archive with
`nsqrs to-db --events`, then `nsqrs trace` shows every step in order with the right attempts.
"""

import json
import subprocess

import pytest
import tornado.gen

from harness import broker_binary, wait_until
from test_pynsq import Clients, call_writer, run_loop, wait_for


@pytest.mark.broker_args("--lifecycle-events=all", "--msg-timeout=1s")
def test_trace_tells_the_whole_story(broker, tmp_path):
    db = str(tmp_path / "history.db")
    assert broker.post("/topic/create", {"topic": "story"}).status == 200
    for ch in ("billing", "audit"):
        assert broker.post("/channel/create", {"topic": "story", "channel": ch}).status == 200
    to_db = subprocess.Popen(
        [str(broker_binary()), "to-db", "--topic", "story", "--nsqd-tcp-address", broker.tcp_addr,
         "--db", db, "--events", "--flush-interval=100ms"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        wait_until(lambda: broker.channel_stats("nsqrs.events", "nsqrs_to_db") is not None
                   or any(t["topic_name"] == "nsqrs.events" and t["channels"]
                          for t in (broker.stats()["topics"] or [])),
                   15, "to-db reading nsqrs.events")
        seen = {"billing": [], "audit": []}

        def billing(message):
            seen["billing"].append((message.id.decode(), message.attempts))
            if message.attempts == 1:
                message.requeue(delay=0, backoff=False)
            elif message.attempts == 2:
                message.enable_async()  # never answered: it times out after 1 s
            else:
                message.finish()

        def audit(message):
            seen["audit"].append((message.id.decode(), message.attempts))
            return True

        async def main():
            clients = Clients(broker)
            try:
                clients.reader("story", "billing", billing)
                clients.reader("story", "audit", audit)
                await clients.subscribed("story", "billing")
                await clients.subscribed("story", "audit")
                writer = await clients.writer()
                await call_writer(writer, "pub", "story", b'{"order": 42}')
                await wait_for(lambda: len(seen["billing"]) == 3 and seen["audit"], 15, "three billing deliveries")
                await tornado.gen.sleep(0.3)
            finally:
                await clients.close()

        run_loop(main)
        msg_id = seen["billing"][0][0]
        assert [a for _, a in seen["billing"]] == [1, 2, 3]

        def timeline(channel):
            out = subprocess.run([str(broker_binary()), "trace", msg_id, "--db", db, "--format=json"],
                                 capture_output=True, timeout=30)
            if out.returncode != 0:
                return []
            for t in json.loads(out.stdout).get("timelines", []):
                if t["channel"] == channel:
                    return [(s["event"], s["attempt"]) for s in t["steps"]]
            return []

        want = [("published", 0), ("delivered", 1), ("requeued", 0), ("delivered", 2),
                ("timed_out", 0), ("delivered", 3), ("finished", 0)]
        wait_until(lambda: timeline("billing") == want, 20, "the billing timeline in the archive")
        assert [e for e, _ in timeline("audit")] == ["published", "delivered", "finished"]
        out = subprocess.run([str(broker_binary()), "trace", msg_id, "--db", db],
                             capture_output=True, timeout=30, text=True)
        assert out.returncode == 0 and "billing" in out.stdout, out.stdout + out.stderr
    finally:
        to_db.terminate()
        try:
            to_db.wait(timeout=10)
        except subprocess.TimeoutExpired:
            to_db.kill()
            to_db.wait(timeout=5)
