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

`BodyWriter.on_client_gone` registers what to do when the client's connection is
lost (the relay abandons the backend request): no task per request waits on ASGI
`receive` for the disconnect.

It reads uvicorn's `RequestResponseCycle` state (`disconnected`, `flow.write_paused`,
`response_started`, `response_complete`, `chunked_encoding`): uvicorn is pinned in
uv.lock, and tests/integration/test_api.py streams through this path, so an upgrade
that changes them fails there first.
"""

from __future__ import annotations

from typing import Any, Callable

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

EXTENSION = "mesh.body_writer"


class BodyWriter:
    """`gone`: the client's connection was lost (uvicorn marks only the newest of
    pipelined requests `disconnected`; this marks each of them)."""

    __slots__ = ("_cycle", "_on_gone", "gone")

    def __init__(self, cycle: Any) -> None:
        self._cycle = cycle
        self._on_gone: Callable[[], None] | None = None
        self.gone = False

    def on_client_gone(self, callback: Callable[[], None]) -> None:
        """Call `callback` once if the client's connection is lost before the response is
        complete (at once if it already was)."""
        if self.gone or self._cycle.disconnected:
            callback()
        else:
            self._on_gone = callback

    def client_gone(self) -> None:
        """The protocol lost the client's connection."""
        self.gone = True
        callback, self._on_gone = self._on_gone, None
        if callback is not None and not self._cycle.response_complete:
            callback()

    @property
    def complete(self) -> bool:
        return self._cycle.response_complete

    def write(self, data: bytes) -> bool:
        """Write one body chunk now; False if the caller must `await send(...)` it instead."""
        c = self._cycle
        if (self.gone or c.disconnected or c.flow.write_paused or not c.response_started or c.response_complete
                or not c.chunked_encoding):
            return False
        c.transport.write(b"%x\r\n%s\r\n" % (len(data), data))
        return True


class RelayHttpProtocol(HttpToolsProtocol):
    """`_writers`: the body writers of this connection's requests not yet answered
    (more than one when the client pipelines)."""

    _writers: tuple[BodyWriter, ...] = ()

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is not None and getattr(cycle, "scope", None) is self.scope:
            writer = BodyWriter(cycle)
            self._writers = (*(w for w in self._writers if not w.complete), writer)
            self.scope.setdefault("extensions", {})[EXTENSION] = writer

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        writers, self._writers = self._writers, ()
        for writer in writers:
            writer.client_gone()


def body_writer(scope: dict) -> BodyWriter | None:
    return (scope.get("extensions") or {}).get(EXTENSION)
