"""--split and --device as a new user meets them: one-line errors, no crash loops,
no traceback in the log for an expected condition."""

from __future__ import annotations

import time
from pathlib import Path

import grpc

from conftest import TINY
from meshcore.api import node_pb2 as pb
from meshnode import MeshNode, assert_one_line_error, free_port, greedy, run_cli, start_node

MODEL = TINY.name


def completions(node: MeshNode) -> list[str]:
    return greedy(node.api, MODEL, 12, ("The mesh", "1 2 3 4"))


def split_parts(node: MeshNode) -> list:
    return list(node.node_status().models[0].split)


def wait_split(nodes: list[MeshNode], timeout: float = 90) -> MeshNode:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for node in nodes:
            try:
                model = node.node_status().models[0]
            except (grpc.RpcError, IndexError):  # not up yet
                continue
            if len(model.split) == len(nodes) and model.state == pb.MODEL_STATE_SERVING:
                return node
        time.sleep(0.3)
    raise AssertionError("no split of every node:\n" + "\n---\n".join(n.log()[-2000:] for n in nodes))


def test_split_alone_serves_and_splits_when_a_peer_joins(tmp_path: Path, models: dict[str, Path]) -> None:
    first = start_node(tmp_path / "n0", [models[MODEL]], "--split")
    nodes = [first]
    try:
        alone = completions(first)
        assert split_parts(first) == []
        said = [line for line in first.log().splitlines() if "alone for now" in line]
        assert len(said) == 1 and "split when one does" in said[0], first.log()
        nodes.append(start_node(tmp_path / "n1", [models[MODEL]], "--split", "--join", first.wait_token(),
                                wait=False))
        host = wait_split(nodes)
        for node in nodes:
            node.wait_serving([MODEL], timeout=60)
        assert completions(nodes[1]) == alone  # split tokens equal solo tokens
        assert completions(host) == alone
        for node in nodes:
            assert "Traceback" not in node.log() and "gave up" not in node.log(), node.log()
    finally:
        for node in nodes:
            node.stop()


def test_two_nodes_started_together_with_split_converge(tmp_path: Path, models: dict[str, Path]) -> None:
    first = start_node(tmp_path / "n0", [models[MODEL]], "--split", wait=False)
    nodes = [first]
    try:
        nodes.append(start_node(tmp_path / "n1", [models[MODEL]], "--split", "--join", first.wait_token(),
                                wait=False))
        started = time.monotonic()
        host = wait_split(nodes)
        for node in nodes:
            node.wait_serving([MODEL], timeout=60)
        print(f"\ntwo --split nodes started together: split serving after {time.monotonic() - started:.1f} s")
        assert len(completions(host)) == 2
        for node in nodes:
            assert "Traceback" not in node.log() and "gave up" not in node.log(), node.log()
    finally:
        for node in nodes:
            node.stop()


def test_a_bad_device_is_one_line_before_anything_starts(tmp_path: Path, models: dict[str, Path]) -> None:
    result = run_cli("--home", str(tmp_path), "--model", str(models[MODEL]), "--device", "CUDA7",
                     "--port", str(free_port()), "--console", str(free_port()))
    assert_one_line_error(result, "--device 'CUDA7'")
    assert "valid: CPU" in result.stderr
    assert not (tmp_path / "run" / "node.sock").exists() and not (tmp_path / "logs").exists()


def test_device_cpu_serves_on_the_cpu(tmp_path: Path, models: dict[str, Path]) -> None:
    node = start_node(tmp_path, [models[MODEL]], "--device", "cpu")
    try:
        pid = node.llama_pid(MODEL)
        cmdline = next(p.cmdline() for p in node.descendants() if p.pid == pid)
        assert cmdline[cmdline.index("--device") + 1] == "none"
        assert len(completions(node)) == 2
    finally:
        node.stop()


def test_a_join_token_never_stays_in_a_command_line(tmp_path: Path, models: dict[str, Path]) -> None:
    """Issue 28, item 15: the launcher kept `--join TOKEN` (the mesh's secret) in its
    command line for the node's whole life, where any local user's `ps` reads it."""
    import psutil
    a = start_node(tmp_path / "a", [models[MODEL]])
    token = a.wait_token()
    b = start_node(tmp_path / "b", [], "--join", token, wait=False)
    try:
        b.wait_serving([MODEL], timeout=60)
        for proc in [psutil.Process(b.proc.pid), *b.descendants()]:
            assert token not in " ".join(proc.cmdline()), proc.cmdline()
    finally:
        b.stop()
        a.stop()
