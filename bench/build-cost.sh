#!/usr/bin/env bash
# What the GCP provider costs to build (issue #18), side by side with the AWS provider as
# the peer: a cold debug build of each provider crate with all its dependencies in an empty
# target directory (crates already downloaded), and the incremental rebuild of `labctl`
# after touching one source file of the provider. Two cores; nothing else building.
#
#   bash bench/build-cost.sh          # COLD=0: the incremental figures only
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
seconds() { local start; start=$(date +%s.%N); "$@" >/dev/null 2>&1; echo "$(date +%s.%N) - $start" | bc; }

printf '%-34s %10s %10s\n' "build (debug, 2 cores)" "gcp" "aws (peer)"
declare -A cold incr
if [ "${COLD:-1}" = 1 ]; then
  for p in gcp aws; do
    cold[$p]=$(CARGO_TARGET_DIR="$WORK/$p" seconds cargo build --quiet -p "labctl-provider-$p")
    rm -rf "${WORK:?}/$p"
  done
  printf '%-34s %9.0fs %9.0fs\n' "cold: the provider crate and deps" "${cold[gcp]}" "${cold[aws]}"
fi

cargo build --quiet -p labctl
for p in gcp aws; do
  touch "providers/$p/src/lib.rs"
  incr[$p]=$(seconds cargo build --quiet -p labctl)
done
printf '%-34s %9.1fs %9.1fs\n' "incremental: labctl, one file" "${incr[gcp]}" "${incr[aws]}"
crates() { cargo tree -p "labctl-provider-$1" -e normal --prefix none | sed 's/ (\*)//; s/ (proc-macro)//' | sort -u | wc -l; }
printf '%-34s %10s %10s\n' "crates in its dependency graph" "$(crates gcp)" "$(crates aws)"
