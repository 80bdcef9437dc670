#!/usr/bin/env python3
"""What lifecycle events cost (BENCHMARKS.md): per run, a fresh broker in one
--lifecycle-events mode on free loopback ports, `nsqrs tail` reading nsqrs.events on a channel
of its own as an archiver would (not for off), then `nsqrs bench` writers for 15 s and readers
for 10 s on 2 connections each, 200-byte bodies in MPUB batches of 200. Modes are interleaved
in every round so a machine shared with others slows them alike. One JSON line per run.

    scripts/bench_lifecycle_events.py target/release/nsqrs ROUNDS off,publish,all
"""
import json
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time


def run(nsqrs, mode):
    data = tempfile.mkdtemp(prefix="events-bench-", dir="/tmp")
    broker = subprocess.Popen(
        [nsqrs, "serve", "--tcp-address=127.0.0.1:0", "--http-address=127.0.0.1:0",
         f"--data-path={data}", "--embedded-lookupd=false", f"--lifecycle-events={mode}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    tcp = None
    while tcp is None:
        found = re.search(r"TCP: listening on (\S+)", broker.stderr.readline())
        tcp = found and found.group(1)
    threading.Thread(target=lambda: [None for _ in broker.stderr], daemon=True).start()
    reader = None
    if mode != "off":
        reader = subprocess.Popen(
            [nsqrs, "tail", "--topic", "nsqrs.events", "--nsqd-tcp-address", tcp, "--channel", "archive"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1)

    def bench(role, runfor):
        out = subprocess.run(
            [nsqrs, "bench", "--nsqd-tcp-address", tcp, "--mode", role, "--connections", "2",
             "--runfor", runfor, "--size", "200", "--batch-size", "200", "--format", "json",
             "--server-pid", str(broker.pid)],
            capture_output=True, text=True, check=True)
        return json.loads(out.stdout)

    writer = bench("writer", "15s")
    consumer = bench("reader", "10s")
    for p in (reader, broker):
        if p:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    shutil.rmtree(data, ignore_errors=True)
    return {
        "mode": mode,
        "writer_msg_s": round(writer["writer"]["msgs_per_sec"]),
        "reader_msg_s": round(consumer["reader"]["msgs_per_sec"]),
        "broker_rss_peak_kib": consumer["server_memory"]["rss_peak_kib"],
    }


def main():
    nsqrs, rounds, modes = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(",")
    for i in range(rounds):
        for mode in modes:
            print(json.dumps({"round": i + 1, **run(nsqrs, mode)}), flush=True)


if __name__ == "__main__":
    main()
