#!/usr/bin/env bash
# Install (when missing), configure and start the servers the tests use:
#
#   PostgreSQL 15   127.0.0.1:5432  user postgres, no password, database test
#   MariaDB         127.0.0.1:3306  user root, empty password, database test
#   Redis           127.0.0.1:6379  no auth, nothing kept on disk
#   Redis Cluster   127.0.0.1:7000-7002, three masters, state in
#                   /tmp/qtask-redis-cluster
#
# and TLS beside them, with a private certificate authority made here
# (/tmp/qtask-tls/ca.crt; the server certificate is for localhost and 127.0.0.1):
#
#   PostgreSQL      the same port, ssl on (plain logins still work)
#   MariaDB         the same port, ssl_cert/ssl_key/ssl_ca (plain logins still work)
#   Redis           127.0.0.1:6380, TLS only, a second redis-server
#   Redis Cluster   127.0.0.1:7100-7102, TLS only (tls-cluster yes)
#
# and the tools the other test steps need (valgrind, go, chromium and node for
# the dashboard's browser test).
#
# Idempotent: a server that is already up is left alone. Safe to run again and
# again, and from several shells at once (runs are serialised by a lock).
# Meant for a throw-away test machine (Debian 12, root, no systemd): it makes
# loopback logins password-less on PostgreSQL and MariaDB.
#
#   QTASK_NO_INSTALL=1         install nothing; start what is installed, report
#                              what is missing or does not come up, exit 0
#                              (exit 1 anyway when CI=true)
#   QTASK_SERVICES_TIMEOUT=60  seconds to wait for each server
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# The URLs come from env.sh alone (unset first: report the fixed local ones).
unset QTASK_TEST_PG_URL QTASK_TEST_MYSQL_URL QTASK_TEST_REDIS_URL QTASK_TEST_REDIS_CLUSTER_URLS \
    QTASK_TEST_TLS_CA QTASK_TEST_PG_TLS_URL QTASK_TEST_MYSQL_TLS_URL QTASK_TEST_REDIS_TLS_URL QTASK_TEST_REDIS_TLS_CLUSTER_URL
# shellcheck source=env.sh
. "$here/env.sh"

NO_INSTALL=${QTASK_NO_INSTALL:-0}
[ "$NO_INSTALL" = 1 ] || NO_INSTALL=0
TIMEOUT=${QTASK_SERVICES_TIMEOUT:-60}
LOG_DIR=/tmp/qtask-services
CLUSTER_DIR=/tmp/qtask-redis-cluster
CLUSTER_PORTS=(7000 7001 7002)
TLS_DIR=/tmp/qtask-tls
REDIS_TLS_PORT=6380
TLS_CLUSTER_DIR=/tmp/qtask-redis-tls-cluster
TLS_CLUSTER_PORTS=(7100 7101 7102)
MARIADB_TLS_CNF=/etc/mysql/mariadb.conf.d/90-qtask-tls.cnf
PG_VER=15
PG_CLUSTER=main

SUDO=
if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null 2>&1; then SUDO=sudo; fi

mkdir -p "$LOG_DIR" "$CLUSTER_DIR"
chmod 1777 "$LOG_DIR" 2>/dev/null || true

# One run at a time. Fd 9 holds the lock; every server is started with 9>&-
# so that no daemon inherits it (it would hold the lock for its lifetime).
exec 9>"$LOG_DIR/lock"
if ! flock -w 600 9; then
    echo "services: another scripts/services.sh has held $LOG_DIR/lock for 10 minutes" >&2
    exit 1
fi

failures=()

say() { printf '%-14s %s\n' "$1" "$2"; }

now_ms() { date +%s%3N; }
since() { local ms=$(($(now_ms) - $1)); printf '%d.%ds' $((ms / 1000)) $((ms % 1000 / 100)); }

# wait_until SECONDS cmd... : true once cmd succeeds, false after SECONDS.
wait_until() {
    local limit=$(($(now_ms) + $1 * 1000))
    shift
    until "$@" >/dev/null 2>&1; do
        [ "$(now_ms)" -lt "$limit" ] || return 1
        sleep 0.2
    done
}

# fail NAME MESSAGE : report a server that is not usable.
fail() {
    say "$1" "FAILED: $2" >&2
    failures+=("$1")
}

# ---------------------------------------------------------------- install

have_pg() { command -v pg_ctlcluster >/dev/null 2>&1 && [ -x "/usr/lib/postgresql/$PG_VER/bin/postgres" ]; }
have_mariadb() { [ -x /usr/sbin/mariadbd ] && command -v mariadb >/dev/null 2>&1; }
have_redis() { command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1; }
have_go() { command -v go >/dev/null 2>&1; }
have_valgrind() { command -v valgrind >/dev/null 2>&1; }
# The dashboard's browser test (tests/dashboard): Debian's chromium, driven by node.
have_chromium() { [ -x /usr/bin/chromium ]; }
have_node() { command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; }
# A CJK font, so that screenshots show task names like 订单绑定任务.
have_cjk_font() { [ -e /usr/share/fonts/truetype/wqy/wqy-zenhei.ttc ]; }
# The C outbox test (tests/c/outbox_test.c) runs the caller's statements with these.
have_sqlite_dev() { [ -e /usr/include/sqlite3.h ]; }
have_libpq_dev() { [ -e /usr/include/postgresql/libpq-fe.h ]; }

want=()
have_pg || want+=(postgresql)
have_mariadb || want+=(mariadb-server)
have_redis || want+=(redis-server)
have_go || want+=(golang-go)
have_valgrind || want+=(valgrind)
have_chromium || want+=(chromium)
have_node || want+=(nodejs npm)
have_cjk_font || want+=(fonts-wqy-zenhei)
have_sqlite_dev || want+=(libsqlite3-dev)
have_libpq_dev || want+=(libpq-dev)

if [ ${#want[@]} -gt 0 ]; then
    if [ "$NO_INSTALL" = 1 ]; then
        say install "skipped (QTASK_NO_INSTALL=1); missing: ${want[*]}"
    else
        t0=$(now_ms)
        apt_log=$LOG_DIR/apt.log
        export DEBIAN_FRONTEND=noninteractive
        if $SUDO apt-get -o DPkg::Lock::Timeout=300 update >"$apt_log" 2>&1 &&
            $SUDO env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 \
                install -y "${want[@]}" >>"$apt_log" 2>&1; then
            say install "${want[*]} ($(since "$t0"))"
        else
            tail -n 30 "$apt_log" >&2
            echo "services: apt-get install ${want[*]} failed; full log in $apt_log" >&2
            exit 1
        fi
    fi
fi

# ---------------------------------------------------------------- PostgreSQL

pg_ready() { pg_isready -q -h 127.0.0.1 -p 5432; }
pg_sql() { psql "postgres://postgres@127.0.0.1:5432/$1" -v ON_ERROR_STOP=1 -qtAc "$2"; }

start_pg() {
    local name=postgresql url=$QTASK_TEST_PG_URL t0 how hba
    if ! have_pg; then fail $name "not installed"; return; fi
    t0=$(now_ms)

    # A fresh install has its cluster; create it if it was dropped.
    if ! pg_lsclusters -h 2>/dev/null | awk -v v=$PG_VER -v c=$PG_CLUSTER '$1 == v && $2 == c { f = 1 } END { exit !f }'; then
        $SUDO pg_createcluster --port 5432 $PG_VER $PG_CLUSTER >>"$LOG_DIR/postgresql.log" 2>&1 ||
            { fail $name "pg_createcluster $PG_VER $PG_CLUSTER failed (see $LOG_DIR/postgresql.log)"; return; }
    fi

    # Loopback TCP logins without a password (scram-sha-256/md5 -> trust).
    hba=/etc/postgresql/$PG_VER/$PG_CLUSTER/pg_hba.conf
    local loopback='^(host[[:space:]]+all[[:space:]]+all[[:space:]]+(127\.0\.0\.1/32|::1/128)[[:space:]]+)(scram-sha-256|md5|password)'
    local hba_changed=0
    if $SUDO grep -Eq "$loopback" "$hba"; then
        $SUDO sed -E -i "s#${loopback}#\\1trust#" "$hba"
        hba_changed=1
    fi

    if pg_ready; then
        how="already running"
        if [ $hba_changed = 1 ]; then
            $SUDO pg_ctlcluster --skip-systemctl-redirect $PG_VER $PG_CLUSTER reload
            how="already running, pg_hba reloaded"
        fi
    else
        $SUDO mkdir -p /var/run/postgresql
        $SUDO chown postgres:postgres /var/run/postgresql
        # "start" fails when the cluster is running but not (yet) answering;
        # the wait below decides.
        $SUDO pg_ctlcluster --skip-systemctl-redirect $PG_VER $PG_CLUSTER start \
            >>"$LOG_DIR/postgresql.log" 2>&1 9>&- || true
        if ! wait_until "$TIMEOUT" pg_ready; then
            fail $name "no answer on 127.0.0.1:5432 after ${TIMEOUT}s (see /var/log/postgresql/postgresql-$PG_VER-$PG_CLUSTER.log)"
            return
        fi
        how="started in $(since "$t0")"
    fi

    if [ "$(pg_sql postgres "select count(*) from pg_database where datname = 'test'" 2>/dev/null)" = 0 ]; then
        pg_sql postgres "create database test" || true # a concurrent creator is fine
    fi
    if ! pg_sql test "select 1" >/dev/null 2>&1; then
        fail $name "up, but cannot log in as $url"
        return
    fi
    say $name "ok  $how  $url"
}

# ---------------------------------------------------------------- MariaDB

# ping succeeds as soon as the server answers, even when the login is refused.
mariadb_alive() { mariadb-admin --connect-timeout=2 -h 127.0.0.1 -P 3306 -u root --silent ping; }
mariadb_login() { mariadb --connect-timeout=2 -h 127.0.0.1 -P 3306 -u root "$@"; }

launch_mariadb() {
    $SUDO mkdir -p /run/mysqld /var/log/mysql
    $SUDO chown mysql:mysql /run/mysqld /var/log/mysql
    $SUDO start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd \
        -- --user=mysql --log-error=/var/log/mysql/error.log 9>&-
}

start_mariadb() {
    local name=mariadb url=$QTASK_TEST_MYSQL_URL t0 how
    if ! have_mariadb; then fail $name "not installed"; return; fi
    t0=$(now_ms)
    if mariadb_alive >/dev/null 2>&1; then
        how="already running"
    else
        if [ ! -d /var/lib/mysql/mysql ]; then
            $SUDO mariadb-install-db --user=mysql --datadir=/var/lib/mysql \
                >>"$LOG_DIR/mariadb-install.log" 2>&1 9>&- ||
                { fail $name "mariadb-install-db failed (see $LOG_DIR/mariadb-install.log)"; return; }
        fi
        launch_mariadb
        if ! wait_until "$TIMEOUT" mariadb_alive; then
            fail $name "no answer on 127.0.0.1:3306 after ${TIMEOUT}s (see /var/log/mysql/error.log)"
            return
        fi
        how="started in $(since "$t0")"
    fi

    # Root logs in by unix socket only after install; allow the empty
    # password over TCP (done through the socket, as OS root).
    if ! mariadb_login -e "select 1" >/dev/null 2>&1; then
        $SUDO mariadb -u root -e "ALTER USER root@localhost IDENTIFIED VIA mysql_native_password USING PASSWORD('')" ||
            { fail $name "could not allow root's empty password over TCP"; return; }
    fi
    if ! mariadb_login -e "CREATE DATABASE IF NOT EXISTS test" || ! mariadb_login test -e "select 1" >/dev/null; then
        fail $name "up, but cannot log in as $url"
        return
    fi
    say $name "ok  $how  $url"
}

# ---------------------------------------------------------------- Redis

redis_ping() { [ "$(redis-cli -h 127.0.0.1 -p "$1" ping 2>/dev/null)" = PONG ]; }

start_redis() {
    local name=redis url=$QTASK_TEST_REDIS_URL t0 how
    if ! have_redis; then fail $name "not installed"; return; fi
    t0=$(now_ms)
    if redis_ping 6379; then
        how="already running"
    else
        redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
            --dir /tmp --logfile "$LOG_DIR/redis-6379.log" >/dev/null 9>&- || true
        if ! wait_until "$TIMEOUT" redis_ping 6379; then
            fail $name "no answer on 127.0.0.1:6379 after ${TIMEOUT}s (see $LOG_DIR/redis-6379.log)"
            return
        fi
        how="started in $(since "$t0")"
    fi
    say $name "ok  $how  $url"
}

# ---------------------------------------------------------------- Redis Cluster

cluster_ok() {
    local p
    for p in "${CLUSTER_PORTS[@]}"; do
        redis-cli -h 127.0.0.1 -p "$p" cluster info 2>/dev/null | grep -q '^cluster_state:ok' || return 1
    done
}
cluster_all_up() {
    local p
    for p in "${CLUSTER_PORTS[@]}"; do redis_ping "$p" || return 1; done
}
cluster_all_down() {
    local p
    for p in "${CLUSTER_PORTS[@]}"; do ! redis_ping "$p" || return 1; done
}

start_cluster() {
    local name=redis-cluster url=$QTASK_TEST_REDIS_CLUSTER_URLS t0 p nodes=()
    if ! have_redis; then fail $name "not installed"; return; fi
    t0=$(now_ms)
    # Up and healthy: leave it alone. All nodes up but not ok yet: it may be
    # settling (give it a few seconds) or half-made.
    if cluster_all_up && wait_until 5 cluster_ok; then
        say $name "ok  already running  $url"
        return
    fi

    # Anything else (dead, half-alive, never joined) is rebuilt from nothing:
    # it holds test data only.
    for p in "${CLUSTER_PORTS[@]}"; do
        if redis_ping "$p"; then redis-cli -h 127.0.0.1 -p "$p" shutdown nosave >/dev/null 2>&1 || true; fi
    done
    if ! wait_until 10 cluster_all_down; then
        fail $name "old nodes on ${CLUSTER_PORTS[*]} do not stop"
        return
    fi
    rm -rf "${CLUSTER_DIR:?}"/*

    for p in "${CLUSTER_PORTS[@]}"; do
        mkdir -p "$CLUSTER_DIR/$p"
        redis-server --port "$p" --bind 127.0.0.1 --cluster-enabled yes \
            --cluster-config-file "$CLUSTER_DIR/$p/nodes.conf" --save "" --appendonly no \
            --dir "$CLUSTER_DIR/$p" --logfile "$CLUSTER_DIR/$p/redis.log" --daemonize yes \
            >/dev/null 9>&- || true
        nodes+=("127.0.0.1:$p")
    done
    if ! wait_until "$TIMEOUT" cluster_all_up; then
        fail $name "nodes do not answer on ${CLUSTER_PORTS[*]} (see $CLUSTER_DIR/*/redis.log)"
        return
    fi
    if ! redis-cli --cluster create "${nodes[@]}" --cluster-replicas 0 --cluster-yes \
        >"$LOG_DIR/redis-cluster-create.log" 2>&1; then
        fail $name "redis-cli --cluster create failed (see $LOG_DIR/redis-cluster-create.log)"
        return
    fi
    if ! wait_until "$TIMEOUT" cluster_ok; then
        fail $name "cluster_state is not ok after ${TIMEOUT}s"
        return
    fi
    say $name "ok  created in $(since "$t0")  $url"
}

# ---------------------------------------------------------------- TLS

# A private CA and one server certificate (localhost, 127.0.0.1), kept while
# valid. Each server gets its own copy of the key, owned by its user.
certs_renewed=0

certs_ok() {
    [ -s "$TLS_DIR/ca.crt" ] && [ -s "$TLS_DIR/server.crt" ] && [ -s "$TLS_DIR/server.key" ] &&
        openssl verify -CAfile "$TLS_DIR/ca.crt" "$TLS_DIR/server.crt" >/dev/null 2>&1 &&
        openssl x509 -checkend 86400 -noout -in "$TLS_DIR/server.crt" >/dev/null 2>&1 &&
        # Redis cluster nodes present it as a client too.
        openssl x509 -noout -ext extendedKeyUsage -in "$TLS_DIR/server.crt" 2>/dev/null | grep -q 'Client Auth'
}

make_certs() {
    local name=tls-ca tmp who how=kept
    if ! command -v openssl >/dev/null 2>&1; then fail $name "openssl not installed"; return 1; fi
    if ! certs_ok; then
        tmp=$(mktemp -d "$TLS_DIR.XXXXXX")
        if ! (
            cd "$tmp" &&
                openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
                    -keyout ca.key -out ca.crt -days 3650 -subj "/CN=qtask test CA" &&
                openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
                    -keyout server.key -out server.csr -subj "/CN=localhost" &&
                printf '%s\n' "subjectAltName=DNS:localhost,IP:127.0.0.1" "basicConstraints=critical,CA:FALSE" \
                    "keyUsage=critical,digitalSignature,keyEncipherment" "extendedKeyUsage=serverAuth,clientAuth" >server.ext &&
                openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 -sha256 \
                    -extfile server.ext -out server.crt
        ) >"$LOG_DIR/tls-certs.log" 2>&1; then
            rm -rf "$tmp"
            fail $name "openssl failed (see $LOG_DIR/tls-certs.log)"
            return 1
        fi
        rm -rf "$TLS_DIR"
        mv "$tmp" "$TLS_DIR"
        certs_renewed=1
        how=created
    fi
    chmod 755 "$TLS_DIR"
    chmod 644 "$TLS_DIR/ca.crt" "$TLS_DIR/server.crt"
    chmod 600 "$TLS_DIR/ca.key" "$TLS_DIR/server.key"
    for who in postgres mysql; do
        id "$who" >/dev/null 2>&1 || continue
        $SUDO install -d -m 700 -o "$who" "$TLS_DIR/$who"
        $SUDO install -m 600 -o "$who" "$TLS_DIR/server.crt" "$TLS_DIR/server.key" "$TLS_DIR/$who/"
    done
    # MariaDB reads its certificate at start only: name it before the first start.
    if [ -d "$(dirname "$MARIADB_TLS_CNF")" ]; then
        printf '%s\n' "# Written by qtask scripts/services.sh: TLS for the test server." "[mariadbd]" \
            "ssl_cert = $TLS_DIR/mysql/server.crt" "ssl_key = $TLS_DIR/mysql/server.key" \
            "ssl_ca = $TLS_DIR/ca.crt" | $SUDO tee "$MARIADB_TLS_CNF.new" >/dev/null
        if cmp -s "$MARIADB_TLS_CNF.new" "$MARIADB_TLS_CNF"; then
            $SUDO rm -f "$MARIADB_TLS_CNF.new"
        else
            $SUDO mv "$MARIADB_TLS_CNF.new" "$MARIADB_TLS_CNF"
        fi
    fi
    say $name "ok  $how  $TLS_DIR/ca.crt"
}

pg_tls_login() { psql "postgres://postgres@127.0.0.1:5432/test?sslmode=verify-full&sslrootcert=$TLS_DIR/ca.crt" -qtAc "select 1"; }

# PostgreSQL takes new TLS settings on reload: no restart.
tls_pg() {
    local name=postgresql-tls cert=$TLS_DIR/postgres/server.crt how="already on"
    have_pg && pg_ready || { fail $name "PostgreSQL is not up"; return; }
    if [ $certs_renewed = 1 ] || [ "$(pg_sql postgres "show ssl_cert_file")" != "$cert" ] ||
        [ "$(pg_sql postgres "show ssl")" != on ]; then
        pg_sql postgres "ALTER SYSTEM SET ssl_cert_file = '$cert'" &&
            pg_sql postgres "ALTER SYSTEM SET ssl_key_file = '$TLS_DIR/postgres/server.key'" &&
            pg_sql postgres "ALTER SYSTEM SET ssl = on" &&
            pg_sql postgres "SELECT pg_reload_conf()" >/dev/null ||
            { fail $name "could not set ssl_cert_file"; return; }
        how="reloaded with the CA's certificate"
    fi
    if ! wait_until 10 pg_tls_login; then
        fail $name "no verified TLS login (see /var/log/postgresql/postgresql-$PG_VER-$PG_CLUSTER.log)"
        return
    fi
    say $name "ok  $how  sslmode=verify-full&sslrootcert=$TLS_DIR/ca.crt"
}

mariadb_has_tls() { [ "$(mariadb_login -N -e "select @@have_ssl" 2>/dev/null)" = YES ]; }
mariadb_tls_login() { mariadb_login --ssl --ssl-ca="$TLS_DIR/ca.crt" --ssl-verify-server-cert -e "select 1"; }

# MariaDB reads ssl_cert at start only: a server started before the TLS
# settings existed is restarted once (a few seconds).
tls_mariadb() {
    local name=mariadb-tls how="already on" t0
    have_mariadb && mariadb_alive >/dev/null 2>&1 || { fail $name "MariaDB is not up"; return; }
    if ! mariadb_has_tls; then
        t0=$(now_ms)
        # --retry: returns once the old process is gone, so the new one can start.
        $SUDO start-stop-daemon --stop --oknodo --exec /usr/sbin/mariadbd --retry TERM/60/KILL/5 >/dev/null 9>&-
        launch_mariadb
        if ! wait_until "$TIMEOUT" mariadb_alive; then
            fail $name "no answer on 127.0.0.1:3306 after the TLS restart (see /var/log/mysql/error.log)"
            return
        fi
        how="restarted with TLS in $(since "$t0")"
    elif [ $certs_renewed = 1 ]; then
        mariadb_login -e "FLUSH SSL" || true
        how="certificate reloaded"
    fi
    if ! mariadb_tls_login >/dev/null 2>&1; then
        fail $name "no verified TLS login (see /var/log/mysql/error.log)"
        return
    fi
    say $name "ok  $how  ssl-mode=VERIFY_IDENTITY&ssl-ca=$TLS_DIR/ca.crt"
}

redis_tls_ping() { [ "$(redis-cli --tls --cacert "$TLS_DIR/ca.crt" -h 127.0.0.1 -p "$1" ping 2>/dev/null)" = PONG ]; }
redis_port_free() { ! ss -Hltn "sport = :$1" | grep -q .; }
# A node made with an older CA no longer passes verification: stop it unverified.
redis_tls_stop() {
    redis_port_free "$1" && return
    redis-cli --tls --insecure -h 127.0.0.1 -p "$1" shutdown nosave >/dev/null 2>&1 || true
    wait_until 10 redis_port_free "$1" || true
}

# redis-server ARGS... : a TLS-only node with the CA's certificate.
redis_tls_server() {
    redis-server --port 0 --bind 127.0.0.1 --save "" --appendonly no --daemonize yes \
        --tls-cert-file "$TLS_DIR/server.crt" --tls-key-file "$TLS_DIR/server.key" \
        --tls-ca-cert-file "$TLS_DIR/ca.crt" --tls-auth-clients no "$@" >/dev/null 9>&- || true
}

# A second redis-server: the shared one on 6379 is never touched.
start_redis_tls() {
    local name=redis-tls port=$REDIS_TLS_PORT t0 how
    if ! have_redis; then fail $name "not installed"; return; fi
    t0=$(now_ms)
    if redis_tls_ping "$port" && [ $certs_renewed = 0 ]; then
        how="already running"
    else
        redis_tls_stop "$port"
        redis_tls_server --tls-port "$port" --dir /tmp --logfile "$LOG_DIR/redis-$port.log"
        if ! wait_until "$TIMEOUT" redis_tls_ping "$port"; then
            fail $name "no TLS answer on 127.0.0.1:$port after ${TIMEOUT}s (see $LOG_DIR/redis-$port.log)"
            return
        fi
        how="started in $(since "$t0")"
    fi
    say $name "ok  $how  rediss://127.0.0.1:$port/?tls_ca=$TLS_DIR/ca.crt"
}

tls_cluster_ok() {
    local p
    for p in "${TLS_CLUSTER_PORTS[@]}"; do
        redis-cli --tls --cacert "$TLS_DIR/ca.crt" -h 127.0.0.1 -p "$p" cluster info 2>/dev/null |
            grep -q '^cluster_state:ok' || return 1
    done
}
tls_cluster_all_up() {
    local p
    for p in "${TLS_CLUSTER_PORTS[@]}"; do redis_tls_ping "$p" || return 1; done
}

# Three TLS-only masters that also talk TLS among themselves (tls-cluster yes).
start_tls_cluster() {
    local name=redis-tls-cluster t0 p nodes=()
    if ! have_redis; then fail $name "not installed"; return; fi
    t0=$(now_ms)
    if [ $certs_renewed = 0 ] && tls_cluster_all_up && wait_until 5 tls_cluster_ok; then
        say $name "ok  already running  rediss://127.0.0.1:${TLS_CLUSTER_PORTS[0]},…"
        return
    fi
    # Anything else is rebuilt from nothing: it holds test data only.
    for p in "${TLS_CLUSTER_PORTS[@]}"; do redis_tls_stop "$p"; done
    mkdir -p "$TLS_CLUSTER_DIR"
    rm -rf "${TLS_CLUSTER_DIR:?}"/*
    for p in "${TLS_CLUSTER_PORTS[@]}"; do
        mkdir -p "$TLS_CLUSTER_DIR/$p"
        redis_tls_server --tls-port "$p" --tls-cluster yes --cluster-enabled yes \
            --cluster-config-file "$TLS_CLUSTER_DIR/$p/nodes.conf" \
            --dir "$TLS_CLUSTER_DIR/$p" --logfile "$TLS_CLUSTER_DIR/$p/redis.log"
        nodes+=("127.0.0.1:$p")
    done
    if ! wait_until "$TIMEOUT" tls_cluster_all_up; then
        fail $name "nodes do not answer on ${TLS_CLUSTER_PORTS[*]} (see $TLS_CLUSTER_DIR/*/redis.log)"
        return
    fi
    if ! redis-cli --tls --cacert "$TLS_DIR/ca.crt" --cluster create "${nodes[@]}" --cluster-replicas 0 \
        --cluster-yes >"$LOG_DIR/redis-tls-cluster-create.log" 2>&1; then
        fail $name "redis-cli --cluster create failed (see $LOG_DIR/redis-tls-cluster-create.log)"
        return
    fi
    if ! wait_until "$TIMEOUT" tls_cluster_ok; then
        fail $name "cluster_state is not ok after ${TIMEOUT}s"
        return
    fi
    say $name "ok  created in $(since "$t0")  rediss://127.0.0.1:${TLS_CLUSTER_PORTS[0]},…"
}

# ---------------------------------------------------------------- run

make_certs || true
start_pg
start_mariadb
start_redis
start_cluster
if certs_ok; then
    tls_pg
    tls_mariadb
    start_redis_tls
    start_tls_cluster
fi
have_go || fail go "not installed (needed by the Go tests)"
have_valgrind || fail valgrind "not installed (needed by the C tests)"
have_chromium || fail chromium "not installed (needed by the dashboard browser test)"
have_node || fail node "not installed (needed by the dashboard browser test)"

echo "# export QTASK_TEST_PG_URL=$QTASK_TEST_PG_URL QTASK_TEST_MYSQL_URL=$QTASK_TEST_MYSQL_URL" \
    "QTASK_TEST_REDIS_URL=$QTASK_TEST_REDIS_URL QTASK_TEST_REDIS_CLUSTER_URLS=$QTASK_TEST_REDIS_CLUSTER_URLS" \
    " (or: source scripts/env.sh)"

if [ ${#failures[@]} -gt 0 ]; then
    if [ "$NO_INSTALL" = 1 ] && [ "${CI:-}" != true ]; then
        echo "services: not available: ${failures[*]} (QTASK_NO_INSTALL=1: tests needing them are skipped)" >&2
        exit 0
    fi
    echo "services: FAILED: ${failures[*]}" >&2
    exit 1
fi
