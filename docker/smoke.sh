#!/usr/bin/env bash
# End-to-end check of the Docker deployment: build the CPU image, start it with compose, predict rock-salt NaCl,
# check the container's user and health, tear everything down. Prints one line per check.
#
#   docker/smoke.sh        # no arguments; exit status 0 only when every check passed
#
# Needs a Docker engine with BuildKit, compose (the v2 plugin or docker-compose 1.28+), curl, and exported models
# in models/<name>/<version>/. When the default base image cannot be pulled (no registry), it builds
# crystal-base:local with docker/local-base.sh (root and debootstrap) and builds on that.
# Optional environment:
#   CRYSTAL_BASE_IMAGE     base image (default: the official slim Python image, see docker/Dockerfile)
#   CRYSTAL_IMAGE          tag to build and run (default crystal-service:cpu)
#   CRYSTAL_WHEELS_DIR     folder holding the CPU torch wheel, for builds that cannot reach the PyTorch index
#                          (default: the host pip's find-links folders)
#   CRYSTAL_CA_BUNDLE      CA bundle that pip trusts in the build (default: the host pip's `cert`, else the
#                          system bundle)
#   CRYSTAL_SMOKE_TIMEOUT  seconds to wait for readiness and for the healthcheck (default 300)
set -Eeuo pipefail
cd "$(dirname "$0")/.."

project=crystal-smoke
smoke_name=smoke
image=${CRYSTAL_IMAGE:-crystal-service:cpu}
timeout_s=${CRYSTAL_SMOKE_TIMEOUT:-300}
build_log=${TMPDIR:-/tmp}/crystal-smoke-build.log
extra_build_args=()
# shellcheck source=docker/smoke-lib.sh
source docker/smoke-lib.sh

probe=$("${docker[@]}" image inspect --format '{{with .Config.Healthcheck}}{{join .Test " "}}{{end}}' "$image")
if [[ $probe == *healthcheck.py* ]]; then
    pass "image HEALTHCHECK: ${probe#CMD }"
else
    fail "image HEALTHCHECK: '${probe}' does not probe /readyz"
fi
user=$("${docker[@]}" image inspect --format '{{.Config.User}}' "$image")
if [[ -n $user && ${user%%:*} != 0 && ${user%%:*} != root ]]; then
    pass "image user: $user (not root)"
else
    fail "image user: '${user}' is root"
fi

baked=$("${docker[@]}" run --rm "$image" sh -c 'cd /app/models && ls -d */*/manifest.json' | sort | tr '\n' ' ')
expected=$(printf '%s\n' "${manifests[@]#models/}" | sort | tr '\n' ' ')
if [[ $baked == "$expected" ]]; then
    pass "baked-in models: /app/models in the image holds the same ${#manifests[@]} model folder(s) as models/"
else
    fail "baked-in models: image has '$baked', models/ has '$expected'"
fi

# --- run ---------------------------------------------------------------------------------------------------------
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' \
    2>/dev/null || echo $((20000 + RANDOM % 10000)))
export CRYSTAL_IMAGE=$image CRYSTAL_BIND=127.0.0.1 CRYSTAL_PORT=$port CRYSTAL_MODELS_PATH=./models
export CRYSTAL_ENV_FILE=${CRYSTAL_ENV_FILE:-docker/service.env.example}
url=http://127.0.0.1:$port
started=1
if "${compose[@]}" up --detach --no-build crystal >"$tmp/up.log" 2>&1; then
    cid=$("${compose[@]}" ps -q crystal)
    pass "compose up: container ${cid:0:12} on $url (models mounted from ./models, settings $CRYSTAL_ENV_FILE)"
else
    indent <"$tmp/up.log"
    die "compose up failed"
fi

running() { [[ $("${docker[@]}" inspect --format '{{.State.Running}}' "$cid" 2>/dev/null) == true ]]; }
# Field of a JSON document (dotted path) read with the container's own Python, so the host needs no jq.
json_get() {
    "${docker[@]}" exec -i "$cid" python -c '
import json, sys
value = json.load(sys.stdin)
for key in sys.argv[1].split("."):
    value = value[key]
print(value)' "$2" <"$1"
}
wait_ready() {
    local start=$SECONDS codes="" code
    while :; do
        code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$url/readyz" || true)
        [[ $code != 000 && $codes != *"$code"* ]] && codes+="$code "
        [[ $code == 200 ]] && break
        running || die "readiness: the container stopped (readyz answers seen: ${codes:-none})"
        ((SECONDS - start < timeout_s)) || die "readiness: /readyz not 200 after $timeout_s s (last answer $code)"
        sleep 2
    done
    pass "GET /readyz: 200 after $((SECONDS - start)) s (answers seen: ${codes% })"
}

wait_ready

code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$url/healthz" || true)
if [[ $code == 200 ]]; then pass "GET /healthz: 200"; else fail "GET /healthz: $code"; fi

# Every model loaded and served as CRYSTAL_BACKEND=auto decides on a CPU: onnxruntime where it has model.onnx.
curl -s --max-time 10 "$url/v1/models" >"$tmp/models.json" || true
served=$("${docker[@]}" exec -i "$cid" python -c '
import json, sys
body = json.load(sys.stdin)
print(len(body["models"]), len(body["refused"]), " ".join(sorted({m["backend"] + "/" + m["device"] for m in body["models"]})),
      all(m["batch_invariant"] for m in body["models"]))' <"$tmp/models.json" 2>/dev/null || echo "unreadable")
if [[ $served == "${#manifests[@]} 0 onnx/cpu True" ]]; then
    pass "GET /v1/models: ${#manifests[@]} models on onnx/cpu, none refused, all batch-invariant"
else
    fail "GET /v1/models: expected ${#manifests[@]} models on onnx/cpu, none refused, all batch-invariant; got '$served'"
fi

# Rock-salt NaCl, conventional cubic cell written out in P1 (a = 5.69 Å as relaxed in the Materials Project).
cat >"$tmp/NaCl.cif" <<'EOF'
data_NaCl
_symmetry_space_group_name_H-M   'P 1'
_symmetry_Int_Tables_number   1
_cell_length_a   5.69
_cell_length_b   5.69
_cell_length_c   5.69
_cell_angle_alpha   90
_cell_angle_beta   90
_cell_angle_gamma   90
loop_
 _symmetry_equiv_pos_as_xyz
  'x, y, z'
loop_
 _atom_site_type_symbol
 _atom_site_label
 _atom_site_fract_x
 _atom_site_fract_y
 _atom_site_fract_z
 _atom_site_occupancy
  Na  Na1  0.0  0.0  0.0  1
  Na  Na2  0.0  0.5  0.5  1
  Na  Na3  0.5  0.0  0.5  1
  Na  Na4  0.5  0.5  0.0  1
  Cl  Cl1  0.5  0.5  0.5  1
  Cl  Cl2  0.5  0.0  0.0  1
  Cl  Cl3  0.0  0.5  0.0  1
  Cl  Cl4  0.0  0.0  0.5  1
EOF
code=$(curl -s -o "$tmp/predict.json" -w '%{http_code}' --max-time 60 \
    -F "file=@$tmp/NaCl.cif;type=chemical/x-cif" "$url/v1/predict" || true)
if [[ $code == 200 ]]; then
    pass "POST /v1/predict NaCl.cif: 200"
else
    head -c 2000 "$tmp/predict.json" 2>/dev/null | indent
    die "POST /v1/predict NaCl.cif: $code"
fi
head -c 1500 "$tmp/predict.json" | indent
echo

# The container's own Python reads the JSON, so the host needs no jq. One line per property: name, value or error.
"${docker[@]}" exec -i "$cid" python -c '
import json, math, sys
predictions = json.load(sys.stdin).get("predictions", {})
for name in ("formation_energy_per_atom", "band_gap"):
    value = predictions.get(name, {}).get("value") if isinstance(predictions.get(name), dict) else None
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    print(name, value if ok else "missing")
' <"$tmp/predict.json" >"$tmp/values" || true
fe=$(awk '$1 == "formation_energy_per_atom" {print $2}' "$tmp/values")
gap=$(awk '$1 == "band_gap" {print $2}' "$tmp/values")
# Loose physical checks against the Materials Project (PBE) values, -2.0 eV/atom and 5.0 eV: NaCl is a stable,
# wide-gap ionic solid, so a sign error or a mixed-up property fails here.
if [[ $fe != missing && -n $fe ]] && awk -v v="$fe" 'BEGIN { exit !(v < -0.5 && v > -4) }'; then
    pass "formation_energy_per_atom: $fe eV/atom (Materials Project: -2.0; expected in (-4, -0.5))"
else
    fail "formation_energy_per_atom: ${fe:-missing} (expected a number in (-4, -0.5) eV/atom)"
fi
if [[ $gap != missing && -n $gap ]] && awk -v v="$gap" 'BEGIN { exit !(v > 1 && v < 10) }'; then
    pass "band_gap: $gap eV (Materials Project: 5.0; expected in (1, 10))"
else
    fail "band_gap: ${gap:-missing} (expected a number in (1, 10) eV)"
fi

# --- container hardening -----------------------------------------------------------------------------------------
uid=$("${docker[@]}" exec "$cid" cat /proc/1/status | awk '/^Uid:/ {print $2}')
if [[ -n $uid && $uid != 0 ]]; then
    pass "non-root: the service process runs as uid $uid ($("${docker[@]}" exec "$cid" id -un 2>/dev/null || echo '?'))"
else
    fail "non-root: the service process runs as uid '${uid}'"
fi
# shellcheck disable=SC2016 # expanded by the container's shell
if "${docker[@]}" exec "$cid" sh -c 'f=/data/.smoke-$$ && : >"$f" && rm "$f"'; then
    pass "data volume: /data is writable by the service user"
else
    fail "data volume: /data is not writable by the service user"
fi
if "${docker[@]}" exec "$cid" sh -c ': >/app/.smoke' 2>/dev/null; then
    fail "read-only root: the service user can write /app"
else
    pass "read-only root: /app cannot be written"
fi

start=$SECONDS
while :; do
    health=$("${docker[@]}" inspect --format '{{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}' "$cid")
    [[ $health == healthy || $health == unhealthy || $health == none ]] && break
    ((SECONDS - start < timeout_s)) || break
    sleep 2
done
if [[ $health == healthy ]]; then
    last=$("${docker[@]}" inspect --format '{{range .State.Health.Log}}{{.Output}}{{end}}' "$cid" | grep . | tail -1)
    pass "healthcheck: healthy $((SECONDS - start)) s after ready (last probe: $last)"
else
    fail "healthcheck: $health"
fi

# --- persistent state --------------------------------------------------------------------------------------------
# A batch job lives in /data (the compose volume): it must survive recreating the container.
code=$(curl -s -o "$tmp/job.json" -w '%{http_code}' --max-time 60 \
    -F "files=@$tmp/NaCl.cif;type=chemical/x-cif" "$url/v1/jobs" || true)
if [[ $code == 202 ]] && job=$(json_get "$tmp/job.json" id); then
    start=$SECONDS
    while state=$(curl -s --max-time 5 "$url/v1/jobs/$job" >"$tmp/job.json" && json_get "$tmp/job.json" state); do
        [[ $state == queued || $state == running ]] || break
        ((SECONDS - start < timeout_s)) || break
        sleep 1
    done
    if [[ $state == "done" ]]; then
        ok=$(json_get "$tmp/job.json" counts.ok || echo '?')
        pass "POST /v1/jobs: 202, job $job done ($ok structure predicted)"
    else
        fail "POST /v1/jobs: job $job is '$state'"
    fi
    if "${docker[@]}" exec "$cid" test -s /data/jobs.sqlite3; then
        pass "data volume: the job store is /data/jobs.sqlite3"
    else
        fail "data volume: no /data/jobs.sqlite3 after a job"
    fi
    old_cid=$cid
    "${compose[@]}" up --detach --no-build --force-recreate crystal >"$tmp/up.log" 2>&1 || indent <"$tmp/up.log"
    cid=$("${compose[@]}" ps -q crystal)
    [[ -n $cid && $cid != "$old_cid" ]] || die "recreate: compose did not replace container ${old_cid:0:12}"
    info "recreated the container (${old_cid:0:12} -> ${cid:0:12}), same volume"
    wait_ready
    code=$(curl -s -o "$tmp/job.json" -w '%{http_code}' --max-time 10 "$url/v1/jobs/$job" || true)
    if [[ $code == 200 ]] && [[ $(json_get "$tmp/job.json" state || true) == "done" ]]; then
        pass "persistence: job $job is still there, done, in the new container"
    else
        fail "persistence: GET /v1/jobs/$job answers $code after recreating the container"
    fi
else
    head -c 1000 "$tmp/job.json" 2>/dev/null | indent
    fail "POST /v1/jobs: $code"
fi
