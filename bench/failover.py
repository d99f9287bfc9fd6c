"""Failover through a standby: a model's only server is killed hard (SIGKILL of the
whole node) under a steady client load; a standby with the file serves it again.

Each run starts a fresh three-node mesh: x serves the model, y is a standby with the
file on its disk (no --model), z carries the client load (one request at a time,
`--every` s apart, 2 tokens each, through z's API). Measured per run: kill -> death
noticed (z's view of x turns dead), noticed -> first answer again, and the share of
requests that failed between the kill and that answer; medians over the runs.

    .venv/bin/python bench/failover.py [--runs 5] [--quick]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))
from meshnode import start_node  # noqa: E402
from meshnode import wait_until  # noqa: E402
from test_rebalancing import Load, disk_with, model_state  # noqa: E402

from mesh_node.tiny_model import TinySpec, generate  # noqa: E402

MODEL = TinySpec(name="mesh-failover-F16", width=512, layers=8, heads=8, ff=1408)


def one_run(tmp: Path, model: Path, every: float) -> dict:
    x = start_node(tmp / "x", [model])
    y = start_node(tmp / "y", [], "--join", x.node_status().token, env=disk_with(tmp / "y", model))
    z = start_node(tmp / "z", [], "--join", x.node_status().token)
    load = Load(z.api, MODEL.name, every)
    try:
        wait_until(lambda: any(MODEL.name in p.spare for p in z.node_status().peers), 30)
        load.start()
        wait_until(lambda: len(load.results) >= 10 and all(s == 200 for _, s in load.results[-5:]), 30)
        x.kill_hard()
        killed = time.monotonic()
        wait_until(lambda: any(p.state == "dead" for p in z.node_status().peers), 60, step=0.05)
        noticed = time.monotonic()
        wait_until(lambda: model_state(y, MODEL.name) == "serving", 60, step=0.05)
        wait_until(lambda: any(t > noticed and s == 200 for t, s in load.results), 30, step=0.05)
        back = next(t for t, s in load.results if t > noticed and s == 200)
        window = [s for t, s in load.results if killed <= t <= back]
        return {"noticed_s": noticed - killed, "served_again_s": back - noticed, "kill_to_served_s": back - killed,
                "requests_in_window": len(window), "failed_in_window": sum(s != 200 for s in window),
                "statuses_in_window": {str(c): window.count(c) for c in sorted(set(window))}}
    finally:
        load.halt.set()
        for node in (z, y, x):
            node.stop()


def measure(runs: int, every: float) -> dict:
    results = []
    with tempfile.TemporaryDirectory(prefix="mesh-bench-") as tmp:
        model = generate(MODEL, Path(tmp) / "models")
        for i in range(runs):
            results.append(one_run(Path(tmp) / f"run{i}", model, every))
            print(json.dumps(results[-1]), file=sys.stderr)
    med = {k: statistics.median(r[k] for r in results) for k in ("noticed_s", "served_again_s", "kill_to_served_s")}
    failed, total = sum(r["failed_in_window"] for r in results), sum(r["requests_in_window"] for r in results)
    return {"median_kill_to_noticed_s": round(med["noticed_s"], 2),
            "median_noticed_to_served_s": round(med["served_again_s"], 2),
            "median_kill_to_served_s": round(med["kill_to_served_s"], 2),
            "max_kill_to_served_s": round(max(r["kill_to_served_s"] for r in results), 2),
            "error_rate_in_window": round(failed / total, 3) if total else 0.0,
            "requests_in_windows": total, "runs": runs, "request_every_s": every,
            "statuses_in_windows": {c: sum(r["statuses_in_window"].get(c, 0) for r in results)
                                    for c in sorted({c for r in results for c in r["statuses_in_window"]})}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--every", type=float, default=0.1, help="seconds between a request's answer and the next")
    parser.add_argument("--quick", action="store_true", help="2 runs")
    args = parser.parse_args()
    print(json.dumps(measure(2 if args.quick else args.runs, args.every), indent=2))


if __name__ == "__main__":
    main()
