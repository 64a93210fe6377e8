#!/usr/bin/env bash
# MapReduce benchmark (issue #3): word count over a generated Zipf corpus (256 MiB in 8
# files by default, bench/peers/corpus.py, seed 7), 2 workers on this machine, side by
# side with PySpark local[2] and a Dask bag on a 2-worker LocalCluster over the same files
# (bench/peers/, versions pinned in requirements.txt). Outputs are checked equal. Each
# peer's start-up (JVM and session, cluster) is reported apart from its work.
#
#   bash bench/mapreduce.sh              # MB=256 RUNS=3 PEERS=1
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
MB=${MB:-256}; RUNS=${RUNS:-3}; PEERS=${PEERS:-1}
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/labctl-bench
PEERS_DIR="$ROOT/bench/peers"
mkdir -p "$CACHE"
CORPUS="$CACHE/corpus-$MB-$(sha256sum "$PEERS_DIR/corpus.py" | cut -c1-12)"
WORK=$(mktemp -d); trap 'rm -rf "$WORK"' EXIT

if [ ! -d "$CORPUS" ]; then
  python3 "$PEERS_DIR/corpus.py" "$CORPUS.tmp" "$MB" 8 && mv "$CORPUS.tmp" "$CORPUS"
fi
BYTES=$(cat "$CORPUS"/*.txt | wc -c)
cargo build --release --quiet -p labctl-mapreduce
BIN="$ROOT/target/release/lab-mapreduce"

normalise() { cat "$@" | tr '\t' ' ' | LC_ALL=C sort; }
mbps() { python3 -c "print(f'{$BYTES/1048576/$1:.0f}')"; }

echo "word count, $((BYTES / 1048576)) MiB in $(ls "$CORPUS" | wc -l) files, 2 workers, $(nproc) cores"
best=999
for i in $(seq 1 "$RUNS"); do
  rm -rf "$WORK/ours"
  /usr/bin/time -f "%e" -o "$WORK/t" "$BIN" run --workers 2 --job wordcount --input "$CORPUS" --output "$WORK/ours" --reduces 2 --split-mb 16 >/dev/null
  s=$(cat "$WORK/t")
  best=$(python3 -c "print(min($best, $s))")
done
normalise "$WORK"/ours/part-r-* >"$WORK/ours.txt"
printf '%-28s %8ss %8s MB/s %8s MB/s/core\n' "lab-mapreduce (best of $RUNS)" "$best" "$(mbps "$best")" "$(python3 -c "print(f'{$BYTES/1048576/$best/2:.0f}')")"

[ "$PEERS" = 1 ] || exit 0
source "$ROOT/bench/peers.sh"
PY=$(peers_python)
printf '\n%-28s %9s %9s %9s   %s\n' "peer ($("$PY" -c 'import pyspark, dask; print(f"pyspark {pyspark.__version__}, dask {dask.__version__}")'))" total start-up work "lab-mapreduce faster by (total / work alone)"
for peer in spark dask; do
  rm -rf "$WORK/$peer"
  /usr/bin/time -f "%e" -o "$WORK/t" "$PY" "$PEERS_DIR/wordcount_$peer.py" "$CORPUS" "$WORK/$peer" 2 >"$WORK/$peer.log" 2>&1 || { tail -20 "$WORK/$peer.log"; exit 1; }
  s=$(cat "$WORK/t")
  startup=$(sed -n 's/.*startup_seconds=\([0-9.]*\).*/\1/p' "$WORK/$peer.log")
  work=$(sed -n 's/.*work_seconds=\([0-9.]*\).*/\1/p' "$WORK/$peer.log")
  normalise "$WORK/$peer"/part-* >"$WORK/$peer.txt"
  same=$(cmp -s "$WORK/ours.txt" "$WORK/$peer.txt" && echo "output identical" || echo "OUTPUT DIFFERS")
  printf '%-28s %8ss %8ss %8ss   %sx / %sx; %s\n' "$peer" "$s" "$startup" "$work" \
    "$(python3 -c "print(f'{$s/$best:.1f}')")" "$(python3 -c "print(f'{$work/$best:.1f}')")" "$same"
done
