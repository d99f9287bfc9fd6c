"""The mesh as the gRPC API reports it: routes to models served by peers, and
the peer list. Shared by the node agent and a client-only proxy."""

from __future__ import annotations

from meshcore.api import node_pb2 as pb
from meshcore.member import MeshMember


def split_parts(parts: list) -> list[pb.SplitPart]:
    total = sum(layers for _, layers in parts) or 1
    return [pb.SplitPart(node_id=node_id, layers=layers, fraction=layers / total) for node_id, layers in parts]


def remote_routes(member: MeshMember) -> list[pb.Route]:
    return [pb.Route(model_id=model_id, node_id=peer.node_id, local=False, state=pb.MODEL_STATE_SERVING,
                     split=split_parts(peer.splits.get(model_id, [])))
            for peer in member.membership.alive_peers(role="node") for model_id in peer.serving]


def peers(member: MeshMember) -> list[pb.Peer]:
    me = member.node_id
    return [pb.Peer(node_id=r.node_id, role=r.role, state=r.state, vram_gb=r.vram_bytes / (1 << 30),
                    serving=list(r.serving), rtt_ms=member.rtt_ms.get(r.node_id, 0.0), version=r.app_version,
                    demand=r.demand)
            for nid, r in sorted(member.membership.records.items()) if nid != me]
