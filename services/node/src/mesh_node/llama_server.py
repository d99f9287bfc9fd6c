"""`llama-server` and `ggml-rpc-server` processes as async context managers.

Entering starts it bound to 127.0.0.1 on the given port (never another address)
with its output going to a log file in the node's home; `wait_healthy()` polls its
/health endpoint (llama.cpp offers no other readiness signal) until it answers 200;
leaving sends SIGTERM, then SIGKILL after a grace period. If the process exits
early, LlamaServerFailed carries the last lines of its log as the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import signal
from pathlib import Path
from typing import Sequence

from meshcore.llama_bin import NO_ACCELERATOR, device_args
from meshcore.process import die_with_parent

from mesh_node.weights_cache import HOST_HASH_THRESHOLD

log = logging.getLogger(__name__)
STOP_GRACE_S = 10.0
LOG_PREFIX = re.compile(r"^\s*\d+\.\d+\.\d+\.\d+ [A-Z] \S+\s+")  # "0.00.007.200 E srv  "


def text_start(lines: list[str]) -> int:
    """Index just after the last "$ command" line we wrote: this run's output."""
    for i in range(len(lines) - 1, -1, -1):
        if lines[i].startswith("$ "):
            return i + 1
    return 0


class LlamaServerFailed(Exception):
    """llama-server exited or never became healthy; str() says why in words."""


async def http_status(host: str, port: int, path: str, timeout: float = 2.0) -> int | None:
    """The status code of a GET, or None if nothing answers."""
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port)
            try:
                writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
                await writer.drain()
                status_line = await reader.readline()
            finally:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
        parts = status_line.split()
        return int(parts[1]) if len(parts) >= 2 and parts[1].isdigit() else None
    except (OSError, TimeoutError):
        return None


DRAFTED, ACCEPTED = "llamacpp:spec_decode_num_draft_tokens_total", "llamacpp:spec_decode_num_accepted_tokens_total"


async def draft_counts(host: str, port: int, timeout: float = 2.0) -> tuple[float, float] | None:
    """(tokens drafted, tokens accepted) from llama-server's /metrics (it runs with
    --metrics when it has a draft), or None if it does not say."""
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port)
            try:
                writer.write(f"GET /metrics HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
                text = (await reader.read(1 << 20)).decode("utf-8", "replace")
            finally:
                writer.close()
    except (OSError, TimeoutError):
        return None
    values = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in (DRAFTED, ACCEPTED):
            with contextlib.suppress(ValueError):
                values[name] = float(value)
    return (values[DRAFTED], values[ACCEPTED]) if len(values) == 2 else None


class ChildServer:
    """A llama.cpp server process bound to 127.0.0.1:port, output to a log file."""

    name = "server"

    def __init__(self, cmd: list[str], port: int, log_path: Path, env: dict[str, str] | None = None) -> None:
        self.cmd = cmd
        self.port = port
        self.log_path = log_path
        self.env = env
        self.proc: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> "ChildServer":
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as out:
            out.write(("\n$ " + " ".join(self.cmd) + "\n").encode())
            out.flush()
            self.proc = await asyncio.create_subprocess_exec(
                *self.cmd, stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=out,
                preexec_fn=die_with_parent, env={**os.environ, **(self.env or {})})
        return self

    async def ready(self) -> bool:
        return await http_status("127.0.0.1", self.port, "/health") == 200

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    async def wait_healthy(self, timeout: float) -> None:
        assert self.proc is not None
        async with asyncio.timeout(timeout):
            while True:
                if self.proc.returncode is not None:
                    raise LlamaServerFailed(self.exit_reason(self.proc.returncode))
                if await self.ready():
                    return
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.1):
                        await self.proc.wait()

    async def wait_exit(self) -> int:
        assert self.proc is not None
        return await self.proc.wait()

    def exit_reason(self, code: int) -> str:
        how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
        tail = self.log_tail()
        return f"{self.name} {how}" + (f": {tail}" if tail else "")

    def log_tail(self, lines: int = 2) -> str:
        """llama-server's last error lines (or last lines), without its timestamps."""
        try:
            text = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        text = [LOG_PREFIX.sub("", ln).strip() for ln in text[text_start(text):]]
        errors = [ln for ln in text if "error" in ln.lower() or "failed" in ln.lower()]
        return " | ".join(dict.fromkeys((errors or text)[:lines] if errors else text[-lines:]))

    async def stop(self) -> None:
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(STOP_GRACE_S):
                await proc.wait()
        except TimeoutError:
            log.warning("llama-server (pid %s) ignored SIGTERM for %.0f s; killing it", proc.pid, STOP_GRACE_S)
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()


class LlamaServer(ChildServer):
    name = "llama-server"

    def __init__(self, binary: Path, model_path: Path, model_id: str, port: int, log_path: Path,
                 ctx_size: int, parallel: int, device: str | None = None,
                 extra_args: Sequence[str] = (), rpc_devices: int = 0, threads: int = 0) -> None:
        """`rpc_devices`: how many --rpc workers a split host has (one device each,
        named RPC0, RPC1, ... by llama.cpp), so that --device keeps them in use."""
        cmd = [str(binary), "--model", str(model_path), "--alias", model_id,
               "--host", "127.0.0.1", "--port", str(port),
               "--ctx-size", str(ctx_size), "--parallel", str(parallel), "--no-webui"]
        if threads:
            cmd += ["--threads", str(threads)]
        if not (rpc_devices and device in NO_ACCELERATOR):  # a CPU split host: --tensor-split leaves GPUs out
            cmd += device_args(device, [f"RPC{i}" for i in range(rpc_devices)])
        # A split host offers every weight tensor by hash: workers read them from their own files
        # (mesh_node.weights_cache; a stock build ignores it and offers only those over 10 MiB).
        env = {"GGML_RPC_HASH_THRESHOLD": str(HOST_HASH_THRESHOLD)} if rpc_devices else None
        super().__init__(cmd + list(extra_args), port, log_path, env=env)


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity: taskset, a container's cpuset)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        return os.cpu_count() or 1


class RpcServer(ChildServer):
    """ggml-rpc-server with its tensor cache (-c) in `cache_root`/rpc."""

    name = "rpc-server"

    def __init__(self, binary: Path, port: int, log_path: Path, cache_root: Path, device: str | None = None,
                 threads: int = 0) -> None:
        cmd = [str(binary), "--host", "127.0.0.1", "--port", str(port), "--cache",
               "--threads", str(threads or usable_cpus())]
        if device:
            cmd += ["--device", "CPU" if device in NO_ACCELERATOR else device]
        super().__init__(cmd, port, log_path, env={"LLAMA_CACHE": str(cache_root)})

    async def ready(self) -> bool:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", self.port)
        except OSError:
            return False
        writer.close()
        return True
