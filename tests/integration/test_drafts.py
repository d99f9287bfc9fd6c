"""Speculative decoding with a draft model: `--draft` runs it beside the model in the
same llama-server, `/api/status` (and the console) show it and its acceptance rate,
read from llama-server's own metrics; the tokens are the model's (greedy, same as
without a draft)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from conftest import TINY
from meshnode import greedy, http_json, start_node

MODEL = TINY.name


def test_a_draft_runs_beside_the_model_and_its_acceptance_shows(tmp_path: Path, models: dict[str, Path]) -> None:
    plain = start_node(tmp_path / "plain", [models[MODEL]])
    try:
        expected = greedy(plain.api, MODEL, 24)
    finally:
        plain.stop()
    draft = tmp_path / "mesh-tiny-draft.gguf"  # the same weights: every drafted token is accepted
    shutil.copy(models[MODEL], draft)
    node = start_node(tmp_path / "node", [models[MODEL]], "--draft", str(draft))
    try:
        assert greedy(node.api, MODEL, 24) == expected
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            model = next(m for m in http_json(f"{node.console}/api/status")[1]["models"] if m["name"] == MODEL)
            if model["draft_acceptance"] > 0:
                break
            time.sleep(0.5)
        assert model["draft"] == "mesh-tiny-draft" and model["draft_acceptance"] > 0.9, model
        assert "--model-draft" in (node.home / "logs" / f"llama-server-{MODEL}.log").read_text()
    finally:
        node.stop()


def test_a_split_host_runs_the_draft_locally(tmp_path: Path, models: dict[str, Path]) -> None:
    draft = tmp_path / "mesh-tiny-draft.gguf"
    shutil.copy(models[MODEL], draft)
    first = start_node(tmp_path / "n0", [models[MODEL]], "--split", "--draft", str(draft), wait=False)
    nodes = [first]
    try:
        nodes.append(start_node(tmp_path / "n1", [models[MODEL]], "--split", "--draft", str(draft),
                                "--join", first.wait_token(), wait=False))
        deadline = time.monotonic() + 120
        host = None
        while time.monotonic() < deadline and host is None:
            for n in nodes:
                try:
                    m = n.node_status().models[0]
                except Exception:  # noqa: BLE001 - starting
                    continue
                if m.state == 2 and len(m.split) == 2:
                    host = n
            time.sleep(0.5)
        assert host is not None, "no split formed"
        assert len(greedy(host.api, MODEL, 8)) == 3
        command = (host.home / "logs" / f"llama-server-{MODEL}.log").read_text().split("--rpc")[-1]
        assert "--model-draft" in command and "--gpu-layers-draft 0" in command  # the draft stays on the host
        assert host.node_status().models[0].draft == "mesh-tiny-draft"
        # Each node gossips the catalog models it could fetch and hold (for rebalancing to ask).
        [peer] = [p for p in host.node_status().peers if p.role == "node"]
        assert "Qwen3-0.6B-Q4_K_M" in peer.can_fetch
    finally:
        for n in nodes:
            n.stop()
