"""Start and inspect a real `mesh-llm` node (launcher, node agent, proxy,
console, llama-server) for the integration tests."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import psutil

from meshcore import grpc_limits
from meshcore.api import node_pb2 as pb
from meshcore.api import node_pb2_grpc
from meshcore.home import Home


_handed_out: set[int] = set()


def free_port() -> int:
    """A free port below the kernel's ephemeral range (32768+), where the ports the
    nodes pick for llama-server and rpc-server come from, so the two never collide
    between choosing a port here and the node binding it. Never the same port twice
    in one test run (two calls in a row once gave --port and --console the same one)."""
    for _ in range(200):
        port = random.randint(20000, 32000)
        if port in _handed_out:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError("no free port in 20000-32000")


def running(pid: int) -> bool:
    """Alive and not a zombie (a process may exit between the two questions)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_json(url: str, body: bytes | None = None, timeout: float = 30,
              headers: dict[str, str] | None = None) -> tuple[int, dict, dict]:
    """(status, json body, headers with lower-case names) without raising on HTTP errors."""
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read() or b"{}"), {k.lower(): v for k, v in resp.headers.items()}
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}"), {k.lower(): v for k, v in err.headers.items()}


@dataclass
class MeshNode:
    home: Path
    api_port: int
    console_port: int
    proc: subprocess.Popen
    log_path: Path
    seen_pids: set[int] = field(default_factory=set)

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def console(self) -> str:
        return f"http://127.0.0.1:{self.console_port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def descendants(self) -> list[psutil.Process]:
        try:
            procs = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []
        self.seen_pids.update(p.pid for p in procs)
        return procs

    def node_status(self) -> pb.NodeStatus:
        with grpc.insecure_channel(Home(self.home).grpc_target, options=grpc_limits.OPTIONS) as channel:
            return node_pb2_grpc.NodeAgentStub(channel).GetStatus(pb.GetStatusRequest(), timeout=5)

    def llama_port(self, model_id: str) -> int:
        return next(m.port for m in self.node_status().models if m.model_id == model_id)

    def llama_pid(self, model_id: str) -> int:
        port = self.llama_port(model_id)
        for p in self.descendants():
            if p.name().startswith("llama-server") and f"{port}" in p.cmdline():
                return p.pid
        raise AssertionError(f"no llama-server for {model_id} on port {port}")

    def child_pid(self, module: str) -> int:
        for p in psutil.Process(self.proc.pid).children():
            if module in p.cmdline():
                return p.pid
        raise AssertionError(f"no child process running {module}")

    def wait_serving(self, models: list[str], timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"mesh-llm exited with {self.proc.returncode}:\n{self.log()[-3000:]}")
            try:
                status, body, _ = http_json(f"{self.api}/v1/models", timeout=2)
                served = {m["id"] for m in body.get("data", []) if m.get("status") == "serving"}
                if status == 200 and set(models) <= served and http_json(f"{self.console}/api/status")[0] == 200:
                    self.descendants()
                    return
            except (OSError, ValueError):
                pass
            time.sleep(0.2)
        raise AssertionError(f"models {models} not serving after {timeout} s:\n{self.log()[-3000:]}")

    def wait_token(self, timeout: float = 60) -> str:
        """The invite token, once the node agent answers."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.node_status().token
            except grpc.RpcError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise AssertionError(f"node agent not answering:\n{self.log()[-2000:]}") from None
                time.sleep(0.1)

    def kill_hard(self) -> None:
        """SIGKILL every process of the node at once, as if the machine lost power."""
        procs = [psutil.Process(self.proc.pid), *self.descendants()]
        for proc in procs:
            proc.send_signal(signal.SIGSTOP)
        for proc in procs:
            proc.kill()
        self.proc.wait()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 40) -> int:
        self.descendants()
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError(f"mesh-llm did not stop within {timeout} s after {sig}:\n{self.log()[-3000:]}")

    def leftovers(self, timeout: float = 15) -> list[int]:
        """Pids of this node's processes still alive after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            alive = [pid for pid in self.seen_pids if running(pid)]
            if not alive or time.monotonic() > deadline:
                return alive
            time.sleep(0.2)


def wait_until(check, timeout: float, step: float = 0.1) -> float:  # noqa: ANN001 - a predicate
    """Seconds until check() is true; fails after `timeout`."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"not true after {timeout} s")
        time.sleep(step)
    return time.monotonic() - started


SAME_KERNELS = {"LLAMA_ARG_REPACK": "false"}
"""Environment for nodes whose tokens are compared across solo and split. ggml's CPU
backend repacks Q4_0/Q4_K weights for its own llama-server (AVX2 and AVX-512 kernels
over interleaved blocks), but an rpc-server's buffers are never repacked: a split's
worker layers then run other kernels than solo's, which round differently, and on an
AVX2 machine (haswell variant) the greedy tokens of a Q4_K_M split drift from solo's
after a few tokens. Not a broken split (a wrong layer or weight diverges at once);
to compare exactly, solo and split are run with repacking off (`LLAMA_ARG_REPACK`,
llama.cpp's own switch). docs/models.md says what users see."""


def start_node(tmp: Path, models: list[Path], *extra: str, env: dict[str, str] | None = None,
               wait: bool = True, prefix: tuple[str, ...] = ()) -> MeshNode:
    """Start `mesh-llm` (under `prefix`, e.g. `ip netns exec NS`) with its own home and ports."""
    home = tmp / "home"
    api_port, console_port = free_port(), free_port()
    tmp.mkdir(parents=True, exist_ok=True)
    log_path = tmp / "mesh-llm.log"
    argv = [*prefix, sys.executable, "-m", "mesh_cli", "--home", str(home), "--port", str(api_port),
            "--console", str(console_port), "--ctx-size", "4096", "--parallel", "2", *extra]
    for m in models:
        argv += ["--model", str(m)]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env={**os.environ, **(env or {})})
    node = MeshNode(home, api_port, console_port, proc, log_path)
    if wait:
        node.wait_serving([m.stem for m in models])
    return node


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mesh_cli", *args], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def assert_one_line_error(result: subprocess.CompletedProcess[str], words: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("mesh-llm")]
    assert len(errors) == 1 and words in errors[0], result.stderr


GREEDY_PROMPTS = ("The mesh", "Hello there, how are", "1 2 3 4")


def greedy(api: str, model: str, tokens: int = 16, prompts: tuple[str, ...] = GREEDY_PROMPTS) -> list[str]:
    """Greedy completions of a few prompts: the tokens a split must reproduce exactly.
    No prompt cache: a cached prompt re-evaluates its last token alone, through other
    kernels than a whole prompt (quantized GEMV vs GEMM), which can flip a near-tie."""
    out = []
    for prompt in prompts:
        status, body, _ = http_json(f"{api}/v1/completions", json.dumps(
            {"model": model, "prompt": prompt, "max_tokens": tokens, "temperature": 0, "ignore_eos": True,
             "cache_prompt": False}).encode(), timeout=120)
        assert status == 200, body
        assert body["usage"]["completion_tokens"] == tokens
        out.append(body["choices"][0]["text"])
    return out
