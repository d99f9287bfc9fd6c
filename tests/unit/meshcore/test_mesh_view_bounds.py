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
    member = MeshMember(identity, MeshSecret.new(identity.node_id),
                        NodeRecord(node_id=identity.node_id, version=1, role="node"))
    member.publish(demand={"m": (1 << 63) - 1})
    [row] = mesh_view.demand(member)
    assert row.model_id == "m" and row.requests_per_min == mesh_view.UINT32_MAX
