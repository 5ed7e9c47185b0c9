#!/usr/bin/env bash
# The Go binding's tests: `go test` in qtask-ffi/go against libqtask.so, on
# SQLite, PostgreSQL ($QTASK_TEST_PG_URL) and PostgreSQL + Redis
# ($QTASK_TEST_REDIS_URL). A server that is not reachable is skipped with one
# SKIP line, or fails the run when CI=true.
#   QTASK_GO_PROFILE=release   test the release build (default: debug)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
# shellcheck source=../../scripts/env.sh
source scripts/env.sh

if ! command -v go >/dev/null 2>&1; then
    if [ "${CI:-}" = true ]; then
        echo "go is not installed" >&2
        exit 1
    fi
    echo "SKIP: go not installed; the Go binding was not tested"
    exit 0
fi

profile=${QTASK_GO_PROFILE:-debug}
target=${CARGO_TARGET_DIR:-target}
case "$target" in /*) ;; *) target="$PWD/$target" ;; esac
libdir="$target/$profile"

if [ "$profile" = release ]; then
    cargo build -p qtask-ffi --release
else
    cargo build -p qtask-ffi
fi

unset QTASK_DB_URL QTASK_QUEUE_URL QTASK_NAMESPACE
export CGO_ENABLED=1
export CGO_LDFLAGS="-L$libdir -Wl,-rpath,$libdir ${CGO_LDFLAGS:-}"
root=$PWD
cd qtask-ffi/go
go vet ./...
set +e
go test -count=1 -race -v ./... 2>&1 | grep -Ev '^=== (RUN|PAUSE|CONT)'
rc=${PIPESTATUS[0]}
set -e

# CreateTx on the caller's *sql.Tx: a module of its own with the database
# drivers (go-sqlite3 built on the system libsqlite3: -tags libsqlite3).
cd "$root/tests/go/outbox"
go vet -tags libsqlite3 ./...
go test -count=1 -tags libsqlite3 -v ./... 2>&1 | grep -Ev '^=== (RUN|PAUSE|CONT)'
outbox_rc=${PIPESTATUS[0]}
[ "$rc" -eq 0 ] && [ "$outbox_rc" -eq 0 ]
