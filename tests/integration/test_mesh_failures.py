"""Members that die, leave or drop a model: the mesh notices and routes around."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from meshnode import MeshNode, http_json, start_node, wait_until

TINY, SMALL = "mesh-tiny-F16", "mesh-small-F16"


def served_models(node: MeshNode) -> set[str]:
    status, body, _ = http_json(f"{node.api}/v1/models", timeout=5)
    return {m["id"] for m in body.get("data", [])} if status == 200 else set()


def pair(tmp: Path, models: dict[str, Path]) -> tuple[MeshNode, MeshNode]:
    x = start_node(tmp / "x", [models[SMALL]])
    y = start_node(tmp / "y", [models[TINY]], "--join", x.node_status().token)
    y.wait_serving([SMALL, TINY])
    x.wait_serving([SMALL, TINY])
    return x, y


def test_hard_kill_mid_stream_ends_the_stream_with_an_error_and_drops_the_route(
        tmp_path: Path, models: dict[str, Path]) -> None:
    x, y = pair(tmp_path, models)
    try:
        events: list[str] = []
        with httpx.Client(timeout=30) as http:
            with http.stream("POST", f"{y.api}/v1/completions",
                             json={"model": SMALL, "prompt": "go", "max_tokens": 3000, "stream": True,
                                   "ignore_eos": True}) as resp:
                lines = resp.iter_lines()
                for line in lines:
                    if line.startswith("data: "):
                        events.append(line)
                    if len(events) == 5:
                        break
                x.kill_hard()
                killed_at = time.monotonic()
                for line in lines:
                    if line.startswith("data: "):
                        events.append(line)
                stream_ended_after = time.monotonic() - killed_at
        assert events[-1] == "data: [DONE]"
        assert '"error"' in events[-2] and "backend_unavailable" in events[-2]
        assert stream_ended_after < 10, f"the stream took {stream_ended_after:.1f} s to end"
        route_gone_after = wait_until(lambda: SMALL not in served_models(y), timeout=15) + stream_ended_after
        print(f"\nhard kill: stream ended after {stream_ended_after:.2f} s, route gone after <= {route_gone_after:.2f} s")
        assert route_gone_after < 10
        peers = {p.node_id: p.state for p in y.node_status().peers}
        assert list(peers.values()) == ["dead"]
    finally:
        y.stop()
        if x.proc.poll() is None:
            x.stop()


def collect_change_events(node: MeshNode, into: list[str]) -> threading.Thread:
    def read() -> None:
        try:
            with httpx.Client(timeout=None) as http, http.stream("GET", f"{node.console}/api/events") as resp:
                kind = ""
                for line in resp.iter_lines():
                    if line.startswith("event: "):
                        kind = line[7:]
                    elif line.startswith("data: ") and kind == "change":
                        into.append(json.loads(line[6:])["text"])
        except httpx.HTTPError:  # the console stopped with the node at the end of the test
            pass
    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return thread


def test_clean_leave_and_rejoin(tmp_path: Path, models: dict[str, Path]) -> None:
    x, y = pair(tmp_path, models)
    changes: list[str] = []
    try:
        collect_change_events(y, changes)
        time.sleep(0.5)
        x_id = x.node_status().node_id[:12]
        x.stop()
        gone_after = wait_until(lambda: SMALL not in served_models(y), timeout=5)
        print(f"\nclean leave: route gone after {gone_after:.2f} s")
        assert [p.state for p in y.node_status().peers] == ["left"]
        again = start_node(tmp_path / "x", [models[SMALL]], "--join", y.node_status().token)
        try:
            wait_until(lambda: SMALL in served_models(y), timeout=15)
            assert [p.state for p in y.node_status().peers] == ["alive"]
            wait_until(lambda: f"node {x_id} is alive" in changes, timeout=5)
            assert f"node {x_id} is left" in changes and f"route removed: {SMALL} on {x_id}" in changes
        finally:
            again.stop()
    finally:
        y.stop()


def test_drop_stops_routing_to_the_model(tmp_path: Path, models: dict[str, Path]) -> None:
    x, y = pair(tmp_path, models)
    try:
        result = subprocess.run([sys.executable, "-m", "mesh_cli", "drop", SMALL, "--home", str(x.home)],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0 and "stopped serving" in result.stderr, result.stderr
        wait_until(lambda: SMALL not in served_models(y) and SMALL not in served_models(x), timeout=10)
        status, err, _ = http_json(f"{y.api}/v1/completions", b'{"model": "mesh-small-F16", "prompt": "x"}')
        assert status == 404 and err["error"]["code"] == "model_not_found"
        again = subprocess.run([sys.executable, "-m", "mesh_cli", "drop", SMALL, "--home", str(x.home)],
                               capture_output=True, text=True, timeout=60)
        assert again.returncode == 1 and "does not serve" in again.stderr
        assert not any("llama-server" in p.name() and SMALL in " ".join(p.cmdline()) for p in x.descendants())
    finally:
        y.stop()
        x.stop()
