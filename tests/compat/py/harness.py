"""Broker process management and small helpers for the client-compatibility tests.

Everything here talks to one nsqrs broker over loopback only. The broker is
started with port 0 for TCP and HTTP; the chosen ports are read from the
`TCP: listening on <addr>:<port>` / `HTTP: listening on <addr>:<port>` lines it
writes on stderr.
"""

import http.client
import json
import os
import re
import signal
import subprocess
import threading
import time
import urllib.parse
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]

# `(?<![A-Za-z])` keeps "HTTPS: listening ..." and similar from matching.
LISTEN_RE = re.compile(r"(?<![A-Za-z])(TCP|HTTP): listening on (\S+):(\d+)")

START_TIMEOUT = 15.0
STOP_GRACE = 5.0


def broker_binary():
    raw = os.environ.get("NSQRS_BIN") or "target/debug/nsqrs"
    path = Path(raw)
    if not path.is_absolute():
        path = REPO_ROOT / path
    return path


class BrokerError(AssertionError):
    pass


class HTTPResult:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers  # dict, lower-cased names
        self.body = body

    def json(self):
        return json.loads(self.body.decode("utf-8"))

    def __repr__(self):
        return "HTTPResult(status=%r, body=%r, headers=%r)" % (self.status, self.body[:500], self.headers)


class Broker:
    """One nsqrs broker process with a private data directory."""

    def __init__(self, binary, data_dir, extra_args=()):
        self.binary = Path(binary)
        self.data_dir = Path(data_dir)
        self.extra_args = list(extra_args)
        self.proc = None
        self.tcp_port = None
        self.http_port = None
        self.argv = None
        self._lines = []
        self._lock = threading.Lock()
        self._ports_seen = threading.Condition(self._lock)
        self._threads = []

    # ------------------------------------------------------------ lifecycle
    def start(self, timeout=START_TIMEOUT):
        if not self.binary.is_file() or not os.access(self.binary, os.X_OK):
            raise BrokerError(
                "broker binary not found or not executable: %s "
                "(run `cargo build` in the repo root or set NSQRS_BIN)" % self.binary
            )
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.argv = [
            str(self.binary),
            "serve",
            "--tcp-address=127.0.0.1:0",
            "--http-address=127.0.0.1:0",
            # Never lookupd's or the admin's fixed ports (4160/4161/4171) from a test.
            "--embedded-lookupd=false",
            "--embedded-admin=false",
            "--data-path=%s" % self.data_dir,
        ] + self.extra_args
        self.proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=str(self.data_dir),
            start_new_session=True,
        )
        for name, stream in (("stderr", self.proc.stderr), ("stdout", self.proc.stdout)):
            t = threading.Thread(target=self._pump, args=(name, stream), daemon=True)
            t.start()
            self._threads.append(t)

        deadline = time.monotonic() + timeout
        with self._lock:
            while self.tcp_port is None or self.http_port is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise BrokerError(
                        "broker did not report both listen addresses within %.0fs\n%s"
                        % (timeout, self._describe_locked())
                    )
                if self.proc.poll() is not None:
                    raise BrokerError(
                        "broker exited with %r before reporting its ports\n%s"
                        % (self.proc.returncode, self._describe_locked())
                    )
                self._ports_seen.wait(min(left, 0.1))

        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BrokerError("broker exited with %r during start-up\n%s" % (self.proc.returncode, self.describe()))
            try:
                res = self.request("GET", "/ping", timeout=1.0)
                last = res
                if res.status == 200 and res.body == b"OK":
                    return self
            except OSError as exc:
                last = exc
            time.sleep(0.05)
        raise BrokerError("GET /ping never answered 200 OK (last: %r)\n%s" % (last, self.describe()))

    def _pump(self, name, stream):
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\n")
            with self._lock:
                self._lines.append("%s| %s" % (name, line))
                if name == "stderr":
                    m = LISTEN_RE.search(line)
                    if m:
                        kind, port = m.group(1), int(m.group(3))
                        if kind == "TCP" and self.tcp_port is None:
                            self.tcp_port = port
                        elif kind == "HTTP" and self.http_port is None:
                            self.http_port = port
                        self._ports_seen.notify_all()
        stream.close()

    def stop(self):
        """SIGTERM, wait up to STOP_GRACE seconds, then SIGKILL. Safe to call twice."""
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            try:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=STOP_GRACE)
            except subprocess.TimeoutExpired:
                with self._lock:
                    self._lines.append("harness| broker ignored SIGTERM for %.0fs, sending SIGKILL" % STOP_GRACE)
                proc.kill()
                proc.wait(timeout=STOP_GRACE)
            except ProcessLookupError:
                pass
        for t in self._threads:
            t.join(timeout=2.0)
        return proc.returncode

    # ------------------------------------------------------------- logging
    def _describe_locked(self):
        return "argv: %s\n--- broker output ---\n%s" % (" ".join(self.argv or []), "\n".join(self._lines[-300:]))

    def describe(self):
        with self._lock:
            return self._describe_locked()

    def output(self):
        with self._lock:
            return "\n".join(self._lines)

    # ---------------------------------------------------------- addresses
    @property
    def tcp_addr(self):
        return "127.0.0.1:%d" % self.tcp_port

    @property
    def http_addr(self):
        return "127.0.0.1:%d" % self.http_port

    # ---------------------------------------------------------------- HTTP
    def request(self, method, path, params=None, body=None, headers=None, timeout=5.0):
        if params:
            path = path + "?" + urllib.parse.urlencode(params)
        conn = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=timeout)
        try:
            hdrs = dict(headers or {})
            if body is not None and not isinstance(body, bytes):
                body = body.encode("utf-8")
            if method in ("POST", "PUT") and body is None:
                body = b""
            conn.request(method, path, body=body, headers=hdrs)
            resp = conn.getresponse()
            data = resp.read()
            return HTTPResult(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)
        finally:
            conn.close()

    def post(self, path, params=None, body=None):
        return self.request("POST", path, params=params, body=body)

    def stats(self):
        res = self.request("GET", "/stats", params={"format": "json"})
        if res.status != 200:
            raise AssertionError("GET /stats?format=json failed: %r" % res)
        return res.json()

    def topic_stats(self, topic, stats=None):
        stats = stats if stats is not None else self.stats()
        for t in stats.get("topics") or []:
            if t.get("topic_name") == topic:
                return t
        return None

    def channel_stats(self, topic, channel, stats=None):
        t = self.topic_stats(topic, stats)
        if t is None:
            return None
        for c in t.get("channels") or []:
            if c.get("channel_name") == channel:
                return c
        return None


def wait_until(predicate, timeout, desc, interval=0.05, sleep=time.sleep):
    """Poll `predicate` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            value = predicate()
            if value:
                return value
            last = value
        except Exception as exc:  # keep polling; report the last failure
            last = exc
        if time.monotonic() >= deadline:
            raise AssertionError("timed out after %.1fs waiting for %s (last: %r)" % (timeout, desc, last))
        sleep(interval)


def assert_admin_ok(res, what):
    """NSQ's admin actions answer 200 with an empty body."""
    assert res.status == 200, "%s: expected 200, got %r" % (what, res)
    assert res.body == b"", "%s: expected an empty body, got %r" % (what, res.body)


def assert_http_error(res, status, message, what):
    assert res.status == status, "%s: expected %d, got %r" % (what, status, res)
    try:
        doc = res.json()
    except ValueError:
        raise AssertionError("%s: expected JSON error body, got %r" % (what, res.body))
    assert doc == {"message": message}, "%s: expected {'message': %r}, got %r" % (what, message, doc)


HEX_ID = re.compile(rb"[0-9a-f]{16}")
