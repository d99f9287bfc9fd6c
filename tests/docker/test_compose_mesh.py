"""`docker compose up`: the test mesh of docker-compose.yml, in real containers.

A directory, three nodes (mesh-tiny-F16 on node1; mesh-split-F16 split across two
of them, --max-vram forcing it) and a client-only proxy whose API and console are
the only ports published on the host. Checked from outside, as a user would: the
official `openai` client through the published API; and with the Docker engine:
container health, a worker stopped, a node cut off the network and put back."""

from __future__ import annotations

import os
import time

import docker
import httpx
import openai
import pytest
from openai import OpenAI

from compose_mesh import ComposeMesh, wait_for

TINY, SPLIT = "mesh-tiny-F16", "mesh-split-F16"
NODES = ("node1", "node2", "node3")
SPLIT_LAYERS = 3


def models(mesh: ComposeMesh) -> dict[str, dict]:
    body = httpx.get(f"{mesh.api}/v1/models", timeout=10).json()
    return {m["id"]: m for m in body["data"]}


def serving(mesh: ComposeMesh) -> dict[str, dict]:
    return {k: v for k, v in models(mesh).items() if v.get("status") == "serving"}


def split_members(mesh: ComposeMesh) -> list[str]:
    return [part["node_id"] for part in serving(mesh)[SPLIT]["split"]]


def complete(client: OpenAI, model: str, tokens: int = 6) -> str:
    reply = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hello mesh"}],
                                           max_tokens=tokens, temperature=0, extra_body={"ignore_eos": True})
    assert reply.usage.completion_tokens == tokens
    return reply.choices[0].message.content


@pytest.fixture(scope="module")
def node_ids(mesh: ComposeMesh) -> dict[str, str]:
    """service -> node id, and back."""
    ids = {service: wait_for(f"{service} status", lambda s=service: mesh.node_status(s)["node_id"], 180, mesh)
           for service in NODES}
    return ids | {v: k for k, v in ids.items()}


@pytest.fixture(scope="module")
def client(mesh: ComposeMesh) -> OpenAI:
    """Both models answered once through the client: the mesh is up."""
    wait_for("both models served through the client", lambda: {TINY, SPLIT} <= set(serving(mesh)), 300, mesh)
    openai = OpenAI(base_url=f"{mesh.api}/v1", api_key="not-needed", max_retries=0, timeout=60)
    for model in (TINY, SPLIT):
        wait_for(f"{model} answers", lambda m=model: complete(openai, m) is not None, 60, mesh)
    print(f"\n`docker compose up` to both models answering: {time.monotonic() - mesh.started:.1f} s")
    return openai


def test_the_mesh_comes_up_healthy(mesh: ComposeMesh, client: OpenAI) -> None:
    def healthy() -> bool:
        return all(mesh.container(s).attrs["State"].get("Health", {}).get("Status") == "healthy"
                   for s in ("directory", *NODES, "client"))
    wait_for("every long-running container healthy", healthy, 120, mesh)
    models_job = mesh.container("models").attrs["State"]
    assert models_job["Status"] == "exited" and models_job["ExitCode"] == 0
    for service in ("directory", "node1", "client"):
        exit_code, uid = mesh.container(service).exec_run(["id", "-u"])
        assert exit_code == 0 and uid.decode().strip() == "10001", f"{service} runs as uid {uid!r}"


def test_both_models_answer_through_the_client_proxy(mesh: ComposeMesh, client: OpenAI,
                                                     node_ids: dict[str, str]) -> None:
    assert complete(client, TINY, 8)
    stream = client.chat.completions.create(model=SPLIT, messages=[{"role": "user", "content": "count"}],
                                            max_tokens=12, temperature=0, stream=True,
                                            extra_body={"ignore_eos": True})
    pieces = [c.choices[0].delta.content or "" for c in stream if c.choices]
    assert len(pieces) >= 12 and "".join(pieces)
    split = serving(mesh)[SPLIT]["split"]
    assert len(split) == 2 and sum(part["layers"] for part in split) == SPLIT_LAYERS, split
    assert split[0]["node_id"] == node_ids["node1"], "node1 offers the most memory, so it hosts the split"
    links = mesh.node_status("node1")["rpc_links"]  # between containers too, the tensors go over TCP + TLS
    assert [link["path"] for link in links] == ["direct"], links
    with pytest.raises(openai.NotFoundError, match="no-such-model"):
        client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])


def test_the_console_is_published_on_the_host(mesh: ComposeMesh, client: OpenAI) -> None:
    page = httpx.get(f"{mesh.console}/", timeout=10)
    assert page.status_code == 200 and "<html" in page.text.lower()
    status = httpx.get(f"{mesh.console}/api/status", timeout=10).json()
    routed = {r["model"] for r in status["routes"] if r["state"] == "serving"}
    assert {TINY, SPLIT} <= routed
    assert sum(1 for p in status["peers"] if p["role"] == "node" and p["state"] == "alive") == 3


def test_the_directory_lists_the_mesh(mesh: ComposeMesh, client: OpenAI) -> None:
    def listed() -> dict | None:
        meshes = mesh.exec_json("directory", "http://127.0.0.1:8080/v1/meshes")["meshes"]
        return next((m for m in meshes if m["name"] == "compose-mesh" and SPLIT in m["models_served"]), None)
    listing = wait_for("compose-mesh listed with both models", listed, 90, mesh)
    assert TINY in listing["models_served"] and listing["node_count"] == 3, listing


def test_a_node_cut_off_the_network_is_detected_and_the_mesh_heals(
        mesh: ComposeMesh, client: OpenAI, node_ids: dict[str, str]) -> None:
    members = split_members(mesh)
    spare = next(s for s in NODES if node_ids[s] not in members)
    spare_id, network = node_ids[spare], mesh.network
    network.disconnect(mesh.container(spare))
    cut = time.monotonic()
    try:
        def peer_state(observer: str, peer: str) -> str:
            return next(p["state"] for p in mesh.node_status(observer)["peers"] if p["id"] == peer)
        wait_for(f"node1 sees {spare} dead", lambda: peer_state("node1", spare_id) == "dead", 30, mesh)
        detected = time.monotonic() - cut
        wait_for(f"{spare} sees the others dead",
                 lambda: all(p["state"] == "dead" for p in mesh.node_status(spare)["peers"]), 30, mesh)
        assert complete(client, SPLIT), "the split does not use the spare: it keeps answering"
    finally:
        network.connect(mesh.container(spare))
    back = time.monotonic()
    wait_for(f"node1 sees {spare} alive again", lambda: peer_state("node1", spare_id) == "alive", 60, mesh)
    wait_for(f"{spare} sees every peer alive again",
             lambda: all(p["state"] == "alive" for p in mesh.node_status(spare)["peers"]), 60, mesh)
    print(f"\ncut off: detected in {detected:.1f} s; healed {time.monotonic() - back:.1f} s after reconnecting")
    assert complete(client, TINY) and complete(client, SPLIT)


def test_stopping_a_worker_container_replans_the_split(
        mesh: ComposeMesh, client: OpenAI, node_ids: dict[str, str]) -> None:
    wait_for("the split is served by two nodes", lambda: len(split_members(mesh)) == 2, 60, mesh)
    worker = node_ids[split_members(mesh)[1]]
    spare = next(s for s in NODES if s not in ("node1", worker))
    container = mesh.container(worker)
    container.stop(timeout=20)
    container.reload()
    assert container.attrs["State"]["ExitCode"] == 0, f"{worker} did not stop cleanly on SIGTERM"
    stopped = time.monotonic()
    seen: set[int] = set()

    def replanned() -> bool:
        try:
            complete(client, SPLIT)
            seen.add(200)
        except Exception as exc:  # noqa: BLE001 - the status is what matters
            seen.add(getattr(exc, "status_code", -1))
            return False
        return split_members(mesh) == [node_ids["node1"], node_ids[spare]]
    wait_for("the split re-planned onto node1 and the spare", replanned, 120, mesh, pause=1)
    print(f"\nworker {worker} stopped: split answering again with {spare} after {time.monotonic() - stopped:.1f} s")
    assert seen <= {200, 503}, f"while re-planning, requests got {seen} (expected answers or 503 + Retry-After)"
    container.start()
    wait_for(f"{worker} back in the mesh",
             lambda: mesh.node_status(worker)["node_id"] == node_ids[worker], 120, mesh)


def test_the_client_image_refuses_to_serve_models_in_one_line(docker_client: docker.DockerClient) -> None:
    with pytest.raises(docker.errors.ContainerError) as failed:
        docker_client.containers.run(f"mesh-llm/proxy:{os.environ.get('MESH_LLM_TAG', 'dev')}",
                                     entrypoint=["mesh-llm"], command=["--model", "some-model"],
                                     remove=True, stderr=True, stdout=False)
    message = failed.value.stderr.decode().strip()
    assert failed.value.exit_status == 2
    assert message == ("mesh-llm: this is a client-only install (no node agent): "
                       "use mesh-llm --client --join TOKEN"), message
