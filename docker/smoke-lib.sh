# shellcheck shell=bash
# The part of the Docker smoke checks that docker/smoke.sh and docker/smoke-ray.sh share: pass/fail reporting,
# teardown on exit, finding a docker CLI with BuildKit and a compose, the models to serve, a base image (built
# with docker/local-base.sh where no registry answers), a local torch wheel and pip's CA bundle, then the build.
#
# Sourced, not run. The caller sets, before sourcing:
#   smoke_name        name printed in the summary line (smoke, smoke-ray)
#   project           compose project name
#   image             tag to build
#   build_log         where the build's log goes
#   extra_build_args  array of further `docker build` arguments (e.g. --build-arg EXTRAS=ray); may be empty
# and gets: docker, build, compose (arrays, compose bound to $project and docker-compose.yml), manifests, base,
# tmp (removed on exit), started (set it to 1 once containers run: teardown then brings them down).
# shellcheck disable=SC2034 # the variables set here are read by the sourcing script

default_base=$(sed -n 's/^ARG BASE_IMAGE=//p' docker/Dockerfile)
base=${CRYSTAL_BASE_IMAGE:-$default_base}
local_base=crystal-base:local
torch_version=$(sed -n 's/^ARG TORCH_VERSION=//p' docker/Dockerfile)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/crystal-$smoke_name.XXXXXX")

passed=0 failed=0 started=0
copied_wheels=()
docker=() compose=()
pass() { passed=$((passed + 1)); printf 'PASS  %s\n' "$*"; }
fail() { failed=$((failed + 1)); printf 'FAIL  %s\n' "$*"; }
info() { printf '      %s\n' "$*"; }
die() { fail "$*"; exit 1; }
indent() { sed 's/^/      | /'; }

cleanup() {
    local rc=$?
    trap - ERR
    set +e
    if ((started)); then
        if ((failed || rc)); then
            info "container logs (last 60 lines):"
            "${compose[@]}" logs --no-color --tail 60 2>&1 | indent
        fi
        "${compose[@]}" down --volumes --remove-orphans >"$tmp/down.log" 2>&1
        if [[ -z $("${compose[@]}" ps -q 2>/dev/null) ]]; then
            pass "teardown: compose project $project and its volumes removed"
        else
            fail "teardown: containers of $project are left"
            indent <"$tmp/down.log"
        fi
    fi
    rm -f "${copied_wheels[@]}"
    rm -rf "$tmp"
    printf '\n%s: %d passed, %d failed, %d s\n' "$smoke_name" "$passed" "$failed" "$SECONDS"
    if ((failed || rc)); then
        echo "$smoke_name: FAILED"
        exit 1
    fi
    echo "$smoke_name: OK"
    exit 0
}
trap cleanup EXIT
trap 'fail "unexpected error (exit $?) at line $LINENO: $BASH_COMMAND"' ERR
trap 'exit 130' INT TERM

# --- tools -------------------------------------------------------------------------------------------------------
# BuildKit is needed for the build secret. CLIs from 23.0 on only reach it through the buildx plugin; older ones
# have it built in. Take the first docker on PATH that can build with it.
while read -r candidate; do
    "$candidate" version --format '{{.Server.Version}}' >/dev/null 2>&1 || continue
    if "$candidate" buildx version >/dev/null 2>&1; then
        docker=("$candidate") build=("$candidate" buildx build --load)
        break
    fi
    client=$("$candidate" version --format '{{.Client.Version}}' 2>/dev/null || echo 0)
    if ((${client%%.*} < 23)); then
        docker=("$candidate") build=(env DOCKER_BUILDKIT=1 "$candidate" build)
        break
    fi
done < <(type -ap docker | xargs -r -n1 readlink -f | awk '!seen[$0]++')
((${#docker[@]})) || die "docker: no CLI on PATH reaches a running engine with BuildKit (install the buildx plugin)"
pass "docker: ${build[*]} (engine $("${docker[@]}" version --format '{{.Server.Version}}'))"

if "${docker[@]}" compose version >/dev/null 2>&1; then
    compose=("${docker[@]}" compose)
elif command -v docker-compose >/dev/null; then
    compose=(docker-compose)
else
    die "compose: neither \`docker compose\` nor docker-compose is installed"
fi
pass "compose: ${compose[*]} ($("${compose[@]}" version --short 2>/dev/null || "${compose[@]}" version | head -1))"
compose+=(--project-name "$project" --file docker-compose.yml)
command -v curl >/dev/null || die "curl is not installed"

shopt -s nullglob
manifests=(models/*/*/manifest.json)
shopt -u nullglob
((${#manifests[@]})) || die "models: no models/<name>/<version>/manifest.json to serve; export models first"
pass "models: ${#manifests[@]} in models/ (${manifests[*]%/manifest.json})"

# --- base image --------------------------------------------------------------------------------------------------
if "${docker[@]}" image inspect "$base" >/dev/null 2>&1; then
    pass "base image: $base (present)"
elif timeout 180 "${docker[@]}" pull --quiet "$base" >"$tmp/pull.log" 2>&1; then
    pass "base image: $base (pulled)"
elif [[ $base != "$default_base" ]]; then
    indent <"$tmp/pull.log"
    die "base image: $base is not present and cannot be pulled"
elif "${docker[@]}" image inspect "$local_base" >/dev/null 2>&1; then
    base=$local_base
    pass "base image: $default_base cannot be pulled; using $local_base, built earlier"
else
    info "$default_base cannot be pulled ($(tail -1 "$tmp/pull.log")); building $local_base"
    start=$SECONDS
    if DOCKER=${docker[0]} docker/local-base.sh "$local_base" >"$tmp/local-base.log" 2>&1; then
        base=$local_base
        pass "base image: built $local_base with docker/local-base.sh ($((SECONDS - start)) s)"
    else
        tail -20 "$tmp/local-base.log" | indent
        die "base image: docker/local-base.sh failed"
    fi
fi

# --- build -------------------------------------------------------------------------------------------------------
build_args=(--build-arg "BASE_IMAGE=$base")

# A CPU torch wheel on the host spares the build the PyTorch index (and works where that index is blocked).
py_tag=$("${docker[@]}" run --rm "$base" python3 -c 'import sys; print("cp%d%d" % sys.version_info[:2])')
arch=$("${docker[@]}" info --format '{{.Architecture}}')
wheel_dirs=()
if [[ -n ${CRYSTAL_WHEELS_DIR:-} ]]; then
    wheel_dirs=("$CRYSTAL_WHEELS_DIR")
elif command -v python3 >/dev/null; then
    read -ra wheel_dirs <<<"$({
        python3 -m pip config list 2>/dev/null | sed -n "s/^[^=]*find-links='\(.*\)'$/\1/p"
        echo "${PIP_FIND_LINKS:-}"
    } | tr ' ' '\n' | sed 's|^file://||' | awk 'NF && !seen[$0]++' | tr '\n' ' ')"
fi
wheel=""
for dir in docker/wheels "${wheel_dirs[@]}"; do
    for candidate in "$dir/torch-$torch_version-$py_tag-$py_tag-"*"_$arch.whl" \
        "$dir/torch-${torch_version/+/%2B}-$py_tag-$py_tag-"*"_$arch.whl"; do
        [[ -f $candidate ]] && wheel=$candidate && break 2
    done
done
if [[ -n $wheel ]]; then
    target=docker/wheels/$(basename "$wheel")
    if [[ ! -e $target ]]; then
        ln "$wheel" "$target" 2>/dev/null || cp "$wheel" "$target"
        copied_wheels+=("$target")
    fi
    build_args+=(--build-arg "TORCH_INDEX_URL=")
    pass "torch wheel: $wheel (no PyTorch index needed)"
else
    info "torch $torch_version: no local wheel for $py_tag/$arch; the build uses the PyTorch CPU index"
fi

ca=${CRYSTAL_CA_BUNDLE:-}
if [[ -z $ca ]] && command -v python3 >/dev/null; then
    ca=$(python3 -m pip config list 2>/dev/null | sed -n "s/^[^=]*\.cert='\(.*\)'$/\1/p" | head -1)
fi
for candidate in "$ca" "${PIP_CERT:-}" /etc/ssl/certs/ca-certificates.crt /etc/pki/tls/certs/ca-bundle.crt; do
    if [[ -n $candidate && -s $candidate ]]; then
        build_args+=(--secret "id=pip_ca,src=$candidate")
        info "pip in the build also trusts $candidate"
        break
    fi
done

info "building $image on $base ${extra_build_args[*]} (log: $build_log)"
start=$SECONDS
if "${build[@]}" --progress=plain -f docker/Dockerfile "${build_args[@]}" "${extra_build_args[@]}" -t "$image" . >"$build_log" 2>&1; then
    size=$("${docker[@]}" image inspect --format '{{.Size}}' "$image")
    pass "build: $image in $((SECONDS - start)) s, $((size / 1000000)) MB"
else
    tail -40 "$build_log" | indent
    die "build: $image failed (log: $build_log)"
fi

