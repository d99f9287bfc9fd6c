"""Demand and servers per model, as the gossiped records say (pure). Rebalancing
(mesh_node.rebalance) decides from it; the status API (meshcore.mesh_view) shows it."""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Iterable, Mapping

from meshcore.membership import ALIVE, DEAD, NodeRecord

FIT_FACTOR = 1.1  # a model fits a node alone when its memory is at least this times the file


@dataclass(frozen=True)
class MeshLoad:
    """What the records say about each model, alive nodes only (dead ones for `lost`)."""
    demand: Mapping[str, int]                  # req/min per model, every alive member's proxy
    servers: Mapping[str, tuple[str, ...]]     # alive nodes serving it
    promoting: Mapping[str, tuple[str, ...]]   # alive nodes loading it as a promotion (not serving yet)
    lost: Mapping[str, str]                    # model -> why it counts as lost
    promoted: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # alive nodes serving it as a promotion
    _total: float = 0.0                        # sum of per_server over served models (math.fsum: order-free)

    def per_server(self, model_id: str) -> float:
        return self.demand.get(model_id, 0) / max(1, len(self.servers.get(model_id, ())))

    def others_per_server(self, model_id: str) -> float:
        """Mean demand per server of the other served models (0 when none). O(1): the sum
        over all served models is taken once (it was a sum per model: quadratic in names)."""
        served = len(self.servers)
        if model_id in self.servers:
            return (self._total - self.per_server(model_id)) / (served - 1) if served > 1 else 0.0
        return self._total / served if served else 0.0


def mesh_load(records: Iterable[NodeRecord]) -> MeshLoad:
    records = list(records)
    alive = [r for r in records if r.state == ALIVE]
    demand: dict[str, int] = defaultdict(int)
    servers: dict[str, list[str]] = defaultdict(list)
    promoting: dict[str, list[str]] = defaultdict(list)
    promoted: dict[str, list[str]] = defaultdict(list)
    for r in alive:
        for model, rpm in r.demand.items():
            demand[model] += rpm
        if r.role != "node":
            continue
        for model in r.serving:
            servers[model].append(r.node_id)
        for model in r.promoted:
            (promoted if model in r.serving else promoting)[model].append(r.node_id)
    lost = {}
    for r in sorted(records, key=lambda r: r.node_id):
        if r.state != ALIVE and r.role == "node":
            for model in r.serving:
                if model not in servers and model not in lost:
                    lost[model] = f"its last server, node {r.node_id[:12]}, is {'dead' if r.state == DEAD else 'gone'}"
    load = MeshLoad(dict(demand), {m: tuple(sorted(n)) for m, n in servers.items()},
                    {m: tuple(sorted(n)) for m, n in promoting.items()}, lost,
                    {m: tuple(sorted(n)) for m, n in promoted.items()})
    total = math.fsum(load.per_server(m) for m in load.servers)
    return MeshLoad(load.demand, load.servers, load.promoting, load.lost, load.promoted, total)


def can_stand_in(records: Iterable[NodeRecord], model_id: str) -> bool:
    """Some alive node offers the model on its disk with the memory to serve it alone."""
    return any(r.state == ALIVE and r.role == "node" and model_id in r.spare
               and r.free_bytes >= FIT_FACTOR * r.spare[model_id] for r in records)
