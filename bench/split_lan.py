"""A 2-node split on a LAN-sized link at GPU-like speed: the mesh vs stock llama.cpp RPC, same run.

Both nodes run in one network namespace whose loopback has MTU 1500, so every packet is
Ethernet-sized as on a LAN; the model (768 wide, 8 layers, Q8_0, GQA, ~50 MB) decodes in
a few ms a token, the regime of a GPU, where the network's share of each token is largest.
- mesh: two real nodes, each capped with --max-vram so the model needs both; the host's
  llama-server reaches the worker's rpc-server through the split's data path (direct
  TCP + TLS, mesh_node.rpc_data; the path the link took is reported);
- stock: a stock ggml-rpc-server and `llama-server --rpc` in the same namespace, plain TCP,
  the same layers and the same llama-server flags.
Decode tokens/s are streamed straight from each llama-server, inside the namespace,
alternating mesh and stock; the ratio is the median of the pairs' ratios.

    .venv/bin/python bench/split_lan.py [--runs 7] [--tokens 64] [--mtu 1500] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "integration"))
from meshnode import free_port, start_node  # noqa: E402

from children import in_ns, start_llama_server, start_rpc_server, stop  # noqa: E402
from stream_timing import median_spread  # noqa: E402
from wan import STOCK_ARGS, THREAD_ARGS, THREADS, set_repeats, stream_stats, wait_split  # noqa: E402

from meshcore.api import node_pb2 as pb  # noqa: E402
from meshcore.llama_bin import llama_bin_dir  # noqa: E402
from mesh_node.model_runner import offload_args  # noqa: E402
from mesh_node.tiny_model import TinySpec, generate  # noqa: E402

# About 2.5 ms a token solo here, ~5 ms split: the network's share of a token as on a GPU.
# One compute thread each for llama-server and rpc-server, mesh and stock alike (wan.THREADS):
# on a 2-core machine two 2-thread processes spin against each other and decode speed flips
# between ~100 and ~230 tok/s from one stream to the next (stock alone); with one each, it holds.
MODEL = TinySpec(name="mesh-lan-Q8_0", width=768, heads=12, kv_heads=4, ff=2048, layers=8, dtype="q8_0")

PATHS = {pb.RPC_PATH_DIRECT: "direct", pb.RPC_PATH_QUIC: "quic"}


def measure(runs: int, tokens: int, mtu: int) -> dict:
    bin_dir = llama_bin_dir()
    ns = f"splitlan{os.getpid() % 100000}"
    subprocess.run(["ip", "netns", "add", ns], check=True, capture_output=True)
    nodes: list = []
    rpc = ref = None
    try:
        subprocess.run(["ip", "-n", ns, "link", "set", "lo", "mtu", str(mtu), "up"], check=True, capture_output=True)
        with tempfile.TemporaryDirectory(prefix="mesh-splitlan-") as tmp_text:
            tmp = Path(tmp_text)
            model = generate(MODEL, tmp / "models")
            cap = f"{1.1 * model.stat().st_size * 0.6 / (1 << 30):.5f}"
            a = start_node(tmp / "a", [model], "--max-vram", cap, "--parallel", "1", *THREAD_ARGS, wait=False,
                           prefix=tuple(in_ns(ns)))
            nodes.append(a)
            nodes.append(start_node(tmp / "b", [model], "--max-vram", f"{float(cap) * 0.99:.5f}", "--parallel", "1",
                                    *THREAD_ARGS,
                                    "--join", a.wait_token(), wait=False, prefix=tuple(in_ns(ns))))
            status = wait_split(a)
            layers = tuple(p.layers for p in status.models[0].split)
            mesh_port = status.models[0].port
            rpc_port, ref_port = free_port(), free_port()
            rpc = start_rpc_server(bin_dir, "127.0.0.1", rpc_port, tmp / "rpc.log", ns, threads=THREADS)
            ref = start_llama_server(bin_dir, model, ref_port, [*STOCK_ARGS, "--rpc", f"127.0.0.1:{rpc_port}",
                                                                *offload_args(layers, gpu=False)], tmp / "ref.log", ns)
            set_repeats(1)
            mesh_runs, stock_runs = [], []
            before = a.node_status().rpc_links[0]
            for _ in range(runs):
                mesh_runs.append(stream_stats(ns, mesh_port, tokens)["tokps"])
                stock_runs.append(stream_stats(ns, ref_port, tokens)["tokps"])
            link = a.node_status().rpc_links[0]
            streamed = runs * (tokens + 4)  # each stream_stats call streams 4 tokens first
    finally:
        stop(ref, rpc)
        for node in reversed(nodes):
            node.stop()
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
    ratios = [m / s for m, s in zip(mesh_runs, stock_runs)]
    return {
        "split_lan_tokps_ratio": round(statistics.median(ratios), 3),
        "split_lan_tokps_ratio_spread": median_spread(ratios),
        "split_lan_mesh_tokps": round(statistics.median(mesh_runs), 1),
        "split_lan_stock_rpc_tokps": round(statistics.median(stock_runs), 1),
        "split_lan_mesh_ms_per_token": round(1000 / statistics.median(mesh_runs), 2),
        "split_lan_stock_rpc_ms_per_token": round(1000 / statistics.median(stock_runs), 2),
        "split_lan_path": PATHS.get(link.path, "none"),
        "split_lan_worker_reads_per_token": round((link.reads_from_worker - before.reads_from_worker) / streamed, 2),
        "split_lan_bytes_per_token": {
            "to_worker": round((link.bytes_to_worker - before.bytes_to_worker) / streamed),
            "from_worker": round((link.bytes_from_worker - before.bytes_from_worker) / streamed)},
        "split_lan_runs": {"mesh": [round(x, 1) for x in mesh_runs], "stock": [round(x, 1) for x in stock_runs]},
        "layers": list(layers), "mtu": mtu, "runs": runs, "tokens": tokens, "model": MODEL.name,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=7)
    p.add_argument("--tokens", type=int, default=64)
    p.add_argument("--mtu", type=int, default=1500, help="the namespace's loopback MTU (65536: loopback's own)")
    p.add_argument("--quick", action="store_true", help="3 runs of 32 tokens")
    a = p.parse_args()
    runs, tokens = (3, 32) if a.quick else (a.runs, a.tokens)
    print(json.dumps(measure(runs, tokens, a.mtu), indent=2))


if __name__ == "__main__":
    main()
