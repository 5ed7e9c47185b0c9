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
cd qtask-ffi/go
go vet ./...
go test -count=1 -race -v ./... 2>&1 | grep -Ev '^=== (RUN|PAUSE|CONT)' 
exit "${PIPESTATUS[0]}"
