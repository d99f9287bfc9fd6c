"""TLS 1.3 for the split's direct data path, bound to node keys.

Each side's certificate is self-signed with its node's Ed25519 key (meshcore.tls_cert),
the key its node id is the hash of. Neither side trusts a certificate authority: each
pins the one certificate the other sent it over the admitted QUIC mesh connection, after
checking that the certificate's key hashes to that connection's node id
(`cert_node_id`). So a TCP connection completes only between the two nodes that set it
up, whatever address it reached.

The listener does not know in advance who is calling: the caller names its ticket in the
TLS server name (SNI: `t<ticket>`), and the listener's `sni_callback` switches to the
context made for that ticket, which trusts only the certificate of the node the ticket
was given to. An unknown ticket ends the handshake before any certificate is sent. The
ticket is not a secret (SNI is sent in the clear); the pinned certificate is the proof.

Handshakes run on the event loop over non-blocking sockets (`handshake`), under a
deadline; the connected socket is then handed to a meshcore.socket_relay thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import ssl
from pathlib import Path
from typing import Callable

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from meshcore.client_hello import MAX_RECORD, RECORD_HEADER, Peeked, peek
from meshcore.identity import IDENTITY_KEY, Identity, load_or_create_identity, node_id_of
from meshcore.ids import NodeId
from meshcore.messages import MAX_CERT
from meshcore.tls_cert import self_signed_certificate

TICKET_NAME = re.compile(r"^t([0-9a-f]{32})$")


def cert_node_id(der: object) -> NodeId | None:
    """The node id a certificate's key hashes to (None: not a certificate of an Ed25519 key)."""
    if not isinstance(der, bytes) or len(der) > MAX_CERT:
        return None
    try:
        key = x509.load_der_x509_certificate(der).public_key()
    except Exception:  # noqa: BLE001 - a peer's bytes: malformed, or a key type cryptography does not know
        return None
    return node_id_of(key) if isinstance(key, Ed25519PublicKey) else None


def ticket_of(server_name: str | None) -> str | None:
    """The ticket a caller named in its TLS server name, if it is one."""
    match = TICKET_NAME.match(server_name or "")
    return match.group(1) if match else None


def server_name(ticket: str) -> str:
    return f"t{ticket}"


class LinkTls:
    """This node's side of the data path's TLS: its certificate, and contexts that pin the
    other side's. `key_file`: the node's identity key (PEM); the certificate is written
    beside the sockets (`cert_file`), it holds nothing secret."""

    def __init__(self, identity: Identity, key_file: Path, cert_file: Path) -> None:
        self.node_id = identity.node_id
        self.cert_der = self_signed_certificate(identity).public_bytes(serialization.Encoding.DER)
        cert_file.write_bytes(ssl.DER_cert_to_PEM_cert(self.cert_der).encode())
        self.key_file, self.cert_file = key_file, cert_file

    @staticmethod
    def of_folder(folder: Path) -> "LinkTls":
        """The LinkTls of the identity kept in `folder` (made if missing): a node home's
        layout, for tools and tests that stand in for a node."""
        folder.mkdir(parents=True, exist_ok=True)
        return LinkTls(load_or_create_identity(folder), folder / IDENTITY_KEY, folder / "data-cert.pem")

    def _context(self, server: bool, peer_cert: bytes) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server else ssl.PROTOCOL_TLS_CLIENT)
        context.minimum_version = ssl.TLSVersion.TLSv1_3
        context.check_hostname = False
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_cert_chain(self.cert_file, self.key_file)
        if peer_cert:
            context.load_verify_locations(cadata=peer_cert)
        if server:
            context.num_tickets = 0  # no resumption: every connection is set up through the mesh
        return context

    def listener_context(self, lookup: Callable[[str], ssl.SSLContext | None]) -> ssl.SSLContext:
        """The listener's context: it trusts nobody until the caller's server name names a
        ticket; `lookup(ticket)` gives that ticket's context (`for_caller`), or None."""
        context = self._context(True, b"")

        def choose(sock: ssl.SSLObject | ssl.SSLSocket, name: str | None, _: ssl.SSLContext) -> int | None:
            ticket = ticket_of(name)
            chosen = lookup(ticket) if ticket else None
            if chosen is None:
                return ssl.ALERT_DESCRIPTION_UNRECOGNIZED_NAME
            sock.context = chosen
            return None

        context.sni_callback = choose
        return context

    def for_caller(self, caller_cert: bytes) -> ssl.SSLContext:
        """The listener's context for one ticket: only `caller_cert` is accepted."""
        return self._context(True, caller_cert)

    def for_listener(self, listener_cert: bytes) -> ssl.SSLContext:
        """The caller's context: only `listener_cert` is accepted."""
        return self._context(False, listener_cert)


async def handshake(sock: socket.socket, context: ssl.SSLContext, server_side: bool,
                    server_hostname: str | None = None) -> ssl.SSLSocket:
    """A TLS handshake over a connected non-blocking socket, driven by the event loop
    (bound it with asyncio.timeout). On failure the socket is closed and the error raised."""
    loop = asyncio.get_running_loop()
    sock.setblocking(False)
    tls = context.wrap_socket(sock, server_side=server_side, server_hostname=server_hostname,
                              do_handshake_on_connect=False)
    try:
        while True:
            try:
                tls.do_handshake()
                return tls
            except ssl.SSLWantReadError:
                await _ready(tls, writing=False)
            except ssl.SSLWantWriteError:
                await _ready(tls, writing=True)
    except BaseException:
        tls.close()
        raise


async def peek_hello(sock: socket.socket) -> Peeked:
    """What the caller's first TLS record says (meshcore.client_hello), read with MSG_PEEK
    so the handshake still finds it; waits (bound it with asyncio.timeout) until the whole
    record is there, with SO_RCVLOWAT so a partial record does not wake this up again."""
    sock.setblocking(False)
    need, had = RECORD_HEADER, 0
    try:
        while True:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, need)
            await _ready(sock, writing=False)
            data = sock.recv(MAX_RECORD, socket.MSG_PEEK)
            if len(data) <= had:  # woken with nothing new: the caller closed (or broke) mid-record
                return Peeked(tls=False)
            seen = peek(data)
            if not seen.need:
                return seen
            need, had = seen.need, len(data)
    finally:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, 1)


async def recv_some(sock: ssl.SSLSocket, size: int) -> bytes:
    """Up to `size` bytes from a non-blocking TLS socket, waiting on the event loop."""
    while True:
        try:
            return sock.recv(size)
        except ssl.SSLWantReadError:
            await _ready(sock, writing=False)
        except ssl.SSLWantWriteError:
            await _ready(sock, writing=True)


async def _ready(sock: socket.socket, writing: bool) -> None:
    loop = asyncio.get_running_loop()
    add, remove = (loop.add_writer, loop.remove_writer) if writing else (loop.add_reader, loop.remove_reader)
    ready: asyncio.Future[None] = loop.create_future()
    add(sock.fileno(), lambda: ready.done() or ready.set_result(None))
    try:
        await ready
    finally:
        remove(sock.fileno())


def nodelay(sock: socket.socket) -> socket.socket:
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock
