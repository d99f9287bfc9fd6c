"""The mesh transport: one QUIC connection per pair of peers (aioquic).

`MeshEndpoint` listens on a UDP port and dials peers. TLS uses a certificate
self-signed with the node's Ed25519 key (ALPN "mesh-llm/1"); who may talk is
decided by admission (meshcore.admission), the first exchange on every
connection. Until it completes, any other stream closes the connection.

After admission each incoming stream is dispatched by its kind byte to the
handler registered for that kind: handler(conn, reader, writer). A peer that
sends garbage gets its connection closed with the reason logged; nothing else
is affected.

Memory a peer can make this process hold is bounded: receive windows follow what
the handlers have read (meshcore.quic_flow: 4 MiB unread per stream, 16 MiB per
connection); once a stream's handler has returned,
whatever still arrives for it is dropped, never buffered. On the send side, a stream's
writer pauses (its `drain()` waits) once SEND_HIGH_WATER bytes wait unacknowledged by
the peer (BoundedStreamAdapter): aioquic's send buffer has no bound of its own, and a
peer that acknowledges nothing would otherwise make this process hold all it is sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import ssl
from typing import Any, Awaitable, Callable

from aioquic import tls
from aioquic.asyncio import serve
from aioquic.asyncio.protocol import QuicConnectionProtocol, QuicStreamAdapter
from aioquic.asyncio.server import QuicServer
from aioquic.quic import events
from aioquic.quic.configuration import QuicConfiguration
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from meshcore import admission
from meshcore.identity import Identity, MeshSecret
from meshcore.ids import NodeId
from meshcore.quic_flow import CONNECTION_WINDOW, STREAM_WINDOW, MeteredReader
from meshcore.quic_mtu import LARGEST_SIZE, PathMtuQuic, set_dont_fragment, sizes_for_peer
from meshcore.tls_cert import self_signed_certificate
from meshcore.wire import MAX_HEADER_FRAME, FrameError, Kind, encode_frame, read_frame, read_kind

log = logging.getLogger(__name__)
ALPN = "mesh-llm/1"
ADMISSION_TIMEOUT_S = 5.0
IDLE_TIMEOUT_S = 30.0
MAX_STREAMS_PER_CONNECTION = 4096   # streams served at once on one connection; more closes it
MAX_CONNECTIONS_PER_ADDRESS = 32    # connections from one IP address being admitted or admitted
SEND_HIGH_WATER = 1 << 20   # unacknowledged bytes on one stream before its writer is held back
SEND_LOW_WATER = 256 << 10  # ... and let go again at
ERROR_ADMISSION = 0x100
ERROR_PROTOCOL = 0x101
ERROR_ABANDONED = 0x102     # a stream reset: its peer took nothing of it for too long

Handler = Callable[["MeshConnection", asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class AdmissionRefused(Exception):
    """The other side does not hold this mesh's secret (or is not a mesh node)."""


class MeshConnection(QuicConnectionProtocol):
    """One QUIC connection to a peer, admitted or not yet."""

    def __init__(self, *args: Any, endpoint: "MeshEndpoint", dialer: bool, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.endpoint = endpoint
        self.dialer = dialer
        self.peer_id: NodeId | None = None
        self.admitted = asyncio.Event()
        self.closed_reason = ""
        self._tasks: set[asyncio.Task] = set()
        self._highest_peer_stream = -1
        self._credit_due = False
        self.admitting = False
        self._send_waiters: dict[int, list[Callable[[], None]]] = {}
        self._address_checked = dialer  # an incoming connection's address is counted on its first datagram
        PathMtuQuic.adopt(self._quic).unread = self._unread

    # -- flow control (meshcore.quic_flow) ------------------------------------------------

    def _create_stream(self, stream_id: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader = MeteredReader(self._drained)
        flow = asyncio.StreamReaderProtocol(reader)
        writer = asyncio.StreamWriter(BoundedStreamAdapter(self, stream_id, flow), flow, reader, self._loop)
        self._stream_readers[stream_id] = reader
        return reader, writer

    def datagram_received(self, data: bytes | str, addr: Any) -> None:  # type: ignore[override]
        """As aioquic's, but what this datagram calls for is sent on the next loop turn,
        not at once: a burst of datagrams read in one turn (uvloop reads up to 32 per
        wake-up) is answered by one transmit, not one per datagram. An empty transmit is
        most of aioquic's per-datagram cost (bench/quic_roundtrip.py, docs/benchmarks.md)."""
        self._quic.receive_datagram(data, addr, now=self._loop.time())  # type: ignore[arg-type]
        if not self._address_checked:
            self._address_checked = True
            same = sum(1 for c in self.endpoint.connections if c is not self and c.remote_ip == self.remote_ip)
            if same >= self.endpoint.max_connections_per_address:
                # Counted from the first packet, not when (if ever) the peer opens its first
                # stream: connections that never say hello used to live 5 s uncounted.
                self.refuse(ERROR_ADMISSION, f"{same} connections from {self.remote_ip} already")
                return
        self._process_events()
        if self._timer is not None:  # armed for the state before this datagram: the transmit re-arms it
            self._timer.cancel()
            self._timer = None
        self._transmit_soon()

    def transmit(self) -> None:
        """Send what is due now; a transmit already scheduled for the next loop turn is
        dropped (it would find nothing to send and cost an empty pass through aioquic).
        Then wake whoever waits for a stream's send buffer to drain (`when_sent`)."""
        if self._transmit_task is not None:
            self._transmit_task.cancel()
        super().transmit()
        if self._send_waiters:
            self._wake_senders()

    # -- send-side bounds: what this side holds for a peer that does not take it ---------

    def unacked(self, stream_id: int) -> int:
        """Bytes written to a stream that the peer has not acknowledged yet (sent or not):
        what this process holds for it (0 once the stream is reset or gone). aioquic's send
        buffer has no bound of its own: BoundedStreamAdapter and the relays use this."""
        stream = self._quic._streams.get(stream_id)
        if stream is None or stream.sender._reset_error_code is not None:
            return 0
        return stream.sender._buffer_stop - stream.sender._buffer_start

    def when_sent(self, stream_id: int, callback: Callable[[], None]) -> None:
        """Call `callback` once the stream holds at most SEND_LOW_WATER unacknowledged
        bytes (checked after each transmit: ACKs and credit arrive in datagrams, and every
        datagram is followed by one), or the connection ends."""
        self._send_waiters.setdefault(stream_id, []).append(callback)

    def reset_stream(self, writer: asyncio.StreamWriter) -> None:
        """Abandon a stream this side writes: the peer sees it reset, not finished."""
        with contextlib.suppress(Exception):  # already reset or finished
            self._quic.reset_stream(writer.get_extra_info("stream_id"), ERROR_ABANDONED)
            self.transmit()

    def forget_sender(self, stream_id: int, callback: Callable[[], None]) -> None:
        """`callback` no longer waits on the stream (its owner is done with it)."""
        callbacks = self._send_waiters.get(stream_id, [])
        if callback in callbacks:
            callbacks.remove(callback)
        if not callbacks:
            self._send_waiters.pop(stream_id, None)

    def _wake_senders(self, all_of_them: bool = False) -> None:
        for stream_id, callbacks in list(self._send_waiters.items()):
            if all_of_them or self.unacked(stream_id) <= SEND_LOW_WATER:
                del self._send_waiters[stream_id]
                for callback in callbacks:
                    callback()

    def _unread(self, stream_id: int | None) -> int:
        if stream_id is None:
            return sum(getattr(r, "unread", 0) for r in self._stream_readers.values())
        return getattr(self._stream_readers.get(stream_id), "unread", 0)

    def _drained(self) -> None:
        """A reader was read down: send the peer its new credit (once per loop turn)."""
        if not self._credit_due:
            self._credit_due = True
            self._loop.call_soon(self._send_credit)

    def _send_credit(self) -> None:
        self._credit_due = False
        self.transmit()

    def finish_stream(self, stream_id: int) -> None:
        """The handler of a stream is done: whatever the peer still sends on it is
        dropped on arrival, never buffered. (No STOP_SENDING: aioquic makes the
        peer's next write raise, and an honest peer may still be closing its side.)"""
        self._stream_readers.pop(stream_id, None)

    def _is_peer_stream(self, stream_id: int) -> bool:
        return (stream_id & 1) == (1 if self.dialer else 0)  # bit 0: who opened it (RFC 9000 2.1)

    def _is_new_peer_stream(self, stream_id: int) -> bool:
        if not self._is_peer_stream(stream_id) or stream_id <= self._highest_peer_stream:
            return False
        self._highest_peer_stream = stream_id
        return True

    def admit(self, peer: NodeId) -> None:
        """Admission passed: the peer is `peer`. From now on this side also sends bigger
        datagrams where the path carries them (meshcore.quic_mtu: once per connection,
        only to the peer's validated address)."""
        self.peer_id = peer
        self.admitted.set()
        if self.endpoint.dont_fragment:
            host, port = self._quic._network_paths[0].addr[:2]
            self._quic.probe_path_mtu(sizes_for_peer(host, port, self.endpoint.max_datagram))
            self.transmit()

    @property
    def datagram_size(self) -> int:
        """The size of the datagrams this side sends now (meshcore.quic_mtu)."""
        return self._quic.datagram_size

    @property
    def remote_addr(self) -> str:
        paths = self._quic._network_paths
        return f"{paths[0].addr[0]}:{paths[0].addr[1]}" if paths else "?"

    @property
    def remote_ip(self) -> str:
        paths = self._quic._network_paths
        return str(paths[0].addr[0]) if paths else "?"

    def quic_event_received(self, event: events.QuicEvent) -> None:
        if isinstance(event, events.StreamDataReceived):
            reader = self._stream_readers.get(event.stream_id)
            if reader is None:
                if not self._is_new_peer_stream(event.stream_id):
                    return  # a stream already finished here: dropped, not buffered
                if len(self._tasks) >= self.endpoint.max_streams:
                    self.refuse(ERROR_PROTOCOL, f"more than {self.endpoint.max_streams} streams at once")
                    return
                reader, writer = self._create_stream(event.stream_id)
                self._spawn(self.endpoint._serve_stream(self, reader, writer))
            reader.feed_data(event.data)
            if event.end_stream:
                self._ended(event.stream_id, reader)
        elif isinstance(event, events.StreamReset):
            reader = self._stream_readers.get(event.stream_id)
            if reader is not None:
                self._ended(event.stream_id, reader)
        elif isinstance(event, events.ConnectionTerminated):
            self.closed_reason = event.reason_phrase or f"error {event.error_code}"
            for reader in self._stream_readers.values():
                reader.feed_eof()
            self._stream_readers.clear()
            self._wake_senders(all_of_them=True)  # their next write fails: the connection is gone
            self.endpoint._on_closed(self)

    def _ended(self, stream_id: int, reader: asyncio.StreamReader) -> None:
        """The peer finished (or reset) a stream. A peer's stream stays counted against
        the connection's window until its handler is done with it (finish_stream):
        ending streams early must not buy a peer more unread bytes."""
        reader.feed_eof()
        if not self._is_peer_stream(stream_id):
            self._stream_readers.pop(stream_id, None)

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def open_stream(self, kind: Kind, header: dict[str, Any] | None = None, first: bytes = b""
                          ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A new stream of `kind`, its header sent; `first`: the stream's first bytes, sent
        in the same write and at once (not on the next loop turn), so that a short request
        leaves in one datagram (one wake-up and no immediate ACK on the other side)."""
        reader, writer = await self.create_stream()
        writer.write(bytes([kind]) + (encode_frame(header) if header is not None else b"") + first)
        if first:
            self._send_with_acks()
        return reader, writer

    def send_now(self, writer: asyncio.StreamWriter, data: bytes) -> None:
        """Write `data` to a stream of this connection and send it at once, not on the next
        loop turn: for a relay's callback, where the data is a reply someone waits for."""
        writer.write(data)
        self._send_with_acks()

    def _send_with_acks(self) -> None:
        """Transmit now, with the ACKs this side owes in the same packet. aioquic holds an
        ACK back for its ack delay (1 ms) and then sends it in a datagram of its own: on a
        request/response stream that is one more datagram, and one more wake-up of the
        peer, per exchange, right while the answer is being relayed."""
        space = self._quic._spaces[tls.Epoch.ONE_RTT]
        now = self._loop.time()
        if space.ack_at is not None and space.ack_at > now:
            space.ack_at = now
        self.transmit()

    def cut(self, reason: str = "peer gone") -> None:
        """End every open stream now (readers see EOF at once), then close."""
        for reader in self._stream_readers.values():
            reader.feed_eof()
        self._stream_readers.clear()
        self.abort()
        self.close(reason_phrase=reason)

    def refuse(self, code: int, reason: str) -> None:
        log.warning("closing mesh connection from %s: %s", self.remote_addr, reason)
        self.close(error_code=code, reason_phrase=reason[:200])

    def abort(self) -> None:
        for task in list(self._tasks):
            task.cancel()


class BoundedStreamAdapter(QuicStreamAdapter):
    """aioquic's stream transport, with what this side holds for the peer bounded: past
    SEND_HIGH_WATER unacknowledged bytes the stream's writer is paused (its `drain()`
    waits) until the peer has taken all but SEND_LOW_WATER. A peer that acknowledges
    nothing, or grants no credit, holds the writer back instead of filling this
    process's memory (every copy onto a stream awaits `drain()`: meshcore.pipe)."""

    def __init__(self, protocol: MeshConnection, stream_id: int, flow: asyncio.StreamReaderProtocol) -> None:
        super().__init__(protocol, stream_id)
        self.flow = flow
        self.paused = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        super().write(data)
        conn: MeshConnection = self.protocol  # type: ignore[assignment]
        if not self.paused and conn.unacked(self.stream_id) > SEND_HIGH_WATER:
            self.paused = True
            self.flow.pause_writing()
            conn.when_sent(self.stream_id, self._resume)

    def _resume(self) -> None:
        self.paused = False
        self.flow.resume_writing()


class MeshEndpoint:
    def __init__(self, identity: Identity, mesh: Callable[[], MeshSecret],
                 on_admitted: Callable[[MeshConnection], None] = lambda c: None,
                 on_closed: Callable[[MeshConnection], None] = lambda c: None) -> None:
        self.identity = identity
        self.mesh = mesh  # the current secret; rotate-key swaps it
        self.handlers: dict[Kind, Handler] = {}
        self.on_admitted = on_admitted
        self.on_closed_cb = on_closed
        self.server: QuicServer | None = None
        self.connections: set[MeshConnection] = set()
        self._certificate = self_signed_certificate(identity)
        # Limits per connection and per address (attributes, so tests can lower them).
        self.admission_timeout_s = ADMISSION_TIMEOUT_S  # a connection not admitted by then is closed
        self.max_streams = MAX_STREAMS_PER_CONNECTION
        self.max_connections_per_address = MAX_CONNECTIONS_PER_ADDRESS
        self.dont_fragment = True  # every socket sets DF; False where the platform cannot (then no probes)
        self.max_datagram = LARGEST_SIZE  # the biggest datagram probed for (bench/quic_roundtrip.py lowers it)

    def _config(self, is_client: bool) -> QuicConfiguration:
        config = QuicConfiguration(is_client=is_client, alpn_protocols=[ALPN], idle_timeout=IDLE_TIMEOUT_S,
                                   verify_mode=ssl.CERT_NONE, max_data=CONNECTION_WINDOW,
                                   max_stream_data=STREAM_WINDOW)
        config.certificate = self._certificate
        config.private_key = self.identity.private_key
        return config

    async def listen(self, host: str, port: int) -> int:
        # retry: every incoming connection proves its address first (a QUIC Retry round
        # trip) before this side keeps any state for it: a flood from forged addresses
        # costs nothing; the one extra round trip is paid once per mesh connection.
        self.server = await serve(host, port, configuration=self._config(False), retry=True,
                                  create_protocol=lambda *a, **kw: self._track(
                                      MeshConnection(*a, endpoint=self, dialer=False, **kw)))
        self.dont_fragment &= set_dont_fragment(self.server._transport.get_extra_info("socket"))
        return self.server._transport.get_extra_info("sockname")[1]

    def _track(self, conn: MeshConnection) -> MeshConnection:
        self.connections.add(conn)
        if not conn.dialer:  # an incoming connection must be admitted in time, streams or not
            asyncio.get_running_loop().call_later(self.admission_timeout_s, self._admission_deadline, conn)
        return conn

    def _admission_deadline(self, conn: MeshConnection) -> None:
        if not conn.admitted.is_set() and conn in self.connections:
            conn.refuse(ERROR_ADMISSION, f"not admitted within {self.admission_timeout_s:.0f} s")

    def _on_closed(self, conn: MeshConnection) -> None:
        self.connections.discard(conn)
        conn.abort()
        self.on_closed_cb(conn)

    async def dial(self, addr: str, timeout: float = ADMISSION_TIMEOUT_S) -> MeshConnection:
        """Connect to "host:port" and pass admission, or raise (OSError, TimeoutError, AdmissionRefused)."""
        host, _, port = addr.rpartition(":")
        loop = asyncio.get_running_loop()
        quic = PathMtuQuic(configuration=self._config(True))
        transport, conn = await loop.create_datagram_endpoint(
            lambda: self._track(MeshConnection(quic, endpoint=self, dialer=True)),
            remote_addr=(host.strip("[]"), int(port)))
        self.dont_fragment &= set_dont_fragment(transport.get_extra_info("socket"))
        try:
            async with asyncio.timeout(timeout):
                conn.connect((host.strip("[]"), int(port)))
                await conn.wait_connected()
                await self._admit_as_dialer(conn)
        except BaseException:
            # aioquic's wait_connected() awaits a shielded future that gets ConnectionError
            # when the connection ends; a dial that gave up first never retrieves it.
            waiter = conn._connected_waiter
            if waiter is not None:
                waiter.add_done_callback(lambda f: f.cancelled() or f.exception())
            conn.close()
            self.connections.discard(conn)
            raise
        return conn

    def _cert_sha256(self) -> bytes:
        return hashlib.sha256(self._certificate.public_bytes(serialization.Encoding.DER)).digest()

    async def _admit_as_dialer(self, conn: MeshConnection) -> None:
        mesh = self.mesh()
        me, my_key = self.identity.node_id, self.identity.public_bytes
        nonce = admission.new_nonce()
        reader, writer = await conn.open_stream(Kind.CONTROL, {"t": "hello", "node_id": me, "mesh_id": mesh.mesh_id,
                                                               "nonce": nonce, "key": my_key})
        try:
            challenge = await read_frame(reader, MAX_HEADER_FRAME)
        except FrameError as exc:
            raise AdmissionRefused(f"the peer closed the connection ({conn.closed_reason or exc})") from exc
        peer, peer_nonce, peer_key = challenge.get("node_id"), challenge.get("nonce"), challenge.get("key")
        if challenge.get("t") != "challenge" or not isinstance(peer, str) or not isinstance(peer_nonce, bytes):
            raise AdmissionRefused("the peer did not answer like a mesh-llm node")
        if not admission.check(admission.proof(mesh.secret, "listener", nonce, peer_nonce, me, peer),
                               challenge.get("proof")):
            raise AdmissionRefused("the peer does not hold this mesh's secret")
        # aioquic keeps the server certificate of this session only in its TLS context.
        cert = conn._quic.tls._peer_certificate
        cert_key = cert.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw) \
            if cert is not None and isinstance(cert.public_key(), Ed25519PublicKey) else b""
        if not admission.key_matches(peer, peer_key) or cert_key != peer_key:
            raise AdmissionRefused("the peer's node id is not the hash of its key, or its TLS certificate is "
                                   "not for that key (a relay in the middle?)")
        assert cert is not None and isinstance(peer_key, bytes)
        cert_sha = hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).digest()
        if not admission.verify(peer_key, challenge.get("sig"), admission.transcript(
                "listener", nonce, peer_nonce, me, peer, my_key, peer_key, cert_sha)):
            raise AdmissionRefused("the peer's signature does not verify (a relay in the middle?)")
        writer.write(encode_frame({"t": "proof", "proof": admission.proof(mesh.secret, "dialer", nonce, peer_nonce,
                                                                          me, peer),
                                   "sig": admission.sign(self.identity.private_key, admission.transcript(
                                       "dialer", nonce, peer_nonce, me, peer, my_key, peer_key, cert_sha))}))
        try:
            welcome = await read_frame(reader, MAX_HEADER_FRAME)
        except FrameError as exc:
            raise AdmissionRefused(f"the peer refused this node ({conn.closed_reason or 'wrong mesh secret'})") from exc
        if welcome.get("t") != "welcome":
            raise AdmissionRefused("the peer refused this node")
        writer.close()
        conn.admit(NodeId(peer))
        self.on_admitted(conn)

    async def _admit_as_listener(self, conn: MeshConnection, reader: asyncio.StreamReader,
                                 writer: asyncio.StreamWriter) -> None:
        mesh = self.mesh()
        me, my_key = self.identity.node_id, self.identity.public_bytes
        same_address = sum(1 for c in self.connections if c is not conn and c.remote_ip == conn.remote_ip)
        if same_address >= self.max_connections_per_address:
            raise AdmissionRefused(f"{same_address} connections from {conn.remote_ip} already")
        hello = await read_frame(reader, MAX_HEADER_FRAME)
        peer, peer_nonce, peer_key = hello.get("node_id"), hello.get("nonce"), hello.get("key")
        if hello.get("t") != "hello" or not isinstance(peer, str) or len(peer) > 64 \
                or not isinstance(peer_nonce, bytes) or len(peer_nonce) != 32:
            raise AdmissionRefused("the first message was not a valid hello")
        if not admission.key_matches(peer, peer_key):
            raise AdmissionRefused(f"node id {peer[:12]} is not the hash of the key it presented")
        if hello.get("mesh_id") != mesh.mesh_id:
            # The secret's HMAC does not cover the id: without this, a member could hand out
            # the real secret under a mesh id of its own (one it "owns") and joiners got in.
            raise AdmissionRefused(f"node {peer[:12]} asked for another mesh")
        assert isinstance(peer_key, bytes)
        nonce = admission.new_nonce()
        cert_sha = self._cert_sha256()
        writer.write(encode_frame({"t": "challenge", "node_id": me, "nonce": nonce, "key": my_key,
                                   "proof": admission.proof(mesh.secret, "listener", peer_nonce, nonce, peer, me),
                                   "sig": admission.sign(self.identity.private_key, admission.transcript(
                                       "listener", peer_nonce, nonce, peer, me, peer_key, my_key, cert_sha))}))
        answer = await read_frame(reader, MAX_HEADER_FRAME)
        if answer.get("t") != "proof" or not admission.check(
                admission.proof(mesh.secret, "dialer", peer_nonce, nonce, peer, me), answer.get("proof")):
            raise AdmissionRefused(f"node {peer[:12]} does not hold this mesh's secret (old or wrong invite token?)")
        if not admission.verify(peer_key, answer.get("sig"), admission.transcript(
                "dialer", peer_nonce, nonce, peer, me, peer_key, my_key, cert_sha)):
            raise AdmissionRefused(f"node {peer[:12]}'s signature does not verify on this channel "
                                   "(a relay in the middle?)")
        writer.write(encode_frame({"t": "welcome"}))
        writer.close()
        conn.admit(NodeId(peer))
        self.on_admitted(conn)

    async def _serve_stream(self, conn: MeshConnection, reader: asyncio.StreamReader,
                            writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(self.admission_timeout_s if not conn.admitted.is_set() else None):
                kind = await read_kind(reader)
                if not conn.admitted.is_set():
                    if kind is not Kind.CONTROL or conn.dialer or conn.admitting:
                        raise AdmissionRefused("a stream was opened before admission")
                    conn.admitting = True  # one admission per connection: a second stream closes it
                    await self._admit_as_listener(conn, reader, writer)
                    return
            handler = self.handlers.get(kind)
            if handler is None:
                raise FrameError(f"no handler for {kind.name} streams")
            await handler(conn, reader, writer)
        except AdmissionRefused as exc:
            conn.refuse(ERROR_ADMISSION, str(exc))
        except (FrameError, TimeoutError) as exc:
            conn.refuse(ERROR_PROTOCOL if conn.admitted.is_set() else ERROR_ADMISSION,
                        f"protocol error: {exc or 'timed out'}")
        except (ConnectionError, OSError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()
            conn.finish_stream(writer.get_extra_info("stream_id"))

    def close(self) -> None:
        for conn in list(self.connections):
            conn.close()
        if self.server is not None:
            self.server.close()
