#!/usr/bin/env bash
# The C worker's drain rate and idle RSS (bench/c/worker_bench.c), on PostgreSQL with
# the db queue and with a Redis queue. A program, not a test: nothing asserts a speed.
#
#   bash bench/c/run.sh [N [CONCURRENCY]]     # default 20000 tasks, concurrency 32
#
# Builds libqtask in release, links the program against it, and drops its tables
# after. Redis keys live under a prefix of the run's own (qtask-bench-<prefix>).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
# shellcheck source=../../scripts/env.sh
source scripts/env.sh
n=${1:-20000}
c=${2:-32}
target=${CARGO_TARGET_DIR:-target}
case "$target" in /*) ;; *) target="$PWD/$target" ;; esac
lib="$target/release"
cargo build --quiet --release -p qtask-ffi
work=$(mktemp -d)
run_id="cb$$_$(date +%s)"
cleanup() {
    rm -rf "$work"
    psql -q -X "$QTASK_TEST_PG_URL" >/dev/null 2>&1 <<SQL || true
DROP TABLE IF EXISTS "${run_id}_d_task", "${run_id}_d_queue", "${run_id}_d_schedule", "${run_id}_r_task", "${run_id}_r_queue", "${run_id}_r_schedule";
SQL
}
trap cleanup EXIT
cc -std=c11 -D_POSIX_C_SOURCE=200809L -Wall -Wextra -Werror -O2 -Iinclude bench/c/worker_bench.c \
    -o "$work/worker_bench" -L"$lib" -Wl,-rpath,"$lib" -lqtask -lpthread
echo "# load average $(cut -d' ' -f1-3 /proc/loadavg), n = $n, concurrency $c"
echo "# PostgreSQL + db queue"
"$work/worker_bench" "$QTASK_TEST_PG_URL" db "${run_id}_d_" "$n" "$c"
echo "# PostgreSQL + Redis queue"
"$work/worker_bench" "$QTASK_TEST_PG_URL" "$QTASK_TEST_REDIS_URL" "${run_id}_r_" "$n" "$c"
echo "# load average $(cut -d' ' -f1-3 /proc/loadavg)"
