"""Starts the role processes and keeps them running.

Each role runs as `python -m <package> --config -` (the JSON config on stdin, never
in argv: it can hold the mesh secret) in its own session (so a
terminal's Ctrl-C reaches only the launcher, which then stops them in order)
and with PR_SET_PDEATHSIG (so a hard-killed launcher leaves no orphans). A
child that exits with code 2 reported a configuration problem (a port in use):
the launcher stops. Any other exit is reported in words and the child is
restarted, at most MAX_RESTARTS times in RESTART_WINDOW_S; then the launcher
exits non-zero.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import time
from dataclasses import dataclass, field

from meshcore.process import die_with_parent

log = logging.getLogger(__name__)
MAX_RESTARTS = 5
RESTART_WINDOW_S = 300.0
CONFIG_ERROR = 2


class GiveUp(Exception):
    """A child cannot be kept running; str() says which and why."""


@dataclass
class Child:
    name: str        # role in words: "node agent", "API proxy", "console"
    module: str      # python -m target
    config_json: str
    proc: asyncio.subprocess.Process | None = None
    restarts: list[float] = field(default_factory=list)

    async def start(self) -> None:
        # The config goes through stdin, not argv: it holds the mesh secret (join tokens),
        # and any user of the machine can read any process's argv (`ps`).
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", self.module, "--config", "-",
            stdin=asyncio.subprocess.PIPE, start_new_session=True, preexec_fn=die_with_parent)
        assert self.proc.stdin is not None
        self.proc.stdin.write(self.config_json.encode())
        with contextlib.suppress(ConnectionError):
            await self.proc.stdin.drain()
        self.proc.stdin.close()

    async def wait(self) -> int:
        assert self.proc is not None
        return await self.proc.wait()

    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def stop(self, grace: float) -> None:
        if not self.running():
            return
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(grace):
                await self.proc.wait()
        except TimeoutError:
            log.warning("the %s did not stop within %.0f s; killing it", self.name, grace)
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            await self.proc.wait()


def describe_exit(code: int) -> str:
    return f"was killed by signal {signal.Signals(-code).name}" if code < 0 else f"exited with code {code}"


async def keep_running(child: Child) -> None:
    """Restart `child` whenever it exits, until it fails too often (GiveUp)."""
    while True:
        code = await child.wait()
        if code == CONFIG_ERROR:
            raise GiveUp(f"the {child.name} could not start (see the message above)")
        now = time.monotonic()
        child.restarts = [t for t in child.restarts if now - t < RESTART_WINDOW_S] + [now]
        if len(child.restarts) > MAX_RESTARTS:
            raise GiveUp(f"the {child.name} {describe_exit(code)} and failed {MAX_RESTARTS} times "
                         f"in {RESTART_WINDOW_S:.0f} s; giving up")
        log.warning("the %s %s unexpectedly; restarting it (%d of %d)", child.name, describe_exit(code),
                    len(child.restarts), MAX_RESTARTS)
        await asyncio.sleep(min(5.0, 0.5 * len(child.restarts)))
        await child.start()
