#!/bin/sh
# `pip install` for the image builds. Searches the wheel folder first (/wheels), uses the lab's index when the
# INDEX_URL / EXTRA_INDEX_URL build arguments are set, and trusts the extra CA bundle passed as the BuildKit
# secret `pip_ca` (a TLS-inspecting proxy) on top of pip's own CA list, so that one proxy CA file is enough.
set -eu

if [ -s /run/secrets/pip_ca ]; then
    bundle=$(mktemp)
    trap 'rm -f "$bundle"' EXIT
    { cat "$(python -c 'from pip._vendor import certifi; print(certifi.where())')"; echo; cat /run/secrets/pip_ca; } \
        > "$bundle"
    export PIP_CERT="$bundle"
fi

# Unquoted on purpose: each expands to two words (option and URL) or to nothing.
# shellcheck disable=SC2086
python -m pip install --no-input --find-links /wheels \
    ${INDEX_URL:+--index-url $INDEX_URL} ${EXTRA_INDEX_URL:+--extra-index-url $EXTRA_INDEX_URL} "$@"
