"""Every decoder of what a peer sends, fuzzed (hypothesis): frames, control messages,
stream headers, gossip digests and record lists, the tunnel line, invite tokens.
Each returns a typed value or raises its own error class; nothing else escapes
(a stray TypeError or KeyError would end the handler with a traceback)."""

import msgpack
from hypothesis import given, settings, strategies as st

from meshcore.client_hello import Peeked, peek
from meshcore.member import parse_digest, parse_records
from meshcore.errors import TokenError
from meshcore.messages import (MAX_CERT, Leave, Ok, Ping, PingAck, PingReq, Pong, Refused, Rekey, RpcLinkOffer,
                               RpcLinkRequest, StreamHeader, TunnelRequest, parse_control, to_wire)
from meshcore.ids import NodeId
from meshcore.token import InviteToken
from meshcore.wire import FrameError, decode_body

NODE = NodeId("0123456789abcdef0123456789abcdef")
leaves = st.none() | st.booleans() | st.integers(min_value=-(1 << 70), max_value=1 << 70) | st.floats() \
    | st.text(max_size=40) | st.binary(max_size=40)
values = st.recursive(leaves, lambda inner: st.lists(inner, max_size=5)
                      | st.dictionaries(st.text(max_size=10), inner, max_size=5), max_leaves=20)
tags = st.sampled_from(["ping", "pong", "ping_req", "ack", "leave", "rekey", "ok", "refused", "hello", "rpc_link",
                        "rpc_offer", ""])
frames = st.dictionaries(st.sampled_from(["t", "target", "ok", "record", "mesh_id", "secret", "epoch", "why",
                                          "model", "digest", "records", "cert", "port", "ticket"]), values, max_size=6)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=200))
def test_frame_bodies_decode_to_a_map_or_frame_error(raw: bytes) -> None:
    try:
        assert isinstance(decode_body(raw), dict)
    except FrameError:
        pass


@settings(max_examples=600, deadline=None)
@given(tags, frames)
def test_control_frames_parse_to_a_message_or_frame_error(tag: str, frame: dict) -> None:
    frame = {**frame, "t": tag}
    try:
        message = parse_control(frame)
    except FrameError:
        return
    assert to_wire(message)["t"] == tag
    if isinstance(message, Rekey):
        assert len(message.secret) == 32 and message.epoch >= 0
    if isinstance(message, PingReq):
        assert len(message.target) == 32
    if isinstance(message, (RpcLinkRequest, RpcLinkOffer)):
        assert isinstance(message.cert, bytes) and 0 < len(message.cert) <= MAX_CERT
    if isinstance(message, RpcLinkOffer):
        assert 0 <= message.port < 65536 and len(message.ticket) in (0, 32)


@settings(max_examples=300, deadline=None)
@given(frames)
def test_stream_headers_and_gossip_parts_never_crash(frame: dict) -> None:
    for decode in (lambda f: StreamHeader.parse(f), lambda f: parse_digest(f.get("digest")),
                   lambda f: parse_records(f.get("records"))):
        try:
            decode(frame)
        except FrameError:
            pass


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_tunnel_lines_parse_or_raise_frame_error(line: bytes) -> None:
    try:
        ask = TunnelRequest.decode(line)
    except FrameError:
        return
    assert TunnelRequest.decode(ask.encode()) == ask


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300) | st.binary(max_size=200).map(lambda b: "mesh1" + b.hex()))
def test_tokens_decode_or_raise_token_error(text: str) -> None:
    try:
        InviteToken.decode(text)
    except TokenError:
        pass


def test_every_message_round_trips_through_msgpack() -> None:
    for message in (Ping(), Pong(), PingReq(NODE), PingAck(True), Leave({"node_id": NODE}),
                    Rekey("ab" * 16, b"k" * 32, 3), Ok(), Refused("no"), RpcLinkRequest("qwen-7b", b"c" * 300),
                    RpcLinkOffer(4000, "ab" * 16, b"c" * 300), RpcLinkOffer(0, "", b"c")):
        wire = msgpack.unpackb(msgpack.packb(to_wire(message), use_bin_type=True), raw=False)
        assert parse_control(wire) == message
    assert StreamHeader.parse(StreamHeader("qwen-7b").to_wire()) == StreamHeader("qwen-7b")
    assert TunnelRequest.decode(TunnelRequest(NODE, "m", "/v1/messages").encode()) == TunnelRequest(NODE, "m", "/v1/messages")


def test_fields_of_the_wrong_type_or_size_are_refused() -> None:
    for frame in ({"t": "rekey", "mesh_id": "m", "secret": b"short", "epoch": 1},
                  {"t": "rekey", "mesh_id": "m", "secret": b"k" * 32, "epoch": True},
                  {"t": "rekey", "mesh_id": "m", "secret": b"k" * 32, "epoch": -1},
                  {"t": "ping_req", "target": "../etc"}, {"t": "ack", "ok": 1}, {"t": "leave", "record": []},
                  {"t": "launch"}, {"t": "rpc_link", "model": "m", "cert": b""},
                  {"t": "rpc_link", "model": "m", "cert": b"c" * 3000}, {"t": "rpc_link", "model": "m", "cert": "pem"},
                  {"t": "rpc_offer", "port": 70000, "ticket": "ab" * 16, "cert": b"c"},
                  {"t": "rpc_offer", "port": True, "ticket": "ab" * 16, "cert": b"c"},
                  {"t": "rpc_offer", "port": 4000, "ticket": "t" * 32, "cert": b"c"}):
        try:
            parse_control(frame)
        except FrameError:
            continue
        raise AssertionError(f"{frame} was accepted")
    for header in ({}, {"model": 12}, {"model": ""}, {"model": "a b"}, {"model": "x" * 300}):
        try:
            StreamHeader.parse(header)
        except FrameError:
            continue
        raise AssertionError(f"{header} was accepted")


@settings(max_examples=600, deadline=None)
@given(st.binary(max_size=600) | st.binary(max_size=300).map(lambda b: b"\x16\x03\x01" + len(b).to_bytes(2, "big") + b))
def test_client_hello_peeks_never_crash(data: bytes) -> None:
    """The data port peeks at strangers' first bytes (meshcore.client_hello): any bytes give
    a Peeked, its name printable ASCII or None, and more bytes never ask for less."""
    seen = peek(data)
    assert seen.name is None or (seen.name.isascii() and seen.name.isprintable())
    assert seen.need == 0 or seen.need > len(data)


def test_client_hello_names_its_server() -> None:
    import socket
    import ssl
    import threading
    client, server = socket.socketpair()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    hello = threading.Thread(target=lambda: _try(lambda: context.wrap_socket(client, server_hostname="t" + "ab" * 16)))
    hello.start()
    data = b""
    while peek(data).need:
        data += server.recv(4096)
    assert peek(data) == Peeked(name="t" + "ab" * 16)
    assert peek(data[:10]).need == len(data) and peek(b"GET / HTTP/1.1\r\n").http and not peek(b"\x00" * 9).tls
    server.close()
    hello.join()
    client.close()


def _try(work) -> None:  # noqa: ANN001
    try:
        work()
    except OSError:
        pass
