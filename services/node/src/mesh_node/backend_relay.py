"""The serving side of a tunnelled API request: a member's request to this node's
llama-server, and the answer back onto the member's QUIC stream.

`BackendRelay` is the local connection's asyncio protocol: the request is written
the moment the connection is made, and each read of the answer goes onto the QUIC
stream and out in a datagram from the read's own callback (MeshConnection.send_now)
— no task wakes and no loop turn passes between llama-server writing a token and
the datagram leaving (docs/benchmarks.md, "The remote hop alone").

The member is not trusted to take what it asked for: aioquic's send buffer has no
bound, and a member that never acknowledges (or never grants flow-control credit)
would make this node hold the whole answer. While the stream's writer is held back
(meshcore.transport.BoundedStreamAdapter: past SEND_HIGH_WATER unacknowledged bytes) the
relay stops reading llama-server (TCP then holds llama-server back); a stream that stays
held back for STALL_S is reset and the request abandoned, so a member cannot hold a
llama-server slot by not reading.
"""

from __future__ import annotations

import asyncio
import logging

from meshcore.pipe import STALL_S
from meshcore.transport import BoundedStreamAdapter, MeshConnection

log = logging.getLogger(__name__)


class BackendRelay(asyncio.Protocol):
    def __init__(self, request: bytes, conn: MeshConnection, writer: asyncio.StreamWriter,
                 stall_s: float = STALL_S) -> None:
        self.request = request
        self.stall_s = stall_s
        self.conn = conn
        self.writer = writer
        self.stream_id: int = writer.get_extra_info("stream_id")
        self.transport: asyncio.Transport | None = None
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.stalled = False
        self._stall_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.transport.write(self.request)  # type: ignore[union-attr]

    def data_received(self, data: bytes) -> None:
        try:
            self.conn.send_now(self.writer, data)
        except Exception as exc:  # noqa: BLE001 - aioquic refuses writes to a stream the member reset
            log.debug("the member's stream took no more of the answer: %s", exc)
            self.close()
            return
        stream: BoundedStreamAdapter = self.writer.transport  # type: ignore[assignment]
        if stream.paused and self.transport is not None:
            self.transport.pause_reading()
            self.conn.when_sent(self.stream_id, self._resume)
            self._stall_timer = asyncio.get_running_loop().call_later(self.stall_s, self._stall)

    def _resume(self) -> None:
        if self._stall_timer is not None:
            self._stall_timer.cancel()
            self._stall_timer = None
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    def _stall(self) -> None:
        log.warning("node %s took nothing of an answer for %.0f s: request abandoned",
                    str(self.conn.peer_id)[:12], self.stall_s)
        self.stalled = True
        self.close()
        self.conn.reset_stream(self.writer)  # the member took nothing: no FIN that says the answer is whole

    def eof_received(self) -> bool:
        self._end()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._end()

    def _end(self) -> None:
        if not self.done.done():
            self.done.set_result(None)

    def close(self) -> None:
        if self._stall_timer is not None:
            self._stall_timer.cancel()
            self._stall_timer = None
        self.conn.forget_sender(self.stream_id, self._resume)
        if self.transport is not None:
            self.transport.close()
        self._end()
