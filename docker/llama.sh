#!/bin/sh
# Inside the node image build: llama.cpp's binaries.
#   llama.sh runtime-libs   make sure the shared libraries they need are installed (libgomp1)
#   llama.sh build          put llama-server, ggml-rpc-server, llama-quantize, mesh-fnv1a and
#                           their libraries (libllama, libggml*, one CPU backend per instruction
#                           set, chosen at run time) in /opt/llama/bin: the ones `make images` fed
#                           in when they run here, else built from the pinned source
#                           (llama.cpp/build.py; needs Debian's package mirror and PyPI)
set -eu
BINARIES="llama-server ggml-rpc-server llama-quantize mesh-fnv1a"

runtime_libs() {
  if ! ldconfig -p | grep -q 'libgomp\.so\.1'; then
    echo "installing libgomp1 (OpenMP runtime for llama.cpp)"
    apt-get update -qq && apt-get install -y -qq --no-install-recommends libgomp1 >/dev/null
    rm -rf /var/lib/apt/lists/*
  fi
}

fed_binaries_run() {
  for b in $BINARIES; do [ -x "/feed/llama-bin/$b" ] || return 1; done
  /feed/llama-bin/llama-server --version >/dev/null 2>&1 || return 1
  # ggml loads its CPU backend for this CPU at start (one variant per instruction set)
  /feed/llama-bin/ggml-rpc-server --help 2>&1 | grep -q "loaded CPU backend"
}

build() {
  runtime_libs
  mkdir -p /opt/llama/bin
  if fed_binaries_run; then
    echo "using the llama.cpp binaries fed in by make images"
    cp -a /feed/llama-bin/. /opt/llama/bin/ && rm -f /opt/llama/bin/.keep
    return
  fi
  echo "building llama.cpp from the pinned source (about 6 minutes on 2 cores)"
  apt-get update -qq && apt-get install -y -qq --no-install-recommends g++ patch >/dev/null
  python3 -m venv /tmp/build-venv && /tmp/build-venv/bin/pip install -q cmake ninja
  bin_dir=$(MESH_LLM_CACHE=/tmp/llama-cache /tmp/build-venv/bin/python /src/llama.cpp/build.py)
  cp -a "$bin_dir/." /opt/llama/bin/
  rm -rf /tmp/build-venv /tmp/llama-cache
}

case "$1" in
  runtime-libs) runtime_libs ;;
  build) build ;;
  *) echo "llama.sh: unknown step $1" >&2; exit 2 ;;
esac
