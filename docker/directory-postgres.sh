#!/bin/sh
# First start: a cluster with a `directory` role and database, password auth from
# the network. Then run the server in the foreground as the postgres user.
set -eu
BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
DATA=/var/lib/mesh-pg/data
if [ -n "${DIRECTORY_DB_PASSWORD_FILE:-}" ]; then DIRECTORY_DB_PASSWORD=$(head -1 "$DIRECTORY_DB_PASSWORD_FILE"); fi
: "${DIRECTORY_DB_PASSWORD:?set DIRECTORY_DB_PASSWORD or DIRECTORY_DB_PASSWORD_FILE}"
if [ ! -s "$DATA/PG_VERSION" ]; then
  pw=$(mktemp) && printf '%s\n' "$DIRECTORY_DB_PASSWORD" > "$pw" && chown postgres "$pw"
  runuser -u postgres -- "$BIN/initdb" -D "$DATA" -U directory --pwfile "$pw" -E UTF8 \
    --auth-local=trust --auth-host=scram-sha-256 >/dev/null
  rm -f "$pw"
  echo "host all all 0.0.0.0/0 scram-sha-256" >> "$DATA/pg_hba.conf"
  runuser -u postgres -- "$BIN/pg_ctl" -D "$DATA" -o "-c listen_addresses=''" -w start >/dev/null
  runuser -u postgres -- "$BIN/createdb" -U directory directory
  runuser -u postgres -- "$BIN/pg_ctl" -D "$DATA" -m fast -w stop >/dev/null
fi
# setpriv execs the server itself (runuser would stay as PID 1 and not pass on the
# stop signal), so `docker stop` (SIGINT: fast shutdown) stops it cleanly at once.
exec setpriv --reuid=postgres --regid=postgres --init-groups \
  "$BIN/postgres" -D "$DATA" -c listen_addresses='*' -c max_connections=200
