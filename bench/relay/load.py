"""Load generator for relay benchmarks: `streams` concurrent streaming requests to one
URL, started over `ramp` seconds; for each chunk, the delay since the upstream wrote it
(its "t" field, wall clock ns), per stream the time to the first chunk and the rate chunks
arrived at after it. Raw asyncio
sockets (cheap enough to drive thousands of streams from one process). Prints JSON:
{"ttft_ms_p50", "ttft_ms_p99", "delay_ms_p50", "delay_ms_p99", "chunks_per_s_p50", "chunks", "errors"}.

    python -m relay.load --port P --streams N [--tokens T --rate R --ramp S --path PATH --model M --sequential]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import time

from relay import use_uvloop

_T = re.compile(rb'"t":(\d+)')


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def one(port: int, path: str, body: bytes, delays: list[float], ttfts: list[float], errors: list[str],
              rates: list[float]) -> None:
    started = time.perf_counter()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (path.encode(), port, len(body), body))
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            errors.append(head.split(b"\r\n", 1)[0].decode(errors="replace"))
            writer.close()
            return
        first, seen, first_at, last_at = True, 0, 0.0, 0.0
        while data := await reader.read(65536):
            now = time.time_ns()
            stamps = _T.findall(data)
            if stamps and first:
                ttfts.append((time.perf_counter() - started) * 1000)
                first, first_at = False, time.perf_counter()
            if stamps:
                seen, last_at = seen + len(stamps), time.perf_counter()
            delays.extend((now - int(t)) / 1e6 for t in stamps)
        writer.close()
        if seen > 1 and last_at > first_at:
            rates.append((seen - 1) / (last_at - first_at))
    except (OSError, asyncio.IncompleteReadError) as exc:
        errors.append(type(exc).__name__)


async def run(port: int, path: str, streams: int, tokens: int, rate: float, ramp: float,
              model: str = "synthetic", sequential: bool = False) -> dict:
    body = json.dumps({"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": True,
                       "max_tokens": tokens, "rate": rate}).encode()
    delays: list[float] = []
    ttfts: list[float] = []
    errors: list[str] = []
    rates: list[float] = []
    tasks = []
    for i in range(streams):
        tasks.append(asyncio.create_task(one(port, path, body, delays, ttfts, errors, rates)))
        if sequential:  # one stream at a time, `ramp / streams` idle seconds between them
            await tasks[-1]
        await asyncio.sleep(ramp / streams)
    await asyncio.gather(*tasks)
    return {"streams": streams, "chunks": len(delays), "errors": len(errors), "first_errors": errors[:3],
            "delay_ms_p50": percentile(delays, 0.5), "delay_ms_p99": percentile(delays, 0.99),
            "ttft_ms_p50": percentile(ttfts, 0.5), "ttft_ms_p99": percentile(ttfts, 0.99),
            "chunks_per_s_p50": percentile(rates, 0.5)}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--path", default="/v1/chat/completions")
    p.add_argument("--streams", type=int, default=100)
    p.add_argument("--tokens", type=int, default=100)
    p.add_argument("--rate", type=float, default=20.0)
    p.add_argument("--ramp", type=float, default=2.0)
    p.add_argument("--model", default="synthetic", help="the request's model field")
    p.add_argument("--sequential", action="store_true", help="each stream after the last one ended")
    a = p.parse_args()
    use_uvloop()
    print(json.dumps(asyncio.run(run(a.port, a.path, a.streams, a.tokens, a.rate, a.ramp, a.model, a.sequential))))


if __name__ == "__main__":
    main()
