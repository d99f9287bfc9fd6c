#!/usr/bin/env bash
# Print the base image the Dockerfiles build FROM, making it available first.
#  - $BASE_IMAGE when set (used as is);
#  - else the usual public image (python:3.11-slim-bookworm) when it is here or can be pulled;
#  - else a Debian bookworm image bootstrapped locally with mmdebstrap from this machine's
#    own Debian package sources and `docker import`ed as mesh-llm/base:bookworm (for
#    machines whose Docker engine can pull nothing). It is rebuilt only when its recipe
#    (the package list below) changes: the recipe's hash is kept in an image label.
set -euo pipefail
say() { echo "[images] $*" >&2; }
PUBLIC=python:3.11-slim-bookworm
LOCAL=mesh-llm/base:bookworm
PACKAGES="python3,python3-venv,libgomp1,ca-certificates"
SUITE=bookworm

if [ -n "${BASE_IMAGE:-}" ]; then echo "$BASE_IMAGE"; exit 0; fi
if docker image inspect "$PUBLIC" >/dev/null 2>&1; then echo "$PUBLIC"; exit 0; fi
if timeout 60 docker pull -q "$PUBLIC" >/dev/null 2>&1; then echo "$PUBLIC"; exit 0; fi

recipe=$(echo "$SUITE $PACKAGES minbase v1" | sha256sum | cut -c1-16)
have=$(docker image inspect -f '{{ index .Config.Labels "org.mesh-llm.recipe" }}' "$LOCAL" 2>/dev/null || true)
if [ "$have" = "$recipe" ]; then echo "$LOCAL"; exit 0; fi

say "cannot pull $PUBLIC: bootstrapping $LOCAL from Debian $SUITE packages (once, about 2 minutes)"
if ! command -v mmdebstrap >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mmdebstrap >/dev/null
  else
    echo "images: cannot pull $PUBLIC and mmdebstrap is missing: install it (sudo apt-get install mmdebstrap) or pass BASE_IMAGE=<an image you have>" >&2
    exit 1
  fi
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mmdebstrap --quiet --variant=minbase --include="$PACKAGES" \
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' \
  --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*' \
  "$SUITE" "$tmp/rootfs.tar" >&2
docker import --change "LABEL org.mesh-llm.recipe=$recipe" \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' \
  "$tmp/rootfs.tar" "$LOCAL" >/dev/null
say "built $LOCAL ($(docker image inspect -f '{{.Size}}' "$LOCAL" | awk '{printf "%.0f MB", $1/1e6}'))"
echo "$LOCAL"
