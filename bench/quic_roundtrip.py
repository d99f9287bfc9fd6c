"""One RPC-sized round trip over a mesh QUIC stream, in one process on loopback: what the
split tunnel costs per token apart from llama.cpp (the real transport: MeshEndpoint,
admission, the flow-controlled aioquic connection).

A split's host sends the worker about 15–35 KB per token (the graph and its inputs) and
reads back 1.5–31 KB (bench/split.py measures it for its model); at that size the cost is
aioquic's Python work per datagram, so it is reported per size, on asyncio's loop and on
uvloop (the proxy's, meshcore.event_loop), with the datagram size the connection had
reached by path-MTU probing (meshcore.quic_mtu; 16,000 bytes on loopback).

    .venv/bin/python bench/quic_roundtrip.py [--sizes 100:100,15000:1500,34000:31000] [--datagrams 16000,1472]
                                             [--trips 60] [--quick]

--datagrams caps the path-MTU probe (MeshEndpoint.max_datagram) to see what a LAN would
get: 1,472 bytes is what an Ethernet first hop allows.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

from meshcore.event_loop import fast_loop
from meshcore.identity import MeshSecret, load_or_create_identity
from meshcore.quic_mtu import LARGEST_SIZE, START_SIZE
from meshcore.transport import MeshEndpoint
from meshcore.wire import Kind


def endpoint(tmp: Path, name: str, mesh: MeshSecret) -> MeshEndpoint:
    (tmp / name).mkdir()
    return MeshEndpoint(load_or_create_identity(tmp / name), lambda: mesh)


async def trips(up: int, down: int, count: int, cap: int) -> dict:
    async def answer(conn, reader, writer) -> None:  # noqa: ANN001 - a stream handler
        try:
            while True:
                await reader.readexactly(up)
                writer.write(b"y" * down)
        except asyncio.IncompleteReadError:
            return

    with tempfile.TemporaryDirectory(prefix="mesh-quic-rt-") as tmp_text:
        tmp, mesh = Path(tmp_text), MeshSecret.new()
        a, b = endpoint(tmp, "a", mesh), endpoint(tmp, "b", mesh)
        a.max_datagram = b.max_datagram = cap
        b.handlers[Kind.RPC] = answer
        try:
            port = await b.listen("127.0.0.1", 0)
            conn = await a.dial(f"127.0.0.1:{port}")
            reader, writer = await conn.open_stream(Kind.RPC)
            for _ in range(100):  # both sides' path-MTU probes answered
                if conn.datagram_size == min(cap, LARGEST_SIZE) or cap <= START_SIZE:
                    break
                await asyncio.sleep(0.01)
            times = []
            cpu0 = resource.getrusage(resource.RUSAGE_SELF)
            for i in range(count + 10):
                if i == 10:  # the first trips grow the congestion window
                    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
                started = time.perf_counter()
                writer.write(b"x" * up)
                await reader.readexactly(down)
                if i >= 10:
                    times.append((time.perf_counter() - started) * 1000)
            cpu1 = resource.getrusage(resource.RUSAGE_SELF)
            datagram = conn.datagram_size
        finally:
            a.close()
            b.close()
    cpu_ms = (cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime) * 1000 / count
    return {"up": up, "down": down, "ms_p50": round(statistics.median(times), 2),
            "ms_min": round(min(times), 2), "ms_max": round(max(times), 2), "cpu_ms_per_trip": round(cpu_ms, 2), "datagram_bytes": datagram}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="100:100,15000:1500,34000:31000", help="UP:DOWN bytes, comma-separated")
    p.add_argument("--datagrams", default="16000,1472",
                   help="largest datagram probed for, comma-separated: 16000 is loopback's, 1472 Ethernet's")
    p.add_argument("--trips", type=int, default=60)
    p.add_argument("--quick", action="store_true", help="20 trips per size")
    a = p.parse_args()
    if a.quick:
        a.trips = 20
    sizes = [tuple(int(x) for x in s.split(":")) for s in a.sizes.split(",")]
    caps = [int(x) for x in a.datagrams.split(",")]
    rows = []
    for loop_name, factory in (("asyncio", None), ("uvloop", fast_loop())):
        if loop_name == "uvloop" and factory is None:
            continue
        for cap in caps:
            for up, down in sizes:
                with asyncio.Runner(loop_factory=factory) as runner:
                    row = {"loop": loop_name, **runner.run(trips(up, down, a.trips, cap))}
                print(json.dumps(row), file=sys.stderr)
                rows.append(row)
    best = "uvloop" if any(r["loop"] == "uvloop" for r in rows) else "asyncio"  # the node agent's loop
    by_cap = {cap: {f"{r['up']}/{r['down']}": r["ms_p50"] for r in rows
                    if r["loop"] == best and r["datagram_bytes"] == min(cap, LARGEST_SIZE)} for cap in caps}
    out = {"quic_rpc_roundtrip_ms": by_cap[max(caps)], "quic_roundtrip": rows}
    if 1472 in by_cap:
        out["quic_rpc_roundtrip_ethernet_ms"] = by_cap[1472]
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
