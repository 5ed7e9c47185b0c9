#!/usr/bin/env bash
# Browser test of `qtask dashboard`: seeds a SQLite table with failed tasks, starts
# the dashboard on a free loopback port, and drives it in Debian's chromium
# (headless, playwright-core from npm): retry a failed task, check the row changed,
# pause and resume its queue. Screenshots go to a temporary folder, or to
# $QTASK_SCREENSHOTS (refresh the README's: QTASK_SCREENSHOTS=docs bash tests/dashboard/run.sh).
#
# Needs /usr/bin/chromium (scripts/services.sh installs it) and node + npm.
# Without them: a loud skip, or a failure when CI=true.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
here=tests/dashboard
target=${CARGO_TARGET_DIR:-target}
chromium=${QTASK_CHROMIUM:-/usr/bin/chromium}

missing=()
[ -x "$chromium" ] || missing+=("chromium ($chromium)")
command -v node >/dev/null 2>&1 || missing+=(node)
command -v npm >/dev/null 2>&1 || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
    if [ "${CI:-}" = true ]; then
        echo "dashboard: missing ${missing[*]} (CI=true: a failure)" >&2
        exit 1
    fi
    echo "SKIP: dashboard browser test: missing ${missing[*]} (run scripts/services.sh)" >&2
    exit 0
fi

cargo build -q -p qtask-cli --bin qtask --example dashboard_seed
if [ ! -d "$here/node_modules/playwright-core" ]; then
    (cd "$here" && npm ci --no-audit --no-fund --loglevel=error)
fi

work=$(mktemp -d /tmp/qtask-dashboard-test.XXXXXX)
dashboard_pid=
cleanup() {
    if [ -n "$dashboard_pid" ]; then kill "$dashboard_pid" 2>/dev/null || true; wait "$dashboard_pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

export QTASK_DB_URL="sqlite://$work/dashboard.db"
export QTASK_QUEUE_URL=db
failed_id=$("$target/debug/examples/dashboard_seed" "$QTASK_DB_URL")

"$target/debug/qtask" dashboard --listen 127.0.0.1:0 >"$work/dashboard.out" 2>"$work/dashboard.err" &
dashboard_pid=$!
url=
for _ in $(seq 1 100); do
    url=$(grep -o 'http://127\.0\.0\.1:[0-9]*' "$work/dashboard.out" || true)
    [ -n "$url" ] && break
    kill -0 "$dashboard_pid" 2>/dev/null || { cat "$work/dashboard.err" >&2; exit 1; }
    sleep 0.1
done
[ -n "$url" ] || { echo "dashboard: no listening line" >&2; cat "$work/dashboard.err" >&2; exit 1; }

shots=${QTASK_SCREENSHOTS:-$work}
mkdir -p "$shots"
shots=$(cd "$shots" && pwd)
(cd "$here" && QTASK_DASHBOARD_URL="$url" QTASK_FAILED_ID="$failed_id" QTASK_SCREENSHOTS="$shots" \
    QTASK_CHROMIUM="$chromium" node --test dashboard.test.mjs)

# The table agrees with what the page showed.
status=$("$target/debug/qtask" tasks get "$failed_id" --json | grep -o '"status": "[a-z]*"')
[ "$status" = '"status": "waiting"' ] || { echo "dashboard: task $failed_id is $status after retry" >&2; exit 1; }
echo "dashboard: retried task $failed_id is waiting; screenshots in $shots"
