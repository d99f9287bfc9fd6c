import asyncio
import struct

import msgpack
import pytest

from meshcore.wire import MAX_FRAME, FrameDecoder, FrameError, Kind, encode_frame, read_frame, read_kind


def test_frames_round_trip_across_arbitrary_splits() -> None:
    data = encode_frame({"a": 1}) + encode_frame({"b": [1, 2, b"x"]})
    for cut in range(len(data) + 1):
        dec = FrameDecoder()
        frames = dec.feed(data[:cut]) + dec.feed(data[cut:])
        assert frames == [{"a": 1}, {"b": [1, 2, b"x"]}]


@pytest.mark.parametrize("raw,words", [
    (struct.pack(">I", MAX_FRAME + 1), "over the"),
    (struct.pack(">I", 3) + b"\xc1\xc1\xc1", "not valid msgpack"),
    (struct.pack(">I", 2) + msgpack.packb([1]), "not a msgpack map"),
    (struct.pack(">I", 1) + msgpack.packb(7), "not a msgpack map"),
])
def test_malformed_and_oversized_frames_are_refused(raw: bytes, words: str) -> None:
    with pytest.raises(FrameError, match=words):
        FrameDecoder().feed(raw)


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
