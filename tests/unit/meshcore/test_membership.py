import pytest

from meshcore.membership import ALIVE, DEAD, LEFT, Membership, NodeRecord, RecordError, newer


def rec(node: str, version: int, state: str = ALIVE, **kw: object) -> NodeRecord:
    return NodeRecord(node_id=node, version=version, state=state, **kw)  # type: ignore[arg-type]


def test_higher_version_wins_and_dead_beats_alive_at_equal_version() -> None:
    assert newer(rec("a", 2), rec("a", 1))
    assert not newer(rec("a", 1), rec("a", 2))
    assert newer(rec("a", 1, DEAD), rec("a", 1))
    assert newer(rec("a", 1, LEFT), rec("a", 1, DEAD))
    assert newer(rec("a", 2), rec("a", 1, DEAD))


def test_merge_keeps_the_newest_and_reports_changes() -> None:
    m = Membership(rec("me", 10))
    assert m.merge([rec("b", 5, serving=("x",))]) == [rec("b", 5, serving=("x",))]
    assert m.merge([rec("b", 4)]) == []
    assert m.merge([rec("b", 6)])[0].version == 6
    assert [r.node_id for r in m.alive_peers()] == ["b"]


def test_a_node_refutes_its_own_death() -> None:
    m = Membership(rec("me", 10))
    changed = m.merge([rec("me", 10, DEAD)])
    assert changed and changed[0].state == ALIVE and changed[0].version > 10
    assert m.own.state == ALIVE


def test_marking_dead_and_rejoin() -> None:
    m = Membership(rec("me", 10))
    m.merge([rec("b", 5)])
    assert m.mark("b", DEAD).state == DEAD
    assert m.alive_peers() == []
    assert m.mark("b", DEAD) is None
    m.merge([rec("b", 7)])  # b restarted with a newer incarnation
    assert [r.node_id for r in m.alive_peers()] == ["b"]


def test_digests_drive_push_pull() -> None:
    a, b = Membership(rec("a", 1)), Membership(rec("b", 1))
    a.merge([rec("c", 3)])
    b.merge([rec("c", 5), rec("d", 1)])
    to_a = b.newer_than(a.digest())
    assert {r.node_id for r in to_a} == {"b", "c", "d"}
    assert set(b.wanted_from(a.digest())) == {"a"}
    a.merge(to_a)
    b.merge([a.records[n] for n in b.wanted_from(a.digest())])
    assert a.digest() == b.digest()


def test_update_own_raises_the_version() -> None:
    m = Membership(rec("me", 1))
    assert m.update_own(serving=("x",)).version > 1


@pytest.mark.parametrize("data", [
    "x", {}, {"node_id": "a"}, {"node_id": "a", "version": -1}, {"node_id": "a", "version": 1, "state": "zombie"},
    {"node_id": "a", "version": 1, "addrs": "1.2.3.4:5"}, {"node_id": "a", "version": 1, "serving": ["x"] * 1000},
    {"node_id": "a" * 100, "version": 1}, {"node_id": "a", "version": 1, "rtt_ms": {"b": "fast"}},
    {"node_id": "a", "version": True}, {"node_id": "a", "version": 1, "splits": {"m": [["b"]]}},
    {"node_id": "a", "version": 1, "splits": {"m": [["b", -1]]}},
])
def test_absurd_records_are_refused(data: object) -> None:
    with pytest.raises(RecordError):
        NodeRecord.from_wire(data)


def test_wire_round_trip() -> None:
    r = rec("a", 3, addrs=("1.2.3.4:5",), serving=("m",), demand={"m": 4}, rtt_ms={"b": 1.5}, role="client",
            splits={"m": [["a", 2], ["b", 1]]})
    assert NodeRecord.from_wire(r.to_wire()) == r
