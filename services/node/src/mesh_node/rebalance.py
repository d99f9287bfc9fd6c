"""Rebalancing, pure: which node loads which model the mesh wants, and when a
copy it no longer needs is let go. Every node computes the same answer from the
same gossiped records (as the split planner does), so one standby promotes per
model, and the others wait for it.

Inputs, per alive node record: `demand` (requests per minute its proxy saw per model,
404s included: meshcore.demand), `serving`, `spare` (models on its disk it does not
run, with their sizes), `free_bytes`, `can_fetch` (catalog models it could download)
and `promoted` (models it serves because the mesh wanted them). A dead or left record
still says what its node served.

A model is **wanted**, most urgent first:
1. lost: a dead or departed node served it and no alive node does;
2. asked for: nobody serves it and clients asked for it at least `wanted_rpm` times a
   minute (the proxies count the 404s);
3. hot: its demand per server is at least `hot_rpm` and at least `imbalance` times the
   mean demand per server of the other served models (any, when it is the only one).
Ties: more demand first, then the model id. A model some node is already loading as a
promotion is not wanted again until that node serves it: one promotion per model at a
time; one promotion per node at a time.

The **standby** chosen for a wanted model: an alive node with the file that has the
memory for it alone (FIT_FACTOR x size), most free memory first (ties: lowest node id);
if no node has the file, a node that could download it from the catalog, the same way.

A promoted copy is **let go** (demoted) only when it has served `min_serve_s`, another
node serves the model too (never the last copy), nobody is loading it, and the others
would each see less than `cool_rpm` without it (below `hot_rpm`: hysteresis, no
flapping). Of several such copies the one on the highest node id goes first, one at a
time.
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from dataclasses import dataclass
from typing import Iterable, Mapping

from meshcore.membership import ALIVE, NodeRecord
from meshcore.mesh_load import MeshLoad, mesh_load

from mesh_node.planner import FIT_FACTOR

# Every pass is linear in what the records carry (each record's lists are capped:
# meshcore.membership.MAX_MODELS), and at most MAX_WANTED models are considered for a
# promotion in one pass: a member gossiping thousands of names (issue 28: 2,048 names
# took 2.6 s a pass, quadratic) costs one pass over them, not one per pair.
MAX_WANTED = 1024


@dataclass(frozen=True)
class Thresholds:
    hot_rpm: float = 10.0       # demand per server (req/min) that makes a served model hot
    imbalance: float = 3.0      # ... and this many times the other models' demand per server
    cool_rpm: float = 5.0       # a promoted copy goes when the others would each see less than this
    wanted_rpm: float = 1.0     # a model nobody serves is loaded when asked for this often
    min_serve_s: float = 120.0  # a promoted copy serves at least this long


@dataclass(frozen=True)
class Promotion:
    node_id: str
    model_id: str
    why: str
    fetch: bool = False         # the node downloads it from the catalog first


def wanted(load: MeshLoad, th: Thresholds, loadable: set[str] | None = None) -> list[tuple[str, str]]:
    """(model, why) the mesh wants one more copy of, most urgent first (at most MAX_WANTED).
    `loadable`: the models some node could load (on a disk or in reach of a download);
    the others are not considered (None: all)."""
    out = []
    names = set(load.demand) | set(load.servers) | set(load.lost)
    for model in names if loadable is None else names & loadable:
        if load.promoting.get(model):
            continue
        asked = load.demand.get(model, 0)
        if not load.servers.get(model):
            if model in load.lost:
                out.append((0, -asked, model, load.lost[model]))
            elif asked >= th.wanted_rpm:
                out.append((1, -asked, model, f"nobody serves it and clients asked for it {asked} times in the "
                                              "last minute"))
            continue
        each, others = load.per_server(model), load.others_per_server(model)
        if each >= th.hot_rpm and each >= th.imbalance * others:
            n = len(load.servers[model])
            out.append((2, -asked, model, f"it is hot: {asked} requests a minute over {n} server"
                                          f"{'s' if n > 1 else ''} ({each:.0f} each; the other models "
                                          f"{others:.0f} each)"))
    return [(model, why) for _, _, model, why in heapq.nsmallest(MAX_WANTED, out)]


def promotions(records: Iterable[NodeRecord], th: Thresholds, catalog_sizes: Mapping[str, int] = {},
               load: MeshLoad | None = None) -> list[Promotion]:
    """Which standby loads which wanted model now (at most one each). `load`: mesh_load of
    the same records, when the caller has it."""
    records = list(records)
    load = load or mesh_load(records)
    nodes = sorted((r for r in records if r.state == ALIVE and r.role == "node"), key=lambda r: r.node_id)
    busy = {n for loading in load.promoting.values() for n in loading}  # one promotion per node at a time
    free = {r.node_id: r.free_bytes for r in nodes}
    spares: dict[str, list[NodeRecord]] = defaultdict(list)    # model -> nodes with its file, by id
    fetchable: dict[str, list[NodeRecord]] = defaultdict(list)  # model -> nodes that could download it
    for r in nodes:
        for model in r.spare:
            spares[model].append(r)
        for model in r.can_fetch:
            fetchable[model].append(r)
    out: list[Promotion] = []
    for model, why in wanted(load, th, set(spares) | set(fetchable)):
        if len(busy) >= len(nodes):
            break
        serving = set(load.servers.get(model, ()))
        with_file = [r for r in spares.get(model, ()) if r.node_id not in busy and r.node_id not in serving
                     and free[r.node_id] >= FIT_FACTOR * r.spare[model]]
        size = catalog_sizes.get(model, 0)
        fetchers = [r for r in fetchable.get(model, ()) if r.node_id not in busy and r.node_id not in serving
                    and size and free[r.node_id] >= FIT_FACTOR * size]
        pool, fetch = (with_file, False) if with_file else (fetchers, True)
        if not pool:
            continue
        chosen = min(pool, key=lambda r: (-free[r.node_id], r.node_id))
        busy.add(chosen.node_id)
        free[chosen.node_id] -= int(FIT_FACTOR * (size if fetch else chosen.spare[model]))
        out.append(Promotion(chosen.node_id, model, why, fetch))
    return out


def demotion(records: Iterable[NodeRecord], me: str, model_id: str, serving_for_s: float,
             th: Thresholds, load: MeshLoad | None = None) -> str | None:
    """Why this node should let its promoted copy of `model_id` go now, or None."""
    if serving_for_s < th.min_serve_s:
        return None
    records = list(records)
    load = load or mesh_load(records)
    servers = load.servers.get(model_id, ())
    if me not in servers or len(servers) < 2 or load.promoting.get(model_id):
        return None
    left = load.demand.get(model_id, 0) / (len(servers) - 1)
    if left >= th.cool_rpm:
        return None
    if max(load.promoted.get(model_id, ()), default="") != me:
        return None  # another promoted copy goes first
    return (f"demand fell to {load.demand.get(model_id, 0)} requests a minute: the other "
            f"{len(servers) - 1} server{'s' if len(servers) > 2 else ''} can take it")


def eager_pick(records: Iterable[NodeRecord], me: NodeRecord, catalog_sizes: Mapping[str, int] = {},
               load: MeshLoad | None = None) -> Promotion | None:
    """An --auto node that serves nothing picks the model the mesh wants most that fits
    its memory: one nobody serves that clients ask for, else the busiest per server
    (even a quiet one the mesh serves: one more copy), a file on its disk before a
    download. None when nothing it has or could fetch is served or asked for."""
    load = load or mesh_load(records)
    options = []
    for model in set(me.spare) | set(me.can_fetch):
        size = me.spare.get(model) or catalog_sizes.get(model, 0)
        if not size or me.free_bytes < FIT_FACTOR * size or load.promoting.get(model):
            continue
        asked, servers = load.demand.get(model, 0), len(load.servers.get(model, ()))
        if not asked and not servers:
            continue
        unserved = servers == 0
        options.append((not unserved, -load.per_server(model), model not in me.spare, model, asked, servers))
    if not options:
        return None
    _, _, fetch, model, asked, servers = min(options)
    why = (f"nobody serves it and clients asked for it {asked} times in the last minute" if not servers else
           f"the mesh's busiest model that fits here ({asked} requests a minute over {servers} "
           f"server{'s' if servers > 1 else ''})")
    return Promotion(me.node_id, model, why, fetch)
