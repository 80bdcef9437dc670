#!/usr/bin/env bash
# Makes sure headless Chromium and its WebDriver (Debian's chromium and chromium-driver) are
# installed for tests/admin_browser.rs, which drives the admin's pages in a real browser.
# Installs the Debian packages when they are missing; prints the two paths it found.
set -euo pipefail

if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "tests/browser.sh: chromium/chromedriver are not installed and installing them needs root (apt-get install chromium chromium-driver)" >&2
        exit 1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
fi
for bin in chromium chromedriver; do
    if ! command -v "$bin" >/dev/null; then
        echo "tests/browser.sh: $bin not found after installing chromium and chromium-driver" >&2
        exit 1
    fi
    command -v "$bin"
done
