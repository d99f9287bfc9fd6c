"""`mesh-llm`: the command users type."""

from __future__ import annotations

import os

# This process forks children (role processes, llama-server) while gRPC threads
# run; the children exec at once, so gRPC's fork handlers are not needed.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "0")

import asyncio
import signal
import sys

from meshcore.errors import MeshError, find_mesh_error
from meshcore.process import setup_logging

from mesh_cli.args import parser
from mesh_cli.commands import COMMANDS, run_command
from mesh_cli.idle import is_idle, run_idle
from mesh_cli.launcher import fetch_models, launch


JOIN_ENV = "MESH_LLM_JOIN"  # invite tokens, space-separated: --join without the secret in argv


def hide_join_tokens(argv: list[str]) -> None:
    """`--join TOKEN` puts the mesh's secret in this process's command line, which any
    local user can read (`ps`) for as long as the node runs. Run again at once with the
    tokens moved to the environment (readable by this user only), so the long-lived
    process's command line has none (issue 28, item 15)."""
    tokens, rest, i = [], [], 0
    while i < len(argv):
        if argv[i] == "--join" and i + 1 < len(argv):
            tokens.append(argv[i + 1])
            i += 2
            continue
        if argv[i].startswith("--join="):
            tokens.append(argv[i].split("=", 1)[1])
        else:
            rest.append(argv[i])
        i += 1
    if tokens:
        env = {**os.environ, JOIN_ENV: " ".join([*os.environ.get(JOIN_ENV, "").split(), *tokens])}
        os.execve(sys.executable, [sys.executable, "-m", "mesh_cli", *rest], env)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "directory":  # the public directory service, as its own process image
        os.execv(sys.executable, [sys.executable, "-m", "mesh_directory", *argv[1:]])
    if argv and argv[0] in COMMANDS:
        sys.exit(run_command(argv))
    hide_join_tokens(argv)
    args = parser().parse_args(argv)
    args.join = [*args.join, *os.environ.pop(JOIN_ENV, "").split()]
    setup_logging("mesh-llm")
    if is_idle(args):
        sys.exit(run_idle(args))
    # SIGTERM before the launcher installs its own handler (e.g. while waiting for
    # --join-file) ends the command; in a container it is PID 1, where the default is to ignore it.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        fetch_models(args)
        code = asyncio.run(launch(args))
    except (MeshError, ExceptionGroup) as exc:
        error = find_mesh_error(exc)
        if error is None:
            raise
        print(f"mesh-llm: {error}", file=sys.stderr)
        code = 2
    except KeyboardInterrupt:
        code = 130
    sys.exit(code)


if __name__ == "__main__":
    main()
