#!/usr/bin/env bash
# MapReduce benchmark (issue #3): word count over a generated Zipf corpus (256 MiB in 8
# files by default, shared/peers/gen_corpus.py, seed 7), 2 workers on this machine, side by
# side with PySpark local[2] and a Dask bag on a 2-worker LocalCluster over the same files.
# Outputs are checked equal. Peers are installed into a venv under ~/.cache on first use.
#
#   bash bench/mapreduce.sh              # MB=256 RUNS=3 PEERS=1
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
MB=${MB:-256}; RUNS=${RUNS:-3}; PEERS=${PEERS:-1}
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/labctl-bench
PEERS_DIR=$(cd "$ROOT/../shared/peers" 2>/dev/null && pwd || true)
mkdir -p "$CACHE"
CORPUS="$CACHE/corpus-$MB"
WORK=$(mktemp -d); trap 'rm -rf "$WORK"' EXIT

[ -d "$CORPUS" ] || python3 "$PEERS_DIR/gen_corpus.py" "$CORPUS" "$MB" 8 >/dev/null
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
VENV="$CACHE/peers-venv"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet "dask[bag]" distributed pyspark
fi
for peer in spark dask; do
  rm -rf "$WORK/$peer"
  /usr/bin/time -f "%e" -o "$WORK/t" "$VENV/bin/python" "$PEERS_DIR/peer_wordcount_$peer.py" "$CORPUS" "$WORK/$peer" 2 >"$WORK/$peer.log" 2>&1 || { tail -20 "$WORK/$peer.log"; exit 1; }
  s=$(cat "$WORK/t")
  if [ "$peer" = spark ]; then
    # Spark writes Python tuples: ('word', 3)
    cat "$WORK"/spark/part-* | sed -E "s/^\('(.*)', ([0-9]+)\)$/\1 \2/" | LC_ALL=C sort >"$WORK/$peer.txt"
  else
    normalise "$WORK"/dask/part-* >"$WORK/$peer.txt"
  fi
  same=$(cmp -s "$WORK/ours.txt" "$WORK/$peer.txt" && echo "output identical" || echo "OUTPUT DIFFERS")
  printf '%-28s %8ss %8s MB/s   lab-mapreduce is %sx faster; %s\n' "$peer" "$s" "$(mbps "$s")" "$(python3 -c "print(f'{$s/$best:.1f}')")" "$same"
done
