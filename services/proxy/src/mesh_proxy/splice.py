"""One HTTP/1.1 exchange with a backend on a connection the proxy owns, relayed to
the client from the connection's own data callback.

Per streamed chunk the work is: the event loop reads the backend socket and calls
`data_received`, the chunked framing is decoded (meshcore.http1_body), and the chunk
goes to the client's socket through `BodyWriter.write` (mesh_proxy.fast_http) — no
task wakes, no coroutine runs. When the client cannot take it now (slow reader,
no body writer), the chunk is queued, the backend connection stops being read, and
the relay task sends the queue with ASGI `send` (which waits for the client to drain)
before reading resumes: the proxy never buffers more than one read of a stream.

The response head is parsed by meshcore.http1 (strict, bounded), so a backend that
is a hostile mesh member's llama-server gets the same checks as on the generic path.
"""

from __future__ import annotations

import asyncio
import time
from typing import Callable

from meshcore.api_paths import ANSWER_S, MAX_ANSWER_BYTES
from meshcore.http1 import UpstreamBroken, encode_request, for_client, split_head
from meshcore.http1_body import BodyDecoder, BodyError, decoder_for

Sink = Callable[[bytes], bool]


class ClientGone(Exception):
    """The client went away before its answer was complete; the backend request is
    abandoned (its connection closed, so llama-server stops generating)."""


def _refuse(_: bytes) -> bool:
    return False


class BackendExchange(asyncio.Protocol):
    """`preamble`: bytes that go before the request, in the same write (the node agent's
    TunnelRequest line for a model served by another node)."""

    def __init__(self, method: str, preamble: bytes = b"") -> None:
        loop = asyncio.get_running_loop()
        self.method = method
        self.preamble = preamble
        self.transport: asyncio.Transport | None = None
        self.status = 0
        self.headers: list[tuple[str, str]] = []
        self._head_buf = b""
        self._head = loop.create_future()
        self._decoder: BodyDecoder | None = None
        self._sink: Sink = _refuse
        self._queued: list[bytes] = []
        self._waiter: asyncio.Future[None] | None = None  # the relay task, waiting for work
        self.finished = False
        self.error: UpstreamBroken | ClientGone | None = None
        self.streaming = False  # the body has started flowing to the client
        self.first_chunk_at: float | None = None
        self.events = 0

    # -- asyncio.Protocol --------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self._decoder is None:
            self._head_received(data)
        else:
            self._body_received(data)

    def eof_received(self) -> bool:
        if self._decoder is None:
            self._fail_head(UpstreamBroken("the backend closed the connection before answering"))
        else:
            self._body_received(b"")
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self._decoder is None:
            self._fail_head(UpstreamBroken(f"the backend connection failed ({exc or 'closed'})"))
        elif not self.finished:
            self._finish(UpstreamBroken("the backend closed the connection mid-response"))

    # -- the head ------------------------------------------------------------------------
    def send_request(self, target: str, host: str, body: bytes, content_type: str = "application/json") -> None:
        assert self.transport is not None
        self.transport.write(self.preamble + encode_request(self.method, target, host, body, content_type))

    async def head(self) -> None:
        """Wait for the response head (status, headers); UpstreamBroken if none comes."""
        await self._head

    def _head_received(self, data: bytes) -> None:
        self._head_buf += data
        try:
            head = split_head(self._head_buf)
            if head is None:
                return
            status, headers, rest = head
            self._decoder = decoder_for(self.method, status, headers, rest)
        except (UpstreamBroken, BodyError) as exc:
            self._fail_head(exc if isinstance(exc, UpstreamBroken) else UpstreamBroken(str(exc)))
            return
        self._head_buf = b""
        self.status, self.headers = status, for_client(headers)
        if self.transport is not None:
            self.transport.pause_reading()  # until the relay says where the body goes
        if not self._head.done():
            self._head.set_result(None)

    @property
    def content_type(self) -> str:
        return next((v for k, v in self.headers if k == "content-type"), "application/json")

    def _fail_head(self, exc: UpstreamBroken) -> None:
        if not self._head.done():
            self._head.set_exception(exc)
        if self.transport is not None:
            self.transport.close()

    def abandon(self) -> None:
        """The client went away: whoever waits for the head or relays the body gets
        ClientGone, and the backend connection closes."""
        if not self._head.done():
            self._head.set_exception(ClientGone())
        self._finish(ClientGone())  # closes the backend connection

    # -- the body ------------------------------------------------------------------------
    def start_body(self, sink: Sink | None = None) -> None:
        """Let a streamed body flow: to `sink` while it accepts chunks, else to the queue
        that `relay` sends on."""
        self.streaming = True
        self._start(sink)

    def _start(self, sink: Sink | None) -> None:
        assert self._decoder is not None and self.transport is not None
        self._sink = sink or _refuse
        self._decode(self._decoder.take_buffered)
        if not self.finished and not self._queued:
            self.transport.resume_reading()

    def _body_received(self, data: bytes) -> None:
        if not self.finished:
            self._decode(self._decoder.feed, data)  # type: ignore[union-attr]

    def _decode(self, step: Callable[..., bytes], *args: bytes) -> None:
        """One decoding step of the body: its bytes delivered, its end or error noted."""
        assert self._decoder is not None
        try:
            chunk = step(*args)
        except BodyError as exc:
            self._finish(UpstreamBroken(str(exc)))
            return
        if chunk:
            self._deliver(chunk)
        if self._decoder.done:
            self._finish(None)

    def _deliver(self, chunk: bytes) -> None:
        if self.first_chunk_at is None:
            self.first_chunk_at = time.monotonic()
        self.events += chunk.count(b"data: ") - chunk.count(b"data: [DONE]")
        if self._queued or not self._sink(chunk):
            self._queued.append(chunk)
            if self.transport is not None:
                self.transport.pause_reading()
            self._wake()

    def _finish(self, error: UpstreamBroken | ClientGone | None) -> None:
        if self.finished:
            return
        self.finished, self.error = True, error
        self._wake()
        if self.transport is not None:
            self.transport.close()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def relay(self, send_chunk: Callable[[bytes], "asyncio.Future[None] | object"]) -> None:
        """Send what the sink refused, in order, until the body ends; then raise the
        backend's error, if it broke mid-response (ClientGone if the client went away)."""
        loop = asyncio.get_running_loop()
        while True:
            if not self._queued and not self.finished:
                self._waiter = loop.create_future()
                try:
                    await self._waiter
                finally:
                    self._waiter = None
            while self._queued:
                batch, self._queued = self._queued, []
                for chunk in batch:
                    await send_chunk(chunk)  # type: ignore[misc]
            if self.finished:
                break
            if self.transport is not None:
                self.transport.resume_reading()
        if self.error is not None:
            raise self.error

    async def read_all(self, limit: int = MAX_ANSWER_BYTES, within_s: float = ANSWER_S) -> bytes:
        """The whole body (a JSON answer); UpstreamBroken if it breaks off, or passes `limit`
        bytes or `within_s` seconds (then the connection is closed)."""
        self._start(None)
        parts: list[bytes] = []
        size = 0

        async def keep(chunk: bytes) -> None:
            nonlocal size
            size += len(chunk)
            if size > limit:
                raise UpstreamBroken(f"its answer is over {limit >> 20} MiB")
            parts.append(chunk)
        try:
            async with asyncio.timeout(within_s):
                await self.relay(keep)
        except TimeoutError:
            self.close()
            raise UpstreamBroken(f"its answer did not end within {within_s:.0f} s") from None
        except UpstreamBroken:
            self.close()
            raise
        return b"".join(parts)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
