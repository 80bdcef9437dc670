#!/usr/bin/env bash
# The whole test suite, as CI runs it: formatting, lints, the Rust unit and integration tests
# (which start the real binary), then the third-party client suites (pynsq, gnsq, nsqjs), whose
# pinned installs tests/compat/setup.sh performs.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo build
# tests/history_pg.rs runs against a PostgreSQL it starts; this installs the server if missing.
tests/pg.sh >/dev/null
# tests/admin_browser.rs drives the admin in headless Chromium; this installs it if missing.
tests/browser.sh >/dev/null
cargo test
NSQRS_BIN="$(cd "${CARGO_TARGET_DIR:-target}" && pwd)/debug/nsqrs" tests/compat/run.sh
