"""The serving side's relay (mesh_node.backend_relay) against a member that does not
take the answer, over real aioquic connections on loopback and a real TCP "llama-server":
the node holds a bounded amount for the stream (llama-server is held back by TCP), the
whole answer still arrives intact once the member reads, and a member that takes
nothing for the stall time has its request abandoned."""

import asyncio
import contextlib
import hashlib
from pathlib import Path

from meshcore.identity import MeshSecret, load_or_create_identity
from meshcore.transport import SEND_HIGH_WATER, MeshEndpoint
from meshcore.wire import Kind
from mesh_node.backend_relay import BackendRelay

MiB = 1 << 20
ANSWER = bytes(range(256)) * (24 * MiB // 256)  # more than the windows and both kernels' socket buffers together


def endpoint(tmp: Path, name: str, mesh: MeshSecret) -> MeshEndpoint:
    (tmp / name).mkdir()
    return MeshEndpoint(load_or_create_identity(tmp / name), lambda: mesh)


async def llama(written: list[int]) -> tuple[asyncio.Server, int]:
    """A TCP server that reads a request line and writes ANSWER as fast as it is taken."""
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readline()
        try:
            for at in range(0, len(ANSWER), 64 * 1024):
                writer.write(ANSWER[at:at + 64 * 1024])
                await writer.drain()
                written[0] = at + 64 * 1024
        except ConnectionError:
            written.append(-1)  # the relay closed the connection
        finally:
            writer.close()
    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


@contextlib.asynccontextmanager
async def serving(tmp: Path, stall_s: float):
    """A member connected to a serving node whose HTTP handler relays `llama` (as
    mesh_link._serve_http, trimmed): yields (the member's connection, the relays made,
    what llama-server wrote)."""
    written = [0]
    server, port = await llama(written)
    relays: list[BackendRelay] = []
    mesh = MeshSecret.new()
    member, node = endpoint(tmp, "member", mesh), endpoint(tmp, "node", mesh)

    async def serve_http(conn, reader, writer) -> None:  # noqa: ANN001
        await reader.readexactly(4)
        loop = asyncio.get_running_loop()
        _, relay = await loop.create_connection(lambda: BackendRelay(b"GET\n", conn, writer, stall_s),
                                                "127.0.0.1", port)
        relays.append(relay)
        await relay.done
        relay.close()
        writer.close()

    node.handlers[Kind.HTTP] = serve_http
    try:
        node_port = await node.listen("127.0.0.1", 0)
        yield await member.dial(f"127.0.0.1:{node_port}"), relays, written
    finally:
        member.close()
        node.close()
        server.close()


async def test_a_member_that_does_not_read_holds_the_node_to_a_bound_then_gets_it_all(tmp_path: Path) -> None:
    async with serving(tmp_path, stall_s=60) as (conn, relays, written):
        reader, writer = await conn.open_stream(Kind.HTTP, None, b"ask!")
        most, still = 0, 0.0
        while still < 1.5:  # until the node's send buffer stops growing
            await asyncio.sleep(0.05)
            held = relays[0].conn.unacked(relays[0].stream_id) if relays else 0
            still = still + 0.05 if held <= most else 0.0
            most = max(most, held)
        assert 0 < most <= SEND_HIGH_WATER + 256 * 1024, f"the node held {most} bytes for a member that reads nothing"
        assert written[0] < len(ANSWER), f"llama-server was not held back ({written[0]} bytes written)"
        got = await asyncio.wait_for(reader.read(-1), 60)  # the member reads: everything arrives, in order
        assert hashlib.sha256(got).digest() == hashlib.sha256(ANSWER).digest()


async def test_a_member_that_takes_nothing_for_the_stall_time_loses_the_request(tmp_path: Path) -> None:
    async with serving(tmp_path, stall_s=1.0) as (conn, relays, written):
        await conn.open_stream(Kind.HTTP, None, b"ask!")
        for _ in range(200):
            if relays and relays[0].done.done():
                break
            await asyncio.sleep(0.05)
        assert relays and relays[0].stalled and relays[0].done.done(), "the stalled request was not abandoned"
        for _ in range(100):  # llama-server sees its connection closed
            if written[-1] == -1:
                break
            await asyncio.sleep(0.05)
        assert written[-1] == -1
