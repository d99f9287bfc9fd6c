"""--split and --device as a new user meets them: one-line errors, no crash loops,
no traceback in the log for an expected condition."""

from __future__ import annotations

import json
import time
from pathlib import Path

import grpc

from conftest import TINY
from meshcore.api import node_pb2 as pb
from meshnode import MeshNode, assert_one_line_error, free_port, http_json, run_cli, start_node

MODEL = TINY.name


def greedy(node: MeshNode) -> list[str]:
    out = []
    for prompt in ("The mesh", "1 2 3 4"):
        status, body, _ = http_json(f"{node.api}/v1/completions", json.dumps(
            {"model": MODEL, "prompt": prompt, "max_tokens": 12, "temperature": 0, "ignore_eos": True}).encode(),
            timeout=60)
        assert status == 200, body
        out.append(body["choices"][0]["text"])
    return out


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
        alone = greedy(first)
        assert split_parts(first) == []
        said = [line for line in first.log().splitlines() if "alone for now" in line]
        assert len(said) == 1 and "split when one does" in said[0], first.log()
        nodes.append(start_node(tmp_path / "n1", [models[MODEL]], "--split", "--join", first.wait_token(),
                                wait=False))
        host = wait_split(nodes)
        for node in nodes:
            node.wait_serving([MODEL], timeout=60)
        assert greedy(nodes[1]) == alone  # split tokens equal solo tokens
        assert greedy(host) == alone
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
        assert len(greedy(host)) == 2
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
        assert len(greedy(node)) == 2
    finally:
        node.stop()
