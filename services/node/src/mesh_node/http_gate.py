"""What a member's HTTP stream may ask of this node's llama-server.

A remote proxy sends one HTTP/1.1 request over a QUIC HTTP stream. It is parsed
here and only a POST to an inference path the proxy itself serves
(`meshcore.api_paths`), with a body within the proxy's cap, is sent on, rebuilt
from its parsed parts: one request of its method, path, Content-Type and body (the
only header our proxies send), `Connection: close`, nothing pipelined behind it, no
other llama-server endpoint. Anything else is answered with an OpenAI-style
error and never reaches llama-server.

The parser is our own, strict and bounded (it sits on the remote hop's time to first
token: h11 took 60-120 µs of it, this takes a fraction): a request line of a token
method, an origin-form target of visible ASCII and HTTP/1.0 or 1.1; header lines of a
token name, a colon and a value of visible characters, obs-text (0x80-0xFF) and inner
spaces or tabs (h11's grammar); CRLF line ends only, no folded lines, one Host header
(HTTP/1.1), at most MAX_HEADERS headers and MAX_HEAD_BYTES of head; the body by one
Content-Length (at most 20 digits) or `Transfer-Encoding: chunked` (decoded by
meshcore.http1_body, bounded), never both; the whole request within REQUEST_READ_S.
What the gate accepts in the head, h11 reads as the same request
(tests/unit/node/test_http_gate.py checks it against h11); chunk framing is decoded and
dropped, so its leniencies never reach llama-server.

Memory members' requests may take (issue 28): whether the model is served here is asked
from the head, before any of the body is read (a request for a model this node does not
serve costs its head only); a body's bytes are reserved in a `BodyBudget` before it is
read, at most PEER_BODY_BYTES of one member's requests and ALL_BODY_BYTES of everyone's at
once (8 MiB bodies on 128 streams of 32 connections could hold 1 GiB for 30 s). A request
that does not fit is refused at once with a 503, never queued.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, replace
from typing import Callable

from meshcore.api_paths import MAX_BODY_BYTES, MAX_HEAD_BYTES, is_forwarded
from meshcore.http1 import MAX_HEADERS
from meshcore.http1_body import BodyError, Chunked

READ_SIZE = 65536
PEER_BODY_BYTES = 16 << 20   # request bodies of one member held at once
ALL_BODY_BYTES = 64 << 20    # ... and of every member together
MAX_LENGTH_DIGITS = 20  # h11's bound: int() of a longer digit string is refused, not computed
REQUEST_READ_S = 30.0   # the whole request, head and body, must arrive within this
KEPT = {b"content-type"}  # the only header our proxies send besides framing (meshcore.http1.encode_request)
_TOKEN = rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_REQUEST_LINE = re.compile(rb"(" + _TOKEN + rb") ([\x21-\x7e]+) HTTP/1\.[01]")
_NAME = re.compile(_TOKEN)
_VALUE = re.compile(rb"[\x21-\x7e\x80-\xff \t]*")  # stripped of the spaces around it first


class Refused(Exception):
    def __init__(self, status: int, message: str, code: str, target: str = "/") -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.target = status, message, code, target


class BodyBudget:
    """Bytes of members' request bodies held at once (see the module docstring)."""

    def __init__(self, per_peer: int = PEER_BODY_BYTES, total: int = ALL_BODY_BYTES) -> None:
        self.per_peer, self.total = per_peer, total
        self.held: dict[str, int] = {}
        self.all = 0

    def take(self, peer: str, n: int) -> bool:
        if self.held.get(peer, 0) + n > self.per_peer or self.all + n > self.total:
            return False
        self.held[peer] = self.held.get(peer, 0) + n
        self.all += n
        return True

    def give(self, peer: str, n: int) -> None:
        left = self.held.get(peer, 0) - n
        if left > 0:
            self.held[peer] = left
        else:
            self.held.pop(peer, None)
        self.all -= n


@dataclass(frozen=True)
class GatedRequest:
    method: str
    target: str
    headers: tuple[tuple[bytes, bytes], ...]  # names lower-case; only KEPT ones
    body: bytes
    held: int = 0  # bytes it holds in the body budget (Admit), given back once it is sent on

    def encode(self, host: str) -> bytes:
        """The request as llama-server gets it: its Content-Type (the only header a proxy
        of ours sends besides the framing: nothing else a member adds reaches llama-server),
        our Host, Content-Length and Connection: close. Every part passed the parser's checks or is
        ours, so none can hold a CR, LF or colon where it would split a line."""
        lines = [b"%s %s HTTP/1.1\r\nHost: %s\r\n" % (self.method.encode(), self.target.encode(), host.encode())]
        lines.extend(b"%s: %s\r\n" % (k, v) for k, v in self.headers)
        lines.append(b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(self.body))
        return b"".join(lines) + self.body


def _invalid(what: str) -> Refused:
    return Refused(400, f"the tunnelled request is not valid HTTP/1.1 ({what})", "invalid_request")


def parse_head(head: bytes) -> tuple[str, str, list[tuple[bytes, bytes]]]:
    """Method, target and headers (names lower-case) of a request head without its
    final CRLFCRLF; Refused if any part is malformed."""
    lines = head.split(b"\r\n")
    line = _REQUEST_LINE.fullmatch(lines[0])
    if line is None:
        raise _invalid(f"bad request line {lines[0][:80]!r}")
    if len(lines) - 1 > MAX_HEADERS:
        raise _invalid(f"{len(lines) - 1} headers, at most {MAX_HEADERS}")
    headers = []
    for raw in lines[1:]:
        name, colon, value = raw.partition(b":")
        value = value.strip(b" \t")
        if not colon or _NAME.fullmatch(name) is None or _VALUE.fullmatch(value) is None:
            raise _invalid(f"bad header line {raw[:80]!r}")
        headers.append((name.lower(), value))
    hosts = sum(1 for k, _ in headers if k == b"host")
    if hosts > 1 or (hosts == 0 and lines[0].endswith(b"1.1")):
        raise _invalid("an HTTP/1.1 request has exactly one Host header")
    return line.group(1).decode("ascii"), line.group(2).decode("ascii"), headers


async def _head(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """The request head (without CRLFCRLF) and the bytes read past it. Each read is
    searched from just before it, so a head that trickles in byte by byte costs linear
    time, not quadratic."""
    buffered = bytearray()
    while True:
        data = await reader.read(READ_SIZE)
        if not data:
            raise Refused(400, "the stream ended before a request arrived", "invalid_request")
        start = max(0, len(buffered) - 3)
        buffered += data
        end = buffered.find(b"\r\n\r\n", start, MAX_HEAD_BYTES + 4)
        if end >= 0:
            return bytes(buffered[:end]), bytes(buffered[end + 4:])
        if len(buffered) > MAX_HEAD_BYTES:
            raise _invalid(f"request head over {MAX_HEAD_BYTES} bytes")


def _body_framing(headers: list[tuple[bytes, bytes]], target: str, max_body: int) -> int | None:
    """The Content-Length, or None for a chunked body; Refused for anything else."""
    lengths = [v for k, v in headers if k == b"content-length"]
    codings = [v for k, v in headers if k == b"transfer-encoding"]
    if codings:
        if lengths or len(codings) > 1 or codings[0].lower() != b"chunked":
            raise Refused(400, "the tunnelled request's body framing is ambiguous or unsupported "
                               "(use one Content-Length or Transfer-Encoding: chunked)", "invalid_request", target)
        return None
    if len(lengths) > 1 or (lengths and (not lengths[0].isdigit() or len(lengths[0]) > MAX_LENGTH_DIGITS)):
        raise Refused(400, "the tunnelled request has an invalid Content-Length", "invalid_request", target)
    length = int(lengths[0]) if lengths else 0
    if length > max_body:
        raise Refused(413, f"request body is {length} bytes; the limit is {max_body} bytes",
                      "request_too_large", target)
    return length


async def _chunked_body(reader: asyncio.StreamReader, rest: bytes, target: str, max_body: int) -> bytes:
    decoder, body, size = Chunked(), [], 0
    data = rest
    while True:
        try:
            chunk = decoder.feed(data) if data else b""
        except BodyError as exc:
            raise Refused(400, f"the tunnelled request's chunked body is malformed ({exc})", "invalid_request",
                          target) from None
        size += len(chunk)
        if size > max_body:
            raise Refused(413, f"request body is over the limit of {max_body} bytes", "request_too_large", target)
        body.append(chunk)
        if decoder.done:
            return b"".join(body)
        data = await reader.read(READ_SIZE)
        if not data:
            raise Refused(400, "the stream ended inside the request body", "invalid_request", target)


@dataclass(frozen=True)
class Admit:
    """What a member's request needs before its body is read: the model served here (its
    `served()`, asked once the head is in), and room in the body budget for `peer`."""
    served: "Callable[[], bool]"
    model: str
    budget: BodyBudget
    peer: str


async def read_request(reader: asyncio.StreamReader, max_body: int = MAX_BODY_BYTES,
                       within_s: float = REQUEST_READ_S, admit: Admit | None = None) -> GatedRequest:
    """One request from a member's stream (its `held`: the body bytes it holds in `admit`'s
    budget, to give back once the request is sent on), or Refused (status, message, code); a
    request still incomplete after `within_s` is refused (a member cannot hold a stream
    open by trickling its request)."""
    try:
        async with asyncio.timeout(within_s):
            return await _read_request(reader, max_body, admit)
    except TimeoutError:
        raise Refused(408, f"the request did not arrive within {within_s:.0f} s", "request_timeout") from None


async def _read_request(reader: asyncio.StreamReader, max_body: int, admit: Admit | None) -> GatedRequest:
    head, rest = await _head(reader)
    method, target, headers = parse_head(head)
    if not is_forwarded(method, target):
        raise Refused(404, f"{method} {target[:200]} is not an API path this mesh forwards", "not_found", target)
    length = _body_framing(headers, target, max_body)
    kept = tuple((k, v) for k, v in headers if k in KEPT)
    held = 0
    if admit is not None:
        if not admit.served():
            raise Refused(503, f"model {admit.model!r} is not served by this node right now", "model_not_ready",
                          target)
        held = max_body if length is None else length
        if not admit.budget.take(admit.peer, held):
            raise Refused(503, "this node holds as many requests from the mesh as it takes; retry shortly",
                          "overloaded", target)
    try:
        return replace(await _body(reader, method, target, kept, rest, length, max_body), held=held)
    except BaseException:
        if admit is not None:
            admit.budget.give(admit.peer, held)
        raise


async def _body(reader: asyncio.StreamReader, method: str, target: str, kept: tuple[tuple[bytes, bytes], ...],
                rest: bytes, length: int | None, max_body: int) -> GatedRequest:
    if length is None:
        return GatedRequest(method, target, kept, await _chunked_body(reader, rest, target, max_body))
    parts, size = [rest[:length]], min(len(rest), length)
    while size < length:
        data = await reader.read(min(READ_SIZE, length - size))
        if not data:
            raise Refused(400, "the stream ended inside the request body", "invalid_request", target)
        parts.append(data)
        size += len(data)
    return GatedRequest(method, target, kept, b"".join(parts))
