#!/usr/bin/env bash
# AWS provider benchmark (issue #6): a cohort of STUDENTS (default 100), each with an S3
# bucket, an IAM user with an access key, a security group and a VM, applied to and
# destroyed from the AWS API emulator (moto's server) on loopback. Prints wall time, peak
# memory, the requests the emulator served (from its access log) and requests per second,
# with the concurrency used. No peer: Terraform's AWS provider cannot be fetched here
# (no access to registry.terraform.io).
#
#   bash bench/aws.sh                 # STUDENTS=100 PARALLELISM=32 CONCURRENCY=16
set -euo pipefail
cd "$(dirname "$0")/.."
STUDENTS=${STUDENTS:-100}
PARALLELISM=${PARALLELISM:-32}
CONCURRENCY=${CONCURRENCY:-16}
VENV=${XDG_CACHE_HOME:-$HOME/.cache}/labctl-test/venv
if [ ! -x "$VENV/bin/moto_server" ]; then
  python3 -m venv "$VENV" && "$VENV/bin/pip" install --quiet --disable-pip-version-check "moto[server]"
fi
cargo build --release --quiet --workspace
LABCTL="$PWD/target/release/labctl"
WORK=$(mktemp -d)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
MOTO_IAM_LOAD_MANAGED_POLICIES=true MOTO_AMIS_PATH="$PWD/testing/moto-amis.json" "$VENV/bin/moto_server" -H 127.0.0.1 -p "$PORT" >"$WORK/moto.log" 2>&1 &
MOTO=$!
trap 'kill $MOTO 2>/dev/null; rm -rf "$WORK"' EXIT
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
step() { # NAME ARGS...: runs labctl; prints wall time, peak RSS, requests and requests/s
  local name=$1; shift
  local before; before=$(requests)
  /usr/bin/time -f "%e %M" -o "$WORK/t" "$LABCTL" "$@" >"$WORK/out" 2>&1 || { tail -20 "$WORK/out"; exit 1; }
  read -r secs kib <"$WORK/t"
  local n=$(( $(requests) - before ))
  printf '%-10s %7ss %6s MiB %7s requests %8s requests/s\n' "$name" "$secs" "$((kib / 1024))" "$n" "$(python3 -c "print(round($n/max($secs,0.001)))")"
}
echo "aws provider against moto $("$VENV/bin/pip" show moto 2>/dev/null | sed -n 's/^Version: //p') on loopback: $STUDENTS students x (bucket + IAM user + key + security group + VM), shared VPC, artifacts and instance profile"
echo "engine parallelism $PARALLELISM, $CONCURRENCY requests in flight per AWS service, $(nproc) cores"
step apply apply "$WORK/lab.toml" --yes --parallelism "$PARALLELISM"
tail -1 "$WORK/out"
step re-plan plan "$WORK/lab.toml"
tail -1 "$WORK/out"
step destroy destroy "$WORK/lab.toml" --yes --parallelism "$PARALLELISM"
tail -1 "$WORK/out"
