"""The direct data path of a split's RPC links: TCP + TLS 1.3 bound to node keys.

A split's host reaches each worker's rpc-server over one TCP connection per link,
set up through the QUIC mesh (docs/architecture.md, "Data plane"):

1. The host asks the worker over the admitted mesh connection (RpcLinkRequest: the
   model, the host's certificate). The worker answers only the host its own plan names
   for that model (the same rule as the QUIC RPC stream, mesh_node.rpc_tunnel), checks
   that the certificate's key is the sender's, and offers its TCP port, a one-time
   ticket (TICKET_TTL_S) and its own certificate (RpcLinkOffer).
2. The host connects to that port at the address its mesh connection reaches the worker
   at (never an address the worker names), names the ticket in TLS and pins the
   worker's certificate; the worker pins the host's (meshcore.link_tls). The ticket is
   used once.
3. The worker sends READY once the link is its rpc-server's (one link at a time);
   from then on a thread copies bytes each way (meshcore.socket_relay).

Anything else (no offer, a port that does not answer, a failed handshake) and the host
uses the QUIC RPC stream instead: slower, never failing where the mesh works.

The listener faces the internet. It peeks at a caller's first TLS record
(meshcore.client_hello) and starts a handshake only if its server name names a live
ticket; a caller has HELLO_S to send it, and at most MAX_SILENT callers wait at once
(MAX_SILENT_PER_IP from one address; the oldest make room, so a flood of silent
connections cannot keep an honest host out), then HANDSHAKE_S to finish. Nothing a
stranger sends reaches OpenSSL but a ClientHello naming a ticket. Each refusal is one log
line (at most REFUSALS_LOGGED a minute; the rest are counted).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import socket
import ssl
import time
from dataclasses import dataclass
from typing import Awaitable, Callable

from meshcore.errors import PortInUse
from meshcore.ids import ModelId, NodeId
from meshcore.link_tls import (LinkTls, cert_node_id, handshake, nodelay, peek_hello, recv_some, server_name,
                               ticket_of)
from meshcore.log_limit import LimitedLog
from meshcore.member import MeshMember
from meshcore.messages import Refused, RpcLinkOffer, RpcLinkRequest
from meshcore.process import bind_tcp

log = logging.getLogger(__name__)
HELLO_S = 2.0        # a caller names its ticket (TLS ClientHello) within this, or is closed
HANDSHAKE_S = 5.0    # ... and completes the handshake within this
TICKET_TTL_S = 15.0
CONNECT_S = 3.0
MAX_SILENT = 64      # connections that have not named a ticket yet, in all
MAX_SILENT_PER_IP = 8
MAX_TICKETS = 64
MAX_TICKETS_PER_HOST = 8
REFUSALS_LOGGED = 10  # a minute
READY = b"\x01"    # the worker's first byte: the link is the rpc-server's
NOT_NOW = b"\x00"  # ... or: refused (busy, or the plan changed)
# How long a host waits for READY: the worker may wait for its plan (RPC_GRANT_WAIT_S, 10 s),
# then for the link before this one to end (10 s more).
READY_WAIT_S = 2 * 10.0 + HANDSHAKE_S


def bind_data_port(port: int, pinned: bool) -> socket.socket:
    """The data path's TCP listening socket, on every interface as the mesh's UDP endpoint:
    the same number as that endpoint's port, so one forwarded port pair serves both. Pinned
    (--bind-port) and taken: PortInUse, one line. Not pinned and taken: any free port (a
    host learns it from the worker's offer)."""
    try:
        sock = bind_tcp("0.0.0.0", port, "TCP, the split data path; --bind-port pins it with the UDP port")
    except PortInUse:
        if pinned:
            raise
        sock = bind_tcp("0.0.0.0", 0, "TCP, the split data path")
    sock.set_inheritable(False)
    sock.listen(64)
    return sock


class NoDirectPath(Exception):
    """The TCP path cannot be used for this link (the QUIC stream can)."""


class LinkRefused(Exception):
    """The worker refused the link itself (no path will do)."""


@dataclass
class Ticket:
    host: NodeId
    model: ModelId
    cert: bytes
    context: ssl.SSLContext
    expires: float


Serve = Callable[[ssl.SSLSocket, NodeId, ModelId], Awaitable[None]]


class RpcDataListener:
    """A worker's TCP port for its split's host, and the tickets it has handed out."""

    def __init__(self, tls: LinkTls, sock: socket.socket, serve: Serve) -> None:
        self.tls = tls
        self.sock = sock
        self.serve = serve
        self.tickets: dict[str, Ticket] = {}
        self.context = tls.listener_context(self._lookup)
        self._silent: dict[asyncio.Task, str] = {}  # connections yet to name a ticket -> their address
        # Limits (attributes, so tests can lower them).
        self.hello_s = HELLO_S
        self.handshake_s = HANDSHAKE_S
        self.max_silent = MAX_SILENT
        self.max_silent_per_ip = MAX_SILENT_PER_IP
        self.ticket_ttl_s = TICKET_TTL_S
        self._refusals = LimitedLog(log, REFUSALS_LOGGED, "refused %d more connections to the split data port "
                                    "in the last minute")

    @property
    def port(self) -> int:
        return self.sock.getsockname()[1]

    def offer(self, host: NodeId, model: ModelId, host_cert: bytes) -> RpcLinkOffer | Refused:
        """A ticket for `host`, already found entitled to `model` by the caller."""
        if cert_node_id(host_cert) != host:
            log.warning("refused a split link request from node %s: the certificate it sent is not its own", host[:12])
            return Refused("the certificate is not the sender's")
        now = time.monotonic()
        self.tickets = {k: t for k, t in self.tickets.items() if t.expires > now}
        if len(self.tickets) >= MAX_TICKETS or sum(t.host == host for t in self.tickets.values()) >= MAX_TICKETS_PER_HOST:
            return Refused("too many split links being set up")
        try:
            context = self.tls.for_caller(host_cert)
        except ssl.SSLError:
            return Refused("the certificate is not usable")
        ticket = secrets.token_hex(16)
        self.tickets[ticket] = Ticket(host, model, host_cert, context, now + self.ticket_ttl_s)
        return RpcLinkOffer(self.port, ticket, self.tls.cert_der)

    def _lookup(self, ticket: str) -> ssl.SSLContext | None:
        found = self.tickets.get(ticket)
        return found.context if found is not None and found.expires > time.monotonic() else None

    async def run(self) -> None:
        """Accept connections for ever. A stranger's connection is held until it names a
        ticket (HELLO_S at most); of those, MAX_SILENT in all (the oldest make room: an honest
        host names its ticket in its first packet) and MAX_SILENT_PER_IP from one address."""
        loop = asyncio.get_running_loop()
        self.sock.setblocking(False)
        async with asyncio.TaskGroup() as tasks:
            while True:
                try:
                    conn, addr = await loop.sock_accept(self.sock)
                except OSError as exc:  # out of descriptors, a connection reset before it was taken, ...
                    self.refused("?", f"accepting failed ({exc.strerror or exc})")
                    await asyncio.sleep(0.1)
                    continue
                ip = str(addr[0])
                if sum(1 for a in self._silent.values() if a == ip) >= self.max_silent_per_ip:
                    conn.close()
                    self.refused(ip, "too many connections from one address that have not named a ticket")
                    continue
                if len(self._silent) >= self.max_silent:
                    oldest = next(iter(self._silent))
                    self._silent.pop(oldest)
                    oldest.cancel()
                task = tasks.create_task(self._accept(conn, ip))
                self._silent[task] = ip

    async def _accept(self, conn: socket.socket, ip: str) -> None:
        me = asyncio.current_task()
        try:
            try:
                async with asyncio.timeout(self.hello_s):
                    hello = await peek_hello(nodelay(conn))
            except asyncio.CancelledError:
                if me is not None and me not in self._silent:  # made room for a newer one (not a shutdown)
                    self.refused(ip, "it named no ticket while too many connections were waiting")
                raise
            finally:
                self._silent.pop(me, None)  # type: ignore[arg-type]
            why = ("it spoke plain HTTP, not TLS" if hello.http else "it did not speak TLS" if not hello.tls
                   else "it named no valid ticket" if self._lookup(ticket_of(hello.name) or "") is None else "")
            if why:
                self.refused(ip, why)
                return
            try:
                async with asyncio.timeout(self.handshake_s):
                    secure = await handshake(conn, self.context, server_side=True)
            except TimeoutError:
                self.refused(ip, f"no TLS handshake within {self.handshake_s:g} s")
                return
            except (ssl.SSLError, OSError) as exc:
                self.refused(ip, _tls_words(exc))
                return
        except TimeoutError:
            self.refused(ip, f"no TLS ClientHello within {self.hello_s:g} s")
            return
        except OSError as exc:
            self.refused(ip, f"the connection failed ({exc.strerror or exc})")
            return
        finally:
            conn.close()  # detached into `secure` when the handshake began: then a no-op
        with contextlib.closing(secure):
            ticket_id = next((k for k, t in self.tickets.items() if t.context is secure.context), None)
            ticket = self.tickets.pop(ticket_id, None) if ticket_id else None
            if ticket is None or secure.getpeercert(binary_form=True) != ticket.cert:  # pinned: cannot differ
                self.refused(ip, "its ticket was already used")
                return
            try:
                await self.serve(secure, ticket.host, ticket.model)
            except Exception as exc:  # noqa: BLE001 - one link's failure never ends the listener
                log.warning("the split link of node %s failed: %s: %s", ticket.host[:12], type(exc).__name__, exc)

    def refused(self, ip: str, why: str) -> None:
        self._refusals.warning("refused a connection to the split data port from %s: %s", ip, why)


def _tls_words(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None) or str(exc)
    words = {"HTTP_REQUEST": "it spoke plain HTTP, not TLS", "WRONG_VERSION_NUMBER": "it did not speak TLS 1.3",
             "UNSUPPORTED_PROTOCOL": "it did not speak TLS 1.3", "CALLBACK_FAILED": "it named no valid ticket",
             "CERTIFICATE_VERIFY_FAILED": "its certificate is not the one its ticket was given for",
             "PEER_DID_NOT_RETURN_A_CERTIFICATE": "it sent no certificate"}
    for key, text in words.items():
        if key in str(reason):
            return text
    return f"TLS failed ({reason})" if reason else "it closed the connection during the handshake"


async def dial(tls: LinkTls, member: MeshMember, worker: NodeId, model: ModelId,
               wait_s: float) -> tuple[ssl.SSLSocket, str]:
    """The host's side: a TLS socket to `worker`'s rpc-server, READY received, and the
    address it reached. LinkRefused if the worker refuses the link; NoDirectPath if only
    the TCP path fails (any failure: a worker's bytes must never end the host's task)."""
    try:
        answer = await member.request(worker, RpcLinkRequest(model, tls.cert_der), wait_s + 2)
    except (OSError, ConnectionError, TimeoutError) as exc:
        raise NoDirectPath(f"no answer over the mesh ({exc or 'timed out'})") from exc
    except Exception as exc:  # noqa: BLE001 - a worker on an older version, or garbage: the QUIC path decides
        raise NoDirectPath(f"the worker does not offer it ({exc})") from exc
    if isinstance(answer, Refused):
        raise LinkRefused(answer.why)
    if not isinstance(answer, RpcLinkOffer) or answer.port == 0:
        raise NoDirectPath("the worker has no TCP data port")
    if answer.port < 1024:
        raise NoDirectPath(f"the worker named port {answer.port}, a privileged one")
    if cert_node_id(answer.cert) != worker:
        raise NoDirectPath("the worker's certificate is not its own key's")
    conn = member.conns.get(worker)
    if conn is None:
        raise NoDirectPath("the mesh connection closed")
    ip, port = conn.remote_ip, answer.port
    where = f"{ip}:{port}"
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET6 if ":" in ip else socket.AF_INET, socket.SOCK_STREAM)
    secure: ssl.SSLSocket | None = None
    try:
        sock.setblocking(False)
        try:
            async with asyncio.timeout(CONNECT_S):
                await loop.sock_connect(sock, (ip, port))
        except (OSError, TimeoutError) as exc:
            raise NoDirectPath(f"{where} did not accept a TCP connection "
                               f"({exc.strerror or exc if isinstance(exc, OSError) else 'timed out'})") from exc
        try:
            async with asyncio.timeout(HANDSHAKE_S):
                secure = await handshake(nodelay(sock), tls.for_listener(answer.cert), False,
                                         server_name(answer.ticket))
        except (ssl.SSLError, OSError, TimeoutError) as exc:
            raise NoDirectPath(f"the TLS handshake with {where} failed "
                               f"({_tls_words(exc) if not isinstance(exc, TimeoutError) else 'timed out'})") from exc
        try:
            async with asyncio.timeout(READY_WAIT_S):
                first = await recv_some(secure, 1)
        except (ssl.SSLError, OSError, TimeoutError) as exc:
            raise NoDirectPath(f"the worker did not take the link ({exc or 'timed out'})") from exc
        if first == NOT_NOW:
            raise LinkRefused("the worker's rpc-server is in use or the plan changed")
        if first != READY:
            raise NoDirectPath("the worker closed the link before it was ready")
        return secure, where
    except BaseException:
        for s in (secure, sock):
            if s is not None:
                s.close()
        raise
