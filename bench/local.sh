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
LAB_EDITS=()
source bench/local-lab.sh
echo "local provider, $STUDENTS students x (bucket + 2 datasets + credential + MapReduce and scheduler with 2 workers each), $(nproc) cores"
step "apply (no verify)" apply "$WORK/lab.toml" --yes --no-verify
step "verify (2 smoke workloads)" verify "$WORK/lab.toml"
tail -1 "$WORK/verify (2 smoke workloads).out"
step "re-plan (no changes)" plan "$WORK/lab.toml"
step "destroy" destroy "$WORK/lab.toml" --yes
