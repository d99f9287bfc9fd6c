"""The event loop every Mesh LLM process runs on: uvloop's where it is installed (the
node agent and the proxy depend on it), else asyncio's own.

Measured (docs/benchmarks.md): uvloop halves the proxy's CPU per relayed chunk, and a
split's RPC round trip through the QUIC tunnel (15 KB out, 1.5 KB back, loopback) takes
2.8 ms instead of 5.0 ms: aioquic's per-datagram work is Python, but the socket reads,
writes and timers around it are uvloop's C."""

from __future__ import annotations

import asyncio
from typing import Any, Callable, Coroutine, TypeVar

T = TypeVar("T")


def fast_loop() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def run(main: Coroutine[Any, Any, T]) -> T:
    """asyncio.run on the fast loop."""
    with asyncio.Runner(loop_factory=fast_loop()) as runner:
        return runner.run(main)
