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
