"""`make bench`: run every benchmark, print a table, write bench/results/latest.json
(and a dated copy). Each benchmark runs in its own process and prints one JSON
object; `--quick` (make bench QUICK=1) asks each for its reduced run, same keys.

    .venv/bin/python bench/run.py [--quick] [--only NAME ...] [--out DIR] [--smoke]

`--smoke` (used by `make test`) runs only the gossip simulation on 30 nodes: it
checks the harness, it measures nothing.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHMARKS = ["proxy_local", "remote", "split", "gossip_sim", "directory", "proxy_concurrency"]
HEADLINE = [
    ("proxy_local_tokps_ratio", "proxy ÷ direct llama-server, decode tok/s"),
    ("proxy_local_ttft_added_ms_p50", "proxy added time to first token, ms (p50)"),
    ("remote_tokps_ratio", "remote via QUIC tunnel ÷ direct, decode tok/s"),
    ("remote_ttft_added_ms_p50", "remote added time to first token, ms (p50)"),
    ("split_tunnel_tokps_ratio", "2-node split via mesh ÷ stock RPC over TCP, tok/s"),
    ("split_round_trips_per_token", "split: worker reads per token (≥ round trips)"),
    ("split_load_bytes_fraction", "split: bytes sent to workers at load ÷ model bytes"),
    ("split_load_time_ratio", "split load time ÷ solo load time"),
    ("gossip_convergence_rounds_1000", "gossip rounds to spread a join / a death, 1,000 nodes"),
    ("gossip_bytes_per_node_per_s_1000", "gossip bytes per node per second, 1,000 nodes"),
    ("directory_get_per_s", "directory GET /v1/meshes per second (10,000 listings)"),
    ("directory_publish_per_s", "directory publishes per second"),
    ("proxy_concurrent_streams", "concurrent streams with proxy p99 added TTFT < 10 ms"),
    ("proxy_memory_mb_at_that_load", "proxy memory at that load, MB"),
]


def run_one(name: str, args: list[str]) -> dict:
    started = time.monotonic()
    out = subprocess.run([sys.executable, str(HERE / f"{name}.py"), *args], capture_output=True, text=True)
    if out.returncode != 0:
        return {f"{name}_error": out.stderr.strip().splitlines()[-1] if out.stderr.strip() else f"exit {out.returncode}"}
    result = json.loads(out.stdout)
    result[f"{name}_seconds"] = round(time.monotonic() - started, 1)
    return result


def show(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        return " / ".join(show(v) for v in value.values())
    return str(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", nargs="*", choices=BENCHMARKS)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    plan = [("gossip_sim", ["--nodes", "30"])] if args.smoke else [
        (name, ["--quick"] if args.quick else []) for name in (args.only or BENCHMARKS)]
    results: dict = {"machine": f"{platform.machine()}, {platform.system()}, {__import__('os').cpu_count()} cores",
                     "quick": args.quick, "date": datetime.datetime.now(datetime.timezone.utc).isoformat()}
    for name, extra in plan:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        results.update(run_one(name, extra))
    args.out.mkdir(parents=True, exist_ok=True)
    text = json.dumps(results, indent=2)
    (args.out / "latest.json").write_text(text)
    (args.out / f"{datetime.date.today().isoformat()}.json").write_text(text)
    width = max(len(label) for _, label in HEADLINE)
    for key, label in HEADLINE:
        if key in results:
            print(f"{label.ljust(width)}  {show(results[key])}")
    for key in sorted(k for k in results if k.endswith("_error")):
        print(f"{key}: {results[key]}")
    print(f"\nwrote {args.out / 'latest.json'}", file=sys.stderr)


if __name__ == "__main__":
    main()
