#!/usr/bin/env bash
# Regenerates include/qtask.h from qtask-ffi/src with cbindgen.
#   bash qtask-ffi/header.sh           check: fail when the committed header is stale
#   bash qtask-ffi/header.sh --write   rewrite include/qtask.h
# Uses cbindgen $CBINDGEN_VERSION: from PATH when it is that version, else from
# ${QTASK_CACHE_DIR:-$HOME/.cache/qtask}/tools, installing it there once with
# `cargo install --locked` (kept between runs, so CI pays for it only once).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

CBINDGEN_VERSION=0.29.4
tools="${QTASK_CACHE_DIR:-$HOME/.cache/qtask}/tools"

cbindgen=
if command -v cbindgen >/dev/null 2>&1 && [ "$(cbindgen --version)" = "cbindgen $CBINDGEN_VERSION" ]; then
    cbindgen=cbindgen
elif [ -x "$tools/bin/cbindgen" ] && [ "$("$tools/bin/cbindgen" --version)" = "cbindgen $CBINDGEN_VERSION" ]; then
    cbindgen="$tools/bin/cbindgen"
else
    echo "header.sh: installing cbindgen $CBINDGEN_VERSION into $tools" >&2
    cargo install cbindgen --locked --version "=$CBINDGEN_VERSION" --root "$tools" --force >&2
    cbindgen="$tools/bin/cbindgen"
fi

fresh=$(mktemp)
trap 'rm -f "$fresh"' EXIT
"$cbindgen" --quiet --config qtask-ffi/cbindgen.toml --crate qtask-ffi --output "$fresh" qtask-ffi

if [ "${1:-}" = --write ]; then
    cp "$fresh" include/qtask.h
    echo "header.sh: wrote include/qtask.h"
elif ! diff -u include/qtask.h "$fresh"; then
    echo "header.sh: include/qtask.h is stale; run: bash qtask-ffi/header.sh --write" >&2
    exit 1
else
    echo "header.sh: include/qtask.h is current"
fi
