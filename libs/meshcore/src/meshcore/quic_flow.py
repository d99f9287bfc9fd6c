"""QUIC flow control by what the application has read, not by what has arrived.

aioquic raises a stream's and a connection's receive window as data *arrives*
(it doubles the window once half is used), whether or not anything reads it: a
peer that sends to a stream nobody reads fills this process's memory without
bound. Here the credit given to the peer slides with what the application has
*consumed*: at most STREAM_WINDOW unread bytes per stream and CONNECTION_WINDOW
per connection can ever be in flight or buffered. A peer that sends faster than
the application reads is simply blocked by QUIC, which is backpressure, not an
error; an honest stream that is read keeps its full window.

How consumption is known: every stream's reader is a `MeteredReader` (an
asyncio.StreamReader that counts its unread bytes). StreamReader pauses its
transport when over twice its limit and resumes it after a read brings it back
under the limit; the "transport" here is the connection, and a resume sends new
credit at once (a blocked peer is unblocked by an event, not a timer). The
windows are recomputed every time aioquic builds a packet.

The two `_write_*_limits` methods replace aioquic's own (aioquic 1.7, pinned in
uv.lock): the frames they write are aioquic's, only the window policy differs.
tests/unit/meshcore/test_quic_flow.py checks the bound against real aioquic
connections, so an aioquic upgrade that changes these internals fails there.
"""

from __future__ import annotations

import asyncio
from typing import Callable

from aioquic.quic.connection import (CONNECTION_LIMIT_FRAME_CAPACITY, MAX_STREAM_DATA_FRAME_CAPACITY,
                                     QuicConnection)
from aioquic.quic.packet import QuicFrameType
from aioquic.quic.packet_builder import QuicPacketBuilder
from aioquic.quic.stream import QuicStream

STREAM_WINDOW = 4 << 20        # unread bytes one stream may hold (4 MiB: 100 MB/s at 40 ms RTT)
CONNECTION_WINDOW = 16 << 20   # unread bytes all streams of one connection may hold together


class MeteredReader(asyncio.StreamReader):
    """A QUIC stream's reader that says how many bytes wait unread in it, and calls
    `on_drained` when a read has emptied it enough that the peer deserves credit."""

    def __init__(self, on_drained: Callable[[], None]) -> None:
        super().__init__(limit=STREAM_WINDOW // 8)  # paused over 1/4 window, resumed under 1/8
        self.set_transport(_Drain(on_drained))

    @property
    def unread(self) -> int:
        return len(self._buffer)


class _Drain:
    """What StreamReader pauses and resumes: nothing to pause (the peer is held back
    by the window); a resume means new credit is due."""

    def __init__(self, on_drained: Callable[[], None]) -> None:
        self.on_drained = on_drained

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        self.on_drained()


class FlowControlledQuic(QuicConnection):
    """aioquic's connection with receive windows that follow consumption.
    `unread(stream_id)` says the unread bytes of one stream, `unread(None)` of all."""

    unread: Callable[[int | None], int] = staticmethod(lambda stream_id: 0)

    @classmethod
    def adopt(cls, quic: QuicConnection) -> "FlowControlledQuic":
        """The same connection with this window policy. aioquic's server builds plain
        QuicConnection objects and has no hook for another class; this class adds
        no state and overrides only the two window methods, so a fresh connection
        (before it has sent anything) can take it on."""
        quic.__class__ = cls
        return quic  # type: ignore[return-value]

    def _write_connection_limits(self, builder: QuicPacketBuilder, space) -> None:  # type: ignore[no-untyped-def]
        max_data = self._local_max_data
        target = max_data.used - self.unread(None) + CONNECTION_WINDOW
        if target - max_data.value >= CONNECTION_WINDOW // 4:  # batched: not a frame per packet
            max_data.value = target
        for limit in (self._local_max_data, self._local_max_streams_bidi, self._local_max_streams_uni):
            if limit is not max_data and limit.sent - limit.used >= limit.value - limit.sent:
                continue  # aioquic's batching of MAX_STREAMS
            if limit.value != limit.sent:
                buf = builder.start_frame(limit.frame_type, capacity=CONNECTION_LIMIT_FRAME_CAPACITY,
                                          handler=self._on_connection_limit_delivery, handler_args=(limit,))
                buf.push_uint_var(limit.value)
                limit.sent = limit.value

    def _write_stream_limits(self, builder: QuicPacketBuilder, space, stream: QuicStream) -> None:  # type: ignore[no-untyped-def]
        if not stream.max_stream_data_local:
            return  # a unidirectional stream of ours: nothing to receive
        target = stream.receiver.starting_offset() - self.unread(stream.stream_id) + STREAM_WINDOW
        if target - stream.max_stream_data_local >= STREAM_WINDOW // 4:
            stream.max_stream_data_local = target
        if stream.max_stream_data_local_sent != stream.max_stream_data_local:
            buf = builder.start_frame(QuicFrameType.MAX_STREAM_DATA, capacity=MAX_STREAM_DATA_FRAME_CAPACITY,
                                      handler=self._on_max_stream_data_delivery, handler_args=(stream,))
            buf.push_uint_var(stream.stream_id)
            buf.push_uint_var(stream.max_stream_data_local)
            stream.max_stream_data_local_sent = stream.max_stream_data_local
