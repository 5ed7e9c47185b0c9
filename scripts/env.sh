# Test environment for qtask. Source it: `source scripts/env.sh`.
# Sets only what is not already set, so a user's own values win.

: "${QTASK_TEST_PG_URL:=postgres://postgres@127.0.0.1:5432/test}"
: "${QTASK_TEST_MYSQL_URL:=mysql://root@127.0.0.1:3306/test}"
: "${QTASK_TEST_REDIS_URL:=redis://127.0.0.1:6379/}"
: "${QTASK_TEST_REDIS_CLUSTER_URLS:=redis://127.0.0.1:7000,redis://127.0.0.1:7001,redis://127.0.0.1:7002}"
export QTASK_TEST_PG_URL QTASK_TEST_MYSQL_URL QTASK_TEST_REDIS_URL QTASK_TEST_REDIS_CLUSTER_URLS

# CI on one machine: keep cargo's build cache between runs (cargo still
# rebuilds whatever changed).
if [ -z "${CARGO_TARGET_DIR:-}" ] && [ "${CI:-}" = true ]; then
    export CARGO_TARGET_DIR="${QTASK_CACHE_DIR:-$HOME/.cache/qtask}/target"
fi

# A Go toolchain installed from go.dev, when the shell's PATH misses it.
if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
    export PATH="$PATH:/usr/local/go/bin"
fi
