"""`mesh-llm-directory` (also `mesh-llm directory`): run the directory service.

    mesh-llm-directory [--host 127.0.0.1] [--port 8080] [--db directory.sqlite3]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from meshcore.http_service import run_http_service
from meshcore.process import setup_logging

from mesh_directory.app import DirectoryConfig, create_app
from mesh_directory.store import SqliteStore


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="mesh-llm directory", description="Run the Mesh LLM directory service")
    parser.add_argument("--host", default="127.0.0.1", help="bind address (0.0.0.0 to serve the internet)")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--db", default="directory.sqlite3", help="SQLite database (created if missing)")
    parser.add_argument("--read-rate", type=float, default=20.0, help="GET requests/s per client (0: no limit)")
    parser.add_argument("--write-rate", type=float, default=1.0, help="publishes/s per client (0: no limit)")
    parser.add_argument("--ttl", type=float, default=120.0, help="seconds a listing lives without a refresh")
    args = parser.parse_args(argv)
    setup_logging("directory")
    store = SqliteStore(Path(args.db))
    config = DirectoryConfig(read_rate=args.read_rate, write_rate=args.write_rate, ttl_s=args.ttl)
    run_http_service("directory", "directory", args.port, args.host == "0.0.0.0", lambda: create_app(store, config),
                     bind_host=args.host)


if __name__ == "__main__":
    main()
