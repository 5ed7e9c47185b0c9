#!/usr/bin/env bash
# Chaos soak (issue 10): qtask-core/examples/soak.rs on SQLite + db, PostgreSQL + db,
# PostgreSQL + Redis, MariaDB + Redis and the Redis Cluster (+ PostgreSQL). Workers
# and sweepers run as separate processes; it SIGKILLs and restarts them, SIGSTOPs a
# worker past its lease, kills the soak's database connections, deletes the soak's
# Redis keys and restarts a private redis-server (port 6391) it starts itself. One
# worker per pair is Python (tests/faults/soak_worker.py, from the venv that
# tests/python/run.sh builds); the others are Rust. The shared Redis servers are never
# flushed or restarted; PostgreSQL is restarted once only with QTASK_SOAK_RESTART_PG=1
# (scripts/test.sh sets it in CI, where the soak is the last step). Prints one summary
# line per pair; fails on a lost, never-run or stale-outcome task, or duplicates over
# the bound.
#
#   bash tests/faults/run.sh
#   QTASK_SOAK_MINUTES=2      fault time over all pairs (default 2; CI stays within 5 min)
#   QTASK_SOAK_PAIRS=sqlite+db,postgres+redis   a subset
#   QTASK_SOAK_RESTART_PG=1   restart the shared PostgreSQL once (nobody else may use it)
#   QTASK_SOAK_RESTART_PG=dry-run   print the restart command instead of running it
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
# shellcheck source=../../scripts/env.sh
source scripts/env.sh

export QTASK_SOAK_MINUTES=${QTASK_SOAK_MINUTES:-2}
target_dir=${CARGO_TARGET_DIR:-$PWD/target}
if ! command -v redis-server >/dev/null 2>&1; then
    echo "SKIP: no redis-server: the Redis pairs cannot restart a private Redis" >&2
    [ "${CI:-}" = true ] && exit 1
    export QTASK_SOAK_PAIRS=${QTASK_SOAK_PAIRS:-sqlite+db,postgres+db,cluster+postgres}
fi
# The Python workers: the venv of tests/python/run.sh, with the qtask wheel installed.
venv_python="${QTASK_CACHE_DIR:-$HOME/.cache/qtask}/venv/bin/python"
if "$venv_python" -c 'import qtask' 2>/dev/null; then
    export SOAK_PYTHON=$venv_python
else
    echo "SKIP: no qtask venv at $venv_python (run tests/python/run.sh): the soak runs Rust workers only" >&2
    [ "${CI:-}" = true ] && exit 1
fi
# The restart command of scripts/services.sh's cluster (sudo when not root).
sudo=
if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null 2>&1; then sudo="sudo "; fi
export SOAK_PG_RESTART="${sudo}pg_ctlcluster --skip-systemctl-redirect 15 main restart"

cargo build --quiet -p qtask-core --example soak
"$target_dir/debug/examples/soak"
