"""The serving side of a tunnelled API request: a member's request to this node's
llama-server, and the answer back onto the member's QUIC stream.

`BackendRelay` is the local connection's asyncio protocol: the request is written
the moment the connection is made, and each read of the answer goes onto the QUIC
stream and out in a datagram from the read's own callback (MeshConnection.send_now)
— no task wakes and no loop turn passes between llama-server writing a token and
the datagram leaving. That is most of what the remote hop adds to a request's time
to first token (docs/benchmarks.md, "The remote hop alone").

Like the stream copy it replaces, it applies no backpressure of its own: QUIC's send
buffer takes what llama-server writes, at the speed it generates tokens.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Callable

log = logging.getLogger(__name__)


class BackendRelay(asyncio.Protocol):
    def __init__(self, request: bytes, send: Callable[[bytes], None]) -> None:
        self.request = request
        self.send = send
        self.transport: asyncio.Transport | None = None
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.transport.write(self.request)  # type: ignore[union-attr]

    def data_received(self, data: bytes) -> None:
        try:
            self.send(data)
        except Exception as exc:  # noqa: BLE001 - aioquic refuses writes to a stream the member reset
            log.debug("the member's stream took no more of the answer: %s", exc)
            self.close()

    def eof_received(self) -> bool:
        self._end()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._end()

    def _end(self) -> None:
        if not self.done.done():
            self.done.set_result(None)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
        self._end()
