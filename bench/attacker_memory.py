"""Memory an admitted attacker's connection makes a node hold, at the caps.

A listener (a child process: its RSS is what is measured) whose handlers never
read — the worst case for buffering — is dialled by an attacker holding the mesh
secret, which opens more streams than one connection may have open at once (aioquic lets
a peer open 128 at a time, under our own cap MAX_STREAMS_PER_CONNECTION; the rest
wait) and pushes data on all of them, far more than the
windows allow. Reports the listener's RSS growth, and the bytes it holds unread
(the windows of meshcore.quic_flow bound them); then the same with several
connections from one address (MAX_CONNECTIONS_PER_ADDRESS bounds those).

    .venv/bin/python bench/attacker_memory.py [--connections 4] [--push-mib 64]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import tempfile
import time
from pathlib import Path

from meshcore.identity import MeshSecret, load_or_create_identity
from meshcore.quic_flow import CONNECTION_WINDOW, STREAM_WINDOW
from meshcore.transport import MAX_CONNECTIONS_PER_ADDRESS, MeshEndpoint
from meshcore.wire import Kind

MiB = 1 << 20
AIOQUIC_PEER_STREAMS = 128  # aioquic lets a peer have this many streams open at once (its MAX_STREAMS)


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def listener(home: str, mesh: MeshSecret, ports: mp.Queue, asks: mp.Queue, answers: mp.Queue) -> None:
    async def run() -> None:
        endpoint = MeshEndpoint(load_or_create_identity(Path(home)), lambda: mesh)
        never = asyncio.Event()

        async def idle(conn, reader, writer) -> None:  # noqa: ANN001  reads nothing, ever
            await never.wait()

        endpoint.handlers[Kind.RPC] = idle
        ports.put(await endpoint.listen("127.0.0.1", 0))
        loop = asyncio.get_running_loop()
        while True:
            ask = await loop.run_in_executor(None, asks.get)
            if ask == "stop":
                return
            answers.put({"rss": rss_bytes(), "unread": sum(c._unread(None) for c in endpoint.connections),
                         "streams": sum(len(c._tasks) for c in endpoint.connections)})

    asyncio.run(run())


async def attack(port: int, mesh: MeshSecret, home: Path, connections: int, push: int) -> list:
    endpoint = MeshEndpoint(load_or_create_identity(home), lambda: mesh)
    conns = [await endpoint.dial(f"127.0.0.1:{port}") for _ in range(connections)]
    per_stream = max(1, push // AIOQUIC_PEER_STREAMS)
    for conn in conns:
        for i in range(2 * AIOQUIC_PEER_STREAMS):  # more would wait in the attacker's own buffers
            _, writer = await conn.open_stream(Kind.RPC)
            writer.write(b"\xff" * (push if i == 0 else per_stream))
            if i % 256 == 0:
                await asyncio.sleep(0)  # let the datagrams out
    return [endpoint, conns]


def measure(connections: int, push_mib: int) -> dict:
    ctx = mp.get_context("spawn")
    ports, asks, answers = ctx.Queue(), ctx.Queue(), ctx.Queue()
    mesh = MeshSecret.new()
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "node").mkdir()
        (Path(tmp) / "attacker").mkdir()
        child = ctx.Process(target=listener, args=(str(Path(tmp) / "node"), mesh, ports, asks, answers))
        child.start()
        port = ports.get(timeout=30)
        asks.put("?")
        before = answers.get(timeout=30)

        async def run() -> dict:
            held = await attack(port, mesh, Path(tmp) / "attacker", connections, push_mib * MiB)
            most: dict = {"rss": 0, "unread": 0, "streams": 0}
            still = 0
            started = time.monotonic()
            while still < 3 and time.monotonic() - started < 120:  # until nothing grows for 3 s
                await asyncio.sleep(1)
                asks.put("?")
                now = await asyncio.get_running_loop().run_in_executor(None, answers.get)
                grew = now["rss"] > most["rss"] + MiB or now["unread"] > most["unread"]
                most = {k: max(most[k], now[k]) for k in most}
                still = 0 if grew else still + 1
            held[0].close()
            return most

        most = asyncio.run(run())
        asks.put("stop")
        child.join(10)
    return {
        "connections": connections, "streams_tried_per_connection": 2 * AIOQUIC_PEER_STREAMS,
        "pushed_mib_per_connection": push_mib * 2,
        "streams_open": most["streams"],
        "unread_mib": round(most["unread"] / MiB, 1),
        "rss_growth_mib": round((most["rss"] - before["rss"]) / MiB, 1),
        "rss_growth_per_connection_mib": round((most["rss"] - before["rss"]) / MiB / connections, 1),
        "bound_unread_per_connection_mib": CONNECTION_WINDOW // MiB,
        "bound_unread_per_stream_mib": STREAM_WINDOW // MiB,
        "max_connections_per_address": MAX_CONNECTIONS_PER_ADDRESS,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=1)
    parser.add_argument("--push-mib", type=int, default=64, help="bytes pushed on the first stream (and again "
                                                                 "spread over the others), per connection")
    args = parser.parse_args()
    print(json.dumps(measure(args.connections, args.push_mib), indent=2))


if __name__ == "__main__":
    main()
