"""The remote hop alone: what serving a model from another node costs when the model
itself costs nothing. Real nodes on loopback (real node agents, proxies, QUIC), but X's
llama-server is the stand-in (bench/relay/standin_llama.py): an SSE stream of `--tokens`
chunks at `--rate` chunks/s (1,000 by default: a GPU's speed) with almost no CPU, so the
2 cores are the mesh's. Paths, alternated round by round:

- direct: straight to X's stand-in llama-server;
- local: through X's proxy (the solo path);
- remote: through node Y's proxy (Y proxy -> Y node agent's tunnel socket -> QUIC -> X node
  agent -> stand-in);
- client: through a client-only proxy Z (`--client`), which holds its QUIC streams itself
  (Z proxy -> QUIC -> X node agent -> stand-in): the remote path without the agent hop.

Each round sends every path `--streams` single streams one after another (bench/relay/load.py
--sequential), twice: back to back, and with `--gap` idle seconds before each stream (what a
user's request after a pause meets: every process on the path has gone to sleep).

Figures: `remote_hop_tokps_ratio` (remote ÷ direct chunks/s, medians),
`remote_hop_ttft_added_ms_p50` (remote − direct time to first chunk, back to back) and
`remote_hop_ttft_added_ms_after_idle`, and the same for local_hop and client_hop, each with its
spread over rounds.

    .venv/bin/python bench/remote_hop.py [--rounds 5] [--streams 10] [--tokens 100] [--rate 1000] [--gap 0.2] [--quick]
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
sys.path.insert(0, str(HERE))
from meshnode import start_node  # noqa: E402
from relay.standin_llama import bin_dir  # noqa: E402
from stream_timing import median_spread as spread  # noqa: E402

from mesh_node.tiny_model import TinySpec, generate  # noqa: E402

STANDIN_MODEL = TinySpec(name="mesh-hop-F16", width=64, layers=2, heads=4, ff=128)


def streams(port: int, model: str, args: argparse.Namespace, gap: float, count: int | None = None) -> dict:
    count = count or args.streams
    out = subprocess.run([sys.executable, "-m", "relay.load", "--port", str(port), "--streams", str(count),
                          "--sequential", "--ramp", str(gap * count), "--tokens", str(args.tokens),
                          "--rate", str(args.rate), "--model", model],
                         capture_output=True, text=True, cwd=HERE, check=True,
                         env={**os.environ, "PYTHONPATH": str(HERE)})
    result = json.loads(out.stdout)
    if result["errors"] or result["chunks"] != count * args.tokens:
        raise RuntimeError(f"port {port}: {result}")
    return result


PATHS = ("direct", "local", "remote", "client")


def measure(args: argparse.Namespace) -> dict:
    name = STANDIN_MODEL.name
    with tempfile.TemporaryDirectory(prefix="mesh-hop-") as tmp_text:
        tmp = Path(tmp_text)
        env = {"MESH_LLM_LLAMA_BIN_DIR": str(bin_dir(tmp))}
        model = generate(STANDIN_MODEL, tmp / "models")
        x = start_node(tmp / "x", [model], env=env)
        token = x.node_status().token
        y = start_node(tmp / "y", [], "--join", token, wait=False, env=env)
        z = start_node(tmp / "z", [], "--client", "--join", token, wait=False, env=env)
        try:
            y.wait_serving([name])
            z.wait_serving([name])
            ports = dict(zip(PATHS, (x.llama_port(name), x.api_port, y.api_port, z.api_port)))
            for port in ports.values():
                streams(port, name, args, 0.0, count=3)  # warm up: connections, first-request imports
            rows = [{(path, gap): streams(port, name, args, gap) for gap in (0.0, args.gap)
                     for path, port in ports.items()} for _ in range(args.rounds)]
        finally:
            for node in (z, y, x):
                node.stop()
    rate_of = {path: [r[path, 0.0]["chunks_per_s_p50"] for r in rows] for path in PATHS}
    out = {"rounds": args.rounds, "streams": args.streams, "tokens": args.tokens, "rate": args.rate,
           "gap_s": args.gap, "direct_chunks_per_s": spread(rate_of["direct"]),
           "direct_ttft_ms": spread([r["direct", 0.0]["ttft_ms_p50"] for r in rows]),
           "direct_ttft_ms_after_idle": spread([r["direct", args.gap]["ttft_ms_p50"] for r in rows])}
    for path in PATHS[1:]:
        ratios = [a / b for a, b in zip(rate_of[path], rate_of["direct"])]
        out[f"{path}_hop_tokps_ratio"] = statistics.median(ratios)
        out[f"{path}_hop_tokps_ratio_spread"] = spread(ratios)
        for gap, suffix in ((0.0, "p50"), (args.gap, "after_idle")):
            added = [r[path, gap]["ttft_ms_p50"] - r["direct", gap]["ttft_ms_p50"] for r in rows]
            out[f"{path}_hop_ttft_added_ms_{suffix}"] = statistics.median(added)
            out[f"{path}_hop_ttft_added_ms_{suffix}_spread"] = spread(added)
        out[f"{path}_hop_chunk_delay_added_ms_p50"] = statistics.median(
            r[path, 0.0]["delay_ms_p50"] - r["direct", 0.0]["delay_ms_p50"] for r in rows)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--streams", type=int, default=10, help="streams per path per round and mode")
    p.add_argument("--tokens", type=int, default=100)
    p.add_argument("--rate", type=float, default=1000.0)
    p.add_argument("--gap", type=float, default=0.2, help="idle seconds before each stream in the idle mode")
    p.add_argument("--quick", action="store_true", help="2 rounds of 5 streams")
    a = p.parse_args()
    if a.quick:
        a.rounds, a.streams = 2, 5
    print(json.dumps(measure(a), indent=2))


if __name__ == "__main__":
    main()
