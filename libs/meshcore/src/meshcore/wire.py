"""The mesh wire format inside QUIC streams.

One stream per exchange; its first byte names the kind. Control-type exchanges
(GOSSIP, CONTROL, and the headers of HTTP and RPC streams) are length-prefixed
msgpack frames: 4 bytes big-endian length, then a msgpack map. After their
header frame, HTTP and RPC streams carry raw bytes. `read_frame` refuses frames
over its size limit and anything that is not a msgpack map, with FrameError.
"""

from __future__ import annotations

import asyncio
import struct
from enum import IntEnum
from typing import Any

import msgpack

MAX_FRAME = 1 << 20       # control frames; gossip of ~1000 nodes fits
MAX_HEADER_FRAME = 4096   # HTTP / RPC stream headers
_LEN = struct.Struct(">I")


class Kind(IntEnum):
    GOSSIP = 1
    ROUTES = 2
    HTTP = 3
    RPC = 4
    CONTROL = 5


class FrameError(Exception):
    """A frame that is oversized, truncated or not a msgpack map."""


def encode_frame(message: dict[str, Any]) -> bytes:
    body = msgpack.packb(message, use_bin_type=True)
    if len(body) > MAX_FRAME:
        raise FrameError(f"frame of {len(body)} bytes is over the {MAX_FRAME}-byte limit")
    return _LEN.pack(len(body)) + body


def decode_body(body: bytes) -> dict[str, Any]:
    try:
        message = msgpack.unpackb(body, raw=False, strict_map_key=True)
    except (ValueError, msgpack.UnpackException, TypeError) as exc:
        raise FrameError(f"frame is not valid msgpack ({exc})") from exc
    if not isinstance(message, dict):
        raise FrameError("frame is not a msgpack map")
    return message


async def read_frame(reader: asyncio.StreamReader, limit: int = MAX_FRAME) -> dict[str, Any]:
    try:
        (length,) = _LEN.unpack(await reader.readexactly(4))
        if length > limit:
            raise FrameError(f"frame of {length} bytes is over the {limit}-byte limit")
        return decode_body(await reader.readexactly(length))
    except asyncio.IncompleteReadError as exc:
        raise FrameError("stream ended inside a frame") from exc


async def read_kind(reader: asyncio.StreamReader) -> Kind:
    try:
        byte = await reader.readexactly(1)
    except asyncio.IncompleteReadError as exc:
        raise FrameError("stream ended before its kind byte") from exc
    try:
        return Kind(byte[0])
    except ValueError as exc:
        raise FrameError(f"unknown stream kind {byte[0]}") from exc
