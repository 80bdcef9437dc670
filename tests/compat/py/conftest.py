"""pytest fixtures: one fresh nsqrs broker per test.

Extra broker flags for a test:  @pytest.mark.broker_args("--msg-timeout=1s")
Broker binary:                  $NSQRS_BIN (default target/debug/nsqrs, relative to the repo root)
Broker logs:                    printed on failure; also saved under $NSQRS_COMPAT_LOGS if set
"""

import os
import re
from pathlib import Path

import pytest

from harness import Broker, broker_binary


def pytest_configure(config):
    config.addinivalue_line("markers", "broker_args(*flags): extra command-line flags for the test's broker")


@pytest.fixture
def broker(request, tmp_path):
    marker = request.node.get_closest_marker("broker_args")
    extra = list(marker.args) if marker else []
    b = Broker(broker_binary(), tmp_path / "data", extra)
    try:
        b.start()
        yield b
    finally:
        code = b.stop()
        out = b.output()
        log_dir = os.environ.get("NSQRS_COMPAT_LOGS")
        if log_dir:
            name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.nodeid)
            Path(log_dir).mkdir(parents=True, exist_ok=True)
            Path(log_dir, name + ".log").write_text(
                "argv: %s\nexit: %r\n%s\n" % (" ".join(b.argv or []), code, out)
            )
        # pytest shows this only for failing tests ("Captured stdout teardown").
        print("broker argv: %s" % " ".join(b.argv or []))
        print("broker exit code after SIGTERM: %r" % code)
        print("--- broker output (last 200 lines) ---")
        print("\n".join(out.splitlines()[-200:]))
