#!/usr/bin/env bash
# Scheduler benchmark (issue #4): 100,000 independent no-op tasks and a 1,000-step
# dependent chain on 2 workers, side by side with Dask distributed (2-worker LocalCluster,
# bench/peers/tasks_dask.py, its cluster start-up timed apart); then the hyperparameter
# search (48 fits) sequentially, on 1 worker and on 2 workers, for the speedup and the
# identical answer.
#
#   bash bench/scheduler.sh        # TASKS=100000 CHAIN=1000 DASK_TASKS=20000 DASK_CHAIN=200 PEERS=1
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
TASKS=${TASKS:-100000}; CHAIN=${CHAIN:-1000}; DASK_TASKS=${DASK_TASKS:-20000}; DASK_CHAIN=${DASK_CHAIN:-200}; PEERS=${PEERS:-1}
PEERS_DIR="$ROOT/bench/peers"
WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT
cargo build --release --quiet -p labctl-scheduler
BIN="$ROOT/target/release/lab-scheduler"
export LAB_SCHEDULER_TOKEN=bench

# start_cluster N: a scheduler and N workers on free loopback ports; sets ADDR.
start_cluster() {
  "$BIN" scheduler --listen 127.0.0.1:0 --http 127.0.0.1:0 2>"$WORK/sched.log" & PIDS+=($!)
  for _ in $(seq 50); do grep -q "listening on" "$WORK/sched.log" 2>/dev/null && break; sleep 0.05; done
  ADDR=$(sed -n 's/.*listening on \([0-9.:]*\).*/\1/p' "$WORK/sched.log" | head -1)
  for _ in $(seq 1 "$1"); do "$BIN" worker --scheduler "$ADDR" 2>/dev/null & PIDS+=($!); done
  sleep 0.3
}
stop_cluster() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; PIDS=(); sleep 0.2; }
field() { python3 -c "import json,sys; print(json.load(open('$1'))['$2'])"; }

start_cluster 1
"$BIN" stress --scheduler "$ADDR" --tasks "$TASKS" --chain 10 >"$WORK/one.json"
stop_cluster
start_cluster 2
"$BIN" stress --scheduler "$ADDR" --tasks "$TASKS" --chain "$CHAIN" >"$WORK/stress.json"
stop_cluster
printf 'per-task overhead, 1 worker: %.1f µs per no-op task (%s tasks)\n\n' "$(field "$WORK/one.json" us_per_task)" "$TASKS"
tps=$(field "$WORK/stress.json" tasks_per_second); us=$(field "$WORK/stress.json" us_per_task); ms=$(field "$WORK/stress.json" ms_per_step)
echo "no-op tasks and dependent chain, 2 workers, $(nproc) cores"
printf '%-16s %14s %12s %14s\n' system tasks/s "µs/task" "ms/chain step"
printf '%-16s %14.0f %12.1f %14.3f   (%s tasks, %s steps)\n' lab-scheduler "$tps" "$us" "$ms" "$TASKS" "$CHAIN"

if [ "$PEERS" = 1 ]; then
  source "$ROOT/bench/peers.sh"
  PY=$(peers_python)
  "$PY" "$PEERS_DIR/tasks_dask.py" "$DASK_TASKS" "$DASK_CHAIN" 2 >"$WORK/dask.txt" 2>/dev/null
  dtps=$(sed -n 's/.*tasks_per_s=\([0-9.]*\).*/\1/p' "$WORK/dask.txt"); dus=$(sed -n 's/.*us_per_task=\([0-9.]*\).*/\1/p' "$WORK/dask.txt")
  dms=$(sed -n 's/.*ms_per_step=\([0-9.]*\).*/\1/p' "$WORK/dask.txt")
  dstart=$(sed -n 's/.*startup_seconds=\([0-9.]*\).*/\1/p' "$WORK/dask.txt")
  printf '%-16s %14.0f %12.1f %14.3f   (%s tasks, %s steps; dask %s; cluster start-up %ss, not counted)\n' dask "$dtps" "$dus" "$dms" "$DASK_TASKS" "$DASK_CHAIN" "$("$PY" -c 'import dask; print(dask.__version__)')" "$dstart"
  python3 -c "print(f'lab-scheduler vs dask: {$tps/$dtps:.0f}x the throughput, {$dms/$ms:.0f}x faster per chain step')"
fi

echo
echo "hyperparameter search: 16 configurations x 3 folds = 48 fits over 20,000 rows"
"$BIN" hpsearch >"$WORK/seq.json"
for n in 1 2; do
  start_cluster "$n"
  "$BIN" hpsearch --scheduler "$ADDR" >"$WORK/w$n.json"
  stop_cluster
done
seq_s=$(field "$WORK/seq.json" seconds); w1=$(field "$WORK/w1.json" seconds); w2=$(field "$WORK/w2.json" seconds)
same=$(python3 -c "
import json
a, b = json.load(open('$WORK/seq.json')), json.load(open('$WORK/w2.json'))
a.pop('seconds'); b.pop('seconds')
print('identical to the sequential run' if a == b else 'DIFFERS from the sequential run')")
printf 'sequential %.2fs (%.0f ms per fit) | 1 worker %.2fs | 2 workers %.2fs: speedup %.2fx over 1 worker; result %s\n' \
  "$seq_s" "$(python3 -c "print($seq_s*1000/48)")" "$w1" "$w2" "$(python3 -c "print($w1/$w2)")" "$same"
