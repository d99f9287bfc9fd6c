"""The OpenAI-style error body, defined once for every role that answers an API
client (the proxy, a node answering a member's HTTP stream, the Host guard):
{"error": {"message", "type", "param", "code"}}."""

from __future__ import annotations


def error_body(message: str, type_: str, code: str | None) -> dict:
    return {"error": {"message": message, "type": type_, "param": None, "code": code}}
