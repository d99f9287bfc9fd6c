"""Directory throughput on this machine: one directory process (one worker, SQLite,
rate limits off), 10,000 signed listings published over HTTP, then GET /v1/meshes
under concurrent load. The load generator shares the machine's cores.

    .venv/bin/python bench/directory.py [--listings 10000] [--seconds 10] [--concurrency 16] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))
from test_directory import Directory, listing, publish_body  # noqa: E402  (the tests' real-process harness)


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {"p50_ms": 1000 * statistics.median(ordered), "p99_ms": 1000 * ordered[int(0.99 * (len(ordered) - 1))]}


async def hammer(url: str, bodies: list[dict] | None, seconds: float, concurrency: int) -> tuple[int, list[float], int]:
    """(requests done, latencies, non-2xx count): POST the bodies once each, or GET for `seconds`."""
    latencies: list[float] = []
    failures = 0
    queue = list(reversed(bodies)) if bodies is not None else None
    deadline = time.monotonic() + seconds

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal failures
        while True:
            if queue is not None:
                if not queue:
                    return
                body = queue.pop()
            elif time.monotonic() > deadline:
                return
            started = time.perf_counter()
            r = await (client.post("/v1/meshes", json=body) if queue is not None else client.get("/v1/meshes"))
            latencies.append(time.perf_counter() - started)
            failures += r.status_code >= 300

    async with httpx.AsyncClient(base_url=url, timeout=30,
                                 limits=httpx.Limits(max_connections=concurrency)) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    return len(latencies), latencies, failures


def measure(listings: int, seconds: float, concurrency: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="mesh-bench-") as tmp:
        directory = Directory(Path(tmp) / "dir.sqlite3", "--write-rate", "0", "--read-rate", "0", "--ttl", "3600")
        try:
            bodies = [publish_body(Ed25519PrivateKey.generate(), listing(f"mesh{i}", mesh_id=f"{i:032x}"))
                      for i in range(listings)]
            started = time.monotonic()
            done, pub_lat, pub_fail = asyncio.run(hammer(directory.url, bodies, 0, concurrency))
            publish_s = time.monotonic() - started
            started = time.monotonic()
            gets, get_lat, get_fail = asyncio.run(hammer(directory.url, None, seconds, concurrency))
            get_s = time.monotonic() - started
        finally:
            directory.stop()
    return {
        "directory_publish_per_s": done / publish_s, "directory_publish_latency": percentiles(pub_lat),
        "directory_get_per_s": gets / get_s, "directory_get_latency": percentiles(get_lat),
        "failures": pub_fail + get_fail, "listings": listings, "concurrency": concurrency,
        "get_returns": "the newest 100 listings (default limit)",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listings", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--quick", action="store_true", help="1,000 listings, 3 s of GETs")
    args = parser.parse_args()
    listings, seconds = (1000, 3.0) if args.quick else (args.listings, args.seconds)
    print(json.dumps(measure(listings, seconds, args.concurrency), indent=2))


if __name__ == "__main__":
    main()
