#!/bin/sh
# Inside an image build: install Python packages into the virtual environment /opt/mesh-llm.
#   install.sh deps REQUIREMENTS   third-party packages, hash-checked (docker/requirements/*.txt)
#   install.sh wheels DIR...       build our own packages' wheels from their source folders
#                                  into /project-wheels (the build stage)
#   install.sh project             install /project-wheels without dependencies (the final stage:
#                                  the venv with the third-party packages stays one cached layer)
# With wheels in /feed/wheels (`make images` puts them there) nothing is fetched from
# a package index; without them (a plain `docker build`) pip uses the index.
set -eu
VENV=/opt/mesh-llm
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
if ls /feed/wheels/*.whl >/dev/null 2>&1; then
  FROM="--no-index --find-links /feed/wheels"
else
  FROM=""
fi
PIP="$VENV/bin/python -m pip install --no-cache-dir --disable-pip-version-check --quiet $FROM"
case "$1" in
  deps)
    echo "installing third-party packages ${FROM:+from the wheels fed in by make images}${FROM:-from the package index}"
    $PIP --require-hashes -r "$2" ;;
  wheels)
    shift
    PYTHONDONTWRITEBYTECODE=1 $VENV/bin/python -m pip wheel --no-cache-dir --disable-pip-version-check --quiet $FROM \
      --no-deps --wheel-dir /project-wheels "$@" ;;
  project)
    echo "installing $(cd /project-wheels && echo *.whl)"
    $VENV/bin/python -m pip install --no-cache-dir --disable-pip-version-check --quiet \
      --no-index --no-deps /project-wheels/*.whl
    rm -rf /project-wheels ;;
  *)
    echo "install.sh: unknown step $1" >&2; exit 2 ;;
esac
