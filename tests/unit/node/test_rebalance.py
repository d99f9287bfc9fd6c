"""Rebalancing and the per-model decision, pure (mesh_node.rebalance, mesh_node.decide)."""

from meshcore.demand import DemandMeter
from meshcore.membership import DEAD, LEFT, NodeRecord
from mesh_node.decide import Fail, Held, Host, Local, Serve, StandBy, Work, decide
from mesh_node.planner import Plan
from mesh_node.rebalance import Thresholds, demotion, eager_pick, promotions, wanted
from meshcore.mesh_load import mesh_load

GIB = 1 << 30
TH = Thresholds(hot_rpm=10, imbalance=3, cool_rpm=5, wanted_rpm=1, min_serve_s=60)


def rec(nid: str, vram: float = 8, serving=(), spare: dict | None = None, demand: dict | None = None,
        promoted: dict | None = None, free: float | None = None, state: str = "alive", role: str = "node",
        can_fetch=(), on_disk=()) -> NodeRecord:
    return NodeRecord(node_id=nid, version=1, role=role, vram_bytes=int(vram * GIB), serving=tuple(serving),
                      models_on_disk=tuple(on_disk or serving), spare={k: int(v * GIB) for k, v in (spare or {}).items()},
                      demand=demand or {}, promoted=promoted or {}, state=state, can_fetch=tuple(can_fetch),
                      free_bytes=int((vram if free is None else free) * GIB))


def by_id(*records: NodeRecord) -> dict:
    return {r.node_id: r for r in records}


# -- what the mesh wants --------------------------------------------------------------

def test_a_model_whose_last_server_died_is_lost_and_most_urgent() -> None:
    records = [rec("a", serving=["m"], state=DEAD), rec("b", serving=["x"], demand={"x": 500, "q": 50}),
               rec("c", spare={"m": 1, "q": 1})]
    assert [m for m, _ in wanted(mesh_load(records), TH)] == ["m", "q", "x"]
    assert "is dead" in wanted(mesh_load(records), TH)[0][1]
    assert promotions(records, TH)[0].node_id == "c" and promotions(records, TH)[0].model_id == "m"


def test_a_model_a_departed_node_served_is_lost_unless_another_serves_it() -> None:
    assert "gone" in mesh_load([rec("a", serving=["m"], state=LEFT)]).lost["m"]
    assert mesh_load([rec("a", serving=["m"], state=LEFT), rec("b", serving=["m"])]).lost == {}


def test_asked_for_but_unserved_needs_wanted_rpm() -> None:
    assert wanted(mesh_load([rec("a", demand={"m": 1})]), TH)[0][0] == "m"
    assert wanted(mesh_load([rec("a", demand={"m": 1})]), Thresholds(wanted_rpm=2)) == []


def test_hot_needs_the_threshold_per_server_and_the_imbalance() -> None:
    def hot(demand_m: int, demand_x: int, servers_m: int = 1) -> bool:
        records = [rec(f"m{i}", serving=["m"]) for i in range(servers_m)] + [rec("x", serving=["x"])]
        records.append(rec("client", role="client", demand={"m": demand_m, "x": demand_x}))
        return any(m == "m" for m, _ in wanted(mesh_load(records), TH))
    assert hot(30, 10)               # 30 >= 10 and 30 >= 3 x 10
    assert not hot(29, 10)           # under 3x the other model
    assert not hot(9, 0)             # under the threshold
    assert hot(10, 0)                # exactly the threshold, nothing else busy
    assert not hot(30, 0, servers_m=4)  # 7.5 per server
    assert hot(40, 0, servers_m=4)


def test_demand_of_dead_members_does_not_count() -> None:
    records = [rec("a", serving=["m"]), rec("c", role="client", demand={"m": 100}, state=DEAD)]
    assert mesh_load(records).demand == {}


def test_one_promotion_per_model_and_per_node_at_a_time() -> None:
    records = [rec("s", serving=["m"], demand={"m": 50, "n": 50}), rec("a", spare={"m": 1, "n": 1}, free=8),
               rec("b", spare={"m": 1, "n": 1}, free=4)]
    chosen = {(p.node_id, p.model_id) for p in promotions(records, TH)}
    assert chosen == {("a", "n"), ("b", "m")}  # n (nobody serves it) first, to the node with most memory
    loading = records[:2] + [rec("b", spare={"n": 1}, promoted={"m": "hot"}, free=4)]
    assert {(p.node_id, p.model_id) for p in promotions(loading, TH)} == {("a", "n")}


def test_standby_needs_the_memory_ties_go_to_the_lowest_id() -> None:
    records = [rec("z", demand={"m": 5}), rec("b", spare={"m": 4}, free=4), rec("a", spare={"m": 4}, free=8)]
    assert promotions(records, TH)[0].node_id == "a"
    records = [rec("z", demand={"m": 5}), rec("b", spare={"m": 4}, free=8), rec("a", spare={"m": 4}, free=8)]
    assert promotions(records, TH)[0].node_id == "a"
    assert promotions([rec("z", demand={"m": 5}), rec("a", spare={"m": 4}, free=4)], TH) == []


def test_a_node_that_could_download_it_is_asked_only_when_nobody_has_the_file() -> None:
    sizes = {"m": 2 * GIB}
    records = [rec("z", demand={"m": 5}), rec("a", can_fetch=["m"], free=16)]
    [p] = promotions(records, TH, sizes)
    assert p.node_id == "a" and p.fetch
    records.append(rec("b", spare={"m": 2}, free=4))
    [p] = promotions(records, TH, sizes)
    assert p.node_id == "b" and not p.fetch


# -- letting a copy go -------------------------------------------------------------------

def test_demotion_needs_min_time_another_copy_and_low_demand() -> None:
    records = [rec("a", serving=["m"]), rec("b", serving=["m"], promoted={"m": "hot"}), rec("c", demand={"m": 4})]
    assert demotion(records, "b", "m", 59, TH) is None           # too soon
    assert "fell to 4" in demotion(records, "b", "m", 61, TH)
    busy = records[:2] + [rec("c", demand={"m": 5})]
    assert demotion(busy, "b", "m", 61, TH) is None               # the other would see 5 (not under cool_rpm)
    assert demotion([rec("b", serving=["m"], promoted={"m": "x"})], "b", "m", 999, TH) is None  # the last copy


def test_of_two_promoted_copies_one_goes_at_a_time() -> None:
    records = [rec("a", serving=["m"]), rec("b", serving=["m"], promoted={"m": "x"}),
               rec("c", serving=["m"], promoted={"m": "x"})]
    assert demotion(records, "b", "m", 999, TH) is None
    assert demotion(records, "c", "m", 999, TH) is not None


def test_no_flapping_between_promote_and_demote() -> None:
    """Just over the hot threshold with one server -> promoted; with two servers the
    per-server demand halves, which neither promotes again nor demotes."""
    base = [rec("a", serving=["m"]), rec("z", role="client", demand={"m": 12})]
    assert promotions(base + [rec("b", spare={"m": 1})], TH)[0].node_id == "b"
    after = [rec("a", serving=["m"]), rec("z", role="client", demand={"m": 12}),
             rec("b", serving=["m"], promoted={"m": "hot"})]
    assert promotions(after + [rec("c", spare={"m": 1})], TH) == []  # 6 per server: not hot
    assert demotion(after, "b", "m", 999, TH) is None               # 12 for one: over cool_rpm
    cooled = [after[0], rec("z", role="client", demand={"m": 4}), after[2]]
    assert demotion(cooled, "b", "m", 999, TH) is not None


def test_demand_meter_ages_out_and_survives_a_proxy_restart() -> None:
    meter = DemandMeter(window_s=60)
    meter.observe({"m": 5}, 0)
    meter.observe({"m": 12}, 10)
    assert meter.rates(30) == {"m": 12}
    meter.observe({"m": 3}, 40)          # the proxy restarted: 3 new
    assert meter.rates(65) == {"m": 10}  # the first 5 fell out of the window
    assert meter.rates(101) == {}


# -- --auto's pick ----------------------------------------------------------------------

def test_eager_pick_prefers_unserved_demand_then_the_busiest_and_files_on_disk() -> None:
    me = rec("me", spare={"a": 1, "b": 1, "c": 1}, free=8)
    records = [me, rec("s", serving=["a", "b"], demand={"a": 3, "b": 9})]
    assert eager_pick(records, me).model_id == "b"
    records.append(rec("z", role="client", demand={"c": 1}))
    pick = eager_pick(records, me)
    assert pick.model_id == "c" and "nobody serves it" in pick.why
    assert eager_pick([rec("me", spare={"q": 1})], rec("me", spare={"q": 1})) is None  # nobody wants q


# -- decide() ---------------------------------------------------------------------------

def local(held: dict, vram: float = 8, **kw) -> Local:
    return Local(held=held, vram_bytes=int(vram * GIB), now=1000.0, thresholds=TH, **kw)


def test_pinned_model_that_fits_is_served_and_after_giving_up_fails() -> None:
    records = by_id(rec("me"))
    assert decide(records, "me", local({"m": Held("m", GIB, pinned=True)})) == {"m": Serve()}
    gave_up = Held("m", GIB, pinned=True, gave_up=(None, "gave up after 3 failed starts: boom"))
    assert decide(records, "me", local({"m": gave_up})) == {"m": Fail("gave up after 3 failed starts: boom")}


def test_a_promoted_copy_that_failed_is_let_go() -> None:
    held = Held("m", GIB, running=True, gave_up=(None, "boom"))
    d = decide(by_id(rec("me")), "me", local({"m": held}))["m"]
    assert isinstance(d, StandBy) and not d.run and "boom" in d.why


def test_a_spare_model_is_promoted_only_on_this_node_when_chosen() -> None:
    records = by_id(rec("me", spare={"m": 1}), rec("other", spare={"m": 1}, free=4), rec("c", demand={"m": 2}))
    d = decide(records, "me", local({"m": Held("m", GIB)}))["m"]
    assert isinstance(d, Serve) and "nobody serves it" in d.why
    d = decide(records, "other", local({"m": Held("m", GIB)}))["m"]
    assert isinstance(d, StandBy) and not d.run


def test_no_second_promotion_while_one_is_loading_here() -> None:
    records = by_id(rec("me", spare={"n": 1}), rec("c", demand={"n": 2, "m": 2}))
    loading = Held("m", GIB, running=True, serving_since=None)
    d = decide(records, "me", local({"m": loading, "n": Held("n", GIB)}))
    assert d["m"] == Serve() and isinstance(d["n"], StandBy)


def test_eager_node_serving_nothing_picks_and_a_pinned_node_does_not() -> None:
    records = by_id(rec("me", spare={"m": 1}), rec("s", serving=["m"]))
    d = decide(records, "me", local({"m": Held("m", GIB)}, eager=True))["m"]
    assert isinstance(d, Serve) and d.picked
    d = decide(records, "me", local({"m": Held("m", GIB), "p": Held("p", GIB, pinned=True)}, eager=True))
    assert isinstance(d["m"], StandBy)


def test_demoted_copy_is_not_run() -> None:
    records = by_id(rec("a", serving=["m"]), rec("me", serving=["m"], promoted={"m": "hot"}))
    held = Held("m", GIB, running=True, serving_since=1000.0 - 61)
    d = decide(records, "me", local({"m": held}))["m"]
    assert isinstance(d, StandBy) and not d.run and "can take it" in d.why
    picked = Held("m", GIB, running=True, picked=True, serving_since=0.0)
    assert decide(records, "me", local({"m": picked}))["m"] == Serve()


def test_split_decisions_host_work_standby_and_fail() -> None:
    big = Held("m", 12 * GIB, pinned=True, layers=10)
    records = by_id(NodeRecord(node_id="a", version=1, vram_bytes=8 * GIB, models_on_disk=("m",), rtt_ms={"b": 1.0}),
                    NodeRecord(node_id="b", version=1, vram_bytes=8 * GIB, models_on_disk=("m",)))
    host = decide(records, "a", local({"m": big}))["m"]
    assert isinstance(host, Host) and host.plan.workers == ("b",)
    work = decide(records, "b", local({"m": big}))["m"]
    assert isinstance(work, Work) and work.part[0] == "a"
    gave_up = Held("m", 12 * GIB, pinned=True, layers=10, plan=host.plan, gave_up=(host.plan, "boom"))
    assert isinstance(decide(records, "a", local({"m": gave_up}))["m"], Fail)
    alone = by_id(records["a"])
    assert isinstance(decide(alone, "a", local({"m": big}))["m"], Fail)  # does not fit anywhere


def test_a_gave_up_split_is_tried_again_when_its_members_change() -> None:
    big = Held("m", 12 * GIB, pinned=True, layers=10,
               plan=Plan("m", "a", ("gone",), (0.5, 0.5)), gave_up=(Plan("m", "a", ("gone",), (0.5, 0.5)), "boom"))
    records = by_id(NodeRecord(node_id="a", version=1, vram_bytes=8 * GIB, models_on_disk=("m",), rtt_ms={"b": 1.0}),
                    NodeRecord(node_id="b", version=1, vram_bytes=8 * GIB, models_on_disk=("m",)))
    assert isinstance(decide(records, "a", local({"m": big}))["m"], Host)


def test_a_lost_model_can_be_stood_in_for_only_by_a_standby_with_room() -> None:
    from meshcore.mesh_load import can_stand_in
    dead = rec("a", serving=["m"], state=DEAD)
    assert can_stand_in([dead, rec("b", spare={"m": 1}, free=2)], "m")
    assert not can_stand_in([dead, rec("b", spare={"m": 1}, free=1)], "m")   # 1.1 GiB needed
    assert not can_stand_in([dead, rec("b", spare={"m": 1}, free=2, state=DEAD)], "m")


# -- issue 28, item 3: a pass is linear in the names gossiped ---------------------------

def test_a_pass_over_thousands_of_served_names_is_linear() -> None:
    """2,048 served names took 2.6 s a pass (others_per_server summed over every name, for
    every name); now per_server is asked a bounded number of times per name."""
    from meshcore import mesh_load as ml
    names = [f"m{i}" for i in range(2048)]
    records = [rec(f"n{i:04d}", serving=names[i * 32:(i + 1) * 32], demand={n: 3 for n in names[i * 32:(i + 1) * 32]})
               for i in range(64)] + [rec("standby", spare={n: 1 for n in names[:64]})]
    calls = 0
    real = ml.MeshLoad.per_server

    def counted(self, model_id):  # noqa: ANN001, ANN202
        nonlocal calls
        calls += 1
        return real(self, model_id)

    ml.MeshLoad.per_server = counted  # type: ignore[method-assign]
    try:
        local = Local(held={"m1": Held("m1", GIB, pinned=True)}, vram_bytes=8 * GIB, now=0.0)
        decide(by_id(*records), "standby", local)
    finally:
        ml.MeshLoad.per_server = real  # type: ignore[method-assign]
    assert calls <= 4 * len(names), calls


def test_others_per_server_is_the_mean_of_the_other_models() -> None:
    records = [rec("a", serving=["x"], demand={"x": 30}), rec("b", serving=["y", "z"], demand={"y": 10, "z": 2}),
               rec("c", serving=["y"])]
    load = mesh_load(records)
    for model in ("x", "y", "z", "unserved"):
        others = [load.per_server(m) for m in load.servers if m != model]
        assert abs(load.others_per_server(model) - sum(others) / len(others)) < 1e-9


def test_at_most_max_wanted_models_are_considered_a_pass() -> None:
    from mesh_node.rebalance import MAX_WANTED
    asked = {f"q{i}": 5 + i % 7 for i in range(3 * MAX_WANTED)}
    load = mesh_load([rec("client", role="client", demand=asked)])
    top = wanted(load, TH)
    assert len(top) == MAX_WANTED
    assert [m for m, _ in top] == [m for m, _ in wanted(load, TH)]  # the same answer every time
    assert min(asked[m] for m, _ in top) >= max(asked[m] for m in asked if m not in dict(top))


async def test_the_reconciler_decides_off_the_event_loop(tmp_path, monkeypatch) -> None:  # noqa: ANN001
    """A pass at the caps takes tenths of a second (bench/decide.py): it runs in a thread,
    over a snapshot, so pings and gossip on the loop are answered meanwhile."""
    import threading

    from meshcore.config import NodeConfig
    from meshcore.ids import MeshId, NodeId
    from mesh_node import reconciler as reconciler_module
    from mesh_node.reconciler import Reconciler
    from mesh_node.state import NodeState

    threads = []
    real = reconciler_module.decide

    def spy(records, me, local):  # noqa: ANN001, ANN202
        threads.append(threading.get_ident())
        return real(records, me, local)

    monkeypatch.setattr(reconciler_module, "decide", spy)
    state = NodeState(NodeId("a" * 32), MeshId("b" * 32), "", 8 * GIB, "test")
    reconciler = Reconciler(NodeConfig(home=str(tmp_path)), state, lambda *args: None)
    assert reconciler.decisions() == {}  # the first pass, at once
    await reconciler.refresh()
    assert len(threads) == 1  # nothing changed: no pass
    state.mesh_changed()
    await reconciler.refresh()
    assert threads == [threading.get_ident(), threads[1]] and threads[1] != threading.get_ident()
