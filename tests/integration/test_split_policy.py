"""The split allow-list with real nodes: `--split-with owner` (a public mesh's default)
never puts layers on a stranger's node, and does split with a node of the same owner
(the same owner.key, passed with --owner-key)."""

from __future__ import annotations

import time
from pathlib import Path

from conftest import TINY
from meshnode import MeshNode, assert_one_line_error, free_port, greedy, run_cli, start_node

MODEL = TINY.name


def rpc_servers(node: MeshNode) -> list:
    return [p for p in node.descendants() if "ggml-rpc-server" in p.name()]


def split_of(node: MeshNode) -> int:
    """Members of the split this node serves (0: none, or not up yet)."""
    try:
        model = node.node_status().models[0]
    except Exception:  # noqa: BLE001 - starting
        return 0
    return len(model.split) if model.state == 2 else 0


def test_owner_only_splits_skip_strangers_and_pair_the_same_owner(tmp_path: Path, models: dict[str, Path]) -> None:
    path = models[MODEL]
    alice = start_node(tmp_path / "alice", [path], "--split", "--split-with", "owner", wait=False)
    nodes = [alice]
    try:
        token = alice.wait_token()
        nodes.append(start_node(tmp_path / "bob", [path], "--split", "--split-with", "owner", "--join", token,
                                wait=False))
        bob = nodes[1]
        deadline = time.monotonic() + 25  # long enough for a split to have formed if it could
        while time.monotonic() < deadline:
            assert max(split_of(n) for n in nodes) <= 1, "a split formed across two owners"
            time.sleep(0.5)
        assert rpc_servers(alice) == [] and rpc_servers(bob) == []  # nobody is anybody's worker
        assert "splits models only with nodes of this owner" in alice.log()
        # Alice's second machine: the same owner key.
        nodes.append(start_node(tmp_path / "alice2", [path], "--split", "--split-with", "owner",
                                "--owner-key", str(alice.home / "owner.key"), "--join", token, wait=False))
        alice2 = nodes[2]
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not any(split_of(n) == 2 for n in (alice, alice2)):
            time.sleep(0.5)
        [host] = [n for n in (alice, alice2) if split_of(n) == 2]
        worker = alice2 if host is alice else alice
        assert len(rpc_servers(worker)) == 1 and rpc_servers(bob) == []
        assert len(greedy(host.api, MODEL, 4)) == 3
    finally:
        for node in nodes:
            node.stop()


def test_bad_split_with_or_owner_key_is_one_line(tmp_path: Path, models: dict[str, Path]) -> None:
    ports = ("--port", str(free_port()), "--console", str(free_port()))
    result = run_cli("--home", str(tmp_path), "--model", str(models[MODEL]), "--split-with", "friends", *ports)
    assert_one_line_error(result, "not mesh, owner")
    result = run_cli("--home", str(tmp_path), "--model", str(models[MODEL]), "--owner-key",
                     str(tmp_path / "nope.key"), *ports)
    assert_one_line_error(result, "no such file")
