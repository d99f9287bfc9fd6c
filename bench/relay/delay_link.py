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
import sys
from collections import deque
from dataclasses import dataclass, field

TUNSETIFF = 0x400454CA
IFF_TUN, IFF_NO_PI = 0x0001, 0x1000
MTU = 1500


@dataclass
class Turns:
    """Request/response turns on TCP: how often the direction of packets that carry data
    changes (a turn = one such change each way). ACK-only packets do not count."""
    last: int = -1
    flips: int = 0

    def see(self, direction: int, packet: bytes) -> None:
        if len(packet) < 20 or packet[0] >> 4 != 4 or packet[9] != 6:
            return
        ihl = (packet[0] & 15) * 4
        total = int.from_bytes(packet[2:4], "big")
        if len(packet) < ihl + 13:
            return
        data = total - ihl - (packet[ihl + 12] >> 4) * 4
        if data > 0 and direction != self.last:
            self.flips += 1
            self.last = direction


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


def pump(loop: asyncio.AbstractEventLoop, src: int, dst: int, delay: float, turns: Turns, direction: int) -> None:
    """Copy packets from `src` to `dst` `delay` seconds after they were read: each batch of
    packets read together gets one timer, and a timer writes every packet due, oldest first."""
    line = DelayLine(delay)

    def write_due() -> None:
        for packet in line.due(loop.time()):
            try:
                os.write(dst, packet)
            except BlockingIOError:
                pass  # the other side's queue is full: dropped, as a real link would

    def readable() -> None:
        now = loop.time()
        while True:
            try:
                packet = os.read(src, 65536)
            except BlockingIOError:
                break
            turns.see(direction, packet)
            line.push(packet, now)
        if delay <= 0:
            write_due()
        else:
            loop.call_at(now + delay, write_due)

    loop.add_reader(src, readable)


async def run(fd_a: int, fd_b: int, delay: float) -> None:
    """Until killed; each line on stdin is answered with the TCP turns counted so far."""
    turns = Turns()
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    async def answer() -> None:
        while await reader.readline():
            print(f"turns {turns.flips}", flush=True)
    pump(loop, fd_a, fd_b, delay, turns, 0)
    pump(loop, fd_b, fd_a, delay, turns, 1)
    await answer()
    await asyncio.Event().wait()  # stdin closed: keep relaying until killed


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
