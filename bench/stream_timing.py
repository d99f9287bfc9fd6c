"""Time one streaming completion: time to first token and decode tokens/s.

Both the reference (straight to llama-server) and the mesh path are measured with
this same client code, so client overhead cancels out of the ratios.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import dataclass
from typing import Callable

import httpx


@dataclass(frozen=True)
class StreamTiming:
    ttft_s: float      # request sent -> first content chunk
    tokens: int        # content chunks received
    decode_s: float    # first -> last content chunk

    @property
    def tokens_per_s(self) -> float:
        return (self.tokens - 1) / self.decode_s if self.decode_s > 0 else 0.0


def timed_stream(client: httpx.Client, url: str, body: dict, is_token: Callable[[str], bool]) -> StreamTiming:
    """Stream one request; every SSE `data:` line that `is_token` accepts is a token."""
    started = time.perf_counter()
    first = last = 0.0
    tokens = 0
    with client.stream("POST", url, json=body) as resp:
        resp.raise_for_status()
        for line in resp.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]" and is_token(line[6:]):
                now = time.perf_counter()
                first = first or now
                last = now
                tokens += 1
    return StreamTiming(first - started, tokens, last - first)


def _completion_text(data: str) -> bool:
    chunk = json.loads(data)
    return bool(chunk.get("choices")) and chunk["choices"][0].get("text") is not None


def stream_completion(client: httpx.Client, base_url: str, model: str, prompt: str, max_tokens: int) -> StreamTiming:
    body = {"model": model, "prompt": prompt, "max_tokens": max_tokens, "stream": True, "ignore_eos": True,
            "temperature": 0, "cache_prompt": False}
    return timed_stream(client, f"{base_url}/v1/completions", body, _completion_text)


def stream_messages(client: httpx.Client, base_url: str, model: str, prompt: str, max_tokens: int) -> StreamTiming:
    """The same measure for Anthropic's /v1/messages stream (content_block_delta events)."""
    body = {"model": model, "max_tokens": max_tokens, "stream": True, "temperature": 0, "ignore_eos": True,
            "cache_prompt": False, "messages": [{"role": "user", "content": prompt}]}
    return timed_stream(client, f"{base_url}/v1/messages", body, lambda data: '"content_block_delta"' in data)


def median_spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def alternate(client: httpx.Client, reference_url: str, mesh_url: str, model: str, runs: int,
              tokens: int, stream: Callable[..., StreamTiming] = stream_completion
              ) -> tuple[list[StreamTiming], list[StreamTiming]]:
    """Warm up, then alternate reference and mesh requests with the same prompts."""
    stream(client, mesh_url, model, "warm up", 8)
    reference, mesh = [], []
    for i in range(runs):
        # Prompts of the same length that differ in their first token: no request reuses
        # another's prompt cache (/v1/messages ignores cache_prompt=false).
        reference.append(stream(client, reference_url, model, f"{2 * i} run: the mesh serves tokens", tokens))
        mesh.append(stream(client, mesh_url, model, f"{2 * i + 1} run: the mesh serves tokens", tokens))
    return reference, mesh


def compare(prefix: str, reference: list[StreamTiming], mesh: list[StreamTiming]) -> dict:
    """<prefix>_tokps_ratio (mesh / reference) and <prefix>_ttft_added_ms_p50, with spreads."""
    ratios = [m.tokens_per_s / r.tokens_per_s for m, r in zip(mesh, reference)]
    added = [(m.ttft_s - r.ttft_s) * 1000 for m, r in zip(mesh, reference)]
    return {
        f"{prefix}_tokps_ratio": statistics.median(ratios),
        f"{prefix}_tokps_ratio_spread": median_spread(ratios),
        f"{prefix}_ttft_added_ms_p50": statistics.median(added),
        f"{prefix}_ttft_added_ms_spread": median_spread(added),
        "reference_ms_per_token": 1000 / statistics.median([r.tokens_per_s for r in reference]),
        "reference_ttft_ms": median_spread([r.ttft_s * 1000 for r in reference]),
    }


def bench_main(doc: str, measure: Callable[[int, int], dict], runs: int, tokens: int) -> None:
    """The command line every benchmark shares: --runs, --tokens, --quick."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--runs", type=int, default=runs)
    parser.add_argument("--tokens", type=int, default=tokens)
    parser.add_argument("--quick", action="store_true", help="3 short runs")
    args = parser.parse_args()
    quick_runs, quick_tokens = 3, max(8, tokens // 3)
    print(json.dumps(measure(*((quick_runs, quick_tokens) if args.quick else (args.runs, args.tokens))), indent=2))
