"""The proxy's spliced relay (mesh_proxy.splice.BackendExchange) against a real TCP
backend: chunks reach the sink in order from the data callback, a refusing sink
(a slow client) gets them through the relay task in the same order, and a backend
that breaks or lies is an UpstreamBroken, never a hang."""

from __future__ import annotations

import asyncio

import pytest

from meshcore.http1 import UpstreamBroken
from mesh_proxy.fast_http import BodyWriter
from mesh_proxy.splice import BackendExchange, ClientGone

timeline: list[bytes] = []
EVENTS = [b'data: {"n": %d}\n\n' % i for i in range(30)]


def chunked(parts: list[bytes]) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"


SSE_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"


async def backend(response_parts: list[bytes], pause_s: float = 0.0):
    """A TCP server that reads one request head+body and writes `response_parts` one
    write each; returns (server, port, requests seen)."""
    seen: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
        seen.append(head + await reader.readexactly(length))
        for part in response_parts:
            writer.write(part)
            await writer.drain()
            await asyncio.sleep(pause_s)
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1], seen


async def connect(port: int) -> BackendExchange:
    loop = asyncio.get_running_loop()
    _, exchange = await loop.create_connection(lambda: BackendExchange("POST"), "127.0.0.1", port)
    return exchange


async def run_stream(parts: list[bytes], accept, pause_s: float = 0.0) -> tuple[list[bytes], list[bytes], object]:
    """(chunks the sink took, chunks the relay task sent, the error); `timeline` holds
    both in the order they reached the client."""
    server, port, seen = await backend(parts, pause_s)
    async with server:
        exchange = await connect(port)
        exchange.send_request("/v1/chat/completions", f"127.0.0.1:{port}", b'{"model": "m"}')
        await asyncio.wait_for(exchange.head(), 5)
        assert exchange.status == 200 and ("content-type", "text/event-stream") in exchange.headers
        direct: list[bytes] = []
        queued: list[bytes] = []
        timeline.clear()
        offered = [0]

        def sink(chunk: bytes) -> bool:
            offered[0] += 1
            if accept(offered[0]):
                direct.append(chunk)
                timeline.append(chunk)
                return True
            return False

        async def send_chunk(chunk: bytes) -> None:
            queued.append(chunk)
            timeline.append(chunk)
            await asyncio.sleep(0.001)  # a slow client
        exchange.start_body(sink)
        try:
            await asyncio.wait_for(exchange.relay(send_chunk), 10)
            error = None
        except UpstreamBroken as exc:
            error = exc
        exchange.close()
    assert seen and seen[0].startswith(b"POST /v1/chat/completions HTTP/1.1\r\n")
    return direct, queued, error


async def test_chunks_go_to_the_sink_in_the_callback():
    parts = [SSE_HEAD] + [b"%x\r\n%s\r\n" % (len(e), e) for e in EVENTS] + [b"0\r\n\r\n"]
    direct, queued, error = await run_stream(parts, lambda n: True, pause_s=0.002)
    assert error is None and queued == []
    assert b"".join(direct) == b"".join(EVENTS) == b"".join(timeline)


@pytest.mark.parametrize("accept", [lambda n: False, lambda n: n % 3 != 0, lambda n: n < 5])
async def test_a_refusing_sink_keeps_the_order(accept):
    parts = [SSE_HEAD] + [b"%x\r\n%s\r\n" % (len(e), e) for e in EVENTS] + [b"0\r\n\r\n"]
    direct, queued, error = await run_stream(parts, accept, pause_s=0.001)
    assert error is None
    assert queued, "the refused chunks went through the relay task"
    assert b"".join(timeline) == b"".join(EVENTS)  # in order on the wire, direct and queued together


async def test_head_and_body_in_one_write_and_split_anywhere():
    wire = SSE_HEAD + chunked(EVENTS)
    for step in (1, 7, 64, len(wire)):
        parts = [wire[i:i + step] for i in range(0, len(wire), step)]
        direct, queued, error = await run_stream(parts, lambda n: True)
        assert error is None and b"".join(direct + queued) == b"".join(EVENTS)


async def test_backend_breaking_mid_stream_is_an_error_after_what_came():
    parts = [SSE_HEAD, b"%x\r\n%s\r\n" % (len(EVENTS[0]), EVENTS[0]), b"40\r\nshort"]
    direct, queued, error = await run_stream(parts, lambda n: True)
    assert isinstance(error, UpstreamBroken) and "mid-response" in str(error)
    assert b"".join(direct + queued).startswith(EVENTS[0])


async def test_lying_chunk_sizes_are_an_error():
    parts = [SSE_HEAD, b"2\r\nabc\r\n0\r\n\r\n"]
    _, _, error = await run_stream(parts, lambda n: True)
    assert isinstance(error, UpstreamBroken) and "longer than its declared size" in str(error)


@pytest.mark.parametrize("response, words", [
    (b"", "before answering"),
    (b"garbage\r\n\r\n", "status line"),
    (b"HTTP/1.1 200 OK\r\nX: " + b"a" * 70_000, "over"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: nope\r\n\r\n", "Content-Length"),
])
async def test_bad_heads_are_errors(response, words):
    server, port, _ = await backend([response] if response else [])
    async with server:
        exchange = await connect(port)
        exchange.send_request("/v1/completions", "x", b"{}")
        with pytest.raises(UpstreamBroken, match=words):
            await asyncio.wait_for(exchange.head(), 5)
        exchange.close()


async def test_read_all_collects_a_json_answer():
    body = b'{"choices": [{"text": "hi"}], "usage": {"completion_tokens": 1}}'
    server, port, _ = await backend([b"HTTP/1.1 100 Continue\r\n\r\n",
                                     b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                                     % len(body), body[:10], body[10:]])
    async with server:
        exchange = await connect(port)
        exchange.send_request("/v1/completions", "x", b"{}")
        await asyncio.wait_for(exchange.head(), 5)
        assert exchange.status == 200
        assert await asyncio.wait_for(exchange.read_all(), 5) == body
        exchange.close()


def test_a_client_that_goes_away_abandons_the_exchange_before_and_during_the_body() -> None:
    """abandon() (the server protocol saw the client's connection lost): a wait for the
    head and a running relay both end with ClientGone, and the backend connection closes."""
    async def scenario() -> None:
        silent, silent_port, _ = await backend([b""], pause_s=0.5)  # answers nothing for 0.5 s
        async with silent:
            waiting = await connect(silent_port)
            waiting.send_request("/v1/completions", f"127.0.0.1:{silent_port}", b'{"model": "m"}')
            asyncio.get_running_loop().call_later(0.05, waiting.abandon)
            with pytest.raises(ClientGone):
                await asyncio.wait_for(waiting.head(), 5)
            assert waiting.transport.is_closing()

        server, port, _ = await backend([SSE_HEAD + b"%x\r\n%s\r\n" % (len(EVENTS[0]), EVENTS[0])], pause_s=0.5)
        async with server:
            streaming = await connect(port)
            streaming.send_request("/v1/completions", f"127.0.0.1:{port}", b'{"model": "m"}')
            await asyncio.wait_for(streaming.head(), 5)
            took: list[bytes] = []
            streaming.start_body(lambda chunk: took.append(chunk) or True)
            asyncio.get_running_loop().call_later(0.2, streaming.abandon)

            async def refuse(chunk: bytes) -> None:
                raise AssertionError("the sink took every chunk")
            with pytest.raises(ClientGone):
                await asyncio.wait_for(streaming.relay(refuse), 5)
            assert took == [EVENTS[0]] and streaming.streaming and streaming.transport.is_closing()
    asyncio.run(scenario())


def test_a_body_writer_whose_client_left_refuses_and_calls_back_at_once() -> None:
    """mesh_proxy.fast_http.BodyWriter: once its connection is lost (even where uvicorn marked
    only a newer pipelined request `disconnected`), writes are refused and a callback
    registered afterwards runs at once."""
    class Cycle:
        disconnected = response_complete = False
        response_started = chunked_encoding = True
        flow = type("Flow", (), {"write_paused": False})()
        transport = type("Transport", (), {"write": lambda self, data: sent.append(data)})()
    sent: list[bytes] = []
    writer = BodyWriter(Cycle())
    assert writer.write(b"one") and sent == [b"3\r\none\r\n"]
    called: list[str] = []
    writer.on_client_gone(lambda: called.append("first"))
    writer.client_gone()
    assert called == ["first"] and not writer.write(b"two") and len(sent) == 1
    writer.on_client_gone(lambda: called.append("late"))
    assert called == ["first", "late"]


async def test_a_whole_answer_is_bounded_in_bytes_and_time() -> None:
    """Issue 28, item 8: a member serving a model could answer a non-streamed request with
    an endless chunked body, which the proxy buffered without limit."""
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    endless = [head] + [b"%x\r\n%s\r\n" % (65536, b"x" * 65536)] * 64  # 4 MiB and no end
    server, port, _ = await backend(endless)
    async with server:
        exchange = await connect(port)
        exchange.send_request("/v1/completions", f"127.0.0.1:{port}", b'{"model": "m"}')
        await asyncio.wait_for(exchange.head(), 5)
        with pytest.raises(UpstreamBroken, match="over 1 MiB"):
            await asyncio.wait_for(exchange.read_all(limit=1 << 20), 10)
    server, port, _ = await backend([head, b"4\r\nslow\r\n"] * 1 + [b"4\r\nslow\r\n"] * 50, pause_s=0.1)
    async with server:
        exchange = await connect(port)
        exchange.send_request("/v1/completions", f"127.0.0.1:{port}", b'{"model": "m"}')
        await asyncio.wait_for(exchange.head(), 5)
        with pytest.raises(UpstreamBroken, match="did not end within"):
            await asyncio.wait_for(exchange.read_all(within_s=0.5), 10)
