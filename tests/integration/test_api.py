"""The OpenAI-compatible API of one node, through the official `openai` client,
against real llama-server processes."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Iterator

import httpx
import openai
import pytest

from meshcore.api import node_pb2 as pb
from meshnode import MeshNode, http_json, start_node

TINY, EMBED, SMALL = "mesh-tiny-F16", "mesh-embed-F16", "mesh-small-F16"
GREEDY = {"temperature": 0, "seed": 1}


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory, models: dict[str, Path]) -> Iterator[MeshNode]:
    n = start_node(tmp_path_factory.mktemp("api"), [models[TINY], models[EMBED], models[SMALL]])
    yield n
    n.stop()


@pytest.fixture
def client(node: MeshNode) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{node.api}/v1", api_key="unused", max_retries=0, timeout=60)


def test_models_are_listed_by_file_stem(client: openai.OpenAI) -> None:
    assert {m.id for m in client.models.list()} == {TINY, EMBED, SMALL}


def test_chat(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(model=TINY, messages=[{"role": "user", "content": "hello"}],
                                           max_tokens=12, **GREEDY)
    assert reply.choices[0].message.role == "assistant"
    assert reply.usage and reply.usage.completion_tokens == 12
    assert reply.model == TINY


def test_stream_arrives_chunk_by_chunk(client: openai.OpenAI) -> None:
    started = time.monotonic()
    arrivals, text, finish = [], "", None
    stream = client.chat.completions.create(model=SMALL, messages=[{"role": "user", "content": "count"}],
                                            max_tokens=150, stream=True, extra_body={"ignore_eos": True},
                                            **GREEDY)
    for chunk in stream:
        arrivals.append(time.monotonic() - started)
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
            finish = chunk.choices[0].finish_reason or finish
    assert finish == "length" and text
    assert len(arrivals) > 100
    # Unbuffered: the first token arrives long before the last one.
    assert arrivals[0] < arrivals[-1] / 3, f"first chunk at {arrivals[0]:.2f}s, last at {arrivals[-1]:.2f}s"


def test_completions_match_llama_server_byte_for_byte(node: MeshNode, client: openai.OpenAI) -> None:
    body = {"model": TINY, "prompt": "The mesh", "max_tokens": 16, "ignore_eos": True, **GREEDY}
    via_proxy = client.completions.create(**{k: v for k, v in body.items() if k != "ignore_eos"},
                                          extra_body={"ignore_eos": True})
    status, direct, _ = http_json(f"http://127.0.0.1:{node.llama_port(TINY)}/v1/completions",
                                  json.dumps(body).encode())
    assert status == 200
    assert via_proxy.choices[0].text == direct["choices"][0]["text"]
    assert via_proxy.usage and via_proxy.usage.completion_tokens == 16


def test_embeddings(client: openai.OpenAI) -> None:
    result = client.embeddings.create(model=EMBED, input=["hello mesh", "another text"])
    assert len(result.data) == 2
    assert len(result.data[0].embedding) == 256
    assert result.data[0].embedding != result.data[1].embedding


def test_unknown_model_is_404_model_not_found(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
    assert info.value.code == "model_not_found"
    assert TINY in info.value.message


@pytest.mark.parametrize("body,code", [(b"{not json", "invalid_request"), (b'{"messages": []}', "invalid_request"),
                                       (b"[]", "invalid_request")])
def test_bad_bodies_are_400(node: MeshNode, body: bytes, code: str) -> None:
    status, err, _ = http_json(f"{node.api}/v1/chat/completions", body)
    assert status == 400
    assert err["error"]["code"] == code and err["error"]["type"] == "invalid_request_error"
    assert err["error"]["message"]


@pytest.mark.parametrize("ctype", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; b=x"])
def test_a_body_that_is_not_declared_json_is_415(node: MeshNode, ctype: str) -> None:
    """What a web page can POST cross-origin without a preflight never reaches a model."""
    body = json.dumps({"model": TINY, "prompt": "x", "max_tokens": 1}).encode()
    status, err, _ = http_json(f"{node.api}/v1/completions", body, headers={"Content-Type": ctype})
    assert status == 415 and err["error"]["code"] == "unsupported_media_type" and "application/json" in err["error"]["message"]
    status, _, _ = http_json(f"{node.api}/v1/completions", body,
                             headers={"Content-Type": "application/json; charset=utf-8"})
    assert status == 200


def test_body_over_8_mib_is_413(node: MeshNode) -> None:
    big = json.dumps({"model": TINY, "prompt": "x" * (8 * 1024 * 1024)}).encode()
    status, err, _ = http_json(f"{node.api}/v1/completions", big)
    assert status == 413 and err["error"]["code"] == "request_too_large"


def test_unknown_path_is_openai_shaped_404(node: MeshNode) -> None:
    status, err, _ = http_json(f"{node.api}/v1/nothing-here", b"{}")
    assert status == 404 and "error" in err


def test_client_disconnect_stops_generation_upstream(node: MeshNode, client: openai.OpenAI) -> None:
    port = node.llama_port(SMALL)
    # How fast does this model decode? Then a 3000-token stream would last far longer than the check below.
    timing = client.completions.create(model=SMALL, prompt="a", max_tokens=40, extra_body={"ignore_eos": True})
    status, direct, _ = http_json(f"http://127.0.0.1:{port}/completion",
                                  json.dumps({"prompt": "a", "n_predict": 40, "ignore_eos": True}).encode())
    per_token_s = direct["timings"]["predicted_ms"] / 1000 / 40
    assert timing.usage and per_token_s * 3000 > 6, f"model too fast for this test ({per_token_s * 1000:.2f} ms/token)"

    with httpx.Client(timeout=30) as http:
        with http.stream("POST", f"{node.api}/v1/completions",
                         json={"model": SMALL, "prompt": "go", "max_tokens": 3000, "stream": True,
                               "ignore_eos": True}) as resp:
            lines = resp.iter_lines()
            for _ in range(5):
                next(lines)
            assert busy_slots(port) >= 1
    closed_at = time.monotonic()
    while busy_slots(port) and time.monotonic() - closed_at < 5:
        time.sleep(0.05)
    stopped_after = time.monotonic() - closed_at
    assert busy_slots(port) == 0, "llama-server still generating 5 s after the client went away"
    assert stopped_after < per_token_s * 3000 / 3


def busy_slots(port: int) -> int:
    status, slots, _ = http_json(f"http://127.0.0.1:{port}/slots")
    assert status == 200
    return sum(1 for s in slots if s.get("is_processing"))


def test_loading_model_is_503_with_retry_after(tmp_path: Path, models: dict[str, Path], llama_bin: Path) -> None:
    # A real llama-server that starts 4 s late: a model that takes time to load.
    slow = tmp_path / "slow-bin"
    slow.mkdir()
    wrapper = slow / "llama-server"
    wrapper.write_text(f"#!/bin/sh\nsleep 4\nexec {llama_bin / 'llama-server'} \"$@\"\n")
    wrapper.chmod(0o755)
    (slow / "ggml-rpc-server").symlink_to(llama_bin / "ggml-rpc-server")
    n = start_node(tmp_path, [models[TINY]], "--llama-bin-dir", str(slow), wait=False)
    try:
        deadline = time.monotonic() + 20
        status = 0
        while time.monotonic() < deadline:
            try:
                status, err, headers = http_json(f"{n.api}/v1/chat/completions",
                                                 json.dumps({"model": TINY, "messages": []}).encode(), timeout=5)
            except OSError:  # the proxy is not listening yet
                time.sleep(0.1)
                continue
            if status == 503 and "loading" in err["error"]["message"]:
                break
            time.sleep(0.1)
        assert status == 503, n.log()
        assert int(headers["retry-after"]) > 0
        n.wait_serving([TINY])
        status, _, _ = http_json(f"{n.api}/v1/completions",
                                 json.dumps({"model": TINY, "prompt": "x", "max_tokens": 2}).encode())
        assert status == 200
    finally:
        n.stop()


def test_backend_gone_is_502_then_the_node_restarts_it(tmp_path: Path, models: dict[str, Path]) -> None:
    n = start_node(tmp_path, [models[TINY]])
    body = json.dumps({"model": TINY, "prompt": "x", "max_tokens": 2}).encode()
    agent = n.child_pid("mesh_node")
    try:
        # Freeze the node agent so it cannot notice, then kill its llama-server.
        llama = n.llama_pid(TINY)
        os.kill(agent, signal.SIGSTOP)
        os.kill(llama, signal.SIGKILL)
        status, err, _ = http_json(f"{n.api}/v1/completions", body)
        assert status == 502 and err["error"]["code"] == "backend_unavailable"
        os.kill(agent, signal.SIGCONT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            model = [m for m in n.node_status().models if m.model_id == TINY][0]
            if model.restarts == 1 and model.state == pb.MODEL_STATE_SERVING:
                break
            time.sleep(0.1)
        assert (model.restarts, model.state) == (1, pb.MODEL_STATE_SERVING), n.log()[-2000:]
        n.wait_serving([TINY], timeout=10)
        status, _, _ = http_json(f"{n.api}/v1/completions", body)
        assert status == 200
    finally:
        os.kill(agent, signal.SIGCONT)
        n.stop()
