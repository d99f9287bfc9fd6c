"""Model files like the ones people run: quantized (Q8_0, Q4_0, and Q4_K_M made by
llama-quantize), grouped-query attention, two architectures (llama, qwen2). Each
serves solo through the mesh with real clients; the Q4_K_M model split across two
nodes gives exactly the solo tokens; a split's worker says it is one."""

from __future__ import annotations

import time
from pathlib import Path

import openai
import pytest

from conftest import GQA_Q4KM, REAL_FILES
from meshcore.api import node_pb2 as pb
from meshnode import SAME_KERNELS, MeshNode, greedy, http_json, start_node

TOKENS = 12
SPLIT = GQA_Q4KM.name


def split_cap(model: Path) -> str:
    """--max-vram (GiB) for each of two nodes: 0.6 of what the model needs, so it takes both."""
    return f"{1.1 * model.stat().st_size * 0.6 / (1 << 30):.5f}"


def completions(node: MeshNode, model: str) -> list[str]:
    return greedy(node.api, model, TOKENS)


@pytest.fixture(scope="module")
def solo(tmp_path_factory: pytest.TempPathFactory, real_models: dict[str, Path]) -> dict[str, list[str]]:
    """Every real-file fixture served by one node; the greedy tokens of each."""
    node = start_node(tmp_path_factory.mktemp("solo"), list(real_models.values()))
    try:
        client = openai.OpenAI(base_url=f"{node.api}/v1", api_key="unused")
        outputs = {}
        for spec in REAL_FILES:
            chat = client.chat.completions.create(model=spec.name, max_tokens=8,
                                                  messages=[{"role": "user", "content": "hello"}])
            assert chat.usage.completion_tokens > 0 and chat.model == spec.name
            retrieved = client.models.retrieve(spec.name)
            assert retrieved.id == spec.name and retrieved.object == "model"
            outputs[spec.name] = completions(node, spec.name)
            assert completions(node, spec.name) == outputs[spec.name]  # greedy decoding is deterministic
        with pytest.raises(openai.NotFoundError) as err:
            client.models.retrieve("no-such-model")
        assert err.value.body["code"] == "model_not_found"
        assert "Traceback" not in node.log()
        return outputs
    finally:
        node.stop()


def test_each_real_file_serves_solo(solo: dict[str, list[str]]) -> None:
    assert set(solo) == {spec.name for spec in REAL_FILES}
    # Random weights say nonsense, but different files say different nonsense.
    assert len({tuple(v) for v in solo.values()}) == len(REAL_FILES)


def wait_for(predicate, timeout: float, what: str):  # noqa: ANN001, ANN201
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"not within {timeout} s: {what}")


@pytest.fixture(scope="module")
def solo_same_kernels(tmp_path_factory: pytest.TempPathFactory, real_models: dict[str, Path]) -> list[str]:
    """The split model's greedy tokens solo, on the kernels a split uses (meshnode.SAME_KERNELS)."""
    node = start_node(tmp_path_factory.mktemp("solo-same-kernels"), [real_models[SPLIT]], env=SAME_KERNELS)
    try:
        return completions(node, SPLIT)
    finally:
        node.stop()


def test_a_two_node_split_of_a_q4_k_m_model_gives_the_solo_tokens(
        tmp_path: Path, real_models: dict[str, Path], solo_same_kernels: list[str]) -> None:
    model = real_models[SPLIT]
    cap = split_cap(model)
    first = start_node(tmp_path / "n0", [model], "--max-vram", cap, wait=False, env=SAME_KERNELS)
    nodes = [first]
    try:
        nodes.append(start_node(tmp_path / "n1", [model], "--max-vram", cap, "--join", first.wait_token(),
                                wait=False, env=SAME_KERNELS))
        for node in nodes:
            node.wait_serving([SPLIT], timeout=120)
        host = next(n for n in nodes if n.node_status().models[0].split)
        worker = next(n for n in nodes if n is not host)
        host_id, worker_id = host.node_status().node_id, worker.node_status().node_id
        assert completions(worker, SPLIT) == solo_same_kernels
        assert completions(host, SPLIT) == solo_same_kernels
        assert [link.path for link in host.node_status().rpc_links] == [pb.RPC_PATH_DIRECT]

        # The worker says what it does: state worker, for which host, which layers.
        status = wait_for(lambda: (s := http_json(f"{worker.console}/api/status")[1])["models"][0]["worker"] and s,
                          10, "the worker's layers in its /api/status")
        [entry] = status["models"]
        assert status["node_state"] == "worker" and entry["state"] == "worker"
        split = host.node_status().models[0].split
        assert entry["worker"] == {"host": host_id, "first_layer": split[0].layers, "layers": split[1].layers,
                                   "total_layers": 4}
        assert host_id[:12] in entry["reason"] and "layers" in entry["reason"]
        listed = http_json(f"{worker.api}/v1/models/{SPLIT}")[1]
        assert [(p["node_id"], p["role"]) for p in listed["split"]] == [(host_id, "host"), (worker_id, "worker")]
        assert listed["status"] == "serving" and listed["nodes"] == [host_id]
        for node in nodes:
            assert "Traceback" not in node.log()
    finally:
        for node in nodes:
            node.stop()
