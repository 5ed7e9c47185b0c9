#!/usr/bin/env bash
# The project's test command:  bash scripts/test.sh
#
# Starts (installing when missing) PostgreSQL, MariaDB, Redis and a Redis
# Cluster, then runs every test suite of the repository, one named step each.
# QTASK_NO_INSTALL=1: install nothing; tests whose server is missing are
# skipped with a loud line (with CI=true they fail instead).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=env.sh
source scripts/env.sh

current_step=setup
trap 'rc=$?; if [ $rc -ne 0 ]; then echo "==> FAILED: $current_step (exit $rc)" >&2; fi' EXIT

# step NAME CMD... : run one named step; the script stops at the first failure.
step() {
    current_step=$1
    shift
    echo "==> $current_step"
    local t0=$SECONDS
    "$@"
    echo "    $current_step passed ($((SECONDS - t0))s)"
}

# --- servers (scripts/services.sh: idempotent, fast when all are up)
if [ "${QTASK_NO_INSTALL:-}" = 1 ]; then
    step services env QTASK_NO_INSTALL=1 bash scripts/services.sh
else
    step services bash scripts/services.sh
fi

# --- Rust: qtask-core unit and integration tests (and every other crate)
step rust cargo test --workspace --all-targets
# OTLP export is behind the `otlp` feature (off by default): its test runs with it.
step otlp cargo test -p qtask-core --features otlp --test otlp

# --- Placeholders. Each runs only once its directory and runner exist, so this
# script works at every stage of the project. Runners must use
# ${CARGO_TARGET_DIR:-target} to find build outputs (CI sets CARGO_TARGET_DIR).

# C ABI: build libqtask, check include/qtask.h is current, compile the C test
# program against it and run it (also under valgrind).
if [ -d qtask-ffi ] && [ -f tests/c/run.sh ]; then
    step c bash tests/c/run.sh
fi

# Go: the cgo package in qtask-ffi/go, `go test` against libqtask.
if [ -d qtask-ffi/go ] && [ -f tests/go/run.sh ]; then
    step go bash tests/go/run.sh
fi

# Python: build the qtask-py module with maturin into a venv, run pytest.
if [ -d qtask-py ] && [ -d python/qtask ] && [ -f tests/python/run.sh ]; then
    step python bash tests/python/run.sh
fi

# Dashboard: `qtask dashboard` driven in headless chromium (retry, pause, resume).
if [ -d qtask-cli ] && [ -f tests/dashboard/run.sh ]; then
    step dashboard bash tests/dashboard/run.sh
fi

# Fuzzing: each cargo-fuzz target of fuzz/ for QTASK_FUZZ_SECONDS (default 60)
# from the committed corpus. Needs nightly + cargo-fuzz (installed when missing;
# one loud SKIP line when they cannot be had).
if [ -d fuzz ] && [ -f tests/fuzz/run.sh ]; then
    step fuzz bash tests/fuzz/run.sh
fi

# The chaos soak last, so that its summary lines (each `lost 0`) end the output. In
# CI nobody else uses the servers then, so it restarts PostgreSQL once as well.
if [ -f tests/faults/run.sh ]; then
    if [ "${CI:-}" = true ]; then
        step faults env QTASK_SOAK_RESTART_PG=1 bash tests/faults/run.sh
    else
        step faults bash tests/faults/run.sh
    fi
fi

current_step=done
echo "==> all steps passed"
