"""CPU decode speed of two llama.cpp builds, same run: a `-march=native` build (the
old default) vs the runtime-variant build (GGML_BACKEND_DL + GGML_CPU_ALL_VARIANTS,
llama.cpp/build.py now), on an F16 and a Q8_0 model with Qwen2.5-3B shapes.

Both llama-servers are loaded side by side; streaming requests alternate between
them (one decodes at a time), so both see the same machine state.

    .venv/bin/python bench/cpu_variants.py --before BIN_DIR [--after BIN_DIR] [--runs 5] [--tokens 32]

A native build for --before: MESH_LLM_LLAMA_CMAKE_ARGS is not enough (the variant
flags are set by build.py); build one by hand with cmake -DGGML_NATIVE=ON, or keep an
older cache folder. Prints after/before decode tokens/s ratios per model.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from split import timed_llama  # noqa: E402
from stream_timing import median_spread, stream_completion  # noqa: E402

from meshcore.llama_bin import llama_bin_dir  # noqa: E402
from mesh_node.tiny_model import TinySpec, generate  # noqa: E402

SHAPES = dict(arch="qwen2", width=2048, heads=16, kv_heads=2, ff=11008, layers=4)
MODELS = [TinySpec(name="cpu-bench-F16", dtype="f16", **SHAPES), TinySpec(name="cpu-bench-Q8_0", dtype="q8_0", **SHAPES)]


def cpu_backend(bin_dir: Path) -> str:
    """The CPU backend ggml picks on this machine from `bin_dir` (ggml-rpc-server logs
    what ggml_backend_load_all loads; a static build has it built in)."""
    out = subprocess.run([str(bin_dir / "ggml-rpc-server"), "--help"], capture_output=True, text=True)
    for line in (out.stdout + out.stderr).splitlines():
        if "loaded CPU backend from" in line:
            return Path(line.split("loaded CPU backend from")[-1].strip()).name
    return "built in (static)"


def measure(before: Path, after: Path, runs: int, tokens: int) -> dict:
    out: dict = {"before": str(before), "after": str(after), "runs": runs, "tokens": tokens,
                 "cpu_backend": {"before": cpu_backend(before), "after": cpu_backend(after)}}
    with tempfile.TemporaryDirectory(prefix="mesh-bench-") as tmp_text:
        tmp = Path(tmp_text)
        for spec in MODELS:
            model = generate(spec, tmp / "models")
            procs = []
            try:
                old, old_port, _ = timed_llama(before, model, ["-t", "2"], tmp / f"{spec.name}-before.log")
                procs.append(old)
                new, new_port, _ = timed_llama(after, model, ["-t", "2"], tmp / f"{spec.name}-after.log")
                procs.append(new)
                timings: dict[str, list] = {"before": [], "after": []}
                with httpx.Client(timeout=300) as client:
                    for port in (old_port, new_port):
                        stream_completion(client, f"http://127.0.0.1:{port}", spec.name, "warm up", 4)
                    for i in range(runs):
                        prompt = f"run {i}: decode speed"
                        timings["before"].append(stream_completion(client, f"http://127.0.0.1:{old_port}",
                                                                   spec.name, prompt, tokens))
                        timings["after"].append(stream_completion(client, f"http://127.0.0.1:{new_port}",
                                                                  spec.name, prompt, tokens))
            finally:
                for proc in procs:
                    proc.terminate()
                    proc.wait()
            ratios = [a.tokens_per_s / b.tokens_per_s for a, b in zip(timings["after"], timings["before"])]
            key = spec.dtype
            out[f"cpu_variants_{key}_tokps_ratio"] = statistics.median(ratios)
            out[f"cpu_variants_{key}_tokps_ratio_spread"] = median_spread(ratios)
            out[f"{key}_tokps"] = {k: statistics.median(t.tokens_per_s for t in v) for k, v in timings.items()}
            out[f"{key}_model_bytes"] = model.stat().st_size
            model.unlink()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, required=True, help="bin folder of the -march=native build")
    parser.add_argument("--after", type=Path, help="bin folder of the runtime-variant build (default: the current)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=32)
    args = parser.parse_args()
    print(json.dumps(measure(args.before, args.after or llama_bin_dir(), args.runs, args.tokens), indent=2))


if __name__ == "__main__":
    main()
