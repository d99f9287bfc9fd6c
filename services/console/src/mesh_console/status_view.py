"""The console's JSON view of the node agent's status (what /api/status returns)."""

from __future__ import annotations

from meshcore.api import node_pb2 as pb

MODEL_STATES = {
    pb.MODEL_STATE_LOADING: "loading",
    pb.MODEL_STATE_SERVING: "serving",
    pb.MODEL_STATE_FAILED: "failed",
    pb.MODEL_STATE_STOPPED: "stopped",
}


def status_json(status: pb.NodeStatus, api_port: int) -> dict:
    return {
        "node_id": status.node_id,
        "mesh_id": status.mesh_id,
        "token": status.token,
        "node_state": status.node_state,
        "version": status.version,
        "my_vram_gb": round(status.my_vram_gb, 2),
        "api_port": api_port,
        "models": [{
            "name": m.model_id,
            "state": MODEL_STATES.get(m.state, "unknown"),
            "reason": m.reason,
            "size_bytes": m.size_bytes,
            "path": m.path,
            "restarts": m.restarts,
            "split": [{"node_id": p.node_id, "layers": p.layers, "fraction": round(p.fraction, 4)} for p in m.split],
        } for m in status.models],
        "rpc_links": [{"peer": link.peer, "model": link.model, "bytes_to_worker": link.bytes_to_worker,
                       "bytes_from_worker": link.bytes_from_worker} for link in status.rpc_links],
        "routes": [{
            "model": r.model_id,
            "node_id": r.node_id,
            "local": r.local,
            "state": MODEL_STATES.get(r.state, "unknown"),
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
        } for p in status.peers],
    }
