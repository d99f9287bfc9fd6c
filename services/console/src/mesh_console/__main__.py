"""Entry point of the console: `mesh-llm-console --config JSON`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

import uvicorn

from meshcore.config import ConsoleConfig, from_json
from meshcore.errors import MeshError
from meshcore.process import bind_tcp, setup_logging

from mesh_console.app import create_app

log = logging.getLogger("mesh_console")


def main() -> None:
    parser = argparse.ArgumentParser(prog="mesh-llm-console", description="Mesh LLM web console")
    parser.add_argument("--config", required=True, help="ConsoleConfig as JSON")
    args = parser.parse_args()
    setup_logging("console")
    config = from_json(ConsoleConfig, args.config)
    host = "0.0.0.0" if config.listen_all else "127.0.0.1"
    try:
        sock = bind_tcp(host, config.port, "console")
    except MeshError as exc:
        print(f"mesh-llm console: {exc}", file=sys.stderr)
        sys.exit(2)
    server = uvicorn.Server(uvicorn.Config(create_app(config), log_level="warning", access_log=False,
                                           timeout_graceful_shutdown=1))
    log.info("console on http://%s:%d/", "127.0.0.1" if host == "127.0.0.1" else host, config.port)
    asyncio.run(server.serve(sockets=[sock]))


if __name__ == "__main__":
    main()
