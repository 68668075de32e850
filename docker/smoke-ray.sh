#!/usr/bin/env bash
# End-to-end check of docker-compose's `ray` profile: build the Ray image, start a Ray head, 2 workers and the
# service pointed at the head, run a job of the example CIFs through the Ray executor, tear everything down.
# Prints one line per check.
#
#   docker/smoke-ray.sh     # no arguments; exit status 0 only when every check passed
#
# Needs what docker/smoke.sh needs (a Docker engine with BuildKit, compose v2 or docker-compose 1.28+, curl,
# python3, exported models in models/<name>/<version>/), and builds the image the same way, through
# docker/smoke-lib.sh: the official base image or crystal-base:local, a local torch wheel where the host has one.
# Optional environment (and those of docker/smoke.sh for the build):
#   CRYSTAL_RAY_IMAGE      tag to build and run (default crystal-service:ray)
#   CRYSTAL_RAY_PORT       host port of the service (default: a free one)
#   CRYSTAL_SMOKE_TIMEOUT  seconds to wait for readiness and for the job (default 600)
set -Eeuo pipefail
cd "$(dirname "$0")/.."

smoke_name=smoke-ray
project=crystal-smoke-ray
image=${CRYSTAL_RAY_IMAGE:-crystal-service:ray}
timeout_s=${CRYSTAL_SMOKE_TIMEOUT:-600}
build_log=${TMPDIR:-/tmp}/crystal-smoke-ray-build.log
extra_build_args=(--build-arg EXTRAS=ray)
# shellcheck source=docker/smoke-lib.sh
source docker/smoke-lib.sh
compose+=(--profile ray)
services=(ray-head ray-worker crystal-ray)

# --- start -------------------------------------------------------------------------------------------------------
port=${CRYSTAL_RAY_PORT:-$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
export CRYSTAL_RAY_IMAGE=$image CRYSTAL_BIND=127.0.0.1 CRYSTAL_RAY_PORT=$port CRYSTAL_MODELS_PATH=./models
started=1
"${compose[@]}" up --detach --no-build --scale ray-worker=2 "${services[@]}" >"$tmp/up.log" 2>&1 \
    || { sed 's/^/      | /' "$tmp/up.log"; die "compose up failed"; }
pass "up: ray-head, 2 x ray-worker, crystal-ray"

# --- the cluster and the service ---------------------------------------------------------------------------------
deadline=$((SECONDS + timeout_s))
until "${compose[@]}" exec -T ray-head ray status >"$tmp/status.txt" 2>&1 \
    && [[ $(grep -cE '^ *1 node_' "$tmp/status.txt") -ge 3 ]]; do
    ((SECONDS < deadline)) || { sed 's/^/      | /' "$tmp/status.txt"; die "the Ray cluster did not reach 3 nodes"; }
    sleep 3
done
pass "ray: head and 2 workers joined ($(grep -E 'CPU' "$tmp/status.txt" | head -n 1 | xargs))"

url=http://127.0.0.1:$port
until curl -fsS "$url/readyz" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || die "the service did not get ready in $timeout_s s"
    sleep 2
done
pass "service ready at $url"

# --- a job through the Ray executor ------------------------------------------------------------------------------
files=()
for cif in examples/*.cif; do files+=(-F "files=@$cif"); done
curl -fsS "${files[@]}" "$url/v1/jobs" >"$tmp/job.json" || die "POST /v1/jobs failed"
job=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["id"])' "$tmp/job.json")
while :; do
    curl -fsS "$url/v1/jobs/$job" >"$tmp/status.json"
    state=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["state"])' "$tmp/status.json")
    [[ $state == "done" || $state == "failed" || $state == "cancelled" ]] && break
    ((SECONDS < deadline)) || die "job $job still $state after $timeout_s s"
    sleep 1
done
summary=$(python3 -c 'import json, sys; s = json.load(open(sys.argv[1])); print(s["state"], s["executor"], s["counts"]["total"], s["counts"]["done"], s["counts"]["ok"])' "$tmp/status.json")
read -r state executor total finished ok <<<"$summary"
if [[ $state == "done" && $executor == ray && $finished == "$total" && $ok -ge 1 ]]; then
    pass "job $job: done on the Ray executor, $ok of $total file(s) predicted"
else
    fail "job $job: $summary (want: done ray, every file)"
fi
# CSV rows counted by a CSV reader (a quoted field may hold a line break); the default format is NDJSON.
curl -fsS "$url/v1/jobs/$job/results?format=csv" >"$tmp/results.csv"
rows=$(python3 -c 'import csv, sys; print(sum(1 for _ in csv.DictReader(open(sys.argv[1], newline=""))))' "$tmp/results.csv")
if ((rows >= total)); then
    pass "results: $rows CSV row(s) for $total file(s) ($(head -n 1 "$tmp/results.csv" | cut -c1-60)...)"
else
    fail "results: $rows CSV row(s) for $total file(s)"
    indent <"$tmp/results.csv"
fi
