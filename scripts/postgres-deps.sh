#!/usr/bin/env bash
# PostgreSQL server binaries (initdb, pg_ctl, postgres) for the directory's tests and
# benchmark, which start a real server of their own in a temporary folder.
# Installed from Debian's `postgresql` package when missing and we are root; else a clear error.
set -euo pipefail
if ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || command -v pg_ctl >/dev/null; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "[setup] installing postgresql for the directory's tests" >&2
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  # Debian's package starts a cluster of its own; the tests do not use it.
  command -v pg_ctlcluster >/dev/null && for c in /etc/postgresql/*/main; do
    [ -d "$c" ] && pg_ctlcluster "$(basename "$(dirname "$c")")" main stop 2>/dev/null || true
  done
else
  echo "setup: the directory's tests need PostgreSQL's server (Debian: sudo apt-get install postgresql)" >&2
  exit 1
fi
