"""`make gpu-check`: the project's own check on a machine with an NVIDIA GPU.

1. builds llama.cpp with CUDA through the project's build script (llama.cpp/build.py
   picks CUDA when `nvcc` is found; cached like every build);
2. generates a ~1 GB model (Qwen2.5-3B shapes, F16, 6 layers);
3. serves it solo with full offload through a real mesh-llm node, and measures decode
   tokens/s straight to llama-server vs through the proxy (:9337 path);
4. splits it across two nodes on the same GPU (--max-vram), asserts the split's greedy
   tokens equal solo's, and measures decode tokens/s of the mesh split vs a stock
   llama.cpp RPC split (rpc-server + llama-server --rpc over plain TCP, same layers).

Prints one JSON object (also written to bench/results/gpu-check.json); exits 1 if the
split's tokens differ from solo's, 2 if there is no GPU toolchain.

    scripts/gpu-check.sh [--runs 5] [--tokens 64] [--cpu-dry-run]

--cpu-dry-run runs the same steps with the CPU build and a small model (to check the
script itself on a machine without a GPU).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "integration"))
sys.path.insert(0, str(ROOT / "bench"))
from meshnode import free_port, greedy, start_node  # noqa: E402
from children import start_rpc_server  # noqa: E402
from split import mesh_load, timed_llama  # noqa: E402
from stream_timing import alternate, compare, median_spread, stream_completion  # noqa: E402

from mesh_node.model_runner import offload_args  # noqa: E402
from mesh_node.tiny_model import TinySpec, generate  # noqa: E402

GPU_MODEL = TinySpec(name="gpu-check-F16", arch="qwen2", width=2048, heads=16, kv_heads=2, ff=11008, layers=6)
DRY_MODEL = TinySpec(name="gpu-check-dry-F16", arch="qwen2", width=1024, heads=16, kv_heads=2, ff=2816, layers=4)


def say(msg: str) -> None:
    print(f"[gpu-check] {msg}", file=sys.stderr, flush=True)


def build(dry_run: bool) -> Path:
    if not dry_run:
        sys.path.insert(0, str(ROOT / "llama.cpp"))
        from build import find_nvcc  # the build script's own lookup (PATH, /usr/local/cuda/bin)
        nvcc = find_nvcc()
        if not nvcc:
            say("no nvcc found (PATH or /usr/local/cuda/bin): this check needs the CUDA toolkit")
            sys.exit(2)
        say(f"building llama.cpp with CUDA ({nvcc}); about 4 minutes on 16 cores, once")
    started = time.monotonic()
    out = subprocess.run([sys.executable, str(ROOT / "llama.cpp" / "build.py")], check=True, stdout=subprocess.PIPE,
                         text=True)
    say(f"llama.cpp ready in {time.monotonic() - started:.0f} s")
    return Path(out.stdout.strip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--cpu-dry-run", action="store_true", help="CPU build, small model: checks the script")
    args = parser.parse_args()
    bin_dir = build(args.cpu_dry_run)
    os.environ["MESH_LLM_LLAMA_BIN_DIR"] = str(bin_dir)
    spec = DRY_MODEL if args.cpu_dry_run else GPU_MODEL
    result: dict = {"bin_dir": str(bin_dir), "runs": args.runs, "tokens": args.tokens}
    devices = subprocess.run([str(bin_dir / "llama-server"), "--list-devices"], capture_output=True, text=True)
    result["devices"] = [line.strip() for line in devices.stdout.splitlines()[1:]]
    say("devices: " + "; ".join(result["devices"]))
    with tempfile.TemporaryDirectory(prefix="mesh-gpu-check-") as tmp_text:
        tmp = Path(tmp_text)
        t0 = time.monotonic()
        model = generate(spec, tmp / "models")
        size = model.stat().st_size
        result["model"] = {"name": spec.name, "bytes": size, "generated_s": round(time.monotonic() - t0, 1)}
        say(f"generated {model.name} ({size / 1e9:.2f} GB)")

        node = start_node(tmp / "solo", [model], "--parallel", "1")
        try:
            status = node.node_status()
            result["solo_vram_gb"] = round(status.my_vram_gb, 2)
            solo_tokens = greedy(node.api, spec.name)
            direct = f"http://127.0.0.1:{node.llama_port(spec.name)}"
            with httpx.Client(timeout=300) as client:
                ref, mesh = alternate(client, direct, node.api, spec.name, args.runs, args.tokens)
            result["solo"] = {**compare("proxy", ref, mesh),
                              "direct_tokps": statistics.median(r.tokens_per_s for r in ref),
                              "proxy_tokps": statistics.median(m.tokens_per_s for m in mesh)}
        finally:
            node.stop()
        say(f"solo: direct {result['solo']['direct_tokps']:.1f} tok/s, proxy {result['solo']['proxy_tokps']:.1f} tok/s")

        cap = f"{1.1 * size * 0.6 / (1 << 30):.3f}"  # each node offers 0.6 of what the model needs
        a = start_node(tmp / "a", [model], "--max-vram", cap, "--parallel", "1", wait=False)
        b = start_node(tmp / "b", [model], "--max-vram", cap, "--parallel", "1", "--join", a.wait_token(), wait=False)
        rpc = ref_proc = None
        try:
            host, load_s = mesh_load([a, b], spec.name)
            hstatus = host.node_status()
            layers = tuple(p.layers for p in hstatus.models[0].split)
            mesh_port = hstatus.models[0].port
            split_tokens = greedy(host.api, spec.name)
            result["split"] = {"layers": list(layers), "load_s": round(load_s, 1),
                               "link_path": {1: "direct TCP+TLS", 2: "QUIC stream"}.get(hstatus.rpc_links[0].path,
                                                                                       "none"),
                               "load_bytes_to_worker": hstatus.rpc_links[0].bytes_to_worker,
                               "tokens_equal_solo": split_tokens == solo_tokens}
            rpc_port = free_port()
            rpc = start_rpc_server(bin_dir, "127.0.0.1", rpc_port, tmp / "rpc.log", threads=None)
            offload = offload_args(layers, gpu=not args.cpu_dry_run)
            ref_proc, ref_port, _ = timed_llama(bin_dir, model, ["--rpc", f"127.0.0.1:{rpc_port}", *offload],
                                                tmp / "stock.log")
            mesh_runs, stock_runs = [], []
            with httpx.Client(timeout=300) as client:
                for url in (f"http://127.0.0.1:{mesh_port}", f"http://127.0.0.1:{ref_port}"):
                    stream_completion(client, url, spec.name, "warm up", 4)
                for i in range(args.runs):
                    prompt = f"run {i}: the split mesh"
                    mesh_runs.append(stream_completion(client, f"http://127.0.0.1:{mesh_port}", spec.name, prompt,
                                                       args.tokens))
                    stock_runs.append(stream_completion(client, f"http://127.0.0.1:{ref_port}", spec.name, prompt,
                                                        args.tokens))
            ratios = [m.tokens_per_s / s.tokens_per_s for m, s in zip(mesh_runs, stock_runs)]
            result["split"].update({"mesh_split_tokps": statistics.median(m.tokens_per_s for m in mesh_runs),
                                    "stock_rpc_split_tokps": statistics.median(s.tokens_per_s for s in stock_runs),
                                    "mesh_vs_stock_ratio": median_spread(ratios)})
        finally:
            for proc in (ref_proc, rpc):
                if proc is not None:
                    proc.terminate()
                    proc.wait()
            b.stop()
            a.stop()
    out = ROOT / "bench" / "results" / ("gpu-check-dry.json" if args.cpu_dry_run else "gpu-check.json")
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    s = result["split"]
    say(f"decode tok/s: direct {result['solo']['direct_tokps']:.1f}, proxy {result['solo']['proxy_tokps']:.1f}, "
        f"mesh split {s['mesh_split_tokps']:.1f}, stock RPC split {s['stock_rpc_split_tokps']:.1f}; "
        f"split tokens equal solo: {s['tokens_equal_solo']}")
    sys.exit(0 if s["tokens_equal_solo"] else 1)


if __name__ == "__main__":
    main()
