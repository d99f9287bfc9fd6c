"""The event loop of the HTTP roles (proxy, console) and of the benchmarks' load
generators: uvloop's where it is installed (the proxy depends on it), else asyncio's own.

Measured (docs/benchmarks.md): uvloop halves the proxy's CPU per relayed chunk. The node
agent stays on asyncio's loop: its hot path is the QUIC tunnel, where aioquic's Python
work per datagram dominates and uvloop made no difference beyond the noise
(bench/quic_roundtrip.py, 5 runs)."""

from __future__ import annotations

import asyncio
from typing import Callable


def fast_loop() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop

