"""Path MTU probing (meshcore.quic_mtu): which sizes are tried for which first hop;
two real aioquic connections driven in memory over a path that drops what it cannot
carry (a probe too big is lost and the next size is taken, nothing else is lost);
and two real endpoints on loopback that reach the largest size and still carry data."""

import asyncio
import os
import ssl
from pathlib import Path

from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import StreamDataReceived

from meshcore.identity import MeshSecret, load_or_create_identity
from meshcore.quic_mtu import LARGEST_SIZE, START_SIZE, PathMtuQuic, probe_sizes, route_mtu
from meshcore.tls_cert import self_signed_certificate
from meshcore.transport import MeshEndpoint
from meshcore.wire import Kind

CLIENT, SERVER = ("10.0.0.1", 4000), ("10.0.0.2", 5000)


def test_sizes_follow_the_first_hop() -> None:
    assert probe_sizes(65536, ipv6=False) == (16000, 8952, 1452)   # loopback: capped by aioquic's framing
    assert probe_sizes(9000, ipv6=False) == (8972, 8952, 1452)     # jumbo frames
    assert probe_sizes(9000, ipv6=True) == (8952, 1452)
    assert probe_sizes(1500, ipv6=False) == (1472, 1452)           # Ethernet, Docker's bridge
    assert probe_sizes(1500, ipv6=True) == (1452,)
    assert probe_sizes(1280, ipv6=True) == (1232,)                 # IPv6's minimum link
    assert probe_sizes(1200, ipv6=False) == ()                     # nothing above QUIC's minimum
    assert probe_sizes(None, ipv6=False) == ()                     # unknown: stay at the start size


def test_route_mtu_of_loopback() -> None:
    # the interface's MTU, which the kernel caps at the largest IPv4 packet
    assert route_mtu("127.0.0.1", 9) == min(65535, int(Path("/sys/class/net/lo/mtu").read_text()))


def connections(tmp: Path) -> tuple[PathMtuQuic, PathMtuQuic]:
    identity = load_or_create_identity(tmp)
    server_config = QuicConfiguration(is_client=False, alpn_protocols=["t"])
    server_config.certificate = self_signed_certificate(identity)
    server_config.private_key = identity.private_key
    client = PathMtuQuic(configuration=QuicConfiguration(is_client=True, alpn_protocols=["t"],
                                                         verify_mode=ssl.CERT_NONE))
    server = PathMtuQuic(configuration=server_config, original_destination_connection_id=client.original_destination_connection_id)
    return client, server


class Path_:
    """Both directions of a path that carries datagrams up to `mtu` bytes, in memory,
    on a clock that jumps to the next timer when nothing is in flight."""

    def __init__(self, client: PathMtuQuic, server: PathMtuQuic, mtu: int) -> None:
        self.client, self.server, self.mtu, self.now = client, server, mtu, 0.0
        self.sent: list[int] = []  # sizes of every datagram the client sent
        self.received: list[StreamDataReceived] = []

    def exchange(self) -> int:
        moved = 0
        for sender, receiver, addr in ((self.client, self.server, CLIENT), (self.server, self.client, SERVER)):
            for data, _ in sender.datagrams_to_send(self.now):
                moved += 1
                if sender is self.client:
                    self.sent.append(len(data))
                if len(data) <= self.mtu:
                    receiver.receive_datagram(data, addr, self.now)
        while (event := self.server.next_event()) is not None:
            if isinstance(event, StreamDataReceived):
                self.received.append(event)
        while self.client.next_event() is not None:
            pass
        return moved

    def run(self, until, steps: int = 400) -> None:  # noqa: ANN001 - a predicate
        for _ in range(steps):
            if until():
                return
            self.now += 0.001
            if not self.exchange():
                timers = [t for t in (self.client.get_timer(), self.server.get_timer()) if t is not None]
                self.now = max(self.now, min(timers))
                for conn in (self.client, self.server):
                    if conn.get_timer() is not None and conn.get_timer() <= self.now:
                        conn.handle_timer(self.now)
        raise AssertionError("the connection never got there")


def handshake(tmp: Path, mtu: int) -> Path_:
    client, server = connections(tmp)
    path = Path_(client, server, mtu)
    client.connect(SERVER, now=path.now)
    path.run(lambda: client._handshake_confirmed and server._handshake_confirmed)
    return path


def test_a_probe_too_big_for_the_path_is_lost_and_the_next_size_taken(tmp_path: Path) -> None:
    path = handshake(tmp_path, mtu=1500)
    path.client.probe_path_mtu(probe_sizes(65536, ipv6=False))
    path.run(lambda: path.client.datagram_size == 1452)
    assert {16000, 8952, 1452} <= set(path.sent), "each size was tried with a datagram of exactly that size"
    assert path.sent.count(16000) == path.sent.count(8952) == 2, "a size is dropped after two lost probes"
    assert path.client._mtu_ladder == (), "probing stopped once a size was acknowledged"
    # Data after it: full datagrams of the new size, nothing bigger, all of it delivered.
    stream = path.client.get_next_available_stream_id()
    path.sent.clear()
    path.client.send_stream_data(stream, b"x" * 100_000, end_stream=True)
    path.run(lambda: sum(len(e.data) for e in path.received) == 100_000, steps=2000)
    assert max(path.sent) == 1452 and path.sent.count(1452) >= 60


def test_a_path_that_carries_nothing_bigger_keeps_the_start_size(tmp_path: Path) -> None:
    path = handshake(tmp_path, mtu=START_SIZE)
    path.client.probe_path_mtu(probe_sizes(65536, ipv6=False))
    path.run(lambda: path.client._mtu_ladder == () and not path.client._mtu_probe_due, steps=2000)
    assert path.client.datagram_size == START_SIZE
    stream = path.client.get_next_available_stream_id()
    path.client.send_stream_data(stream, b"y" * 20_000, end_stream=True)
    path.run(lambda: sum(len(e.data) for e in path.received) == 20_000, steps=2000)


def test_probing_starts_once_per_connection(tmp_path: Path) -> None:
    path = handshake(tmp_path, mtu=65536)
    for _ in range(5):  # e.g. one call per admission stream a hostile peer opened
        path.client.probe_path_mtu((LARGEST_SIZE,))
    probes = [d for d, _ in path.client.datagrams_to_send(path.now) if len(d) == LARGEST_SIZE]
    assert len(probes) == 1


def test_a_spoofed_peer_address_gets_no_probe_and_a_new_address_starts_small(tmp_path: Path) -> None:
    path = handshake(tmp_path, mtu=65536)
    path.server.probe_path_mtu((LARGEST_SIZE,))
    path.run(lambda: path.server.datagram_size == LARGEST_SIZE)
    # The client's next packet arrives from another address (a spoofed source, or a NAT
    # rebinding): the server must not send it anything big before that address is validated.
    path.client.send_ping(1)
    victim = ("10.9.9.9", 9)
    for data, _ in path.client.datagrams_to_send(path.now):
        path.server.receive_datagram(data, victim, path.now)
    out = path.server.datagrams_to_send(path.now)
    assert path.server.datagram_size == START_SIZE, "a new address's MTU is unknown: back to the start size"
    assert all(len(d) <= 3 * START_SIZE for d, addr in out if addr == victim)


def test_no_probe_before_the_handshake_is_confirmed(tmp_path: Path) -> None:
    client, server = connections(tmp_path)
    client.probe_path_mtu((LARGEST_SIZE,))
    client.connect(SERVER, now=0.0)
    assert all(len(d) < LARGEST_SIZE for d, _ in client.datagrams_to_send(0.0))
    assert client._mtu_probe_due, "the probe waits for the handshake"


async def test_endpoints_on_loopback_reach_the_largest_size_and_carry_data(tmp_path: Path) -> None:
    mesh = MeshSecret.new()
    ends = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        ends.append(MeshEndpoint(load_or_create_identity(tmp_path / name), lambda: mesh))
    a, b = ends

    async def echo(conn, reader, writer) -> None:  # noqa: ANN001 - a stream handler
        writer.write(await reader.readexactly(200_000))
        await writer.drain()

    b.handlers[Kind.RPC] = echo
    try:
        port = await b.listen("127.0.0.1", 0)
        conn = await a.dial(f"127.0.0.1:{port}")
        listener_side = next(iter(b.connections))
        for _ in range(100):
            if conn.datagram_size == listener_side.datagram_size == LARGEST_SIZE:
                break
            await asyncio.sleep(0.05)
        assert (conn.datagram_size, listener_side.datagram_size) == (LARGEST_SIZE, LARGEST_SIZE)
        # Then data both ways in datagrams of that size, with Don't Fragment set on both sockets.
        reader, writer = await conn.open_stream(Kind.RPC)
        payload = os.urandom(200_000)
        writer.write(payload)
        assert await asyncio.wait_for(reader.readexactly(200_000), 30) == payload
        assert a.dont_fragment and b.dont_fragment
    finally:
        a.close()
        b.close()
