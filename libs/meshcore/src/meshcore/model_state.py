"""The model-state enum in words, defined once for every service (node agent logs,
console JSON, proxy routes, /v1/models). The enum itself is `ModelState` in
proto/mesh/v1/node.proto.

A node's own models are in one of these states:
- loading: llama-server is starting (or the weights are being prepared);
- serving: this node's llama-server answers for the model (alone or as a split's host);
- worker: this node's rpc-server holds some layers of a split another node hosts;
- standby: the file is here and ready, another node serves the model;
- failed: gave up, or waiting to retry (the reason says which);
- stopped: stopped on purpose.
"""

from __future__ import annotations

from meshcore.api import node_pb2 as pb

WORDS: dict[int, str] = {
    pb.MODEL_STATE_LOADING: "loading",
    pb.MODEL_STATE_SERVING: "serving",
    pb.MODEL_STATE_WORKER: "worker",
    pb.MODEL_STATE_STANDBY: "standby",
    pb.MODEL_STATE_FAILED: "failed",
    pb.MODEL_STATE_STOPPED: "stopped",
}

# States in which the model is not reachable through this node's own llama-server:
# it has no route of its own here (the host's route, gossiped, is used instead).
NOT_ROUTED = frozenset({pb.MODEL_STATE_STOPPED, pb.MODEL_STATE_WORKER, pb.MODEL_STATE_STANDBY})


def word(state: int) -> str:
    return WORDS.get(state, "unknown")


def node_state(states: set[int]) -> str:
    """One word for a node from its models' states: idle (no models), loading,
    serving (all routed models serve), degraded (some serve, some failed), worker
    (holds layers for another node's split), standby (others serve all its models),
    or failed."""
    if not states:
        return "idle"
    if pb.MODEL_STATE_LOADING in states:
        return "loading"
    if pb.MODEL_STATE_SERVING in states:
        return "degraded" if pb.MODEL_STATE_FAILED in states else "serving"
    if pb.MODEL_STATE_FAILED in states:
        return "failed"
    if pb.MODEL_STATE_WORKER in states:
        return "worker"
    return "standby"
