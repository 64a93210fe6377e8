#!/usr/bin/env bash
# The project's test command (see README): installs what the tests need, then builds and
# runs every test of the workspace.
#
# Needs: root, the Rust toolchain (cargo-nextest if present, else `cargo test`), Python 3
# with venv, and registries for PyPI and Debian's packages. The AWS API emulator (moto's
# server) is installed into a venv under ~/.cache the first time, and the VM runner's image
# is built there; the tests start and stop the emulator and the VMs themselves.
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

# The VM runner (testing/vm-runner) boots every instance moto runs: systemd-nspawn over a
# Debian image that debootstrap builds once into ~/.cache.
if ! command -v debootstrap >/dev/null || ! command -v systemd-nspawn >/dev/null; then
  echo "installing debootstrap and systemd-container for the VM runner" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap systemd-container >/dev/null
fi
LABCTL_VM_IMAGE=$(bash testing/vm-runner/image.sh)
export LABCTL_VM_IMAGE

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
