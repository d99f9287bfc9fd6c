"""rotate-key among real members in this process (real QUIC on loopback): a member that
never answers the rekey is counted out after its own 2 s, and the owner still switches
to the key the others took (it used to raise out of the rotation, leaving the members
that answered on a key the owner did not use)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from meshcore.identity import Identity, MeshSecret, load_or_create_identity
from meshcore.member import MeshMember
from meshcore.membership import NodeRecord
from meshcore.wire import Kind


def identity_in(folder: Path) -> Identity:
    folder.mkdir()
    return load_or_create_identity(folder)


async def start(identity: Identity, mesh: MeshSecret) -> tuple[MeshMember, str]:
    member = MeshMember(identity, mesh, NodeRecord(node_id=identity.node_id, version=1, role="node"))
    addr = f"127.0.0.1:{await member.endpoint.listen('127.0.0.1', 0)}"
    member.publish(addrs=(addr,))
    return member, addr


async def test_a_member_that_never_answers_the_rekey_is_counted_out_not_fatal(tmp_path: Path) -> None:
    me = identity_in(tmp_path / "owner")
    mesh = MeshSecret.new(me.public_bytes)
    owner, addr = await start(me, mesh)
    (answers, _), (silent, _) = [await start(identity_in(tmp_path / name), mesh) for name in ("answers", "silent")]
    never = asyncio.Event()

    async def hold(*_: object) -> None:  # takes the rekey stream and never answers
        await never.wait()
    silent.endpoint.handlers[Kind.CONTROL] = hold
    try:
        for member in (answers, silent):
            await member.join([addr])
        saved: list[MeshSecret] = []
        owner.on_rekey = saved.append
        told = await asyncio.wait_for(owner.rotate_secret(), 10)
        assert told == 1
        assert owner.mesh.epoch == 1 and saved == [owner.mesh]
        assert answers.mesh == owner.mesh and silent.mesh == mesh
    finally:
        never.set()
        for member in (owner, answers, silent):
            member.endpoint.close()
