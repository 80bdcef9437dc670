#!/usr/bin/env bash
# Installs the third-party NSQ clients used by the compatibility suite:
#   * a Python venv at tests/compat/.venv with the exact pins of requirements.txt
#   * nsqjs (exact version from js/package-lock.json) in tests/compat/js/node_modules
# Idempotent: each half is skipped when a stamp file matches the current pins.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/.venv"
req="$here/requirements.txt"
js="$here/js"

log() { printf '[compat-setup] %s\n' "$*" >&2; }

# ------------------------------------------------------- system packages ----
# python-snappy 0.6.1 has no wheel for this Python: it compiles against libsnappy's headers.
# The TLS tests make their certificates with the openssl command.
need_apt=()
[[ -f /usr/include/snappy-c.h ]] || need_apt+=(libsnappy-dev)
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
command -v g++ >/dev/null 2>&1 || need_apt+=(g++)
if (( ${#need_apt[@]} )); then
    if [[ $(id -u) -eq 0 ]]; then
        sudo=()
    elif command -v sudo >/dev/null 2>&1; then
        sudo=(sudo)
    else
        log "need ${need_apt[*]} (apt-get) and am neither root nor able to sudo"
        exit 1
    fi
    log "installing ${need_apt[*]} with apt-get"
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# ---------------------------------------------------------------- python ----
if command -v python3.11 >/dev/null 2>&1; then
    py=python3.11
else
    py=python3
fi

py_stamp_want="$("$py" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])') $(sha256sum "$req" | cut -d' ' -f1)"
py_stamp_file="$venv/.compat-stamp"

if [[ -f "$py_stamp_file" && -x "$venv/bin/python" && "$(cat "$py_stamp_file")" == "$py_stamp_want" ]]; then
    log "python venv up to date ($venv)"
else
    log "creating venv with $py at $venv"
    rm -rf "$venv"
    "$py" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
    log "installing pinned packages from $req"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req"
    "$venv/bin/python" -m pip check
    "$venv/bin/python" -c 'import nsq, gnsq, tornado, gevent, pytest, snappy' 
    printf '%s\n' "$py_stamp_want" >"$py_stamp_file"
    log "python packages installed"
fi

# -------------------------------------------------------------------- js ----
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    log "node and npm are required" 
    exit 1
fi

js_stamp_file="$js/node_modules/.compat-stamp"
if [[ -f "$js/package-lock.json" ]]; then
    js_stamp_want="$(node --version) $(cat "$js/package.json" "$js/package-lock.json" | sha256sum | cut -d' ' -f1)"
else
    js_stamp_want=""
fi

if [[ -n "$js_stamp_want" && -f "$js_stamp_file" && "$(cat "$js_stamp_file")" == "$js_stamp_want" ]]; then
    log "node_modules up to date ($js/node_modules)"
else
    cd "$js"
    if [[ -f package-lock.json ]]; then
        log "npm ci in $js"
        npm ci --no-audit --no-fund --loglevel=error
    else
        log "npm install in $js (no lockfile yet)"
        npm install --no-audit --no-fund --loglevel=error
    fi
    node -e 'const v = require("nsqjs/package.json").version; if (v !== "0.13.0") { console.error("nsqjs " + v + " != 0.13.0"); process.exit(1) }'
    js_stamp_want="$(node --version) $(cat package.json package-lock.json | sha256sum | cut -d' ' -f1)"
    printf '%s\n' "$js_stamp_want" >"$js_stamp_file"
    log "nsqjs installed"
fi
