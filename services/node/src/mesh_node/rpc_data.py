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

The listener faces the internet: before a handshake completes it holds at most
MAX_HANDSHAKES connections (MAX_HANDSHAKES_PER_IP from one address), each for at most
HANDSHAKE_S, and nothing is read from a stranger but a TLS ClientHello. Each refusal is
one log line (at most REFUSALS_LOGGED a minute; the rest are counted).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import socket
import ssl
import time
from collections import Counter
from dataclasses import dataclass
from typing import Awaitable, Callable

from meshcore.errors import PortInUse
from meshcore.ids import ModelId, NodeId
from meshcore.link_tls import LinkTls, cert_node_id, handshake, nodelay, recv_some, server_name
from meshcore.member import MeshMember
from meshcore.messages import Refused, RpcLinkOffer, RpcLinkRequest
from meshcore.process import bind_tcp

log = logging.getLogger(__name__)
HANDSHAKE_S = 5.0
TICKET_TTL_S = 15.0
CONNECT_S = 3.0
MAX_HANDSHAKES = 64
MAX_HANDSHAKES_PER_IP = 8
MAX_TICKETS = 64
MAX_TICKETS_PER_HOST = 8
REFUSALS_LOGGED = 10  # a minute
READY = b"\x01"    # the worker's first byte: the link is the rpc-server's
NOT_NOW = b"\x00"  # ... or: refused (busy, or the plan changed)


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
        self._handshaking: Counter[str] = Counter()
        # Limits (attributes, so tests can lower them).
        self.handshake_s = HANDSHAKE_S
        self.max_handshakes = MAX_HANDSHAKES
        self.max_handshakes_per_ip = MAX_HANDSHAKES_PER_IP
        self.ticket_ttl_s = TICKET_TTL_S
        self._log_window = (0.0, 0, 0)  # (window start, lines logged, lines held back)

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
        ticket = secrets.token_hex(16)
        self.tickets[ticket] = Ticket(host, model, host_cert, self.tls.for_caller(host_cert), now + self.ticket_ttl_s)
        return RpcLinkOffer(self.port, ticket, self.tls.cert_der)

    def _lookup(self, ticket: str) -> ssl.SSLContext | None:
        found = self.tickets.get(ticket)
        return found.context if found is not None and found.expires > time.monotonic() else None

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        self.sock.setblocking(False)
        async with asyncio.TaskGroup() as tasks:
            while True:
                conn, addr = await loop.sock_accept(self.sock)
                ip = addr[0]
                if sum(self._handshaking.values()) >= self.max_handshakes \
                        or self._handshaking[ip] >= self.max_handshakes_per_ip:
                    conn.close()
                    self.refused(ip, "too many connections setting up at once")
                    continue
                self._handshaking[ip] += 1
                tasks.create_task(self._accept(nodelay(conn), ip))

    async def _accept(self, conn: socket.socket, ip: str) -> None:
        try:
            try:
                async with asyncio.timeout(self.handshake_s):
                    tls = await handshake(conn, self.context, server_side=True)
            except TimeoutError:
                self.refused(ip, f"no TLS handshake within {self.handshake_s:g} s")
                return
            except (ssl.SSLError, OSError) as exc:
                self.refused(ip, _tls_words(exc))
                return
        finally:
            self._handshaking[ip] -= 1
            if not self._handshaking[ip]:
                del self._handshaking[ip]
        ticket_id = next((k for k, t in self.tickets.items() if t.context is tls.context), None)
        ticket = self.tickets.pop(ticket_id, None) if ticket_id else None
        if ticket is None or tls.getpeercert(binary_form=True) != ticket.cert:  # pinned: cannot differ
            tls.close()
            self.refused(ip, "its ticket was already used")
            return
        try:
            await self.serve(tls, ticket.host, ticket.model)
        except Exception as exc:  # noqa: BLE001 - one link's failure never ends the listener
            log.warning("the split link of node %s failed: %s: %s", ticket.host[:12], type(exc).__name__, exc)
        finally:
            tls.close()

    def refused(self, ip: str, why: str) -> None:
        now = time.monotonic()
        start, logged, held = self._log_window
        if now - start > 60:
            if held:
                log.warning("refused %d more connections to the split data port in the last minute", held)
            start, logged, held = now, 0, 0
        if logged < REFUSALS_LOGGED:
            log.warning("refused a connection to the split data port from %s: %s", ip, why)
            logged += 1
        else:
            held += 1
        self._log_window = (start, logged, held)


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


async def dial(tls: LinkTls, member: MeshMember, worker: NodeId, model: ModelId, wait_s: float) -> ssl.SSLSocket:
    """The host's side: a TLS socket to `worker`'s rpc-server, READY received.
    LinkRefused if the worker refuses the link; NoDirectPath if only the TCP path fails."""
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
    if cert_node_id(answer.cert) != worker:
        raise NoDirectPath("the worker's certificate is not its own key's")
    conn = member.conns.get(worker)
    if conn is None:
        raise NoDirectPath("the mesh connection closed")
    address = (conn.remote_ip, answer.port)
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET6 if ":" in address[0] else socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        async with asyncio.timeout(CONNECT_S):
            await loop.sock_connect(sock, address)
    except (OSError, TimeoutError) as exc:
        sock.close()
        raise NoDirectPath(f"{address[0]}:{address[1]} did not accept a TCP connection "
                           f"({exc.strerror or exc if isinstance(exc, OSError) else 'timed out'})") from exc
    try:
        async with asyncio.timeout(HANDSHAKE_S):
            secure = await handshake(nodelay(sock), tls.for_listener(answer.cert), False, server_name(answer.ticket))
    except (ssl.SSLError, OSError, TimeoutError) as exc:
        raise NoDirectPath(f"the TLS handshake with {address[0]}:{address[1]} failed "
                           f"({_tls_words(exc) if not isinstance(exc, TimeoutError) else 'timed out'})") from exc
    try:
        async with asyncio.timeout(wait_s + HANDSHAKE_S):
            first = await recv_some(secure, 1)
    except (ssl.SSLError, OSError, TimeoutError) as exc:
        secure.close()
        raise NoDirectPath(f"the worker did not take the link ({exc or 'timed out'})") from exc
    if first == NOT_NOW:
        secure.close()
        raise LinkRefused("the worker's rpc-server is in use or the plan changed")
    if first != READY:
        secure.close()
        raise NoDirectPath("the worker closed the link before it was ready")
    return secure
