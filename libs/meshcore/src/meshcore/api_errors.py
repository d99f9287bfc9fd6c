"""API error bodies, defined once for every role that answers an API client (the
proxy, a node answering a member's HTTP stream, the Host and CORS guards), in the
shape of the client's API family (meshcore.api_paths.Family):

- OpenAI (and llama.cpp's own endpoints): {"error": {"message", "type", "param", "code"}}
- Anthropic: {"type": "error", "error": {"type", "message"}}, with Anthropic's error
  types by status, so the `anthropic` SDKs raise their own exception classes.
"""

from __future__ import annotations

from meshcore.api_paths import Family, family_of

ANTHROPIC_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                   404: "not_found_error", 413: "request_too_large", 415: "invalid_request_error",
                   429: "rate_limit_error", 503: "overloaded_error", 529: "overloaded_error"}


def error_body(message: str, type_: str, code: str | None) -> dict:
    """The OpenAI shape."""
    return {"error": {"message": message, "type": type_, "param": None, "code": code}}


def anthropic_error_body(status: int, message: str) -> dict:
    return {"type": "error", "error": {"type": ANTHROPIC_TYPES.get(status, "api_error"), "message": message}}


def family_error(target: str, status: int, message: str, type_: str, code: str | None) -> dict:
    """The error body a client of `target`'s family expects."""
    if family_of(target) is Family.ANTHROPIC:
        return anthropic_error_body(status, message)
    return error_body(message, type_, code)
