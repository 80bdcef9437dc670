"""pynsq 0.9.1 negotiating TLS, TLS+snappy, TLS+deflate, snappy and deflate with nsqrs.

Each mode publishes with an nsq.Writer and consumes with an nsq.Reader using the same
connection options, checks every body arrives, and checks /stats reports the transport.
The certificate is made per module with the openssl command (installed by setup.sh).
"""

import ssl
import subprocess
from datetime import timedelta

import nsq
import pytest
import tornado.concurrent
import tornado.gen

from harness import Broker, broker_binary
from test_pynsq import run_loop, wait_for

TLS = {"tls_v1": True, "tls_options": {"cert_reqs": ssl.CERT_NONE}}
MODES = {
    "tls": dict(TLS),
    "tls_snappy": dict(TLS, snappy=True),
    "tls_deflate": dict(TLS, deflate=True, deflate_level=3),
    "snappy": {"snappy": True},
    "deflate": {"deflate": True, "deflate_level": 9},
}


@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    crt, key = d / "server.pem", d / "server.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-keyout", str(key), "-out", str(crt), "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True,
    )
    return crt, key


@pytest.fixture
def tls_broker(cert, tmp_path):
    crt, key = cert
    b = Broker(broker_binary(), tmp_path / "data", [
        "--tls-cert=%s" % crt, "--tls-key=%s" % key, "--https-address=127.0.0.1:0",
        "--max-deflate-level=5",
    ])
    try:
        b.start()
        yield b
    finally:
        b.stop()
        print(b.output()[-20000:])


@pytest.mark.parametrize("mode", sorted(MODES))
def test_pynsq_transport(tls_broker, mode):
    broker = tls_broker
    opts = MODES[mode]
    topic = "py_" + mode
    bodies = [("m-%d" % i).encode() for i in range(20)]
    bodies.append(bytes(i % 89 for i in range(200000)))
    got = []
    seen_stats = {}

    def handler(msg):
        got.append(msg.body)
        return True

    async def body():
        w = nsq.Writer([broker.tcp_addr], **opts)
        await wait_for(lambda: w.conns, 10, "pynsq Writer to connect with %s" % mode)
        for b in bodies:
            fut = tornado.concurrent.Future()

            def done(conn, data, fut=fut):
                if not fut.done():
                    fut.set_result(data)

            w.pub(topic, b, callback=done)
            res = await tornado.gen.with_timeout(timedelta(seconds=5), fut)
            assert res == b"OK", res
        r = nsq.Reader(topic=topic, channel="ch", message_handler=handler,
                       nsqd_tcp_addresses=[broker.tcp_addr], max_in_flight=5, **opts)
        try:
            await wait_for(lambda: len(got) == len(bodies), 10, "all messages over %s" % mode)
            ch = broker.channel_stats(topic, "ch")
            seen_stats.update(ch["clients"][0])
        finally:
            r.close()
            for conn in list(w.conns.values()):
                conn.close()
            await tornado.gen.sleep(0.05)

    run_loop(body)
    assert sorted(got) == sorted(bodies)
    assert seen_stats["tls"] is ("tls" in mode), seen_stats
    assert seen_stats["snappy"] is ("snappy" in mode), seen_stats
    assert seen_stats["deflate"] is ("deflate" in mode), seen_stats
    if "tls" in mode:
        assert seen_stats["tls_version"].startswith("TLS1."), seen_stats
