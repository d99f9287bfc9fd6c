"""A model served by another node, through the QUIC HTTP tunnel, vs straight to
its llama-server; and how long a hard-killed node's route survives.

Starts two real nodes on loopback: X serves the bench model, Y serves nothing and
joins X. Alternates streaming requests straight to X's llama-server and through
Y's proxy (Y's proxy -> Y's node agent -> QUIC -> X's node agent -> llama-server).
Then SIGKILLs every process of X and times until Y stops listing the model.

    .venv/bin/python bench/remote.py [--runs 7] [--tokens 64] [--quick]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))
from meshnode import MeshNode, http_json, start_node  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from proxy_local import BENCH_MODEL  # noqa: E402
from stream_timing import bench_main, alternate, compare  # noqa: E402

from mesh_node.tiny_model import generate  # noqa: E402


def route_gone_after_kill(x: MeshNode, y: MeshNode, model: str) -> float:
    x.kill_hard()
    started = time.monotonic()
    while time.monotonic() - started < 60:
        _, body, _ = http_json(f"{y.api}/v1/models")
        if model not in {m["id"] for m in body.get("data", [])}:
            return time.monotonic() - started
        time.sleep(0.05)
    return float("inf")


def measure(runs: int, tokens: int) -> dict:
    name = BENCH_MODEL.name
    with tempfile.TemporaryDirectory(prefix="mesh-bench-") as tmp:
        model = generate(BENCH_MODEL, Path(tmp) / "models")
        x = start_node(Path(tmp) / "x", [model])
        y = start_node(Path(tmp) / "y", [], "--join", x.node_status().token, wait=False)
        try:
            y.wait_serving([name])
            direct_url = f"http://127.0.0.1:{x.llama_port(name)}"
            with httpx.Client(timeout=120) as client:
                direct, remote = alternate(client, direct_url, y.api, name, runs, tokens)
            gone = route_gone_after_kill(x, y, name)
        finally:
            y.stop()
            if x.proc.poll() is None:
                x.stop()
    return {**compare("remote", direct, remote), "hard_kill_route_gone_s": gone, "runs": runs, "tokens": tokens}


def main() -> None:
    bench_main(__doc__, measure, runs=7, tokens=64)


if __name__ == "__main__":
    main()
