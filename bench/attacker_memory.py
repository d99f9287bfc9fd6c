"""Memory an admitted attacker's connection makes a node hold, at the caps.

A listener (a child process: its RSS is what is measured) whose handlers never
read — the worst case for buffering — is dialled by an attacker holding the mesh
secret, which opens more streams than one connection may have open at once (aioquic lets
a peer open 128 at a time, under our own cap MAX_STREAMS_PER_CONNECTION; the rest
wait) and pushes data on all of them, far more than the
windows allow. Reports the listener's RSS growth, and the bytes it holds unread
(the windows of meshcore.quic_flow bound them); then the same with several
connections from one address (MAX_CONNECTIONS_PER_ADDRESS bounds those).

`--table`: the membership table instead (issue 28, item 4): a child process merges the
largest records a member may gossip (each near MAX_RECORD_BYTES, signed, as they arrive
from the wire) until the table is at its caps, and reports its RSS growth against the
bound in bytes (MAX_TABLE_BYTES of records; was 2,048 records of up to ~1 MiB each).

    .venv/bin/python bench/attacker_memory.py [--connections 4] [--push-mib 64] [--table]
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


def fill_table(answers: mp.Queue, shape: str) -> None:
    """In a child: merge the largest allowed records until the table is full; RSS growth.
    `shape`: "names" (long model ids) or "maps" (many small entries: the most objects per
    byte, the worst ratio of memory to wire size)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from meshcore.identity import node_id_of
    from meshcore.membership import MAX_MODELS, MAX_RECORDS, MAX_RTT_PEERS, MAX_TABLE_BYTES, Membership, NodeRecord
    me = NodeRecord(node_id="0" * 32, version=1)
    table = Membership(me)
    before = rss_bytes()
    wire = 0
    for i in range(1, MAX_RECORDS + 200):
        key = Ed25519PrivateKey.from_private_bytes(i.to_bytes(32, "little"))
        if shape == "names":
            names = tuple(f"{i}-{j}-" + "m" * 180 for j in range(MAX_MODELS))
            fields: dict = {"models_on_disk": names[:60], "serving": names[:10]}
        else:
            short = tuple(f"m{j}" for j in range(MAX_MODELS))
            fields = {"models_on_disk": short, "serving": short, "can_fetch": short, "demand": {n: 1 for n in short},
                      "spare": {n: 1 for n in short}, "promoted": {n: "h" for n in short},
                      "rtt_ms": {f"{j:032x}": 1.5 for j in range(MAX_RTT_PEERS)}}
        record = NodeRecord(node_id=node_id_of(key.public_key()), version=1, **fields).signed(key)
        record = NodeRecord.from_wire(record.to_wire())  # as it arrives: parsed from the wire
        wire = max(wire, record.size)
        table.merge([record])
    answers.put({"records": len(table.records) - 1, "table_bytes": table.bytes, "largest_record_bytes": wire,
                 "rss_growth": rss_bytes() - before, "bound_bytes": MAX_TABLE_BYTES})


def measure_table() -> dict:
    ctx = mp.get_context("spawn")
    out = {}
    for shape in ("names", "maps"):
        answers = ctx.Queue()
        child = ctx.Process(target=fill_table, args=(answers, shape))
        child.start()
        got = answers.get(timeout=600)
        child.join(10)
        out[shape] = {"records_kept": got["records"], "record_bytes": got["largest_record_bytes"],
                      "table_mib": round(got["table_bytes"] / MiB, 2), "bound_mib": got["bound_bytes"] // MiB,
                      "rss_growth_mib": round(got["rss_growth"] / MiB, 1)}
    return {"table_at_caps": out,
            "table_rss_growth_mib": max(v["rss_growth_mib"] for v in out.values())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=1)
    parser.add_argument("--push-mib", type=int, default=64, help="bytes pushed on the first stream (and again "
                                                                 "spread over the others), per connection")
    parser.add_argument("--table", action="store_true", help="the membership table at its caps instead")
    args = parser.parse_args()
    print(json.dumps(measure_table() if args.table else measure(args.connections, args.push_mib), indent=2))


if __name__ == "__main__":
    main()
