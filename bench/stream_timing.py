"""Time one streaming completion: time to first token and decode tokens/s.

Both the reference (straight to llama-server) and the mesh path are measured with
this same client code, so client overhead cancels out of the ratios.
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass

import httpx


@dataclass(frozen=True)
class StreamTiming:
    ttft_s: float      # request sent -> first content chunk
    tokens: int        # content chunks received
    decode_s: float    # first -> last content chunk

    @property
    def tokens_per_s(self) -> float:
        return (self.tokens - 1) / self.decode_s if self.decode_s > 0 else 0.0


def stream_completion(client: httpx.Client, base_url: str, model: str, prompt: str, max_tokens: int) -> StreamTiming:
    body = {"model": model, "prompt": prompt, "max_tokens": max_tokens, "stream": True, "ignore_eos": True,
            "temperature": 0, "cache_prompt": False}
    started = time.perf_counter()
    first = last = 0.0
    tokens = 0
    with client.stream("POST", f"{base_url}/v1/completions", json=body) as resp:
        resp.raise_for_status()
        for line in resp.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if chunk.get("choices") and chunk["choices"][0].get("text") is not None:
                now = time.perf_counter()
                first = first or now
                last = now
                tokens += 1
    return StreamTiming(first - started, tokens, last - first)


def median_spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}
