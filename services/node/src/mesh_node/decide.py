"""What this node does with each model it holds, pure: a function of the gossiped
records and what only this node knows (`Local`). The reconciler (mesh_node.reconciler
and each ModelRunner) carries the answer out and calls again whenever the mesh or the
node changes; nothing here does I/O.

    decide(records, me, local) -> {model id: Serve | Host | Work | StandBy | Fail}

For a model this node runs (asked for with --model, promoted, or picked by --auto):
- it fits this node alone (memory >= FIT_FACTOR x file size, no --split), or there is
  no mesh: Serve;
- otherwise the split planner (mesh_node.planner): another node serves it and names
  this node in its split: Work for that host; another node serves it: StandBy; the
  plan does not fit: Fail, saying why; the elected host is another node and this node
  is in its plan: Work; another node is elected: StandBy; this node is elected: Host
  (a plan with no workers: alone until a peer with the model joins);
- a plan (or a model served alone) whose llama-server failed for good is not tried
  again while the plan is the same: Fail with llama-server's last words. A different
  plan (a node joined or left) is tried. A promoted copy that failed is let go.
A promoted copy whose demand went away is let go (mesh_node.rebalance.demotion): StandBy
with `run=False`. A spare model (on disk, not run) is promoted when the mesh's
rebalancing picks this node for it (Serve or Host then, `why` says what the mesh wanted),
else StandBy with `run=False`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from meshcore.membership import ALIVE, NodeRecord
from meshcore.mesh_load import MeshLoad, mesh_load
from meshcore.split_policy import may_pair

from mesh_node.planner import FIT_FACTOR, Plan, keep_or_replan, layer_split, planned_part
from mesh_node.rebalance import Promotion, Thresholds, demotion, eager_pick, promotions


# -- decisions ------------------------------------------------------------------------

@dataclass(frozen=True)
class Serve:
    """Run llama-server for the model here, alone."""
    why: str = ""
    fetch: bool = False         # download it from the catalog first
    picked: bool = False        # --auto's own pick (kept like a model asked for with --model)


@dataclass(frozen=True)
class Host:
    """Host a split of the model: llama-server here, layers on the plan's workers."""
    plan: Plan
    why: str = ""


@dataclass(frozen=True)
class Work:
    """Hold layers of a split another node hosts: its host may use this rpc-server."""
    part: tuple[str, int, int, int]  # (host, first layer, layers, total layers)
    why: str
    plan: Plan | None = None    # the plan this node reckons (kept while its members live)


@dataclass(frozen=True)
class StandBy:
    why: str
    grant: str | None = None    # a host that may use this node's rpc-server meanwhile
    run: bool = True            # False: not run here at all (a spare file, or a copy let go)
    plan: Plan | None = None


@dataclass(frozen=True)
class Fail:
    why: str


Decision = Serve | Host | Work | StandBy | Fail


# -- what only this node knows --------------------------------------------------------

@dataclass(frozen=True)
class Held:
    """A model this node has a file for (or could fetch)."""
    model_id: str
    size_bytes: int
    pinned: bool = False                  # asked for with --model: run whatever the demand
    running: bool = False                 # promoted or picked (a runner is carrying it out)
    picked: bool = False                  # --auto's own pick: kept like a pinned one
    serving_since: float | None = None    # monotonic time its llama-server became healthy
    layers: int = 0                       # transformer blocks (0: not read yet)
    plan: Plan | None = None              # the split plan being carried out, if any
    gave_up: tuple[Plan | None, str] | None = None  # (the plan, or None alone) that failed for good, and why

    @property
    def runs(self) -> bool:
        return self.pinned or self.running


@dataclass(frozen=True)
class Local:
    held: Mapping[str, Held]
    vram_bytes: int
    now: float                            # monotonic seconds
    force_split: bool = False
    eager: bool = False                   # --auto: serve something the mesh wants when serving nothing
    in_mesh: bool = True
    thresholds: Thresholds = field(default_factory=Thresholds)
    catalog_sizes: Mapping[str, int] = field(default_factory=dict)


# -- the decision ---------------------------------------------------------------------

def gossiped_part(records: Mapping[str, NodeRecord], host: str, me: str, model_id: str
                  ) -> tuple[str, int, int, int] | None:
    """(host, first layer, layers, total) of `me` in the split `host` publishes for the
    model, or None if `me` is not in it or the split allow-list does not admit the host."""
    record, own = records.get(host), records.get(me)
    if record is None or own is None or not may_pair(record, own):
        return None
    parts = record.splits.get(model_id, [])
    first = 0
    for node, layers in parts:
        if node == me:
            return (host, first, layers, sum(c for _, c in parts))
        first += layers
    return None


def split_decision(records: Mapping[str, NodeRecord], me: str, held: Held, local: Local, load: MeshLoad) -> Decision:
    """A model this node runs that it cannot (or may not) serve alone."""
    model = held.model_id
    own = records.get(me)
    # Other nodes serving it that this node's allow-list admits (a stranger may serve the
    # model whole, for whoever routes to it, but never makes this node stand down).
    others = [n for n in load.servers.get(model, ()) if n != me and own is not None and may_pair(records[n], own)]
    plan = keep_or_replan(held.plan, list(records.values()), model, held.size_bytes, local.force_split, viewer=own)
    host = records.get(plan.host) if plan.host else None
    grant = plan.host if plan.host != me and plan.workers and host is not None and own is not None \
        and may_pair(host, own) else None
    hosting = plan == held.plan and plan.host == me  # a split this node hosts stays while its plan holds
    if others and not hosting:
        for other in others:
            part = gossiped_part(records, other, me, model)
            if part is not None:
                return Work(part, f"holds layers {part[1]}-{part[1] + part[2] - 1} of {part[3]} for the split "
                                  f"hosted by node {other[:12]}", plan)
        return StandBy(f"node {others[0][:12]} serves it", grant, plan=plan)
    if not plan.fits:
        return Fail(f"cannot serve: {plan.reason}")
    if plan.host != me and me in plan.workers:
        part = planned_part(plan, me, layer_split(held.layers, plan.fractions))
        return Work(part, f"will hold layers {part[1]}-{part[1] + part[2] - 1} of {part[3]} for the split "
                          f"node {(plan.host or '')[:12]} is loading", plan)
    if plan.host != me:
        return StandBy(f"node {(plan.host or '')[:12]} was elected to serve it", grant, plan=plan)
    if held.gave_up is not None and held.gave_up[0] is not None and held.gave_up[0].members == plan.members:
        return Fail(f"{held.gave_up[1]} (tried again when the nodes that can take part change)")
    return Host(plan)


def why_replan(plan: Plan, decision: Decision, records: Mapping[str, NodeRecord]) -> str | None:
    """Why the split `plan` this node hosts must end, in words (None: it stands)."""
    if isinstance(decision, Host) and decision.plan == plan:
        return None
    gone = [n for n in plan.members if n not in records or records[n].state != ALIVE]
    if gone:
        return f"node {gone[0][:12]} of its split is {records[gone[0]].state if gone[0] in records else 'gone'}"
    if isinstance(decision, Host) and decision.plan.workers and not plan.workers:
        return f"node {decision.plan.workers[0][:12]} joined with the model: splitting it"
    if isinstance(decision, (StandBy, Work)) and decision.plan is not None and decision.plan.host != plan.host:
        return f"node {(decision.plan.host or '')[:12]} is the better host (two nodes planned at once)"
    return f"the plan changed ({getattr(decision, 'why', '') or type(decision).__name__.lower()})"


def run_decision(records: Mapping[str, NodeRecord], me: str, held: Held, local: Local, load: MeshLoad) -> Decision:
    """A model this node runs (pinned, promoted or picked)."""
    alone = local.vram_bytes >= FIT_FACTOR * held.size_bytes and not local.force_split
    if alone or not local.in_mesh:
        if held.gave_up is not None and held.gave_up[0] is None:
            if not held.pinned and not held.picked:
                return StandBy(f"it could not be served here ({held.gave_up[1]})", run=False)
            return Fail(held.gave_up[1])
        return Serve()
    return split_decision(records, me, held, local, load)


def decide(records: Mapping[str, NodeRecord], me: str, local: Local) -> dict[str, Decision]:
    """Every held model's decision (see the module docstring)."""
    out: dict[str, Decision] = {}
    own = records.get(me)
    th = local.thresholds
    chosen: dict[str, Promotion] = {}
    picked = False
    # One promotion at a time here: none while a promoted copy is still loading.
    loading = any(h.running and not h.pinned and h.serving_since is None and h.gave_up is None
                  for h in local.held.values())
    load = mesh_load(records.values())  # once for every rule below
    if own is not None and local.in_mesh and not loading:
        chosen = {p.model_id: p for p in promotions(records.values(), th, local.catalog_sizes, load)
                  if p.node_id == me}
        if local.eager and not any(h.runs for h in local.held.values()) and not chosen:
            pick = eager_pick(records.values(), own, local.catalog_sizes, load)
            if pick is not None:
                chosen, picked = {pick.model_id: pick}, True
    for model, held in sorted(local.held.items()):
        if held.running and not held.pinned and not held.picked and held.serving_since is not None:
            why = demotion(records.values(), me, model, local.now - held.serving_since, th, load)
            if why is not None:
                out[model] = StandBy(why, run=False)
                continue
        if held.runs:
            out[model] = run_decision(records, me, held, local, load)
        elif model in chosen:
            out[model] = Serve(chosen[model].why, fetch=chosen[model].fetch, picked=picked)
        else:
            out[model] = StandBy("on disk, ready if the mesh needs it", run=False)
    for model, promo in chosen.items():  # a catalog model to download: not held yet
        if model not in out:
            out[model] = Serve(promo.why, fetch=promo.fetch, picked=picked)
    return out


def used_bytes(decisions: Mapping[str, Decision], held: Mapping[str, Held], vram_bytes: int,
               catalog_sizes: Mapping[str, int] = {}) -> int:
    """Memory the decided models take: FIT_FACTOR x size served alone; all of it in a split."""
    used = 0
    for model, d in decisions.items():
        if isinstance(d, (Host, Work)):
            return vram_bytes
        if isinstance(d, Serve):
            size = held[model].size_bytes if model in held else catalog_sizes.get(model, 0)
            used += int(FIT_FACTOR * size)
    return min(used, vram_bytes)
