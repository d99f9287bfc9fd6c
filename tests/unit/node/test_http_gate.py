"""What a member's HTTP stream may ask of llama-server (pure: a StreamReader fed bytes)."""

import asyncio

import h11
import pytest
from hypothesis import given, settings, strategies as st

from mesh_node.http_gate import Refused, read_request


def feed(data: bytes) -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    return reader


def post(path: str, body: bytes, extra: bytes = b"") -> bytes:
    return (b"POST " + path.encode() + b" HTTP/1.1\r\nHost: evil\r\nContent-Type: application/json\r\n" + extra
            + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)


async def test_a_forwarded_request_is_rebuilt_as_one_request() -> None:
    body = b'{"model": "m", "prompt": "x"}'
    smuggled = post("/v1/completions", body, b"Connection: keep-alive\r\nX-Client: 1\r\n") + b"GET /slots HTTP/1.1\r\n\r\n"
    request = await read_request(feed(smuggled))
    assert (request.method, request.target, request.body) == ("POST", "/v1/completions", body)
    wire = request.encode("127.0.0.1:8080")
    assert wire.count(b"HTTP/1.1") == 1 and b"/slots" not in wire and b"evil" not in wire
    assert b"Connection: close" in wire and b"keep-alive" not in wire and b"x-client: 1" in wire
    parser = h11.Connection(h11.SERVER)
    parser.receive_data(wire)
    assert isinstance(parser.next_event(), h11.Request)


@pytest.mark.parametrize("head", [b"GET /props HTTP/1.1\r\nHost: x\r\n\r\n", b"GET /slots HTTP/1.1\r\nHost: x\r\n\r\n",
                                  post("/lora-adapters", b"{}"), post("/v1/completions/../../props", b"{}"),
                                  b"GET /v1/chat/completions HTTP/1.1\r\nHost: x\r\n\r\n"])
async def test_other_paths_are_refused(head: bytes) -> None:
    with pytest.raises(Refused) as err:
        await read_request(feed(head))
    assert err.value.status == 404


async def test_the_body_cap_holds_declared_or_chunked() -> None:
    with pytest.raises(Refused) as err:
        await read_request(feed(b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Length: 999999999\r\n\r\n"))
    assert err.value.status == 413
    chunk = b"a" * 1000
    chunked = (b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
               + (b"3e8\r\n" + chunk + b"\r\n") * 20 + b"0\r\n\r\n")
    with pytest.raises(Refused) as err:
        await read_request(feed(chunked), max_body=10_000)
    assert err.value.status == 413
    assert len((await read_request(feed(chunked), max_body=30_000)).body) == 20_000


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2000))
def test_any_bytes_give_a_request_or_refused_never_a_crash(data: bytes) -> None:
    async def run() -> None:
        try:
            request = await read_request(feed(data))
        except Refused:
            return
        assert_reparses(request)
    asyncio.run(run())


def assert_reparses(request) -> None:
    """What llama-server gets parses (h11, strict) as exactly one request with the same parts."""
    parser = h11.Connection(h11.SERVER)
    parser.receive_data(request.encode("127.0.0.1:8080"))
    head = parser.next_event()
    assert isinstance(head, h11.Request)
    assert (head.method.decode(), head.target.decode()) == (request.method, request.target)
    assert [(k, v) for k, v in head.headers if k not in (b"host", b"content-length", b"connection")] == \
        [(k.lower(), v) for k, v in request.headers]
    body = b""
    while not isinstance(event := parser.next_event(), h11.EndOfMessage):
        body += event.data
    assert body == request.body


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.from_regex(rb"\A[A-Za-z][A-Za-z0-9-]{0,15}\Z"),
                          st.from_regex(rb"\A[ -~]{0,40}\Z")), max_size=6), st.binary(max_size=300))
def test_accepted_requests_reach_llama_server_as_they_were_sent(headers, body) -> None:
    extra = b"".join(k + b": " + v + b"\r\n" for k, v in headers)
    async def run() -> None:
        try:
            request = await read_request(feed(post("/v1/completions", body, extra)))
        except Refused:
            return
        assert request.body == body
        assert_reparses(request)
    asyncio.run(run())
