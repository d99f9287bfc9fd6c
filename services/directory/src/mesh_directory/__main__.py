"""`mesh-llm-directory` (also `mesh-llm directory`): run the directory service.

    mesh-llm-directory [--host 127.0.0.1] [--port 8080] [--db directory.sqlite3 | --db-file FILE]

The database: a SQLite file (the default, embedded), or PostgreSQL for several
replicas: the address from MESH_LLM_DIRECTORY_DB (preferred: argv is visible to
every user of the machine) or from a file (--db-file, its first line), or --db.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

from meshcore.http_service import CONFIG_ERROR_EXIT, run_http_service
from meshcore.process import setup_logging

from mesh_directory.app import SNAPSHOT_S, DirectoryConfig, create_app
from mesh_directory.store import Store, StoreUnavailable, is_postgres, open_store

log = logging.getLogger("mesh_directory")
ENV = "MESH_LLM_DIRECTORY_DB"


def database(args: argparse.Namespace) -> str:
    if args.db_file:
        try:
            lines = Path(args.db_file).read_text().strip().splitlines()
        except OSError as exc:
            raise SystemExit(f"mesh-llm directory: cannot read --db-file {args.db_file}: {exc.strerror}") from None
        if not lines or not lines[0].strip():
            raise SystemExit(f"mesh-llm directory: --db-file {args.db_file} is empty")
        return lines[0].strip()
    return args.db or os.environ.get(ENV) or "directory.sqlite3"


def open_waiting(db: str, wait_s: float) -> Store:
    """Open the store; PostgreSQL that is still starting (compose, systemd) gets `wait_s`."""
    deadline = time.monotonic() + wait_s
    warned = False
    while True:
        try:
            return open_store(db)
        except StoreUnavailable as exc:
            if not is_postgres(db) or time.monotonic() >= deadline:
                print(f"mesh-llm directory: {exc}", file=sys.stderr)
                sys.exit(CONFIG_ERROR_EXIT)
            if not warned:
                log.warning("waiting for the database: %s", exc)
                warned = True
            time.sleep(1)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="mesh-llm directory", description="Run the Mesh LLM directory service")
    parser.add_argument("--host", default="127.0.0.1", help="bind address (0.0.0.0 to serve the internet)")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--db", default=None,
                        help=f"SQLite file (default directory.sqlite3, created if missing) or postgresql://... "
                             f"(prefer ${ENV} or --db-file for an address with a password: argv is public)")
    parser.add_argument("--db-file", default=None, help="a file whose first line is the database address")
    parser.add_argument("--db-wait", type=float, default=30.0,
                        help="seconds to wait at start for a PostgreSQL that does not answer yet")
    parser.add_argument("--read-rate", type=float, default=20.0, help="GET requests/s per client (0: no limit)")
    parser.add_argument("--write-rate", type=float, default=1.0, help="publishes/s per client (0: no limit)")
    parser.add_argument("--ttl", type=float, default=120.0, help="seconds a listing lives without a refresh")
    parser.add_argument("--snapshot", type=float, default=SNAPSHOT_S,
                        help="seconds a read snapshot is served before it is checked against the database")
    args = parser.parse_args(argv)
    setup_logging("directory")
    store = open_waiting(database(args), args.db_wait)
    log.info("listings in %s", store.describe())
    config = DirectoryConfig(read_rate=args.read_rate, write_rate=args.write_rate, ttl_s=args.ttl,
                             snapshot_s=args.snapshot)
    run_http_service("directory", "directory", args.port, args.host == "0.0.0.0", lambda: create_app(store, config),
                     bind_host=args.host)


if __name__ == "__main__":
    main()
