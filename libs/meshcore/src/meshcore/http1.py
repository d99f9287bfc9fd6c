"""A minimal HTTP/1.1 client over any asyncio byte stream (h11).

The proxy sends a client's original body bytes and reads the response head,
then its body chunk by chunk as it arrives (SSE streams stay unbuffered); the
console's chat uses it to reach the proxy. It needs only a (reader, writer)
pair, so the same code talks to a local llama-server over TCP or to a remote
one over a mesh stream.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import AsyncIterator

import h11

READ_SIZE = 65536
HOP_BY_HOP = {b"connection", b"keep-alive", b"transfer-encoding", b"content-length", b"server",
              b"date", b"upgrade", b"proxy-connection", b"te", b"trailer"}


class UpstreamBroken(Exception):
    """The backend closed the connection or sent something that is not HTTP."""


@dataclass
class UpstreamResponse:
    status: int
    headers: list[tuple[str, str]]
    _conn: h11.Connection
    _reader: asyncio.StreamReader
    _writer: asyncio.StreamWriter

    @property
    def content_type(self) -> str:
        return next((v for k, v in self.headers if k == "content-type"), "application/json")

    async def body(self) -> AsyncIterator[bytes]:
        while True:
            event = await next_event(self._conn, self._reader)
            if isinstance(event, h11.Data):
                yield bytes(event.data)
            elif isinstance(event, h11.EndOfMessage):
                return
            else:
                raise UpstreamBroken(f"unexpected {type(event).__name__} in the response body")

    async def read_all(self) -> bytes:
        return b"".join([chunk async for chunk in self.body()])

    async def close(self) -> None:
        # No wait_closed(): over a QUIC stream it would never return, and over TCP
        # the close completes in the background anyway.
        self._writer.close()


async def next_event(conn: h11.Connection, reader: asyncio.StreamReader) -> object:
    while True:
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError as exc:
            raise UpstreamBroken(f"the backend sent an invalid response ({exc})") from exc
        if event is h11.NEED_DATA:
            try:
                data = await reader.read(READ_SIZE)
            except (ConnectionError, OSError) as exc:
                raise UpstreamBroken(f"the backend connection failed ({exc})") from exc
            conn.receive_data(data)  # b"" tells h11 the backend closed the connection
            continue
        if event is h11.PAUSED:
            raise UpstreamBroken("the backend response could not be parsed")
        if isinstance(event, h11.ConnectionClosed):
            raise UpstreamBroken("the backend closed the connection mid-response")
        return event


async def send_request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, method: str,
                       target: str, host: str, body: bytes,
                       content_type: str = "application/json") -> UpstreamResponse:
    """Send one request and return once the response head has arrived."""
    conn = h11.Connection(h11.CLIENT)
    headers = [("Host", host), ("Content-Type", content_type), ("Content-Length", str(len(body))),
               ("Connection", "close")]
    try:
        # one write, so one send() for head and body: syscalls are most of the proxy's cost
        writer.write(b"".join((conn.send(h11.Request(method=method, target=target, headers=headers)) or b"",
                               conn.send(h11.Data(data=body)) or b"", conn.send(h11.EndOfMessage()) or b"")))
        await writer.drain()
        while True:
            event = await next_event(conn, reader)
            if isinstance(event, h11.Response):
                break
            if not isinstance(event, h11.InformationalResponse):
                raise UpstreamBroken(f"unexpected {type(event).__name__} before the response")
    except (ConnectionError, OSError) as exc:
        writer.close()
        raise UpstreamBroken(f"the backend connection failed ({exc})") from exc
    except BaseException:
        writer.close()
        raise
    headers_out = [(k.decode().lower(), v.decode("latin-1")) for k, v in event.headers
                   if k.lower() not in HOP_BY_HOP]
    return UpstreamResponse(event.status_code, headers_out, conn, reader, writer)
