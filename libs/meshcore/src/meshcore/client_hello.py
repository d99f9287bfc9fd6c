"""The server name of a TLS ClientHello, read before any TLS library sees it.

The split's data port (mesh_node.rpc_data) faces strangers. It peeks at the first TLS
record a caller sends and lets the handshake begin only if the server name names one of
its tickets; everything else (plaintext, no name, a name that is not a ticket, bytes
CPython's own SNI decoding would raise on) is closed before OpenSSL or Python's `ssl`
handle it. Pure: bytes in, a `Peeked` out; fuzzed in tests/unit/meshcore.
"""

from __future__ import annotations

from dataclasses import dataclass

RECORD_HEADER = 5
MAX_RECORD = RECORD_HEADER + (1 << 14)  # a ClientHello must fit the first record (OpenSSL's do)
HANDSHAKE, CLIENT_HELLO, SERVER_NAME, HOST_NAME = 0x16, 0x01, 0x0000, 0x00
HTTP_METHODS = (b"GET ", b"POST", b"PUT ", b"HEAD", b"DELE", b"OPTI", b"PATC", b"CONN", b"PRI ")


@dataclass(frozen=True)
class Peeked:
    need: int = 0            # bytes needed in all before it can be told (0: told)
    tls: bool = True         # it starts like a TLS handshake record
    name: str | None = None  # the server name it carries (printable ASCII), if any

    @property
    def http(self) -> bool:
        return not self.tls and self.need == 0 and self.name == "http"


def peek(data: bytes) -> Peeked:
    """What the first bytes a caller sent say, as far as they go."""
    if len(data) < RECORD_HEADER:
        if data and data[0] != HANDSHAKE:
            return _not_tls(data)
        return Peeked(need=RECORD_HEADER)
    if data[0] != HANDSHAKE or data[1] != 3:
        return _not_tls(data)
    length = int.from_bytes(data[3:5], "big")
    if not 4 <= length <= MAX_RECORD - RECORD_HEADER:
        return Peeked(tls=False)
    if len(data) < RECORD_HEADER + length:
        return Peeked(need=RECORD_HEADER + length)
    return Peeked(name=_server_name(data[RECORD_HEADER:RECORD_HEADER + length]))


def _not_tls(data: bytes) -> Peeked:
    return Peeked(tls=False, name="http" if data[:4] in HTTP_METHODS else None)


class _Short(Exception):
    pass


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.at = data, 0

    def take(self, n: int) -> bytes:
        if self.at + n > len(self.data):
            raise _Short
        self.at += n
        return self.data[self.at - n:self.at]

    def number(self, n: int) -> int:
        return int.from_bytes(self.take(n), "big")

    def vector(self, length_bytes: int) -> bytes:
        return self.take(self.number(length_bytes))


def _server_name(message: bytes) -> str | None:
    """The host_name of the server_name extension of a ClientHello handshake message."""
    r = _Reader(message)
    try:
        if r.number(1) != CLIENT_HELLO:
            return None
        body = _Reader(r.take(r.number(3)))
        body.take(2 + 32)  # legacy_version, random
        body.vector(1)     # legacy_session_id
        body.vector(2)     # cipher_suites
        body.vector(1)     # legacy_compression_methods
        extensions = _Reader(body.vector(2))
        while extensions.at < len(extensions.data):
            kind, data = extensions.number(2), extensions.vector(2)
            if kind != SERVER_NAME:
                continue
            names = _Reader(_Reader(data).vector(2))
            while names.at < len(names.data):
                name_type, name = names.number(1), names.vector(2)
                if name_type == HOST_NAME:
                    return name.decode() if name.isascii() and name.decode().isprintable() else None
            return None
    except _Short:
        return None
    return None
