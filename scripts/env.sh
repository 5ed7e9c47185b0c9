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

# TLS (scripts/services.sh makes the CA and starts these beside the plain servers).
: "${QTASK_TEST_TLS_CA:=/tmp/qtask-tls/ca.crt}"
: "${QTASK_TEST_PG_TLS_URL:=postgres://postgres@127.0.0.1:5432/test?sslmode=verify-full&sslrootcert=$QTASK_TEST_TLS_CA}"
: "${QTASK_TEST_MYSQL_TLS_URL:=mysql://root@127.0.0.1:3306/test?ssl-mode=VERIFY_IDENTITY&ssl-ca=$QTASK_TEST_TLS_CA}"
: "${QTASK_TEST_REDIS_TLS_URL:=rediss://127.0.0.1:6380/?tls_ca=$QTASK_TEST_TLS_CA}"
: "${QTASK_TEST_REDIS_TLS_CLUSTER_URL:=rediss+cluster://127.0.0.1:7100,127.0.0.1:7101,127.0.0.1:7102/?tls_ca=$QTASK_TEST_TLS_CA}"
export QTASK_TEST_TLS_CA QTASK_TEST_PG_TLS_URL QTASK_TEST_MYSQL_TLS_URL QTASK_TEST_REDIS_TLS_URL QTASK_TEST_REDIS_TLS_CLUSTER_URL
