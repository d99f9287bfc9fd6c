"""The benchmarks' reference processes (stock `ggml-rpc-server`, `llama-server`) started
and waited for without ever waiting on a process that is gone.

`start_rpc_server` returns once its port accepts connections, so the `llama-server --rpc`
started next finds it (on a busy machine it used not to be listening yet, llama-server
exited, and the wait went on for 300 s: issue 33). Every wait stops at once when the
child exits, with its exit code and the last lines of its log.

`ns`: run in that network namespace (`ip netns exec`), and check readiness from inside it.
"""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path
from typing import Callable, Sequence


class ChildFailed(RuntimeError):
    """A reference process exited, or was not ready in time (its log's last lines in the message)."""


def in_ns(ns: str | None, *cmd: str) -> list[str]:
    return ["ip", "netns", "exec", ns, *cmd] if ns else list(cmd)


def log_tail(log: Path, lines: int = 6) -> str:
    try:
        text = log.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    return " | ".join(text[-lines:]) or "(empty log)"


def wait_ready(ready: Callable[[], bool], proc: subprocess.Popen, log: Path, what: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise ChildFailed(f"{what} exited with code {proc.returncode} before it was ready: {log_tail(log)}")
        if ready():
            return
        if time.monotonic() > deadline:
            raise ChildFailed(f"{what} was not ready within {timeout:.0f} s: {log_tail(log)}")
        time.sleep(0.05)


def port_accepts(host: str, port: int, ns: str | None = None) -> Callable[[], bool]:
    if ns:
        probe = in_ns(ns, "bash", "-c", f"exec 3<>/dev/tcp/{host}/{port}")
        return lambda: subprocess.run(probe, capture_output=True).returncode == 0

    def check() -> bool:
        try:
            with socket.create_connection((host, port), timeout=1):
                return True
        except OSError:
            return False
    return check


def http_healthy(port: int, ns: str | None = None) -> Callable[[], bool]:
    probe = in_ns(ns, "curl", "-sf", "-m", "2", f"http://127.0.0.1:{port}/health")
    return lambda: subprocess.run(probe, capture_output=True).returncode == 0


def start(cmd: Sequence[str], log: Path, ns: str | None = None) -> subprocess.Popen:
    return subprocess.Popen(in_ns(ns, *cmd), stdout=open(log, "wb"), stderr=subprocess.STDOUT)


def start_rpc_server(bin_dir: Path, host: str, port: int, log: Path, ns: str | None = None,
                     threads: int | None = 2, timeout: float = 60) -> subprocess.Popen:
    """A stock ggml-rpc-server, returned once its port accepts connections (threads None:
    its own default)."""
    proc = start([str(bin_dir / "ggml-rpc-server"), "-H", host, "-p", str(port),
                  *(["-t", str(threads)] if threads else [])], log, ns)
    try:
        wait_ready(port_accepts(host, port, ns), proc, log, "the stock rpc-server", timeout)
    except BaseException:
        stop(proc)
        raise
    return proc


def start_llama_server(bin_dir: Path, model: Path, port: int, args: Sequence[str], log: Path,
                       ns: str | None = None, timeout: float = 300) -> subprocess.Popen:
    """A llama-server on 127.0.0.1:`port`, returned once /health answers."""
    proc = start([str(bin_dir / "llama-server"), "-m", str(model), "--host", "127.0.0.1", "--port", str(port),
                  "-np", "1", "--no-webui", *args], log, ns)
    try:
        wait_ready(http_healthy(port, ns), proc, log, "llama-server", timeout)
    except BaseException:
        stop(proc)
        raise
    return proc


def stop(*procs: subprocess.Popen | None) -> None:
    for proc in procs:
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
