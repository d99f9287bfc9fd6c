"""Downloading a catalog model the mesh asked this node to serve: `mesh-llm download
NAME` (mesh_cli.download: resumable, checked against the hub's sha256) in a child
process, its progress lines relayed to this node's log. A node without the
downloader (a node-only install) offers nothing to fetch (`can_fetch_here`)."""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import re
import sys
import time
from pathlib import Path

from meshcore import catalog
from meshcore.errors import MeshError

log = logging.getLogger(__name__)
PROGRESS_S = 10.0  # how often the download's progress goes to the log


class FetchFailed(MeshError):
    """The download did not finish (its last words say why)."""


def can_fetch_here() -> bool:
    return importlib.util.find_spec("mesh_cli") is not None and importlib.util.find_spec("huggingface_hub") is not None


async def fetch(entry: catalog.CatalogEntry) -> Path:
    """Download `entry` into the models folder; the path llama.cpp opens."""
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "mesh_cli", "download", entry.name,
                                                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.STDOUT)
    last, logged, pending = "", 0.0, b""
    assert proc.stdout is not None
    try:
        while chunk := await proc.stdout.read(65536):  # progress bars end lines with \r: no readline
            *lines, pending = re.split(rb"[\r\n]", pending + chunk)
            lines = [t for t in (x.decode(errors="replace").strip() for x in lines) if t]
            if lines:
                last = lines[-1]
                if time.monotonic() - logged >= PROGRESS_S:
                    logged = time.monotonic()
                    log.info("download %s: %s", entry.name, last)
        last = pending.decode(errors="replace").strip() or last
        code = await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    path = catalog.on_disk(entry)
    if code != 0 or path is None:
        raise FetchFailed(last.removeprefix("mesh-llm: ") or f"mesh-llm download exited with {code}")
    return path
