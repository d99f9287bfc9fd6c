"""How many concurrent streams the proxy carries while adding under 10 ms (p99) to
the time to first token, and its memory at that load.

A real node serves the tiny model with 64 llama-server slots; at each concurrency
(1, 2, 4, ... 64) the same number of streaming requests run at once, first straight
to llama-server, then through the proxy; added = p99(proxy TTFT) - p99(direct TTFT).

    .venv/bin/python bench/proxy_concurrency.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))
from meshnode import start_node  # noqa: E402

from mesh_node.tiny_model import TinySpec, generate  # noqa: E402

SLOTS = 64
LIMIT_MS = 10.0


async def ttfts(url: str, model: str, concurrency: int, tokens: int) -> list[float]:
    async def one(client: httpx.AsyncClient, i: int) -> float:
        body = {"model": model, "prompt": f"stream {i}", "max_tokens": tokens, "stream": True, "ignore_eos": True,
                "cache_prompt": False}
        started = time.perf_counter()
        first = 0.0
        async with client.stream("POST", f"{url}/v1/completions", json=body) as resp:
            async for line in resp.aiter_lines():
                if line.startswith("data: ") and not first:
                    first = time.perf_counter() - started
        return first

    async with httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=concurrency + 4)) as client:
        return list(await asyncio.gather(*(one(client, i) for i in range(concurrency))))


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


def measure(quick: bool) -> dict:
    levels = [1, 4, 16, 64] if quick else [1, 2, 4, 8, 16, 32, 64]
    repeats = 2 if quick else 4
    with tempfile.TemporaryDirectory(prefix="mesh-bench-") as tmp:
        model = generate(TinySpec(), Path(tmp) / "models")
        node = start_node(Path(tmp), [model], "--parallel", str(SLOTS), "--ctx-size", "256")
        try:
            direct = f"http://127.0.0.1:{node.llama_port(model.stem)}"
            proxy_pid = node.child_pid("mesh_proxy")
            table, best, memory = [], 0, 0
            asyncio.run(ttfts(direct, model.stem, 4, 4))  # warm up both paths
            asyncio.run(ttfts(node.api, model.stem, 4, 4))
            for level in levels:
                d, p = [], []
                for _ in range(repeats):
                    d += asyncio.run(ttfts(direct, model.stem, level, 16))
                    p += asyncio.run(ttfts(node.api, model.stem, level, 16))
                added = (p99(p) - p99(d)) * 1000
                rss = psutil.Process(proxy_pid).memory_info().rss
                table.append({"concurrency": level, "added_p99_ms": round(added, 2),
                              "direct_p99_ms": round(p99(d) * 1000, 2), "proxy_rss_mb": round(rss / 1e6, 1)})
                if added < LIMIT_MS:
                    best, memory = level, rss
        finally:
            node.stop()
    return {"proxy_concurrent_streams": best, "proxy_memory_mb_at_that_load": round(memory / 1e6, 1),
            "proxy_concurrency_table": table, "limit_ms": LIMIT_MS, "slots": SLOTS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    print(json.dumps(measure(parser.parse_args().quick), indent=2))


if __name__ == "__main__":
    main()
