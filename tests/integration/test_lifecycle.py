"""Starting and stopping `mesh-llm`: no orphans, no ports left, loopback only,
children restarted, and one-line errors for what users get wrong."""

from __future__ import annotations

import base64
import os
import re
import signal
import socket
import time
from pathlib import Path

import psutil
import pytest

from meshcore.token import InviteToken
from meshnode import MeshNode, assert_one_line_error, free_port, http_json, run_cli, start_node

TINY = "mesh-tiny-F16"


def listeners(node: MeshNode) -> list[tuple[str, int]]:
    """(ip, port) of every TCP socket listening in the node's process tree."""
    found = []
    for proc in [psutil.Process(node.proc.pid), *node.descendants()]:
        try:
            for conn in proc.net_connections(kind="tcp"):
                if conn.status == psutil.CONN_LISTEN:
                    found.append((conn.laddr.ip, conn.laddr.port))
        except psutil.NoSuchProcess:
            pass
    return found


def port_is_free(port: int) -> bool:
    return not any(c.laddr.port == port and c.status == psutil.CONN_LISTEN
                   for c in psutil.net_connections(kind="tcp"))


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_stop_leaves_no_process_and_no_port(tmp_path: Path, models: dict[str, Path], sig: int) -> None:
    node = start_node(tmp_path, [models[TINY]])
    names = {p.name() for p in node.descendants()}
    assert any(n.startswith("llama-server") for n in names), names
    open_ports = listeners(node)
    assert {node.api_port, node.console_port} <= {port for _, port in open_ports}
    # Only the split data path listens beyond loopback (TLS bound to node keys, tickets from the mesh).
    [data_port] = [int(m) for m in re.findall(r"split data on TCP port (\d+)", node.log())]
    outside = [(ip, port) for ip, port in open_ports if ip != "127.0.0.1"]
    assert outside == [("0.0.0.0", data_port)], f"non-loopback listener: {open_ports}"
    code = node.stop(sig)
    assert code == 0, node.log()[-2000:]
    assert node.leftovers(timeout=5) == []
    assert all(port_is_free(port) for _, port in open_ports)
    assert not (node.home / "run" / "node.sock").exists()


def test_hard_killed_launcher_leaves_no_orphans(tmp_path: Path, models: dict[str, Path]) -> None:
    node = start_node(tmp_path, [models[TINY]])
    assert len(node.descendants()) >= 4
    node.proc.kill()
    node.proc.wait()
    assert node.leftovers(timeout=15) == [], "children outlived a SIGKILLed launcher"


def test_a_dead_proxy_is_restarted(tmp_path: Path, models: dict[str, Path]) -> None:
    node = start_node(tmp_path, [models[TINY]])
    try:
        os.kill(node.child_pid("mesh_proxy"), signal.SIGKILL)
        node.wait_serving([TINY], timeout=30)
        assert "the API proxy was killed by signal SIGKILL unexpectedly; restarting it" in node.log()
        status, _, _ = http_json(f"{node.api}/v1/completions", b'{"model": "mesh-tiny-F16", "prompt": "a", "max_tokens": 2}')
        assert status == 200
    finally:
        node.stop()


def test_bad_model_path_is_one_line(tmp_path: Path) -> None:
    result = run_cli("--home", str(tmp_path), "--model", str(tmp_path / "missing.gguf"),
                     "--port", str(free_port()), "--console", str(free_port()))
    assert_one_line_error(result, "does not exist")
    not_gguf = tmp_path / "notes.gguf"
    not_gguf.write_text("hello")
    result = run_cli("--home", str(tmp_path), "--model", str(not_gguf),
                     "--port", str(free_port()), "--console", str(free_port()))
    assert_one_line_error(result, "not a GGUF")


def test_port_in_use_is_one_line(tmp_path: Path, models: dict[str, Path]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_cli("--home", str(tmp_path), "--model", str(models[TINY]),
                         "--port", str(port), "--console", str(free_port()))
    assert_one_line_error(result, f"port {port}")
    assert not (tmp_path / "run" / "node.sock").exists()


def test_second_node_on_the_same_home_is_refused(tmp_path: Path, models: dict[str, Path]) -> None:
    node = start_node(tmp_path, [models[TINY]])
    try:
        result = run_cli("--home", str(node.home), "--model", str(models[TINY]),
                         "--port", str(free_port()), "--console", str(free_port()))
        assert_one_line_error(result, "already running")
        assert http_json(f"{node.api}/v1/models")[0] == 200
    finally:
        node.stop()


def test_a_model_that_cannot_load_is_reported_failed_with_the_reason(tmp_path: Path) -> None:
    broken = tmp_path / "Broken.gguf"
    broken.write_bytes(b"GGUF" + os.urandom(4096))
    node = start_node(tmp_path, [broken], wait=False)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                status, body, _ = http_json(f"{node.console}/api/status", timeout=2)
            except OSError:  # the console is not listening yet
                status, body = 0, {}
            models = {m["name"]: m for m in body.get("models", [])}
            if status == 200 and models.get("Broken", {}).get("state") == "failed" and "gave up" in models["Broken"]["reason"]:
                break
            time.sleep(0.3)
        assert models["Broken"]["state"] == "failed", node.log()[-2000:]
        assert "llama-server" in models["Broken"]["reason"]
        status, err, headers = http_json(f"{node.api}/v1/completions", b'{"model": "Broken", "prompt": "a"}')
        assert status == 503 and "failed" in err["error"]["message"]
    finally:
        node.stop()


def test_the_mesh_secret_is_in_no_process_argv(tmp_path: Path, models: dict[str, Path]) -> None:
    """`ps` shows every process's argv to every user of the machine."""
    first = start_node(tmp_path / "a", [models[TINY]])
    token_file = tmp_path / "token"
    token_file.write_text(first.wait_token() + "\n")
    second = start_node(tmp_path / "b", [models[TINY]], "--join-file", str(token_file))
    try:
        token = first.wait_token()
        secret = InviteToken.decode(token).secret
        for node in (first, second):
            procs = [psutil.Process(node.proc.pid), *node.descendants()]
            assert len(procs) >= 4  # launcher, node agent, proxy, console (and llama-server)
            for proc in procs:
                argv = " ".join(proc.cmdline())
                assert token not in argv and secret.hex() not in argv, proc.cmdline()
                assert base64.urlsafe_b64encode(secret).decode().rstrip("=") not in argv
    finally:
        second.stop()
        first.stop()
