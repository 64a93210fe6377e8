#!/usr/bin/env bash
# The project's test command (README): builds everything and runs every test.
# Installs what the tests need first; today that is only the Rust toolchain's cargo-nextest
# (already on the development machines), with `cargo test` as the fallback.
set -euo pipefail
cd "$(dirname "$0")/.."

if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast "$@"
  # nextest does not run doctests.
  cargo test --workspace --doc --quiet
else
  cargo test --workspace --no-fail-fast "$@"
fi
