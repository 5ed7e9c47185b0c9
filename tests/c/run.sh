#!/usr/bin/env bash
# The C ABI's tests: header freshness, then tests/c/qtask_test.c built with the
# system C compiler against include/qtask.h and libqtask (shared and static),
# run plainly and under valgrind.
#   QTASK_C_PROFILE=release   test the release build (default: debug)
#   QTASK_C_VALGRIND=0        skip the valgrind run
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
# shellcheck source=../../scripts/env.sh
source scripts/env.sh

profile=${QTASK_C_PROFILE:-debug}
target=${CARGO_TARGET_DIR:-target}
case "$target" in /*) ;; *) target="$PWD/$target" ;; esac
libdir="$target/$profile"

echo "--- header: include/qtask.h matches qtask-ffi/src"
bash qtask-ffi/header.sh

echo "--- build libqtask ($profile)"
if [ "$profile" = release ]; then
    cargo build -p qtask-ffi --release
else
    cargo build -p qtask-ffi
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cflags=(-std=c11 -D_POSIX_C_SOURCE=200809L -Wall -Wextra -Werror -pedantic -g -Iinclude)

echo "--- compile"
cc "${cflags[@]}" tests/c/qtask_test.c -o "$work/qtask_test" \
    -L"$libdir" -Wl,-rpath,"$libdir" -lqtask -lpthread
cc "${cflags[@]}" tests/c/qtask_test.c -o "$work/qtask_test_static" \
    "$libdir/libqtask.a" -lpthread -ldl -lm
if command -v c++ >/dev/null 2>&1; then
    # The header is also valid C++.
    echo '#include "qtask.h"' | c++ -std=c++11 -Wall -Werror -Iinclude -fsyntax-only -x c++ -
fi

# The test opens its own SQLite files; QTASK_* must not redirect them.
unset QTASK_DB_URL QTASK_QUEUE_URL QTASK_NAMESPACE

echo "--- run (shared library)"
mkdir "$work/shared"
"$work/qtask_test" "$work/shared"

echo "--- run (static library, cycle only)"
mkdir "$work/static"
"$work/qtask_test_static" "$work/static" cycle

echo "--- outbox: the caller's own SQLite (libsqlite3) and PostgreSQL (libpq) transactions"
cc "${cflags[@]}" -I/usr/include/postgresql tests/c/outbox_test.c -o "$work/outbox_test" \
    -L"$libdir" -Wl,-rpath,"$libdir" -lqtask -lsqlite3 -lpq -lpthread
mkdir "$work/outbox"
pg_url=
if (exec 3<>"/dev/tcp/127.0.0.1/5432") 2>/dev/null; then
    pg_url=$QTASK_TEST_PG_URL
elif [ "${CI:-}" = true ]; then
    echo "PostgreSQL is not reachable" >&2
    exit 1
fi
"$work/outbox_test" "$work/outbox" "$pg_url"

if [ "${QTASK_C_VALGRIND:-1}" = 0 ]; then
    echo "valgrind run skipped (QTASK_C_VALGRIND=0)"
elif ! command -v valgrind >/dev/null 2>&1; then
    if [ "${CI:-}" = true ]; then
        echo "valgrind is not installed (scripts/services.sh installs it)" >&2
        exit 1
    fi
    echo "SKIP: valgrind not installed; the C test ran without it"
else
    echo "--- run under valgrind"
    mkdir "$work/valgrind"
    valgrind --quiet --leak-check=full --show-leak-kinds=definite,indirect,possible \
        --errors-for-leak-kinds=definite,indirect,possible --error-exitcode=1 \
        --suppressions=tests/c/valgrind.supp --gen-suppressions=all \
        "$work/qtask_test" "$work/valgrind"
fi
echo "C tests passed"
