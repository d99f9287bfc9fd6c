"""API families (meshcore.api_paths / api_errors) and the CORS decision, pure."""

import pytest

from meshcore.api_errors import family_error
from meshcore.api_paths import FORWARDED, Family, family_of, is_forwarded
from meshcore.errors import ConfigError
from meshcore.host_guard import check_origin
from mesh_proxy.cors import origin_allowed
from mesh_proxy.forward import broken_stream_event


def test_every_family_is_forwarded_and_nothing_else() -> None:
    for path in ("/v1/chat/completions", "/chat/completions", "/v1/responses", "/responses", "/v1/messages",
                 "/v1/messages/count_tokens", "/completion", "/tokenize", "/detokenize", "/apply-template",
                 "/infill", "/v1/rerank", "/embedding", "/embeddings"):
        assert path in FORWARDED and is_forwarded("POST", path + "?x=1")
    for method, path in (("GET", "/v1/messages"), ("POST", "/props"), ("POST", "/slots/0"),
                         ("POST", "/lora-adapters"), ("POST", "/v1/chat/completions/control"), ("POST", "/metrics")):
        assert not is_forwarded(method, path)
    assert family_of("/v1/messages/count_tokens") is Family.ANTHROPIC
    assert family_of("/v1/messages/batches") is Family.ANTHROPIC  # unknown, but Anthropic's
    assert family_of("/tokenize") is Family.LLAMA and family_of("/nope") is Family.OPENAI


def test_errors_take_the_familys_shape() -> None:
    assert family_error("/v1/messages", 404, "no such model", "invalid_request_error", "model_not_found") == \
        {"type": "error", "error": {"type": "not_found_error", "message": "no such model"}}
    assert family_error("/v1/messages", 503, "loading", "service_unavailable", "x")["error"]["type"] == \
        "overloaded_error"
    assert family_error("/tokenize", 404, "m", "invalid_request_error", "model_not_found") == \
        {"error": {"message": "m", "type": "invalid_request_error", "param": None, "code": "model_not_found"}}
    assert broken_stream_event("/v1/messages", "m").startswith(b"event: error\ndata: {\"type\": \"error\"")
    assert broken_stream_event("/v1/chat/completions", "m").endswith(b"data: [DONE]\n\n")


@pytest.mark.parametrize("origin,allowed,ok", [
    ("http://localhost:5173", (), True), ("http://127.0.0.1", (), True), ("https://[::1]:8443", (), True),
    ("http://app.localhost:3000", (), True), ("https://evil.example", (), False),
    ("http://localhost.evil.example", (), False), ("null", (), False), ("file://", (), False),
    ("https://app.example", ("https://app.example",), True), ("https://app.example:444", ("https://app.example",), False),
    ("https://anything.example", ("*",), True),
])
def test_origins(origin: str, allowed: tuple, ok: bool) -> None:
    assert origin_allowed(origin, allowed) is ok


def test_cors_origin_flag_is_checked() -> None:
    assert check_origin("HTTPS://App.Example/") == "https://app.example" and check_origin("*") == "*"
    for bad in ("app.example", "https://app.example/path", "ftp://x", "https://"):
        with pytest.raises(ConfigError, match="not an origin"):
            check_origin(bad)
