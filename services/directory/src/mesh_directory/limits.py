"""Protection for a service on the open internet: a request-body cap (413) and a
per-client token-bucket rate limit (429 with Retry-After). Pure enough to test."""

from __future__ import annotations

import ipaddress

import json
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

MAX_BODY_BYTES = 64 * 1024


@dataclass
class TokenBucket:
    rate: float   # tokens per second
    burst: float
    tokens: float = -1.0
    updated: float = field(default_factory=time.monotonic)

    def take(self, now: float | None = None) -> float:
        """0 if allowed, else seconds until a token is available."""
        now = time.monotonic() if now is None else now
        if self.tokens < 0:
            self.tokens = self.burst
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate


class RateLimiter:
    """One bucket per (client, kind); the oldest buckets are dropped past max_clients."""

    def __init__(self, rate: float, burst: float, max_clients: int = 100_000) -> None:
        self.rate, self.burst, self.max_clients = rate, burst, max_clients
        self.buckets: dict[str, TokenBucket] = {}

    def check(self, client: str, now: float | None = None) -> float:
        if self.rate <= 0:
            return 0.0
        bucket = self.buckets.get(client)
        if bucket is None:
            if len(self.buckets) >= self.max_clients:
                self.buckets.pop(next(iter(self.buckets)))
            bucket = self.buckets[client] = TokenBucket(self.rate, self.burst)
        return bucket.take(now)


ASGIApp = Callable[[dict, Callable[[], Awaitable[dict]], Callable[[dict], Awaitable[None]]], Awaitable[None]]


def error_json(status: int, message: str, code: str) -> bytes:
    return json.dumps({"error": {"message": message, "type": "invalid_request_error" if status < 500
                                 else "server_error", "code": code}}).encode()


async def send_error(send: Callable[[dict], Awaitable[None]], status: int, message: str, code: str,
                     headers: list[tuple[bytes, bytes]] | None = None) -> None:
    body = error_json(status, message, code)
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


class BodyLimit:
    """ASGI middleware: refuse bodies over `limit` bytes with 413, declared or
    chunked. The body (small by definition) is read first, then replayed."""

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY_BYTES) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: dict, receive: Callable[[], Awaitable[dict]],
                       send: Callable[[dict], Awaitable[None]]) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers", [])).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.limit:
            return await send_error(send, 413, f"request body over {self.limit} bytes", "request_too_large")
        body, more = b"", True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if len(body) > self.limit:
                return await send_error(send, 413, f"request body over {self.limit} bytes", "request_too_large")
            more = message.get("more_body", False)
        replayed = False

        async def replay() -> dict:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def client_key(scope: dict[str, Any]) -> str:
    """Who a rate limit counts: the IPv4 address, or the IPv6 /64 (one host gets a
    whole /64 and can rotate through it)."""
    client = scope.get("client")
    if not client:
        return "unknown"
    try:
        addr = ipaddress.ip_address(client[0])
    except ValueError:
        return str(client[0])
    if addr.version == 6 and not addr.ipv4_mapped:
        return str(ipaddress.ip_network(f"{addr}/64", strict=False))
    return str(addr.ipv4_mapped or addr) if addr.version == 6 else str(addr)
