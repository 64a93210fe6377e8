#!/usr/bin/env bash
# The project's test command (see README): installs what the tests need, then builds and
# runs every test of the workspace.
#
# Needs: root, the Rust toolchain (cargo-nextest if present, else `cargo test`), Python 3
# with venv, Go with the Go module proxy, and registries for PyPI and Debian's packages.
# The AWS API emulator (moto's server) is installed into a venv under ~/.cache the first
# time, the VM runner's image is built there, and so are the test cluster's Kubernetes
# binaries; the tests start and stop the emulator, the VMs and the cluster themselves.
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/labctl-test
# The AWS API emulator, pinned and installed once (testing/moto/install.sh); the tests run
# it through testing/moto/serve.py, which makes moto authorize S3 requests by AWS's IAM
# action names.
MOTO_PYTHON=$(bash testing/moto/install.sh)
export MOTO_PYTHON
export MOTO_SERVER="$PWD/testing/moto/moto-server"

# The VM runner (testing/vm-runner) boots every instance moto runs: systemd-nspawn over a
# Debian image that debootstrap builds once into ~/.cache. The test cluster
# (testing/cluster) runs its pods with containerd, runc, the CNI plugins and iptables.
missing=()
command -v debootstrap >/dev/null || missing+=(debootstrap)
command -v systemd-nspawn >/dev/null || missing+=(systemd-container)
command -v containerd >/dev/null || missing+=(containerd)
command -v runc >/dev/null || missing+=(runc)
[ -x /usr/lib/cni/bridge ] || missing+=(containernetworking-plugins)
command -v iptables >/dev/null || missing+=(iptables)
# Students' notebooks: a Python environment per lab from PyPI (pip's cache under ~/.cache
# keeps the wheels), and Java for PySpark.
python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
command -v java >/dev/null || missing+=(openjdk-17-jre-headless)
# A real browser opens a student's JupyterLab.
command -v chromium >/dev/null || missing+=(chromium)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]} for the VM runner and the test cluster" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
LABCTL_VM_IMAGE=$(bash testing/vm-runner/image.sh)
export LABCTL_VM_IMAGE
# Kubernetes, etcd and CoreDNS built from source once (about 20 minutes cold, cached by
# version); the Kubernetes tests start the cluster from them.
LABCTL_TEST_CLUSTER_BIN=$(bash testing/cluster/build.sh)
export LABCTL_TEST_CLUSTER_BIN

# The GCP emulators: fake-gcs-server and Google's discovery documents, pinned, which
# testing/gcp-emulator stands on (the tests start it).
LABCTL_GCP_EMULATOR_DEPS=$(bash testing/gcp-emulator/install.sh)
export LABCTL_GCP_EMULATOR_DEPS

# Cargo's build directory lives under ~/.cache, one per Rust toolchain, so that a fresh
# clone (what CI tests) rebuilds only the workspace's own crates, not its ~500 dependencies
# (about 15 minutes on two cores). Cargo's fingerprints decide what is stale, as always; a
# CARGO_TARGET_DIR of your own is kept. Each clone's own crates add up there: past 30 GiB
# the directory starts afresh.
if [ -z "${CARGO_TARGET_DIR:-}" ]; then
  CARGO_TARGET_DIR="$CACHE/cargo-target-$(rustc -vV | sha256sum | cut -c1-12)"
  if [ -d "$CARGO_TARGET_DIR" ] && [ "$(du -sm "$CARGO_TARGET_DIR" | cut -f1)" -gt 30720 ]; then
    rm -rf "$CARGO_TARGET_DIR"
  fi
  export CARGO_TARGET_DIR
fi

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
