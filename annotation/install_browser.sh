#!/usr/bin/env bash
# Install Debian's Chromium for the browser test when /usr/bin/chromium is missing (idempotent).
#
# Playwright's own browser download cannot reach its host from the build machines, so the test drives the distro
# build through Playwright's Python package (executable_path="/usr/bin/chromium"). Needs root or sudo.
set -euo pipefail

if [[ -x /usr/bin/chromium ]]; then
    echo "Chromium present: /usr/bin/chromium"
    exit 0
fi
sudo=""
if [[ "$(id -u)" != "0" ]]; then
    if ! command -v sudo >/dev/null; then
        echo "Chromium is missing and this is not root: run 'apt-get install -y chromium' as root" >&2
        exit 1
    fi
    sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq chromium >/dev/null
echo "Chromium installed: $(/usr/bin/chromium --version 2>/dev/null || echo /usr/bin/chromium)"
