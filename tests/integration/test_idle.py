"""Idle mode: `mesh-llm` with nothing to serve or join prints how to start or join a mesh,
lists the directory's public meshes, serves the same read-only on the console port, and
creates nothing (no home, no key, no mesh) — a real process, a real directory."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from meshnode import free_port
from test_directory import Directory, listing, publish_body


@pytest.fixture
def directory(tmp_path: Path) -> Iterator[Directory]:
    d = Directory(tmp_path / "dir.sqlite3", "--write-rate", "0", "--read-rate", "0")
    yield d
    d.stop()


def idle(tmp: Path, directory_url: str) -> tuple[subprocess.Popen, int]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "mesh_cli", "--home", str(tmp / "home"), "--console", str(port),
                             "--directory", directory_url], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, stdin=subprocess.DEVNULL, env={**os.environ, "MESH_LLM_DIRECTORY": ""})
    return proc, port


def page_when(port: int, words: str, timeout: float = 20) -> str:
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        try:
            text = httpx.get(f"http://127.0.0.1:{port}/", timeout=2).text
            if words in text:
                return text
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"{words!r} not on the idle page:\n{text}")


def test_idle_mode_shows_how_to_start_and_the_public_meshes(tmp_path: Path, directory: Directory) -> None:
    with httpx.Client(base_url=directory.url) as http:
        assert http.post("/v1/meshes", json=publish_body(Ed25519PrivateKey.generate(),
                                                         listing("alpha"))).status_code == 200
    proc, port = idle(tmp_path, directory.url)
    try:
        page = page_when(port, "alpha")
        assert "mesh-llm --join TOKEN" in page and "mesh-llm --auto" in page
        status = httpx.get(f"http://127.0.0.1:{port}/api/status").json()
        assert status["node_state"] == "idle" and [m["name"] for m in status["public_meshes"]] == ["alpha"]
        assert httpx.get(f"http://127.0.0.1:{port}/", headers={"Host": "evil.example"}).status_code == 403
        assert not (tmp_path / "home").exists()  # no mesh, no key, no folder
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=15)
    assert proc.returncode == 0 and "Traceback" not in out
    assert "mesh-llm --model" in out and "alpha" in out


def test_idle_mode_offline_still_answers_at_once(tmp_path: Path) -> None:
    proc, port = idle(tmp_path, f"http://127.0.0.1:{free_port()}")
    try:
        assert "not reachable" in page_when(port, "not reachable")
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=15)
    assert proc.returncode == 0 and "Traceback" not in out
