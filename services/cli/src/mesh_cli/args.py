"""The `mesh-llm` command line."""

from __future__ import annotations

import argparse

from meshcore.home import default_home
from meshcore.models import DEFAULT_MODEL


def number(kind: type, low: float, high: float, what: str):  # noqa: ANN201 - argparse type factory
    """An argparse type: a `kind` between low (exclusive) and high (inclusive)."""
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if not low < value <= high:
            raise argparse.ArgumentTypeError(f"{value} is out of range for {what}")
        return value
    return parse


port_number = number(int, 0, 65535, "a port number (1-65535)")
positive_float = number(float, 0, float("inf"), "a number above 0")
positive_int = number(int, 0, 1 << 30, "a whole number above 0")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mesh-llm",
        description="Pool GPUs across machines and serve LLMs: starts a node (node agent, "
                    "OpenAI-compatible API, web console) on this machine.",
        epilog=f"Example: mesh-llm --model {DEFAULT_MODEL}")
    p.add_argument("--model", action="append", default=[], metavar="NAME|PATH",
                   help="a GGUF file, or a model name found in the models folders; may repeat")
    p.add_argument("--draft", metavar="NAME|PATH",
                   help="a small model of the same family run beside the model for speculative decoding "
                        "(default: the catalog's draft for it, when downloaded)")
    p.add_argument("--no-draft", action="store_true", help="no speculative decoding, even with a draft on disk")
    p.add_argument("--join", action="append", default=[], metavar="TOKEN",
                   help="join the mesh of this invite token; may repeat (any live member). The token "
                        "is moved out of the command line at once (others on this machine could read it "
                        "there); or put it in MESH_LLM_JOIN, or a file (--join-file)")
    p.add_argument("--join-file", metavar="PATH",
                   help="join the mesh of the invite token in this file (waits for it to appear)")
    p.add_argument("--token-file", metavar="PATH",
                   help="write this mesh's invite token to this file (0600), and again when it changes")
    p.add_argument("--client", action="store_true",
                   help="join as an API-only client: proxy and console, no models, never chosen to serve")
    p.add_argument("--auto", action="store_true",
                   help="join the best public mesh from the directory (with --mesh-name: that mesh, "
                        "created and published if it does not exist yet)")
    p.add_argument("--publish", action="store_true", help="list this mesh in the public directory")
    p.add_argument("--mesh-name", metavar="NAME", help="name the mesh (implies --publish)")
    p.add_argument("--region", default="", metavar="REGION", help="region tag for the directory listing")
    p.add_argument("--max-clients", type=number(int, -1, 1 << 30, "a whole number"), default=0, metavar="N",
                   help="delist the mesh while N clients are connected")
    p.add_argument("--directory", metavar="URL", help="directory to use (default $MESH_LLM_DIRECTORY or the public one)")
    p.add_argument("--port", type=port_number, default=9337, help="API port (default 9337)")
    p.add_argument("--console", type=port_number, default=3131, help="console port (default 3131)")
    p.add_argument("--home", default=str(default_home()),
                   help="node home: identity, mesh secret, logs (default ~/.mesh-llm)")
    p.add_argument("--cors-origin", action="append", default=[], metavar="ORIGIN",
                   help="let web pages from ORIGIN (https://app.example, or * for any) call the API from a "
                        "browser; pages on this machine's localhost always may; may repeat")
    p.add_argument("--listen-all", action="store_true",
                   help="serve the API and console on all interfaces, not only 127.0.0.1")
    p.add_argument("--max-vram", type=positive_float, metavar="GB", help="cap the memory this node offers")
    p.add_argument("--split", action="store_true", help="split models across nodes even when one node could hold them")
    p.add_argument("--split-with", metavar="WHO",
                   help="whom this node shares a split with: mesh (any member; the default on a private "
                        "mesh), owner (nodes with this node's owner key; the default on a public mesh), "
                        "or owner/node ids separated by commas")
    p.add_argument("--owner-key", metavar="PATH",
                   help="owner key file: nodes with the same one are one owner (default: owner.key in the "
                        "home; copy it to your other machines)")
    p.add_argument("--device", metavar="DEV",
                   help="where this node computes: CPU (no accelerator), or llama.cpp device names as "
                        "`llama-server --list-devices` prints them: CUDA0, CUDA0,CUDA1, Vulkan0, Metal "
                        "(default: every accelerator found, else the CPU)")
    p.add_argument("--bind-port", type=port_number, metavar="UDP", help="UDP port of the mesh endpoint; the split data path listens on the same "
                        "TCP port (forward both)")
    p.add_argument("--llama-bin-dir", metavar="DIR", help="folder with llama-server (else the built one)")
    p.add_argument("--hot-rpm", type=positive_float, default=10.0, metavar="N",
                   help="rebalancing: a model with N requests a minute per server (and 3x the others') is hot: "
                        "a standby with its file loads one more copy (default 10)")
    p.add_argument("--min-serve", type=positive_float, default=120.0, metavar="SECONDS",
                   help="rebalancing: a copy loaded for the mesh serves at least this long (default 120)")
    p.add_argument("--ctx-size", type=positive_int, default=4096, help="context tokens per request slot")
    p.add_argument("--parallel", type=positive_int, default=4, help="concurrent requests per model")
    p.add_argument("--threads", type=positive_int, metavar="N",
                   help="CPU threads llama-server and rpc-server compute with (default: llama.cpp's choice)")
    return p
