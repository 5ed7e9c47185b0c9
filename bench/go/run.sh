#!/usr/bin/env bash
# Go peer benchmark: qtask's Go package against River (PostgreSQL) and asynq
# (Redis), same run, same servers. A program, not a test: nothing asserts a
# speed, and no test suite calls it.
#
#   bash bench/go/run.sh                    # n = 2000 jobs per fill, 3 rounds
#   bash bench/go/run.sh --markdown         # tables as Markdown
#   bash bench/go/run.sh --n 500 --only qtask-pg-redis,asynq
#   bash bench/go/run.sh --help
#
# Builds libqtask in the release profile and links the Go package against it
# the way tests/go/run.sh does (CGO_LDFLAGS with -L and an rpath). The peers
# come from the Go module proxy at the versions pinned in bench/go/go.mod.
# Server URLs come from scripts/env.sh (QTASK_TEST_PG_URL, QTASK_TEST_REDIS_URL);
# start the servers with `bash scripts/services.sh` if they are down.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
# shellcheck source=../../scripts/env.sh
source scripts/env.sh

if ! command -v go >/dev/null 2>&1; then
    echo "bench: go is not installed" >&2
    exit 1
fi

target=${CARGO_TARGET_DIR:-target}
case "$target" in /*) ;; *) target="$PWD/$target" ;; esac
libdir="$target/release"
cargo build --release -p qtask-ffi

unset QTASK_DB_URL QTASK_QUEUE_URL QTASK_NAMESPACE
export CGO_ENABLED=1
export CGO_LDFLAGS="-L$libdir -Wl,-rpath,$libdir ${CGO_LDFLAGS:-}"

bin="$(mktemp -d)"
run_id="gb$$_$(date +%s)"
cleanup() {
    rm -rf "$bin"
    # Belt and braces: the program drops its own tables and schema; this
    # catches a run that was killed half-way.
    if command -v psql >/dev/null 2>&1; then
        psql -q -X "$QTASK_TEST_PG_URL" -v ON_ERROR_STOP=0 >/dev/null 2>&1 <<SQL || true
DROP TABLE IF EXISTS "${run_id}_r_task", "${run_id}_d_task";
DROP SCHEMA IF EXISTS "river_${run_id}" CASCADE;
SQL
    fi
}
trap cleanup EXIT

cd bench/go
go build -o "$bin/bench" .
"$bin/bench" --run-id "$run_id" "$@"
