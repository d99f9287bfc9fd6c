"""Election and split planning, pure: every node computes the same plan from the
same gossiped records.

For one model of `model_bytes`:
- candidates are alive nodes (never clients) that have it on disk;
- host = the candidate offering the most memory (ties: lowest node id) among those
  that can hold the model, alone or with the peers the split allow-list lets it
  pair with (else the first: its plan says why it does not fit);
- solo on the host if its memory >= FIT_FACTOR x model bytes, unless forced to split;
- otherwise workers are added, lowest RTT from the host first (ties: node id),
  skipping peers whose RTT is over MAX_RTT_MS, peers not ready (their weights
  not prepared for zero-transfer loading) and peers the host and the peer do not
  both allow (the split allow-list, meshcore.split_policy), until the memory fits;
- forced to split (--split) with no peer to split with, a model that fits the host
  is served by the host alone (a plan with no workers) until a peer with the
  model joins: the runner then re-plans into a split. Serving beats waiting;
- the layer split follows the memory fractions.
A plan that is serving stays while its members are alive (`keep_or_replan`), so
small changes in RTT or memory never re-plan a model that works.
"""

from __future__ import annotations

from dataclasses import dataclass

from meshcore.membership import ALIVE, NodeRecord
from meshcore.mesh_load import FIT_FACTOR
from meshcore.split_policy import may_pair

MAX_RTT_MS = 80.0
MAX_HOST_CANDIDATES = 32  # hosts considered per model (most memory first): election stays linear in nodes


@dataclass(frozen=True)
class Plan:
    model_id: str
    host: str | None                   # None: no candidate has the model
    workers: tuple[str, ...] = ()      # empty: solo
    fractions: tuple[float, ...] = ()  # host first, then workers, summing to 1
    fits: bool = True
    reason: str = ""                   # in words, when it does not fit

    @property
    def members(self) -> tuple[str, ...]:
        return ((self.host,) if self.host else ()) + self.workers


def candidates(records: list[NodeRecord], model_id: str, viewer: NodeRecord | None = None) -> list[NodeRecord]:
    """Nodes that could host `model_id`, most memory first (ties: lowest node id). With a
    `viewer` (the node deciding), only nodes its split allow-list admits, and itself: a
    node never takes part in, nor stands by for, a split hosted by a node it does not
    allow (issue 28: a stranger claiming 2^62 bytes was elected and honest splits
    stood down). Nodes that allow each other compute the same plan."""
    return sorted((r for r in records if r.state == ALIVE and r.role == "node" and model_id in r.models_on_disk
                   and (viewer is None or r.node_id == viewer.node_id or may_pair(r, viewer))),
                  key=lambda r: (-r.vram_bytes, r.node_id))


def _partners(records: list[NodeRecord], host: NodeRecord, model_id: str) -> list[NodeRecord]:
    return [r for r in records if r.state == ALIVE and r.role == "node" and r.node_id != host.node_id
            and model_id in r.models_on_disk and r.vram_bytes > 0]


def choose_host(records: list[NodeRecord], model_id: str, model_bytes: int = 0,
                force_split: bool = False, viewer: NodeRecord | None = None) -> NodeRecord | None:
    """The elected host: the first candidate that can hold the model alone or with the
    peers both it and they allow (the split allow-list) — asked to split, the first
    that has such a peer at all; if none can, the first. RTT and readiness do not
    move the host: only memory, files and policies, which change rarely. At most
    MAX_HOST_CANDIDATES are considered, their partners found once each."""
    ranked = candidates(records, model_id, viewer)[:MAX_HOST_CANDIDATES]
    need = FIT_FACTOR * model_bytes
    holders = [r for r in records if r.state == ALIVE and r.role == "node" and model_id in r.models_on_disk
               and r.vram_bytes > 0]
    allowed: dict[str, int] = {}  # host -> memory of the partners it and they allow (-1: none)

    def offered(host: NodeRecord) -> int:
        if host.node_id not in allowed:
            mates = [r.vram_bytes for r in holders if r.node_id != host.node_id and may_pair(host, r)]
            allowed[host.node_id] = sum(mates) if mates else -1
        return allowed[host.node_id]

    if force_split:
        for host in ranked:
            if offered(host) >= 0 and host.vram_bytes + offered(host) >= need:
                return host
    for host in ranked:
        if host.vram_bytes + max(0, offered(host)) >= need:
            return host
    return ranked[0] if ranked else None


def plan_model(records: list[NodeRecord], model_id: str, model_bytes: int, force_split: bool = False,
               ready: set[str] | None = None, viewer: NodeRecord | None = None) -> Plan:
    """`ready`: ids of nodes prepared to serve this model's weights as workers
    (None: every node with the file); `viewer`: see `candidates`."""
    host = choose_host(records, model_id, model_bytes, force_split, viewer)
    if host is None:
        return Plan(model_id, None, fits=False, reason=f"no node has {model_id} on disk")
    need = FIT_FACTOR * model_bytes
    if host.vram_bytes >= need and not force_split:
        return Plan(model_id, host.node_id, fractions=(1.0,))
    others = [r for r in _partners(records, host, model_id) if ready is None or r.node_id in ready]
    excluded = [r for r in others if not may_pair(host, r)]
    others = [r for r in others if may_pair(host, r)]
    chosen: list[NodeRecord] = []
    total = host.vram_bytes
    for peer in sorted(others, key=lambda r: (host.rtt_ms.get(r.node_id, float("inf")), r.node_id)):
        if host.rtt_ms.get(peer.node_id, float("inf")) > MAX_RTT_MS:
            continue
        if total >= need and chosen:
            break
        chosen.append(peer)
        total += peer.vram_bytes
    if total < need:
        gib = 1 << 30
        return Plan(model_id, host.node_id, tuple(p.node_id for p in chosen), fits=False,
                    reason=f"{model_id} needs {need / gib:.2f} GiB; the nodes that can take part offer "
                           f"{total / gib:.2f} GiB together"
                           + (f" ({len(excluded)} more with the model are not on the split allow-list: "
                              f"see --split-with)" if excluded else ""))
    if not chosen:  # forced split, nobody to split with: alone until a peer joins
        return Plan(model_id, host.node_id, fractions=(1.0,))
    fractions = tuple(v / total for v in [host.vram_bytes, *(p.vram_bytes for p in chosen)])
    return Plan(model_id, host.node_id, tuple(p.node_id for p in chosen), fractions)


def keep_or_replan(current: Plan | None, records: list[NodeRecord], model_id: str, model_bytes: int,
                   force_split: bool = False, ready: set[str] | None = None,
                   viewer: NodeRecord | None = None) -> Plan:
    """Keep a working plan while all its members are alive and its host is still the
    one every node elects (two nodes that planned before gossip converged both yield
    to the elected host; memory and files change rarely, RTT never moves the host), or
    the elected one is a node the current host's allow-list does not admit: a claimant
    the host would not split with never makes a working split stand down."""
    alive = {r.node_id for r in records if r.state == ALIVE and r.role == "node"}
    elected = choose_host(records, model_id, model_bytes, force_split, viewer)
    host = next((r for r in records if current is not None and r.node_id == current.host), None)
    if current is not None and current.fits and current.host and set(current.members) <= alive \
            and elected is not None and host is not None \
            and (elected.node_id == current.host or not may_pair(elected, host)):
        if not (force_split and not current.workers):
            return current
        fresh = plan_model(records, model_id, model_bytes, force_split, ready, viewer)
        return fresh if fresh.workers else current  # a forced split that was alone: split once a peer is there
    return plan_model(records, model_id, model_bytes, force_split, ready, viewer)


def planned_part(plan: Plan, node_id: str, layers: tuple[int, ...]) -> tuple[str, int, int, int]:
    """(host, first layer, layers, total) of `node_id` in `plan`, layers placed in
    plan order (the host first, as on a CPU host)."""
    i = plan.members.index(node_id)
    return (plan.host or "", sum(layers[:i]), layers[i], sum(layers))


def layer_split(n_layers: int, fractions: tuple[float, ...]) -> tuple[int, ...]:
    """Whole layers per member (host first), proportional to `fractions`, each
    member at least one layer when there are enough layers."""
    counts = [int(n_layers * f) for f in fractions]
    for i in sorted(range(len(fractions)), key=lambda i: -(n_layers * fractions[i] - counts[i])):
        if sum(counts) >= n_layers:
            break
        counts[i] += 1
    for i, c in enumerate(counts):
        if c == 0 and n_layers >= len(counts):
            donor = max(range(len(counts)), key=lambda j: counts[j])
            counts[donor] -= 1
            counts[i] = 1
    return tuple(counts)
