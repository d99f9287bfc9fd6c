"""Bigger QUIC datagrams where the path carries them (path MTU probing).

Why: aioquic does its per-packet work in Python, so on the mesh the cost of moving
bytes is set by how many datagrams carry them. A split's RPC round trip (15–35 KB
each way per token) takes 8 ms in 1,200-byte datagrams and 0.5 ms in 16,000-byte
ones on loopback (bench/quic_roundtrip.py). Every connection starts at aioquic's
1,200 bytes and, once admitted, each side raises what it *sends*:

1. The ceiling is what the first hop can carry: the kernel's MTU for the route to
   the peer (`route_mtu`: a connected, never-used UDP socket asked for IP_MTU),
   less the IP and UDP headers. Loopback gives 65,536, a jumbo-frame LAN 9,000, an
   ordinary LAN or a Docker bridge 1,500.
2. Sizes under that ceiling are tried from the largest (`probe_sizes`): one
   datagram of exactly that size holding a PING, padded. Every socket of the
   endpoint sets Don't Fragment (`set_dont_fragment`, RFC 9000 section 14), so a
   datagram too big for any hop is dropped, never fragmented.
3. The probe's fate is aioquic's loss detection: acknowledged means every hop
   carried it and the connection sends datagrams of that size from then on; lost
   twice means the next smaller size is tried. A lost probe counts as a congestion event
   (RFC 8899 would exempt it); the route-MTU ceiling makes that rare. Only the peer's
   validated address is probed (a spoofed address gets nothing big).

The top size is 16,000: aioquic writes a STREAM frame's length as a 2-byte
variable-length integer (at most 16,383), so bigger datagrams break its framing.
Nothing is negotiated: a receiver takes datagrams of any size (aioquic advertises
no max_udp_payload_size, whose default is 65,527), so old nodes interoperate.

A new peer address (NAT rebinding) goes back to 1,200 bytes and is not re-probed.
Left alone: a path that shrinks later under the same addresses (a route change) is not
re-probed; the connection would see losses until its idle timeout, then be redialled.

Like meshcore.quic_flow, this uses aioquic internals (the packet builder and the
connection's packet registration); tests/unit/meshcore/test_quic_mtu.py drives
real aioquic connections, so an aioquic upgrade that changes them fails there.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
from typing import Sequence

from aioquic.quic.connection import QuicConnectionState, END_STATES
from aioquic.quic.packet import QuicFrameType, QuicPacketType
from aioquic.quic.packet_builder import QuicDeliveryState, QuicPacketBuilder
from aioquic import tls

from meshcore.quic_flow import FlowControlledQuic

START_SIZE = 1200          # aioquic's default and QUIC's minimum: what every connection starts with
LARGEST_SIZE = 16000       # aioquic's 2-byte STREAM length field caps frames at 16,383 bytes
LADDER = (16000, 8952, 1452)  # loopback; 9,000-byte jumbo frames; 1,500-byte Ethernet (IPv6 headers)
IPV4_OVERHEAD = 28         # IPv4 header + UDP header
IPV6_OVERHEAD = 48         # IPv6 header + UDP header

# Linux socket options; Python's socket module does not name all of them.
_IP_MTU_DISCOVER, _IP_MTU, _IP_PMTUDISC_PROBE = 10, 14, 3
_IPV6_MTU_DISCOVER, _IPV6_MTU, _IPV6_PMTUDISC_PROBE = 23, 24, 3


def probe_sizes(route_mtu: int | None, ipv6: bool, largest: int = LARGEST_SIZE) -> tuple[int, ...]:
    """The datagram sizes to try, largest first, for a first hop of `route_mtu`
    bytes (None: unknown, so nothing is tried and datagrams stay at START_SIZE),
    none over `largest`."""
    if route_mtu is None:
        return ()
    ceiling = min(largest, LARGEST_SIZE, route_mtu - (IPV6_OVERHEAD if ipv6 else IPV4_OVERHEAD))
    sizes = [ceiling] + [s for s in LADDER if s < ceiling]
    return tuple(s for s in sizes if s > START_SIZE)


def _is_ipv6(host: str) -> bool:
    with contextlib.suppress(ValueError):
        return ipaddress.ip_address(host.split("%")[0]).version == 6
    return False


def route_mtu(host: str, port: int) -> int | None:
    """The MTU of the route to (host, port) as the kernel knows it, or None where it
    cannot say (not Linux, no route). Sends nothing: connecting a UDP socket only
    picks the route."""
    ipv6 = _is_ipv6(host)
    try:
        with socket.socket(socket.AF_INET6 if ipv6 else socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.connect((host, port))
            if ipv6:
                return sock.getsockopt(socket.IPPROTO_IPV6, _IPV6_MTU)
            return sock.getsockopt(socket.IPPROTO_IP, _IP_MTU)
    except OSError:
        return None


def sizes_for_peer(host: str, port: int, largest: int = LARGEST_SIZE) -> tuple[int, ...]:
    """What to try towards a peer at (host, port): `probe_sizes` of its route."""
    return probe_sizes(route_mtu(host, port), ipv6=_is_ipv6(host), largest=largest)


def set_dont_fragment(sock: socket.socket) -> bool:
    """Make every datagram this socket sends carry Don't Fragment, without the kernel's
    path-MTU cache getting in the way of probes (IP_PMTUDISC_PROBE). False where the
    platform has no such option: then no probe is sent on it."""
    done = False
    for level, option, value in ((socket.IPPROTO_IP, _IP_MTU_DISCOVER, _IP_PMTUDISC_PROBE),
                                 (socket.IPPROTO_IPV6, _IPV6_MTU_DISCOVER, _IPV6_PMTUDISC_PROBE)):
        try:
            sock.setsockopt(level, option, value)
            done = True
        except OSError:
            pass
    return done


class PathMtuQuic(FlowControlledQuic):
    """aioquic's connection (with meshcore.quic_flow's windows) that raises its datagram
    size once a probe of that size was acknowledged. `probe_path_mtu(sizes)` starts it,
    once per connection; `datagram_size` says what it sends now.

    Against a peer that is not trusted: a probe goes only to the peer's current address
    once that address is validated (QUIC's anti-amplification rule: a spoofed source
    address gets no 16,000-byte datagram), only to the address the sizes were chosen for,
    and at most one probe is in flight. Each size gets PROBE_TRIES before the next smaller
    one is tried, so one lost ACK does not cost a size. Probes stay ordinary in-flight
    packets for aioquic's recovery (nothing in its accounting is bent), so a lost one counts
    as congestion (RFC 9000 section 14.4 says it should not), and a probe bigger than the
    window holds data back for one round trip, once per connection.
    A new peer address (NAT rebinding, migration) sends START_SIZE again: its MTU is unknown.
    """

    PROBE_TRIES = 2
    _mtu_ladder: tuple[int, ...] = ()
    _mtu_probe_due = False
    _mtu_started = False
    _mtu_addr: object = None
    _mtu_tries = 0

    @property
    def datagram_size(self) -> int:
        return self._max_datagram_size

    def probe_path_mtu(self, sizes: Sequence[int]) -> None:
        """Try `sizes` (largest first) once the handshake is confirmed; the caller then
        transmits, as after any other API call of aioquic's. Only the first call counts."""
        if self._mtu_started:
            return
        self._mtu_started = True
        self._mtu_addr = self._network_paths[0].addr if self._network_paths else None
        self._mtu_ladder = tuple(s for s in sizes if s > self._max_datagram_size)
        self._mtu_probe_due = bool(self._mtu_ladder)

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, tuple]]:  # type: ignore[override]
        self._follow_path()
        datagrams = super().datagrams_to_send(now)
        path = self._network_paths[0] if self._network_paths else None
        if (self._mtu_probe_due and self._handshake_confirmed and self._state not in END_STATES
                and path is not None and path.is_validated and path.addr == self._mtu_addr):
            self._mtu_probe_due = False
            datagrams += self._probe_datagram(self._mtu_ladder[0], now)
        return datagrams

    def _follow_path(self) -> None:
        if self._mtu_addr is None or not self._network_paths or self._network_paths[0].addr == self._mtu_addr:
            return
        self._mtu_addr = self._network_paths[0].addr
        self._mtu_ladder, self._mtu_probe_due = (), False
        if self._max_datagram_size != START_SIZE:
            self._use_datagram_size(START_SIZE)

    def _probe_datagram(self, size: int, now: float) -> list[tuple[bytes, tuple]]:
        """One 1-RTT packet of exactly `size` bytes: a PING, then PADDING frames."""
        builder = QuicPacketBuilder(host_cid=self.host_cid, is_client=self._is_client, max_datagram_size=size,
                                    packet_number=self._packet_number, peer_cid=self._peer_cid.cid,
                                    peer_token=self._peer_token, quic_logger=self._quic_logger,
                                    spin_bit=self._spin_bit, version=self._version)
        builder.start_packet(QuicPacketType.ONE_RTT, self._cryptos[tls.Epoch.ONE_RTT])
        builder.start_frame(QuicFrameType.PING, handler=self._on_probe_delivery,
                            handler_args=(size, self._mtu_addr))
        padding = builder.remaining_buffer_space
        builder.start_frame(QuicFrameType.PADDING, capacity=padding).push_bytes(bytes(padding - 1))
        return self._flush_builder(builder=builder, network_path=self._network_paths[0],
                                   peer_cid=self._peer_cid.cid, now=now)

    def _on_probe_delivery(self, delivery: QuicDeliveryState, size: int, addr: object) -> None:
        if addr != self._mtu_addr:
            return  # a probe of a path this connection has left
        if delivery == QuicDeliveryState.ACKED:
            if size > self._max_datagram_size:
                self._use_datagram_size(size)
            self._mtu_ladder = ()
            return
        self._mtu_tries += 1
        if self._mtu_tries >= self.PROBE_TRIES:
            self._mtu_ladder, self._mtu_tries = tuple(s for s in self._mtu_ladder if s < size), 0
        self._mtu_probe_due = bool(self._mtu_ladder) and self._state == QuicConnectionState.CONNECTED

    def _use_datagram_size(self, size: int) -> None:
        self._max_datagram_size = size
        for part in (self._loss._cc, self._loss._pacer):  # both size their windows in datagrams
            if hasattr(part, "_max_datagram_size"):
                part._max_datagram_size = size
