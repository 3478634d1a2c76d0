#!/usr/bin/env bash
# Runs every test: Swift unit and integration tests, then the Python API, conformance and browser tests, all
# against a PostgreSQL cluster this script starts in a temporary folder and removes afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh

swift build --build-tests

work=$(mktemp -d /tmp/marquee-test.XXXXXX)
chmod 755 "$work"  # the unprivileged PostgreSQL user must reach the cluster when this runs as root
cleanup() {
    .build/debug/marquee db stop --data-dir "$work/db" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT INT TERM

MARQUEE_TEST_DATABASE_URL=$(.build/debug/marquee db start --data-dir "$work/db" --log-level warning)
export MARQUEE_TEST_DATABASE_URL
export MARQUEE_BIN="$PWD/.build/debug/marquee"

swift test --skip-build
.venv/bin/python -m pytest tests -q -p no:cacheprovider "$@"
