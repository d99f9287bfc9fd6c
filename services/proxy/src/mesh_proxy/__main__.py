"""Entry point of the API proxy: `mesh-llm-proxy --config JSON`."""

from __future__ import annotations

import argparse

from meshcore.config import ProxyConfig, from_json
from meshcore.http_service import run_http_service
from meshcore.process import setup_logging

from mesh_proxy.app import create_app


def main() -> None:
    parser = argparse.ArgumentParser(prog="mesh-llm-proxy", description="Mesh LLM OpenAI-compatible API")
    parser.add_argument("--config", required=True, help="ProxyConfig as JSON")
    args = parser.parse_args()
    setup_logging("proxy")
    config = from_json(ProxyConfig, args.config)
    run_http_service("proxy", "OpenAI-compatible API", config.port, config.listen_all, lambda: create_app(config))


if __name__ == "__main__":
    main()
