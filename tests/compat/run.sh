#!/usr/bin/env bash
# Runs the third-party client compatibility suite against an nsqrs binary.
#   NSQRS_BIN          broker binary (default: target/debug/nsqrs, relative to the repo root)
#   NSQRS_COMPAT_LOGS  optional directory; each Python test's broker output is saved there
# Extra arguments are passed to pytest (e.g. -k dpub -x).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"

bin="${NSQRS_BIN:-target/debug/nsqrs}"
[[ "$bin" = /* ]] || bin="$root/$bin"
export NSQRS_BIN="$bin"

"$here/setup.sh"

if [[ ! -x "$NSQRS_BIN" ]]; then
    echo "[compat] broker binary $NSQRS_BIN not found: run 'cargo build' first or set NSQRS_BIN" >&2
    exit 1
fi
echo "[compat] broker: $NSQRS_BIN" >&2

py_rc=0
js_rc=0

echo "[compat] === Python (pynsq, gnsq) ===" >&2
( cd "$here/py" && "$here/.venv/bin/python" -m pytest -p no:cacheprovider -ra "$@" . ) || py_rc=$?

echo "[compat] === JavaScript (nsqjs) ===" >&2
( cd "$here/js" && node --test ) || js_rc=$?

echo "[compat] pytest exit=$py_rc node --test exit=$js_rc" >&2
if [[ $py_rc -ne 0 || $js_rc -ne 0 ]]; then
    exit 1
fi
