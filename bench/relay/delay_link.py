"""A point-to-point IP link with a set one-way delay, in user space (this kernel has no
netem): two TUN devices, one moved into each network namespace, and this process copying
every packet from one to the other `delay` seconds after it was read — UDP (the mesh's
QUIC) and TCP (stock llama.cpp RPC) alike, datagrams whole and in order. RTT = 2 × delay.

    python -m relay.delay_link --ns-a A --ns-b B --delay-ms D [--net 10.203.0]
      -> ns A has 10.203.0.1, ns B has 10.203.0.2, each reaching the other through the link

`DelayLine` is the pure part (unit-tested): packets in, released in order once due.
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import os
import struct
import subprocess
from collections import deque
from dataclasses import dataclass, field

TUNSETIFF = 0x400454CA
IFF_TUN, IFF_NO_PI = 0x0001, 0x1000
MTU = 1500


@dataclass
class DelayLine:
    """Packets leave in the order they came, each `delay` seconds after it came."""
    delay: float
    queue: deque[tuple[float, bytes]] = field(default_factory=deque)

    def push(self, packet: bytes, now: float) -> None:
        self.queue.append((now + self.delay, packet))

    def due(self, now: float) -> list[bytes]:
        out = []
        while self.queue and self.queue[0][0] <= now:
            out.append(self.queue.popleft()[1])
        return out

    def next_due(self) -> float | None:
        return self.queue[0][0] if self.queue else None


def open_tun(name: str) -> int:
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    return fd


def sh(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True, text=True)


def setup(ns_a: str, ns_b: str, net: str, tag: str) -> tuple[int, int]:
    """Two TUN devices, made here and moved into the namespaces (their fds stay ours)."""
    ends = []
    for ns, me, peer, name in ((ns_a, 1, 2, f"dla{tag}"), (ns_b, 2, 1, f"dlb{tag}")):
        fd = open_tun(name)
        sh("ip", "link", "set", name, "netns", ns)
        sh("ip", "-n", ns, "addr", "add", f"{net}.{me}", "peer", f"{net}.{peer}", "dev", name)
        sh("ip", "-n", ns, "link", "set", name, "mtu", str(MTU), "up")
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        ends.append(fd)
    return ends[0], ends[1]


async def pump(src: int, dst: int, delay: float) -> None:
    loop = asyncio.get_running_loop()
    line = DelayLine(delay)
    ready = asyncio.Event()
    loop.add_reader(src, ready.set)
    while True:
        now = loop.time()
        for packet in line.due(now):
            try:
                os.write(dst, packet)
            except BlockingIOError:
                pass  # the other side's queue is full: dropped, as a real link would
        ready.clear()
        while True:
            try:
                line.push(os.read(src, 65536), loop.time())
            except BlockingIOError:
                break
        nxt = line.next_due()
        timeout = None if nxt is None else max(0.0, nxt - loop.time())
        try:
            await asyncio.wait_for(ready.wait(), timeout)
        except TimeoutError:
            pass


async def run(fd_a: int, fd_b: int, delay: float) -> None:
    await asyncio.gather(pump(fd_a, fd_b, delay), pump(fd_b, fd_a, delay))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ns-a", required=True)
    p.add_argument("--ns-b", required=True)
    p.add_argument("--delay-ms", type=float, required=True, help="one way")
    p.add_argument("--net", default="10.203.0")
    p.add_argument("--tag", default=str(os.getpid() % 100000))
    a = p.parse_args()
    fd_a, fd_b = setup(a.ns_a, a.ns_b, a.net, a.tag)
    print("ready", flush=True)
    asyncio.run(run(fd_a, fd_b, a.delay_ms / 1000))


if __name__ == "__main__":
    main()
