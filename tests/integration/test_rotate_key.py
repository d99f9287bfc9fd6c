"""rotate-key as revocation: only the mesh's owner may rotate, every connection is
admitted again with the new key, --exclude leaves a member out, and a member restarted
with its old --join token keeps the newer key it was given."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

from conftest import EMBED, SMALL, TINY
from meshcore.identity import (MeshSecret, PendingRotation, load_or_create_identity, load_or_create_mesh_secret,
                               save_pending_rotation)
from meshcore.token import InviteToken
from meshcore.transport import MeshEndpoint
from meshcore.wire import Kind, encode_frame, read_frame
from meshnode import MeshNode, greedy, http_json, start_node


def rotate(node: MeshNode, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mesh_cli", "rotate-key", "--home", str(node.home), *extra],
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


def wait_for(predicate, timeout: float, what: str) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.3)
    raise AssertionError(f"not within {timeout} s: {what}")


def peer_state(node: MeshNode, node_id: str) -> str:
    return next((p.state for p in node.node_status().peers if p.node_id == node_id), "unknown")


async def rekey_as(tmp: Path, token: str, target_addr: str) -> dict:
    """A member (not the owner) sends a rekey of its choosing."""
    t = InviteToken.decode(token)
    (tmp / "rogue").mkdir(exist_ok=True)
    endpoint = MeshEndpoint(load_or_create_identity(tmp / "rogue"), lambda: t.mesh)
    try:
        conn = await endpoint.dial(target_addr)
        reader, writer = await conn.open_stream(Kind.CONTROL, {"t": "rekey", "mesh_id": t.mesh_id,
                                                               "secret": b"x" * 32, "epoch": 99})
        writer.write_eof()
        return await asyncio.wait_for(read_frame(reader), 10)
    finally:
        endpoint.close()


def test_rotate_key_is_the_owners_and_revokes(tmp_path: Path, models: dict[str, Path]) -> None:
    a = start_node(tmp_path / "a", [models[TINY.name]])
    old = a.wait_token()
    b = start_node(tmp_path / "b", [models[EMBED.name]], "--join", old, wait=False)
    c = start_node(tmp_path / "c", [models[SMALL.name]], "--join", old, wait=False)
    nodes = [a, b, c]
    try:
        for node in nodes:
            node.wait_serving([TINY.name, EMBED.name, SMALL.name])
        b_id, c_id = b.node_status().node_id, c.node_status().node_id
        assert InviteToken.decode(old).owner == a.node_status().node_id

        # Not the owner: one line, nothing changes.
        refused = rotate(b)
        assert refused.returncode == 1 and "only the mesh's owner" in refused.stderr and "Traceback" not in refused.stderr
        # A member's rekey of its own choosing is refused; b keeps its key.
        b_token = b.node_status().token
        reply = asyncio.run(rekey_as(tmp_path, old, InviteToken.decode(b_token).addrs[0]))
        assert reply["t"] == "refused" and "owner" in reply["why"]
        assert b.node_status().token == b_token and "refused a new mesh key" in b.log()

        # The owner rotates, leaving c out.
        done = rotate(a, "--exclude", c_id[:10])
        assert done.returncode == 0, done.stderr
        new = done.stdout.strip()
        assert InviteToken.decode(new).epoch == 1 and "1 left out" in done.stderr
        wait_for(lambda: InviteToken.decode(b.node_status().token).secret == InviteToken.decode(new).secret, 10,
                 "b has the new key")
        # Every connection is re-admitted: a request in flight at that moment is cut (502/503),
        # the next ones go through b's new connection to a.
        wait_for(lambda: http_json(f"{b.api}/v1/completions", json.dumps(
            {"model": TINY.name, "prompt": "x", "max_tokens": 2}).encode())[0] == 200, 15, "b reaches a again")
        assert len(greedy(b.api, TINY.name, 4)) == 3
        wait_for(lambda: peer_state(a, c_id) == "dead" and peer_state(b, c_id) == "dead", 40,
                 "c, left out, is cut off from a and b")
        for node in nodes:
            assert "Traceback" not in node.log() and "never retrieved" not in node.log(), node.log()[-2000:]

        # A node joining with the old token is refused, and keeps the mesh key it had.
        (tmp_path / "d" / "home").mkdir(parents=True)
        own = load_or_create_mesh_secret(tmp_path / "d" / "home", b"d" * 32)
        d = start_node(tmp_path / "d", [models[EMBED.name]], "--join", old, wait=False)
        assert d.proc.wait(timeout=60) != 0 and "refused" in d.log() and "Traceback" not in d.log(), d.log()[-2000:]
        assert load_or_create_mesh_secret(tmp_path / "d" / "home", b"d" * 32) == own

        # b restarted with the old --join token keeps the newer key (epoch 1) and is back.
        b.stop()
        b = nodes[1] = start_node(tmp_path / "b", [models[EMBED.name]], "--join", old, wait=False)
        b.wait_serving([TINY.name, EMBED.name], timeout=60)
        assert InviteToken.decode(b.node_status().token).epoch == 1
        assert "newer key" in b.log()
    finally:
        for node in nodes:
            node.stop()


def test_a_rotation_cut_short_is_dropped_or_finished_at_the_next_start(tmp_path: Path,
                                                                       models: dict[str, Path]) -> None:
    """What a kill mid rotate-key leaves on the owner's disk: a rotation that reached no
    member yet is dropped (everyone stays on the old key); one that may have reached some
    is finished at the next start: the members that reconnect are told, the owner
    switches, instead of members and owner on different keys."""
    a = start_node(tmp_path / "a", [models[TINY.name]])
    b = start_node(tmp_path / "b", [models[EMBED.name]], "--join", a.wait_token(), wait=False)
    nodes = [a, b]
    try:
        b.wait_serving([TINY.name, EMBED.name])
        a_id, old = a.node_status().node_id, InviteToken.decode(b.node_status().token)
        new = replace(old.mesh, secret=b"\x07" * 32, epoch=old.epoch + 1)
        assert new.owner == a_id  # the token proves its owner

        def restart_a_with(pending: PendingRotation) -> MeshNode:
            nodes[0].stop()
            save_pending_rotation(nodes[0].home, pending)
            nodes[0] = start_node(tmp_path / "a", [models[TINY.name]], "--join", b.node_status().token, wait=False)
            nodes[0].wait_token()
            return nodes[0]

        a = restart_a_with(PendingRotation(new, frozenset(), telling=False))
        wait_for(lambda: "reached no member" in a.log(), 20, "a dropped the rotation")
        assert not (a.home / "rotation.json").exists()
        assert InviteToken.decode(a.node_status().token).secret == old.secret == InviteToken.decode(
            b.node_status().token).secret

        a = restart_a_with(PendingRotation(new, frozenset(), telling=True))
        wait_for(lambda: InviteToken.decode(a.node_status().token).secret == new.secret, 40, "a switched to the new key")
        wait_for(lambda: InviteToken.decode(b.node_status().token).secret == new.secret, 10, "b was told the new key")
        assert not (a.home / "rotation.json").exists()
        assert "cut short" in a.log()
        wait_for(lambda: http_json(f"{b.api}/v1/completions", json.dumps(
            {"model": TINY.name, "prompt": "x", "max_tokens": 2}).encode())[0] == 200, 30, "b reaches a with the new key")
        for node in nodes:
            assert "Traceback" not in node.log() and "never retrieved" not in node.log(), node.log()[-2000:]
    finally:
        for node in nodes:
            node.stop()
