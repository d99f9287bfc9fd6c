"""What a hostile member's valid messages cost an honest node's users (issue 28): the time
of honest API requests to a real node, without and then during an attack by a member
holding a valid token (this process, a real QUIC connection), in one run.

The attacker runs in a process of its own at the lowest CPU priority (nice 19): on this
one machine it stands for a member elsewhere, whose own CPU is not the node's. The
attack, all at once and for as long as the honest requests run: gossip messages of
the largest records a member may send (the table filled to its byte budget, then churned
with new ones), messages of records with bad signatures (signature checks), HTTP requests
for a model the node does not serve with 8 MiB bodies declared (the body budget), and
link requests for a split the node does not host.

    .venv/bin/python bench/attack_latency.py [--requests 60] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "integration"))
from meshnode import start_node  # noqa: E402
from test_malicious_member import attacker, forged, gossip, largest  # noqa: E402

from meshcore.messages import RpcLinkRequest, to_wire  # noqa: E402
from meshcore.wire import Kind  # noqa: E402
from mesh_node.tiny_model import TinySpec, generate  # noqa: E402

MODEL = TinySpec()


async def honest(api: str, requests: int) -> list[float]:
    """Times (ms) of small completions, one after another."""
    times = []
    async with httpx.AsyncClient(timeout=60) as client:
        for i in range(requests):
            started = time.perf_counter()
            reply = await client.post(f"{api}/v1/completions", json={"model": MODEL.name, "prompt": f"hello {i}",
                                                                     "max_tokens": 4, "ignore_eos": True})
            reply.raise_for_status()
            times.append((time.perf_counter() - started) * 1000)
    return times


async def attack(conn, stop: asyncio.Event, counts: dict) -> None:  # noqa: ANN001 - a MeshConnection
    """Four loops at once until `stop`; each keeps going when the node refuses or drops a
    message of it (it is meant to)."""
    async def flood(i: int) -> None:
        await gossip(conn, [largest(j) for j in range(10 ** 6 + 60 * i, 10 ** 6 + 60 * i + 60)])
        counts["records"] += 60

    async def bad(i: int) -> None:
        start = 2 * 10 ** 6 + 500 * i
        await gossip(conn, [forged(j, vram_bytes=1) for j in range(start, start + 500)])
        counts["bad_records"] += 500

    async def body(i: int) -> None:
        _, writer = await conn.open_stream(Kind.HTTP, {"model": "not-served-here"})
        writer.write(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 8000000\r\n\r\n")
        counts["requests"] += 1
        await asyncio.sleep(0.01)

    async def link(i: int) -> None:
        _, writer = await conn.open_stream(Kind.CONTROL, to_wire(RpcLinkRequest(MODEL.name, b"c" * 300)))
        writer.write_eof()
        counts["link_requests"] += 1
        await asyncio.sleep(0.05)

    async def again(work) -> None:  # noqa: ANN001
        i = 0
        while not stop.is_set():
            i += 1
            try:
                await asyncio.wait_for(work(i), 5)
            except Exception:  # noqa: BLE001 - dropped, refused or cut: go on
                await asyncio.sleep(0.01)

    async with asyncio.TaskGroup() as tasks:
        for work in (flood, bad, body, link):
            tasks.create_task(again(work))


def attacker_process(home: str, token_node: str, seconds: float, out: "mp.Queue") -> None:
    """The attack, in a child at nice 19, for `seconds`; puts what it sent."""
    import os
    os.nice(19)

    async def run() -> dict:
        class Node:  # what test_malicious_member.attacker needs of a node
            def wait_token(self) -> str:
                return token_node
        endpoint, conn = await attacker(Path(home), Node())  # type: ignore[arg-type]
        stop, counts = asyncio.Event(), {"records": 0, "bad_records": 0, "requests": 0, "link_requests": 0}
        asyncio.get_running_loop().call_later(seconds, stop.set)

        async def report() -> None:
            while not stop.is_set():
                await asyncio.sleep(1)
                out.put(dict(counts))
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(report())
            tasks.create_task(attack(conn, stop, counts))
        endpoint.close()
        return counts
    out.put(asyncio.run(run()))


async def measure(requests: int) -> dict:
    ctx = mp.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="mesh-attack-") as tmp_text:
        tmp = Path(tmp_text)
        node = start_node(tmp / "node", [generate(MODEL, tmp / "models")])
        try:
            await honest(node.api, 5)
            quiet = await honest(node.api, requests)
            out = ctx.Queue()
            child = ctx.Process(target=attacker_process, args=(str(tmp), node.wait_token(), 3600.0, out))
            child.start()
            await asyncio.sleep(3)  # the attack under way
            loud = await honest(node.api, requests)
            child.terminate()
            child.join(10)
            counts: dict = {}
            while not out.empty():
                counts = out.get()
            status = node.node_status()
        finally:
            node.stop()
    p50 = statistics.median
    return {
        "attack_honest_p50_ms": {"without": round(p50(quiet), 2), "during": round(p50(loud), 2)},
        "attack_honest_p90_ms": {"without": round(sorted(quiet)[int(len(quiet) * 0.9)], 2),
                                 "during": round(sorted(loud)[int(len(loud) * 0.9)], 2)},
        "attack_peers_held": len(status.peers), "requests": requests, "attack_sent": counts,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--requests", type=int, default=60)
    p.add_argument("--quick", action="store_true", help="20 requests each way")
    a = p.parse_args()
    print(json.dumps(asyncio.run(measure(20 if a.quick else a.requests)), indent=2))


if __name__ == "__main__":
    main()
