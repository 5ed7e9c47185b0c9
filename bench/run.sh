#!/usr/bin/env bash
# One benchmark for everything: qtask (Rust, Go, Python) beside River, asynq, RQ,
# Huey, procrastinate, pgqueuer, Celery and BullMQ, plus the bare-SQL and Redis
# ceilings, in one run on the servers scripts/services.sh starts. A program, not a
# test: nothing asserts a speed.
#
#   bash bench/run.sh                     # every system, full sizes (see bench/README.md)
#   bash bench/run.sh --quick             # a few thousand tasks per row
#   bash bench/run.sh --only qtask-py-pg-redis,rq,huey
#   bash bench/run.sh --help
#
# Installs everything bench-local, at pinned versions: a venv in bench/.venv (PyPI),
# bench/node/node_modules (npm), Go modules in bench/.cache/gomod. A peer that fails
# to install is reported as skipped by run.py, and the others still run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=../scripts/env.sh
source scripts/env.sh

for arg in "$@"; do
    if [ "$arg" = "-h" ] || [ "$arg" = "--help" ]; then
        exec "${PYTHON:-python3}" bench/run.py --help
    fi
done

bench="$PWD/bench"
cache="$bench/.cache"
venv="$bench/.venv"
status="$cache/install-status.tsv" # system<TAB>why it could not be installed
mkdir -p "$cache"
: >"$status"
log() { echo "bench: $*" >&2; }
# The peers, pinned so that a rerun measures the same code.
PY_CORE=('maturin>=1.9,<2' 'tqdm==4.70.1' 'matplotlib==3.11.2' 'psutil==7.2.2' 'redis==8.1.0' 'psycopg[binary]==3.3.9')
declare -A PY_PEERS=(
    [rq]='rq==2.12.0'
    [huey]='huey==3.5.4'
    [procrastinate]='procrastinate==3.10.0'
    [pgqueuer]='pgqueuer==1.6.0'
    [celery]='celery[redis]==5.6.3'
)
BULLMQ_VERSION=6.7.0
IOREDIS_VERSION=5.8.2 # BullMQ 6 takes its Redis client as a peer dependency

if ! "$venv/bin/python" -c 'import sys; assert sys.version_info >= (3, 9)' 2>/dev/null; then
    log "creating $venv"
    rm -rf "$venv"
    "${PYTHON:-python3}" -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip install --quiet --disable-pip-version-check)
log "installing the driver's own packages (tqdm, matplotlib, psutil, redis, psycopg)"
"${pip[@]}" "${PY_CORE[@]}"
for peer in "${!PY_PEERS[@]}"; do
    if ! out=$("${pip[@]}" "${PY_PEERS[$peer]}" 2>&1); then
        printf '%s\tpip install %s failed: %s\n' "$peer" "${PY_PEERS[$peer]}" "$(echo "$out" | tail -1)" >>"$status"
    fi
done

log "building qtask (release): qtask-bench, libqtask, the Python wheel"
target=${CARGO_TARGET_DIR:-target}
case "$target" in /*) ;; *) target="$PWD/$target" ;; esac
nice -n 5 cargo build --quiet --release -p qtask-bench -p qtask-ffi
wheels="$(mktemp -d)"
trap 'rm -rf "$wheels"' EXIT
nice -n 5 "$venv/bin/maturin" build --quiet --release --interpreter "$venv/bin/python" --out "$wheels" >/dev/null
"${pip[@]}" --force-reinstall --no-deps "$wheels"/qtask-*.whl

log "building the Go driver (River, asynq from the Go module proxy)"
export GOMODCACHE="$cache/gomod" GOFLAGS=-modcacherw
export CGO_ENABLED=1 CGO_LDFLAGS="-L$target/release -Wl,-rpath,$target/release ${CGO_LDFLAGS:-}"
if ! command -v go >/dev/null 2>&1; then
    printf 'go\tgo is not installed\n' >>"$status"
elif ! out=$(cd bench/go && go build -o "$cache/go-bench" . 2>&1); then
    printf 'go\tgo build failed: %s\n' "$(echo "$out" | tail -1)" >>"$status"
fi

log "building the C worker's driver (bench/c/worker_bench.c)"
if ! out=$(cc -std=c11 -D_POSIX_C_SOURCE=200809L -Wall -Wextra -Werror -O2 -Iinclude bench/c/worker_bench.c \
    -o "$cache/c-worker-bench" -L"$target/release" -Wl,-rpath,"$target/release" -lqtask -lpthread 2>&1); then
    printf 'c\tcc failed: %s\n' "$(echo "$out" | tail -1)" >>"$status"
fi

log "installing BullMQ $BULLMQ_VERSION (npm)"
if ! command -v npm >/dev/null 2>&1; then
    printf 'bullmq\tnpm is not installed\n' >>"$status"
elif ! out=$(cd bench/node && npm install --silent --no-audit --no-fund "bullmq@$BULLMQ_VERSION" "ioredis@$IOREDIS_VERSION" 2>&1); then
    printf 'bullmq\tnpm install failed: %s\n' "$(echo "$out" | tail -1)" >>"$status"
fi

export QTASK_BENCH_BIN="$target/release/qtask-bench" QTASK_BENCH_GO="$cache/go-bench" QTASK_BENCH_C="$cache/c-worker-bench"
export QTASK_BENCH_INSTALL_STATUS="$status"
exec "$venv/bin/python" bench/run.py "$@"
