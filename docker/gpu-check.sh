#!/usr/bin/env bash
# shellcheck disable=SC2317  # the step functions are called through `step`, which shellcheck cannot follow
# The GPU path's first run, one command: build the GPU image and prove the service on this host's GPU.
#
#   docker/gpu-check.sh [docker build options...]      # e.g. --secret id=pip_ca,src=ca.crt --build-arg INDEX_URL=...
#
# Needs: an NVIDIA GPU of compute capability 7.5 or newer, a driver for CUDA 13 (nvidia-smi shows "CUDA Version: 13.0"
# or higher), Docker with BuildKit and the NVIDIA Container Toolkit, and the shared data archive
# (../shared/data/mp-crystals.tar.gz, or CRYSTAL_SHARED_ARCHIVE=path). Run it from anywhere in the repository.
#
# Steps (each PASS or FAIL; the exit status is 0 only when every step passed):
#   1. host: GPU, driver, compute capability, the CUDA version the driver supports (nvidia-smi)
#   2. build crystal-service:gpu and its gpu-check target (pytest and tests/ on top); the build itself refuses torch
#      and onnxruntime builds for different CUDA majors or with a CUDA library missing
#   3. inside the image: the GPU-marked tests (pytest -m gpu); a skipped test counts as a failure
#   4. inside the image: python -m service.gpucheck run: device and builds, the service on the GPU and on the CPU
#      (torch and onnx backends, each model's provider), answers for NaCl and GPU_CHECK_CIFS (200) shared CIFs
#      compared (max |diff| per property, tolerance 1e-4), each file alone vs in batches, throughput at batch 1 and 256
#
# Settings (environment): CRYSTAL_GPU_IMAGE (crystal-service:gpu), GPU_CHECK_DEVICE (0: the host GPU index),
# GPU_CHECK_CIFS (200), CRYSTAL_SHARED_ARCHIVE. The full log is also written to GPU_CHECK_LOG (gpu-check.log).
set -uo pipefail

cd "$(dirname "$0")/.." || exit 2
IMAGE=${CRYSTAL_GPU_IMAGE:-crystal-service:gpu}
CHECK_IMAGE=${IMAGE}-check
DEVICE=${GPU_CHECK_DEVICE:-0}
N_CIFS=${GPU_CHECK_CIFS:-200}
ARCHIVE=${CRYSTAL_SHARED_ARCHIVE:-../shared/data/mp-crystals.tar.gz}
LOG=${GPU_CHECK_LOG:-gpu-check.log}
BUILD_OPTIONS=("$@")

exec > >(tee "$LOG") 2>&1
results=()
failed=0

step() {  # step NAME COMMAND...: run one step, record PASS or FAIL
    local name=$1
    shift
    echo
    echo "=== $name"
    if "$@"; then
        results+=("PASS  $name")
    else
        results+=("FAIL  $name")
        failed=1
    fi
}

host_gpu() {
    if ! command -v nvidia-smi > /dev/null; then
        echo "nvidia-smi not found: no NVIDIA driver on this host"
        return 1
    fi
    nvidia-smi --query-gpu=index,name,driver_version,compute_cap,memory.total --format=csv || return 1
    local cuda cap
    cuda=$(nvidia-smi | grep -o 'CUDA Version: [0-9]*' | grep -o '[0-9]*$')
    cap=$(nvidia-smi --id="$DEVICE" --query-gpu=compute_cap --format=csv,noheader | tr -d ' ')
    echo "GPU $DEVICE: compute capability $cap; the driver supports CUDA ${cuda:-unknown}"
    if [ -z "$cuda" ] || [ "$cuda" -lt 13 ]; then
        echo "the image needs a driver for CUDA 13 or newer (Linux driver 580.65.06 or newer)"
        return 1
    fi
    if [ "$(echo "$cap" | tr -d .)" -lt 75 ]; then
        echo "compute capability $cap: torch's CUDA 13 build has kernels for 7.5 (Turing) and newer only"
        return 1
    fi
}

build() {
    DOCKER_BUILDKIT=1 docker build ${BUILD_OPTIONS[@]+"${BUILD_OPTIONS[@]}"} -f docker/Dockerfile.gpu --target runtime \
        -t "$IMAGE" . \
        && DOCKER_BUILDKIT=1 docker build ${BUILD_OPTIONS[@]+"${BUILD_OPTIONS[@]}"} -f docker/Dockerfile.gpu --target gpu-check \
            -t "$CHECK_IMAGE" .
}

in_image() {  # in_image [docker run options...] -- COMMAND...
    local options=()
    while [ "$1" != "--" ]; do
        options+=("$1")
        shift
    done
    shift
    docker run --rm --gpus "device=$DEVICE" ${options[@]+"${options[@]}"} "$CHECK_IMAGE" "$@"
}

gpu_tests() {
    # The files holding GPU-marked tests; junit XML tells skipped from passed (a skip here means no GPU was seen).
    # shellcheck disable=SC2016  # expanded by the container's shell
    in_image -- sh -c '
        files=$(grep -rl "pytest.mark.gpu" tests | sort)
        echo "GPU-marked tests in: $files"
        python -m pytest -m gpu -p no:cacheprovider -rA --junitxml=/tmp/gpu-tests.xml $files
        status=$?
        python - <<EOF || exit 1
import xml.etree.ElementTree as ET
s = ET.parse("/tmp/gpu-tests.xml").getroot()
s = s if s.tag == "testsuite" else s.find("testsuite")
n, bad, skipped = int(s.get("tests")), int(s.get("failures")) + int(s.get("errors")), int(s.get("skipped"))
print(f"GPU-marked tests: {n} run, {bad} failed, {skipped} skipped")
raise SystemExit(0 if n > 0 and bad == 0 and skipped == 0 else 1)
EOF
        exit $status'
}

CIF_DIR=$(mktemp -d)
trap 'rm -rf "$CIF_DIR"' EXIT

sample_cifs() {
    if [ ! -f "$ARCHIVE" ]; then
        echo "shared data archive not found: $ARCHIVE (set CRYSTAL_SHARED_ARCHIVE)"
        return 1
    fi
    tar -tzf "$ARCHIVE" | grep '\.cif$' | sort | head -n "$N_CIFS" > "$CIF_DIR/list" || return 1
    tar -xzf "$ARCHIVE" -C "$CIF_DIR" -T "$CIF_DIR/list" || return 1
    chmod -R a+rX "$CIF_DIR"
    echo "$(wc -l < "$CIF_DIR/list") CIFs from $ARCHIVE"
}

service_check() {
    in_image -v "$CIF_DIR:/cifs:ro" -- \
        python -m service.gpucheck run --device cuda:0 --reference cpu --models /app/models --cifs /cifs \
        --limit "$N_CIFS" --batch-sizes 1,256
}

step "host GPU and driver" host_gpu
step "build $IMAGE and $CHECK_IMAGE" build
if [ "$failed" = 0 ]; then
    step "GPU-marked tests inside the image" gpu_tests
    step "sample of $N_CIFS shared CIFs" sample_cifs
    step "service on the GPU vs the CPU, batch invariance, throughput" service_check
fi

echo
echo "=== summary ($LOG)"
printf '%s\n' "${results[@]}"
exit "$failed"
