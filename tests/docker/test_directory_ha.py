"""The `directory-ha` compose profile (docker-compose.yml): PostgreSQL, two directory
replicas on it and haproxy in front, in real containers under their own project name,
the balancer on a random host port. Checked from outside, through the balancer, as a
client would: a signed listing published and listed; each replica killed in turn (the
other keeps listing, and publishes still work), then started again and taken back by
the balancer. Removed with its volumes afterwards.

The images come from `make images` (scripts/images.sh runs scripts/directory-ha-images.sh;
`make test` builds them first where a Docker engine answers); compose is not asked to
build, so a missing image is a clear failure. The PostgreSQL password is the compose
file's default for tests (MESH_LLM_DIRECTORY_DB_PASSWORD overrides it), never in argv."""

from __future__ import annotations

import json
import os
import subprocess
import time
from typing import Any, Callable, Iterator

import docker
import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from compose_mesh import poll
from meshcore.directory_client import sign
from meshcore.identity import MeshSecret, node_id_of, public_bytes
from meshcore.token import InviteToken

TAG = os.environ.get("MESH_LLM_TAG", "dev")
HA_IMAGES = [f"mesh-llm/directory-{part}:{TAG}" for part in ("postgres", "haproxy")]
PROFILE = "directory-ha"
REPLICAS = ("directory-1", "directory-2")
SERVICES = ("directory-db", *REPLICAS, "directory-lb")


class HaDirectory:
    """The running profile: its containers by service, the balancer's URL, compose itself."""

    def __init__(self, client: docker.DockerClient, project: str, compose: Callable[..., str]) -> None:
        self.client, self.project, self.compose = client, project, compose
        self.url = ""

    def container(self, service: str) -> Any:
        found = self.client.containers.list(all=True, filters={
            "label": [f"com.docker.compose.project={self.project}", f"com.docker.compose.service={service}"]})
        assert found, f"no container for service {service}"
        return found[0]

    def logs(self) -> str:
        parts = []
        for service in SERVICES:
            try:
                parts.append(f"--- {service}\n{self.container(service).logs(tail=30).decode(errors='replace')}")
            except Exception as exc:  # noqa: BLE001 - logs are only a help to the reader
                parts.append(f"--- {service}: {exc}")
        return "\n".join(parts)

    def wait_for(self, what: str, check: Callable[[], Any], timeout: float, pause: float = 0.3) -> Any:
        done, last = poll(check, timeout, pause)
        if done:
            return last
        raise AssertionError(f"{what}: not after {timeout:.0f} s (last: {last!r})\n{self.logs()}")

    def names_listed(self) -> set[str]:
        """GET /v1/meshes through the balancer: the listed names (any failure raises)."""
        reply = httpx.get(f"{self.url}/v1/meshes", timeout=15)
        assert reply.status_code == 200, f"GET /v1/meshes through the balancer: {reply.status_code} {reply.text}"
        return {m["name"] for m in reply.json()["meshes"]}

    def names_in_replica(self, service: str) -> set[str]:
        """GET /v1/meshes from inside a replica, past the balancer."""
        code = ("import urllib.request as u; "
                "print(u.urlopen('http://127.0.0.1:8080/v1/meshes', timeout=5).read().decode())")
        exit_code, output = self.container(service).exec_run(["python3", "-c", code])
        assert exit_code == 0, f"{service}: {output.decode()[-1000:]}"
        return {m["name"] for m in json.loads(output)["meshes"]}

    def balancer_states(self) -> dict[str, str]:
        """haproxy's own view: replica -> UP, DOWN, MAINT (resolution) ... (`show stat`
        on its stats socket, read from inside its container)."""
        code = ("import socket; s = socket.socket(socket.AF_UNIX); s.connect('/run/haproxy/stats.sock'); "
                "s.sendall(b'show stat\\n'); out = b''\n"
                "while chunk := s.recv(65536): out += chunk\n"
                "print(out.decode())")
        exit_code, output = self.container("directory-lb").exec_run(["python3", "-c", code])
        assert exit_code == 0, f"directory-lb stats: {output.decode()[-1000:]}"
        header, *rows = [line.split(",") for line in output.decode().splitlines() if line]
        column = {name: i for i, name in enumerate([header[0].lstrip("# "), *header[1:]])}
        return {row[column["svname"]]: row[column["status"]] for row in rows
                if row[column["pxname"]] == "replicas" and row[column["svname"]] in REPLICAS}

    def publish(self, name: str) -> str:
        """A listing signed by a fresh node key, with that node's own invite for its mesh."""
        key = Ed25519PrivateKey.generate()
        mesh = MeshSecret.new(public_bytes(key), public=True)  # its id bound to the key: only it may list it
        listing = {"token": InviteToken.of(mesh, ("127.0.0.1:4000",), node_id_of(key.public_key())).encode(),
                   "mesh_id": mesh.mesh_id, "name": name, "region": "eu", "models_served": ["mesh-tiny-F16"],
                   "models_wanted": [], "models_on_disk": ["mesh-tiny-F16"], "total_vram_gb": 8.0,
                   "node_count": 1, "client_count": 0, "max_clients": 0, "version": "0.1.0"}
        reply = httpx.post(f"{self.url}/v1/meshes", json={"listing": listing, **sign(key, listing, "publish")},
                           timeout=15)
        assert reply.status_code == 200, f"publish {name} through the balancer: {reply.status_code} {reply.text}"
        return reply.json()["id"]


@pytest.fixture(scope="module")
def ha(docker_client: docker.DockerClient, docker_compose_command: str,
       docker_compose_file: str) -> Iterator[HaDirectory]:
    missing = [image for image in HA_IMAGES if not docker_client.images.list(name=image)]
    if missing:
        pytest.fail(f"images {', '.join(missing)} are missing: run `make images` first "
                    f"(make test does; it runs scripts/directory-ha-images.sh)")
    project = f"meshha{os.getpid()}"
    env = {**os.environ, "MESH_LLM_DIRECTORY_HA_PORT": "0", "MESH_LLM_TAG": TAG}  # a random free host port

    def compose(*args: str, timeout: float = 240) -> str:
        command = [*docker_compose_command.split(), "-f", docker_compose_file, "-p", project,
                   "--profile", PROFILE, *args]
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
        assert done.returncode == 0, f"`{' '.join(command)}` failed ({done.returncode}):\n{done.stdout}{done.stderr}"
        return done.stdout

    cluster = HaDirectory(docker_client, project, compose)
    started = time.monotonic()
    try:
        # Only the balancer is named: it brings its replicas, and they the database.
        compose("up", "-d", "--no-build", "directory-lb")
        lb = cluster.container("directory-lb")
        lb.reload()
        port = lb.attrs["NetworkSettings"]["Ports"]["8080/tcp"][0]["HostPort"]
        cluster.url = f"http://127.0.0.1:{port}"
        cluster.wait_for("the balancer answers /healthz",
                         lambda: httpx.get(f"{cluster.url}/healthz", timeout=5).status_code == 200, 60)
        print(f"\n`{docker_compose_command} --profile {PROFILE} up -d directory-lb` to the balancer answering: "
              f"{time.monotonic() - started:.1f} s")
        yield cluster
    finally:
        compose("down", "-v", "--timeout", "20", timeout=120)


def test_the_profile_runs_unprivileged_and_keeps_the_password_out_of_argv(ha: HaDirectory) -> None:
    for service in SERVICES:
        container = ha.container(service)
        assert container.attrs["State"]["Status"] == "running", f"{service}: {container.attrs['State']}\n{ha.logs()}"
    for service in REPLICAS:
        health = ha.container(service).attrs["State"].get("Health", {}).get("Status")
        assert health == "healthy", f"{service} is {health}"
        args = " ".join(ha.container(service).attrs["Args"])
        assert "postgresql://" not in args and "--db" not in args.replace("--db-wait", ""), args
    for service in ("directory-lb", *REPLICAS):
        exit_code, uid = ha.container(service).exec_run(["id", "-u"])
        assert exit_code == 0 and uid.decode().strip() != "0", f"{service} runs as root"
    # The server itself (not a wrapper) is the database container's process 1: `docker stop` reaches it.
    exit_code, comm = ha.container("directory-db").exec_run(["cat", "/proc/1/comm"])
    assert comm.decode().strip() == "postgres", comm


def test_a_listing_published_through_the_balancer_is_listed_by_every_replica(ha: HaDirectory) -> None:
    assert ha.wait_for("haproxy counts on both replicas",
                       lambda: set(ha.balancer_states().values()) == {"UP"}, 20)
    ha.publish("ha-first")
    # Round robin: the next reads may come from the other replica, which sees it within a second.
    ha.wait_for("ha-first listed through the balancer, read after read",
                lambda: all("ha-first" in ha.names_listed() for _ in range(4)), 15)
    for service in REPLICAS:
        ha.wait_for(f"ha-first listed by {service} itself", lambda s=service: "ha-first" in ha.names_in_replica(s), 10)


@pytest.mark.parametrize("victim", REPLICAS)
def test_with_one_replica_killed_the_other_lists_and_takes_publishes(ha: HaDirectory, victim: str) -> None:
    container = ha.container(victim)
    container.kill()  # SIGKILL: no goodbye; haproxy finds out by itself
    killed = time.monotonic()
    # Every read right after the kill (while haproxy has not yet taken the replica out,
    # a request to it is re-sent to the other one) and afterwards succeeds.
    slowest = 0.0
    while time.monotonic() - killed < 8:
        t0 = time.monotonic()
        assert "ha-first" in ha.names_listed(), f"{victim} killed: ha-first no longer listed"
        slowest = max(slowest, time.monotonic() - t0)
        time.sleep(0.3)
    name = f"ha-without-{victim}"
    ha.publish(name)
    ha.wait_for(f"{name} listed through the balancer", lambda: name in ha.names_listed(), 10)
    print(f"\n{victim} killed: every read through the balancer answered (slowest {slowest:.2f} s); "
          f"a publish too")

    # Back: started again (a new address, maybe), healthy, and taken back by the balancer.
    assert ha.balancer_states()[victim] != "UP", f"haproxy still counts on the killed {victim}"
    container.start()
    restarted = time.monotonic()
    ha.wait_for(f"{victim} healthy again",
                lambda: (container.reload() or container.attrs["State"].get("Health", {}).get("Status")) == "healthy",
                60)
    ha.wait_for(f"haproxy takes {victim} back", lambda: ha.balancer_states()[victim] == "UP", 30)
    print(f"{victim} started again: back in the balancer after {time.monotonic() - restarted:.1f} s")
    assert name in ha.names_in_replica(victim), f"{victim} does not see what was published while it was down"


def test_a_forged_x_forwarded_for_does_not_escape_the_rate_limit(ha: HaDirectory) -> None:
    """The replicas take the client address from X-Forwarded-For (haproxy's); a client
    that sends its own, a new address each time, still shares one write bucket (burst 10)."""
    codes = [httpx.post(f"{ha.url}/v1/meshes", json={}, timeout=15,
                        headers={"X-Forwarded-For": f"198.51.100.{i}", "Forwarded": f"for=198.51.100.{i}"}).status_code
             for i in range(1, 26)]
    assert 429 in codes, f"25 writes with forged client addresses were never limited: {codes}"
    assert set(codes) <= {422, 429}, codes

