#!/usr/bin/env bash
# AWS provider benchmark (issue #6): a cohort of STUDENTS (default 100), each with an S3
# bucket, an IAM user with an access key, a security group and a VM, applied to and
# destroyed from the AWS API emulator (moto's server) on loopback. Prints wall time, peak
# memory, the requests the emulator served (from its access log) and requests per second,
# with the concurrency used. No peer: Terraform's AWS provider cannot be fetched here
# (no access to registry.terraform.io).
#
# Then (issue #14, as root, with BOOTED students, default 20) the booted run: the same lab
# with workers and both smoke checks, every VM booted for real by the test VM runner
# (systemd + cloud-init in systemd-nspawn). apply → all verified, split into the apply
# (labctl and the emulator), booting (after apply until cloud-init is done in every VM)
# and verifying; labctl's own CPU time and peak memory per step. BOOTED=0 skips it.
#
# Then (issue #19, NOTEBOOKS students, default 4) the notebook run: booted VMs with a
# notebook (JupyterLab, Dask scheduler + 2 workers, PySpark) and the `notebook` check: the
# apply (building the lab's Python environment and its wheelhouse here, uploading it),
# booting (each VM installing the wheelhouse from the emulator), verifying (the notebook
# run through a tunnel to each student's Jupyter), the wheelhouse's size and a VM's
# environment on disk. No peer: the VMs reach no package index to install from PyPI.
# NOTEBOOKS=0 skips it.
#
#   bash bench/aws.sh                 # STUDENTS=100 PARALLELISM=32 CONCURRENCY=16 BOOTED=20 NOTEBOOKS=4
set -euo pipefail
cd "$(dirname "$0")/.."
STUDENTS=${STUDENTS:-100}
PARALLELISM=${PARALLELISM:-32}
CONCURRENCY=${CONCURRENCY:-16}
BOOTED=${BOOTED:-20}
NOTEBOOKS=${NOTEBOOKS:-4}
MOTO_PYTHON=$(bash testing/moto/install.sh)
export MOTO_PYTHON
cargo build --release --quiet --workspace
LABCTL="$PWD/target/release/labctl"
WORK=$(mktemp -d)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
MOTO_IAM_LOAD_MANAGED_POLICIES=true MOTO_AMIS_PATH="$PWD/testing/moto-amis.json" testing/moto/moto-server -H 127.0.0.1 -p "$PORT" >"$WORK/moto.log" 2>&1 &
MOTO=$!
RUNNER_IN=
trap '[ -n "$RUNNER_IN" ] && exec {RUNNER_IN}>&-; wait $RUNNER 2>/dev/null; kill $MOTO 2>/dev/null; rm -rf "$WORK"' EXIT
until curl -s "http://127.0.0.1:$PORT/" >/dev/null; do sleep 0.2; done
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_EC2_METADATA_DISABLED=true NO_COLOR=1
source bench/roster.sh
roster "$STUDENTS" >"$WORK/roster.csv"
cat >"$WORK/lab.toml" <<LAB
[lab]
name = "bench-aws"

[provider.aws]
region = "eu-west-1"
endpoint = "http://127.0.0.1:$PORT"
concurrency = $CONCURRENCY

[[cohort]]
name = "all"
roster = "roster.csv"

[student]
bucket = {}
compute = { instance_type = "t3.medium", disk_gb = 20 }
LAB
"$LABCTL" validate "$WORK/lab.toml" >/dev/null

requests() { grep -c '" [0-9][0-9][0-9] ' "$WORK/moto.log" || true; }
step() { # NAME ARGS...: runs labctl; prints wall time, labctl's CPU time and peak RSS, requests and requests/s
  local name=$1; shift
  local before; before=$(requests)
  /usr/bin/time -f "%e %U %S %M" -o "$WORK/t" "$LABCTL" "$@" >"$WORK/out" 2>&1 || { tail -20 "$WORK/out"; exit 1; }
  read -r secs user sys kib <"$WORK/t"
  local n=$(( $(requests) - before ))
  printf '%-10s %7ss %6ss CPU %6s MiB %7s requests %8s requests/s\n' "$name" "$secs" "$(python3 -c "print(round($user+$sys,2))")" "$((kib / 1024))" "$n" "$(python3 -c "print(round($n/max($secs,0.001)))")"
}
echo "aws provider against moto $("$MOTO_PYTHON" -c 'import moto; print(moto.__version__)') on loopback: $STUDENTS students x (bucket + IAM user + key + security group + VM), shared VPC, artifacts and instance profile"
echo "engine parallelism $PARALLELISM, $CONCURRENCY requests in flight per AWS service, $(nproc) cores"
step apply apply "$WORK/lab.toml" --yes --parallelism "$PARALLELISM"
tail -1 "$WORK/out"
step re-plan plan "$WORK/lab.toml"
tail -1 "$WORK/out"
step destroy destroy "$WORK/lab.toml" --yes --parallelism "$PARALLELISM"
tail -1 "$WORK/out"

[ "$BOOTED" -gt 0 ] || exit 0
IMAGE=$(bash testing/vm-runner/image.sh)
roster "$BOOTED" >"$WORK/roster.csv"
sed -i 's/^name = "bench-aws"/name = "bench-booted"/' "$WORK/lab.toml"
cat >>"$WORK/lab.toml" <<LAB
workers = { mapreduce = { workers = 2 }, scheduler = { workers = 2, slots = 2 } }
smoke = ["wordcount", "hpsearch"]
LAB
sed -i "s|^concurrency = .*|&\nssh_config = \"ssh_config\"|" "$WORK/lab.toml"
exec {RUNNER_IN}> >(exec target/release/labctl-vm-runner "http://127.0.0.1:$PORT" eu-west-1 "$IMAGE" "$WORK/ssh_config" >"$WORK/runner.log" 2>&1)
RUNNER=$!
echo
echo "booted run: $BOOTED students x (bucket + IAM user + key + security group + VM running 2+2 workers), every VM booted by the test VM runner (systemd-nspawn), both smoke checks"
start=$(date +%s.%N)
step apply apply "$WORK/lab.toml" --yes --no-verify --parallelism "$PARALLELISM"
applied=$(date +%s.%N)
until [ "$(grep -c '^booted ' "$WORK/runner.log" || true)" -ge "$BOOTED" ]; do
  grep '^error ' "$WORK/runner.log" && exit 1
  sleep 0.1
done
booted=$(date +%s.%N)
python3 - "$WORK/runner.log" "$applied" "$booted" <<'PY'
import sys
times = sorted(float(l.split()[2]) for l in open(sys.argv[1]) if l.startswith("booted "))
print(f"booting    {float(sys.argv[3]) - float(sys.argv[2]):6.2f}s after apply; each VM to cloud-init done: median {times[len(times)//2]:.1f}s, max {times[-1]:.1f}s")
PY
step verify verify "$WORK/lab.toml"
tail -1 "$WORK/out"
done_at=$(date +%s.%N)
python3 -c "print(f'apply → all verified: {$done_at - $start:.1f}s')"
step destroy destroy "$WORK/lab.toml" --yes --parallelism "$PARALLELISM"
tail -1 "$WORK/out"

[ "$NOTEBOOKS" -gt 0 ] || exit 0
roster "$NOTEBOOKS" >"$WORK/roster.csv"
sed -i 's/^name = "bench-booted"/name = "bench-notebooks"/; s/^bucket = {}/bucket = { datasets = ["corpus"] }/' "$WORK/lab.toml"
sed -i 's/^smoke = .*/smoke = ["notebook"]\nnotebook = { dask_workers = 2 }/' "$WORK/lab.toml"
printf '\n[datasets.corpus]\nkind = "text"\nsize_mb = 1\n' >>"$WORK/lab.toml"
before=$(grep -c '^booted ' "$WORK/runner.log" || true)
echo
echo "notebook run: $NOTEBOOKS students x VM with JupyterLab + Dask scheduler and 2 workers + PySpark, installed from the lab's wheelhouse (pip cache warm here), the notebook check"
start=$(date +%s.%N)
step apply apply "$WORK/lab.toml" --yes --no-verify --parallelism "$PARALLELISM"
grep 'notebook_stack' "$WORK/out" | sed 's/^ */  /'
applied=$(date +%s.%N)
until [ "$(grep -c '^booted ' "$WORK/runner.log" || true)" -ge $((before + NOTEBOOKS)) ]; do
  grep '^error ' "$WORK/runner.log" && exit 1
  sleep 0.1
done
booted=$(date +%s.%N)
python3 - "$WORK/runner.log" "$applied" "$booted" "$before" <<'PY'
import sys
lines = [l for l in open(sys.argv[1]) if l.startswith("booted ")][int(sys.argv[4]):]
times = sorted(float(l.split()[2]) for l in lines)
print(f"booting    {float(sys.argv[3]) - float(sys.argv[2]):6.2f}s after apply; each VM to cloud-init done (wheelhouse installed): median {times[len(times)//2]:.1f}s, max {times[-1]:.1f}s")
PY
step verify verify "$WORK/lab.toml"
tail -1 "$WORK/out"
done_at=$(date +%s.%N)
python3 -c "print(f'apply → all verified: {$done_at - $start:.1f}s')"
echo "wheelhouse $(du -m "$WORK/.labctl/bench-notebooks.python/wheelhouse.tar" | cut -f1) MB (built once per lab); environment on each VM $(du -sm "$(ls -d /tmp/labctl-vm-runner-*/*/upper/opt/labctl/python 2>/dev/null | head -1)" 2>/dev/null | cut -f1) MB"
step destroy destroy "$WORK/lab.toml" --yes --parallelism "$PARALLELISM"
tail -1 "$WORK/out"
