"""The compose test mesh (docker-compose.yml at the repository root), started once
for tests/docker by pytest-docker under its own project name, with the client's
API and console on random host ports, and removed with its volumes afterwards.

The images come from `make images` (`make test` builds them first where a Docker
engine answers); compose is not asked to build, so a missing image is a clear failure."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import docker
import pytest

from compose_mesh import ComposeMesh

ROOT = Path(__file__).resolve().parents[2]
TAG = os.environ.get("MESH_LLM_TAG", "dev")
IMAGES = [f"mesh-llm/{role}:{TAG}" for role in ("node", "proxy", "directory")]


def compose_command() -> str:
    if subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return "docker compose"
    if shutil.which("docker-compose"):
        return "docker-compose"
    pytest.fail("neither `docker compose` nor `docker-compose` is installed: tests/docker need Docker Compose")


@pytest.fixture(scope="session")
def docker_client() -> docker.DockerClient:
    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as exc:
        pytest.fail(f"tests/docker need a Docker engine, and none answers here: {exc}")
    missing = [image for image in IMAGES if not client.images.list(name=image)]
    if missing:
        pytest.fail(f"images {', '.join(missing)} are missing: run `make images` first (make test does)")
    return client


@pytest.fixture(scope="session")
def docker_compose_command() -> str:
    return compose_command()


@pytest.fixture(scope="session")
def docker_compose_file() -> str:
    return str(ROOT / "docker-compose.yml")


@pytest.fixture(scope="session")
def docker_compose_project_name() -> str:
    return f"meshtest{os.getpid()}"


@pytest.fixture(scope="session")
def docker_setup() -> list[str]:
    os.environ["MESH_LLM_API_PORT"] = "0"       # random free host ports: a running `make run` is left alone
    os.environ["MESH_LLM_CONSOLE_PORT"] = "0"
    os.environ["MESH_LLM_TAG"] = TAG
    return ["up -d --no-build"]


@pytest.fixture(scope="session")
def docker_cleanup() -> list[str]:
    return ["down -v --timeout 20"]


@pytest.fixture(scope="session")
def mesh(docker_client: docker.DockerClient, docker_compose_project_name: str,
         request: pytest.FixtureRequest) -> ComposeMesh:
    started = time.monotonic()  # before `docker compose up`, which docker_services runs
    services = request.getfixturevalue("docker_services")
    return ComposeMesh(docker_client, docker_compose_project_name,
                       f"http://127.0.0.1:{services.port_for('client', 9337)}",
                       f"http://127.0.0.1:{services.port_for('client', 3131)}", started)
