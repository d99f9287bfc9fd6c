"""Every API family llama-server speaks, through a mesh member whose model is served on
*another* node (so every request crosses the mesh): the official `openai` client (chat,
completions, responses), the official `anthropic` client (messages, streaming,
count_tokens), llama.cpp's native endpoints, the paths without `/v1`, requests without
`model`, CORS, and `/metrics` read with the Prometheus parser."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import anthropic
import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import TINY
from meshnode import MeshNode, start_node

MODEL = TINY.name


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory, models: dict[str, Path]) -> Iterator[tuple[MeshNode, MeshNode]]:
    server = start_node(tmp_path_factory.mktemp("server"), [models[MODEL]])
    member = start_node(tmp_path_factory.mktemp("member"), [], "--join", server.wait_token(), wait=False)
    try:
        member.wait_serving([MODEL], timeout=60)
        yield server, member
    finally:
        member.stop()
        server.stop()


@pytest.fixture
def member(mesh: tuple[MeshNode, MeshNode]) -> MeshNode:
    return mesh[1]


def post(node: MeshNode, path: str, body: dict | bytes, **headers: str) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(f"{node.api}{path}", content=content, timeout=60,
                      headers={"Content-Type": "application/json", **headers})


def test_openai_client_chat_completions_and_responses(member: MeshNode) -> None:
    client = openai.OpenAI(base_url=f"{member.api}/v1", api_key="unused", max_retries=0, timeout=60)
    chat = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=5,
                                          temperature=0)
    assert chat.usage and chat.usage.completion_tokens == 5
    text = client.completions.create(model=MODEL, prompt="The mesh", max_tokens=5, temperature=0)
    assert text.choices[0].text
    response = client.responses.create(model=MODEL, input="hello", max_output_tokens=8, temperature=0)
    assert response.status == "completed" and response.output
    events = [e.type for e in client.responses.create(model=MODEL, input="hello", max_output_tokens=8,
                                                      temperature=0, stream=True)]
    assert events[0] == "response.created" and events[-1] == "response.completed"
    assert "response.output_text.delta" in events


def test_anthropic_client_messages_stream_and_count_tokens(member: MeshNode) -> None:
    client = anthropic.Anthropic(base_url=member.api, api_key="unused", max_retries=0, timeout=60)
    greedy = {"extra_body": {"temperature": 0, "top_k": 1}}
    message = client.messages.create(model=MODEL, max_tokens=6, messages=[{"role": "user", "content": "hi"}],
                                     **greedy)
    assert message.type == "message" and message.role == "assistant"
    assert message.usage.output_tokens == 6 and message.content[0].type == "text"
    with client.messages.stream(model=MODEL, max_tokens=6, messages=[{"role": "user", "content": "hi"}],
                                **greedy) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_message()
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop" and "content_block_delta" in kinds
    assert final.content[0].text == message.content[0].text  # greedy: same text streamed or not
    count = client.messages.count_tokens(model=MODEL, messages=[{"role": "user", "content": "hello there"}])
    assert count.input_tokens > 0


def test_native_endpoints_and_paths_without_v1(member: MeshNode, mesh: tuple[MeshNode, MeshNode]) -> None:
    server = mesh[0]
    tokens = post(member, "/tokenize", {"content": "hello world"}).json()["tokens"]
    assert tokens and tokens == post(server, "/tokenize", {"content": "hello world"}).json()["tokens"]
    assert post(member, "/detokenize", {"tokens": tokens}).json()["content"].strip() == "hello world"
    assert post(member, "/completion", {"prompt": "a", "n_predict": 3}).json()["tokens_predicted"] == 3
    assert "prompt" in post(member, "/apply-template", {"messages": [{"role": "user", "content": "x"}]}).json()
    for path in ("/chat/completions", "/completions"):
        body = {"model": MODEL, "max_tokens": 2, **({"prompt": "a"} if path == "/completions" else
                                                     {"messages": [{"role": "user", "content": "a"}]})}
        assert post(member, path, body).status_code == 200, path


def test_without_model_the_only_model_is_used_else_400_names_them(member: MeshNode) -> None:
    reply = post(member, "/v1/chat/completions", {"messages": [{"role": "user", "content": "a"}], "max_tokens": 2})
    assert reply.status_code == 200 and reply.json()["choices"]


def test_unknown_model_gets_each_familys_404(member: MeshNode) -> None:
    openai_style = post(member, "/v1/chat/completions", {"model": "nope", "messages": []})
    assert openai_style.status_code == 404 and openai_style.json()["error"]["code"] == "model_not_found"
    anthropic_style = post(member, "/v1/messages", {"model": "nope", "max_tokens": 1, "messages": []})
    assert anthropic_style.status_code == 404
    assert anthropic_style.json()["type"] == "error" and anthropic_style.json()["error"]["type"] == "not_found_error"
    with pytest.raises(anthropic.NotFoundError):
        anthropic.Anthropic(base_url=member.api, api_key="x", max_retries=0).messages.create(
            model="nope", max_tokens=1, messages=[{"role": "user", "content": "a"}])
    native = post(member, "/tokenize", {"model": "nope", "content": "a"})
    assert native.status_code == 404 and native.json()["error"]["code"] == "model_not_found"


def test_cors_preflight_and_origins(member: MeshNode) -> None:
    ask = {"Origin": "http://localhost:5173", "Access-Control-Request-Method": "POST",
           "Access-Control-Request-Headers": "content-type, authorization"}
    ok = httpx.options(f"{member.api}/v1/chat/completions", headers=ask)
    assert ok.status_code == 204 and ok.headers["access-control-allow-origin"] == "http://localhost:5173"
    assert "content-type" in ok.headers["access-control-allow-headers"].lower()
    assert "access-control-allow-credentials" not in ok.headers
    evil = httpx.options(f"{member.api}/v1/chat/completions", headers={**ask, "Origin": "https://evil.example"})
    assert evil.status_code == 403 and "access-control-allow-origin" not in evil.headers
    simple = post(member, "/v1/chat/completions", {"model": MODEL, "messages": [{"role": "user", "content": "a"}],
                                                   "max_tokens": 1}, Origin="http://127.0.0.1:8080")
    assert simple.status_code == 200 and simple.headers["access-control-allow-origin"] == "http://127.0.0.1:8080"
    assert post(member, "/v1/models", b"", Origin="https://evil.example").status_code in (403, 405)


def test_metrics_parse_and_count_what_happened(member: MeshNode) -> None:
    post(member, "/v1/chat/completions", {"model": MODEL, "messages": [{"role": "user", "content": "a"}],
                                          "max_tokens": 3, "stream": True})
    text = httpx.get(f"{member.api}/metrics").text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    requests = [s for s in families["mesh_llm_requests"].samples if s.name == "mesh_llm_requests_total"]
    assert any(s.labels["model"] == MODEL and s.labels["route"] == "remote" and s.value >= 1 for s in requests)
    ttft = families["mesh_llm_time_to_first_byte_seconds"]
    assert any(s.name.endswith("_count") and s.value >= 1 for s in ttft.samples)
    assert families["mesh_llm_peers"].samples and families["mesh_llm_memory_offered_bytes"].samples
