"""`make bench`: run every benchmark, print a table, write bench/results/latest.json
(and a dated copy). Each benchmark runs in its own process and prints one JSON
object; `--quick` (make bench QUICK=1) asks each for its reduced run, same keys.

    .venv/bin/python bench/run.py [--quick] [--only NAME ...] [--out DIR] [--smoke]

`--smoke` (used by `make test`) runs only the gossip simulation on 30 nodes: it
checks the harness, it measures nothing.

Medians and spreads: the streaming benchmarks alternate several runs inside one
process and report the median with its spread themselves; the others (REPEATS) are
run several times here, and every number they report becomes the median over those
runs, with `<key>_spread` {median, min, max}. latest.json has the headline keys at the
top level and each benchmark's full output under "details".
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHMARKS = ["proxy_local", "proxy_messages", "remote", "split", "split_lan", "zero_transfer", "gossip_sim",
              "directory", "proxy_concurrency", "proxy_relay", "proxy_request_cost", "wan", "quic_roundtrip",
              "rpc_roundtrip", "remote_hop", "decide", "attack_latency"]
# Whole-process repeats (full, quick) for benchmarks that do not repeat inside, and the
# per-run arguments (the simulation's seed; the directory starts afresh each time).
REPEATS = {"gossip_sim": (3, 2), "directory": (3, 2)}
PER_RUN = {"gossip_sim": lambda i: ["--seed", str(7 + i)]}
HEADLINE = [
    ("proxy_local_tokps_ratio", "proxy ÷ direct llama-server, decode tok/s"),
    ("proxy_local_ttft_added_ms_p50", "proxy added time to first token, ms (p50)"),
    ("proxy_messages_ttft_added_ms_p50", "proxy added TTFT, Anthropic /v1/messages stream, ms (p50)"),
    ("remote_tokps_ratio", "remote via QUIC tunnel ÷ direct, decode tok/s"),
    ("remote_ttft_added_ms_p50", "remote added time to first token, ms (p50)"),
    ("remote_hop_tokps_ratio", "remote hop alone (stand-in llama-server, 1,000 tok/s) ÷ direct, tok/s"),
    ("remote_hop_ttft_added_ms_p50", "remote hop alone: added time to first token, ms (back to back)"),
    ("remote_hop_ttft_added_ms_after_idle", "remote hop alone: added TTFT after 0.2 s idle, ms"),
    ("client_hop_ttft_added_ms_p50", "the same through a client-only proxy (it holds the QUIC stream), ms"),
    ("local_hop_ttft_added_ms_p50", "local proxy alone: added time to first token, ms"),
    ("hard_kill_route_gone_s", "hard-killed node: its routes gone after, s"),
    ("split_lan_tokps_ratio", "2-node split, MTU 1500, ~3.5 ms a token: mesh ÷ stock RPC, tok/s"),
    ("split_lan_path", "the path the LAN split's link took (direct: TCP+TLS; quic: the fallback)"),
    ("split_tunnel_tokps_ratio", "2-node split via mesh ÷ stock RPC over TCP, tok/s"),
    ("split_worker_reads_per_token", "split: socket reads of worker replies per token (not round trips)"),
    ("split_turns_per_token", "split: request/response turns per token (stock RPC, counted on the link)"),
    ("split_wan_tokps", "2-node split via mesh over emulated RTT (ms → tok/s)"),
    ("stock_rpc_wan_tokps", "the same, stock llama.cpp RPC over TCP"),
    ("ideal_wan_tokps", "the ideal: solo compute + turns × RTT"),
    ("three_node_wan", "3-node split, 10 ms per hop (the seed's anchor): mesh / stock / ideal tok/s"),
    ("rpc_roundtrip_ms", "one RPC round trip, ms: TCP direct / the split's data path / a QUIC stream"),
    ("quic_rpc_roundtrip_ms", "one RPC-sized round trip through a mesh QUIC stream, ms (up/down bytes → ms)"),
    ("quic_rpc_roundtrip_ethernet_ms", "the same in Ethernet-sized (1,472-byte) datagrams, ms"),
    ("split_load_bytes_fraction", "split: bytes sent to workers at load ÷ model bytes"),
    ("split_load_time_ratio", "split load time ÷ solo load time"),
    ("zero_transfer_load_bytes_fraction", "real-shaped Q8_0/Q4_K_M split: bytes to workers at load ÷ model"),
    ("zero_transfer_stock_rpc_load_bytes_fraction", "the same with stock llama.cpp RPC"),
    ("zero_transfer_hash_s_per_gb", "worker's index: hashing seconds per GB (once per file)"),
    ("gossip_convergence_rounds_1000", "gossip rounds to spread a join / a death, 1,000 nodes"),
    ("gossip_bytes_per_node_per_s_1000", "gossip bytes per node per second, 1,000 nodes"),
    ("directory_get_per_s", "directory GET /v1/meshes per second (10,000 listings)"),
    ("directory_publish_per_s", "directory publishes per second"),
    ("directory_get_latency", "directory GET latency, ms (p50 / p99)"),
    ("directory_pg_get_per_s", "directory on PostgreSQL, one replica: GET /v1/meshes per second"),
    ("directory_pg2_get_per_s", "directory on PostgreSQL, two replicas: GET /v1/meshes per second"),
    ("directory_pg_publish_per_s", "directory on PostgreSQL, one replica: publishes per second"),
    ("directory_pg2_publish_per_s", "directory on PostgreSQL, two replicas: publishes per second"),
    ("proxy_concurrent_streams", "concurrent streams with proxy p99 added TTFT < 10 ms"),
    ("proxy_relay_max_streams", "synthetic upstream: streams at 20 tok/s with p99 added delay ≤ 5 ms, TTFT ≤ 10 ms"),
    ("proxy_relay_cpu_us_per_chunk", "proxy CPU per relayed chunk, µs"),
    ("nginx_relay_cpu_us_per_chunk", "nginx CPU per relayed chunk, µs (the ceiling)"),
    ("proxy_relay_cpu_us_per_extra_chunk", "proxy CPU per extra chunk of a held stream, µs"),
    ("nginx_relay_cpu_us_per_extra_chunk", "nginx CPU per extra chunk of a held stream, µs"),
    ("proxy_relay_cpu_us_per_request", "proxy CPU per request (accept, route, connect, head, end), µs"),
    ("nginx_relay_cpu_us_per_request", "nginx CPU per request, µs"),
    ("proxy_request_cpu_us", "proxy CPU per one-chunk request, requests one at a time, µs"),
    ("nginx_request_cpu_us", "nginx CPU per one-chunk request, requests one at a time, µs"),
    ("proxy_memory_mb_at_that_load", "proxy memory at that load, MB"),
    ("decide_pass_ms", "one decide() pass, ms: 2,048 served names / the membership table at its caps"),
    ("attack_honest_p50_ms", "honest API request p50, ms: without / during a hostile member's attack"),
]


def run_one(name: str, args: list[str]) -> dict:
    started = time.monotonic()
    out = subprocess.run([sys.executable, str(HERE / f"{name}.py"), *args], capture_output=True, text=True)
    if out.returncode != 0:
        return {f"{name}_error": out.stderr.strip().splitlines()[-1] if out.stderr.strip() else f"exit {out.returncode}"}
    result = json.loads(out.stdout)
    result[f"{name}_seconds"] = round(time.monotonic() - started, 1)
    return result


def is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def spread(values: list) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def merge_runs(runs: list[dict]) -> dict:
    """One result from several runs of a benchmark: numbers (and maps of numbers)
    become their median over the runs, with a `_spread` key beside them."""
    merged = dict(runs[0])
    for key, first in runs[0].items():
        values = [run.get(key) for run in runs]
        if key.endswith("_seconds") or key.endswith("_spread"):
            continue
        if all(is_number(v) for v in values):
            merged[key], merged[f"{key}_spread"] = statistics.median(values), spread(values)
        elif isinstance(first, dict) and all(isinstance(v, dict) and v.keys() == first.keys() and
                                             all(is_number(x) for x in v.values()) for v in values):
            merged[key] = {k: statistics.median(v[k] for v in values) for k in first}
            merged[f"{key}_spread"] = {k: spread([v[k] for v in values]) for k in first}
    merged["runs_merged"] = len(runs)
    return merged


def run_benchmark(name: str, args: list[str], repeats: int) -> dict:
    runs = []
    for i in range(repeats):
        result = run_one(name, args + PER_RUN.get(name, lambda _: [])(i))
        if f"{name}_error" in result:
            return result
        runs.append(result)
    return merge_runs(runs) if repeats > 1 else runs[0]


def headline(name: str, key: str) -> bool:
    """Keys for the top level of latest.json: the figures, their spreads, this
    benchmark's run time and error. (gossip_* keys carry the node count in their name.)"""
    figures = {h for h, _ in HEADLINE}
    spread_of_own = key.endswith("_spread") and key.startswith(name.split("_")[0] + "_")
    return key in figures or spread_of_own or key.startswith("gossip_") or key in (f"{name}_seconds", f"{name}_error")


def show(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict) and value and all(isinstance(v, dict) for v in value.values()):
        return "; ".join(f"{k}: {show(v)}" for k, v in value.items())  # e.g. per message size
    if isinstance(value, dict):  # its numbers (a nested spread or list stays in latest.json)
        return " / ".join(show(v) for v in value.values() if not isinstance(v, (dict, list)))
    return str(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", nargs="*", choices=BENCHMARKS)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    plan = [("gossip_sim", ["--nodes", "30"], 1)] if args.smoke else [
        (name, ["--quick"] if args.quick else [], REPEATS.get(name, (1, 1))[1 if args.quick else 0])
        for name in (args.only or BENCHMARKS)]
    results: dict = {"machine": f"{platform.machine()}, {platform.system()}, {__import__('os').cpu_count()} cores",
                     "quick": args.quick, "date": datetime.datetime.now(datetime.timezone.utc).isoformat()}
    details: dict = {}
    for name, extra, repeats in plan:
        print(f"running {name}" + (f" ({repeats} times)" if repeats > 1 else "") + " ...", file=sys.stderr, flush=True)
        details[name] = run_benchmark(name, extra, repeats)
        results.update({k: v for k, v in details[name].items() if headline(name, k)})
    results["details"] = details
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
