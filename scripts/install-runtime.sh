#!/bin/sh
# The node's runtime, nothing more: a virtualenv at TARGET holding idnode (built
# from the source tree SOURCE, default .) and its dependencies; no compilers, no
# test tools, no pip cache. The Dockerfile's build stage runs exactly this, and
# tests/test_deploy.py runs it too, then starts the node from what it made.
#   scripts/install-runtime.sh TARGET [SOURCE]
set -eu
target=${1:?usage: install-runtime.sh TARGET [SOURCE]}
source_tree=${2:-.}
python3 -m venv "$target"
"$target/bin/python" -m pip install --quiet --no-cache-dir --disable-pip-version-check \
    --no-compile "$source_tree"
# What the image never needs at run time.
"$target/bin/python" -m pip uninstall --quiet --yes pip
