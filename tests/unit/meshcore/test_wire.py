import asyncio
import struct

import msgpack
import pytest

from meshcore.wire import MAX_FRAME, FrameError, Kind, encode_frame, read_frame, read_kind


async def frames_from(*chunks: bytes, count: int) -> list:
    reader = asyncio.StreamReader()
    for chunk in chunks:
        reader.feed_data(chunk)
    reader.feed_eof()
    return [await read_frame(reader) for _ in range(count)]


async def test_frames_round_trip_across_arbitrary_splits() -> None:
    data = encode_frame({"a": 1}) + encode_frame({"b": [1, 2, b"x"]})
    for cut in range(len(data) + 1):
        assert await frames_from(data[:cut], data[cut:], count=2) == [{"a": 1}, {"b": [1, 2, b"x"]}]


@pytest.mark.parametrize("raw,words", [
    (struct.pack(">I", MAX_FRAME + 1), "over the"),
    (struct.pack(">I", 3) + b"\xc1\xc1\xc1", "not valid msgpack"),
    (struct.pack(">I", 2) + msgpack.packb([1]), "not a msgpack map"),
    (struct.pack(">I", 1) + msgpack.packb(7), "not a msgpack map"),
])
async def test_malformed_and_oversized_frames_are_refused(raw: bytes, words: str) -> None:
    with pytest.raises(FrameError, match=words):
        await frames_from(raw, count=1)


def test_encoding_an_oversized_frame_is_refused() -> None:
    with pytest.raises(FrameError):
        encode_frame({"x": b"\0" * (MAX_FRAME + 1)})


async def test_stream_readers() -> None:
    reader = asyncio.StreamReader()
    reader.feed_data(bytes([Kind.GOSSIP]) + encode_frame({"k": "v"}) + struct.pack(">I", 10) + b"abc")
    reader.feed_eof()
    assert await read_kind(reader) is Kind.GOSSIP
    assert await read_frame(reader) == {"k": "v"}
    with pytest.raises(FrameError, match="ended inside"):
        await read_frame(reader)
    bad = asyncio.StreamReader()
    bad.feed_data(b"\x63")
    with pytest.raises(FrameError, match="unknown stream kind"):
        await read_kind(bad)
