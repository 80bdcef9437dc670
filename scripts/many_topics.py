#!/usr/bin/env python3
"""Descriptors and memory of a broker holding many topics, each with one channel and one
message (BENCHMARKS.md, "Many topics").

    scripts/many_topics.py BROKER [TOPICS] [--idle SECONDS]

BROKER is an `nsqrs` binary (run as `nsqrs serve`) or a Go `nsqd`. The broker starts on free
loopback ports with a fresh temporary data directory. One message is published to each of
TOPICS topics (default 10000) over one TCP connection, then a channel is created on each over
HTTP (keep-alive); descriptors (/proc/PID/fd) and resident memory (VmRSS) are sampled all along.
After an idle pause (default 25 s) they are read again, and a round trip (SUB, message, FIN)
on the first and the last topic checks that the broker still serves. Only the Python standard
library is needed.
"""

import http.client
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time


def frames(sock):
    """Yields (type, data) frames from an NSQ V2 connection."""
    buf = b""
    while True:
        while len(buf) < 8:
            chunk = sock.recv(65536)
            if not chunk:
                return
            buf += chunk
        size, kind = struct.unpack(">ii", buf[:8])
        while len(buf) < 4 + size:
            chunk = sock.recv(65536)
            if not chunk:
                return
            buf += chunk
        data, buf = buf[8 : 4 + size], buf[4 + size :]
        if kind == 0 and data == b"_heartbeat_":
            sock.sendall(b"NOP\n")
            continue
        yield kind, data


def fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    idle = 25.0
    if "--idle" in sys.argv:
        idle = float(sys.argv[sys.argv.index("--idle") + 1])
        args.remove(sys.argv[sys.argv.index("--idle") + 1])
    binary = os.path.abspath(args[0])
    topics = int(args[1]) if len(args) > 1 else 10000
    data_dir = tempfile.mkdtemp(prefix="many-topics-")
    cmd = [binary]
    if os.path.basename(binary) != "nsqd":
        cmd += ["serve", "--embedded-lookupd=false"]
    cmd += ["--tcp-address=127.0.0.1:0", "--http-address=127.0.0.1:0", f"--data-path={data_dir}"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    ports = {}
    for line in proc.stderr:
        m = re.search(r"(TCP|HTTP): listening on [\d.]+:(\d+)", line)
        if m:
            ports.setdefault(m.group(1), int(m.group(2)))
        if len(ports) == 2:
            break
    threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()
    peak = {"fds": 0, "rss": 0.0}
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak["fds"] = max(peak["fds"], fds(proc.pid))
            peak["rss"] = max(peak["rss"], rss_mib(proc.pid))
            time.sleep(0.5)

    threading.Thread(target=sample, daemon=True).start()
    try:
        print(f"broker: {' '.join(cmd[:2])}  topics: {topics}")
        print(f"idle broker: {fds(proc.pid)} descriptors, {rss_mib(proc.pid):.1f} MiB RSS")
        started = time.time()
        tcp = socket.create_connection(("127.0.0.1", ports["TCP"]))
        tcp.sendall(b"  V2")
        replies = frames(tcp)
        made = topics
        for i in range(topics):
            body = b"message %d" % i
            tcp.sendall(b"PUB t%05d\n" % i + struct.pack(">i", len(body)) + body)
            reply = next(replies, None)
            if reply != (0, b"OK"):
                print(f"PUB to topic {i} failed: {reply}")
                made = i
                break
        tcp.close()
        published = time.time()
        web = http.client.HTTPConnection("127.0.0.1", ports["HTTP"])
        for i in range(made):
            web.request("POST", f"/channel/create?topic=t{i:05d}&channel=c")
            resp = web.getresponse()
            text = resp.read()
            if resp.status != 200:
                print(f"channel on topic {i} failed: {resp.status} {text!r}")
                made = i
                break
        created = time.time()
        web.request("GET", "/ping")
        resp = web.getresponse()
        print(f"/ping: {resp.status} {resp.read()!r}")
        print(
            f"published to {made} topics in {published - started:.1f} s, "
            f"created {made} channels in {created - published:.1f} s"
        )
        print(f"after creating: {fds(proc.pid)} descriptors, {rss_mib(proc.pid):.1f} MiB RSS")
        time.sleep(idle)
        print(f"after {idle:.0f} s idle: {fds(proc.pid)} descriptors, {rss_mib(proc.pid):.1f} MiB RSS")
        done.set()
        print(f"peak while creating: {peak['fds']} descriptors, {peak['rss']:.1f} MiB RSS")
        try:
            for i in (0, made - 1):
                sub = socket.create_connection(("127.0.0.1", ports["TCP"]), timeout=30)
                sub.sendall(b"  V2" + b"SUB t%05d c\nRDY 1\n" % i)
                replies = frames(sub)
                assert next(replies) == (0, b"OK")
                kind, data = next(replies)
                assert kind == 2 and data[26:] == b"message %d" % i, (kind, data)
                sub.sendall(b"FIN " + data[10:26] + b"\n")
                sub.close()
            print("round trip on the first and the last topic: OK")
        except (OSError, AssertionError, StopIteration) as e:
            print(f"round trip FAILED: {e!r}")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=600)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
