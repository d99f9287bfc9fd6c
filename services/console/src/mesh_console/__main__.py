"""Entry point of the console: `mesh-llm-console --config JSON`."""

from __future__ import annotations

import argparse

from meshcore.config import ConsoleConfig, config_text, from_json
from meshcore.http_service import run_http_service
from meshcore.process import setup_logging

from mesh_console.app import create_app


def main() -> None:
    parser = argparse.ArgumentParser(prog="mesh-llm-console", description="Mesh LLM web console")
    parser.add_argument("--config", required=True, help="ConsoleConfig as JSON, or - to read it from stdin")
    args = parser.parse_args()
    setup_logging("console")
    config = from_json(ConsoleConfig, config_text(args.config))
    # The client's own address decides who sees the invite token: never one a header claims.
    run_http_service("console", "console", config.port, config.listen_all, lambda: create_app(config),
                     graceful_s=1.0, forwarded_headers=False)


if __name__ == "__main__":
    main()
