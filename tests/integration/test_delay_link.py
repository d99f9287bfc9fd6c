"""The user-space delay link (bench/relay/delay_link.py) between two real network
namespaces: datagrams cross whole and in order, each way takes the delay, and TCP works
through it too (what the WAN benchmark relies on for QUIC and for stock RPC)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
ECHO = """
import socket, sys
kind = socket.SOCK_DGRAM if sys.argv[1] == "udp" else socket.SOCK_STREAM
s = socket.socket(socket.AF_INET, kind); s.bind(("10.203.{net}.2", 9999))
if kind == socket.SOCK_DGRAM:
    while True:
        data, addr = s.recvfrom(65536); s.sendto(data, addr)
s.listen(); c, _ = s.accept()
while (data := c.recv(65536)): c.sendall(data)
"""
CLIENT = """
import json, socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(5)
got, rtts = [], []
for i in range(20):
    payload = bytes([i]) * (50 * i + 1)
    t = time.monotonic(); s.sendto(payload, ("10.203.{net}.2", 9999))
    data, _ = s.recvfrom(65536); rtts.append(time.monotonic() - t); got.append(data == payload)
t = time.monotonic()
for i in range(10):
    s.sendto(bytes([i]) * 1000, ("10.203.{net}.2", 9999))
order = [s.recvfrom(65536)[0][0] for _ in range(10)]
tcp = socket.create_connection(("10.203.{net}.2", 9998), timeout=5); blob = bytes(range(256)) * 4000
tcp.sendall(blob); back = b""
while len(back) < len(blob): back += tcp.recv(65536)
print(json.dumps({{"whole": all(got), "rtt_min": min(rtts), "order": order, "tcp": back == blob}}))
"""


def sh(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True, text=True)


@pytest.fixture
def namespaces() -> Iterator[tuple[str, str, int]]:
    tag = os.getpid() % 10000
    a, b = f"dla{tag}", f"dlb{tag}"
    try:
        sh("ip", "netns", "add", a)
        sh("ip", "netns", "add", b)
    except (subprocess.CalledProcessError, FileNotFoundError) as exc:
        pytest.fail(f"the delay link needs network namespaces (root, iproute2): {getattr(exc, 'stderr', exc)}")
    try:
        yield a, b, tag % 250
    finally:
        for ns in (a, b):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def test_datagrams_cross_whole_in_order_with_the_delay_and_tcp_works(namespaces: tuple[str, str, int]) -> None:
    a, b, net = namespaces
    link = subprocess.Popen([sys.executable, "-m", "relay.delay_link", "--ns-a", a, "--ns-b", b, "--delay-ms", "15",
                             "--net", f"10.203.{net}"], cwd=BENCH, env={**os.environ, "PYTHONPATH": str(BENCH)},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    servers = []
    try:
        assert link.stdout.readline().strip() == "ready", link.stdout.read()
        for kind, port in (("udp", 9999), ("tcp", 9998)):
            servers.append(subprocess.Popen(["ip", "netns", "exec", b, sys.executable, "-c",
                                             ECHO.format(net=net).replace("9999", str(port)), kind]))
        time.sleep(0.5)
        out = subprocess.run(["ip", "netns", "exec", a, sys.executable, "-c", CLIENT.format(net=net)],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        import json
        result = json.loads(out.stdout)
        assert result["whole"] and result["tcp"]
        assert result["order"] == list(range(10))
        assert result["rtt_min"] >= 0.030  # 15 ms each way: the delay is applied
    finally:
        for p in servers:
            p.kill()
        link.kill()
