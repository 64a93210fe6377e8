#!/usr/bin/env bash
# End-to-end benchmark on the local provider (issue #5): a 20-student lab (bucket with a
# 2 MiB corpus and a tabular dataset, MapReduce + scheduler with 2 workers each, both
# smoke workloads) applied and verified on this machine, then destroyed: wall time and
# peak memory of each step.
#
#   bash bench/local.sh          # STUDENTS=20
set -euo pipefail
cd "$(dirname "$0")/.."
STUDENTS=${STUDENTS:-20}
cargo build --release --quiet --no-default-features -p labctl -p labctl-mapreduce -p labctl-scheduler
LABCTL="$PWD/target/release/labctl"
WORK=$(mktemp -d); trap '"$LABCTL" destroy "$WORK/lab.toml" --yes --data-dir "$WORK/data" >/dev/null 2>&1 || true; rm -rf "$WORK"' EXIT
source bench/roster.sh
roster "$STUDENTS" >"$WORK/roster.csv"
sed -e 's/^students = \[/roster = "roster.csv"\n#/' -e '/^  { id/d' -e '/^]$/d' -e 's/^name = "quickstart"/name = "bench"/' examples/quickstart.toml >"$WORK/lab.toml"
"$LABCTL" validate "$WORK/lab.toml" >/dev/null

step() { # NAME ARGS...: runs labctl, prints wall time and peak RSS
  local name=$1; shift
  /usr/bin/time -f "%e %M" -o "$WORK/t" "$LABCTL" "$@" --data-dir "$WORK/data" >"$WORK/$name.out" 2>&1 || { tail -20 "$WORK/$name.out"; exit 1; }
  read -r secs kib <"$WORK/t"
  printf '%-28s %8ss %8s MiB\n' "$name" "$secs" "$((kib / 1024))"
}
echo "local provider, $STUDENTS students x (bucket + 2 datasets + credential + MapReduce and scheduler with 2 workers each), $(nproc) cores"
step "apply (no verify)" apply "$WORK/lab.toml" --yes --no-verify
step "verify (2 smoke workloads)" verify "$WORK/lab.toml"
tail -1 "$WORK/verify (2 smoke workloads).out"
step "re-plan (no changes)" plan "$WORK/lab.toml"
step "destroy" destroy "$WORK/lab.toml" --yes
