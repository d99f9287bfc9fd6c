"""Through the proxy vs straight to llama-server: same node, same model, same run.

Starts a real `mesh-llm` node serving a generated model sized so one decoded token
costs tens of milliseconds here, then alternates streaming requests sent straight
to its llama-server and through the proxy on :port.

    .venv/bin/python bench/proxy_local.py [--runs 7] [--tokens 64] [--quick]

Prints and returns: proxy_local_tokps_ratio (proxy / direct decode tokens/s) and
proxy_local_ttft_added_ms_p50 (median over runs of proxy TTFT - direct TTFT).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Callable

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))
from meshnode import start_node  # noqa: E402  (the integration tests' real-process harness)

from mesh_node.tiny_model import TinySpec, generate  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stream_timing import StreamTiming, alternate, bench_main, compare, stream_completion  # noqa: E402

# ~410M parameters (820 MB F16): 20-50 ms a decoded token on 2 cores, a realistic
# compute-to-overhead ratio for a mid-size model on a GPU.
BENCH_MODEL = TinySpec(name="mesh-bench-F16", width=2048, layers=8, heads=16, ff=5632)


def measure(runs: int, tokens: int, stream: Callable[..., StreamTiming] = stream_completion,
            prefix: str = "proxy_local") -> dict:
    with tempfile.TemporaryDirectory(prefix="mesh-bench-") as tmp:
        model = generate(BENCH_MODEL, Path(tmp) / "models")
        node = start_node(Path(tmp), [model])
        try:
            direct_url = f"http://127.0.0.1:{node.llama_port(BENCH_MODEL.name)}"
            with httpx.Client(timeout=120) as client:
                direct, proxied = alternate(client, direct_url, node.api, BENCH_MODEL.name, runs, tokens, stream)
        finally:
            node.stop()
    return {**compare(prefix, direct, proxied), "runs": runs, "tokens": tokens}


def main() -> None:
    bench_main(__doc__, measure, runs=7, tokens=64)


if __name__ == "__main__":
    main()
