"""DNS rebinding guard for the HTTP roles (proxy, console), as pure ASGI middleware.

A web page on attacker.example can make its own name resolve to 127.0.0.1 and then
read what a local server answers (same origin for the browser). Such a request
carries `Host: attacker.example`. Only requests whose Host is an IP literal,
`localhost`, or this machine's own name are served; any other gets 403 with an
OpenAI-style JSON error and never reaches the app.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import socket
from typing import Any, Awaitable, Callable
from urllib.parse import urlsplit

from meshcore.api_errors import family_error
from meshcore.errors import ConfigError

Scope = dict[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[dict]], Callable[[dict], Awaitable[None]]], Awaitable[None]]


def machine_names() -> frozenset[str]:
    name = socket.gethostname().lower()
    return frozenset({"localhost", name, name.split(".")[0], f"{name.split('.')[0]}.local"})


MAX_HOST = 300  # a DNS name is at most 253 characters; with a port or an IPv6 literal, still under this


def host_allowed(host: str, names: frozenset[str]) -> bool:
    """`host` as the Host header gives it (name or address, optional port)."""
    return len(host) <= MAX_HOST and _host_allowed(host, names)


@functools.lru_cache(maxsize=256)  # every request asks; clients send one or two Host values
def _host_allowed(host: str, names: frozenset[str]) -> bool:
    host = host.strip().lower()
    if host.startswith("["):  # [v6]:port
        addr = host[1:host.find("]")] if "]" in host else ""
    else:
        addr = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    if not addr:
        return False
    try:
        ipaddress.ip_address(addr)
        return True
    except ValueError:
        return addr.rstrip(".") in names


class HostGuard:
    def __init__(self, app: ASGIApp, names: frozenset[str] | None = None) -> None:
        self.app = app
        self.names = names if names is not None else machine_names()

    async def __call__(self, scope: Scope, receive: Callable[[], Awaitable[dict]],
                       send: Callable[[dict], Awaitable[None]]) -> None:
        if scope["type"] in ("http", "websocket"):
            host = next((v.decode("latin-1") for k, v in scope.get("headers", []) if k == b"host"), "")
            if not host_allowed(host, self.names):
                body = json.dumps(family_error(scope.get("path", "/"), 403, f"Host {host!r} is not this machine: "
                                               "refused (DNS rebinding guard; use an IP address or localhost)",
                                               "invalid_request_error", "host_not_allowed")).encode()
                await send({"type": "http.response.start", "status": 403,
                            "headers": [(b"content-type", b"application/json"),
                                        (b"content-length", str(len(body)).encode())]})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


def is_loopback(client: tuple[str, int] | None) -> bool:
    """Whether an ASGI scope's client address is this machine's loopback."""
    if not client:
        return False
    try:
        return ipaddress.ip_address(client[0]).is_loopback
    except ValueError:
        return False


def check_origin(origin: str) -> str:
    """A --cors-origin value: * or scheme://host[:port], nothing after it."""
    if origin == "*":
        return origin
    parts = urlsplit(origin)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/") \
            or parts.query or parts.fragment:
        raise ConfigError(f"--cors-origin {origin!r} is not an origin like https://app.example or http://host:8080")
    return f"{parts.scheme}://{parts.netloc}".lower()
