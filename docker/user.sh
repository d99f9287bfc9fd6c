#!/bin/sh
# Inside an image build: the unprivileged user `mesh` (uid/gid 10001) the images run as,
# and the folders it owns (a named volume mounted there starts with this owner).
set -eu
grep -q '^mesh:' /etc/passwd || {
  echo 'mesh:x:10001:10001:Mesh LLM:/home/mesh:/usr/sbin/nologin' >> /etc/passwd
  echo 'mesh:x:10001:' >> /etc/group
}
mkdir -p /home/mesh "$@"
chown 10001:10001 /home/mesh "$@"
