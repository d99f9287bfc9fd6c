"""The console's JSON view of the node agent's status (what /api/status returns)."""

from __future__ import annotations

from meshcore.api import node_pb2 as pb
from meshcore.model_state import word

RPC_PATHS = {pb.RPC_PATH_DIRECT: "direct", pb.RPC_PATH_QUIC: "quic"}  # "": not connected yet


def worker_json(m: pb.ModelStatus) -> dict | None:
    if not m.HasField("worker"):
        return None
    w = m.worker
    return {"host": w.host, "first_layer": w.first_layer, "layers": w.layers, "total_layers": w.total_layers}


def status_json(status: pb.NodeStatus, api_port: int) -> dict:
    return {
        "node_id": status.node_id,
        "mesh_id": status.mesh_id,
        "token": status.token,
        "node_state": status.node_state,
        "version": status.version,
        "my_vram_gb": round(status.my_vram_gb, 2),
        "my_free_gb": round(status.my_free_gb, 2),
        "api_port": api_port,
        "models": [{
            "name": m.model_id,
            "state": word(m.state),
            "reason": m.reason,
            "worker": worker_json(m),
            "size_bytes": m.size_bytes,
            "path": m.path,
            "restarts": m.restarts,
            "split": [{"node_id": p.node_id, "layers": p.layers, "fraction": round(p.fraction, 4)} for p in m.split],
            "draft": m.draft,
            "draft_acceptance": round(m.draft_acceptance, 4),
        } for m in status.models],
        "rpc_links": [{"peer": link.peer, "model": link.model, "bytes_to_worker": link.bytes_to_worker,
                       "bytes_from_worker": link.bytes_from_worker, "path": RPC_PATHS.get(link.path, ""),
                       "path_note": link.path_note} for link in status.rpc_links],
        "routes": [{
            "model": r.model_id,
            "node_id": r.node_id,
            "local": r.local,
            "state": word(r.state),
            "split": [{"node_id": p.node_id, "layers": p.layers} for p in r.split],
        } for r in status.routes.routes],
        "peers": [{
            "id": p.node_id,
            "role": p.role,
            "state": p.state,
            "vram_gb": round(p.vram_gb, 2),
            "serving": list(p.serving),
            "rtt_ms": round(p.rtt_ms, 2),
            "version": p.version,
            "demand": dict(p.demand),
            "can_fetch": list(p.can_fetch),
            "spare": dict(p.spare),
            "free_gb": round(p.free_gb, 2),
            "promoted": dict(p.promoted),
        } for p in status.peers],
        "spare": dict(status.spare),
        "demand": [{"model": d.model_id, "requests_per_min": d.requests_per_min, "servers": d.servers,
                    "promoting": d.promoting} for d in status.demand],
        "rebalances": [{"time": round(r.time_unix, 3), "node_id": r.node_id, "model": r.model_id, "action": r.action,
                        "reason": r.reason} for r in status.rebalances],
    }
