"""Copy bytes both ways between two streams until either side finishes."""

from __future__ import annotations

import asyncio
import contextlib

CHUNK = 65536


async def _copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, counter: list[int] | None) -> None:
    """counter: [bytes] or [bytes, reads] (reads approximate messages: the RPC
    tunnel's round trips)."""
    while data := await reader.read(CHUNK):
        writer.write(data)
        if counter is not None:
            counter[0] += len(data)
            if len(counter) > 1:
                counter[1] += 1
        await writer.drain()


async def splice(a: tuple[asyncio.StreamReader, asyncio.StreamWriter],
                 b: tuple[asyncio.StreamReader, asyncio.StreamWriter],
                 a_to_b: list[int] | None = None, b_to_a: list[int] | None = None,
                 close_a: bool = True) -> None:
    """Pipe a<->b. The first side to end (EOF, error, cancel) ends the exchange:
    a request whose requester went away is abandoned, not finished. Both writers
    are closed at the end, `a`'s unless close_a is False (the caller still has
    something to say on it)."""
    tasks = [asyncio.ensure_future(_copy(a[0], b[1], a_to_b)), asyncio.ensure_future(_copy(b[0], a[1], b_to_a))]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, ConnectionError, OSError):
                await task
        for writer in (a[1], b[1]) if close_a else (b[1],):
            with contextlib.suppress(Exception):
                writer.close()
