"""One RPC-sized round trip (34 KB up, 31 KB down: a split's graph and activations) on each
path a split's link can take, in separate processes on loopback:

- tcp_direct: a client and an echo server (stock llama.cpp RPC between machines);
- data_path: the split's direct path, as the nodes run it: a "host" process relaying a
  local plain connection into TLS (meshcore.socket_relay, meshcore.link_tls) and a
  "worker" process whose RpcDataListener (mesh_node.rpc_data) takes the ticketed TLS
  connection and relays it to the echo server; only the mesh exchange that hands out
  the ticket is done up front instead of over QUIC;
- quic_stream: the fallback, a mesh QUIC stream (bench/quic_roundtrip.py's measure, both
  endpoints in one process, Ethernet-sized datagrams).

    .venv/bin/python bench/rpc_roundtrip.py [--trips 2000] [--sizes 34000:31000,15000:1500] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from meshcore import event_loop
from meshcore.event_loop import fast_loop
from meshcore.ids import ModelId, NodeId
from meshcore.link_tls import LinkTls, cert_node_id, handshake, nodelay, recv_some, server_name
from meshcore.messages import RpcLinkOffer
from meshcore.socket_relay import SocketRelay
from mesh_node.rpc_data import READY, RpcDataListener

HERE = Path(__file__).resolve().parent


def echo(port_file: Path, up: int, down: int) -> None:
    """Read `up` bytes, answer `down` bytes, for ever (one connection at a time)."""
    server = socket.create_server(("127.0.0.1", 0))
    port_file.write_text(str(server.getsockname()[1]))
    answer = b"y" * down
    while True:
        conn, _ = server.accept()
        nodelay(conn)
        with conn:
            buf = bytearray(up)
            try:
                while True:
                    got = 0
                    while got < up:
                        n = conn.recv_into(memoryview(buf)[got:])
                        if not n:
                            raise EOFError
                        got += n
                    conn.sendall(answer)
            except (EOFError, OSError):
                pass


async def worker(folder: Path, echo_port: int, out: Path) -> None:
    """The worker's listener; one ticket for the host whose certificate is in host.der."""
    tls = LinkTls.of_folder(folder / "worker")

    async def serve(secure: ssl.SSLSocket, host: NodeId, model: ModelId) -> None:
        local = socket.create_connection(("127.0.0.1", echo_port))
        await SocketRelay(secure, nodelay(local), greeting=READY, name="worker").run()

    sock = socket.create_server(("127.0.0.1", 0))
    listener = RpcDataListener(tls, sock, serve)
    host_cert = (folder / "host.der").read_bytes()
    offer = listener.offer(NodeId(str(cert_node_id(host_cert))), ModelId("bench"), host_cert)
    assert isinstance(offer, RpcLinkOffer)
    out.write_text(json.dumps({"port": offer.port, "ticket": offer.ticket, "cert": offer.cert.hex()}))
    await listener.run()


async def host(folder: Path, offer_file: Path, out: Path) -> None:
    """The host's side: a local port; its connection goes into TLS to the worker."""
    tls = LinkTls.of_folder(folder / "host")
    (folder / "host.der").write_bytes(tls.cert_der)
    while not (offer_file.exists() and offer_file.read_text()):
        await asyncio.sleep(0.02)
    offer = json.loads(offer_file.read_text())
    loop = asyncio.get_running_loop()
    local = socket.create_server(("127.0.0.1", 0))
    local.setblocking(False)
    out.write_text(str(local.getsockname()[1]))
    conn, _ = await loop.sock_accept(local)
    sock = socket.socket()
    sock.setblocking(False)
    await loop.sock_connect(sock, ("127.0.0.1", offer["port"]))
    secure = await handshake(nodelay(sock), tls.for_listener(bytes.fromhex(offer["cert"])), False,
                             server_name(offer["ticket"]))
    assert await recv_some(secure, 1) == READY
    await SocketRelay(nodelay(conn), secure, name="host").run()


def spawn(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, __file__, *args])


def wait_file(path: Path, proc: subprocess.Popen) -> str:
    deadline = time.monotonic() + 30
    while not (path.exists() and path.read_bytes()):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{path.name}: the process exited or never wrote it")
        time.sleep(0.02)
    return path.read_bytes().decode(errors="replace")


def time_trips(port: int, up: int, down: int, trips: int) -> dict:
    sock = socket.create_connection(("127.0.0.1", port))
    nodelay(sock)
    request, buf = b"x" * up, bytearray(down)
    times = []
    for i in range(trips + 50):
        started = time.perf_counter()
        sock.sendall(request)
        got = 0
        while got < down:
            n = sock.recv_into(memoryview(buf)[got:])
            assert n, "closed"
            got += n
        if i >= 50:  # the first trips warm the path up
            times.append((time.perf_counter() - started) * 1000)
    sock.close()
    times.sort()
    return {"ms_p50": round(statistics.median(times), 3), "ms_p90": round(times[int(len(times) * 0.9)], 3)}


def measure_size(up: int, down: int, trips: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="mesh-rpc-rt-") as tmp_text:
        tmp = Path(tmp_text)
        procs = [spawn("echo", str(tmp / "echo.port"), str(up), str(down))]
        try:
            echo_port = int(wait_file(tmp / "echo.port", procs[0]))
            procs.append(spawn("host", str(tmp), str(tmp / "offer.json"), str(tmp / "host.port")))
            wait_file(tmp / "host.der", procs[-1])
            procs.append(spawn("worker", str(tmp), str(echo_port), str(tmp / "offer.json")))
            wait_file(tmp / "offer.json", procs[-1])
            host_port = int(wait_file(tmp / "host.port", procs[1]))
            direct = time_trips(echo_port, up, down, trips)  # the echo serves one connection at a time
            path = time_trips(host_port, up, down, trips)
        finally:
            for proc in procs:
                proc.kill()
                proc.wait()
    return {"tcp_direct": direct, "data_path": path}


def quic_stream(up: int, down: int, trips: int) -> dict:
    sys.path.insert(0, str(HERE))
    from quic_roundtrip import trips as quic_trips
    with asyncio.Runner(loop_factory=fast_loop()) as runner:
        row = runner.run(quic_trips(up, down, min(trips, 300), 1472))
    return {"ms_p50": row["ms_p50"]}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] in ("echo", "worker", "host"):
        role, *rest = sys.argv[1:]
        if role == "echo":
            echo(Path(rest[0]), int(rest[1]), int(rest[2]))
        elif role == "worker":
            event_loop.run(worker(Path(rest[0]), int(rest[1]), Path(rest[2])))
        else:
            event_loop.run(host(Path(rest[0]), Path(rest[1]), Path(rest[2])))
        return
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trips", type=int, default=2000)
    p.add_argument("--sizes", default="34000:31000,15000:1500", help="UP:DOWN bytes, comma-separated")
    p.add_argument("--quick", action="store_true", help="300 trips")
    a = p.parse_args()
    trips = 300 if a.quick else a.trips
    rows = {}
    for size in a.sizes.split(","):
        up, down = (int(x) for x in size.split(":"))
        rows[f"{up}/{down}"] = {**measure_size(up, down, trips), "quic_stream": quic_stream(up, down, trips)}
        print(json.dumps({size: rows[f"{up}/{down}"]}), file=sys.stderr)
    print(json.dumps({
        "rpc_roundtrip_ms": {k: {path: v[path]["ms_p50"] for path in ("tcp_direct", "data_path", "quic_stream")}
                             for k, v in rows.items()},
        "rpc_roundtrip": rows, "trips": trips,
    }, indent=2))


if __name__ == "__main__":
    main()
