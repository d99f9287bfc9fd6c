"""One decide() pass (mesh_node.decide: election, split planning, rebalancing) over a mesh
whose gossip carries many model names: what a node pays on every mesh change.

- `names_2048`: 2,048 distinct served names on 64 nodes (issue 28 measured 2.6 s a pass
  before the pass was made linear);
- `at_caps`: the membership table at its caps, 2,048 records each listing MAX_MODELS names
  (all distinct) served, demanded and spare: the most a member flooding names can make
  this node consider.
The pass runs in a thread off the node's event loop (mesh_node.reconciler); this is the
CPU it takes there. Median of `--runs` passes.

    .venv/bin/python bench/decide.py [--runs 5] [--quick]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from meshcore.membership import MAX_MODELS, MAX_RECORDS, NodeRecord
from mesh_node.decide import Held, Local, decide

GIB = 1 << 30


def node(i: int, names: list[str], spare: bool = False) -> NodeRecord:
    return NodeRecord(node_id=f"{i:032x}", version=1, vram_bytes=8 * GIB, free_bytes=8 * GIB,
                      serving=() if spare else tuple(names), models_on_disk=tuple(names),
                      demand={n: 1 + i % 13 for n in names},
                      spare={n: GIB for n in names} if spare else {})


def mesh(nodes: int, per_node: int) -> dict[str, NodeRecord]:
    records = [node(i, [f"model-{i}-{j}" for j in range(per_node)], spare=i % 4 == 0) for i in range(1, nodes)]
    return {r.node_id: r for r in records}


def one_pass(records: dict[str, NodeRecord], runs: int) -> float:
    me = next(iter(records))
    held = {m: Held(m, GIB, pinned=True) for m in list(records[me].models_on_disk)[:4]}
    local = Local(held=held, vram_bytes=8 * GIB, now=1000.0)
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        decide(records, me, local)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--quick", action="store_true", help="3 runs")
    a = p.parse_args()
    runs = 3 if a.quick else a.runs
    print(json.dumps({
        "decide_pass_ms": {"names_2048": round(one_pass(mesh(65, 32), runs) * 1000, 1),
                           "at_caps": round(one_pass(mesh(MAX_RECORDS, MAX_MODELS), runs) * 1000, 1)},
        "runs": runs,
    }, indent=2))


if __name__ == "__main__":
    main()
