"""Entry point of the API proxy: `mesh-llm-proxy --config JSON`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

import uvicorn

from meshcore.config import ProxyConfig, from_json
from meshcore.errors import MeshError
from meshcore.process import bind_tcp, setup_logging

from mesh_proxy.app import create_app

log = logging.getLogger("mesh_proxy")


def main() -> None:
    parser = argparse.ArgumentParser(prog="mesh-llm-proxy", description="Mesh LLM OpenAI-compatible API")
    parser.add_argument("--config", required=True, help="ProxyConfig as JSON")
    args = parser.parse_args()
    setup_logging("proxy")
    config = from_json(ProxyConfig, args.config)
    host = "0.0.0.0" if config.listen_all else "127.0.0.1"
    try:
        sock = bind_tcp(host, config.port, "API")
    except MeshError as exc:
        print(f"mesh-llm proxy: {exc}", file=sys.stderr)
        sys.exit(2)
    server = uvicorn.Server(uvicorn.Config(create_app(config), log_level="warning", access_log=False,
                                           timeout_graceful_shutdown=3))
    log.info("OpenAI-compatible API on http://%s:%d/v1", host, config.port)
    asyncio.run(server.serve(sockets=[sock]))


if __name__ == "__main__":
    main()
