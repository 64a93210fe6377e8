#!/usr/bin/env bash
# The AWS API emulator the tests and benches run, pinned (its behaviour is part of the test
# world): moto's server, installed once into a venv under ~/.cache keyed by its version.
# Prints the venv's Python, which testing/moto/moto-server runs it with (MOTO_PYTHON).
#
#   MOTO_PYTHON=$(bash testing/moto/install.sh)
set -euo pipefail
MOTO=5.2.6
VENV=${XDG_CACHE_HOME:-$HOME/.cache}/labctl-test/venv-moto-$MOTO
if [ ! -x "$VENV/bin/moto_server" ]; then
  echo "installing the AWS API emulator (moto[server]==$MOTO) into $VENV" >&2
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "moto[server]==$MOTO"
fi
echo "$VENV/bin/python"
