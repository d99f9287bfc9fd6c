"""Two nodes in separate network namespaces (their own addresses, joined by a
veth pair): the invite token carries a routable address and requests cross."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

from meshcore.api import node_pb2 as pb
from meshcore.token import InviteToken
from conftest import sh
from meshnode import MeshNode, start_node

TINY, EMBED = "mesh-tiny-F16", "mesh-embed-F16"
def wait_routes(node: MeshNode, models: set[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if node.proc.poll() is not None:
            raise AssertionError(node.log()[-2000:])
        try:
            serving = {r.model_id for r in node.node_status().routes.routes if r.state == pb.MODEL_STATE_SERVING}
            if models <= serving:
                return
        except Exception:  # noqa: BLE001 - the node is still starting
            pass
        time.sleep(0.3)
    raise AssertionError(f"{models} not routed:\n{node.log()[-2000:]}")


def curl_in(ns: str, url: str, body: dict | None = None, timeout: float = 30) -> dict:
    """POST (GET without `body`) from inside a namespace, retrying while the API is not
    listening yet or answers 503 "retry shortly" (model_not_ready), as a client that
    honours Retry-After would."""
    deadline = time.monotonic() + timeout
    post = ["-H", "Content-Type: application/json", "-d", json.dumps(body)] if body is not None else []
    while True:
        out = subprocess.run(["ip", "netns", "exec", ns, "curl", "-s", "-m", "20", url, *post],
                             capture_output=True, text=True)
        retry = out.returncode == 7 or (out.returncode == 0 and '"model_not_ready"' in out.stdout)  # 7: no connect
        if not retry or time.monotonic() > deadline:
            assert out.returncode == 0, out.stderr
            return json.loads(out.stdout)
        time.sleep(0.3)


def wait_api_lists(ns: str, node: MeshNode, models: set[str], timeout: float = 30) -> None:
    """The node's API (its proxy, a process of its own that follows the agent) lists
    `models`: until then a request may fairly get 503 "retry shortly"."""
    deadline = time.monotonic() + timeout
    listed: set[str] = set()
    while time.monotonic() < deadline:
        listed = {m["id"] for m in curl_in(ns, f"http://127.0.0.1:{node.api_port}/v1/models").get("data", [])}
        if models <= listed:
            return
        time.sleep(0.3)
    raise AssertionError(f"the API lists {sorted(listed)}, not {sorted(models)}:\n{node.log()[-2000:]}")


def test_nodes_in_separate_namespaces_form_a_mesh(tmp_path: Path, models: dict[str, Path],
                                                  namespaces: tuple[str, str, str, str]) -> None:
    ns_a, ns_b, ip_a, ip_b = namespaces
    a = start_node(tmp_path / "a", [models[TINY]], wait=False, prefix=("ip", "netns", "exec", ns_a))
    b = None
    try:
        wait_routes(a, {TINY})
        token = InviteToken.decode(a.node_status().token)
        assert token.addrs[0].startswith(ip_a + ":"), token.addrs
        b = start_node(tmp_path / "b", [models[EMBED]], "--join", a.node_status().token, wait=False,
                       prefix=("ip", "netns", "exec", ns_b))
        wait_routes(b, {TINY, EMBED})
        wait_routes(a, {TINY, EMBED})
        wait_api_lists(ns_b, b, {TINY, EMBED})
        wait_api_lists(ns_a, a, {TINY, EMBED})
        reply = curl_in(ns_b, f"http://127.0.0.1:{b.api_port}/v1/completions",
                        {"model": TINY, "prompt": "hi", "max_tokens": 3, "ignore_eos": True})
        assert (reply.get("usage") or {}).get("completion_tokens") == 3, (reply, a.log()[-3000:], b.log()[-3000:])
        reply = curl_in(ns_a, f"http://127.0.0.1:{a.api_port}/v1/embeddings", {"model": EMBED, "input": "hi"})
        assert "data" in reply and len(reply["data"][0]["embedding"]) == 256, (reply, a.log()[-3000:],
                                                                               b.log()[-3000:])
        peer = a.node_status().peers[0]
        assert peer.state == "alive" and peer.rtt_ms > 0
    finally:
        if b is not None:
            b.stop()
        a.stop()


def wait_peer_state(node: MeshNode, state: str, timeout: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        peers = node.node_status().peers
        if peers and all(p.state == state for p in peers):
            return time.monotonic() - started
        time.sleep(0.3)
    raise AssertionError(f"peers not {state} after {timeout:.0f} s: {node.node_status().peers}\n{node.log()[-2000:]}")


def test_a_cut_link_is_detected_and_the_mesh_heals_when_it_is_back(
        tmp_path: Path, models: dict[str, Path], namespaces: tuple[str, str, str, str]) -> None:
    ns_a, ns_b, _, _ = namespaces
    a = start_node(tmp_path / "a", [models[TINY]], wait=False, prefix=("ip", "netns", "exec", ns_a))
    b = None
    try:
        wait_routes(a, {TINY})
        b = start_node(tmp_path / "b", [models[EMBED]], "--join", a.node_status().token, wait=False,
                       prefix=("ip", "netns", "exec", ns_b))
        wait_routes(a, {TINY, EMBED})
        dev = next(line.split(":")[1].strip().split("@")[0] for line in subprocess.run(
            ["ip", "-n", ns_a, "-o", "link"], capture_output=True, text=True, check=True).stdout.splitlines()
            if "va" in line.split(":")[1])
        sh("ip", "-n", ns_a, "link", "set", dev, "down")
        wait_peer_state(a, "dead", timeout=30)
        wait_peer_state(b, "dead", timeout=30)
        assert EMBED not in {r.model_id for r in a.node_status().routes.routes if r.state == pb.MODEL_STATE_SERVING}
        sh("ip", "-n", ns_a, "link", "set", dev, "up")
        healed = wait_peer_state(a, "alive", timeout=30)
        wait_peer_state(b, "alive", timeout=30)
        print(f"mesh healed {healed:.1f} s after the link came back")
        wait_routes(a, {TINY, EMBED})
        reply = curl_in(ns_a, f"http://127.0.0.1:{a.api_port}/v1/embeddings", {"model": EMBED, "input": "hi"})
        assert "data" in reply and len(reply["data"][0]["embedding"]) == 256, (reply, a.log()[-3000:])
    finally:
        if b is not None:
            b.stop()
        a.stop()


def curl_get(ns: str, url: str, *headers: str) -> tuple[int, dict]:
    """GET from inside a namespace: (HTTP status, JSON body), retrying until it listens."""
    deadline = time.monotonic() + 30
    while True:
        args = [a for h in headers for a in ("-H", h)]
        out = subprocess.run(["ip", "netns", "exec", ns, "curl", "-s", "-m", "10", "-w", "\n%{http_code}", *args, url],
                             capture_output=True, text=True)
        if out.returncode != 7 or time.monotonic() > deadline:
            assert out.returncode == 0, out.stderr
            body, _, code = out.stdout.rpartition("\n")
            return int(code), json.loads(body or "{}")
        time.sleep(0.3)


def test_the_console_keeps_the_secret_on_its_machine_and_both_refuse_rebound_names(
        tmp_path: Path, models: dict[str, Path], namespaces: tuple[str, str, str, str]) -> None:
    ns_a, ns_b, ip_a, _ = namespaces
    a = start_node(tmp_path / "a", [models[TINY]], "--listen-all", wait=False, prefix=("ip", "netns", "exec", ns_a))
    try:
        wait_routes(a, {TINY})
        token = a.node_status().token
        # On the node's machine: the console shows the invite token (once its feed from the
        # node agent is up: 503 until then).
        deadline = time.monotonic() + 20
        while (code_local := curl_get(ns_a, f"http://127.0.0.1:{a.console_port}/api/status"))[0] == 503 \
                and time.monotonic() < deadline:
            time.sleep(0.3)
        code, local = code_local
        assert code == 200 and local["token"] == token
        # From another machine on the LAN (--listen-all): everything but the secret.
        code, remote = curl_get(ns_b, f"http://{ip_a}:{a.console_port}/api/status")
        assert code == 200 and remote["token"] == "" and remote["token_hidden"] is True
        assert remote["node_id"] == local["node_id"] and remote["models"]
        events = subprocess.run(["ip", "netns", "exec", ns_b, "curl", "-s", "-N", "-m", "3",
                                 f"http://{ip_a}:{a.console_port}/api/events"], capture_output=True, text=True)
        assert "event: status" in events.stdout and token not in events.stdout
        # A page whose name was rebound to the node's address: refused by console and proxy.
        for port, path in ((a.console_port, "/api/status"), (a.api_port, "/v1/models")):
            code, body = curl_get(ns_a, f"http://127.0.0.1:{port}{path}", "Host: attacker.example")
            assert code == 403 and body["error"]["code"] == "host_not_allowed"
            code, _ = curl_get(ns_b, f"http://{ip_a}:{port}{path}")
            assert code == 200
    finally:
        a.stop()
