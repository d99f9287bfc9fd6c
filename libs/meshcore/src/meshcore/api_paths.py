"""The inference API paths the proxy forwards, and the body cap: one contract for
the proxy (which routes them) and the node agent (which accepts HTTP streams from
other members only for them, with the same cap). A member's HTTP stream is a
request a remote proxy forwards; nothing else of llama-server (`/props`, `/slots`,
`/metrics`, ...) is reachable from another machine."""

from __future__ import annotations

FORWARDED: tuple[str, ...] = ("/v1/chat/completions", "/v1/completions", "/v1/embeddings")
MAX_BODY_BYTES = 8 * 1024 * 1024   # a larger request body gets 413, at the proxy and at the node
MAX_HEAD_BYTES = 64 * 1024         # request line and headers of a tunnelled request


def is_forwarded(method: str, target: str) -> bool:
    path = target.split("?", 1)[0]
    return method == "POST" and path in FORWARDED
