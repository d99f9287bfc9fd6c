import pytest

from meshcore.membership import DEAD, NodeRecord
from mesh_node.planner import MAX_RTT_MS, Plan, keep_or_replan, layer_split, plan_model

GIB = 1 << 30
M = "model"


def node(nid: str, vram_gib: float, rtt: dict | None = None, on_disk: bool = True, role: str = "node",
         state: str = "alive") -> NodeRecord:
    return NodeRecord(node_id=nid, version=1, role=role, vram_bytes=int(vram_gib * GIB), state=state,
                      models_on_disk=(M,) if on_disk else (), rtt_ms=rtt or {})


def test_fits_solo_on_the_node_with_most_memory() -> None:
    plan = plan_model([node("a", 8), node("b", 16)], M, 10 * GIB)
    assert plan == Plan(M, "b", (), (1.0,))


def test_host_tie_breaks_on_node_id() -> None:
    assert plan_model([node("b", 16), node("a", 16)], M, GIB).host == "a"


def test_split_adds_lowest_rtt_workers_until_it_fits() -> None:
    host = node("h", 4, rtt={"far": 50.0, "near": 1.0, "mid": 10.0})
    plan = plan_model([host, node("far", 3), node("near", 3), node("mid", 3)], M, 9 * GIB)
    assert plan.host == "h" and plan.workers == ("near", "mid") and plan.fits
    assert plan.fractions == pytest.approx((0.4, 0.3, 0.3))


def test_rtt_cap_clients_and_missing_files_are_excluded() -> None:
    host = node("h", 4, rtt={"slow": MAX_RTT_MS + 1, "client": 1.0, "nofile": 1.0, "ok": 2.0})
    records = [host, node("slow", 3), node("client", 8, role="client"), node("nofile", 8, on_disk=False),
               node("ok", 2)]
    plan = plan_model(records, M, 5 * GIB)
    assert plan.workers == ("ok",) and plan.fits


def test_does_not_fit_says_so_in_words() -> None:
    plan = plan_model([node("h", 2, rtt={"w": 1.0}), node("w", 2)], M, 8 * GIB)
    assert not plan.fits and "needs 8.80 GiB" in plan.reason and "4.00 GiB" in plan.reason
    assert not plan_model([node("h", 2, on_disk=False)], M, GIB).fits


def test_forced_split_and_max_vram() -> None:
    plan = plan_model([node("h", 64, rtt={"w": 1.0}), node("w", 1)], M, GIB, force_split=True)
    assert plan.workers == ("w",)
    # --max-vram is what a node advertises: a capped node is planned with the cap.
    assert plan_model([node("h", 0.7, rtt={"w": 1.0}), node("w", 0.5)], M, GIB).workers == ("w",)


def test_only_ready_workers_take_part() -> None:
    records = [node("h", 1.2, rtt={"a": 1.0, "b": 2.0}), node("a", 1), node("b", 1)]
    assert plan_model(records, M, int(1.5 * GIB), ready={"b"}).workers == ("b",)


def test_no_flapping_while_members_live() -> None:
    records = [node("h", 1.2, rtt={"a": 1.0, "b": 2.0}), node("a", 1), node("b", 1)]
    first = plan_model(records, M, int(1.5 * GIB))
    assert first.workers == ("a",)
    # b becomes closer than a, and a's memory changes a little: the plan stays.
    changed = [node("h", 1.2, rtt={"a": 5.0, "b": 0.5}), node("a", 1.1), node("b", 1)]
    assert keep_or_replan(first, changed, M, int(1.5 * GIB)) is first
    # a dies: a new plan uses b.
    gone = [node("h", 1.2, rtt={"b": 0.5}), node("a", 1, state=DEAD), node("b", 1)]
    assert keep_or_replan(first, gone, M, int(1.5 * GIB)).workers == ("b",)


@pytest.mark.parametrize("layers,fractions,expected", [
    (4, (0.5, 0.5), (2, 2)), (5, (0.5, 0.5), (3, 2)), (2, (0.9, 0.1), (1, 1)), (10, (0.4, 0.3, 0.3), (4, 3, 3)),
    (3, (1.0,), (3,)),
])
def test_layer_split(layers: int, fractions: tuple, expected: tuple) -> None:
    counts = layer_split(layers, fractions)
    assert counts == expected and sum(counts) == layers


def test_offload_args_place_the_output_layer_with_the_last_device() -> None:
    from mesh_node.model_runner import offload_args

    assert offload_args((2, 1), gpu=False) == ["--n-gpu-layers", "2", "--tensor-split", "2"]
    assert offload_args((1, 1, 1), gpu=False) == ["--n-gpu-layers", "3", "--tensor-split", "1,2"]
    assert offload_args((2, 1, 1), gpu=True) == ["--n-gpu-layers", "999", "--tensor-split", "1,1,3"]


def test_forced_split_with_no_peer_serves_alone_until_one_joins() -> None:
    alone = plan_model([node("h", 64)], M, GIB, force_split=True)
    assert alone == Plan(M, "h", (), (1.0,)) and alone.fits
    # Nothing changed: the plan stays.
    assert keep_or_replan(alone, [node("h", 64)], M, GIB, force_split=True) is alone
    # A peer with the model joins: split.
    joined = [node("h", 64, rtt={"w": 1.0}), node("w", 8)]
    assert keep_or_replan(alone, joined, M, GIB, force_split=True).workers == ("w",)
    # Without --split a solo plan is never re-planned for a new peer.
    solo = plan_model([node("h", 64)], M, GIB)
    assert keep_or_replan(solo, joined, M, GIB) is solo


def test_planned_part_places_layers_host_first() -> None:
    from mesh_node.planner import planned_part

    plan = Plan(M, "h", ("a", "b"), (0.5, 0.25, 0.25))
    assert planned_part(plan, "a", (4, 2, 2)) == ("h", 4, 2, 8)
    assert planned_part(plan, "b", (4, 2, 2)) == ("h", 6, 2, 8)


def test_offload_args_alone_is_plain() -> None:
    from mesh_node.model_runner import offload_args

    assert offload_args((8,), gpu=False) == [] and offload_args((8,), gpu=True) == []


def test_a_plan_whose_host_is_no_longer_elected_is_replaced() -> None:
    """Two nodes planned before gossip converged: the one that is not elected yields."""
    early = plan_model([node("b", 1.2, rtt={"c": 1.0}), node("c", 1)], M, int(1.5 * GIB))
    assert early.host == "b"
    converged = [node("a", 1.2, rtt={"b": 1.0, "c": 2.0}), node("b", 1.2, rtt={"c": 1.0}), node("c", 1)]
    replanned = keep_or_replan(early, converged, M, int(1.5 * GIB))
    assert replanned.host == "a"
