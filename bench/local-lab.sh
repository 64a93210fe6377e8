# Sourced by the benchmarks on the local provider: builds labctl (with `local` only) and the
# workers, writes "$WORK/lab.toml" — examples/quickstart.toml for a roster of $STUDENTS
# students, changed further by the sed expressions in the LAB_EDITS array — and defines
# `step NAME ARGS...`, which runs labctl and prints its wall time and peak RSS.
cargo build --release --quiet --no-default-features -p labctl -p labctl-mapreduce -p labctl-scheduler
LABCTL="$PWD/target/release/labctl"
WORK=$(mktemp -d); trap '"$LABCTL" destroy "$WORK/lab.toml" --yes --data-dir "$WORK/data" >/dev/null 2>&1 || true; rm -rf "$WORK"' EXIT
source bench/roster.sh
roster "$STUDENTS" >"$WORK/roster.csv"
edits=(-e 's/^students = \[/roster = "roster.csv"\n#/' -e '/^  { id/d' -e '/^]$/d' -e 's/^name = "quickstart"/name = "bench"/')
for edit in "${LAB_EDITS[@]}"; do edits+=(-e "$edit"); done
sed "${edits[@]}" examples/quickstart.toml >"$WORK/lab.toml"
"$LABCTL" validate "$WORK/lab.toml" >/dev/null

step() { # NAME ARGS...
  local name=$1; shift
  /usr/bin/time -f "%e %M" -o "$WORK/t" "$LABCTL" "$@" --data-dir "$WORK/data" >"$WORK/$name.out" 2>&1 || { tail -20 "$WORK/$name.out"; exit 1; }
  read -r secs kib <"$WORK/t"
  printf '%-34s %8ss %8s MiB\n' "$name" "$secs" "$((kib / 1024))"
}
