"""This machine's addresses, for the invite token's list of ways to reach a node."""

from __future__ import annotations

import fcntl
import socket
import struct
import sys

_SIOCGIFADDR = 0x8915


def interface_ipv4_addresses() -> list[str]:
    """IPv4 addresses of the up interfaces (Linux ioctl; hostname lookup elsewhere)."""
    found: list[str] = []
    if sys.platform.startswith("linux"):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for _, name in socket.if_nameindex():
                try:
                    packed = fcntl.ioctl(s.fileno(), _SIOCGIFADDR, struct.pack("256s", name[:15].encode()))
                except OSError:
                    continue
                found.append(socket.inet_ntoa(packed[20:24]))
    else:
        try:
            found = [ai[4][0] for ai in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)]
        except OSError:
            found = []
    return list(dict.fromkeys(found))


def advertised_addresses(port: int) -> list[str]:
    """Where peers can reach this node's mesh (QUIC, UDP) port. The mesh endpoint
    listens on every interface (it admits only holders of the mesh secret; that
    is how machines form a mesh), so the token lists the machine's own addresses,
    non-loopback first, loopback last for nodes on the same machine."""
    addrs = interface_ipv4_addresses()
    outside = [a for a in addrs if not a.startswith("127.")]
    return [f"{a}:{port}" for a in outside[:8]] + [f"127.0.0.1:{port}"]
