#!/usr/bin/env bash
# make setup: everything a fresh machine needs, idempotent.
#  1. system tools the llama.cpp build needs (C/C++ compiler, patch); installed with
#     apt-get when missing and we are root, else a clear error naming them
#  2. uv (from PyPI into a bootstrap venv in the cache, unless uv is on PATH)
#  3. .venv with every workspace package (+ dev tools, cmake, ninja) and `mesh-llm`
#  4. llama.cpp binaries (built once into ~/.cache/mesh-llm/llama.cpp/<key>)
#  5. the embedded default model (generated into ~/.cache/mesh-llm/models)
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE="${MESH_LLM_CACHE:-$HOME/.cache/mesh-llm}"
say() { echo "[setup] $*" >&2; }

missing=()
for tool in cc c++ patch python3; do command -v "$tool" >/dev/null || missing+=("$tool"); done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "installing build tools: g++ patch python3-venv"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq g++ patch python3 python3-venv >/dev/null
  else
    echo "setup: missing ${missing[*]}: install a C/C++ compiler, patch and python3 (Debian: sudo apt-get install g++ patch python3-venv)" >&2
    exit 1
  fi
fi

if command -v uv >/dev/null; then
  UV=uv
else
  UV="$CACHE/uv-bootstrap/bin/uv"
  if [ ! -x "$UV" ]; then
    say "installing uv into $CACHE/uv-bootstrap"
    python3 -m venv "$CACHE/uv-bootstrap"
    "$CACHE/uv-bootstrap/bin/pip" install -q uv
  fi
fi

say "syncing .venv (workspace packages and tools)"
"$UV" sync --all-packages --frozen -q 2>/dev/null || "$UV" sync --all-packages -q

.venv/bin/python llama.cpp/build.py >/dev/null
.venv/bin/python -m mesh_node.tiny_model --out "$CACHE/models" --if-missing >/dev/null
say "ready: .venv/bin/mesh-llm, llama.cpp in $(cat "$CACHE/llama.cpp/current"), default model in $CACHE/models"
