"""Copy bytes both ways between two sockets in a thread of its own: the data path of a
split's RPC link (mesh_node.rpc_data), a plain socket on one side and a TLS one on the
other, or two plain ones.

Why a thread and not the event loop: a split's RPC traffic is one request/response turn
of 15-65 KB per worker per token, on the token's critical path. On the agent's event loop
every turn would wait behind gossip, probes and API tunnels (and they behind it); in a
thread of its own the copy is a poll(), one recv and one send per chunk that arrived,
and the kernel does the rest (bench/rpc_roundtrip.py, docs/architecture.md "Data plane").

One thread serves both directions, with non-blocking sockets: an OpenSSL connection may
not be used by two threads at once, and a copy that blocked on one side could deadlock
against the other (each side waiting for the other to read). What one direction read is
written whole before that direction reads again, so the relay holds at most one chunk
per direction.

A copy whose destination has taken nothing for `stall_s` ends the relay (as
meshcore.pipe's STALL_S: a peer that stops reading does not hold a split forever);
`stop()` ends it from any thread; either side's end ends it. Both sockets are closed when
it ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import select
import socket
import ssl
import threading
import time
from enum import Enum

from meshcore.pipe import STALL_S

CHUNK = 256 * 1024
_AGAIN = (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError, InterruptedError)


class RelayEnd(Enum):
    """Why a relay ended."""
    CLOSED = "closed by one side"
    STOPPED = "stopped"
    STALLED = "the other side took nothing"
    FAILED = "failed"


class SocketRelay:
    """`a_to_b` and `b_to_a`: [bytes, reads] counters, updated by the relay's thread;
    `greeting`: bytes written to `a` before anything else (not counted)."""

    def __init__(self, a: socket.socket, b: socket.socket, a_to_b: list[int] | None = None,
                 b_to_a: list[int] | None = None, stall_s: float = STALL_S, name: str = "relay",
                 greeting: bytes = b"") -> None:
        self.a, self.b = a, b
        self.greeting = greeting
        self.counters = {b: a_to_b if a_to_b is not None else [0, 0], a: b_to_a if b_to_a is not None else [0, 0]}
        self.stall_s = stall_s
        self.name = name
        self.error = ""  # what failed, when the end is FAILED
        self._stopped = False
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)

    def stop(self) -> None:
        """End the relay (from any thread); its sockets are closed by its own thread. Seen
        within one chunk even while both sides keep the relay busy."""
        self._stopped = True
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")

    async def run(self) -> RelayEnd:
        """Relay until one side ends, a stall or stop(); cancelling this stops the relay and
        waits for its thread. Both sockets are closed when this returns."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[RelayEnd] = loop.create_future()

        def thread() -> None:
            try:
                end = self._pump()
            except BaseException as exc:  # noqa: BLE001 - reported to the awaiting task
                self.error = f"{type(exc).__name__}: {exc}"
                end = RelayEnd.FAILED
            finally:
                self._close()
            with contextlib.suppress(RuntimeError):  # the loop is gone (interpreter exit)
                loop.call_soon_threadsafe(lambda: done.done() or done.set_result(end))

        threading.Thread(target=thread, name=self.name, daemon=True).start()
        try:
            return await asyncio.shield(done)
        except asyncio.CancelledError:
            self.stop()
            await asyncio.shield(done)
            raise

    def _close(self) -> None:
        for sock in (self.a, self.b, self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                sock.close()

    def _pump(self) -> RelayEnd:
        a, b = self.a, self.b
        for sock in (a, b):
            sock.setblocking(False)
        bufs = {a: bytearray(CHUNK), b: bytearray(CHUNK)}
        pending: dict[socket.socket, memoryview | None] = {a: None, b: None}  # read, not yet written to the key
        if self.greeting:
            pending[a] = memoryview(self.greeting)
        waiting_since = {a: time.monotonic(), b: 0.0}
        wants_write = {a: False, b: False}  # TLS must write before this socket can be read (a key update)
        poller = select.poll()
        wake = self._wake_r.fileno()
        poller.register(wake, select.POLLIN)
        masks: dict[int, int] = {}
        pairs = ((a, b), (b, a))
        while True:
            moved = True
            while moved:  # move what can move without waiting (this also drains TLS's buffered records)
                moved = False
                if self._stopped:
                    return RelayEnd.STOPPED
                for src, dst in pairs:
                    if pending[dst] is not None and time.monotonic() - waiting_since[dst] > self.stall_s:
                        return RelayEnd.STALLED
                    if pending[dst] is None:
                        wants_write[src] = False
                        try:
                            n = src.recv_into(bufs[src])
                        except ssl.SSLWantWriteError:
                            wants_write[src], n = True, -1
                        except _AGAIN:
                            n = -1
                        except (ConnectionError, ssl.SSLEOFError):
                            return RelayEnd.CLOSED
                        if n == 0:
                            return RelayEnd.CLOSED
                        if n > 0:
                            pending[dst] = memoryview(bufs[src])[:n]
                            waiting_since[dst] = time.monotonic()
                            counter = self.counters[dst]
                            counter[0] += n
                            counter[1] += 1
                    data = pending[dst]
                    if data is not None:
                        try:
                            sent = dst.send(data)
                        except _AGAIN:
                            sent = 0
                        except ConnectionError:
                            return RelayEnd.CLOSED
                        if sent:
                            moved = True
                            pending[dst] = data[sent:] if sent < len(data) else None
                            waiting_since[dst] = time.monotonic()
            wanted: dict[int, int] = {}
            for src, dst in pairs:
                if pending[dst] is None:
                    mask = select.POLLIN | (select.POLLOUT if wants_write[src] else 0)
                    wanted[src.fileno()] = wanted.get(src.fileno(), 0) | mask
                else:
                    wanted[dst.fileno()] = wanted.get(dst.fileno(), 0) | select.POLLOUT
            for fd in masks.keys() - wanted.keys():
                poller.unregister(fd)
            for fd, mask in wanted.items():
                if fd not in masks:
                    poller.register(fd, mask)
                elif masks[fd] != mask:
                    poller.modify(fd, mask)
            masks = wanted
            timeout_ms = None
            stalled = [waiting_since[s] for s in (a, b) if pending[s] is not None]
            if stalled:
                left = min(stalled) + self.stall_s - time.monotonic()
                if left <= 0:
                    return RelayEnd.STALLED
                timeout_ms = int(left * 1000) + 1
            for fd, _ in poller.poll(timeout_ms):
                if fd == wake:
                    return RelayEnd.STOPPED
