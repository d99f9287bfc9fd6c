"""A minimal HTTP/1.1 client over any asyncio byte stream.

The proxy sends a client's original body bytes and reads the response head,
then its body chunk by chunk as it arrives (SSE streams stay unbuffered); the
console's chat uses it to reach the proxy. It needs only a (reader, writer)
pair, so the same code talks to a local llama-server over TCP or to a remote
one over a mesh stream.

The body framing (chunked, Content-Length, or until close) is decoded by the
sans-IO `meshcore.http1_body` decoders: one pass over each read, no per-event
objects. This is the proxy's hot path: every token of every stream crosses it
(docs/benchmarks.md, "The proxy measured alone"). h11 did the same job at about
a quarter of the proxy's CPU per relayed chunk.

The backend is another process of ours or a mesh member's llama-server, so the
head is parsed strictly and bounded (MAX_HEAD_BYTES); anything malformed is
UpstreamBroken, never an exception of the parser's own.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from typing import AsyncIterator

from meshcore.api_paths import ANSWER_S, MAX_ANSWER_BYTES
from meshcore.http1_body import BodyDecoder, BodyError, decoder_for

READ_SIZE = 65536
MAX_HEAD_BYTES = 64 * 1024
MAX_HEADERS = 100
_UNSAFE_IN_HEAD = re.compile("[\r\n\0]|[^\x00-\x7f]")  # would split a line, or is not ASCII
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "server",
              "date", "upgrade", "proxy-connection", "te", "trailer"}


class UpstreamBroken(Exception):
    """The backend closed the connection or sent something that is not HTTP."""


@dataclass
class UpstreamResponse:
    status: int
    headers: list[tuple[str, str]]  # lower-case names, hop-by-hop headers removed
    _decoder: BodyDecoder
    _reader: asyncio.StreamReader
    _writer: asyncio.StreamWriter

    @property
    def content_type(self) -> str:
        return next((v for k, v in self.headers if k == "content-type"), "application/json")

    async def body(self) -> AsyncIterator[bytes]:
        """The body as it arrives: one bytes object per read (several SSE events when
        they arrived together), never an empty one."""
        decoder = self._decoder
        pending = decoder.take_buffered()
        if pending:
            yield pending
        while not decoder.done:
            try:
                data = await self._reader.read(READ_SIZE)
            except (ConnectionError, OSError) as exc:
                raise UpstreamBroken(f"the backend connection failed ({exc})") from exc
            try:
                chunk = decoder.feed(data)  # b"" tells it the backend closed the connection
            except BodyError as exc:
                raise UpstreamBroken(str(exc)) from exc
            if chunk:
                yield chunk

    async def read_all(self, limit: int = MAX_ANSWER_BYTES, within_s: float = ANSWER_S) -> bytes:
        """The whole body; UpstreamBroken past `limit` bytes or `within_s` seconds."""
        parts, size = [], 0
        try:
            async with asyncio.timeout(within_s):
                async for chunk in self.body():
                    size += len(chunk)
                    if size > limit:
                        raise UpstreamBroken(f"its answer is over {limit >> 20} MiB")
                    parts.append(chunk)
        except TimeoutError:
            raise UpstreamBroken(f"its answer did not end within {within_s:.0f} s") from None
        return b"".join(parts)

    async def close(self) -> None:
        # No wait_closed(): over a QUIC stream it would never return, and over TCP
        # the close completes in the background anyway.
        self._writer.close()


def encode_request(method: str, target: str, host: str, body: bytes, content_type: str) -> bytes:
    if _UNSAFE_IN_HEAD.search(f"{method}{target}{host}{content_type}"):
        part = next(p for p in (method, target, host, content_type) if _UNSAFE_IN_HEAD.search(p))
        raise ValueError(f"not usable in an HTTP request head: {part!r}")
    return (f"{method} {target} HTTP/1.1\r\nHost: {host}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body


def parse_head(head: bytes) -> tuple[int, list[tuple[str, str]]]:
    """Status and headers (names lower-case) of a response head ending in CRLFCRLF."""
    lines = head.decode("latin-1").split("\r\n")
    status_line = lines[0].split(" ", 2)
    if len(status_line) < 2 or not status_line[0].startswith("HTTP/1.") or not status_line[1].isdigit() \
            or len(status_line[1]) != 3:
        raise UpstreamBroken(f"the backend sent an invalid status line {lines[0][:80]!r}")
    headers = []
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip() or any(c in name for c in " \t"):
            raise UpstreamBroken(f"the backend sent an invalid header line {line[:80]!r}")
        headers.append((name.lower(), value.strip()))
    if len(headers) > MAX_HEADERS:
        raise UpstreamBroken(f"the backend sent {len(headers)} headers (at most {MAX_HEADERS})")
    return int(status_line[1]), headers


def split_head(buffered: bytes) -> tuple[int, list[tuple[str, str]], bytes] | None:
    """The first final (non-1xx) response head in `buffered` and the bytes after it, or
    None while it is incomplete; UpstreamBroken if it is malformed or over MAX_HEAD_BYTES."""
    while True:
        end = buffered.find(b"\r\n\r\n", 0, MAX_HEAD_BYTES + 4)
        if end < 0:
            if len(buffered) > MAX_HEAD_BYTES:
                raise UpstreamBroken(f"the backend's response head is over {MAX_HEAD_BYTES} bytes")
            return None
        status, headers = parse_head(buffered[:end])
        buffered = buffered[end + 4:]
        if status >= 200 or status == 101:
            return status, headers, buffered  # else an interim 1xx: the final head follows


def for_client(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The backend's headers without the hop-by-hop ones (this connection's own)."""
    return [(k, v) for k, v in headers if k not in HOP_BY_HOP]


async def read_head(reader: asyncio.StreamReader) -> tuple[int, list[tuple[str, str]], bytes]:
    """The first final (non-1xx) response head, and the bytes read past it."""
    buffered = b""
    while (head := split_head(buffered)) is None:
        data = await reader.read(READ_SIZE)
        if not data:
            raise UpstreamBroken("the backend closed the connection before answering")
        buffered += data
    return head


async def send_request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, method: str,
                       target: str, host: str, body: bytes,
                       content_type: str = "application/json") -> UpstreamResponse:
    """Send one request and return once the response head has arrived."""
    try:
        # one write, so one send() for head and body: syscalls are most of the proxy's cost
        writer.write(encode_request(method, target, host, body, content_type))
        await writer.drain()
        status, headers, rest = await read_head(reader)
        try:
            decoder = decoder_for(method, status, headers, rest)
        except BodyError as exc:
            raise UpstreamBroken(str(exc)) from exc
    except (ConnectionError, OSError) as exc:
        writer.close()
        raise UpstreamBroken(f"the backend connection failed ({exc})") from exc
    except BaseException:
        writer.close()
        raise
    return UpstreamResponse(status, for_client(headers), decoder, reader, writer)
