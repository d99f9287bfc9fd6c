"""The node's own state, observable: every change bumps `seq` and wakes watchers.

Everything the gRPC API reports is derived from here: the models with their
state, the route table and the node summary. Only the agent's tasks mutate it,
all on one event loop, so no locks are needed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from meshcore import mesh_view, model_state
from meshcore.api import node_pb2 as pb
from meshcore.changes import Changes
from meshcore.demand import DemandMeter
from meshcore.ids import MeshId, ModelId, NodeId

if TYPE_CHECKING:
    from meshcore.member import MeshMember

log = logging.getLogger(__name__)
MAX_REBALANCES = 50  # promotions and demotions kept for the status


@dataclass(frozen=True)
class ModelEntry:
    model_id: ModelId
    path: Path
    size_bytes: int
    state: int = pb.MODEL_STATE_LOADING
    reason: str = ""
    port: int = 0
    restarts: int = 0
    split: tuple[tuple[str, int, float], ...] = ()  # (node id, layers, fraction) when hosting a split
    worker: tuple[str, int, int, int] | None = None  # (host, first layer, layers, total) when a split's worker
    draft: str = ""                  # the draft model's id (speculative decoding), if any
    draft_acceptance: float = 0.0    # accepted / drafted tokens, from llama-server's metrics


class NodeState:
    def __init__(self, node_id: NodeId, mesh_id: MeshId, token: str, vram_bytes: int, version: str,
                 member: "MeshMember | None" = None) -> None:
        self.node_id = node_id
        self.mesh_id = mesh_id
        self.token = token
        self.vram_bytes = vram_bytes
        self.version = version
        self.member = member  # the mesh view: peers and their routes
        self.models: dict[ModelId, ModelEntry] = {}
        self.runners: dict[ModelId, asyncio.Task] = {}  # one task per model (mesh-llm drop cancels it)
        self.ready_models: set[str] = set()  # on disk and ready to serve or to be a split worker for
        self.rpc_links: list = []             # RpcLink objects of the splits this node hosts
        # Who may drive this node's rpc-server: model -> the host of the split this node
        # is a worker of, by this node's own plan (never what a peer says). rpc-server
        # runs only while this is not empty; rpc_port is set while it is up.
        self.rpc_grants: dict[ModelId, NodeId] = {}
        self.rpc_port: int | None = None
        # Rebalancing (mesh_node.reconciler): what this node offers and why it runs what it runs.
        self.spare: dict[ModelId, tuple[Path, int]] = {}  # models on disk it does not run: path, bytes
        self.free_bytes = vram_bytes                      # memory the models it runs do not take
        self.promoted: dict[ModelId, str] = {}            # models run because the mesh wanted them: why
        self.dropped: set[ModelId] = set()                # dropped by the user: never promoted here again
        self.demand: dict[str, int] = {}                  # its proxy's requests per minute, per model
        self.demand_meter = DemandMeter()
        self.rebalances: deque[pb.Rebalance] = deque(maxlen=MAX_REBALANCES)
        self.changes = Changes()

    def set_identity(self, mesh_id: MeshId, token: str) -> None:
        self.mesh_id, self.token = mesh_id, token
        self._bump()

    def mesh_changed(self) -> None:
        self._bump()

    def local_port(self, model_id: str) -> int | None:
        entry = self.models.get(ModelId(model_id))
        return entry.port if entry and entry.state == pb.MODEL_STATE_SERVING else None

    def add_model(self, entry: ModelEntry) -> None:
        self.models[entry.model_id] = entry
        self._bump()

    def update_model(self, model_id: ModelId, **changes: object) -> None:
        old = self.models[model_id]
        new = replace(old, **changes)  # type: ignore[arg-type]
        if new == old:
            return
        self.models[model_id] = new
        if new.state != old.state or new.reason != old.reason:
            log.info("model %s is %s%s", model_id, model_state.word(new.state),
                     f": {new.reason}" if new.reason else "")
        self._bump()

    def grant_rpc(self, model_id: ModelId, host: NodeId | None) -> None:
        """Let `host` drive this node's rpc-server for `model_id` (None: nobody)."""
        if self.rpc_grants.get(model_id) == host:
            return
        if host is None:
            del self.rpc_grants[model_id]
            log.info("no longer a split worker for %s", model_id)
        else:
            self.rpc_grants[model_id] = host
            log.info("a split worker for %s: node %s may use this node's rpc-server", model_id, host[:12])
        self._bump()

    def set_rpc_port(self, port: int | None) -> None:
        if self.rpc_port != port:
            self.rpc_port = port
            self._bump()

    def observe_demand(self, totals: dict[str, int], now: float) -> None:
        """The proxy's running request totals (mesh_proxy.node_link.report_demand)."""
        self.demand_meter.observe(totals, now)
        self.age_demand(now)

    def age_demand(self, now: float) -> None:
        rates = self.demand_meter.rates(now)
        if rates != self.demand:
            self.demand = rates
            self._bump()

    def set_offer(self, spare: dict[ModelId, tuple[Path, int]], free_bytes: int,
                  promoted: dict[ModelId, str]) -> None:
        if (spare, free_bytes, promoted) != (self.spare, self.free_bytes, self.promoted):
            self.spare, self.free_bytes, self.promoted = spare, free_bytes, promoted
            self._bump()

    def note_rebalance(self, node_id: str, model_id: str, action: str, reason: str) -> None:
        self.rebalances.append(pb.Rebalance(time_unix=time.time(), node_id=node_id, model_id=model_id,
                                            action=action, reason=reason))
        self._bump()

    def drop_model(self, model_id: ModelId) -> None:
        self.grant_rpc(model_id, None)
        self.ready_models.discard(model_id)
        if self.models.pop(model_id, None) is not None:
            log.info("model %s dropped", model_id)
            self._bump()

    def _bump(self) -> None:
        self.changes.bump()

    @property
    def seq(self) -> int:
        return self.changes.seq

    @property
    def node_state(self) -> str:
        return model_state.node_state({m.state for m in self.models.values()})

    def routes(self) -> pb.RouteTable:
        table = pb.RouteTable(version=self.seq)
        for m in sorted(self.models.values(), key=lambda m: m.model_id):
            if m.state not in model_state.NOT_ROUTED:  # workers and standbys: served elsewhere
                table.routes.append(pb.Route(model_id=m.model_id, node_id=self.node_id, local=True,
                                             endpoint=f"127.0.0.1:{m.port}" if m.port else "", state=m.state,
                                             split=[pb.SplitPart(node_id=n, layers=c, fraction=f)
                                                    for n, c, f in m.split]))
        if self.member is not None:
            local = {r.model_id for r in table.routes}
            # A model this node has a route for speaks for itself (e.g. failed, with a reason).
            table.routes.extend(r for r in mesh_view.remote_routes(self.member)
                                if r.node_id or r.model_id not in local)
        return table

    def snapshot(self) -> pb.NodeStatus:
        status = pb.NodeStatus(node_id=self.node_id, mesh_id=self.mesh_id, token=self.token,
                               node_state=self.node_state, my_vram_gb=self.vram_bytes / (1 << 30),
                               my_free_gb=self.free_bytes / (1 << 30),
                               version=self.version, seq=self.seq)
        for m in sorted(self.models.values(), key=lambda m: m.model_id):
            status.models.append(pb.ModelStatus(
                model_id=m.model_id, path=str(m.path), size_bytes=m.size_bytes, state=m.state, reason=m.reason,
                port=m.port, restarts=m.restarts,
                split=[pb.SplitPart(node_id=n, layers=c, fraction=f) for n, c, f in m.split],
                worker=pb.WorkerPart(host=m.worker[0], first_layer=m.worker[1], layers=m.worker[2],
                                     total_layers=m.worker[3]) if m.worker else None,
                draft=m.draft, draft_acceptance=m.draft_acceptance))
        for link in self.rpc_links:
            status.rpc_links.append(pb.RpcLink(peer=link.peer, model=link.model, bytes_to_worker=link.to_worker[0],
                                               bytes_from_worker=link.from_worker[0],
                                               reads_from_worker=link.from_worker[1], path=link.path,
                                               path_note=link.path_note))
        status.routes.CopyFrom(self.routes())
        status.rebalances.extend(self.rebalances)
        for model, (_, size) in sorted(self.spare.items()):
            status.spare[model] = size
        if self.member is not None:
            status.peers.extend(mesh_view.peers(self.member))
            status.demand.extend(mesh_view.demand(self.member))
        return status
