#!/usr/bin/env bash
# What `make test` needs beyond `make setup`: a real browser (Chromium + ChromeDriver) for the console test,
# and PostgreSQL's server for the directory's tests (scripts/postgres-deps.sh).
# Installed from Debian's packages when missing and we are root; else a clear error.
set -euo pipefail
"$(dirname "$0")/postgres-deps.sh"
if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "[setup] installing chromium for the console browser test" >&2
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
else
  echo "setup: the console test needs Chromium and ChromeDriver (Debian: sudo apt-get install chromium chromium-driver)" >&2
  exit 1
fi
