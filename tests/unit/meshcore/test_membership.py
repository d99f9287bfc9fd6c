import time
from dataclasses import replace

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings, strategies as st

from meshcore.identity import node_id_of
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


KEY_A, KEY_B = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
A, B = node_id_of(KEY_A.public_key()), node_id_of(KEY_B.public_key())


def test_wire_round_trip() -> None:
    r = rec(A, 3, addrs=("1.2.3.4:5", "[fd00::2]:7000"), serving=("m",), demand={"m": 4}, rtt_ms={B: 1.5},
            role="client", splits={"m": [[A, 2], [B, 1]]}).signed(KEY_A)
    assert NodeRecord.from_wire(r.to_wire()) == r


def test_records_are_their_owners_word() -> None:
    """No member can forge, raise or retire another node's record; it may only say it is dead."""
    honest = rec(A, 3, serving=("m",)).signed(KEY_A)
    forgeries = [
        rec(A, 3, serving=("m",)).signed(KEY_B),                     # someone else's key
        replace(honest, version=2 ** 62),                            # a higher version
        replace(honest, vram_bytes=1 << 50, serving=("m", "all")),    # a better offer
        replace(honest, state=LEFT, version=2 ** 62),                # evicted for good
        replace(honest, sig=b"\0" * 64),
        rec(A, int(time.time() * 1000) + 10 ** 9).signed(KEY_A),     # signed, but days ahead of the clock
    ]
    for bad in forgeries:
        with pytest.raises(RecordError):
            NodeRecord.from_wire(bad.to_wire())
    for opinion in (DEAD, LEFT):                                      # opinions at the known version: allowed
        assert NodeRecord.from_wire(replace(honest, state=opinion).to_wire()).state == opinion
    left = rec(A, 4, state=LEFT).signed(KEY_A)                        # the owner leaving: allowed
    assert NodeRecord.from_wire(left.to_wire()).state == LEFT


def test_the_owner_signs_every_change() -> None:
    m = Membership(rec(A, 1), sign=lambda r: r.signed(KEY_A))
    assert m.own.verified()
    assert m.update_own(serving=("x",)).verified()
    refuted = m.merge([replace(m.own, state=DEAD)])
    assert refuted[0].verified() and refuted[0].state == ALIVE


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["node_id", "version", "addrs", "role", "vram_bytes", "models_on_disk",
                                        "serving", "demand", "rtt_ms", "state", "splits", "key", "sig", "x"]),
                       st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40)
                                    | st.binary(max_size=70),
                                    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c,
                                                                                          max_size=4),
                                    max_leaves=10)))
def test_any_decoded_value_gives_a_record_or_record_error(data: dict) -> None:
    try:
        NodeRecord.from_wire(data)
    except RecordError:
        pass


@pytest.mark.parametrize("bad", [
    {"addrs": ["evil"]}, {"addrs": ["1.2.3.4:99999"]}, {"addrs": ["1.2.3.4:"]}, {"addrs": ["host.example:80"]},
    {"addrs": ["1.2.3.4:x"]}, {"splits": {"m": [[A, 1 << 32]]}}, {"splits": {"m": [["not-an-id", 1]]}},
    {"demand": {"m": -1}}, {"demand": {"m": 1.5}}, {"rtt_ms": {B: float("inf")}}, {"rtt_ms": {B: -3.0}},
    {"node_id": "A" * 32}, {"node_id": "0" * 31},
])
def test_values_that_would_crash_a_consumer_are_refused(bad: dict) -> None:
    """Each of these once reached code that trusted it: a dialer's int(port), the route
    table's uint32 layers, the proto's uint64 demand."""
    with pytest.raises(RecordError):
        NodeRecord.from_wire({"node_id": A, "version": 1, **bad})


def nid(i: int) -> str:
    return f"{i:032x}"


def test_a_flood_of_records_cannot_grow_past_the_cap() -> None:
    from meshcore.membership import MAX_RECORDS, MAX_RECORDS_PER_EXCHANGE

    m = Membership(rec(A, 1))
    m.merge([rec(nid(i), 1) for i in range(MAX_RECORDS + 500)])
    assert len(m.records) == MAX_RECORDS
    # Known records still update; the digest of a flooded peer is answered in bounded pieces.
    assert m.merge([rec(nid(MAX_RECORDS + 100), 2)])[0].version == 2
    flood = {nid(i): [1, 0] for i in range(10 ** 4, 10 ** 4 + 3000)}
    assert len(m.wanted_from(flood)) == MAX_RECORDS_PER_EXCHANGE
    assert len(m.newer_than({})) == MAX_RECORDS_PER_EXCHANGE


def test_a_flood_never_pushes_out_peers_known_first_hand() -> None:
    """Records make room for newer ones only among nodes this node merely heard of: a
    member flooding valid records churns its own kind, never a probed peer's record."""
    from meshcore.membership import MAX_RECORDS

    m = Membership(rec(A, 1))
    honest = [nid(i) for i in range(20)]
    m.merge([rec(n, 1) for n in honest])
    for start in range(10 ** 5, 10 ** 5 + 3 * MAX_RECORDS, 500):
        m.merge([rec(nid(i), 1) for i in range(start, start + 500)], protected=set(honest))
    assert len(m.records) == MAX_RECORDS and all(n in m.records for n in honest)
    newcomer = nid(7 * 10 ** 6)  # an honest node that joins during the flood still gets in
    assert m.merge([rec(newcomer, 1)], protected=set(honest)) and newcomer in m.records
    full = Membership(rec(A, 1))
    everyone = {nid(i) for i in range(MAX_RECORDS - 1)}
    full.merge([rec(n, 1) for n in everyone])
    assert full.merge([rec(newcomer, 1)], protected=everyone) == []  # nobody may make room: it waits


def big(i: int, key: Ed25519PrivateKey | None = None) -> NodeRecord:
    """The biggest record the caps allow (every model list and map full), signed."""
    from meshcore.membership import MAX_MODELS
    key = key or Ed25519PrivateKey.from_private_bytes(i.to_bytes(32, "little"))
    names = tuple(f"m{i}-{j}-" + "x" * 150 for j in range(MAX_MODELS))
    return NodeRecord(node_id=node_id_of(key.public_key()), version=1, models_on_disk=names[:20],
                      serving=names[:20], can_fetch=names[:20], demand={n: 1 for n in names[:8]}).signed(key)


def test_records_are_bounded_in_bytes_and_so_are_replies_and_the_table() -> None:
    from meshcore.membership import MAX_RECORD_BYTES, MAX_REPLY_BYTES, MAX_TABLE_BYTES, MAX_MODELS
    from meshcore.wire import MAX_FRAME, encode_frame

    records = [big(i) for i in range(1, 1200)]
    assert all(r.size <= MAX_RECORD_BYTES for r in records) and records[0].size > 10_000
    wire = NodeRecord.from_wire(records[0].to_wire())
    assert wire == records[0]
    key = Ed25519PrivateKey.from_private_bytes(b"\x01" * 32)
    names = tuple(f"{j}" + "y" * 250 for j in range(MAX_MODELS))
    huge = NodeRecord(node_id=node_id_of(key.public_key()), version=1, models_on_disk=names, serving=names,
                      can_fetch=names).signed(key)
    with pytest.raises(RecordError, match="bytes, over"):
        NodeRecord.from_wire(huge.to_wire())
    too_many = NodeRecord(node_id=node_id_of(key.public_key()), version=1,
                          serving=tuple(str(j) for j in range(MAX_MODELS + 1))).signed(key)
    with pytest.raises(RecordError):
        NodeRecord.from_wire(too_many.to_wire())
    m = Membership(rec(A, 1))
    m.merge(records)
    assert m.bytes <= MAX_TABLE_BYTES and m.bytes == sum(r.size for n, r in m.records.items() if n != A)
    reply = m.newer_than({})
    assert sum(r.size for r in reply) <= MAX_REPLY_BYTES
    assert len(encode_frame({"records": [r.to_wire() for r in reply], "want": [nid(i) for i in range(512)]})) < MAX_FRAME
    assert sum(r.size for r in m.sized(list(m.records))) <= MAX_REPLY_BYTES


def test_this_nodes_own_record_is_kept_within_what_peers_take() -> None:
    from meshcore.membership import MAX_MODELS, PUBLISHED_RTT_PEERS
    m = Membership(rec(A, 1))
    own = m.update_own(models_on_disk=tuple(f"model-{j}" for j in range(MAX_MODELS + 10)),
                       rtt_ms={nid(j): float(j) for j in range(200)})
    assert len(own.models_on_disk) == MAX_MODELS and own.models_on_disk[0] == "model-0"
    assert sorted(own.rtt_ms) == [nid(j) for j in range(PUBLISHED_RTT_PEERS)]  # the nearest


def test_dead_records_expire_and_are_not_brought_back_at_the_same_version() -> None:
    m = Membership(rec(A, 1))
    m.merge([rec(B, 5), rec(nid(7), 3)])
    m.mark(B, DEAD)
    now = m.changed_at[B]
    assert m.expire(now + 10) == []
    assert m.expire(now + 3601) == [B] and B not in m.records and nid(7) in m.records  # alive stays
    assert m.merge([rec(B, 5, DEAD)]) == [] and m.wanted_from({B: [5, 1]}) == []  # an old copy from a peer
    assert m.merge([rec(B, 6)])[0].version == 6  # the node came back: a newer incarnation
