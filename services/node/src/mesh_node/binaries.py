"""Where the llama.cpp binaries are: $MESH_LLM_LLAMA_BIN_DIR, else the folder the
last `llama.cpp/build.py` run recorded in the cache, else PATH."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from meshcore.errors import ConfigError
from meshcore.home import cache_dir

LLAMA_SERVER = "llama-server"
RPC_SERVER = "ggml-rpc-server"


def llama_bin_dir(configured: str | None = None) -> Path:
    explicit = configured or os.environ.get("MESH_LLM_LLAMA_BIN_DIR")
    if explicit:
        path = Path(explicit).expanduser()
        if not (path / LLAMA_SERVER).exists():
            raise ConfigError(f"no {LLAMA_SERVER} in {path} (from MESH_LLM_LLAMA_BIN_DIR)")
        return path
    pointer = cache_dir() / "llama.cpp" / "current"
    if pointer.exists():
        path = Path(pointer.read_text().strip())
        if (path / LLAMA_SERVER).exists():
            return path
    on_path = shutil.which(LLAMA_SERVER)
    if on_path:
        return Path(on_path).parent
    raise ConfigError("llama.cpp is not built: run `make setup` (or set MESH_LLM_LLAMA_BIN_DIR "
                      "to a folder containing llama-server)")
