"""Several real nodes and a client-only proxy on loopback, joined by invite token."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import msgpack
import openai
import pytest

from meshcore.token import InviteToken
from meshnode import MeshNode, free_port, free_udp_port, http_json, start_node

TINY, EMBED, SMALL = "mesh-tiny-F16", "mesh-embed-F16", "mesh-small-F16"
ALL = [TINY, EMBED, SMALL]


class Mesh:
    def __init__(self, a: MeshNode, b: MeshNode, c: MeshNode, client: MeshNode) -> None:
        self.a, self.b, self.c, self.client = a, b, c, client
        self.members = [a, b, c, client]


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory, models: dict[str, Path]) -> Iterator[Mesh]:
    tmp = tmp_path_factory.mktemp("mesh")
    a = start_node(tmp / "a", [models[TINY]], "--bind-port", str(free_udp_port()))
    token = a.node_status().token
    b = start_node(tmp / "b", [models[EMBED]], "--join", token, wait=False)
    c = start_node(tmp / "c", [models[SMALL]], "--join", token, wait=False)
    client = start_node(tmp / "client", [], "--client", "--join", token, wait=False)
    started = [a, b, c, client]
    try:
        for node in started:
            node.wait_serving(ALL)
        yield Mesh(a, b, c, client)
    finally:
        for node in reversed(started):
            node.stop()


def openai_client(node: MeshNode) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{node.api}/v1", api_key="unused", max_retries=0, timeout=60)


def test_every_model_answers_through_every_member(mesh: Mesh) -> None:
    for node in mesh.members:
        client = openai_client(node)
        assert {m.id for m in client.models.list()} == set(ALL)
        for model in (TINY, SMALL):
            reply = client.completions.create(model=model, prompt="hi", max_tokens=4, extra_body={"ignore_eos": True})
            assert reply.model == model and reply.usage and reply.usage.completion_tokens == 4
        emb = client.embeddings.create(model=EMBED, input="hello")
        assert len(emb.data[0].embedding) == 256


def test_remote_stream_arrives_token_by_token(mesh: Mesh) -> None:
    started = time.monotonic()
    arrivals = []
    stream = openai_client(mesh.client).completions.create(
        model=SMALL, prompt="go", max_tokens=120, stream=True, extra_body={"ignore_eos": True})
    for chunk in stream:
        arrivals.append(time.monotonic() - started)
    # Byte-fallback tokens that are not whole UTF-8 characters yet are held back by
    # llama-server, so there are somewhat fewer events than tokens.
    assert len(arrivals) > 50
    assert arrivals[0] < arrivals[-1] / 3


def test_greedy_output_is_the_same_from_every_member(mesh: Mesh) -> None:
    texts = {openai_client(n).completions.create(model=TINY, prompt="The mesh", max_tokens=12, temperature=0,
                                                 extra_body={"ignore_eos": True}).choices[0].text
             for n in mesh.members}
    assert len(texts) == 1


def test_unknown_model_is_404_everywhere(mesh: Mesh) -> None:
    for node in mesh.members:
        with pytest.raises(openai.NotFoundError):
            openai_client(node).completions.create(model="nobody-serves-this", prompt="x")


def test_console_shows_peers_routes_and_demand(mesh: Mesh) -> None:
    for _ in range(3):
        openai_client(mesh.client).completions.create(model=TINY, prompt="x", max_tokens=1)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        _, status, _ = http_json(f"{mesh.b.console}/api/status")
        peers = {p["id"]: p for p in status["peers"]}
        a_peer = peers.get(mesh.a.node_status().node_id, {})
        if a_peer.get("demand", {}).get(TINY, 0) >= 1 and all(p["rtt_ms"] > 0 for p in peers.values()
                                                                if p["role"] == "node"):
            break
        time.sleep(0.5)
    roles = sorted(p["role"] for p in status["peers"])
    assert roles == ["client", "node", "node"], status["peers"]
    assert all(p["state"] == "alive" for p in status["peers"])
    assert a_peer["serving"] == [TINY] and a_peer["vram_gb"] > 0 and a_peer["version"]
    assert a_peer["demand"].get(TINY, 0) >= 1, "node a's proxy demand was not gossiped"
    assert {r["model"] for r in status["routes"]} == set(ALL)
    assert status["mesh_id"] == mesh.a.node_status().mesh_id


def test_client_runs_no_node_agent_and_no_llama(mesh: Mesh) -> None:
    cmdlines = [" ".join(p.cmdline()) for p in mesh.client.descendants()]
    assert not any("mesh_node" in c or "llama-server" in c for c in cmdlines), cmdlines
    assert any("mesh_proxy" in c for c in cmdlines)
    _, status, _ = http_json(f"{mesh.client.console}/api/status")
    assert status["node_state"] == "client"


def tampered(token: str) -> str:
    data = msgpack.unpackb(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    data["secret"] = bytes(b ^ 0xFF for b in data["secret"])
    return base64.urlsafe_b64encode(msgpack.packb(data)).rstrip(b"=").decode()


def join_and_fail(tmp: Path, token: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mesh_cli", "--home", str(tmp / "intruder"), "--join", token,
                           "--port", str(free_port()), "--console", str(free_port())],
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


def test_tampered_token_is_refused_and_nothing_else_happens(mesh: Mesh, tmp_path: Path) -> None:
    result = join_and_fail(tmp_path, tampered(mesh.a.node_status().token))
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "refused" in result.stderr and "secret" in result.stderr, result.stderr[-1500:]
    assert len(mesh.a.node_status().peers) == 3
    assert http_json(f"{mesh.a.api}/v1/models")[0] == 200


def test_rotate_key_keeps_members_and_refuses_the_old_token(mesh: Mesh, tmp_path: Path,
                                                           models: dict[str, Path]) -> None:
    old = mesh.a.node_status().token
    result = subprocess.run([sys.executable, "-m", "mesh_cli", "rotate-key", "--home", str(mesh.a.home)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    new = result.stdout.strip()
    assert new and new != old and "3 members" in result.stderr
    assert mesh.a.node_status().token == new
    refused = join_and_fail(tmp_path, old)
    assert refused.returncode != 0 and "refused" in refused.stderr, refused.stderr[-1500:]
    # Members stay: every model still answers through the client.
    client = openai_client(mesh.client)
    for model in (TINY, SMALL):
        assert client.completions.create(model=model, prompt="x", max_tokens=2).usage
    # The new token admits a new member.
    newcomer = start_node(tmp_path / "new", [], "--join", new, wait=False)
    try:
        newcomer.wait_serving(ALL)
    finally:
        newcomer.stop()


def test_bind_port_is_the_port_in_the_token(mesh: Mesh) -> None:
    status = mesh.a.node_status()
    ports = {addr.rsplit(":", 1)[1] for addr in InviteToken.decode(status.token).addrs}
    bound = [c.laddr.port for p in mesh.a.descendants() if "mesh_node" in " ".join(p.cmdline())
             for c in p.net_connections(kind="udp")]
    assert len(ports) == 1 and int(ports.pop()) in bound


def test_the_proxy_package_alone_joins_as_a_client(mesh: Mesh, tmp_path: Path) -> None:
    """Install only meshcore + the proxy into a fresh venv, as on a client machine."""
    root = Path(__file__).resolve().parents[2]
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    uv = shutil.which("uv") or str(Path.home() / ".cache" / "mesh-llm" / "uv-bootstrap" / "bin" / "uv")
    subprocess.run([uv, "pip", "install", "-q", "--python", str(venv / "bin" / "python"),
                    str(root / "libs" / "meshcore"), str(root / "services" / "proxy")], check=True, timeout=300)
    listed = subprocess.run([uv, "pip", "list", "--python", str(venv / "bin" / "python")],
                            capture_output=True, text=True, check=True).stdout
    assert "mesh-llm-proxy" in listed and "mesh-llm-node" not in listed and "gguf" not in listed
    port = free_port()
    proc = subprocess.Popen([str(venv / "bin" / "mesh-llm-proxy"), "--join", mesh.a.node_status().token,
                             "--port", str(port), "--home", str(tmp_path / "home")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        ids: set[str] = set()
        while time.monotonic() < deadline and ids != set(ALL):
            try:
                ids = {m["id"] for m in http_json(f"http://127.0.0.1:{port}/v1/models", timeout=2)[1]["data"]}
            except OSError:
                pass
            time.sleep(0.3)
        assert ids == set(ALL)
        status, reply, _ = http_json(f"http://127.0.0.1:{port}/v1/completions",
                                     json.dumps({"model": SMALL, "prompt": "x", "max_tokens": 2}).encode())
        assert status == 200 and reply["usage"]["completion_tokens"] >= 1
    finally:
        proc.terminate()
        assert proc.wait(15) == 0, proc.stderr.read() if proc.stderr else ""
