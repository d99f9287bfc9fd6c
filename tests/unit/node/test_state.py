import asyncio
from pathlib import Path

from meshcore.api import node_pb2 as pb
from mesh_node.state import ModelEntry, NodeState


def state() -> NodeState:
    return NodeState("n" * 32, "m" * 32, "token", 8 << 30, "0.1.0")


async def test_changes_wake_watchers_and_routes_follow_model_states() -> None:
    s = state()
    assert s.node_state == "idle"
    seen = s.seq
    waiter = asyncio.create_task(s.changes.wait(seen))
    s.add_model(ModelEntry("a", Path("/a.gguf"), 10))
    assert await asyncio.wait_for(waiter, 1) > seen
    assert s.node_state == "loading"
    assert [r.state for r in s.routes().routes] == [pb.MODEL_STATE_LOADING]
    s.update_model("a", state=pb.MODEL_STATE_SERVING, port=1234)
    assert s.node_state == "serving"
    route = s.routes().routes[0]
    assert (route.endpoint, route.local, route.node_id) == ("127.0.0.1:1234", True, "n" * 32)
    s.add_model(ModelEntry("b", Path("/b.gguf"), 10, state=pb.MODEL_STATE_FAILED, reason="boom"))
    assert s.node_state == "degraded"
    snap = s.snapshot()
    assert [m.model_id for m in snap.models] == ["a", "b"] and snap.models[1].reason == "boom"
    assert snap.my_vram_gb == 8.0


def test_an_update_that_changes_nothing_does_not_bump() -> None:
    s = state()
    s.add_model(ModelEntry("a", Path("/a.gguf"), 10))
    seq = s.seq
    s.update_model("a", state=pb.MODEL_STATE_LOADING)
    assert s.seq == seq
