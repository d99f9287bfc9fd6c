"""CORS for the API: which web pages may call it from a browser.

Policy (stricter than none, the same default as llama-server's "localhost"):
- by default only pages served from this machine's loopback (`http(s)://localhost`,
  `127.0.0.1`, `[::1]`, any port) may call the API from a browser;
- `--cors-origin ORIGIN` (repeatable) adds origins (`https://app.example`), and
  `--cors-origin '*'` allows every page — never with credentials: this proxy never sends
  `Access-Control-Allow-Credentials`, so a browser never attaches cookies or HTTP auth;
- a preflight (OPTIONS with Access-Control-Request-Method) from an allowed origin gets
  204 with the origin reflected (`Vary: Origin`), the methods, the requested headers
  and a max-age; from any other origin, 403 in the API family's error shape;
- a request that carries an `Origin` not allowed is refused (403) before it is read:
  a page cannot spend this machine's models even with a request the browser sends
  without preflight. Requests without `Origin` (every non-browser client) pass.
The decision is a pure function (`origin_allowed`); `CorsGuard` is the thin ASGI layer.
"""

from __future__ import annotations

import json
from typing import Any, Awaitable, Callable
from urllib.parse import urlsplit

from meshcore.api_errors import family_error

LOOPBACK_HOSTS = {"localhost", "127.0.0.1", "[::1]", "::1"}
ALLOW_METHODS = "GET, POST, OPTIONS"
MAX_AGE_S = "600"
MAX_REQUEST_HEADERS = 1024


def origin_allowed(origin: str, allowed: tuple[str, ...]) -> bool:
    if "*" in allowed:
        return True
    if origin.rstrip("/") in {a.rstrip("/") for a in allowed}:
        return True
    try:
        parts = urlsplit(origin)
    except ValueError:
        return False
    host = (parts.hostname or "").lower()
    return parts.scheme in ("http", "https") and (host in LOOPBACK_HOSTS or host.endswith(".localhost"))


Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]


class CorsGuard:
    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]], origins: tuple[str, ...] = ()) -> None:
        self.app = app
        self.origins = origins

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        origin = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"origin"), None)
        if origin is None and scope["method"] != "OPTIONS":
            return await self.app(scope, receive, send)  # the usual API call: no browser page behind it
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        preflight = scope["method"] == "OPTIONS" and "access-control-request-method" in headers
        if origin is None:
            if scope["method"] == "OPTIONS":
                return await _respond(send, 204, [(b"allow", ALLOW_METHODS.encode())], b"")
            return await self.app(scope, receive, send)
        if not origin_allowed(origin, self.origins):
            body = family_error(scope["path"], 403, f"pages from {origin[:100]} may not call this API "
                                f"(start mesh-llm with --cors-origin {origin[:100]} to allow it)",
                                "invalid_request_error", "origin_not_allowed")
            return await _respond(send, 403, [(b"content-type", b"application/json")], json.dumps(body).encode())
        allow = [(b"access-control-allow-origin", ("*" if "*" in self.origins else origin).encode("latin-1")),
                 (b"vary", b"Origin")]
        if preflight:
            requested = headers.get("access-control-request-headers", "")[:MAX_REQUEST_HEADERS]
            return await _respond(send, 204, allow + [
                (b"access-control-allow-methods", ALLOW_METHODS.encode()),
                (b"access-control-allow-headers", (requested or "content-type, authorization").encode("latin-1")),
                (b"access-control-max-age", MAX_AGE_S.encode())], b"")

        async def send_with_cors(message: dict) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *allow]}
            await send(message)

        await self.app(scope, receive, send_with_cors)


async def _respond(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [*headers, (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
