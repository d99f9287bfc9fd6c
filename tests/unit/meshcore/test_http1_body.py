"""The proxy's HTTP/1.1 response decoding (meshcore.http1_body, meshcore.http1): every
framing, any split of the bytes into reads, and hostile input refused with BodyError /
UpstreamBroken, never another exception."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshcore.http1 import UpstreamBroken, encode_request, parse_head, send_request
from meshcore.http1_body import (MAX_SIZE_LINE, BodyError, Chunked, FixedLength, NoBody, UntilClose,
                                 decoder_for)


def chunked(parts: list[bytes], trailers: bytes = b"", ext: bytes = b"") -> bytes:
    return b"".join(b"%x%s\r\n%s\r\n" % (len(p), ext, p) for p in parts if p) + b"0\r\n" + trailers + b"\r\n"


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)]) if b > a]


def decode_all(decoder, pieces: list[bytes]) -> bytes:
    out = decoder.take_buffered()
    for piece in pieces:
        out += decoder.feed(piece)
    return out


@settings(max_examples=300)
@given(st.lists(st.binary(min_size=0, max_size=300), max_size=12), st.lists(st.integers(0, 10_000), max_size=20),
       st.sampled_from([b"", b"X-Usage: 1\r\n", b"A: b\r\nC: d\r\n"]), st.sampled_from([b"", b";name=value"]),
       st.integers(0, 40))
def test_chunked_any_split_gives_the_body(parts, cuts, trailers, ext, initial_len):
    wire = chunked(parts, trailers, ext) + b"garbage after the end is not body"
    initial, rest = wire[:initial_len], wire[initial_len:]
    decoder = Chunked(initial)
    got = decode_all(decoder, split_at(rest, cuts))
    assert got == b"".join(parts)
    assert decoder.done


@pytest.mark.parametrize("wire, words", [
    (b"zz\r\nab\r\n0\r\n\r\n", "invalid chunk size"),
    (b"0x2\r\nab\r\n0\r\n\r\n", "invalid chunk size"),
    (b"1_0\r\n" + b"a" * 16 + b"\r\n0\r\n\r\n", "invalid chunk size"),
    (b"-1\r\n", "invalid chunk size"),
    (b"\r\n", "invalid chunk size"),
    (b"2\r\nabc\r\n0\r\n\r\n", "longer than its declared size"),
    (b"1" * (MAX_SIZE_LINE + 10), "over-long chunk-size line"),
    (b"0\r\n" + b"X: " + b"y" * 20_000, "over-long trailers"),
    (b"11111111111111111\r\n", "invalid chunk size"),
])
def test_chunked_refuses_malformed_input(wire, words):
    with pytest.raises(BodyError, match=words):
        Chunked().feed(wire)


def test_chunked_truncated_body_is_an_error_at_close():
    decoder = Chunked()
    assert decoder.feed(b"5\r\nhel") == b"hel"
    with pytest.raises(BodyError, match="closed the connection mid-response"):
        decoder.feed(b"")


def test_chunked_sse_events_come_out_one_read_each():
    def one(event: bytes) -> bytes:
        return b"%x\r\n%s\r\n" % (len(event), event)
    decoder = Chunked()
    assert decoder.feed(one(b'data: {"a":1}\n\n')) == b'data: {"a":1}\n\n'
    assert decoder.feed(one(b'data: {"a":2}\n\n') + one(b'data: {"a":3}\n\n')) == \
        b'data: {"a":2}\n\ndata: {"a":3}\n\n'
    assert decoder.feed(b"0\r\n\r\n") == b"" and decoder.done


@given(st.binary(max_size=500), st.lists(st.integers(0, 1000), max_size=10))
def test_fixed_length_any_split(body, cuts):
    decoder = FixedLength(len(body))
    assert decode_all(decoder, split_at(body + b"extra", cuts)) == body
    assert decoder.done


def test_fixed_length_truncated_and_until_close():
    decoder = FixedLength(10)
    decoder.feed(b"abc")
    with pytest.raises(BodyError, match="7 bytes before the end"):
        decoder.feed(b"")
    until = UntilClose(b"ab")
    assert until.take_buffered() == b"ab" and not until.done
    assert until.feed(b"cd") == b"cd" and until.feed(b"") == b"" and until.done


@pytest.mark.parametrize("method, status, headers, kind", [
    ("HEAD", 200, [("content-length", "5")], NoBody),
    ("POST", 204, [], NoBody),
    ("POST", 304, [], NoBody),
    ("POST", 200, [("transfer-encoding", "chunked")], Chunked),
    ("POST", 200, [("transfer-encoding", "gzip, chunked")], Chunked),
    ("POST", 200, [("transfer-encoding", "gzip")], UntilClose),
    ("POST", 200, [("content-length", "12")], FixedLength),
    ("POST", 200, [("content-length", "12"), ("content-length", "12")], FixedLength),
    ("POST", 200, [], UntilClose),
])
def test_decoder_for_follows_the_framing(method, status, headers, kind):
    assert type(decoder_for(method, status, headers)) is kind


@pytest.mark.parametrize("value", [["12", "13"], ["-1"], ["1e3"], ["9" * 30]])
def test_decoder_for_refuses_bad_content_length(value):
    with pytest.raises(BodyError, match="invalid Content-Length"):
        decoder_for("POST", 200, [("content-length", v) for v in value])


def test_parse_head_and_its_refusals():
    status, headers = parse_head(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nX-A:  b \r\n")
    assert status == 200 and headers == [("content-type", "text/event-stream"), ("x-a", "b")]
    for bad in (b"HTTP/2 200 OK", b"HTTP/1.1 2000 OK", b"SPDY 200", b"HTTP/1.1 200 OK\r\nno colon",
                b"HTTP/1.1 200 OK\r\n : empty name", b"HTTP/1.1 200 OK\r\nbad name: x"):
        with pytest.raises(UpstreamBroken):
            parse_head(bad)
    with pytest.raises(ValueError):
        encode_request("POST", "/v1/x\r\nEvil: 1", "h", b"", "application/json")


async def exchange(response: bytes, *, chunks: int = 1) -> tuple[bytes, object]:
    """Serve `response` (split into `chunks` writes) from a real TCP server; return what
    the client sent and what send_request + body() made of the answer."""
    received = bytearray()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received.extend(await reader.readuntil(b"\r\n\r\n"))
        received.extend(await reader.readexactly(2))
        step = max(1, len(response) // chunks)
        for i in range(0, len(response), step):
            writer.write(response[i:i + step])
            await writer.drain()
            await asyncio.sleep(0)
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            upstream = await send_request(reader, writer, "POST", "/v1/chat", f"127.0.0.1:{port}", b"{}")
            body = await upstream.read_all()
            result = (upstream.status, upstream.headers, body)
        except UpstreamBroken as exc:
            result = exc
        writer.close()
    return bytes(received), result


async def test_send_request_over_tcp_chunked_sse():
    events = [b"data: %d\n\n" % i for i in range(20)]
    response = (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                b"Transfer-Encoding: chunked\r\nServer: llama\r\nKeep-Alive: timeout=5\r\n\r\n" + chunked(events))
    for chunks in (1, 7, len(response)):
        sent, (status, headers, body) = await exchange(response, chunks=chunks)
        assert sent.startswith(b"POST /v1/chat HTTP/1.1\r\nHost: 127.0.0.1:")
        assert b"Content-Length: 2\r\n" in sent and sent.endswith(b"\r\n\r\n{}")
        assert status == 200 and headers == [("content-type", "text/event-stream")]  # hop-by-hop gone
        assert body == b"".join(events)


async def test_send_request_reports_broken_backends():
    _, broken = await exchange(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab")
    assert isinstance(broken, UpstreamBroken) and "mid-response" in str(broken)
    _, broken = await exchange(b"not http at all\r\n\r\n")
    assert isinstance(broken, UpstreamBroken) and "status line" in str(broken)
    _, broken = await exchange(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
    assert isinstance(broken, UpstreamBroken) and "before the end of the body" in str(broken)
    _, broken = await exchange(b"")
    assert isinstance(broken, UpstreamBroken) and "before answering" in str(broken)
    _, broken = await exchange(b"HTTP/1.1 200 OK\r\nX: " + b"a" * 70_000 + b"\r\n\r\n")
    assert isinstance(broken, UpstreamBroken) and "over" in str(broken)
