#!/usr/bin/env bash
# Chaos soak (issue 10): qtask-core/examples/soak.rs on SQLite + db, PostgreSQL + db,
# PostgreSQL + Redis, MariaDB + Redis and the Redis Cluster (+ PostgreSQL). Workers
# and sweepers run as separate processes; it SIGKILLs and restarts them, SIGSTOPs a
# worker past its lease, kills the soak's database connections, deletes the soak's
# Redis keys and restarts a private redis-server (port 6391) it starts itself. The
# shared servers are never flushed or restarted. Prints one summary line per pair;
# fails on a lost, never-run or stale-outcome task, or duplicates over the bound.
#
#   bash tests/faults/run.sh
#   QTASK_SOAK_MINUTES=2      fault time over all pairs (default 2; CI stays within 5 min)
#   QTASK_SOAK_PAIRS=sqlite+db,postgres+redis   a subset
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
cargo build --quiet -p qtask-core --example soak
"$target_dir/debug/examples/soak"
