"""What a member's HTTP stream may ask of llama-server (pure: a StreamReader fed bytes)."""

import asyncio

import h11
import pytest
from hypothesis import given, settings, strategies as st

from mesh_node.http_gate import KEPT, Refused, read_request


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
    assert b"Connection: close" in wire and b"keep-alive" not in wire and b"content-type: application/json" in wire
    assert b"x-client" not in wire  # nothing a member adds beyond the Content-Type reaches llama-server
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
def test_accepted_requests_reach_llama_server_with_their_body_and_content_type(headers, body) -> None:
    extra = b"".join(k + b": " + v + b"\r\n" for k, v in headers)
    async def run() -> None:
        try:
            request = await read_request(feed(post("/v1/completions", body, extra)))
        except Refused:
            return
        assert request.body == body
        assert (b"content-type", b"application/json") in request.headers
        assert all(k == b"content-type" for k, _ in request.headers)
        assert_reparses(request)
    asyncio.run(run())


def h11_parts(data: bytes):
    """What h11 (strict, the parser this gate replaced) makes of `data`: (method, target,
    headers without the framing ones, body), or None where it refuses it."""
    parser = h11.Connection(h11.SERVER)
    parser.receive_data(data)
    parser.receive_data(b"")
    try:
        head = parser.next_event()
        if not isinstance(head, h11.Request):
            return None
        body = b""
        while not isinstance(event := parser.next_event(), h11.EndOfMessage):
            if not isinstance(event, h11.Data):
                return None
            body += event.data
    except h11.RemoteProtocolError:
        return None
    headers = [(k, v) for k, v in head.headers if k not in (b"host", b"content-length", b"transfer-encoding",
                                                             b"connection")]
    return head.method.decode(), head.target.decode(), headers, body


def mostly(valid: list[bytes], off: list[bytes]) -> st.SearchStrategy[bytes]:
    """A valid part most of the time, one off the grammar now and then."""
    return st.sampled_from(valid * 8 + off)


_NAMES = mostly([b"X-Client", b"Accept", b"Connection", b"te", b"Content-Length", b"Transfer-Encoding"],
                [b"Host", b"X y", b"", b"X\x00", b"\xe9", b" X", b"X\t"])
_VALUES = mostly([b"x", b"", b" padded ", b"a b", b"a\tb", b"2", b"chunked", b"close", b"\xe9t\xe9"],
                 [b"5", b"-1", b"0x5", b"gzip, chunked", b"\x00", b"\x7f", b"a\rb", b"a\nb"])
_ENDS = mostly([b"\r\n"], [b"\n", b"\r"])
_BODIES = st.sampled_from([b"", b"{}", b"hello", b"2\r\n{}\r\n0\r\n\r\n", b"2\r\n{}\r\n0\r\nX: y\r\n\r\n",
                           b"zz\r\n", b"{}GET /slots HTTP/1.1\r\n\r\n"])


@st.composite
def requests(draw) -> bytes:
    """Requests near the grammar's edges: each part valid or one step off."""
    end = draw(_ENDS)
    line = b"%s %s %s" % (draw(mostly([b"POST"], [b"post", b"GET", b"PO ST"])),
                          draw(mostly([b"/v1/completions", b"/v1/embeddings?x=1"],
                                      [b"/v1/x", b"*", b"/v1/completions#", b"/v1/completions\x00"])),
                          draw(mostly([b"HTTP/1.1"], [b"HTTP/1.0", b"HTTP/2", b"http/1.1", b"HTTP/1.1 "])))
    fields = draw(st.lists(st.tuples(_NAMES, mostly([b": ", b":", b":\t"], [b" : "]), _VALUES), max_size=5))
    if draw(mostly([b"host"], [b""])):
        fields.insert(draw(st.integers(0, len(fields))), (b"Host", b": ", b"x"))
    head = line + end + b"".join(n + sep + v + draw(_ENDS) for n, sep, v in fields)
    return head + end + draw(_BODIES)


@settings(max_examples=600, deadline=None)
@given(requests())
def test_what_the_gate_accepts_h11_accepts_as_the_same_request(data: bytes) -> None:
    """Never looser than h11: a request this parser lets through is one h11 reads the
    same way (method, target, end-to-end headers, body)."""
    async def run() -> None:
        try:
            request = await read_request(feed(data))
        except Refused:
            return
        theirs = h11_parts(data)
        assert theirs is not None, f"the gate accepted what h11 refuses: {data!r}"
        method, target, headers, body = theirs
        assert (method, target, body) == (request.method, request.target, request.body)
        assert [(k, v) for k, v in headers if k in KEPT] == list(request.headers)
    asyncio.run(run())


@pytest.mark.parametrize("head", [
    b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n{}",
    b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n{}",
    b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n{}",
    b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: +2\r\n\r\n{}",
    b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: " + b"0" * 5000 + b"\r\n\r\n{}",
    b"POST /v1/completions HTTP/1.1\r\nHost: x\r\n folded: yes\r\nContent-Length: 2\r\n\r\n{}",
    b"POST /v1/completions HTTP/1.1\r\nHost : x\r\nContent-Length: 2\r\n\r\n{}",
    b"POST /v1/completions HTTP/1.1\r\nX: a\x00b\r\nContent-Length: 2\r\n\r\n{}",
    b"POST /v1/completions HTTP/1.1\nHost: x\nContent-Length: 2\n\n{}",
    b"POST /v1/completions HTTP/2\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}",
    b"POST /v1/completions?a b HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}",
    b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n{}",
    b"POST /v1/completions HTTP/1.1\r\n" + b"X: y\r\n" * 101 + b"\r\n",
    b"POST /v1/completions HTTP/1.1\r\nX: " + b"y" * 70_000 + b"\r\n\r\n",
])
async def test_malformed_or_ambiguous_requests_are_refused_as_bad_requests(head: bytes) -> None:
    with pytest.raises(Refused) as err:
        await read_request(feed(head))
    assert err.value.status == 400 and err.value.code == "invalid_request"


async def test_a_body_that_arrives_in_many_reads_is_whole() -> None:
    body = b'{"model": "m", "input": "' + b"x" * 300_000 + b'"}'
    reader = asyncio.StreamReader()
    data = post("/v1/embeddings", body)
    for i in range(0, len(data), 1000):
        reader.feed_data(data[i:i + 1000])
    reader.feed_eof()
    assert (await read_request(reader)).body == body


async def test_a_head_that_trickles_in_byte_by_byte_is_read_whole() -> None:
    """Each read is searched from just before it: the blank line may span reads."""
    data = post("/v1/completions", b'{"model": "m"}', b"X-Client: 1\r\n")
    reader = asyncio.StreamReader()
    for i in range(len(data)):
        reader.feed_data(data[i:i + 1])
    reader.feed_eof()
    request = await read_request(reader)
    assert request.body == b'{"model": "m"}' and request.headers == ((b"content-type", b"application/json"),)


async def test_a_request_that_never_completes_is_refused_in_time() -> None:
    reader = asyncio.StreamReader()
    reader.feed_data(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n{}")
    with pytest.raises(Refused) as err:
        await read_request(reader, within_s=0.2)
    assert err.value.status == 408 and err.value.code == "request_timeout"


# -- issue 28, item 7: what members' requests may hold ---------------------------------

async def test_a_model_not_served_here_is_refused_from_the_head_before_any_body() -> None:
    from mesh_node.http_gate import Admit, BodyBudget
    reader = asyncio.StreamReader()
    reader.feed_data(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 8000000\r\n\r\n")  # no body yet
    budget = BodyBudget()
    with pytest.raises(Refused) as refused:
        await asyncio.wait_for(read_request(reader, admit=Admit(lambda: False, "m", budget, "p")), 2)
    assert refused.value.status == 503 and refused.value.code == "model_not_ready" and budget.all == 0


async def test_bodies_held_at_once_are_bounded_per_member_and_in_all() -> None:
    from mesh_node.http_gate import Admit, BodyBudget
    budget = BodyBudget(per_peer=3_000, total=5_000)
    body = b"x" * 1_000
    held = [await read_request(feed(post("/v1/completions", body)), admit=Admit(lambda: True, "m", budget, "a"))
            for _ in range(3)]
    assert [r.held for r in held] == [1_000] * 3 and budget.all == 3_000
    with pytest.raises(Refused) as refused:  # a fourth from the same member: over its share
        await read_request(feed(post("/v1/completions", body)), admit=Admit(lambda: True, "m", budget, "a"))
    assert refused.value.status == 503 and refused.value.code == "overloaded"
    for _ in range(2):
        await read_request(feed(post("/v1/completions", body)), admit=Admit(lambda: True, "m", budget, "b"))
    with pytest.raises(Refused):  # another member: over the total
        await read_request(feed(post("/v1/completions", body)), admit=Admit(lambda: True, "m", budget, "c"))
    budget.give("a", held[0].held)
    assert (await read_request(feed(post("/v1/completions", body)), admit=Admit(lambda: True, "m", budget, "c"))).held
    broken = feed(post("/v1/completions", body)[:-10])  # the stream ends inside the body: nothing stays held
    before = budget.all
    with pytest.raises(Refused):
        await read_request(broken, admit=Admit(lambda: True, "m", budget, "d"))
    assert budget.all == before and "d" not in budget.held
