"""The inference API paths the proxy forwards, their API family, and the body cap:
one contract for the proxy (which routes them) and the node agent (which accepts
HTTP streams from other members only for them, with the same cap). A member's HTTP
stream is a request a remote proxy forwards; nothing else of llama-server (`/props`,
`/slots`, `/metrics`, ...) is reachable from another machine.

Every path here is one llama-server itself serves (tools/server/server.cpp of the
pinned llama.cpp); the proxy forwards it unchanged. The family decides the shape of
errors (meshcore.api_errors): what a client of that family can parse.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Family(str, Enum):
    OPENAI = "openai"
    ANTHROPIC = "anthropic"
    LLAMA = "llama.cpp"   # llama-server's own endpoints; its errors are OpenAI-shaped too


@dataclass(frozen=True)
class ApiPath:
    path: str
    family: Family


_O, _A, _L = Family.OPENAI, Family.ANTHROPIC, Family.LLAMA
API_PATHS: tuple[ApiPath, ...] = (
    *(ApiPath(prefix + p, _O) for p in ("/chat/completions", "/completions", "/embeddings", "/responses",
                                         "/rerank", "/reranking") for prefix in ("/v1", "")),
    ApiPath("/v1/messages", _A), ApiPath("/v1/messages/count_tokens", _A),
    *(ApiPath(p, _L) for p in ("/completion", "/tokenize", "/detokenize", "/apply-template", "/infill", "/embedding")),
)
FORWARDED: tuple[str, ...] = tuple(p.path for p in API_PATHS)
_FAMILY = {p.path: p.family for p in API_PATHS}
MAX_BODY_BYTES = 8 * 1024 * 1024   # a larger request body gets 413, at the proxy and at the node
# A whole (non-streamed) answer the proxy holds before sending it on: a member serving a
# model could answer with an endless body, which the proxy used to buffer without limit
# (issue 28). Past either bound the client gets a 502 saying which.
MAX_ANSWER_BYTES = 64 * 1024 * 1024
ANSWER_S = 600.0
MAX_HEAD_BYTES = 64 * 1024         # request line and headers of a tunnelled request


def is_forwarded(method: str, target: str) -> bool:
    path = target.split("?", 1)[0]
    return method == "POST" and path in _FAMILY


def family_of(target: str) -> Family:
    """The family a request path belongs to; an unknown path under /v1/messages is
    Anthropic's, any other OpenAI's (the shape most clients parse)."""
    path = target.split("?", 1)[0]
    return _FAMILY.get(path) or (Family.ANTHROPIC if path.startswith("/v1/messages") else Family.OPENAI)
