"""A 2-node split through the mesh vs stock llama.cpp RPC over plain TCP, same run.

- mesh: two real nodes on loopback, each capped with --max-vram so the model fits
  neither alone; the host's llama-server reaches the worker's rpc-server through
  the mesh (local port -> QUIC RPC stream -> worker agent -> rpc-server), and the
  worker serves the big weights from its own copy (zero-transfer).
- reference: a stock ggml-rpc-server on 127.0.0.1 (no cache) and a llama-server
  with the same --n-gpu-layers / --tensor-split pointing at it over plain TCP.
- solo: the same model in one llama-server, for the load-time ratio.
Decode tokens/s are measured straight against each llama-server (no proxy), with
alternating streaming requests.

    .venv/bin/python bench/split.py [--runs 5] [--tokens 48] [--quick]
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))
from meshnode import free_port, start_node  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from children import start_llama_server, start_rpc_server  # noqa: E402
from stream_timing import bench_main, median_spread, stream_completion  # noqa: E402

from meshcore.api import node_pb2 as pb  # noqa: E402
from meshcore.llama_bin import llama_bin_dir  # noqa: E402
from mesh_node.model_runner import offload_args  # noqa: E402
from mesh_node.tiny_model import TinySpec, generate  # noqa: E402

# Every weight matrix over 10 MiB (2304 x 2304 x 2 bytes), 4 layers, 508 MB: about
# 30 ms a decoded token here.
SPLIT_BENCH = TinySpec(name="mesh-splitbench-F16", width=2304, layers=4, heads=18, ff=6144)
CAP = "0.35"  # GiB per node: 1.1 x 508 MB needs 0.52 GiB, so two nodes are needed
# One compute thread each, mesh and stock alike (as bench/wan.py): two 2-thread processes on
# these 2 cores spin against each other and the ratio swung from 0.9 to 1.2 between runs.
THREADS = 1


def timed_llama(bin_dir: Path, model: Path, args: list[str], log: Path) -> tuple[subprocess.Popen, int, float]:
    """A llama-server, once healthy, and how long it took to load."""
    port = free_port()
    started = time.monotonic()
    proc = start_llama_server(bin_dir, model, port, ["-c", "4096", *args], log)
    return proc, port, time.monotonic() - started


def stop_processes(*procs: subprocess.Popen | None) -> None:
    for proc in procs:
        if proc is not None:
            proc.terminate()
            proc.wait()


def mesh_load(nodes: list, model_id: str) -> tuple[object, float]:
    """(host node, seconds from its llama-server start to serving), by watching status."""
    started = None
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        for node in nodes:
            try:
                m = node.node_status().models[0]
            except Exception:  # noqa: BLE001 - still starting
                continue
            if m.split and m.state == pb.MODEL_STATE_LOADING and m.reason.startswith("starting llama-server"):
                started = started or time.monotonic()
            if m.split and m.state == pb.MODEL_STATE_SERVING:
                return node, time.monotonic() - (started or time.monotonic())
        time.sleep(0.02)
    raise TimeoutError("the split did not come up")


def measure(runs: int, tokens: int) -> dict:
    bin_dir = llama_bin_dir()
    with tempfile.TemporaryDirectory(prefix="mesh-bench-") as tmp_text:
        tmp = Path(tmp_text)
        model = generate(SPLIT_BENCH, tmp / "models")
        size = model.stat().st_size
        solo, _, solo_load = timed_llama(bin_dir, model, [], tmp / "solo.log")
        solo.terminate()
        solo.wait()

        a = start_node(tmp / "a", [model], "--max-vram", CAP, "--parallel", "1", "--threads", str(THREADS), wait=False)
        b = start_node(tmp / "b", [model], "--max-vram", CAP, "--parallel", "1", "--threads", str(THREADS),
                       "--join", a.wait_token(), wait=False)
        rpc = ref = None
        try:
            host, mesh_load_s = mesh_load([a, b], model.stem)
            status = host.node_status()
            link = status.rpc_links[0]
            load_bytes = link.bytes_to_worker
            layers = [p.layers for p in status.models[0].split]
            mesh_port = status.models[0].port
            offload = offload_args(tuple(layers), gpu=False)

            rpc_port = free_port()
            rpc = start_rpc_server(bin_dir, "127.0.0.1", rpc_port, tmp / "rpc.log", threads=THREADS)
            ref, ref_port, ref_load = timed_llama(bin_dir, model, ["-t", str(THREADS), "--rpc", f"127.0.0.1:{rpc_port}",
                                                                   *offload],
                                                  tmp / "ref.log")
            mesh_runs, ref_runs, per_token = [], [], []
            with httpx.Client(timeout=300) as client:
                for url in (f"http://127.0.0.1:{mesh_port}", f"http://127.0.0.1:{ref_port}"):
                    stream_completion(client, url, model.stem, "warm up", 4)
                for i in range(runs):
                    prompt = f"run {i}: the split mesh"
                    before = host.node_status().rpc_links[0]
                    mesh_runs.append(stream_completion(client, f"http://127.0.0.1:{mesh_port}", model.stem, prompt, tokens))
                    after = host.node_status().rpc_links[0]
                    n = mesh_runs[-1].tokens
                    per_token.append(((after.bytes_to_worker - before.bytes_to_worker) / n,
                                      (after.bytes_from_worker - before.bytes_from_worker) / n,
                                      (after.reads_from_worker - before.reads_from_worker) / n))
                    ref_runs.append(stream_completion(client, f"http://127.0.0.1:{ref_port}", model.stem, prompt, tokens))
        finally:
            stop_processes(ref, rpc)
            b.stop()
            a.stop()
    ratios = [m.tokens_per_s / r.tokens_per_s for m, r in zip(mesh_runs, ref_runs)]
    return {
        "split_tunnel_tokps_ratio": statistics.median(ratios),
        "split_tunnel_tokps_ratio_spread": median_spread(ratios),
        "split_worker_reads_per_token": statistics.median(p[2] for p in per_token),
        "split_bytes_per_token": {"to_worker": statistics.median(p[0] for p in per_token),
                                  "from_worker": statistics.median(p[1] for p in per_token)},
        "split_load_bytes_fraction": load_bytes / size,
        "split_load_time_ratio": mesh_load_s / solo_load,
        "stock_rpc_load_time_ratio": ref_load / solo_load,
        "load_seconds": {"solo": solo_load, "mesh_split": mesh_load_s, "stock_rpc_split": ref_load},
        "mesh_ms_per_token": 1000 / statistics.median(m.tokens_per_s for m in mesh_runs),
        "stock_rpc_ms_per_token": 1000 / statistics.median(r.tokens_per_s for r in ref_runs),
        "layers": layers,
        "model_bytes": size,
        "runs": runs,
        "tokens": tokens,
    }


def main() -> None:
    bench_main(__doc__, measure, runs=5, tokens=48)


if __name__ == "__main__":
    main()
