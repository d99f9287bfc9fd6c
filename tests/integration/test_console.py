"""The console: /api/status, /api/events (SSE), the page in a real browser, the chat relay."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from meshnode import MeshNode, http_json, start_node

TINY = "mesh-tiny-F16"


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory, models: dict[str, Path]) -> Iterator[MeshNode]:
    n = start_node(tmp_path_factory.mktemp("console"), [models[TINY]])
    yield n
    n.stop()


def test_status_has_every_field(node: MeshNode) -> None:
    status, body, _ = http_json(f"{node.console}/api/status")
    assert status == 200
    for key in ("node_id", "token", "mesh_id", "node_state", "models", "my_vram_gb", "api_port", "peers", "version"):
        assert key in body, key
    assert body["node_state"] == "serving" and body["api_port"] == node.api_port
    assert [(m["name"], m["state"]) for m in body["models"]] == [(TINY, "serving")]
    assert body["peers"] == [] and body["my_vram_gb"] > 0
    assert body["node_id"] == node.node_status().node_id


def test_events_start_with_a_snapshot(node: MeshNode) -> None:
    with httpx.Client(timeout=10) as http:
        with http.stream("GET", f"{node.console}/api/events") as resp:
            assert resp.headers["content-type"].startswith("text/event-stream")
            lines = resp.iter_lines()
            assert next(lines) == "event: status"
            data = next(lines)
            assert data.startswith("data: ")
            assert json.loads(data[6:])["models"][0]["name"] == TINY


def test_chat_relay_streams_from_the_api(node: MeshNode) -> None:
    with httpx.Client(timeout=30) as http:
        with http.stream("POST", f"{node.console}/api/chat",
                         json={"model": TINY, "stream": True, "max_tokens": 8,
                               "messages": [{"role": "user", "content": "hi"}]}) as resp:
            assert resp.status_code == 200
            events = [line for line in resp.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "data: [DONE]" and len(events) >= 3


def test_page_renders_live_status_in_a_browser(node: MeshNode, tmp_path: Path) -> None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if browser is None:
        pytest.fail("this test needs Chromium: `make setup` installs it as root (apt-get install chromium)")
    result = subprocess.run([browser, "--headless=new", "--no-sandbox", "--disable-gpu", "--user-data-dir=" + str(tmp_path),
                             "--virtual-time-budget=4000", "--dump-dom", node.console + "/"],
                            capture_output=True, text=True, timeout=60)
    dom = result.stdout
    node_id = node.node_status().node_id
    assert node_id in dom, result.stderr[-2000:]
    assert f">{TINY}<" in dom and ">serving<" in dom
