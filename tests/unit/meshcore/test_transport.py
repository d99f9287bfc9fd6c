"""The QUIC transport on loopback, in one process: admission and stream dispatch."""

import asyncio
import contextlib
import ssl
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from meshcore.identity import Identity, MeshSecret, load_or_create_identity
from meshcore.ids import NodeId
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
    mesh = MeshSecret.new()
    a = endpoint(tmp_path, "a", replace(mesh, secret=b"\x01" * 32))
    b = endpoint(tmp_path, "b", mesh)
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


async def test_the_right_secret_under_another_mesh_id_is_refused(tmp_path: Path) -> None:
    """The secret's proof does not cover the mesh id: a member handing out the real secret
    under an id of its own (one it could claim to own) must not get joiners in."""
    mesh = MeshSecret.new()
    a = endpoint(tmp_path, "a", replace(mesh, mesh_id="f" * 32))
    b = endpoint(tmp_path, "b", mesh)
    b.handlers[Kind.CONTROL] = echo
    port = await b.listen("127.0.0.1", 0)
    try:
        with pytest.raises(AdmissionRefused, match="another mesh"):
            await a.dial(f"127.0.0.1:{port}")
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


@dataclass(frozen=True)
class Impostor(Identity):
    """An identity that claims another node's id (its key is its own)."""
    claimed: str = ""

    @property
    def node_id(self) -> NodeId:
        return NodeId(self.claimed)


async def test_a_node_id_cannot_be_claimed_without_its_key(tmp_path: Path) -> None:
    mesh = MeshSecret.new()
    honest, victim = endpoint(tmp_path, "honest", mesh), endpoint(tmp_path, "victim", mesh)
    (tmp_path / "liar").mkdir()
    liar_identity = Impostor(load_or_create_identity(tmp_path / "liar").private_key, claimed=victim.identity.node_id)
    liar = MeshEndpoint(liar_identity, lambda: mesh)
    honest.handlers[Kind.CONTROL] = echo
    port = await honest.listen("127.0.0.1", 0)
    liar_port = await liar.listen("127.0.0.1", 0)
    try:
        with pytest.raises(AdmissionRefused):  # as a dialer: the listener refuses it
            await liar.dial(f"127.0.0.1:{port}")
        await asyncio.sleep(0.2)
        assert not any(c.admitted.is_set() for c in honest.connections)
        with pytest.raises(AdmissionRefused, match="not the hash of its key"):  # as a listener: the dialer refuses
            await honest.dial(f"127.0.0.1:{liar_port}")
    finally:
        for e in (honest, victim, liar):
            e.close()


def test_signatures_bind_the_listener_certificate() -> None:
    """A relay has its own certificate towards the dialer: what the listener signs
    (with its certificate) does not verify with the relay's."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from meshcore import admission
    from meshcore.identity import Identity as Id

    d, lst = Id(Ed25519PrivateKey.generate()), Id(Ed25519PrivateKey.generate())
    args = (b"n" * 32, b"m" * 32, d.node_id, lst.node_id, d.public_bytes, lst.public_bytes)
    sig = admission.sign(lst.private_key, admission.transcript("listener", *args, b"L" * 32))
    assert admission.verify(lst.public_bytes, sig, admission.transcript("listener", *args, b"L" * 32))
    assert not admission.verify(lst.public_bytes, sig, admission.transcript("listener", *args, b"R" * 32))
    assert not admission.verify(lst.public_bytes, sig, admission.transcript("dialer", *args, b"L" * 32))
    assert admission.key_matches(lst.node_id, lst.public_bytes) and not admission.key_matches(d.node_id, lst.public_bytes)


class Silent(MeshEndpoint):
    """A dialer that connects (QUIC and TLS) and then says nothing at all."""

    async def _admit_as_dialer(self, conn) -> None:  # noqa: ANN001
        return None


async def test_a_connection_that_never_asks_for_admission_is_closed(tmp_path: Path) -> None:
    mesh = MeshSecret.new()
    b = endpoint(tmp_path, "b", mesh)
    b.admission_timeout_s = 0.5
    (tmp_path / "silent").mkdir()
    silent = Silent(load_or_create_identity(tmp_path / "silent"), lambda: mesh)
    port = await b.listen("127.0.0.1", 0)
    try:
        conn = await silent.dial(f"127.0.0.1:{port}")
        await asyncio.wait_for(conn.wait_closed(), 5)
        assert "not admitted within" in conn.closed_reason
        for _ in range(100):  # the listener forgets it once its side has finished closing
            if not b.connections:
                break
            await asyncio.sleep(0.05)
        assert not b.connections
    finally:
        silent.close()
        b.close()


async def test_silent_connections_count_against_the_address_and_need_retry(tmp_path: Path) -> None:
    """Issue 28, item 10: connections that never open a stream were not counted against
    their address's cap and lived 5 s each. Now they count from their first packet, and
    the listener answers a new connection with a QUIC Retry (the address is proven before
    any state is kept for it)."""
    from aioquic.asyncio.client import connect
    from aioquic.quic.configuration import QuicConfiguration
    mesh = MeshSecret.new()
    b = endpoint(tmp_path, "b", mesh)
    b.max_connections_per_address = 3
    port = await b.listen("127.0.0.1", 0)
    silent = []
    try:
        for _ in range(6):  # plain QUIC clients that complete the handshake and then say nothing
            config = QuicConfiguration(is_client=True, alpn_protocols=["mesh-llm/1"], verify_mode=ssl.CERT_NONE)
            manager = connect("127.0.0.1", port, configuration=config, wait_connected=False)
            silent.append((manager, await manager.__aenter__()))
        await asyncio.sleep(0.5)
        assert len(b.connections) <= 3
        assert b.server is not None and b.server._retry is not None
    finally:
        for manager, _ in silent:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(manager.__aexit__(None, None, None), 2)
        b.close()


async def test_connections_per_address_and_streams_per_connection_are_capped(tmp_path: Path) -> None:
    mesh = MeshSecret.new()
    a, b = endpoint(tmp_path, "a", mesh), endpoint(tmp_path, "b", mesh)
    b.max_connections_per_address, b.max_streams = 2, 3
    stalled = asyncio.Event()

    async def stall(conn, reader, writer) -> None:  # noqa: ANN001
        await stalled.wait()

    b.handlers[Kind.CONTROL] = stall
    port = await b.listen("127.0.0.1", 0)
    try:
        first = await a.dial(f"127.0.0.1:{port}")
        await a.dial(f"127.0.0.1:{port}")
        with pytest.raises((AdmissionRefused, ConnectionError)):  # closed from its first packet
            await a.dial(f"127.0.0.1:{port}")
        await asyncio.sleep(0.1)
        assert len(b.connections) == 2
        for _ in range(4):  # four stalled streams at once on one connection: over the cap of 3
            _, writer = await first.open_stream(Kind.CONTROL, {"t": "x"})
        await asyncio.wait_for(first.wait_closed(), 5)
        assert "streams at once" in first.closed_reason
    finally:
        stalled.set()
        a.close()
        b.close()
