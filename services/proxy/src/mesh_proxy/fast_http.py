"""The proxy's HTTP server protocol: uvicorn's httptools protocol plus one ASGI
extension, `mesh.body_writer`, that lets the relay (mesh_proxy.splice) write a
streamed response's body chunks to the client's socket synchronously, from the
backend connection's own data callback, with no task switch and no coroutine per
chunk. Everything else (parsing, keep-alive, the ASGI send path, flow control) is
uvicorn's.

`BodyWriter.write` refuses (returns False) whenever the plain ASGI `send` must be
used instead: the response has not started, is not chunked, is complete, the client
is gone, or the client reads slowly (uvicorn paused writing) — then the relay queues
the chunk, pauses the backend, and a task awaits `send`, which waits for the drain.

It reads uvicorn's `RequestResponseCycle` state (`disconnected`, `flow.write_paused`,
`response_started`, `response_complete`, `chunked_encoding`): uvicorn is pinned in
uv.lock, and tests/integration/test_api.py streams through this path, so an upgrade
that changes them fails there first.
"""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

EXTENSION = "mesh.body_writer"


class BodyWriter:
    __slots__ = ("_cycle",)

    def __init__(self, cycle: Any) -> None:
        self._cycle = cycle

    def write(self, data: bytes) -> bool:
        """Write one body chunk now; False if the caller must `await send(...)` it instead."""
        c = self._cycle
        if (c.disconnected or c.flow.write_paused or not c.response_started or c.response_complete
                or not c.chunked_encoding):
            return False
        c.transport.write(b"%x\r\n%s\r\n" % (len(data), data))
        return True


class RelayHttpProtocol(HttpToolsProtocol):
    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is not None and getattr(cycle, "scope", None) is self.scope:
            self.scope.setdefault("extensions", {})[EXTENSION] = BodyWriter(cycle)


def body_writer(scope: dict) -> BodyWriter | None:
    return (scope.get("extensions") or {}).get(EXTENSION)
