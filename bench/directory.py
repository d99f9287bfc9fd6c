"""Directory throughput on this machine, in one run: SQLite (one process), PostgreSQL
with one replica, and PostgreSQL with two replicas (the load spread over both, as a
load balancer would). Each: N signed listings published over HTTP, then
GET /v1/meshes (gzip accepted, as clients send it) under concurrent load, then the
same GETs revalidated with If-None-Match (304). Rate limits off. The load generator
(plain asyncio keep-alive connections with uvloop) and PostgreSQL (a real server,
durable settings) share the machine's cores with the directory.

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

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))
from directory_postgres import PostgresServer  # noqa: E402  (the tests' real PostgreSQL)
from test_directory import Directory, listing, publish_body  # noqa: E402  (the tests' real-process harness)

from meshcore.event_loop import fast_loop  # noqa: E402


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples) or [0.0]
    return {"p50_ms": round(1000 * statistics.median(ordered), 2),
            "p99_ms": round(1000 * ordered[int(0.99 * (len(ordered) - 1))], 2)}


async def exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> tuple[int, bytes]:
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    body = await reader.readexactly(length) if length else b""
    return status, head + body


async def load(urls: list[str], requests: list[bytes] | None, get: bytes | None, seconds: float,
               concurrency: int) -> tuple[int, float, list[float], int]:
    """(requests done, seconds taken, latencies, failures): send each of `requests` once,
    or `get` over and over for `seconds`; connections spread over the replicas."""
    latencies: list[float] = []
    failures = 0
    queue = list(reversed(requests)) if requests is not None else None
    deadline = time.monotonic() + seconds

    async def worker(i: int) -> None:
        nonlocal failures
        host, port = urls[i % len(urls)].removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            while True:
                if queue is not None:
                    if not queue:
                        return
                    request = queue.pop()
                elif time.monotonic() > deadline:
                    return
                else:
                    request = get  # type: ignore[assignment]
                started = time.perf_counter()
                status, _ = await exchange(reader, writer, request)
                latencies.append(time.perf_counter() - started)
                failures += status >= 400
        finally:
            writer.close()

    started = time.monotonic()
    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    return len(latencies), time.monotonic() - started, latencies, failures


def post(body: dict) -> bytes:
    data = json.dumps(body).encode()
    return (b"POST /v1/meshes HTTP/1.1\r\nhost: bench\r\ncontent-type: application/json\r\n"
            b"content-length: " + str(len(data)).encode() + b"\r\n\r\n" + data)


GET = b"GET /v1/meshes HTTP/1.1\r\nhost: bench\r\naccept-encoding: gzip\r\n\r\n"


async def etag_of(url: str) -> str:
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    _, response = await exchange(reader, writer, GET)
    writer.close()
    head = response.split(b"\r\n\r\n")[0].decode()
    return next(line.split(":", 1)[1].strip() for line in head.split("\r\n") if line.lower().startswith("etag:"))


def scenario(db: str, replicas: int, bodies: list[dict], seconds: float, concurrency: int) -> dict:
    directories = [Directory(db, "--write-rate", "0", "--read-rate", "0", "--ttl", "3600") for _ in range(replicas)]
    urls = [d.url for d in directories]
    try:
        with asyncio.Runner(loop_factory=fast_loop()) as runner:
            done, took, pub_lat, pub_fail = runner.run(load(urls, [post(b) for b in bodies], None, 0, concurrency))
            time.sleep(1.5)  # every replica's snapshot now holds them all
            gets, get_s, get_lat, get_fail = runner.run(load(urls, None, GET, seconds, concurrency))
            tag = runner.run(etag_of(urls[0]))
            conditional = GET.replace(b"\r\n\r\n", f"\r\nif-none-match: {tag}\r\n\r\n".encode())
            n304, s304, lat304, fail304 = runner.run(load(urls, None, conditional, seconds / 2, concurrency))
    finally:
        for d in directories:
            d.stop()
    return {"publish_per_s": round(done / took, 1), "publish_latency": percentiles(pub_lat),
            "get_per_s": round(gets / get_s, 1), "get_latency": percentiles(get_lat),
            "get_304_per_s": round(n304 / s304, 1), "get_304_latency": percentiles(lat304),
            "failures": pub_fail + get_fail + fail304}


def measure(listings: int, seconds: float, concurrency: int) -> dict:
    def bodies() -> list[dict]:  # fresh keys per scenario: a publish is a new listing each time
        return [publish_body(Ed25519PrivateKey.generate(), listing(f"mesh{i}", mesh_id=f"{i:032x}"))
                for i in range(listings)]
    out: dict = {"listings": listings, "concurrency": concurrency,
                 "get_returns": "the newest 100 listings (default limit), gzip"}
    with tempfile.TemporaryDirectory(prefix="mesh-bench-") as tmp:
        sqlite = scenario(str(Path(tmp) / "dir.sqlite3"), 1, bodies(), seconds, concurrency)
    server = PostgresServer(durable=True)
    try:
        pg1 = scenario(server.new_database(), 1, bodies(), seconds, concurrency)
        pg2 = scenario(server.new_database(), 2, bodies(), seconds, concurrency)
    finally:
        server.stop()
    for prefix, result in (("directory", sqlite), ("directory_pg", pg1), ("directory_pg2", pg2)):
        for key, value in result.items():
            out[f"{prefix}_{key}"] = value
    return out


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
