"""Run an ASGI app (the proxy, the console) the way every Mesh LLM HTTP role does:
bind first (a taken port is a one-line error and exit code 2, which the launcher
reads as "do not restart"), then serve with uvicorn on that socket.

uvicorn is imported here only when called: the roles that serve HTTP depend on it,
meshcore itself does not."""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import Any, Callable

from meshcore.errors import MeshError
from meshcore.process import bind_tcp

CONFIG_ERROR_EXIT = 2


def run_http_service(role: str, what: str, port: int, listen_all: bool, make_app: Callable[[], Any],
                     graceful_s: float = 3.0) -> None:
    import uvicorn

    host = "0.0.0.0" if listen_all else "127.0.0.1"
    try:
        sock = bind_tcp(host, port, what)
    except MeshError as exc:
        print(f"mesh-llm {role}: {exc}", file=sys.stderr)
        sys.exit(CONFIG_ERROR_EXIT)
    server = uvicorn.Server(uvicorn.Config(make_app(), log_level="warning", access_log=False,
                                           timeout_graceful_shutdown=graceful_s))
    logging.getLogger(f"mesh_{role}").info("%s on http://%s:%d/", what, host, port)
    asyncio.run(server.serve(sockets=[sock]))
