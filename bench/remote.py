"""A model served by another node, through the QUIC HTTP tunnel, vs straight to
its llama-server; and how long a hard-killed node's route survives.

Starts two real nodes on loopback: X serves the bench model, Y serves nothing and
joins X. Alternates streaming requests straight to X's llama-server and through
Y's proxy (Y's proxy -> Y's node agent -> QUIC -> X's node agent -> llama-server).
Then SIGKILLs every process of X and times until Y stops listing the model.

    .venv/bin/python bench/remote.py [--runs 7] [--tokens 64] [--quick]
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))
from meshnode import MeshNode, http_json, start_node  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from proxy_local import BENCH_MODEL  # noqa: E402
from stream_timing import median_spread, stream_completion  # noqa: E402

from mesh_node.tiny_model import generate  # noqa: E402


def kill_hard(node: MeshNode) -> None:
    procs = [psutil.Process(node.proc.pid), *node.descendants()]
    for proc in procs:
        proc.send_signal(signal.SIGSTOP)
    for proc in procs:
        proc.kill()
    node.proc.wait()


def route_gone_after_kill(x: MeshNode, y: MeshNode, model: str) -> float:
    kill_hard(x)
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
            direct, remote = [], []
            with httpx.Client(timeout=120) as client:
                stream_completion(client, y.api, name, "warm up", 8)
                for i in range(runs):
                    prompt = f"run {i}: the mesh serves tokens"
                    direct.append(stream_completion(client, direct_url, name, prompt, tokens))
                    remote.append(stream_completion(client, y.api, name, prompt, tokens))
            gone = route_gone_after_kill(x, y, name)
        finally:
            y.stop()
            if x.proc.poll() is None:
                x.stop()
    ratios = [r.tokens_per_s / d.tokens_per_s for r, d in zip(remote, direct)]
    added = [(r.ttft_s - d.ttft_s) * 1000 for r, d in zip(remote, direct)]
    return {
        "remote_tokps_ratio": statistics.median(ratios),
        "remote_tokps_ratio_spread": median_spread(ratios),
        "remote_ttft_added_ms_p50": statistics.median(added),
        "remote_ttft_added_ms_spread": median_spread(added),
        "direct_ms_per_token": 1000 / statistics.median([d.tokens_per_s for d in direct]),
        "hard_kill_route_gone_s": gone,
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
