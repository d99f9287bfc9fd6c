from meshcore.api import node_pb2 as pb
from meshcore.model_state import node_state, word

L, S, W, B, F = (pb.MODEL_STATE_LOADING, pb.MODEL_STATE_SERVING, pb.MODEL_STATE_WORKER,
                 pb.MODEL_STATE_STANDBY, pb.MODEL_STATE_FAILED)


def test_every_enum_value_has_a_word() -> None:
    for value in pb.ModelState.values():
        if value != pb.MODEL_STATE_UNSPECIFIED:
            assert word(value) != "unknown"


def test_a_worker_is_never_called_failed() -> None:
    assert node_state({W}) == "worker"
    assert node_state({W, B}) == "worker"
    assert node_state({B}) == "standby"
    assert node_state({S, W}) == "serving"
    assert node_state({S, F}) == "degraded"
    assert node_state({F, W}) == "failed"
    assert node_state({L, S}) == "loading"
    assert node_state(set()) == "idle"
