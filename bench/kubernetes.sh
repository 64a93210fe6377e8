#!/usr/bin/env bash
# Kubernetes provider benchmark (issue #7): a cohort of STUDENTS (default 100), each with a
# namespace (quota, limits, service account, role, binding, network policy, token), a
# worker-token Secret, and a MapReduce and a scheduler with 2 workers each (4 Deployments,
# 2 Services, a volume claim) — 16 objects per student — applied to and destroyed from the test API server
# (testing/kube-emulator: kube-fake-client over HTTP on loopback, Deployments ready at once).
# Prints wall time and peak memory of each step. No peer: there is no real cluster here
# and kubectl needs API discovery, which the emulator does not serve.
#
#   bash bench/kubernetes.sh              # STUDENTS=100 PARALLELISM=32
set -euo pipefail
cd "$(dirname "$0")/.."
STUDENTS=${STUDENTS:-100}
PARALLELISM=${PARALLELISM:-32}
cargo build --release --quiet --workspace
LABCTL="$PWD/target/release/labctl"
WORK=$(mktemp -d)
"$PWD/target/release/labctl-kube-emulator" 0 "$WORK/kubeconfig.yaml" >"$WORK/emulator.log" 2>&1 &
EMULATOR=$!
trap 'kill $EMULATOR 2>/dev/null; rm -rf "$WORK"' EXIT
until [ -s "$WORK/kubeconfig.yaml" ]; do sleep 0.1; done
export NO_COLOR=1
source bench/roster.sh
roster "$STUDENTS" >"$WORK/roster.csv"
cat >"$WORK/lab.toml" <<LAB
[lab]
name = "bench-k8s"

[provider.kubernetes]
kubeconfig = "$WORK/kubeconfig.yaml"
image = "ghcr.io/labctl/workers:0.1.0"

[[cohort]]
name = "all"
roster = "roster.csv"

[student]
workers = { mapreduce = { workers = 2 }, scheduler = { workers = 2 } }
LAB
"$LABCTL" validate "$WORK/lab.toml" >/dev/null

step() { # NAME ARGS...: runs labctl; prints wall time and peak RSS
  local name=$1; shift
  /usr/bin/time -f "%e %M" -o "$WORK/t" "$LABCTL" "$@" >"$WORK/out" 2>&1 || { tail -20 "$WORK/out"; exit 1; }
  read -r secs kib <"$WORK/t"
  printf '%-10s %7ss %6s MiB   %s\n' "$name" "$secs" "$((kib / 1024))" "$(tail -1 "$WORK/out")"
}
echo "kubernetes provider against the test API server on loopback: $STUDENTS students x 16 objects ($((STUDENTS * 16)) objects, $((STUDENTS * 4)) labctl resources)"
echo "engine parallelism $PARALLELISM, $(nproc) cores"
step apply apply "$WORK/lab.toml" --yes --parallelism "$PARALLELISM"
step re-plan plan "$WORK/lab.toml"
step destroy destroy "$WORK/lab.toml" --yes --parallelism "$PARALLELISM"
