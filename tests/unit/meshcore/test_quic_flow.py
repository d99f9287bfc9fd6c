"""Flow control by consumption (meshcore.quic_flow), over real aioquic connections on
loopback: a peer cannot make a node buffer more than the windows, however much it
sends; a stream that is read still carries any amount; a finished stream's data is
dropped, not buffered, and starts no new handler."""

import asyncio
import contextlib
import hashlib
import socket
from pathlib import Path

import pytest

from meshcore.identity import MeshSecret, load_or_create_identity
from meshcore.pipe import splice
from meshcore.quic_flow import CONNECTION_WINDOW, STREAM_WINDOW
from meshcore.transport import SEND_HIGH_WATER, MeshConnection, MeshEndpoint
from meshcore.wire import Kind

MiB = 1 << 20


def endpoint(tmp: Path, name: str, mesh: MeshSecret) -> MeshEndpoint:
    (tmp / name).mkdir()
    return MeshEndpoint(load_or_create_identity(tmp / name), lambda: mesh)


async def pair(tmp: Path) -> tuple[MeshEndpoint, MeshEndpoint, MeshConnection, int]:
    mesh = MeshSecret.new()
    a, b = endpoint(tmp, "a", mesh), endpoint(tmp, "b", mesh)
    port = await b.listen("127.0.0.1", 0)
    return a, b, await a.dial(f"127.0.0.1:{port}"), port


def buffered(b: MeshEndpoint) -> int:
    return sum(conn._unread(None) for conn in b.connections)


async def settle(b: MeshEndpoint, limit_s: float = 30.0) -> int:
    """The most bytes `b` held unread while the sender kept pushing: watched until it
    has not grown for a second (aioquic moves a few MB/s on a busy 2-core machine)."""
    most, still, waited = 0, 0.0, 0.0
    while still < 1.0 and waited < limit_s:
        await asyncio.sleep(0.05)
        waited += 0.05
        now = buffered(b)
        still = still + 0.05 if now <= most else 0.0
        most = max(most, now)
    return most


async def test_a_stream_nobody_reads_holds_one_window_at_most(tmp_path: Path) -> None:
    a, b, conn, _ = await pair(tmp_path)
    never = asyncio.Event()

    async def idle(conn, reader, writer) -> None:  # noqa: ANN001  reads nothing
        await never.wait()

    b.handlers[Kind.RPC] = idle
    try:
        reader, writer = await conn.open_stream(Kind.RPC)
        writer.write(b"x" * (64 * MiB))  # the attacker's own send buffer holds it
        most = await settle(b)
        assert 0 < most <= STREAM_WINDOW + 64 * 1024, f"{most} bytes buffered by a stream nobody reads"
    finally:
        never.set()
        a.close()
        b.close()


async def test_many_unread_streams_hold_one_connection_window_at_most(tmp_path: Path) -> None:
    a, b, conn, _ = await pair(tmp_path)
    never = asyncio.Event()

    async def idle(conn, reader, writer) -> None:  # noqa: ANN001
        await never.wait()

    b.handlers[Kind.RPC] = idle
    try:
        for _ in range(2 * CONNECTION_WINDOW // STREAM_WINDOW):  # each could fill its own window
            _, writer = await conn.open_stream(Kind.RPC)
            writer.write(b"y" * STREAM_WINDOW)
            writer.write_eof()  # ending a stream early buys no more room
        most = await settle(b)
        assert CONNECTION_WINDOW // 2 <= most <= CONNECTION_WINDOW + 256 * 1024, most
    finally:
        never.set()
        a.close()
        b.close()


async def test_a_read_stream_carries_many_windows_intact(tmp_path: Path) -> None:
    a, b, conn, _ = await pair(tmp_path)
    got: list[str] = []
    most = [0]

    async def digest(conn, reader, writer) -> None:  # noqa: ANN001  reads slowly, in small bites
        h, n = hashlib.sha256(), 0
        while chunk := await reader.read(256 * 1024):
            h.update(chunk)
            n += len(chunk)
            most[0] = max(most[0], buffered(b))
            await asyncio.sleep(0.001)
        got.append(f"{n}:{h.hexdigest()}")
        writer.write(b"done")
        writer.write_eof()

    b.handlers[Kind.RPC] = digest
    payload = bytes(range(256)) * (24 * MiB // 256)  # six windows
    try:
        reader, writer = await conn.open_stream(Kind.RPC)
        writer.write(payload)
        writer.write_eof()
        assert await asyncio.wait_for(reader.read(), 60) == b"done"
        assert got == [f"{len(payload)}:{hashlib.sha256(payload).hexdigest()}"]
        assert most[0] <= STREAM_WINDOW + 256 * 1024
    finally:
        a.close()
        b.close()


async def test_data_after_the_handler_returned_is_dropped(tmp_path: Path) -> None:
    a, b, conn, _ = await pair(tmp_path)
    calls = []

    async def short(conn, reader, writer) -> None:  # noqa: ANN001  reads one byte and is done
        calls.append(await reader.read(1))

    b.handlers[Kind.RPC] = short
    try:
        _, writer = await conn.open_stream(Kind.RPC)
        writer.write(b"z")
        await asyncio.sleep(0.3)
        writer.write(b"z" * (8 * MiB))
        await asyncio.sleep(1.0)
        assert calls == [b"z"]  # one handler, not a new one per late packet
        assert buffered(b) == 0
        assert [c for c in b.connections if c.admitted.is_set()], "the connection itself stays up"
    finally:
        a.close()
        b.close()


async def test_a_writer_whose_peer_takes_nothing_is_held_back_not_buffered(tmp_path: Path) -> None:
    """The send side (meshcore.transport.BoundedStreamAdapter): a copy onto a stream whose
    peer reads nothing stops in `drain()` once SEND_HIGH_WATER bytes wait unacknowledged,
    beyond what the peer's window took; closing the connection ends the wait, no hang."""
    a, b, conn, _ = await pair(tmp_path)
    never = asyncio.Event()

    async def idle(conn, reader, writer) -> None:  # noqa: ANN001  reads nothing
        await never.wait()

    b.handlers[Kind.RPC] = idle
    written = 0
    try:
        _, writer = await conn.open_stream(Kind.RPC)
        stream_id = writer.get_extra_info("stream_id")
        chunk = b"z" * (256 * 1024)
        with contextlib.suppress(TimeoutError):
            while written < 64 * MiB:
                writer.write(chunk)
                written += len(chunk)
                await asyncio.wait_for(writer.drain(), 3)  # held back: no progress for 3 s
        assert written <= STREAM_WINDOW + SEND_HIGH_WATER + 2 * len(chunk), f"{written} bytes taken"
        assert conn.unacked(stream_id) <= SEND_HIGH_WATER + len(chunk), conn.unacked(stream_id)
        waiting = asyncio.ensure_future(writer.drain())
        await asyncio.sleep(0.1)
        assert not waiting.done()
        b.close()  # the peer goes away: the connection ends, and with it the wait
        with contextlib.suppress(ConnectionError):
            await asyncio.wait_for(waiting, 5)
    finally:
        never.set()
        a.close()
        b.close()


async def test_a_tunnel_copy_onto_a_member_that_takes_nothing_ends_after_the_stall_bound(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """meshcore.pipe: a splice whose QUIC side takes nothing (held back by the send bound)
    ends once `drain()` has waited `stall_s`, closes both sides and says which stream;
    without the bound it would wait as long as the member likes."""
    a, b, conn, _ = await pair(tmp_path)
    never = asyncio.Event()

    async def idle(conn, reader, writer) -> None:  # noqa: ANN001  reads nothing
        await never.wait()

    b.handlers[Kind.RPC] = idle
    here, there = socket.socketpair()  # the local side: llama-server's end is `there`
    local = await asyncio.open_connection(sock=here)
    _, feeder = await asyncio.open_connection(sock=there)
    feeder.write(b"z" * (32 * MiB))  # more than the window and the send bound together
    try:
        remote = await conn.open_stream(Kind.RPC)
        started = asyncio.get_running_loop().time()
        stalled = await asyncio.wait_for(splice(local, remote, label="the test stream", stall_s=1.0), 20)
        assert stalled
        assert asyncio.get_running_loop().time() - started >= 1.0
        assert "closed the test stream: the other side took nothing for 1 s" in caplog.text
        assert local[1].is_closing()
    finally:
        never.set()
        feeder.close()
        a.close()
        b.close()
