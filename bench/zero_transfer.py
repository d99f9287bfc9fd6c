"""Zero-transfer weights on real-shaped quantized models: bytes sent to a split's worker at
load and load time, through the mesh (workers read their own GGUF: llama.cpp patch 0002)
vs stock llama.cpp RPC over TCP, each ÷ solo; the worker's index on disk; hashing speed.

Models (generated, llama-quantize): Qwen2.5-3B's shapes in Q8_0 (width 2048, FFN 11008,
16 heads, 2 KV heads) and Qwen2.5-7B's in Q4_K_M (width 3584, FFN 18944, 28 heads, 4 KV
heads), 2 layers each: their attention tensors are under stock ggml-rpc's 10 MiB hash
threshold, as in the real files. For each: solo llama-server; a 2-node mesh split
(both capped so neither holds it alone); stock `ggml-rpc-server` (no cache) + llama-server
--rpc with the same layer split. Bytes to the stock worker: what its rpc-server's connection received
(`ss -ti` bytes_received), measured once the model is loaded.

    .venv/bin/python bench/zero_transfer.py [--runs 1] [--quick]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))
from meshnode import free_port, start_node  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from children import start_rpc_server  # noqa: E402
from split import mesh_load, stop_processes, timed_llama  # noqa: E402

from meshcore.llama_bin import llama_bin_dir  # noqa: E402
from mesh_node import weights_cache  # noqa: E402
from mesh_node.model_runner import offload_args  # noqa: E402
from mesh_node.tiny_model import TinySpec, generate  # noqa: E402

MODELS = (
    TinySpec(name="mesh-q3b-bench-Q8_0", arch="qwen2", width=2048, heads=16, kv_heads=2, ff=11008, layers=2,
             dtype="q8_0"),
    TinySpec(name="mesh-q7b-bench-Q4_K_M", arch="qwen2", width=3584, heads=28, kv_heads=4, ff=18944, layers=2,
             dtype="q4_k_m"),
)


def received_by(port: int) -> int:
    """Bytes the listener on 127.0.0.1:`port` has received on its open connections (ss -ti)."""
    out = subprocess.run(["ss", "-tinH", "state", "established", f"( sport = :{port} )"], capture_output=True,
                         text=True, check=True).stdout
    return sum(int(m) for m in re.findall(r"bytes_received:(\d+)", out))


def one_model(spec: TinySpec, tmp: Path, bin_dir: Path) -> dict:
    model = generate(spec, tmp / "models")
    size = model.stat().st_size
    # Hashing speed (the index a worker builds once per file), cold index each time.
    stats = weights_cache.prepare(model, tmp / f"{spec.name}-index", bin_dir / weights_cache.HASHER)
    index_bytes = weights_cache.disk_used(tmp / f"{spec.name}-index")
    below = sum(1 for _, _, n in weights_cache.tensors_of(model) if n <= weights_cache.HASH_THRESHOLD)

    solo, _, solo_load = timed_llama(bin_dir, model, [], tmp / f"{spec.name}-solo.log")
    solo.terminate()
    solo.wait()

    cap = f"{1.1 * size * 0.6 / (1 << 30):.5f}"
    a = start_node(tmp / f"{spec.name}-a", [model], "--max-vram", cap, "--parallel", "1", wait=False)
    b = start_node(tmp / f"{spec.name}-b", [model], "--max-vram", f"{float(cap) * 0.99:.5f}", "--parallel", "1",
                   "--join", a.wait_token(), wait=False)
    rpc = ref = None
    try:
        host, mesh_load_s = mesh_load([a, b], model.stem)
        status = host.node_status()
        mesh_bytes = status.rpc_links[0].bytes_to_worker
        layers = [p.layers for p in status.models[0].split]
        worker = b if host is a else a
        worker_disk = weights_cache.disk_used(worker.home / "rpc-cache")
        rpc_port = free_port()
        rpc = start_rpc_server(bin_dir, "127.0.0.1", rpc_port, tmp / f"{spec.name}-rpc.log")
        ref, _, ref_load = timed_llama(bin_dir, model, ["--rpc", f"127.0.0.1:{rpc_port}",
                                                        *offload_args(tuple(layers), gpu=False)],
                                       tmp / f"{spec.name}-ref.log")
        stock_bytes = received_by(rpc_port)
    finally:
        stop_processes(ref, rpc)
        b.stop()
        a.stop()
    return {"model_bytes": size, "tensors": stats.tensors, "tensors_under_10MiB": below,
            "mesh_load_bytes_fraction": mesh_bytes / size, "stock_rpc_load_bytes_fraction": stock_bytes / size,
            "mesh_load_bytes": mesh_bytes, "stock_rpc_load_bytes": stock_bytes,
            "mesh_load_time_ratio": mesh_load_s / solo_load, "stock_rpc_load_time_ratio": ref_load / solo_load,
            "load_seconds": {"solo": solo_load, "mesh_split": mesh_load_s, "stock_rpc_split": ref_load},
            "index_bytes": index_bytes, "index_fraction": index_bytes / size, "worker_disk_bytes": worker_disk,
            "hash_s_per_gb": stats.seconds / (stats.bytes_hashed / 1e9), "layers": layers}


def measure(runs: int, quick: bool = False) -> dict:
    bin_dir = llama_bin_dir()
    if not weights_cache.reads_local_gguf(bin_dir):
        raise SystemExit(f"the llama.cpp in {bin_dir} is not patched (llama.cpp/patches/0002): run make setup")
    out: dict = {}
    with tempfile.TemporaryDirectory(prefix="mesh-bench-") as tmp:
        for spec in MODELS[:1] if quick else MODELS:
            results = [one_model(spec, Path(tmp) / f"{spec.name}-{i}", bin_dir) for i in range(runs)]
            out[spec.name] = {k: (statistics.median(r[k] for r in results) if isinstance(results[0][k], float)
                                  else results[0][k]) for k in results[0]}
    hash_rate = statistics.median(m["hash_s_per_gb"] for m in out.values())
    out["zero_transfer_load_bytes_fraction"] = max(m["mesh_load_bytes_fraction"] for m in out.values()
                                                   if isinstance(m, dict))
    out["zero_transfer_stock_rpc_load_bytes_fraction"] = min(m["stock_rpc_load_bytes_fraction"]
                                                             for m in out.values() if isinstance(m, dict))
    out["zero_transfer_hash_s_per_gb"] = hash_rate
    out["zero_transfer_hash_s_for_40gb"] = hash_rate * 40
    out["runs"] = runs
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="the Q8_0 model only")
    args = parser.parse_args()
    print(json.dumps(measure(args.runs, args.quick), indent=2))


if __name__ == "__main__":
    main()
