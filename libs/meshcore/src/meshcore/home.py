"""The node's home folder (`--home`, default ~/.mesh-llm) and where things live in it.

  identity.key, mesh.json   see identity.py
  run/node.sock             the node agent's gRPC unix socket (0700 folder; under a home path
                            too long for a socket: $TMPDIR/mesh-llm-<uid>/, 0700, this user's)
  run/tunnel.sock           the proxy's way to remote models through the node's mesh link
  models/                   GGUF files found by name (also $MESH_LLM_MODELS_DIR)
"""

from __future__ import annotations

import hashlib
import os
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

from meshcore.errors import ConfigError

MAX_UNIX_SOCKET_PATH = 100  # sun_path is 108 bytes on Linux, 104 on macOS


def default_home() -> Path:
    return Path(os.environ.get("MESH_LLM_HOME", Path.home() / ".mesh-llm"))


def cache_dir() -> Path:
    return Path(os.environ.get("MESH_LLM_CACHE", Path.home() / ".cache" / "mesh-llm"))


@dataclass(frozen=True)
class Home:
    root: Path

    def ensure(self) -> "Home":
        """The home and its sockets' folder, which only this user may enter (the node's
        gRPC socket hands out the invite token): made 0700, or tightened to it."""
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        for folder in {self.run_dir, self.node_socket.parent, self.tunnel_socket.parent}:
            folder.mkdir(exist_ok=True, mode=0o700)
            info = os.lstat(folder)
            shared = folder.parent != self.root  # the short folder under $TMPDIR, where anyone may create things
            if not stat.S_ISDIR(info.st_mode) or (shared and info.st_uid != os.getuid()):
                raise ConfigError(f"{folder} is not a folder of this user's: mesh-llm will not put its sockets there")
            if info.st_mode & 0o077:
                os.chmod(folder, 0o700)
        return self

    @property
    def run_dir(self) -> Path:
        return self.root / "run"

    @property
    def models_dir(self) -> Path:
        return self.root / "models"

    def socket_path(self, name: str) -> Path:
        """A unix socket in run/; moved under the temp dir if the home path is too long."""
        path = self.run_dir / f"{name}.sock"
        if len(str(path)) <= MAX_UNIX_SOCKET_PATH:
            return path
        digest = hashlib.sha256(str(self.root.resolve()).encode()).hexdigest()[:16]
        return Path(tempfile.gettempdir()) / f"mesh-llm-{os.getuid()}" / f"{digest}-{name}.sock"

    @property
    def node_socket(self) -> Path:
        """The node agent's gRPC API."""
        return self.socket_path("node")

    @property
    def tunnel_socket(self) -> Path:
        """Where the proxy asks the node agent for a stream to a remote model."""
        return self.socket_path("tunnel")

    @property
    def grpc_target(self) -> str:
        return f"unix:{self.node_socket}"
