"""The event loop of every role (node agent, proxy, console) and of the benchmarks' load
generators: uvloop's where it is installed (the node and the proxy depend on it), else
asyncio's own.

Measured (docs/benchmarks.md): uvloop halves the proxy's CPU per relayed chunk. In the
node agent's QUIC tunnel it made no difference on its own (aioquic's Python work per
datagram dominates), but uvloop reads a burst of datagrams in one loop turn, so with one
transmit per turn instead of one per datagram (meshcore.transport.MeshConnection.
datagram_received) a 34 KB / 31 KB round trip in 1,472-byte datagrams drops from
3.5 ms to 2.95 ms and a 15 KB / 1.5 KB one from 1.1 to 0.76 ms (bench/quic_roundtrip.py)."""

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
