"""1,000 simulated nodes running the real membership code over a simulated network.

Each node holds a real `meshcore.membership.Membership`; every round each node does
the same digest push-pull as `MeshMember._gossip_with` with FANOUT random peers,
and every message is sized as the real wire frame (`meshcore.wire.encode_frame`).
Measured: rounds until every node knows of a join, and of a death (declared by one
node's failure detector); bytes per node per second at GOSSIP_INTERVAL_S per round.

    .venv/bin/python bench/gossip_sim.py [--nodes 1000] [--quick]
"""

from __future__ import annotations

import argparse
import json
import random

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from meshcore.identity import node_id_of, public_bytes
from meshcore.member import FANOUT, GOSSIP_INTERVAL_S
from meshcore.membership import ALIVE, DEAD, Membership, NodeRecord, owner_statement
from meshcore.wire import encode_frame

MAX_ROUNDS = 60


_keys: dict[int, Ed25519PrivateKey] = {}


def key(i: int) -> Ed25519PrivateKey:
    """Node i's key (records are signed and checked on receipt, as in the mesh)."""
    return _keys.setdefault(i, Ed25519PrivateKey.from_private_bytes(i.to_bytes(32, "little")))


def node_id(i: int) -> str:
    return node_id_of(key(i).public_key())


def record(i: int) -> NodeRecord:
    owner = key(100000 + i // 4)  # an owner key for every four nodes, as real records carry
    return NodeRecord(node_id=node_id(i), version=1, addrs=(f"10.0.{i // 250}.{i % 250}:4000",),
                      vram_bytes=24 << 30, models_on_disk=("Qwen2.5-7B-Instruct-Q4_K_M",),
                      serving=("Qwen2.5-7B-Instruct-Q4_K_M",), app_version="0.1.0", owner=public_bytes(owner),
                      owner_sig=owner.sign(owner_statement(public_bytes(key(i)))),
                      split_with=("owner",)).signed(key(i))


def snapshot(m: Membership) -> Membership:
    """The state a node had at the start of the round (rounds are synchronous: what a
    node learns in a round is passed on from the next round)."""
    return m.copy()


def exchange(a: Membership, b: Membership, a_was: Membership, b_was: Membership) -> int:
    """One push-pull from a to b, as MeshMember does it; returns bytes on the wire."""
    first = {"digest": a_was.digest()}
    reply = {"records": [r.to_wire() for r in b_was.newer_than(first["digest"])],
             "want": b_was.wanted_from(first["digest"])}
    a.merge([NodeRecord.from_wire(r) for r in reply["records"]])
    last = {"records": [a_was.records[n].to_wire() for n in reply["want"] if n in a_was.records]}
    b.merge([NodeRecord.from_wire(r) for r in last["records"]])
    return sum(len(encode_frame(m)) for m in (first, reply, last)) + 1


def converged_population(n: int) -> list[Membership]:
    records = [record(i) for i in range(n)]
    nodes = []
    for i in range(n):
        m = Membership(records[i], sign=lambda r, i=i: r.signed(key(i)))
        m.records.update({r.node_id: r for r in records})
        nodes.append(m)
    return nodes


def run_round(nodes: list[Membership], rng: random.Random) -> int:
    was = [snapshot(m) for m in nodes]
    total = 0
    for i, m in enumerate(nodes):
        peers = [nid for nid, r in was[i].records.items() if nid != m.me and r.state == ALIVE]
        for peer in rng.sample(peers, min(FANOUT, len(peers))):
            target = index.get(peer)
            if target is not None:  # a dead node's messages are simply lost
                total += exchange(m, nodes[target], was[i], was[target])
    return total


index: dict[str, int] = {}


def rounds_until(nodes: list[Membership], rng: random.Random, known) -> tuple[int, list[int]]:  # noqa: ANN001
    per_round = []
    for rounds in range(1, MAX_ROUNDS + 1):
        per_round.append(run_round(nodes, rng))
        if all(known(m) for m in nodes):
            return rounds, per_round
    return MAX_ROUNDS + 1, per_round


def measure(n: int, seed: int = 7) -> dict:
    rng = random.Random(seed)
    nodes = converged_population(n)
    index.clear()
    index.update({m.me: i for i, m in enumerate(nodes)})
    steady = run_round(nodes, rng)  # nothing changed: digests only
    # A join: the newcomer knows one member (its invite token) and gossips like everyone.
    newcomer = Membership(record(n), sign=lambda r: r.signed(key(n)))
    newcomer.records[node_id(0)] = nodes[0].records[node_id(0)]
    nodes.append(newcomer)
    index[newcomer.me] = n
    join_rounds, _ = rounds_until(nodes, rng, lambda m: node_id(n) in m.records)
    # A death: node 1 stops; node 2's failure detector declares it.
    dead = nodes.pop(1)
    index.clear()
    index.update({m.me: i for i, m in enumerate(nodes)})
    nodes[1].mark(dead.me, DEAD)
    death_rounds, _ = rounds_until(nodes, rng, lambda m: m.records.get(dead.me) is None
                                   or m.records[dead.me].state == DEAD)
    return {
        "gossip_convergence_rounds_1000" if n == 1000 else f"gossip_convergence_rounds_{n}": {
            "join": join_rounds, "death": death_rounds},
        "gossip_bytes_per_node_per_s_1000" if n == 1000 else f"gossip_bytes_per_node_per_s_{n}":
            steady / n / GOSSIP_INTERVAL_S,
        "nodes": n, "fanout": FANOUT, "round_s": GOSSIP_INTERVAL_S,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--quick", action="store_true", help="still 1,000 nodes (the figure's definition)")
    parser.add_argument("--seed", type=int, default=7, help="random peer choices (make bench varies it per run)")
    args = parser.parse_args()
    print(json.dumps(measure(args.nodes, args.seed), indent=2))


if __name__ == "__main__":
    main()
