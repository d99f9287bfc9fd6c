"""Standby nodes and rebalancing with real processes: a standby with a model's file
serves it when its only server dies, when clients ask for a model nobody serves, and
when a model gets hot; nothing flaps when the load stops."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx

from meshnode import MeshNode, http_json, start_node, wait_until

TINY, SMALL = "mesh-tiny-F16", "mesh-small-F16"


def disk_with(tmp: Path, *files: Path) -> dict[str, str]:
    """A models folder holding `files` (links), as $MESH_LLM_MODELS_DIR for a node."""
    folder = tmp / "disk"
    folder.mkdir(parents=True)
    for f in files:
        (folder / f.name).symlink_to(f)
    return {"MESH_LLM_MODELS_DIR": str(folder)}


def model_state(node: MeshNode, model: str) -> str:
    for m in node.node_status().models:
        if m.model_id == model:
            return {2: "serving", 1: "loading"}.get(m.state, str(m.state))
    return ""


def ask(api: str, model: str, timeout: float = 30) -> int:
    try:
        return httpx.post(f"{api}/v1/completions", json={"model": model, "prompt": "hi", "max_tokens": 2},
                          timeout=timeout).status_code
    except httpx.HTTPError:
        return 0


class Load(threading.Thread):
    """A steady client: one request every `every` s; records (time, status)."""

    def __init__(self, api: str, model: str, every: float) -> None:
        super().__init__(daemon=True)
        self.api, self.model, self.every = api, model, every
        self.results: list[tuple[float, int]] = []
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            self.results.append((time.monotonic(), ask(self.api, self.model, timeout=10)))
            self.halt.wait(self.every)


def rebalances(node: MeshNode, model: str) -> list[tuple[str, str, str]]:
    return [(r.node_id, r.action, r.reason) for r in node.node_status().rebalances if r.model_id == model]


def test_standby_offers_its_disk_and_serves_a_model_whose_only_server_died(
        tmp_path: Path, models: dict[str, Path]) -> None:
    x = start_node(tmp_path / "x", [models[SMALL]])
    y = start_node(tmp_path / "y", [], "--join", x.node_status().token, env=disk_with(tmp_path / "y", models[SMALL]))
    z = start_node(tmp_path / "z", [models[TINY]], "--join", x.node_status().token)
    load = Load(z.api, SMALL, 0.25)
    try:
        wait_until(lambda: SMALL in y.node_status().spare, 30)
        assert y.node_status().spare[SMALL] == models[SMALL].stat().st_size
        peer_y = [p for p in x.node_status().peers if p.node_id == y.node_status().node_id][0]
        assert SMALL in peer_y.spare and peer_y.free_gb > 0  # the offer is gossiped
        assert model_state(y, SMALL) == ""                   # a standby runs nothing while x serves it
        load.start()
        wait_until(lambda: len(load.results) >= 4 and all(s == 200 for _, s in load.results[-4:]), 30)
        x.kill_hard()
        killed = time.monotonic()
        wait_until(lambda: any(p.state == "dead" for p in z.node_status().peers), 30)
        noticed = time.monotonic()
        wait_until(lambda: model_state(y, SMALL) == "serving", 60)
        wait_until(lambda: load.results[-1][1] == 200 and load.results[-1][0] > noticed, 30)
        back = next(t for t, s in load.results if t > noticed and s == 200)
        print(f"death noticed {noticed - killed:.1f} s after the kill; served again {back - noticed:.1f} s later")
        [(node, action, why)] = rebalances(y, SMALL)
        assert node == y.node_status().node_id and action == "promoted" and "is dead" in why
        # Until the standby serves, the model is "loading" (503 + Retry-After), never "not served" (404).
        assert {s for _, s in load.results} <= {200, 503}
        assert any(r.model_id == SMALL and r.action == "promoted" for r in z.node_status().rebalances)
        [m] = [m for m in y.node_status().models if m.model_id == SMALL]
        assert m.state == 2
        assert SMALL not in y.node_status().spare  # what it runs is not on offer
    finally:
        load.halt.set()
        for node in (z, y, x):
            node.stop()


def test_a_model_nobody_serves_that_clients_ask_for_is_loaded(tmp_path: Path, models: dict[str, Path]) -> None:
    x = start_node(tmp_path / "x", [models[TINY]])
    y = start_node(tmp_path / "y", [], "--join", x.node_status().token, env=disk_with(tmp_path / "y", models[SMALL]))
    try:
        wait_until(lambda: any(SMALL in p.spare for p in x.node_status().peers), 30)
        first = httpx.post(f"{x.api}/v1/chat/completions", json={"model": SMALL, "messages": [
            {"role": "user", "content": "hi"}], "max_tokens": 2}, timeout=30)
        assert first.status_code == 404  # nobody serves it yet: the 404 counts as demand
        wait_until(lambda: ask(x.api, SMALL) == 200, 60)
        [(_, action, why)] = rebalances(y, SMALL)
        assert action == "promoted" and "asked for it" in why
        demand = {d.model_id: d for d in x.node_status().demand}
        assert demand[SMALL].requests_per_min >= 1 and demand[SMALL].servers == 1
        status, console, _ = http_json(f"{x.console}/api/status")  # what the console shows
        assert status == 200
        [row] = [d for d in console["demand"] if d["model"] == SMALL]
        assert row["requests_per_min"] >= 1 and row["servers"] == 1
        [event] = [r for r in console["rebalances"] if r["model"] == SMALL]
        assert event["action"] == "promoted" and event["node_id"] == y.node_status().node_id
        assert "asked for it" in event["reason"]
    finally:
        y.stop()
        x.stop()


def test_a_hot_model_promotes_a_standby_once_and_lets_it_go_once_when_the_load_stops(
        tmp_path: Path, models: dict[str, Path]) -> None:
    rebalance = ("--hot-rpm", "10", "--min-serve", "5")
    x = start_node(tmp_path / "x", [models[SMALL]], *rebalance)
    y = start_node(tmp_path / "y", [], "--join", x.node_status().token, *rebalance,
                   env=disk_with(tmp_path / "y", models[SMALL]))
    load = Load(x.api, SMALL, 0.5)  # ~100 requests a minute on one server
    try:
        wait_until(lambda: SMALL in x.node_status().peers[0].spare, 30)
        load.start()
        wait_until(lambda: model_state(y, SMALL) == "serving", 60)
        [(_, action, why)] = rebalances(y, SMALL)
        assert action == "promoted" and "hot" in why
        # The mesh sees why y serves it (y's record reaches x by gossip, a round or two later).
        wait_until(lambda: dict(x.node_status().peers[0].promoted).get(SMALL) == why, 10)
        load.halt.set()
        load.join()
        assert all(s == 200 for _, s in load.results)
        # Demand ages out over a minute; the promoted copy then goes, once, and x keeps serving.
        wait_until(lambda: model_state(y, SMALL) == "", 120)
        time.sleep(10)
        assert [a for _, a, _ in rebalances(y, SMALL)] == ["promoted", "let go"]
        assert model_state(x, SMALL) == "serving" and SMALL in y.node_status().spare
    finally:
        load.halt.set()
        y.stop()
        x.stop()


def test_a_dropped_model_clients_still_ask_for_moves_to_a_standby_and_not_back(
        tmp_path: Path, models: dict[str, Path]) -> None:
    import subprocess
    import sys
    x = start_node(tmp_path / "x", [models[SMALL], models[TINY]])
    y = start_node(tmp_path / "y", [], "--join", x.node_status().token, env=disk_with(tmp_path / "y", models[SMALL]))
    try:
        wait_until(lambda: any(SMALL in p.spare for p in x.node_status().peers), 30)
        dropped = subprocess.run([sys.executable, "-m", "mesh_cli", "drop", SMALL, "--home", str(x.home)],
                                 capture_output=True, text=True, timeout=30)
        assert dropped.returncode == 0, dropped.stderr
        wait_until(lambda: ask(x.api, SMALL) == 200, 60)  # asked for: the standby loads it
        assert model_state(y, SMALL) == "serving" and model_state(x, SMALL) == ""
        assert SMALL not in x.node_status().spare  # x never offers what its user dropped
        assert [a for _, a, _ in rebalances(y, SMALL)] == ["promoted"]
    finally:
        y.stop()
        x.stop()
