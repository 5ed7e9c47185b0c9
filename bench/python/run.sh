#!/usr/bin/env bash
# Python peer benchmark: qtask's Python package against RQ, Huey and a
# PostgreSQL-backed peer, same run, same servers. A program, not a test: nothing
# asserts a speed, and no test suite calls it.
#
#   bash bench/python/run.sh                 # n = 2000 jobs per row
#   bash bench/python/run.sh --n 500 --only qtask-pg-redis,rq
#   bash bench/python/run.sh --help
#
# Builds the qtask wheel (maturin, release profile) the way tests/python/run.sh
# does, into its own venv ${QTASK_CACHE_DIR:-$HOME/.cache/qtask}/bench-venv, and
# installs the peers from PyPI (pinned below). Server URLs come from
# scripts/env.sh (QTASK_TEST_PG_URL, QTASK_TEST_REDIS_URL); start the servers
# with `bash scripts/services.sh` if they are down.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
# shellcheck source=../../scripts/env.sh
source scripts/env.sh

cache="${QTASK_CACHE_DIR:-$HOME/.cache/qtask}"
venv="$cache/bench-venv"
python="${PYTHON:-python3}"

if ! "$venv/bin/python" -c 'import sys; assert sys.version_info >= (3, 9)' 2>/dev/null; then
    echo "bench: creating $venv"
    rm -rf "$venv"
    mkdir -p "$cache"
    "$python" -m venv "$venv"
fi
# The peers, pinned so that a rerun measures the same code.
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    'maturin>=1.9,<2' \
    'redis==8.1.0' 'rq==2.12.0' 'huey==3.5.4' \
    'procrastinate==3.10.0' 'psycopg[binary]==3.3.9'

# The qtask wheel, release profile (tests/python/run.sh builds a debug one).
wheels="$(mktemp -d)"
trap 'rm -rf "$wheels"' EXIT
"$venv/bin/maturin" build --quiet --release --interpreter "$venv/bin/python" --out "$wheels"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --force-reinstall --no-deps "$wheels"/qtask-*.whl

# Run from bench/python, so that `import qtask` is the installed wheel and not
# the source tree (python/qtask has no native module of its own).
cd bench/python
exec "$venv/bin/python" bench_peers.py "$@"
