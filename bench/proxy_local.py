"""Through the proxy vs straight to llama-server: same node, same model, same run.

Starts a real `mesh-llm` node serving a generated model sized so one decoded token
costs tens of milliseconds here, then alternates streaming requests sent straight
to its llama-server and through the proxy on :port.

    .venv/bin/python bench/proxy_local.py [--runs 7] [--tokens 64] [--quick]

Prints and returns: proxy_local_tokps_ratio (proxy / direct decode tokens/s) and
proxy_local_ttft_added_ms_p50 (median over runs of proxy TTFT - direct TTFT).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))
from meshnode import start_node  # noqa: E402  (the integration tests' real-process harness)

from mesh_node.tiny_model import TinySpec, generate  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stream_timing import median_spread, stream_completion  # noqa: E402

# ~310M parameters (620 MB F16): 20-50 ms a decoded token on 2 cores, a realistic
# compute-to-overhead ratio for a mid-size model on a GPU.
BENCH_MODEL = TinySpec(name="mesh-bench-F16", width=2048, layers=6, heads=16, ff=5632)


def measure(runs: int, tokens: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="mesh-bench-") as tmp:
        model = generate(BENCH_MODEL, Path(tmp) / "models")
        node = start_node(Path(tmp), [model])
        try:
            direct_url = f"http://127.0.0.1:{node.llama_port(BENCH_MODEL.name)}"
            direct, proxied = [], []
            with httpx.Client(timeout=120) as client:
                stream_completion(client, node.api, BENCH_MODEL.name, "warm up", 8)
                for i in range(runs):
                    prompt = f"run {i}: the mesh serves tokens"
                    direct.append(stream_completion(client, direct_url, BENCH_MODEL.name, prompt, tokens))
                    proxied.append(stream_completion(client, node.api, BENCH_MODEL.name, prompt, tokens))
        finally:
            node.stop()
    ratios = [p.tokens_per_s / d.tokens_per_s for p, d in zip(proxied, direct)]
    added = [(p.ttft_s - d.ttft_s) * 1000 for p, d in zip(proxied, direct)]
    return {
        "proxy_local_tokps_ratio": statistics.median(ratios),
        "proxy_local_tokps_ratio_spread": median_spread(ratios),
        "proxy_local_ttft_added_ms_p50": statistics.median(added),
        "proxy_local_ttft_added_ms_spread": median_spread(added),
        "direct_tokps": median_spread([d.tokens_per_s for d in direct]),
        "direct_ms_per_token": 1000 / statistics.median([d.tokens_per_s for d in direct]),
        "direct_ttft_ms": median_spread([d.ttft_s * 1000 for d in direct]),
        "runs": runs,
        "tokens": tokens,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--quick", action="store_true", help="3 runs of 24 tokens")
    args = parser.parse_args()
    runs, tokens = (3, 24) if args.quick else (args.runs, args.tokens)
    print(json.dumps(measure(runs, tokens), indent=2))


if __name__ == "__main__":
    main()
