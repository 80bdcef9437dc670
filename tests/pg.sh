#!/usr/bin/env bash
# Makes sure PostgreSQL's server binaries (initdb, pg_ctl) are installed for
# tests/history_pg.rs, which starts its own throwaway cluster. Installs the Debian package when
# they are missing; prints the bin directory it found.
set -euo pipefail

find_bin() {
    command -v initdb 2>/dev/null && return
    ls -d /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -n1
}

if [ -z "$(find_bin)" ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "tests/pg.sh: PostgreSQL is not installed and installing it needs root (apt-get install postgresql)" >&2
        exit 1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi
bin="$(find_bin)"
if [ -z "$bin" ]; then
    echo "tests/pg.sh: initdb not found after installing postgresql" >&2
    exit 1
fi
dirname "$bin"
