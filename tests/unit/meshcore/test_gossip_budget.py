"""What one member's gossip may cost a node (issue 28, item 9): a 1 MiB frame of 6,000
records with bad signatures used to cost 0.56 s of event-loop CPU. Signature checks are
now budgeted per peer (VERIFY_PER_S, burst VERIFY_BURST); records that would not be taken
anyway (not newer) cost none; the rest are dropped and counted."""

from __future__ import annotations

import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from meshcore.identity import MeshSecret, load_or_create_identity, node_id_of
from meshcore.member import VERIFY_BURST, MeshMember
from meshcore.membership import NodeRecord


def member(tmp: Path) -> MeshMember:
    identity = load_or_create_identity(tmp)
    return MeshMember(identity, MeshSecret.new(identity.public_bytes), NodeRecord(node_id=identity.node_id, version=1))


def record(i: int, **tampered: object) -> dict:
    key = Ed25519PrivateKey.from_private_bytes(i.to_bytes(32, "little"))
    signed = NodeRecord(node_id=node_id_of(key.public_key()), version=int(time.time() * 1000)).signed(key)
    return {**signed.to_wire(), **tampered}


def test_a_frame_of_bad_signatures_costs_a_bounded_number_of_checks(tmp_path: Path) -> None:
    m = member(tmp_path)
    sender = "e" * 32
    bad = [record(i, vram_bytes=1) for i in range(1, 3001)]  # changed after signing
    started = time.perf_counter()
    for start in range(0, len(bad), 500):
        assert m._records_from(sender, bad[start:start + 500]) == []
    elapsed = time.perf_counter() - started
    assert m.dropped_records >= len(bad) - VERIFY_BURST - 500 * elapsed - 1
    good = [record(i) for i in range(5001, 5011)]
    assert m._records_from("d" * 32, good)  # another peer has its own budget


def test_records_not_newer_cost_no_check(tmp_path: Path) -> None:
    m = member(tmp_path)
    good = [record(i) for i in range(1, 201)]
    m._apply(m._records_from("e" * 32, good))
    assert len(m.membership.records) == 201
    dropped = m.dropped_records
    for _ in range(20):  # the same records again and again: nothing to check, nothing spent
        assert m._records_from("e" * 32, good) == []
    assert m.dropped_records == dropped
    assert m._records_from("e" * 32, [record(i) for i in range(301, 311)])  # budget left for new ones


def test_gossip_exchanges_a_peer_starts_are_rate_limited() -> None:
    """A peer starting exchanges as fast as it can (each one a 1 MiB frame to decode) gets
    GOSSIP_BURST at once and GOSSIP_PER_S a second after; the rest are not read at all."""
    from meshcore.member import GOSSIP_BURST, GOSSIP_PER_S, Buckets
    buckets = Buckets(GOSSIP_PER_S, GOSSIP_BURST)
    taken = sum(buckets.take("e" * 32) for _ in range(1000))
    assert taken == GOSSIP_BURST
    assert buckets.take("d" * 32)  # per peer
    time.sleep(0.5)
    assert 1 <= sum(buckets.take("e" * 32) for _ in range(100)) <= GOSSIP_PER_S * 0.5 + 1
