"""The API's counters are 32-bit; what members gossip is summed in 64: a member that
claims more demand than fits must not break the status every console reads."""

from __future__ import annotations

from pathlib import Path

from meshcore import mesh_view
from meshcore.identity import MeshSecret, load_or_create_identity
from meshcore.member import MeshMember
from meshcore.membership import NodeRecord


def test_demand_beyond_32_bits_is_capped_not_an_error(tmp_path: Path) -> None:
    identity = load_or_create_identity(tmp_path)
    member = MeshMember(identity, MeshSecret.new(identity.public_bytes),
                        NodeRecord(node_id=identity.node_id, version=1, role="node"))
    member.publish(demand={"m": (1 << 63) - 1})
    [row] = mesh_view.demand(member)
    assert row.model_id == "m" and row.requests_per_min == mesh_view.UINT32_MAX


def test_the_status_of_a_full_table_of_the_largest_records_fits_the_grpc_limit(tmp_path: Path) -> None:
    """Issue 28: eleven large records once made the status too big for the proxy's gRPC
    channel (4 MiB), whose route table then emptied. Now records, the table and the
    channel limits are all in bytes: a table filled with the largest records a member may
    send still yields a status well under the limit, with every peer and route in it."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from meshcore.api import node_pb2 as pb
    from meshcore.grpc_limits import MAX_MESSAGE_BYTES
    from meshcore.identity import node_id_of
    from meshcore.membership import MAX_MODELS, MAX_RECORD_BYTES, MAX_TABLE_BYTES

    identity = load_or_create_identity(tmp_path)
    member = MeshMember(identity, MeshSecret.new(identity.public_bytes),
                        NodeRecord(node_id=identity.node_id, version=1, role="node"))
    records = []
    for i in range(1, 700):
        key = Ed25519PrivateKey.from_private_bytes(i.to_bytes(32, "little"))
        names = tuple(f"{i}-{j}-" + "n" * 30 for j in range(MAX_MODELS))
        records.append(NodeRecord(node_id=node_id_of(key.public_key()), version=1, serving=names,
                                  models_on_disk=names, demand={n: 7 for n in names},
                                  promoted={n: "hot " * 8 for n in names[:30]}).signed(key))
    assert max(r.size for r in records) <= MAX_RECORD_BYTES
    member.membership.merge(records)
    assert member.membership.bytes <= MAX_TABLE_BYTES
    status = pb.NodeStatus(peers=mesh_view.peers(member), demand=mesh_view.demand(member))
    status.routes.routes.extend(mesh_view.remote_routes(member))
    kept = len(member.membership.records) - 1
    assert len(status.peers) == kept and len(status.routes.routes) >= kept * MAX_MODELS
    assert status.ByteSize() < MAX_MESSAGE_BYTES / 2, status.ByteSize()
