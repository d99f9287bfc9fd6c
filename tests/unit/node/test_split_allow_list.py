"""The split allow-list (meshcore.split_policy) in the planner, and owner keys in
signed records."""

import time
from dataclasses import replace

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from meshcore.errors import ConfigError
from meshcore.identity import Identity, public_bytes
from meshcore.membership import MESH, OWNER, NodeRecord, RecordError, owner_statement
from meshcore.split_policy import describe, may_pair, parse_split_with
from mesh_node.planner import plan_model

GIB = 1 << 30
M = "model"
ALICE, BOB = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()


def node(i: int, vram_gib: float, owner: Ed25519PrivateKey, split_with: tuple[str, ...], rtt: float = 1.0
         ) -> NodeRecord:
    key = Ed25519PrivateKey.from_private_bytes(i.to_bytes(32, "little"))
    ident = Identity(key)
    record = NodeRecord(node_id=ident.node_id, version=int(time.time() * 1000), vram_bytes=int(vram_gib * GIB),
                        models_on_disk=(M,), owner=public_bytes(owner),
                        owner_sig=owner.sign(owner_statement(ident.public_bytes)), split_with=split_with)
    return NodeRecord.from_wire(record.signed(key).to_wire())  # as a peer would receive it


def with_rtt(host: NodeRecord, *peers: NodeRecord) -> NodeRecord:
    return replace(host, rtt_ms={p.node_id: 1.0 for p in peers})


def test_same_owner_splits_strangers_do_not() -> None:
    host = node(1, 4, ALICE, (OWNER,))
    mine, stranger = node(2, 4, ALICE, (OWNER,)), node(3, 6, BOB, (MESH,))
    host, mine = with_rtt(host, mine, stranger), with_rtt(mine, host, stranger)
    plan = plan_model([host, mine, stranger], M, 7 * GIB)
    # The stranger offers the most memory but cannot hold the model alone, and Alice's
    # nodes will not pair with it: one of hers hosts, the other is the worker.
    assert plan.fits and set(plan.members) == {host.node_id, mine.node_id}
    assert may_pair(host, mine) and not may_pair(host, stranger)
    big = node(4, 8, BOB, (MESH,))  # a stranger that holds it alone still hosts it (no split needed)
    assert plan_model([host, mine, big], M, 7 * GIB).host == big.node_id


def test_both_sides_must_allow_each_other() -> None:
    host = node(1, 4, ALICE, (MESH,))
    picky = node(2, 4, BOB, (OWNER,))  # allows only Bob's nodes: not Alice's host
    plan = plan_model([with_rtt(host, picky), picky], M, 7 * GIB)
    assert not plan.fits and "allow-list" in plan.reason
    assert not may_pair(host, picky) and not may_pair(picky, host)


def test_listed_owner_or_node_ids_widen_the_list() -> None:
    bobs = node(3, 4, BOB, (MESH,))
    by_owner = node(1, 4, ALICE, (OWNER, bobs.owner_id))
    by_node = node(4, 4, ALICE, (bobs.node_id,))
    assert may_pair(by_owner, bobs) and may_pair(by_node, bobs)
    assert not may_pair(node(5, 4, ALICE, (node(6, 1, BOB, (MESH,)).node_id,)), bobs)


def test_a_mesh_wide_policy_keeps_the_old_behaviour() -> None:
    a, b = node(1, 4, ALICE, (MESH,)), node(2, 4, BOB, (MESH,))
    plan = plan_model([with_rtt(a, b), with_rtt(b, a)], M, 7 * GIB)
    assert plan.fits and set(plan.members) == {a.node_id, b.node_id}


def test_an_owner_claim_needs_the_owners_signature() -> None:
    honest = node(1, 4, ALICE, (OWNER,))
    key = Ed25519PrivateKey.from_private_bytes((9).to_bytes(32, "little"))
    # A stranger copies Alice's public owner key into its record without her signature.
    claim = NodeRecord(node_id=Identity(key).node_id, version=1, owner=honest.owner, owner_sig=honest.owner_sig,
                       split_with=(OWNER,)).signed(key)
    with pytest.raises(RecordError, match="owner"):
        NodeRecord.from_wire(claim.to_wire())
    with pytest.raises(RecordError, match="split_with"):
        NodeRecord.from_wire({**honest.to_wire(), "split_with": ["everyone"]})


def test_the_flag_parses_or_says_why_in_one_line() -> None:
    assert parse_split_with("mesh") == (MESH,)
    assert parse_split_with(" Owner , " + "ab" * 16) == (OWNER, "ab" * 16)
    for bad, words in (("", "needs"), ("mesh,owner", "nothing beside"), ("friends", "not mesh, owner")):
        with pytest.raises(ConfigError, match=words):
            parse_split_with(bad)
    assert "any member" in describe((MESH,), "ab" * 16)
    assert "only with nodes of this owner (abababababab)" in describe((OWNER,), "ab" * 16)


def test_asked_to_split_the_host_is_one_that_has_an_allowed_peer() -> None:
    a1, a2, bob = node(1, 4, ALICE, (OWNER,)), node(2, 4, ALICE, (OWNER,)), node(3, 4, BOB, (OWNER,))
    records = [with_rtt(a1, a2, bob), with_rtt(a2, a1, bob), with_rtt(bob, a1, a2)]
    plan = plan_model(records, M, GIB, force_split=True)  # fits anyone alone; --split asks for a split
    assert set(plan.members) == {a1.node_id, a2.node_id}, "Bob, alone with his policy, cannot split"


# -- issue 28, item 5: a claimed memory figure cannot capture a split -------------------

def test_a_strangers_huge_claim_never_ends_an_honest_split() -> None:
    """A stranger (another owner) with the model on disk claims the most memory any node
    may (and serves the model alone): before, every honest node elected it, the host
    stood down and tore its split down, and every prompt reached the stranger."""
    from mesh_node.decide import Held, Host, Local, StandBy, Work, decide
    from meshcore.membership import MAX_VRAM_BYTES

    a, b = node(1, 4, ALICE, (OWNER,)), node(2, 4, ALICE, (OWNER,))
    a, b = with_rtt(a, b), with_rtt(b, a)
    plan = plan_model([a, b], M, 7 * GIB)
    host, worker = (a, b) if plan.host == a.node_id else (b, a)
    assert plan.fits and plan.workers == (worker.node_id,)
    ids = [node(i, 1, BOB, (MESH,)) for i in range(10, 60)]
    low = min(ids, key=lambda r: r.node_id)  # the attacker ground a low id too
    attacker = NodeRecord.from_wire(replace(low, vram_bytes=MAX_VRAM_BYTES, serving=(M,)).signed(
        Ed25519PrivateKey.from_private_bytes((10 + ids.index(low)).to_bytes(32, "little"))).to_wire())
    assert attacker.node_id < host.node_id and attacker.node_id < worker.node_id
    records = {r.node_id: r for r in (host, worker, attacker)}
    records[host.node_id] = replace(host, serving=(M,), splits={M: [[host.node_id, 2], [worker.node_id, 2]]})
    held = Held(M, 7 * GIB, pinned=True, layers=4, plan=plan, serving_since=1.0)
    local = Local(held={M: held}, vram_bytes=4 * GIB, now=100.0)
    assert decide(records, host.node_id, local)[M] == Host(plan)
    on_worker = decide(records, worker.node_id, Local(held={M: replace(held, serving_since=None)},
                                                     vram_bytes=4 * GIB, now=100.0))[M]
    assert isinstance(on_worker, Work) and on_worker.part[0] == host.node_id
    # Within what the host allows, more memory still moves the host (a private mesh: "mesh").
    open_host, open_worker = node(1, 4, ALICE, (MESH,)), node(2, 4, ALICE, (MESH,))
    open_records = {r.node_id: r for r in (with_rtt(open_host, open_worker), with_rtt(open_worker, open_host))}
    bigger = node(5, 16, BOB, (MESH,))
    open_records[bigger.node_id] = bigger
    open_plan = plan_model(list(open_records.values())[:2], M, 7 * GIB)
    decision = decide(open_records, open_host.node_id,
                      Local(held={M: Held(M, 7 * GIB, pinned=True, layers=4, plan=open_plan, serving_since=1.0)},
                            vram_bytes=4 * GIB, now=100.0))[M]
    assert isinstance(decision, StandBy) and bigger.node_id[:12] in decision.why


def test_claims_beyond_any_machine_are_refused() -> None:
    from meshcore.membership import MAX_VRAM_BYTES
    key = Ed25519PrivateKey.from_private_bytes((77).to_bytes(32, "little"))
    base = node(77, 1, ALICE, (MESH,))
    for claim in ({"vram_bytes": 1 << 62}, {"vram_bytes": 1 << 40, "free_bytes": 1 << 41}):
        with pytest.raises(RecordError):
            NodeRecord.from_wire(replace(base, **claim).signed(key).to_wire())
    assert NodeRecord.from_wire(replace(base, vram_bytes=MAX_VRAM_BYTES).signed(key).to_wire()).vram_bytes \
        == MAX_VRAM_BYTES
