"""A change counter that coroutines can wait on (no polling): `bump()` after a
change, `await wait(seen)` until the counter differs from what a watcher saw."""

from __future__ import annotations

import asyncio


class Changes:
    def __init__(self) -> None:
        self.seq = 0
        self._event = asyncio.Event()

    def bump(self) -> None:
        self.seq += 1
        self._event.set()
        self._event = asyncio.Event()

    async def wait(self, seen: int) -> int:
        while self.seq == seen:
            await self._event.wait()
        return self.seq
