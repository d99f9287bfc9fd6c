"""Entry point of the API proxy.

    mesh-llm-proxy --config JSON                 (started by mesh-llm)
    mesh-llm-proxy --join TOKEN [--port 9337]    (a client machine: the proxy alone
                                                  joins the mesh as an API-only member)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from meshcore.config import ProxyConfig, config_text, from_json
from meshcore.errors import MeshError
from meshcore.home import Home, default_home
from meshcore.host_guard import check_origin
from meshcore.http_service import run_http_service
from meshcore.process import setup_logging

from mesh_proxy.app import create_app
from mesh_proxy.fast_http import RelayHttpProtocol
from mesh_proxy.client_mode import MeshClient, tokens_from
from mesh_proxy.routes import Router


def main() -> None:
    parser = argparse.ArgumentParser(prog="mesh-llm-proxy", description="Mesh LLM OpenAI-compatible API")
    parser.add_argument("--config", help="ProxyConfig as JSON (how mesh-llm starts it)")
    parser.add_argument("--join", action="append", default=[], metavar="TOKEN", help="join as a client")
    parser.add_argument("--port", type=int, default=9337)
    parser.add_argument("--home", default=str(default_home()))
    parser.add_argument("--listen-all", action="store_true")
    parser.add_argument("--cors-origin", action="append", default=[], metavar="ORIGIN",
                        help="let web pages from ORIGIN (or *) call the API from a browser; may repeat")
    args = parser.parse_args()
    setup_logging("proxy")
    if args.config:
        config = from_json(ProxyConfig, config_text(args.config))
    elif args.join:
        try:
            origins = tuple(check_origin(o) for o in args.cors_origin)
        except MeshError as exc:
            parser.error(str(exc))
        config = ProxyConfig(home=str(Path(args.home).expanduser().resolve()), port=args.port,
                             listen_all=args.listen_all, join=tuple(args.join), cors_origins=origins)
    else:
        parser.error("give --join TOKEN (client machine) or --config (started by mesh-llm)")
    client = None
    if config.join:
        try:
            client = MeshClient(Home(Path(config.home)), tokens_from(config.join), Router())
        except MeshError as exc:
            print(f"mesh-llm proxy: {exc}", file=sys.stderr)
            sys.exit(2)
    run_http_service("proxy", "OpenAI-compatible API", config.port, config.listen_all,
                     lambda: create_app(config, client), companion=client.run if client else None,
                     http_protocol=RelayHttpProtocol, forwarded_headers=False)


if __name__ == "__main__":
    main()
