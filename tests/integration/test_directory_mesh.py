"""Nodes and the directory together: publish, discover, --auto, buddy mode,
expiry of a dead node's listing, --max-clients delisting."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from meshnode import MeshNode, start_node
from test_directory import Directory

TINY, EMBED = "mesh-tiny-F16", "mesh-embed-F16"


@pytest.fixture(scope="module")
def directory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Directory]:
    d = Directory(tmp_path_factory.mktemp("dir") / "dir.sqlite3", "--ttl", "4", "--write-rate", "0", "--read-rate", "0")
    yield d
    d.stop()


def listed(directory: Directory, **params: str) -> list[dict]:
    return httpx.get(f"{directory.url}/v1/meshes", params=params).json()["meshes"]


def wait_for(check, timeout: float = 30) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.2)


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mesh_cli", *args], capture_output=True, text=True, timeout=60)


def stop_all(nodes: list[MeshNode]) -> None:
    for node in reversed(nodes):
        if node.proc.poll() is None:
            node.stop()


def test_publish_discover_and_auto_join_by_name(directory: Directory, tmp_path: Path,
                                               models: dict[str, Path]) -> None:
    a = start_node(tmp_path / "a", [models[TINY]], "--mesh-name", "alpha", "--region", "eu",
                   "--directory", directory.url)
    nodes = [a]
    try:
        wait_for(lambda: [m["models_served"] for m in listed(directory, name="alpha")] == [[TINY]])
        [entry] = listed(directory, name="alpha")
        assert entry["models_served"] == [TINY] and entry["region"] == "eu" and entry["node_count"] == 1
        table = cli("discover", "--directory", directory.url)
        assert table.returncode == 0 and "alpha" in table.stdout and TINY in table.stdout
        as_json = json.loads(cli("discover", "--directory", directory.url, "--json", "--model", TINY).stdout)
        assert [m["name"] for m in as_json] == ["alpha"]
        assert json.loads(cli("discover", "--directory", directory.url, "--json", "--model", "nope").stdout) == []
        auto = cli("discover", "--directory", directory.url, "--auto", "--model", TINY)
        assert "alpha" in auto.stdout and TINY in auto.stdout
        b = start_node(tmp_path / "b", [models[EMBED]], "--auto", "--mesh-name", "alpha", "--directory", directory.url,
                       wait=False)
        client = start_node(tmp_path / "c", [], "--client", "--auto", "--mesh-name", "alpha",
                            "--directory", directory.url, wait=False)
        nodes += [b, client]
        client.wait_serving([TINY, EMBED], timeout=60)
        assert b.node_status().mesh_id == a.node_status().mesh_id
        wait_for(lambda: listed(directory, name="alpha")[0]["node_count"] == 2
                 and listed(directory, name="alpha")[0]["client_count"] == 1)
    finally:
        stop_all(nodes)
    # A clean shutdown withdraws the listing at once.
    wait_for(lambda: not listed(directory, name="alpha"), timeout=3)


def test_buddy_mode_two_nodes_started_at_once_end_up_in_one_mesh(directory: Directory, tmp_path: Path,
                                                                  models: dict[str, Path]) -> None:
    args = ("--auto", "--mesh-name", "buddies", "--directory", directory.url)
    x = start_node(tmp_path / "x", [models[TINY]], *args, wait=False)
    y = start_node(tmp_path / "y", [models[EMBED]], *args, wait=False)
    try:
        x.wait_serving([TINY, EMBED], timeout=60)
        y.wait_serving([TINY, EMBED], timeout=60)
        assert x.node_status().mesh_id == y.node_status().mesh_id
        wait_for(lambda: len(listed(directory, name="buddies")) == 1
                 and listed(directory, name="buddies")[0]["node_count"] == 2)
    finally:
        stop_all([x, y])


def test_a_dead_nodes_listing_expires(directory: Directory, tmp_path: Path, models: dict[str, Path]) -> None:
    a = start_node(tmp_path / "a", [models[TINY]], "--mesh-name", "doomed", "--directory", directory.url)
    try:
        wait_for(lambda: listed(directory, name="doomed"))
        a.kill_hard()
        killed = time.monotonic()
        wait_for(lambda: not listed(directory, name="doomed"), timeout=10)
        assert time.monotonic() - killed < 10
    finally:
        if a.proc.poll() is None:
            a.stop()


def test_max_clients_delists_while_full(directory: Directory, tmp_path: Path, models: dict[str, Path]) -> None:
    a = start_node(tmp_path / "a", [models[TINY]], "--mesh-name", "small", "--max-clients", "1",
                   "--directory", directory.url)
    nodes = [a]
    try:
        wait_for(lambda: listed(directory, name="small"))
        client = start_node(tmp_path / "c", [], "--client", "--join", a.node_status().token, wait=False)
        nodes.append(client)
        client.wait_serving([TINY])
        wait_for(lambda: not listed(directory, name="small"))
        refused = cli("--client", "--auto", "--mesh-name", "small", "--directory", directory.url,
                      "--home", str(tmp_path / "late"))
        assert refused.returncode != 0 and "no mesh with room" in refused.stderr
        client.stop()
        wait_for(lambda: listed(directory, name="small"))
    finally:
        stop_all(nodes)


def test_auto_gpu_node_serves_a_model_the_mesh_wants_and_says_why(directory: Directory, tmp_path: Path,
                                                                  models: dict[str, Path]) -> None:
    """--auto with no --model: it joins, then serves what the mesh wants most that fits
    its memory (here the mesh's only model, one more copy), with a one-line why."""
    a = start_node(tmp_path / "a", [models[EMBED]], "--mesh-name", "wanting", "--directory", directory.url)
    disk = tmp_path / "b-disk"
    disk.mkdir()
    (disk / models[EMBED].name).symlink_to(models[EMBED])
    nodes = [a]
    try:
        wait_for(lambda: listed(directory, name="wanting"))
        b = start_node(tmp_path / "b", [], "--auto", "--directory", directory.url,
                       env={"MESH_LLM_MODELS_DIR": str(disk)})
        nodes.append(b)
        wait_for(lambda: any(m.model_id == EMBED and m.state == 2 for m in b.node_status().models), 60)
        assert b.node_status().mesh_id == a.node_status().mesh_id
        [line] = [x for x in b.log().splitlines() if f"serving {EMBED}:" in x]
        assert "the mesh's busiest model that fits here" in line
        [event] = [r for r in b.node_status().rebalances if r.model_id == EMBED]
        assert event.action == "promoted" and event.reason in line
    finally:
        stop_all(nodes)
