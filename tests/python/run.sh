#!/usr/bin/env bash
# Python tests: build the qtask wheel (maturin, abi3), install it into a venv,
# run pytest. Called by scripts/test.sh; runs on its own as well:
#   bash tests/python/run.sh [pytest args...]
#
# The venv lives in ${QTASK_CACHE_DIR:-$HOME/.cache/qtask}/venv and is reused.
# Server URLs come from scripts/env.sh (QTASK_TEST_PG_URL, QTASK_TEST_REDIS_URL);
# an unreachable server skips its tests with a loud "SKIP:" line, or fails them
# with CI=true.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
# shellcheck source=../../scripts/env.sh
source scripts/env.sh

cache="${QTASK_CACHE_DIR:-$HOME/.cache/qtask}"
venv="$cache/venv"
python="${PYTHON:-python3}"

if ! "$venv/bin/python" -c 'import sys; assert sys.version_info >= (3, 9)' 2>/dev/null; then
    echo "python: creating $venv"
    rm -rf "$venv"
    mkdir -p "$cache"
    "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade \
    'maturin>=1.9,<2' 'pytest>=8' 'mypy>=1.10' \
    'psycopg[binary]==3.3.9' 'PyMySQL==1.2.4' 'SQLAlchemy==2.1.9' 'aiosqlite==0.22.1' 'greenlet==3.5.6'
# psycopg, PyMySQL and SQLAlchemy: the callers' own connections of test_outbox.py;
# aiosqlite and greenlet (SQLAlchemy's asyncio) those of test_async_outbox.py.

# A wheel is what users get: build one (debug profile, sharing cargo's target dir
# with the Rust tests) and install it, replacing any earlier build.
wheels="$(mktemp -d)"
trap 'rm -rf "$wheels"' EXIT
"$venv/bin/maturin" build --quiet --interpreter "$venv/bin/python" --out "$wheels"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --force-reinstall --no-deps "$wheels"/qtask-*.whl

# Run from the tests' directory, so that `import qtask` is the installed wheel and
# not the source tree (python/qtask has no native module).
cd tests/python
set +e
"$venv/bin/python" -m pytest -ra -p no:cacheprovider "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
    echo "python: pytest collected no tests: that is a failure" >&2
    exit 1
fi
exit "$rc"
