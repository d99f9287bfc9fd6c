#!/usr/bin/env bash
# Build the two extra images of the `directory-ha` compose profile (PostgreSQL and
# haproxy, from Debian's packages on the same local base image as `make images`;
# the directory replicas use mesh-llm/directory, which `make images` builds).
# scripts/images.sh (`make images`, `make test`) runs this after its own images; on a
# re-run Docker's layer cache makes it a few seconds. The builds need Debian's package
# mirror the first time (apt-get inside the build), no registry.
#   MESH_LLM_TAG (default dev)  BASE_IMAGE (default: see scripts/base-image.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
say() { echo "[images] $*" >&2; }
TAG="${MESH_LLM_TAG:-dev}"
CACHE="${MESH_LLM_CACHE:-$HOME/.cache/mesh-llm}"
if ! docker info >/dev/null 2>&1; then
  echo "directory-ha-images: no Docker engine answers here (is it installed and running, and may this user use it?)" >&2
  exit 1
fi
base=$(scripts/base-image.sh)
docker buildx version >/dev/null 2>&1 || export DOCKER_BUILDKIT=0
log="$CACHE/directory-ha-build.log"
mkdir -p "$CACHE"
for part in postgres haproxy; do
  t0=$(date +%s)
  say "building mesh-llm/directory-$part:$TAG"
  # The context is only the image's own files (docker/directory-$part.*), sent as a tar
  # stream: the same paths as compose's context (.), without the repository's other files.
  if ! tar -c docker/directory-"$part".* | docker build -f "docker/directory-$part.Dockerfile" \
       --build-arg "BASE_IMAGE=$base" -t "mesh-llm/directory-$part:$TAG" - >"$log" 2>&1; then
    tail -30 "$log" >&2
    echo "directory-ha-images: building mesh-llm/directory-$part failed (last lines above; all of it in $log)" >&2
    exit 1
  fi
  say "  mesh-llm/directory-$part:$TAG built in $(( $(date +%s) - t0 )) s, $(docker image inspect -f '{{.Size}}' "mesh-llm/directory-$part:$TAG" | awk '{printf "%.0f MB", $1/1e6}')"
done
