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

from meshcore.token import InviteToken
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


def lying_listing(directory: Directory, name: str, below: str, addr: str) -> None:
    """A valid listing (its owner's own token, signed by the owner) named `name`, whose
    mesh id sorts before `below` (its salt ground for it) and whose address is `addr`:
    what a buddy-mode node takes for an older mesh of its name."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from meshcore.identity import MeshSecret, node_id_of, public_bytes
    from meshcore.ids import NodeId
    from meshcore.token import InviteToken, owned_mesh_id
    from test_directory import listing, publish_body
    key = Ed25519PrivateKey.generate()
    pub = public_bytes(key)
    salt = next(s.to_bytes(16, "big") for s in range(10 ** 7) if owned_mesh_id(pub, s.to_bytes(16, "big")) < below)
    mesh = MeshSecret(owned_mesh_id(pub, salt), b"x" * 32, NodeId(node_id_of(key.public_key())), 0, pub, salt, True)
    body = listing(name, mesh_id=mesh.mesh_id, models_served=[TINY],
                   token=InviteToken.of(mesh, (addr,), NodeId(node_id_of(key.public_key()))).encode())
    assert httpx.post(f"{directory.url}/v1/meshes", json=publish_body(key, body)).status_code == 200


def test_buddy_mode_survives_dead_and_refusing_listings(tmp_path: Path, models: dict[str, Path]) -> None:
    """Issue 28: a listing with a smaller mesh id and a dead address made a lone buddy-mode
    node leave its own mesh and hang (or, an address that refuses, exit with code 2). Now it
    tries, stays in its own mesh, stays listed, and leaves that listing alone for a while."""
    from meshnode import free_udp_port
    directory = Directory(tmp_path / "dir.sqlite3", "--write-rate", "0", "--read-rate", "0")  # listings live 120 s
    other = start_node(tmp_path / "other", [models[EMBED]])  # a live node of another mesh: it refuses
    lone = start_node(tmp_path / "lone", [models[TINY]], "--auto", "--mesh-name", "lonely", "--directory",
                      directory.url)
    try:
        wait_for(lambda: listed(directory, name="lonely"))
        mine = lone.node_status().mesh_id
        refusing = next(a for a in InviteToken.decode(other.wait_token()).addrs if a.startswith("127."))
        lying_listing(directory, "lonely", mine, f"127.0.0.1:{free_udp_port()}")  # nobody there
        lying_listing(directory, "lonely", mine, refusing)
        wait_for(lambda: lone.log().count("staying in this node's own mesh") >= 2, timeout=60)
        assert lone.proc.poll() is None and lone.node_status().mesh_id == mine
        assert mine in {m["mesh_id"] for m in listed(directory, name="lonely")}  # still listed
        assert len(__import__("meshnode").greedy(lone.api, TINY, 2)) == 3  # and serving
        time.sleep(5)
        assert lone.log().count("staying in this node's own mesh") == 2  # each tried once, not in a loop
        assert "Traceback" not in lone.log()
    finally:
        stop_all([lone, other])
        directory.stop()


def test_only_a_mesh_created_to_be_published_is_published(directory: Directory, tmp_path: Path,
                                                          models: dict[str, Path]) -> None:
    """Issue 28, item 11: --publish (or --mesh-name, --auto) on a home that holds a private
    mesh's key listed that secret in the public directory."""
    from meshnode import assert_one_line_error, free_port, run_cli
    private = start_node(tmp_path / "p", [models[TINY]])
    home, secret_mesh = str(private.home), private.node_status().mesh_id
    private.stop()
    for extra in (["--publish"], ["--mesh-name", "leak"]):
        result = run_cli("--home", home, "--model", str(models[TINY]), "--directory", directory.url,
                         "--port", str(free_port()), "--console", str(free_port()), *extra)
        assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr
        said = [line for line in result.stderr.splitlines() if "not created here to be published" in line]
        assert len(said) == 1, result.stderr
    assert not [m for m in listed(directory) if m["mesh_id"] == secret_mesh or m["name"] == "leak"]
    joined = run_cli("--home", str(tmp_path / "j"), "--publish", "--join", "x" * 40, "--directory", directory.url,
                     "--port", str(free_port()), "--console", str(free_port()))
    assert joined.returncode != 0 and "Traceback" not in joined.stderr
