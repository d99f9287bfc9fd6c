"""The QUIC transport on loopback, in one process: admission and stream dispatch."""

import asyncio
from pathlib import Path

import pytest

from meshcore.identity import MeshSecret, load_or_create_identity
from meshcore.transport import AdmissionRefused, MeshEndpoint
from meshcore.wire import Kind, encode_frame, read_frame


def endpoint(tmp: Path, name: str, mesh: MeshSecret) -> MeshEndpoint:
    (tmp / name).mkdir()
    return MeshEndpoint(load_or_create_identity(tmp / name), lambda: mesh)


async def echo(conn, reader, writer) -> None:  # noqa: ANN001
    message = await read_frame(reader)
    writer.write(encode_frame({"echo": message["x"], "from": conn.peer_id}))
    writer.write_eof()


async def test_admitted_peers_exchange_frames(tmp_path: Path) -> None:
    mesh = MeshSecret.new()
    a, b = endpoint(tmp_path, "a", mesh), endpoint(tmp_path, "b", mesh)
    b.handlers[Kind.CONTROL] = echo
    port = await b.listen("127.0.0.1", 0)
    try:
        conn = await a.dial(f"127.0.0.1:{port}")
        assert conn.peer_id == b.identity.node_id
        reader, writer = await conn.open_stream(Kind.CONTROL)
        writer.write(encode_frame({"x": 42}))
        reply = await asyncio.wait_for(read_frame(reader), 5)
        assert reply == {"echo": 42, "from": a.identity.node_id}
    finally:
        a.close()
        b.close()


async def test_wrong_secret_is_refused_both_ways(tmp_path: Path) -> None:
    a = endpoint(tmp_path, "a", MeshSecret.new())
    b = endpoint(tmp_path, "b", MeshSecret.new())
    b.handlers[Kind.CONTROL] = echo
    port = await b.listen("127.0.0.1", 0)
    try:
        with pytest.raises(AdmissionRefused, match="secret"):
            await a.dial(f"127.0.0.1:{port}")
        await asyncio.sleep(0.2)
        assert not any(c.admitted.is_set() for c in b.connections)
    finally:
        a.close()
        b.close()


async def test_streams_before_admission_close_the_connection(tmp_path: Path) -> None:
    mesh = MeshSecret.new()
    a, b = endpoint(tmp_path, "a", mesh), endpoint(tmp_path, "b", mesh)
    served = []
    b.handlers[Kind.HTTP] = lambda c, r, w: served.append(1)  # type: ignore[assignment,return-value]
    port = await b.listen("127.0.0.1", 0)
    original = a._admit_as_dialer

    async def skip_admission(conn):  # noqa: ANN001, ANN202
        reader, writer = await conn.open_stream(Kind.HTTP, {"model": "x"})
        writer.write(b"GET / HTTP/1.1\r\n\r\n")
        await asyncio.wait_for(conn.wait_closed(), 5)

    a._admit_as_dialer = skip_admission  # type: ignore[method-assign]
    try:
        await a.dial(f"127.0.0.1:{port}")
        assert served == []
    finally:
        a._admit_as_dialer = original  # type: ignore[method-assign]
        a.close()
        b.close()
