#!/usr/bin/env bash
# Bounded fuzzing of every cargo-fuzz target in fuzz/ (config JSON, task input,
# URLs, the C ABI's qtask_open and qtask_create/qtask_pop), from the committed
# seed corpus in fuzz/corpus/<target>. Called by scripts/test.sh; runs alone too:
#
#   bash tests/fuzz/run.sh [target...]
#   QTASK_FUZZ_SECONDS=60   seconds per target (default 60)
#
# Needs a nightly toolchain and cargo-fuzz; installs them when missing. When
# either cannot be had, it says so in one loud line and exits 0 (1 with CI=true).
# New inputs go to ${CARGO_TARGET_DIR:-target}/fuzz-corpus, never to the
# committed corpus; a crash leaves its input in fuzz/artifacts/<target>/ and
# fails the run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

seconds=${QTASK_FUZZ_SECONDS:-60}
target_dir=${CARGO_TARGET_DIR:-$PWD/target}

skip() {
    echo "SKIP: FUZZING NOT RUN: $1" >&2
    [ "${CI:-}" = true ] && exit 1
    exit 0
}

if ! rustup toolchain list | grep -q '^nightly'; then
    echo "fuzz: installing the nightly toolchain (minimal profile)"
    rustup toolchain install nightly --profile minimal >&2 || skip "no nightly toolchain, and it could not be installed"
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz"
    cargo install cargo-fuzz --locked >&2 || skip "cargo-fuzz is missing and could not be installed"
fi

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(cargo +nightly fuzz list --fuzz-dir fuzz)
fi

nice -n 10 cargo +nightly fuzz build --fuzz-dir fuzz --target-dir "$target_dir/fuzz"
for target in "${targets[@]}"; do
    work="$target_dir/fuzz-corpus/$target"
    mkdir -p "$work"
    echo "fuzz: $target for ${seconds}s"
    log="$target_dir/fuzz-corpus/$target.log"
    # The first corpus directory receives new inputs; the committed one is only read.
    rc=0
    cargo +nightly fuzz run --fuzz-dir fuzz --target-dir "$target_dir/fuzz" "$target" \
        "$work" "fuzz/corpus/$target" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 >"$log" 2>&1 || rc=$?
    grep -E '^(#[0-9]+[[:space:]]+DONE|stat::number_of_executed_units|stat::new_units_added|==[0-9]+==|SUMMARY|thread .* panicked|Test unit written)' "$log" || true
    if [ $rc -ne 0 ]; then
        tail -n 40 "$log" >&2
        echo "fuzz: $target FAILED (exit $rc; input in fuzz/artifacts/$target/, log $log)" >&2
        exit 1
    fi
done
echo "fuzz: ${#targets[@]} targets, ${seconds}s each, no failure"
