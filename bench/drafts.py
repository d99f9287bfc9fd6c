"""Speculative decoding: decode tokens/s of a model with and without its draft, and the
draft's acceptance rate, same run (one node at a time, the same prompts).

The pair is generated to agree often, as a real family does: the target is the draft
(same seed, same weights) plus `quiet` layers whose outputs are scaled by 1e-3
(`TinySpec.quiet_layers`), so it costs what a bigger model costs and predicts almost
what its draft predicts.

    .venv/bin/python bench/drafts.py [--runs 5] [--tokens 96] [--quick]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))
from meshnode import http_json, start_node  # noqa: E402

from mesh_node.tiny_model import TinySpec, generate  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stream_timing import bench_main, stream_completion  # noqa: E402

DRAFT = TinySpec(name="mesh-draft-F16", width=2048, layers=1, heads=16, ff=5632)
TARGET = TinySpec(name="mesh-target-F16", width=2048, layers=1, heads=16, ff=5632, quiet_layers=11)


def decode(api: str, model: str, runs: int, tokens: int) -> list[float]:
    with httpx.Client(timeout=300) as client:
        stream_completion(client, api, model, "warm up", 8)
        return [stream_completion(client, api, model, f"{i} run: the mesh serves tokens", tokens).tokens_per_s
                for i in range(runs)]


def measure(runs: int, tokens: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="mesh-bench-") as tmp:
        draft = generate(DRAFT, Path(tmp) / "models")
        target = generate(TARGET, Path(tmp) / "models")
        result: dict = {}
        for label, extra in (("without", ["--no-draft"]), ("with", ["--draft", str(draft)])):
            node = start_node(Path(tmp) / label, [target], *extra)
            try:
                result[label] = decode(node.api, TARGET.name, runs, tokens)
                if label == "with":
                    time.sleep(6)  # the node reads llama-server's metrics every 5 s
                    model = next(m for m in http_json(f"{node.console}/api/status")[1]["models"])
                    result["acceptance"] = model["draft_acceptance"]
            finally:
                node.stop()
    speedups = [w / o for w, o in zip(result["with"], result["without"])]
    return {"draft_tokps_speedup": statistics.median(speedups),
            "draft_tokps_speedup_spread": {"min": min(speedups), "max": max(speedups)},
            "draft_acceptance": result["acceptance"],
            "tokps_without_draft": statistics.median(result["without"]),
            "tokps_with_draft": statistics.median(result["with"]), "runs": runs, "tokens": tokens}


def main() -> None:
    bench_main(__doc__, measure, runs=5, tokens=96)


if __name__ == "__main__":
    main()
