#!/usr/bin/env bash
# Engine benchmark (issue #2): a lab of N students x 10 placeholder (`null`) resources,
# like terraform_data, through plan / apply / re-plan / destroy; wall time and peak memory
# per step, for 1,000, 10,000 (and 100,000 with FULL=1) resources, then terraform on an
# equivalent terraform_data graph of 500 and 2,000 resources, side by side with the ratio.
# Both run with the same parallelism (PARALLELISM, 64 by default: labctl --parallelism,
# terraform -parallelism); each one's start-up (a plan of a one-resource config: process,
# and for terraform its provider plugin) is measured apart, and the ratios are given for
# the whole run and for the work alone (run minus start-up).
#
#   bash bench/engine.sh            # TF_SIZES="500 2000" by default; TF_SIZES="" skips terraform
set -euo pipefail
cd "$(dirname "$0")/.."
# The engine needs the embedded provider only (the README main command builds the same).
cargo build --release --quiet --no-default-features -p labctl
LABCTL="$PWD/target/release/labctl"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
SIZES=${SIZES:-"100 1000 10000"}
[ "${FULL:-0}" = 1 ] && SIZES="$SIZES 100000"
TF_SIZES=${TF_SIZES-"500 2000"}
PARALLELISM=${PARALLELISM:-64}

# measure NAME CMD...: runs CMD, records "seconds peak_kib" in $WORK/NAME.
measure() {
  local name=$1; shift
  /usr/bin/time -f "%e %M" -o "$WORK/$name" "$@" >/dev/null 2>"$WORK/$name.err" || { tail -20 "$WORK/$name.err"; exit 1; }
}
fig() { cut -d' ' -f1 "$WORK/$1"; }
mem() { echo $(( $(cut -d' ' -f2 "$WORK/$1") / 1024 )); }

lab_file() { # students -> lab file with students x 10 null resources
  local n=$1 f="$WORK/lab-$1.toml"
  {
    printf '[lab]\nname = "bench"\n\n[provider.local]\n\n[[cohort]]\nname = "all"\nroster = "roster-%s.csv"\n\n' "$n"
    printf '[student]\ncredentials = false\nnull = { count = 10, input = "x" }\n'
  } >"$f"
  { echo "id,name,email"; for i in $(seq 1 "$n"); do echo "s$i,Student $i,s$i@example.edu"; done; } >"$WORK/roster-$n.csv"
  echo "$f"
}

echo "labctl engine: ${SIZES// /\/} students x 10 null resources (release build, $(nproc) cores, parallelism $PARALLELISM)"
printf '%-10s %10s %10s %10s %10s %12s\n' resources plan apply replan destroy "peak MiB"
declare -A LABCTL_APPLY LABCTL_PLAN LABCTL_DESTROY
for students in $SIZES; do
  n=$((students * 10))
  f=$(lab_file "$students")
  st="$WORK/state-$students.json"
  args=(--state "$st" --data-dir "$WORK/data")
  measure plan-$n "$LABCTL" plan "$f" "${args[@]}"
  measure apply-$n "$LABCTL" apply "$f" --yes --parallelism "$PARALLELISM" "${args[@]}"
  measure replan-$n "$LABCTL" plan "$f" "${args[@]}"
  measure destroy-$n "$LABCTL" destroy "$f" --yes --parallelism "$PARALLELISM" "${args[@]}"
  peak=0
  for s in plan apply replan destroy; do m=$(mem $s-$n); [ "$m" -gt "$peak" ] && peak=$m; done
  printf '%-10s %9ss %9ss %9ss %9ss %12s\n' "$n" "$(fig plan-$n)" "$(fig apply-$n)" "$(fig replan-$n)" "$(fig destroy-$n)" "$peak"
  LABCTL_APPLY[$n]=$(fig apply-$n); LABCTL_PLAN[$n]=$(fig replan-$n); LABCTL_DESTROY[$n]=$(fig destroy-$n)
done

[ -z "$TF_SIZES" ] && exit 0
command -v terraform >/dev/null || { echo "terraform not installed: skipping the comparison"; exit 0; }
export TF_CLI_CONFIG_FILE="$WORK/terraformrc" TF_IN_AUTOMATION=1 CHECKPOINT_DISABLE=1
: >"$TF_CLI_CONFIG_FILE"
# tf_dir N: a terraform configuration of N terraform_data resources, 10 per "student", 9
# depending on the first, initialised.
tf_dir() {
  local n=$1 d="$WORK/tf-$1"
  mkdir -p "$d"
  for s in $(seq 1 $(((n + 9) / 10))); do
    printf 'resource "terraform_data" "s%s_0" {\n  input = "x"\n}\n' "$s"
    for i in $(seq 1 $((n < 10 ? n - 1 : 9))); do
      printf 'resource "terraform_data" "s%s_%s" {\n  input      = "x"\n  depends_on = [terraform_data.s%s_0]\n}\n' "$s" "$i" "$s"
    done
  done >"$d/main.tf"
  (cd "$d" && terraform init -input=false >"$WORK/tfinit.log" 2>&1) || { tail -20 "$WORK/tfinit.log"; exit 1; }
  echo "$d"
}
ratio() { python3 -c "print(f'{$1/max($2,0.005):.0f}x')"; }
work() { python3 -c "print(f'{max($1-$2,0):.2f}')"; }

# Start-up: the smallest plan each can make.
measure tfstart terraform -chdir="$(tf_dir 1)" plan -input=false
printf '[lab]\nname = "one"\n\n[provider.local]\n\n[[cohort]]\nname = "all"\nstudents = [{ id = "s1" }]\n\n[student]\ncredentials = false\nnull = { count = 1, input = "x" }\n' >"$WORK/one.toml"
measure lstart "$LABCTL" plan "$WORK/one.toml" --state "$WORK/one.json" --data-dir "$WORK/data"
TF_START=$(fig tfstart); L_START=$(fig lstart)

echo
echo "terraform $(terraform version | head -1 | cut -d' ' -f2), same graph shape (10 terraform_data per student, 9 depending on the first), -parallelism=$PARALLELISM"
echo "start-up (a plan of one resource): terraform ${TF_START}s, labctl ${L_START}s"
printf '%-10s %12s %12s %12s %12s | %s\n' resources apply replan destroy "peak MiB" "labctl apply / replan / destroy; labctl faster by: whole run, and work alone (minus start-up)"
for n in $TF_SIZES; do
  d=$(tf_dir "$n")
  measure tfapply-$n terraform -chdir="$d" apply -auto-approve -input=false -parallelism="$PARALLELISM"
  measure tfplan-$n terraform -chdir="$d" plan -input=false -parallelism="$PARALLELISM"
  measure tfdestroy-$n terraform -chdir="$d" destroy -auto-approve -input=false -parallelism="$PARALLELISM"
  peak=0
  for s in tfapply tfplan tfdestroy; do m=$(mem $s-$n); [ "$m" -gt "$peak" ] && peak=$m; done
  # labctl at the same size, for the ratio.
  students=$((n / 10)); f=$(lab_file "$students"); st="$WORK/cmp-$n.json"
  measure lapply-$n "$LABCTL" apply "$f" --yes --parallelism "$PARALLELISM" --state "$st" --data-dir "$WORK/data"
  measure lplan-$n "$LABCTL" plan "$f" --state "$st" --data-dir "$WORK/data"
  measure ldestroy-$n "$LABCTL" destroy "$f" --yes --parallelism "$PARALLELISM" --state "$st" --data-dir "$WORK/data"
  line=""
  for step in apply plan destroy; do
    t=$(fig tf$step-$n); l=$(fig l$step-$n)
    line="$line $step $(ratio "$t" "$l")/$(ratio "$(work "$t" "$TF_START")" "$(work "$l" "$L_START")")"
  done
  printf '%-10s %11ss %11ss %11ss %12s | %ss/%ss/%ss;%s\n' "$n" \
    "$(fig tfapply-$n)" "$(fig tfplan-$n)" "$(fig tfdestroy-$n)" "$peak" \
    "$(fig lapply-$n)" "$(fig lplan-$n)" "$(fig ldestroy-$n)" "$line"
done
