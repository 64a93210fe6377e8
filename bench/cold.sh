#!/usr/bin/env bash
# The README's main command as a newcomer runs it: a fresh clone, an empty target directory
# (crates already downloaded), a release build of labctl with the `local` provider only and
# both workers, then the quickstart apply with its verification. Prints the wall time and
# the binary sizes.
#
#   bash bench/cold.sh
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
git clone --quiet . "$WORK/clone"
cd "$WORK/clone"
start=$(date +%s.%N)
cargo build --release --quiet --no-default-features -p labctl -p labctl-mapreduce -p labctl-scheduler
target/release/labctl apply examples/quickstart.toml --yes --data-dir "$WORK/data" | tail -1
end=$(date +%s.%N)
target/release/labctl destroy examples/quickstart.toml --yes --data-dir "$WORK/data" >/dev/null
printf 'README main command, cold (%s cores): %.0f s\n' "$(nproc)" "$(echo "$end - $start" | bc)"
for b in labctl lab-mapreduce lab-scheduler; do
  printf '%-14s %4d MB\n' "$b" $(( $(stat -c %s "target/release/$b") / 1000000 ))
done
