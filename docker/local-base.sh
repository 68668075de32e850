#!/usr/bin/env bash
# Build a Python base image from a Debian rootfs, for machines that cannot pull from a public registry.
#
#   docker/local-base.sh [TAG]            # default tag: crystal-base:local
#
# The result stands in for the official slim Python image:
#   docker build --build-arg BASE_IMAGE=crystal-base:local -f docker/Dockerfile .
# Needs root (or sudo) and `debootstrap`. Settings (environment):
#   DEBIAN_SUITE   Debian release to bootstrap (default bookworm: Python 3.11)
#   DEBIAN_MIRROR  Debian mirror (default http://deb.debian.org/debian; http_proxy is honoured)
#   DOCKER         docker CLI to import with (default docker)
set -euo pipefail

tag=${1:-crystal-base:local}
suite=${DEBIAN_SUITE:-bookworm}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
docker=${DOCKER:-docker}

sudo=()
if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null || { echo "local-base.sh: debootstrap needs root (or sudo)" >&2; exit 1; }
    sudo=(sudo)
fi
command -v debootstrap >/dev/null || { echo "local-base.sh: install debootstrap first" >&2; exit 1; }

rootfs=$(mktemp -d "${TMPDIR:-/tmp}/crystal-base.XXXXXX")
trap '"${sudo[@]}" rm -rf "$rootfs"' EXIT

echo "local-base.sh: bootstrapping Debian $suite from $mirror"
# minbase: dpkg, apt and essentials only. python3-venv brings ensurepip, which the Dockerfile uses for its venv.
"${sudo[@]}" debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    "$suite" "$rootfs" "$mirror"

# What a slim image leaves out: package lists, docs, man pages, locales other than C.UTF-8.
"${sudo[@]}" rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/* "$rootfs"/var/log/* \
    "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/usr/share/locale/*

"${sudo[@]}" tar -C "$rootfs" --numeric-owner -c . | "$docker" import \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["python3"]' \
    --message "Debian $suite + python3 (debootstrap), stand-in for python:3.11-slim" \
    - "$tag" >/dev/null
echo "local-base.sh: imported $tag ($("$docker" run --rm "$tag" python3 --version))"
