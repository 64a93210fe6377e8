#!/usr/bin/env bash
# Kubernetes provider benchmark (issues #7, #15): a cohort of STUDENTS (default 100), each
# with a namespace (quota, limits, service account, role, binding, network policy, token),
# a worker-token Secret, and a MapReduce and a scheduler with 2 workers each (4
# Deployments, 2 Services, a volume claim; 16 objects and 6 pods per student), applied to
# and destroyed from the test cluster (testing/cluster: the upstream control plane and
# kubelets, real containers of the workers). apply returns once every Deployment has
# really rolled out, destroy once every namespace has terminated. Prints wall time, peak
# memory and CPU of each step. Needs root and the cluster's binaries (built on first use,
# about 20 minutes). No peer: kubectl apply does not wait for roll-outs or terminations
# across namespaces, and no other tool provisions per-student namespaces.
#
#   bash bench/kubernetes.sh              # STUDENTS=100 PARALLELISM=32
set -euo pipefail
cd "$(dirname "$0")/.."
STUDENTS=${STUDENTS:-100}
PARALLELISM=${PARALLELISM:-32}
BIN=$(bash testing/cluster/build.sh)
cargo build --release --quiet -p labctl -p labctl-mapreduce -p labctl-scheduler -p labctl-test-cluster
LABCTL="$PWD/target/release/labctl"
WORK=$(mktemp -d)
mkfifo "$WORK/cluster.in"
"$PWD/target/release/labctl-test-cluster" "$BIN" "$PWD/target/release" "$WORK/kubeconfig.yaml" \
  <"$WORK/cluster.in" >"$WORK/cluster.out" 2>"$WORK/cluster.log" &
CLUSTER=$!
exec 3>"$WORK/cluster.in" # the cluster runs until this closes
stop() { exec 3>&-; wait $CLUSTER || true; rm -rf "$WORK"; }
trap stop EXIT
until grep -q ready "$WORK/cluster.out" 2>/dev/null; do
  kill -0 $CLUSTER 2>/dev/null || { tail -20 "$WORK/cluster.log"; exit 1; }
  sleep 0.5
done
export NO_COLOR=1
source bench/roster.sh
roster "$STUDENTS" >"$WORK/roster.csv"
# Pods as small as the workers allow, so that 600 of them fit the CPU node.
small='cpu = "1m", memory = "32Mi"'
cat >"$WORK/lab.toml" <<LAB
[lab]
name = "bench-k8s"

[provider.kubernetes]
kubeconfig = "$WORK/kubeconfig.yaml"
image = "labctl.test/workers:dev"
ready_timeout = 580

[[cohort]]
name = "all"
roster = "roster.csv"

[student]
workers = { mapreduce = { workers = 2, $small }, scheduler = { workers = 2, $small } }
limits = { default_cpu = "1m", default_memory = "32Mi", max_cpu = "1", max_memory = "1Gi" }
LAB
"$LABCTL" validate "$WORK/lab.toml" >/dev/null

step() { # NAME ARGS...: runs labctl; prints wall time, peak RSS and CPU time
  local name=$1; shift
  /usr/bin/time -f "%e %M %U %S" -o "$WORK/t" "$LABCTL" "$@" >"$WORK/out" 2>&1 || { tail -20 "$WORK/out"; exit 1; }
  read -r secs kib user sys <"$WORK/t"
  printf '%-10s %7ss %6s MiB %6.2fs CPU   %s\n' "$name" "$secs" "$((kib / 1024))" "$(echo "$user + $sys" | bc)" "$(tail -1 "$WORK/out")"
}
echo "kubernetes provider on the test cluster (up in $(cut -d" " -f2 "$WORK/cluster.out") s): $STUDENTS students x 16 objects ($((STUDENTS * 16)) objects, $((STUDENTS * 6)) pods, $((STUDENTS * 4)) labctl resources)"
echo "engine parallelism $PARALLELISM, $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB"
step apply apply "$WORK/lab.toml" --yes --no-verify --parallelism "$PARALLELISM"
echo "           pods running: $(kubectl --kubeconfig "$WORK/kubeconfig.yaml" get pods -A -l labctl/lab=bench-k8s --field-selector=status.phase=Running --no-headers | wc -l)"
step re-plan plan "$WORK/lab.toml"
step destroy destroy "$WORK/lab.toml" --yes --parallelism "$PARALLELISM"
echo "           namespaces left: $(kubectl --kubeconfig "$WORK/kubeconfig.yaml" get namespaces -l labctl/lab=bench-k8s --no-headers 2>/dev/null | wc -l)"
