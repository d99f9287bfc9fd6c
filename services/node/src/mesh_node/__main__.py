"""Entry point of the node agent process: `mesh-llm-node --config JSON`.

The launcher (`mesh-llm`) starts it; it can also run alone. Exit codes: 0 after
SIGTERM/SIGINT, 2 for a configuration problem (one line on stderr)."""

from __future__ import annotations

import os

# This process forks children (role processes, llama-server) while gRPC threads
# run; the children exec at once, so gRPC's fork handlers are not needed.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "0")

import argparse
import asyncio
import signal
import sys

from meshcore import event_loop
from meshcore.config import NodeConfig, config_text, from_json
from meshcore.errors import MeshError, find_mesh_error
from meshcore.process import setup_logging

from mesh_node.agent import run


async def main_async(config: NodeConfig) -> None:
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await run(config, stop)


def main() -> None:
    parser = argparse.ArgumentParser(prog="mesh-llm-node", description="Mesh LLM node agent")
    parser.add_argument("--config", required=True, help="NodeConfig as JSON, or - to read it from stdin")
    args = parser.parse_args()
    setup_logging("node")
    try:
        event_loop.run(main_async(from_json(NodeConfig, config_text(args.config))))
    except KeyboardInterrupt:
        pass
    except (MeshError, ExceptionGroup) as exc:
        error = find_mesh_error(exc)
        if error is None:
            raise
        print(f"mesh-llm node: {error}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
