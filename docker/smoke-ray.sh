#!/usr/bin/env bash
# End-to-end check of docker-compose's `ray` profile: build the Ray image, start a Ray head, 2 workers and the
# service pointed at the head, run a job of the example CIFs through the Ray executor, tear everything down.
# Prints one line per check.
#
#   docker/smoke-ray.sh     # no arguments; exit status 0 only when every check passed
#
# Needs a Docker engine with BuildKit, compose (the v2 plugin or docker-compose 1.28+), curl, python3, and exported
# models in models/<name>/<version>/. Building the image needs PyPI and the PyTorch CPU index (or the variables
# docker/Dockerfile documents, e.g. CRYSTAL_BASE_IMAGE); docker/smoke.sh covers those build set-ups.
# Optional environment:
#   CRYSTAL_RAY_IMAGE      tag to build and run (default crystal-service:ray)
#   CRYSTAL_RAY_PORT       host port of the service (default 8002)
#   CRYSTAL_SMOKE_TIMEOUT  seconds to wait for readiness and for the job (default 600)
set -Eeuo pipefail
cd "$(dirname "$0")/.."

project=crystal-smoke-ray
port=${CRYSTAL_RAY_PORT:-8002}
timeout_s=${CRYSTAL_SMOKE_TIMEOUT:-600}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/crystal-smoke-ray.XXXXXX")
passed=0 failed=0 started=0
pass() { passed=$((passed + 1)); printf 'PASS  %s\n' "$*"; }
fail() { failed=$((failed + 1)); printf 'FAIL  %s\n' "$*"; }
info() { printf '      %s\n' "$*"; }
die() { fail "$*"; exit 1; }

if docker compose version >/dev/null 2>&1; then
    compose=(docker compose -p "$project" --profile ray)
elif command -v docker-compose >/dev/null 2>&1; then
    compose=(docker-compose -p "$project" --profile ray)
else
    die "no docker compose (v2 plugin) or docker-compose 1.28+"
fi
services=(ray-head ray-worker crystal-ray)

cleanup() {
    local rc=$?
    trap - ERR
    set +e
    if ((started)); then
        if ((failed || rc)); then
            info "container logs (last 40 lines each):"
            "${compose[@]}" logs --no-color --tail 40 2>&1 | sed 's/^/      | /'
        fi
        "${compose[@]}" down --volumes --remove-orphans >"$tmp/down.log" 2>&1
        if [[ -z $("${compose[@]}" ps -q 2>/dev/null) ]]; then
            pass "teardown: compose project $project and its volumes removed"
        else
            fail "teardown: containers of $project are left"
        fi
    fi
    rm -rf "$tmp"
    printf '\nsmoke-ray: %d passed, %d failed, %d s\n' "$passed" "$failed" "$SECONDS"
    if ((failed || rc)); then
        echo "smoke-ray: FAILED"
        exit 1
    fi
    echo "smoke-ray: OK"
    exit 0
}
trap cleanup EXIT
trap 'fail "unexpected error (exit $?) at line $LINENO: $BASH_COMMAND"' ERR
trap 'exit 130' INT TERM

ls models/*/*/manifest.json >/dev/null 2>&1 || die "no exported models in models/<name>/<version>/"

# --- build and start ---------------------------------------------------------------------------------------------
if DOCKER_BUILDKIT=1 COMPOSE_DOCKER_CLI_BUILD=1 "${compose[@]}" build ray-head >"$tmp/build.log" 2>&1; then
    pass "build: ${CRYSTAL_RAY_IMAGE:-crystal-service:ray} (docker/Dockerfile with EXTRAS=ray)"
else
    tail -n 30 "$tmp/build.log" | sed 's/^/      | /'
    die "build failed"
fi
started=1
CRYSTAL_RAY_PORT=$port "${compose[@]}" up -d --scale ray-worker=2 "${services[@]}" >"$tmp/up.log" 2>&1 \
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
curl -fsS "$url/v1/jobs/$job/results" >"$tmp/results.csv"
rows=$(($(wc -l <"$tmp/results.csv") - 1))
if ((rows >= total)); then
    pass "results: $rows CSV row(s) for $total file(s)"
else
    fail "results: $rows CSV row(s) for $total file(s)"
fi
