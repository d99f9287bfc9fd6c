"""Copy bytes both ways between two streams until either side finishes.

Every copy awaits the destination's `drain()`, so a side that takes nothing holds the
copy back (QUIC streams are bounded on the send side: meshcore.transport). A copy held
back for STALL_S ends the splice: a member that stops taking an RPC or HTTP tunnel's
bytes (hostile, or wedged) loses its stream instead of holding it, and the split or
request behind it, forever. Honest peers never come near it: a wait ends once the peer
has taken all but 256 KiB, so STALL_S means under ~13 KB/s (nginx's `send_timeout`
is the same 60 s).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

CHUNK = 65536
STALL_S = 60.0
log = logging.getLogger(__name__)


class Stalled(Exception):
    """The side a copy writes to took nothing for the stall bound."""


async def _copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, counter: list[int] | None,
                stall_s: float) -> None:
    """counter: [bytes] or [bytes, reads] (reads approximate messages: the RPC
    tunnel's round trips)."""
    while data := await reader.read(CHUNK):
        writer.write(data)
        if counter is not None:
            counter[0] += len(data)
            if len(counter) > 1:
                counter[1] += 1
        try:
            async with asyncio.timeout(stall_s):
                await writer.drain()
        except TimeoutError:
            raise Stalled() from None


async def splice(a: tuple[asyncio.StreamReader, asyncio.StreamWriter],
                 b: tuple[asyncio.StreamReader, asyncio.StreamWriter],
                 a_to_b: list[int] | None = None, b_to_a: list[int] | None = None,
                 close_a: bool = True, label: str = "a stream", stall_s: float = STALL_S) -> bool:
    """Pipe a<->b. The first side to end (EOF, error, cancel, a stall) ends the exchange:
    a request whose requester went away is abandoned, not finished. Both writers
    are closed at the end, `a`'s unless close_a is False (the caller still has
    something to say on it). True if it ended because one side took nothing for
    `stall_s` (logged, naming `label`)."""
    tasks = [asyncio.ensure_future(_copy(a[0], b[1], a_to_b, stall_s)),
             asyncio.ensure_future(_copy(b[0], a[1], b_to_a, stall_s))]
    stalled = False
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        stalled = any(not t.cancelled() and isinstance(t.exception(), Stalled) for t in done)
        if stalled:
            log.warning("closed %s: the other side took nothing for %.0f s", label, stall_s)
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, ConnectionError, OSError, Stalled):
                await task
        for writer in (a[1], b[1]) if close_a else (b[1],):
            with contextlib.suppress(Exception):
                writer.close()
    return stalled
