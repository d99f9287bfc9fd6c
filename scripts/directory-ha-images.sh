#!/usr/bin/env bash
# Build the two extra images of the `directory-ha` compose profile (PostgreSQL and
# haproxy, from Debian's packages on the same local base image as `make images`;
# the directory replicas use mesh-llm/directory, which `make images` builds).
set -euo pipefail
cd "$(dirname "$0")/.."
TAG="${MESH_LLM_TAG:-dev}"
base=$(scripts/base-image.sh)
docker buildx version >/dev/null 2>&1 || export DOCKER_BUILDKIT=0
for part in postgres haproxy; do
  echo "[images] building mesh-llm/directory-$part:$TAG" >&2
  docker build -q -f "docker/directory-$part.Dockerfile" --build-arg "BASE_IMAGE=$base" \
    -t "mesh-llm/directory-$part:$TAG" . >/dev/null
done
