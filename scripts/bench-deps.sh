#!/usr/bin/env bash
# What `make bench` needs beyond `make setup`: nginx (the reference reverse proxy of
# bench/proxy_relay.py). Installed from Debian's packages when missing and we are root;
# else the benchmark runs without that reference and says so.
set -euo pipefail
if command -v nginx >/dev/null || [ -x /usr/sbin/nginx ]; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "[setup] installing nginx for the proxy relay benchmark's reference" >&2
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light >/dev/null
else
  echo "setup: bench/proxy_relay.py compares against nginx (Debian: sudo apt-get install nginx-light); running without it" >&2
fi
