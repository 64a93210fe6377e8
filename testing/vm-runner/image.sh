#!/usr/bin/env bash
# The VM runner's image: a Debian 12 root filesystem with systemd, cloud-init and sshd, what
# every test VM boots (read-only, under a per-VM overlay). Built with debootstrap on first
# use (about 2 minutes, 400 MB) into ~/.cache, keyed by this recipe; prints its path.
# Needs root and the Debian packages debootstrap and systemd-container.
#
#   IMAGE=$(bash testing/vm-runner/image.sh)
set -euo pipefail
SUITE=bookworm
PACKAGES=systemd,systemd-sysv,cloud-init,dbus,iproute2,ca-certificates,python3,python3-cffi-backend,python3-venv,openjdk-17-jre-headless,netbase,udev,openssh-server,curl,sudo
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
# How cloud-init runs in a test VM: user data from the NoCloud seed the runner writes, no
# network configuration (the VM's only interface is loopback, with relays to the emulator).
CLOUD_CFG='datasource_list: [ NoCloud, None ]
locale: C.UTF-8
network: {config: disabled}
'
KEY=$(printf '%s\n' "$SUITE" "$PACKAGES" "$CLOUD_CFG" | sha256sum | cut -c1-12)
DIR=${XDG_CACHE_HOME:-$HOME/.cache}/labctl-test/vm-image-$KEY
if [ ! -f "$DIR/ready" ]; then
  echo "building the test VM image (debootstrap $SUITE) into $DIR" >&2
  rm -rf "$DIR"
  mkdir -p "$DIR"
  debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$DIR/rootfs" "$MIRROR" >"$DIR/debootstrap.log" 2>&1 ||
    { tail -20 "$DIR/debootstrap.log" >&2; exit 1; }
  printf '%s' "$CLOUD_CFG" >"$DIR/rootfs/etc/cloud/cloud.cfg.d/99-labctl-vm-runner.cfg"
  # Every VM makes its own host keys at first boot (cloud-init), none are shared.
  rm -f "$DIR"/rootfs/etc/ssh/ssh_host_*
  # No machine id: systemd makes one per VM at boot.
  : >"$DIR/rootfs/etc/machine-id"
  touch "$DIR/ready"
fi
echo "$DIR/rootfs"
