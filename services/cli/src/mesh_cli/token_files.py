"""Passing the invite token through a file, for scripts and containers.

`--token-file PATH` (on a node): the launcher writes the mesh's invite token to
PATH once the node is up (mode 0600, replaced atomically) and rewrites it when the
token changes (rotate-key, the machine's addresses changed).
`--join-file PATH` (on a joiner): the launcher reads the token from PATH, waiting
for the file to appear. docker-compose.yml uses the pair so a test mesh forms
without anyone copying a token by hand.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

import grpc

from meshcore import grpc_limits
from meshcore.api import node_pb2 as pb
from meshcore.api import node_pb2_grpc
from meshcore.errors import ConfigError
from meshcore.home import Home
from meshcore.token import InviteToken

JOIN_FILE_WAIT_S = 600.0
TOKEN_CHECK_S = 5.0


def read_join_file(path: Path, wait_s: float = JOIN_FILE_WAIT_S) -> str:
    """The token in `path`, waiting up to `wait_s` for it to appear (saying so every 10 s)."""
    deadline, next_notice = time.monotonic() + wait_s, 0.0
    while True:
        try:
            text = path.read_text().strip()
        except FileNotFoundError:
            text = ""
        except OSError as exc:
            raise ConfigError(f"cannot read the invite token file {path}: {exc.strerror}") from None
        if text:
            InviteToken.decode(text)  # a bad file is a one-line error
            return text
        now = time.monotonic()
        if now > deadline:
            raise ConfigError(f"no invite token appeared in {path} within {wait_s:.0f} s")
        if now >= next_notice:
            print(f"mesh-llm: waiting for an invite token in {path}", file=sys.stderr, flush=True)
            next_notice = now + 10
        time.sleep(0.5)


def write_token_file(path: Path, token: str) -> None:
    """0600, atomically, and never through a link someone else planted: a fresh file
    (O_EXCL, a random name) renamed over PATH (rename replaces a link, not its target)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(token + "\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


async def keep_token_file(home: Home, path: Path, token: str) -> None:
    """Write the token now and again whenever the node's token changes."""
    write_token_file(path, token)
    while True:
        await asyncio.sleep(TOKEN_CHECK_S)
        try:
            async with grpc.aio.insecure_channel(home.grpc_target, options=grpc_limits.OPTIONS) as channel:
                status = await node_pb2_grpc.NodeAgentStub(channel).GetStatus(pb.GetStatusRequest(), timeout=5)
        except grpc.aio.AioRpcError:
            continue  # the node agent is restarting; the supervisor reports it
        if status.token and status.token != token:
            token = status.token
            write_token_file(path, token)
