"""A split's tensors on the direct data path (TCP + TLS bound to node keys, set up through
the QUIC mesh: mesh_node.rpc_data), with real nodes:

- a 3-way Q4_K_M split takes it and gives the solo tokens (2- and 3-way F16 splits:
  test_split.py; the 2-way Q4_K_M split: test_model_files.py);
- where the worker's data port cannot be reached (a firewall drops it, in network
  namespaces), the link falls back to the QUIC stream, says so once, and gives the same
  tokens;
- a member and a stranger try the port and the set-up: each is refused in one log line,
  and the honest split goes on unchanged;
- --bind-port pins the TCP port with the UDP one; a taken TCP port is a one-line error.
"""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

from conftest import GQA_Q4KM, TINY, sh
from meshcore.api import node_pb2 as pb
from meshcore.home import Home
from meshcore.link_tls import LinkTls, server_name
from meshcore.messages import Refused, RpcLinkRequest, parse_control, to_wire
from meshcore.wire import Kind, read_frame
from meshnode import SAME_KERNELS, MeshNode, free_port, free_udp_port, greedy, run_cli, start_node
from test_malicious_member import attacker, rpc_servers

HERE = Path(__file__).resolve().parent


def wait_split(nodes: list[MeshNode], model: str, parts: int, timeout: float = 120) -> MeshNode:
    """The node hosting `model` once its split of `parts` nodes serves (asked over each
    node's unix socket, so it works for nodes in other namespaces)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for node in nodes:
            if node.proc.poll() is not None:
                raise AssertionError(f"a node exited:\n{node.log()[-3000:]}")
            try:
                m = next(m for m in node.node_status().models if m.model_id == model)
            except Exception:  # noqa: BLE001 - still starting
                continue
            if len(m.split) == parts and m.state == pb.MODEL_STATE_SERVING:
                return node
        time.sleep(0.3)
    raise AssertionError("the split did not serve:\n" + "\n".join(n.log()[-2000:] for n in nodes))


def greedy_in(ns: str, port: int, model: str, tokens: int = 12) -> list[str]:
    """meshnode.greedy from inside a network namespace."""
    code = (f"import json, sys; sys.path.insert(0, {str(HERE)!r}); from meshnode import greedy; "
            f"print(json.dumps(greedy('http://127.0.0.1:{port}', {model!r}, {tokens})))")
    out = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout)


def stop_all(nodes: list[MeshNode]) -> None:
    for node in nodes:
        if node.proc.poll() is None:
            node.stop()


def test_a_three_way_q4_k_m_split_takes_the_direct_path(tmp_path: Path, real_models: dict[str, Path]) -> None:
    model = real_models[GQA_Q4KM.name]
    solo = start_node(tmp_path / "solo", [model], env=SAME_KERNELS)
    try:
        expected = greedy(solo.api, GQA_Q4KM.name, 12)
    finally:
        solo.stop()
    cap = f"{1.1 * model.stat().st_size * 0.4 / (1 << 30):.5f}"
    nodes = [start_node(tmp_path / "n0", [model], "--max-vram", cap, wait=False, env=SAME_KERNELS)]
    try:
        token = nodes[0].wait_token()
        for i in (1, 2):
            nodes.append(start_node(tmp_path / f"n{i}", [model], "--max-vram", cap, "--join", token, wait=False,
                                    env=SAME_KERNELS))
        host = wait_split(nodes, GQA_Q4KM.name, 3)
        assert greedy(host.api, GQA_Q4KM.name, 12) == expected
        links = host.node_status().rpc_links
        assert [link.path for link in links] == [pb.RPC_PATH_DIRECT] * 2, [link.path_note for link in links]
        assert all(link.bytes_from_worker > 0 for link in links)
        for node in nodes:
            assert "Traceback" not in node.log()
    finally:
        stop_all(nodes)


def test_a_blocked_data_port_falls_back_to_the_quic_stream(tmp_path: Path, models: dict[str, Path],
                                                           namespaces: tuple[str, str, str, str]) -> None:
    """Both nodes' TCP data ports are dropped by a firewall in their namespaces (UDP, the mesh,
    passes): whichever is the worker, the host cannot reach it over TCP."""
    ns_a, ns_b, _, _ = namespaces
    solo = start_node(tmp_path / "solo", [models[TINY.name]])
    try:
        expected = greedy(solo.api, TINY.name, 12)
    finally:
        solo.stop()
    ports = {ns_a: free_udp_port(), ns_b: free_udp_port()}
    for ns, port in ports.items():
        sh("ip", "netns", "exec", ns, "iptables", "-A", "INPUT", "-p", "tcp", "--dport", str(port), "-j", "DROP")
    a = start_node(tmp_path / "a", [models[TINY.name]], "--split", "--bind-port", str(ports[ns_a]), wait=False,
                   prefix=("ip", "netns", "exec", ns_a))
    nodes = [a]
    try:
        nodes.append(start_node(tmp_path / "b", [models[TINY.name]], "--split", "--bind-port", str(ports[ns_b]),
                                "--join", a.wait_token(), wait=False, prefix=("ip", "netns", "exec", ns_b)))
        host = wait_split(nodes, TINY.name, 2)
        ns = ns_a if host is a else ns_b
        assert greedy_in(ns, host.llama_port(TINY.name), TINY.name) == expected
        [link] = host.node_status().rpc_links
        assert link.path == pb.RPC_PATH_QUIC
        assert "did not accept a TCP connection" in link.path_note, link.path_note
        assert host.log().count("no direct TCP path") == 1, host.log()[-3000:]
        assert greedy_in(ns, host.api_port, TINY.name) == expected  # through the API too
        for node in nodes:
            assert "Traceback" not in node.log()
    finally:
        stop_all(nodes)


async def closed_without_a_word(port: int, first: bytes) -> bool:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(first)
    try:
        return await asyncio.wait_for(reader.read(), 15) == b""
    except ConnectionResetError:
        return True
    finally:
        writer.close()


async def tls_with_ticket(port: int, tls: LinkTls, pin: bytes, ticket: str) -> bytes | str:
    """A TLS connection naming `ticket`: what it reads, or the TLS error's words."""
    def attempt() -> bytes | str:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            try:
                with tls.for_listener(pin).wrap_socket(raw, server_hostname=server_name(ticket)) as secure:
                    return secure.recv(1)
            except (ssl.SSLError, ConnectionError) as exc:
                return str(exc)
    return await asyncio.to_thread(attempt)


async def test_members_and_strangers_cannot_use_the_data_path(tmp_path: Path, models: dict[str, Path]) -> None:
    bind = {name: free_udp_port() for name in ("n0", "n1")}
    first = start_node(tmp_path / "n0", [models[TINY.name]], "--split", "--bind-port", str(bind["n0"]), wait=False)
    nodes = [first]
    try:
        nodes.append(start_node(tmp_path / "n1", [models[TINY.name]], "--split", "--bind-port", str(bind["n1"]),
                                "--join", first.wait_token(), wait=False))
        host = wait_split(nodes, TINY.name, 2)
        worker = next(n for n in nodes if n is not host)
        port = bind["n0" if worker is first else "n1"]
        before = greedy(host.api, TINY.name, 8)
        llama = host.llama_pid(TINY.name)
        [rpc] = rpc_servers(worker)
        endpoint, conn = await attacker(tmp_path, worker)
        stranger = LinkTls.of_folder(tmp_path / "stranger")
        try:
            # A member asks for a link to a split it does not host, with its own certificate
            # and with the host's (another node's id): no ticket either way.
            host_cert = host_certificate(host)
            for cert in (stranger.cert_der, host_cert):
                reader, writer = await conn.open_stream(Kind.CONTROL, to_wire(RpcLinkRequest(TINY.name, cert)))
                writer.write_eof()
                reply = parse_control(await asyncio.wait_for(read_frame(reader), 20))
                assert isinstance(reply, Refused) and "not a worker of a split you host" in reply.why, reply
            # Strangers on the TCP port: plaintext, TLS naming a made-up ticket, and a
            # connection that never says anything (closed after the handshake deadline).
            assert await closed_without_a_word(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = await tls_with_ticket(port, stranger, host_cert, "ab" * 16)
            assert isinstance(answer, str), answer  # closed before any TLS: the ticket is no ticket
            silent = time.monotonic()
            assert await closed_without_a_word(port, b"")
            assert time.monotonic() - silent >= 1.5
        finally:
            endpoint.close()
        log = worker.log()
        attacker_id = endpoint.identity.node_id[:12]
        assert log.count(f"refused a split link request from node {attacker_id}") == 2, log[-3000:]
        assert "it spoke plain HTTP, not TLS" in log
        assert "it named no valid ticket" in log
        assert "no TLS ClientHello within 2 s" in log
        # The honest split never noticed: same tokens, same processes, still direct.
        assert greedy(host.api, TINY.name, 8) == before
        assert host.llama_pid(TINY.name) == llama and rpc_servers(worker)[0].pid == rpc.pid
        assert host.node_status().rpc_links[0].path == pb.RPC_PATH_DIRECT
        for node in nodes:
            assert "Traceback" not in node.log()
    finally:
        stop_all(nodes)


def host_certificate(node: MeshNode) -> bytes:
    """The node's data-path certificate: what anyone who connects to its TLS port sees."""
    return ssl.PEM_cert_to_DER_cert((Home(node.home).run_dir / "data-cert.pem").read_text())


def test_bind_port_pins_the_tcp_port_too(tmp_path: Path, models: dict[str, Path]) -> None:
    port = free_udp_port()
    node = start_node(tmp_path / "a", [models[TINY.name]], "--bind-port", str(port))
    try:
        assert f"split data on TCP port {port}" in node.log()
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass
    finally:
        node.stop()
    taken = socket.socket()
    taken.bind(("0.0.0.0", 0))
    taken.listen()
    busy = taken.getsockname()[1]
    try:
        result = run_cli("--home", str(tmp_path / "b"), "--model", str(models[TINY.name]), "--bind-port", str(busy),
                         "--port", str(free_port()), "--console", str(free_port()))
    finally:
        taken.close()
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr
    said = [line for line in result.stderr.splitlines() if f"port {busy}" in line]
    assert len(said) == 1 and "TCP, the split data path" in said[0] and "already in use" in said[0], result.stderr

