"""A stand-in for llama-server, so a real node agent can serve a "model" that costs no
CPU: takes llama-server's command line, keeps `--host`/`--port`, ignores the rest, and
runs the synthetic upstream there (relay.upstream: GET answers healthy, POST streams).
`bin_dir(tmp)` makes a llama.cpp bin folder whose llama-server is this and whose other
binaries are the real ones, for MESH_LLM_LLAMA_BIN_DIR.

    python -m relay.standin_llama --port P [any llama-server flags]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from relay import use_uvloop
from relay.upstream import main_async

from meshcore.llama_bin import LLAMA_SERVER, llama_bin_dir


def bin_dir(tmp: Path) -> Path:
    out = tmp / "standin-bin"
    out.mkdir()
    for real in llama_bin_dir().iterdir():
        if real.name != LLAMA_SERVER:
            (out / real.name).symlink_to(real)
    script = out / LLAMA_SERVER
    bench = Path(__file__).resolve().parents[1]
    script.write_text(f"#!/bin/sh\ncd {bench}\nexec {sys.executable} -m relay.standin_llama \"$@\"\n")
    script.chmod(0o755)
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--host", default="127.0.0.1")
    a, _ = p.parse_known_args()
    if a.host != "127.0.0.1":
        sys.exit(f"the stand-in binds 127.0.0.1 only, not {a.host}")
    use_uvloop()
    asyncio.run(main_async(a.port, 100, 20.0))


if __name__ == "__main__":
    main()
