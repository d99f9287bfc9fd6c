"""meshcore.socket_relay: bytes both ways in a thread, over real socket pairs (plain and
TLS); how a relay ends (one side closes, stop(), a side that reads nothing) and what it
counts."""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
from pathlib import Path

from meshcore.link_tls import LinkTls
from meshcore.socket_relay import RelayEnd, SocketRelay


def pair() -> tuple[socket.socket, socket.socket]:
    return socket.socketpair()


def recv_exactly(sock: socket.socket, n: int) -> bytes:
    got = b""
    while len(got) < n:
        chunk = sock.recv(n - len(got))
        assert chunk, "closed early"
        got += chunk
    return got


async def test_bytes_go_both_ways_and_are_counted() -> None:
    outer_a, a = pair()
    b, outer_b = pair()
    up, down = [0, 0], [0, 0]
    relay = SocketRelay(a, b, up, down, greeting=b"!")
    task = asyncio.ensure_future(relay.run())
    big = bytes(range(256)) * 4000  # 1 MB, more than a socket buffer: the relay holds it back, loses nothing
    sender = threading.Thread(target=outer_b.sendall, args=(big,))
    sender.start()
    assert await asyncio.to_thread(recv_exactly, outer_a, 1 + len(big)) == b"!" + big
    sender.join()
    outer_a.sendall(b"ping")
    assert await asyncio.to_thread(recv_exactly, outer_b, 4) == b"ping"
    assert up[0] == 4 and down[0] == len(big) and down[1] >= 1
    outer_a.close()  # one side ends: the relay ends, and closes the other
    assert await asyncio.wait_for(task, 5) is RelayEnd.CLOSED
    assert await asyncio.to_thread(outer_b.recv, 10) == b""


async def test_stop_ends_it_and_cancelling_waits_for_the_thread() -> None:
    outer_a, a = pair()
    b, outer_b = pair()
    relay = SocketRelay(a, b)
    task = asyncio.ensure_future(relay.run())
    await asyncio.sleep(0.05)
    relay.stop()
    assert await asyncio.wait_for(task, 5) is RelayEnd.STOPPED
    assert a.fileno() == -1 and b.fileno() == -1  # closed by the relay
    relay2 = SocketRelay(*pair())
    task2 = asyncio.ensure_future(relay2.run())
    await asyncio.sleep(0.05)
    task2.cancel()
    try:
        await task2
    except asyncio.CancelledError:
        pass
    assert relay2.a.fileno() == -1 and relay2.b.fileno() == -1
    for s in (outer_a, outer_b):
        s.close()


async def test_a_side_that_takes_nothing_ends_it_after_the_stall_bound() -> None:
    outer_a, a = pair()
    b, outer_b = pair()
    relay = SocketRelay(a, b, stall_s=0.5)
    task = asyncio.ensure_future(relay.run())
    outer_a.setblocking(False)
    try:
        while True:  # fill everything between us and outer_b, which never reads
            outer_a.send(b"x" * 65536)
    except BlockingIOError:
        pass
    assert await asyncio.wait_for(task, 5) is RelayEnd.STALLED
    for s in (outer_a, outer_b):
        s.close()


async def test_it_relays_tls_on_one_side(tmp_path: Path) -> None:
    one, two = LinkTls.of_folder(tmp_path / "one"), LinkTls.of_folder(tmp_path / "two")
    raw_client, raw_server = pair()
    server_ctx, client_ctx = one.for_caller(two.cert_der), two.for_listener(one.cert_der)
    result: dict = {}

    def serve() -> None:
        result["server"] = server_ctx.wrap_socket(raw_server, server_side=True)

    thread = threading.Thread(target=serve)
    thread.start()
    client = client_ctx.wrap_socket(raw_client, server_hostname="x")
    thread.join()
    server: ssl.SSLSocket = result["server"]
    plain, inner = pair()
    relay = SocketRelay(inner, server)  # plain <-> TLS, as on a worker
    task = asyncio.ensure_future(relay.run())
    message = b"m" * 200_000
    await asyncio.to_thread(client.sendall, message)
    assert await asyncio.to_thread(recv_exactly, plain, len(message)) == message
    await asyncio.to_thread(plain.sendall, b"answer")
    assert await asyncio.to_thread(recv_exactly, client, 6) == b"answer"
    client.close()
    assert await asyncio.wait_for(task, 5) is RelayEnd.CLOSED
    plain.close()


async def test_stop_is_seen_while_bytes_keep_flowing() -> None:
    """A relay kept busy by both sides (a former host streaming tensors) still ends on
    stop(): a withdrawn grant cuts the link, and shutting down does not hang."""
    outer_a, a = pair()
    b, outer_b = pair()
    relay = SocketRelay(a, b)
    task = asyncio.ensure_future(relay.run())
    done = threading.Event()

    def flood() -> None:
        try:
            while not done.is_set():
                outer_a.sendall(b"t" * 65536)
        except OSError:
            pass

    def drain() -> None:
        try:
            while outer_b.recv(1 << 20):
                pass
        except OSError:
            pass

    threads = [threading.Thread(target=flood), threading.Thread(target=drain)]
    for t in threads:
        t.start()
    await asyncio.sleep(0.3)
    relay.stop()
    try:
        assert await asyncio.wait_for(task, 3) is RelayEnd.STOPPED
    finally:
        done.set()
        for s in (outer_a, outer_b):
            s.close()
        for t in threads:
            t.join(5)
