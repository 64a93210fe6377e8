#!/usr/bin/env bash
# Students' notebooks on the local provider (issue #19): a 20-student lab where each
# student gets JupyterLab, a Dask scheduler with 2 workers and PySpark, applied until every
# student's `notebook` check (a notebook run through their Jupyter server: word count on
# their Dask and with PySpark) has passed; then the memory and disk each student's
# environment takes, idle. The Python environment is built once per lab; the peer is what
# it would cost per student: one more virtualenv installed from the same pinned versions
# and the same pip cache (times the number of students).
#
#   bash bench/notebook.sh          # STUDENTS=20
set -euo pipefail
cd "$(dirname "$0")/.."
STUDENTS=${STUDENTS:-20}
# Each student: a notebook (JupyterLab, Dask with 2 workers, PySpark) instead of the workers.
LAB_EDITS=('s/^workers = .*/notebook = { dask_workers = 2 }/' 's/^smoke = .*/smoke = ["notebook"]/')
source bench/local-lab.sh
echo "local provider, $STUDENTS students x (bucket + 2 datasets + credential + JupyterLab + Dask scheduler with 2 workers + PySpark), $(nproc) cores, pip cache $(du -sh ~/.cache/pip 2>/dev/null | cut -f1)"
start=$(date +%s.%N)
step "apply, Python environment built" apply "$WORK/lab.toml" --yes --no-verify
grep -E "created python_env" "$WORK/apply, Python environment built.out" | sed 's/^ */  /'
step "verify ($STUDENTS notebook checks)" verify "$WORK/lab.toml"
end=$(date +%s.%N)
tail -1 "$WORK/verify ($STUDENTS notebook checks).out"
printf '%-34s %8.1fs\n' "apply -> every student verified" "$(echo "$end - $start" | bc)"
step "re-plan (no changes)" plan "$WORK/lab.toml"

# Each student's processes, idle after their check: proportional set size (shared pages
# split between the processes sharing them), summed.
total=0
for dir in "$WORK"/data/bench/students/*/notebook; do
  for pid in $(python3 -c 'import json,sys; print(" ".join(str(p["pid"]) for p in json.load(open(sys.argv[1]))["processes"]))' "$dir/processes.json"); do
    pss=$(awk '/^Pss:/ {print $2}' "/proc/$pid/smaps_rollup")
    total=$((total + pss))
  done
done
echo "memory per student (Jupyter + Dask scheduler + 2 workers, PSS) $((total / STUDENTS / 1024)) MiB"
env_mib=$(du -sm "$WORK/data/bench/python" | cut -f1)
student_kib=$(du -sk "$WORK/data/bench/students/s1" | cut -f1)
echo "disk: the lab's Python environment ${env_mib} MiB once; per student ${student_kib} KiB of logs and scratch, besides their bucket"

# The peer: the same environment once more, as a per-student install would make it.
/usr/bin/time -f "%e" -o "$WORK/t" bash -c "python3 -m venv '$WORK/peer' && '$WORK/peer/bin/python' -m pip install -q --disable-pip-version-check -r '$WORK/data/bench/python/requirements.lock'" >/dev/null 2>&1
peer_secs=$(cat "$WORK/t")
peer_mib=$(du -sm "$WORK/peer" | cut -f1)
printf 'per-student environments instead (peer): %ss and %s MiB each, x%s = %.0fs and %s MiB\n' \
  "$peer_secs" "$peer_mib" "$STUDENTS" "$(echo "$peer_secs * $STUDENTS" | bc)" "$((peer_mib * STUDENTS))"
step "destroy" destroy "$WORK/lab.toml" --yes
