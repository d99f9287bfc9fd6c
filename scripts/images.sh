#!/usr/bin/env bash
# make images: build the node, proxy (client) and directory images, then the
# `directory-ha` compose profile's PostgreSQL and haproxy (scripts/directory-ha-images.sh).
#   MESH_LLM_TAG (default dev)  BASE_IMAGE (default: see scripts/base-image.sh)
# Works on a machine whose Docker engine can pull nothing: the base image is then
# bootstrapped locally, and Python wheels and llama.cpp binaries are fed in through
# the build context (scripts/docker_feed.py), so the builds need no network.
set -euo pipefail
cd "$(dirname "$0")/.."
say() { echo "[images] $*" >&2; }
TAG="${MESH_LLM_TAG:-dev}"
CACHE="${MESH_LLM_CACHE:-$HOME/.cache/mesh-llm}"
if ! docker info >/dev/null 2>&1; then
  echo "images: no Docker engine answers here (is it installed and running, and may this user use it?)" >&2
  exit 1
fi
UV=$(command -v uv || echo "$CACHE/uv-bootstrap/bin/uv")
started=$(date +%s)
base=$(scripts/base-image.sh)
say "base image: $base"
.venv/bin/python scripts/docker_feed.py --base "$base" --uv "$UV"
# Without the buildx plugin the docker CLI refuses BuildKit; the classic builder does all we need.
docker buildx version >/dev/null 2>&1 || export DOCKER_BUILDKIT=0
log="$CACHE/images-build.log"
mkdir -p "$CACHE"
for role in directory proxy node; do
  t0=$(date +%s)
  say "building mesh-llm/$role:$TAG"
  if ! docker build -f "services/$role/Dockerfile" --build-arg "BASE_IMAGE=$base" -t "mesh-llm/$role:$TAG" . \
       >"$log" 2>&1; then
    tail -30 "$log" >&2
    echo "images: building mesh-llm/$role failed (last lines above; all of it in $log)" >&2
    exit 1
  fi
  say "  mesh-llm/$role:$TAG built in $(( $(date +%s) - t0 )) s, $(docker image inspect -f '{{.Size}}' "mesh-llm/$role:$TAG" | awk '{printf "%.0f MB", $1/1e6}')"
done
BASE_IMAGE="$base" MESH_LLM_TAG="$TAG" MESH_LLM_CACHE="$CACHE" scripts/directory-ha-images.sh
say "all images built in $(( $(date +%s) - started )) s"
