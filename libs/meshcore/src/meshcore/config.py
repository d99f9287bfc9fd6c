"""Configuration records for each role, built by the launcher and passed to each
process as one JSON argument (`--config`). Typed, frozen, one comment a field."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, TypeVar

from meshcore.api_paths import MAX_BODY_BYTES

T = TypeVar("T")


@dataclass(frozen=True)
class NodeConfig:
    home: str                                   # the node's home folder (identity, secret, socket)
    models: tuple[str, ...] = ()                # resolved GGUF paths to serve
    max_vram_gb: float | None = None            # cap on the memory this node advertises
    device: str | None = None                   # llama.cpp device (passed as llama-server --device)
    bind_port: int = 0                          # UDP port of the mesh endpoint; 0 = random
    listen_all: bool = False                    # advertise all interfaces, not only loopback
    llama_bin_dir: str | None = None            # folder with llama-server / ggml-rpc-server
    ctx_size: int = 4096                        # llama-server context size per model
    parallel: int = 4                           # llama-server slots (concurrent requests) per model
    threads: int = 0                            # compute threads of llama-server and rpc-server (0: llama.cpp's
                                                # default for llama-server, this process's CPUs for rpc-server)
    extra_llama_args: tuple[str, ...] = ()      # appended to every llama-server command line
    join: tuple[str, ...] = ()                  # invite tokens of meshes to join (any live member)
    mesh_name: str = ""                         # a name for the mesh (shown in the console)
    split: bool = False                         # split models across nodes even when they fit one
    publish: bool = False                       # list this mesh in the directory
    directory: str = ""                         # directory URL (publishing, buddy mode)
    region: str = ""                            # region tag of the listing
    max_clients: int = 0                        # delist while this many clients are connected (0: never)
    buddy: bool = False                         # --auto --mesh-name created this mesh: merge into an older
                                                # mesh of the same name if one appears
    split_with: tuple[str, ...] = ("mesh",)     # split allow-list (meshcore.split_policy); the launcher
                                                # makes it ("owner",) on a public mesh unless told
    owner_key: str = ""                         # owner key file (default: owner.key in the home)
    drafts: tuple[tuple[str, str], ...] = ()    # (model path, draft model path): speculative decoding
    auto_serve: bool = False                    # --auto: serving nothing, serve what the mesh wants most
    hot_rpm: float = 10.0                       # rebalancing: demand per server (req/min) that is hot
    hot_imbalance: float = 3.0                  # ... and this many times the other models' (mesh_node.rebalance)
    min_serve_s: float = 120.0                  # a promoted copy serves at least this long


@dataclass(frozen=True)
class ProxyConfig:
    home: str                                   # to find the node agent's socket
    port: int = 9337                            # HTTP port of the OpenAI-compatible API
    listen_all: bool = False                    # bind 0.0.0.0 instead of 127.0.0.1
    max_body_bytes: int = MAX_BODY_BYTES        # larger request bodies get 413 (meshcore.api_paths)
    join: tuple[str, ...] = ()                  # client-only mode: invite tokens; the proxy joins itself
    cors_origins: tuple[str, ...] = ()          # web origins allowed besides this machine's loopback
                                                # ("*": any; never with credentials; mesh_proxy.cors)


@dataclass(frozen=True)
class ConsoleConfig:
    home: str                                   # to find the node agent's socket
    port: int = 3131                            # HTTP port of the console
    api_port: int = 9337                        # where the chat sends requests (the proxy)
    listen_all: bool = False                    # bind 0.0.0.0 instead of 127.0.0.1
    keepalive_s: float = 15.0                   # SSE keepalive comment interval


def to_json(config: Any) -> str:
    return json.dumps(dataclasses.asdict(config))


def config_text(arg: str) -> str:
    """A role's --config value: the JSON itself, or "-" for JSON on stdin (how mesh-llm
    passes it, so the secret in it never shows in argv)."""
    if arg == "-":
        import sys
        return sys.stdin.read()
    return arg


def from_json(cls: type[T], text: str) -> T:
    data = json.loads(text)
    names = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = set(data) - set(names)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} fields: {sorted(unknown)}")
    for key, value in data.items():
        if isinstance(value, list):
            data[key] = tuple(value)
    return cls(**data)


__all__ = ["NodeConfig", "ProxyConfig", "ConsoleConfig", "to_json", "from_json", "config_text", "field"]
