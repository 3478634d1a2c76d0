#!/usr/bin/env bash
# Builds and runs Marquee with its embedded PostgreSQL and the demo events; open the printed URL.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v pg_ctl >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq postgresql >/dev/null
fi
swift build --product marquee
exec .build/debug/marquee serve --demo "$@"
