"""What a member's HTTP stream may ask of this node's llama-server.

A remote proxy sends one HTTP/1.1 request over a QUIC HTTP stream. It is parsed
here (h11) and only a POST to an inference path the proxy itself serves
(`meshcore.api_paths`), with a body within the proxy's cap, is sent on, rebuilt
from its parsed parts: one request, `Connection: close`, nothing pipelined behind
it, no other llama-server endpoint. Anything else is answered with an OpenAI-style
error and never reaches llama-server.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import h11

from meshcore.api_paths import MAX_BODY_BYTES, MAX_HEAD_BYTES, is_forwarded

READ_SIZE = 65536
DROPPED = {b"host", b"content-length", b"transfer-encoding", b"connection", b"keep-alive", b"upgrade",
           b"proxy-connection", b"te", b"trailer", b"expect"}


class Refused(Exception):
    def __init__(self, status: int, message: str, code: str, target: str = "/") -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.target = status, message, code, target


@dataclass(frozen=True)
class GatedRequest:
    method: str
    target: str
    headers: tuple[tuple[bytes, bytes], ...]
    body: bytes

    def encode(self, host: str) -> bytes:
        """The request as llama-server gets it: only its end-to-end headers, our Host,
        Content-Length and Connection: close. Joined directly (a third of h11's cost): every
        part came out of h11's parser or is ours, so none can hold a CR, LF or colon
        where it would split a line."""
        lines = [b"%s %s HTTP/1.1\r\nHost: %s\r\n" % (self.method.encode(), self.target.encode(), host.encode())]
        lines.extend(b"%s: %s\r\n" % (k, v) for k, v in self.headers)
        lines.append(b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(self.body))
        return b"".join(lines) + self.body


async def _event(conn: h11.Connection, reader: asyncio.StreamReader) -> object:
    while True:
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError as exc:
            raise Refused(400, f"the tunnelled request is not valid HTTP/1.1 ({exc})", "invalid_request") from None
        if event is not h11.NEED_DATA:
            return event
        conn.receive_data(await reader.read(READ_SIZE))


async def read_request(reader: asyncio.StreamReader, max_body: int = MAX_BODY_BYTES) -> GatedRequest:
    """One request from a member's stream, or Refused (status, message, code)."""
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_BYTES)
    event = await _event(conn, reader)
    if not isinstance(event, h11.Request):
        raise Refused(400, "the stream ended before a request arrived", "invalid_request")
    method, target = event.method.decode("ascii", "replace"), event.target.decode("ascii", "replace")
    headers = tuple((k, v) for k, v in event.headers if k.lower() not in DROPPED)
    if not is_forwarded(method, target):
        raise Refused(404, f"{method} {target[:200]} is not an API path this mesh forwards", "not_found", target)
    declared = dict(event.headers).get(b"content-length")
    if declared is not None and int(declared) > max_body:
        raise Refused(413, f"request body is {int(declared)} bytes; the limit is {max_body} bytes",
                      "request_too_large", target)
    body, size = [], 0
    while not isinstance(event := await _event(conn, reader), h11.EndOfMessage):
        if isinstance(event, h11.ConnectionClosed):
            raise Refused(400, "the stream ended inside the request body", "invalid_request", target)
        if isinstance(event, h11.Data):
            size += len(event.data)
            if size > max_body:
                raise Refused(413, f"request body is over the limit of {max_body} bytes", "request_too_large",
                              target)
            body.append(bytes(event.data))
    return GatedRequest(method, target, headers, b"".join(body))
