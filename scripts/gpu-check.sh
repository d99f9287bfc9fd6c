#!/usr/bin/env bash
# make gpu-check: build llama.cpp with CUDA, serve a ~1 GB model solo and split on this
# machine's GPU through real mesh-llm nodes, check split tokens == solo tokens, print
# decode tokens/s (direct, proxy, mesh split, stock RPC split). See scripts/gpu_check.py.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  echo "[gpu-check] no .venv: run make setup first (or make gpu-check, which does)" >&2
  exit 2
fi
exec .venv/bin/python scripts/gpu_check.py "$@"
