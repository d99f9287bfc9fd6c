"""mesh_node.rpc_data's listener, the worker's TCP port that faces the internet: real
sockets and real TLS in this process (the mesh side, who gets a ticket, is
mesh_node.rpc_tunnel's and is tested with real nodes in tests/integration/test_split_data_path.py).

A ticket opens one connection, for the node it was given to; everything else is refused
in one log line: plaintext, no or an unknown ticket, another key's certificate, a replay,
a connection that never finishes its handshake, too many at once from one address."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from pathlib import Path
from typing import AsyncIterator

import pytest

from meshcore.ids import ModelId, NodeId
from meshcore.link_tls import LinkTls, handshake, recv_some, server_name
from meshcore.messages import Refused, RpcLinkOffer
from mesh_node.rpc_data import READY, RpcDataListener

MODEL = ModelId("m")


class Worker:
    """A listener whose link handler says READY and records who it served."""

    def __init__(self, tls: LinkTls) -> None:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        self.listener = RpcDataListener(tls, sock, self.serve)
        self.served: list[tuple[NodeId, ModelId]] = []

    async def serve(self, secure: ssl.SSLSocket, host: NodeId, model: ModelId) -> None:
        self.served.append((host, model))
        secure.send(READY)


@pytest.fixture
async def worker(tmp_path: Path) -> AsyncIterator[Worker]:
    w = Worker(LinkTls.of_folder(tmp_path / "worker"))
    task = asyncio.ensure_future(w.listener.run())
    yield w
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    w.listener.sock.close()


async def connect(worker: Worker, me: LinkTls, ticket: str | None, pin: bytes | None = None) -> bytes:
    """A TLS connection to the listener as `me`, naming `ticket`: the first byte it answers
    (b"" if it closed the connection instead)."""
    loop = asyncio.get_running_loop()
    sock = socket.socket()
    sock.setblocking(False)
    await loop.sock_connect(sock, ("127.0.0.1", worker.listener.port))
    try:
        secure = await asyncio.wait_for(handshake(sock, me.for_listener(pin or worker.listener.tls.cert_der), False,
                                                  server_name(ticket) if ticket else None), 5)
        with contextlib.closing(secure):
            return await asyncio.wait_for(recv_some(secure, 1), 5)
    except (ssl.SSLError, ConnectionError):
        return b""


def offer(worker: Worker, host: LinkTls) -> str:
    answer = worker.listener.offer(host.node_id, MODEL, host.cert_der)
    assert isinstance(answer, RpcLinkOffer) and answer.port == worker.listener.port
    assert answer.cert == worker.listener.tls.cert_der
    return answer.ticket


def refusals(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "refused a connection to the split data port" in r.getMessage()]


async def test_a_ticket_opens_one_link_for_its_node_only(worker: Worker, tmp_path: Path,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    host, stranger = LinkTls.of_folder(tmp_path / "host"), LinkTls.of_folder(tmp_path / "stranger")
    ticket = offer(worker, host)
    # Another node naming the host's ticket (SNI is sent in the clear): its certificate is not pinned.
    assert await connect(worker, stranger, ticket) == b""
    assert worker.served == []
    assert await connect(worker, host, ticket) == READY  # the ticket is still the host's
    assert worker.served == [(host.node_id, MODEL)]
    assert await connect(worker, host, ticket) == b""  # used once: a replay is refused
    assert await connect(worker, host, "0" * 32) == b""  # never handed out
    assert await connect(worker, host, None) == b""  # no ticket named
    assert worker.served == [(host.node_id, MODEL)]
    words = refusals(caplog)
    assert any("certificate is not the one its ticket was given for" in w for w in words), words
    assert sum("named no valid ticket" in w for w in words) == 3, words


async def test_the_host_pins_the_workers_key(worker: Worker, tmp_path: Path) -> None:
    host, other = LinkTls.of_folder(tmp_path / "host"), LinkTls.of_folder(tmp_path / "other")
    ticket = offer(worker, host)
    # The listener is not who the host was told: the host's handshake fails, nothing is served.
    assert await connect(worker, host, ticket, pin=other.cert_der) == b""
    assert worker.served == []


async def test_plaintext_and_silent_connections_are_closed(worker: Worker, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    worker.listener.hello_s = 0.5
    loop = asyncio.get_running_loop()
    reader, writer = await asyncio.open_connection("127.0.0.1", worker.listener.port)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    try:
        assert await asyncio.wait_for(reader.read(), 5) == b""  # closed, nothing said
    except ConnectionResetError:
        pass  # closed with what it sent unread: a reset
    silent = socket.create_connection(("127.0.0.1", worker.listener.port))
    silent.setblocking(False)
    started = loop.time()
    assert await asyncio.wait_for(loop.sock_recv(silent, 10), 5) == b""
    assert loop.time() - started >= 0.4
    silent.close()
    writer.close()
    words = refusals(caplog)
    assert any("plain HTTP" in w for w in words), words
    assert any("no TLS ClientHello within 0.5 s" in w for w in words), words


async def test_silent_connections_are_capped_per_address(worker: Worker, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    worker.listener.max_silent_per_ip = 3
    loop = asyncio.get_running_loop()
    held = [socket.create_connection(("127.0.0.1", worker.listener.port)) for _ in range(3)]
    await asyncio.sleep(0.2)
    extra = socket.create_connection(("127.0.0.1", worker.listener.port))
    extra.setblocking(False)
    assert await asyncio.wait_for(loop.sock_recv(extra, 10), 2) == b""  # closed at once
    assert any("too many connections from one address" in w for w in refusals(caplog))
    for sock in held + [extra]:
        sock.close()


async def test_a_flood_of_silent_connections_does_not_keep_the_host_out(
        worker: Worker, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The oldest silent connection makes room for a new one: the host, who names its
    ticket in its first packet, gets through a listener full of strangers."""
    caplog.set_level(logging.WARNING)
    worker.listener.max_silent, worker.listener.max_silent_per_ip = 4, 100
    host = LinkTls.of_folder(tmp_path / "host")
    silent = [socket.create_connection(("127.0.0.1", worker.listener.port)) for _ in range(4)]
    await asyncio.sleep(0.2)
    assert await connect(worker, host, offer(worker, host)) == READY
    assert any("while too many connections were waiting" in w for w in refusals(caplog))
    for sock in silent:
        sock.close()


async def test_bytes_python_cannot_decode_as_a_server_name_are_refused_quietly(
        worker: Worker, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]) -> None:
    """A ClientHello whose server name is not ASCII: CPython's own SNI decoding would print a
    traceback for it on every connection; it never reaches that decoding."""
    caplog.set_level(logging.WARNING)
    name = b"\xfft"
    sni = (0).to_bytes(2, "big") + (len(name) + 5).to_bytes(2, "big") + (len(name) + 3).to_bytes(2, "big") \
        + b"\x00" + len(name).to_bytes(2, "big") + name
    body = b"\x03\x03" + bytes(32) + b"\x00" + b"\x00\x02\x13\x01" + b"\x01\x00" + len(sni).to_bytes(2, "big") + sni
    hello = b"\x01" + len(body).to_bytes(3, "big") + body
    record = b"\x16\x03\x01" + len(hello).to_bytes(2, "big") + hello
    reader, writer = await asyncio.open_connection("127.0.0.1", worker.listener.port)
    writer.write(record)
    try:
        assert await asyncio.wait_for(reader.read(), 5) == b""
    except ConnectionResetError:
        pass
    writer.close()
    assert any("named no valid ticket" in w for w in refusals(caplog))
    assert "Traceback" not in capfd.readouterr().err


async def test_an_offer_needs_the_senders_own_certificate(worker: Worker, tmp_path: Path) -> None:
    host, other = LinkTls.of_folder(tmp_path / "host"), LinkTls.of_folder(tmp_path / "other")
    assert isinstance(worker.listener.offer(host.node_id, MODEL, other.cert_der), Refused)
    assert isinstance(worker.listener.offer(host.node_id, MODEL, b"not a certificate"), Refused)
    tickets = {offer(worker, host) for _ in range(8)}
    assert len(tickets) == 8  # each its own
    assert isinstance(worker.listener.offer(host.node_id, MODEL, host.cert_der), Refused)  # 8 pending at most


async def test_a_ticket_expires(worker: Worker, tmp_path: Path) -> None:
    host = LinkTls.of_folder(tmp_path / "host")
    worker.listener.ticket_ttl_s = 0.2
    ticket = offer(worker, host)
    await asyncio.sleep(0.3)
    assert await connect(worker, host, ticket) == b""
    assert worker.served == []
