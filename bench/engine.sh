#!/usr/bin/env bash
# Engine benchmark (issue #2): a lab of N students x 10 placeholder (`null`) resources,
# like terraform_data, through plan / apply / re-plan / destroy; wall time and peak memory
# per step, for 1,000, 10,000 (and 100,000 with FULL=1) resources, then terraform on an
# equivalent terraform_data graph of 500 and 2,000 resources, side by side with the ratio.
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

echo "labctl engine: ${SIZES// /\/} students x 10 null resources (release build, $(nproc) cores)"
printf '%-10s %10s %10s %10s %10s %12s\n' resources plan apply replan destroy "peak MiB"
declare -A LABCTL_APPLY LABCTL_PLAN LABCTL_DESTROY
for students in $SIZES; do
  n=$((students * 10))
  f=$(lab_file "$students")
  st="$WORK/state-$students.json"
  args=(--state "$st" --data-dir "$WORK/data")
  measure plan-$n "$LABCTL" plan "$f" "${args[@]}"
  measure apply-$n "$LABCTL" apply "$f" --yes --parallelism 64 "${args[@]}"
  measure replan-$n "$LABCTL" plan "$f" "${args[@]}"
  measure destroy-$n "$LABCTL" destroy "$f" --yes --parallelism 64 "${args[@]}"
  peak=0
  for s in plan apply replan destroy; do m=$(mem $s-$n); [ "$m" -gt "$peak" ] && peak=$m; done
  printf '%-10s %9ss %9ss %9ss %9ss %12s\n' "$n" "$(fig plan-$n)" "$(fig apply-$n)" "$(fig replan-$n)" "$(fig destroy-$n)" "$peak"
  LABCTL_APPLY[$n]=$(fig apply-$n); LABCTL_PLAN[$n]=$(fig replan-$n); LABCTL_DESTROY[$n]=$(fig destroy-$n)
done

[ -z "$TF_SIZES" ] && exit 0
command -v terraform >/dev/null || { echo "terraform not installed: skipping the comparison"; exit 0; }
export TF_CLI_CONFIG_FILE="$WORK/terraformrc" TF_IN_AUTOMATION=1 CHECKPOINT_DISABLE=1
: >"$TF_CLI_CONFIG_FILE"
echo
echo "terraform $(terraform version | head -1 | cut -d' ' -f2), same graph shape (10 terraform_data per student, 9 depending on the first)"
printf '%-10s %12s %12s %12s %12s | %28s\n' resources apply replan destroy "peak MiB" "labctl at the same size: apply / replan / destroy"
for n in $TF_SIZES; do
  d="$WORK/tf-$n"; mkdir -p "$d"
  for s in $(seq 1 $((n / 10))); do
    printf 'resource "terraform_data" "s%s_0" {\n  input = "x"\n}\n' "$s"
    for i in $(seq 1 9); do
      printf 'resource "terraform_data" "s%s_%s" {\n  input      = "x"\n  depends_on = [terraform_data.s%s_0]\n}\n' "$s" "$i" "$s"
    done
  done >"$d/main.tf"
  (cd "$d" && terraform init -input=false >"$WORK/tfinit.log" 2>&1) || { tail -20 "$WORK/tfinit.log"; exit 1; }
  measure tfapply-$n terraform -chdir="$d" apply -auto-approve -input=false
  measure tfplan-$n terraform -chdir="$d" plan -input=false
  measure tfdestroy-$n terraform -chdir="$d" destroy -auto-approve -input=false
  peak=0
  for s in tfapply tfplan tfdestroy; do m=$(mem $s-$n); [ "$m" -gt "$peak" ] && peak=$m; done
  # labctl at the same size, for the ratio.
  students=$((n / 10)); f=$(lab_file "$students"); st="$WORK/cmp-$n.json"
  measure lapply-$n "$LABCTL" apply "$f" --yes --parallelism 64 --state "$st" --data-dir "$WORK/data"
  measure lplan-$n "$LABCTL" plan "$f" --state "$st" --data-dir "$WORK/data"
  measure ldestroy-$n "$LABCTL" destroy "$f" --yes --parallelism 64 --state "$st" --data-dir "$WORK/data"
  ratio() { python3 -c "print(f'{$1/max($2,0.005):.0f}x')"; }
  printf '%-10s %11ss %11ss %11ss %12s | %8ss/%ss/%ss  (labctl %s / %s / %s faster)\n' "$n" \
    "$(fig tfapply-$n)" "$(fig tfplan-$n)" "$(fig tfdestroy-$n)" "$peak" \
    "$(fig lapply-$n)" "$(fig lplan-$n)" "$(fig ldestroy-$n)" \
    "$(ratio "$(fig tfapply-$n)" "$(fig lapply-$n)")" "$(ratio "$(fig tfplan-$n)" "$(fig lplan-$n)")" "$(ratio "$(fig tfdestroy-$n)" "$(fig ldestroy-$n)")"
done
