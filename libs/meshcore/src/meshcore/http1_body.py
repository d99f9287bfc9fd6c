"""HTTP/1.1 response body framing, sans-IO: bytes in, body bytes out.

`decoder_for` picks the framing the response head declares (RFC 9112 §6.3):
no body (HEAD, 1xx, 204, 304), chunked, Content-Length, or until the connection
closes. `feed(data)` returns the body bytes `data` completes (b"" for none) and
`feed(b"")` says the peer closed the connection. A malformed or truncated body is
a BodyError naming what was wrong; sizes and trailers are bounded, so a hostile
backend cannot make the decoder buffer without limit.
"""

from __future__ import annotations

import re

MAX_SIZE_LINE = 1024        # a chunk-size line, extensions included
MAX_TRAILERS = 16 * 1024    # all trailer lines together
_HEX = re.compile(rb"[0-9A-Fa-f]{1,16}")
_SIZE_LINE = re.compile(rb"([0-9A-Fa-f]{1,16})\r\n")


class BodyError(Exception):
    """The body is not what its framing says (truncated, malformed, oversized)."""


class BodyDecoder:
    """The common face of the decoders; `done` once the whole body has been seen."""

    done: bool = False

    def __init__(self, initial: bytes = b"") -> None:
        self._initial = initial

    def take_buffered(self) -> bytes:
        """The body bytes among those read together with the head."""
        data, self._initial = self._initial, b""
        return self.feed(data) if data else b""

    def feed(self, data: bytes) -> bytes:  # pragma: no cover - each decoder has its own
        raise NotImplementedError


class NoBody(BodyDecoder):
    done = True

    def feed(self, data: bytes) -> bytes:
        return b""


class UntilClose(BodyDecoder):
    def feed(self, data: bytes) -> bytes:
        if not data:
            self.done = True
        return data


class FixedLength(BodyDecoder):
    def __init__(self, length: int, initial: bytes = b"") -> None:
        super().__init__(initial)
        self.remaining = length
        self.done = length == 0

    def feed(self, data: bytes) -> bytes:
        if self.done:
            return b""
        if not data:
            raise BodyError(f"the backend closed the connection {self.remaining} bytes before the end of the body")
        if len(data) >= self.remaining:
            data, self.remaining, self.done = data[:self.remaining], 0, True
            return data
        self.remaining -= len(data)
        return data


_SIZE, _DATA, _DATA_END, _TRAILER = range(4)


class Chunked(BodyDecoder):
    def __init__(self, initial: bytes = b"") -> None:
        super().__init__(initial)
        self._buf = b""
        self._state = _SIZE
        self._remaining = 0
        self._trailer_bytes = 0

    def feed(self, data: bytes) -> bytes:
        if self.done:
            return b""
        if not data:
            raise BodyError("the backend closed the connection mid-response")
        if self._state == _SIZE and not self._buf:
            # The usual read of a stream: exactly one whole chunk (an SSE event), no extensions.
            line = _SIZE_LINE.match(data)
            if line is not None:
                start = line.end()
                end = start + int(line.group(1), 16)
                if end > start and len(data) == end + 2 and data.endswith(b"\r\n"):
                    return data[start:end]
        buf = self._buf + data if self._buf else data
        end, pos, out = len(buf), 0, []
        while pos < end:
            state = self._state
            if state == _DATA:
                take = min(self._remaining, end - pos)
                out.append(buf[pos:pos + take])
                pos += take
                self._remaining -= take
                if not self._remaining:
                    self._state = _DATA_END
            elif state == _DATA_END:
                if end - pos < 2:
                    break
                if buf[pos:pos + 2] != b"\r\n":
                    raise BodyError("the backend sent a chunk longer than its declared size")
                pos += 2
                self._state = _SIZE
            elif state == _SIZE:
                eol = buf.find(b"\r\n", pos, pos + MAX_SIZE_LINE + 2)
                if eol < 0:
                    if end - pos > MAX_SIZE_LINE:
                        raise BodyError("the backend sent an over-long chunk-size line")
                    break
                size = buf[pos:eol].split(b";", 1)[0].strip(b" \t")
                if not _HEX.fullmatch(size):
                    raise BodyError(f"the backend sent an invalid chunk size {bytes(buf[pos:eol][:40])!r}")
                pos = eol + 2
                self._remaining = int(size, 16)
                self._state = _DATA if self._remaining else _TRAILER
            else:  # _TRAILER: lines until an empty one
                eol = buf.find(b"\r\n", pos)
                if eol < 0:
                    if self._trailer_bytes + end - pos > MAX_TRAILERS:
                        raise BodyError("the backend sent over-long trailers")
                    break
                self._trailer_bytes += eol - pos + 2
                if self._trailer_bytes > MAX_TRAILERS:
                    raise BodyError("the backend sent over-long trailers")
                empty, pos = eol == pos, eol + 2
                if empty:
                    self.done = True
                    break
        self._buf = buf[pos:] if pos < end and not self.done else b""
        if len(out) == 1:
            return out[0]
        return b"".join(out)


def decoder_for(method: str, status: int, headers: list[tuple[str, str]], initial: bytes = b"") -> BodyDecoder:
    """The decoder for a response to `method` with this status and (lower-case) headers."""
    if method == "HEAD" or status < 200 or status in (204, 304):
        return NoBody(initial)
    codings = [c.strip().lower() for k, v in headers if k == "transfer-encoding" for c in v.split(",")]
    if codings:
        return Chunked(initial) if codings[-1] == "chunked" else UntilClose(initial)
    lengths = {v.strip() for k, v in headers if k == "content-length"}
    if lengths:
        if len(lengths) != 1 or not next(iter(lengths)).isdigit() or len(next(iter(lengths))) > 18:
            raise BodyError(f"the backend sent an invalid Content-Length {sorted(lengths)!r}")
        return FixedLength(int(lengths.pop()), initial)
    return UntilClose(initial)
