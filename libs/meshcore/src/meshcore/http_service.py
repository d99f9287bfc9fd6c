"""Run an ASGI app (the proxy, the console) the way every Mesh LLM HTTP role does:
bind first (a taken port is a one-line error and exit code 2, which the launcher
reads as "do not restart"), then serve with uvicorn on that socket, optionally
next to a companion coroutine (the client-mode proxy's mesh member): whichever
ends first ends the other, and a MeshError from either is a one-line exit 2.

uvicorn is imported here only when called: the roles that serve HTTP depend on it,
meshcore itself does not."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import sys
from typing import Any, Awaitable, Callable

from meshcore.errors import MeshError, find_mesh_error
from meshcore import event_loop
from meshcore.process import bind_tcp

CONFIG_ERROR_EXIT = 2


async def _serve(server: Any, sock: Any, companion: Callable[[], Awaitable[None]] | None) -> None:
    tasks = [asyncio.ensure_future(server.serve(sockets=[sock]))]
    if companion is not None:
        tasks.append(asyncio.ensure_future(companion()))
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        server.should_exit = True
        for task in tasks[1:]:
            task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
            raise result


def run_http_service(role: str, what: str, port: int, listen_all: bool, make_app: Callable[[], Any],
                     graceful_s: float = 3.0, companion: Callable[[], Awaitable[None]] | None = None,
                     bind_host: str | None = None, http_protocol: Any = "auto",
                     forwarded_headers: bool = True) -> None:
    """`http_protocol`: uvicorn's `http` setting ("auto", or a protocol class such as the
    proxy's mesh_proxy.fast_http.RelayHttpProtocol). `forwarded_headers`: take the client's
    address from X-Forwarded-For when it comes from a trusted balancer (uvicorn's
    FORWARDED_ALLOW_IPS; the directory behind haproxy); the API proxy turns it off: nothing
    sits in front of it, and it saves a middleware per request."""
    import uvicorn

    host = bind_host or ("0.0.0.0" if listen_all else "127.0.0.1")
    try:
        sock = bind_tcp(host, port, what)
    except MeshError as exc:
        print(f"mesh-llm {role}: {exc}", file=sys.stderr)
        sys.exit(CONFIG_ERROR_EXIT)
    class Server(uvicorn.Server):
        """SIGTERM/SIGINT stop the server gracefully and the process exits 0
        (stock uvicorn re-raises the signal after shutting down)."""

        @contextlib.contextmanager
        def capture_signals(self):  # type: ignore[no-untyped-def]
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, self.handle_exit, sig, None)
            try:
                yield
            finally:
                for sig in (signal.SIGINT, signal.SIGTERM):
                    loop.remove_signal_handler(sig)

    app = make_app()
    # Everything built so far (modules, the app) lives as long as the process: out of the
    # collector's sight, so a full collection under load walks only what requests made
    # (gc.freeze; a long pause here is a stall of every stream at once).
    gc.collect()
    gc.freeze()
    server = Server(uvicorn.Config(app, log_level="warning", access_log=False, http=http_protocol,
                                   proxy_headers=forwarded_headers, server_header=False,
                                   timeout_graceful_shutdown=graceful_s))
    logging.getLogger(f"mesh_{role}").info("%s on http://%s:%d/", what, host, port)
    try:
        event_loop.run(_serve(server, sock, companion))
    except (MeshError, ExceptionGroup) as exc:
        error = find_mesh_error(exc)
        if error is None:
            raise
        print(f"mesh-llm {role}: {error}", file=sys.stderr)
        sys.exit(CONFIG_ERROR_EXIT)
