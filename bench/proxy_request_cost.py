"""What one request costs the proxy and nginx, alone: the synthetic upstream and stand-in
node agent of bench/proxy_relay.py, then `--requests` streams of `--tokens` chunks one
after another (each on a new client connection, as the load generator always does), and
each side's CPU (user and system, its children included) divided by the requests. With
one chunk per request this is the per-request path with almost nothing of the per-chunk
one: accepting, parsing, routing, connecting to the backend, the head, the end.

    .venv/bin/python bench/proxy_request_cost.py [--requests 2000] [--tokens 1] [--rounds 3] [--quick]

(in `make bench`; `--quick`: 500 requests, one round)

Prints one JSON line per round and side; the last line is the medians
(`proxy_request_cpu_us`, `nginx_request_cpu_us`, each also user and system).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

import psutil

from proxy_relay import HERE, cpu_s, load, nginx_binary, pythonpath, relay_stack


def sequential(port: int, requests: int, tokens: int) -> dict:
    out = subprocess.run([sys.executable, "-m", "relay.load", "--port", str(port), "--streams", str(requests),
                          "--tokens", str(tokens), "--rate", "1000", "--ramp", "0", "--sequential"],
                         capture_output=True, text=True, cwd=HERE, env={**os.environ, "PYTHONPATH": pythonpath()},
                         check=True)
    return json.loads(out.stdout)


def measure(requests: int, tokens: int, rounds: int) -> dict:
    if nginx_binary() is None:
        raise SystemExit("bench/proxy_request_cost.py compares against nginx: run scripts/bench-deps.sh")
    with relay_stack("mesh-request-cost-") as stack:
        assert stack.nginx is not None
        sides = {"proxy": (stack.proxy_port, psutil.Process(stack.proxy.pid)),
                 "nginx": (stack.nginx_port, psutil.Process(stack.nginx.pid))}
        for port, _ in sides.values():
            load(port, 50, 2, 100.0, None)  # warm up further: the timed runs are short
        got: dict[str, list[dict]] = {name: [] for name in sides}
        for _ in range(rounds):
            for name, (port, proc) in sides.items():
                before = cpu_s(proc)
                result = sequential(port, requests, tokens)
                user, system = (b - a for a, b in zip(before, cpu_s(proc)))
                row = {"side": name, "user_us": user * 1e6 / requests, "system_us": system * 1e6 / requests,
                       "ttft_ms_p50": result["ttft_ms_p50"], "errors": result["errors"]}
                got[name].append(row)
                print(json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in row.items()}),
                      file=sys.stderr)
    out: dict = {"requests": requests, "tokens": tokens, "rounds": rounds}
    for name, rows in got.items():
        out[f"{name}_request_cpu_us"] = statistics.median(r["user_us"] + r["system_us"] for r in rows)
        out[f"{name}_request_user_us"] = statistics.median(r["user_us"] for r in rows)
        out[f"{name}_request_system_us"] = statistics.median(r["system_us"] for r in rows)
        out[f"{name}_request_errors"] = sum(r["errors"] for r in rows)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--requests", type=int, default=2000)
    p.add_argument("--tokens", type=int, default=1)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="500 requests, one round")
    args = p.parse_args()
    if args.quick:
        args.requests, args.rounds = 500, 1
    print(json.dumps({k: round(v, 1) if isinstance(v, float) else v
                      for k, v in measure(args.requests, args.tokens, args.rounds).items()}))


if __name__ == "__main__":
    main()
