"""The `mesh-llm` command line."""

from __future__ import annotations

import argparse

from meshcore.home import default_home
from meshcore.models import DEFAULT_MODEL


def port_number(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 < value < 65536:
        raise argparse.ArgumentTypeError(f"{value} is not a port number (1-65535)")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError("must be above 0")
    return value


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError("must be above 0")
    return value


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mesh-llm",
        description="Pool GPUs across machines and serve LLMs: starts a node (node agent, "
                    "OpenAI-compatible API, web console) on this machine.",
        epilog=f"Example: mesh-llm --model {DEFAULT_MODEL}")
    p.add_argument("--model", action="append", default=[], metavar="NAME|PATH",
                   help="a GGUF file, or a model name found in the models folders; may repeat")
    p.add_argument("--port", type=port_number, default=9337, help="API port (default 9337)")
    p.add_argument("--console", type=port_number, default=3131, help="console port (default 3131)")
    p.add_argument("--home", default=str(default_home()),
                   help="node home: identity, mesh secret, logs (default ~/.mesh-llm)")
    p.add_argument("--listen-all", action="store_true",
                   help="serve the API and console on all interfaces, not only 127.0.0.1")
    p.add_argument("--max-vram", type=positive_float, metavar="GB", help="cap the memory this node offers")
    p.add_argument("--device", metavar="DEV", help="llama.cpp device to use (e.g. CUDA0, Metal, CPU)")
    p.add_argument("--bind-port", type=port_number, metavar="UDP", help="UDP port of the mesh endpoint")
    p.add_argument("--llama-bin-dir", metavar="DIR", help="folder with llama-server (else the built one)")
    p.add_argument("--ctx-size", type=positive_int, default=4096, help="context tokens per request slot")
    p.add_argument("--parallel", type=positive_int, default=4, help="concurrent requests per model")
    return p
