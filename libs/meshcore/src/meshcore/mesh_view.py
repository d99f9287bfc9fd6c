"""The mesh as the gRPC API reports it: routes to models served by peers, and
the peer list. Shared by the node agent and a client-only proxy."""

from __future__ import annotations

from meshcore.api import node_pb2 as pb
from meshcore.member import MeshMember
from meshcore.mesh_load import can_stand_in, mesh_load

UINT32_MAX = (1 << 32) - 1  # the API's counters; members' gossiped demand is summed and may exceed it


def split_parts(parts: list) -> list[pb.SplitPart]:
    total = sum(layers for _, layers in parts) or 1
    return [pb.SplitPart(node_id=node_id, layers=layers, fraction=layers / total) for node_id, layers in parts]


def remote_routes(member: MeshMember) -> list[pb.Route]:
    """Models peers serve, plus models the mesh has on disk that nobody serves right
    now (a split being re-planned, a host loading) or that lost their last server while
    a standby can load them (mesh_node.rebalance promotes one): those are `loading` with
    no node, so requests get 503 + Retry-After instead of 404 while the mesh recovers."""
    routes = [pb.Route(model_id=model_id, node_id=peer.node_id, local=False, state=pb.MODEL_STATE_SERVING,
                       split=split_parts(peer.splits.get(model_id, [])))
              for peer in member.membership.alive_peers(role="node") for model_id in peer.serving]
    nodes = [*member.membership.alive_peers(role="node"), member.membership.own]
    served = {m for r in nodes for m in r.serving}
    records = list(member.membership.records.values())
    lost = {m for m in mesh_load(records).lost if can_stand_in(records, m)}
    pending = sorted(({m for r in nodes for m in r.models_on_disk} | lost) - served)
    routes += [pb.Route(model_id=m, node_id="", local=False, state=pb.MODEL_STATE_LOADING) for m in pending]
    return routes


def peers(member: MeshMember) -> list[pb.Peer]:
    me = member.node_id
    return [pb.Peer(node_id=r.node_id, role=r.role, state=r.state, vram_gb=r.vram_bytes / (1 << 30),
                    serving=list(r.serving), rtt_ms=member.rtt_ms.get(r.node_id, 0.0), version=r.app_version,
                    demand=r.demand, can_fetch=list(r.can_fetch), spare=r.spare, free_gb=r.free_bytes / (1 << 30),
                    promoted=r.promoted)
            for nid, r in sorted(member.membership.records.items()) if nid != me]


def demand(member: MeshMember) -> list[pb.ModelDemand]:
    """Requests per minute per model across the mesh, with its servers, most requested first."""
    load = mesh_load(member.membership.records.values())
    models = set(load.demand) | set(load.servers)
    return [pb.ModelDemand(model_id=m, requests_per_min=min(load.demand.get(m, 0), UINT32_MAX),
                           servers=len(load.servers.get(m, ())),
                           promoting=bool(load.promoting.get(m)))
            for m in sorted(models, key=lambda m: (-load.demand.get(m, 0), m))]
