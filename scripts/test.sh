#!/usr/bin/env bash
# The project's test command (see README): installs what the tests need, then builds and
# runs every test of the workspace.
#
# Needs: the Rust toolchain (cargo-nextest if present, else `cargo test`), Python 3 with
# venv, and a registry for PyPI. The AWS API emulator (moto's server) is installed into a
# venv under ~/.cache the first time; the tests start and stop it on loopback themselves.
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/labctl-test
VENV="$CACHE/venv"
if [ ! -x "$VENV/bin/moto_server" ]; then
  echo "installing the AWS API emulator (moto[server]) into $VENV" >&2
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "moto[server]"
fi
export MOTO_SERVER="$VENV/bin/moto_server"

# Formatting and lints first: they fail in seconds, the tests take minutes. The second
# clippy run checks the build a newcomer makes (the embedded provider only).
cargo fmt --all --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
cargo clippy -p labctl --no-default-features --quiet -- -D warnings

if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast "$@"
  # nextest does not run doctests.
  cargo test --workspace --doc --quiet
else
  cargo test --workspace --no-fail-fast "$@"
fi
