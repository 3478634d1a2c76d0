#!/usr/bin/env bash
# Installs what a fresh Debian machine lacks to build, run and test Marquee: PostgreSQL server binaries, libpq-dev,
# Chromium for the browser tests, and a Python virtualenv (.venv) with the test clients. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
have_pg() { command -v pg_ctl >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; }
have_pg || need_apt+=(postgresql)
# libpq and its headers: the change feed streams over libpq's replication API (the CLibPQ system-library target)
{ [ -f /usr/include/postgresql/libpq-fe.h ] && pkg-config --exists libpq 2>/dev/null; } || need_apt+=(libpq-dev pkg-config)
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
command -v pgbouncer >/dev/null 2>&1 || [ -x /usr/sbin/pgbouncer ] || need_apt+=(pgbouncer)  # a pooler that refuses replication connections (tests)
command -v promtool >/dev/null 2>&1 || need_apt+=(prometheus)  # promtool checks deploy/alerts.yml
command -v nginx >/dev/null 2>&1 || need_apt+=(nginx)  # the peer in the fan-out benchmark (tests/bench)
[ -f /usr/lib/nginx/modules/ngx_nchan_module.so ] || need_apt+=(libnginx-mod-nchan)
python3 -m venv --help >/dev/null 2>&1 || need_apt+=(python3-venv)
if [ ${#need_apt[@]} -gt 0 ]; then
    echo "installing ${need_apt[*]} (apt)"
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ] || ! cmp -s requirements-test.txt .venv/.requirements 2>/dev/null; then
    echo "preparing .venv (pip)"
    python3 -m venv .venv
    .venv/bin/pip install -q --upgrade pip
    .venv/bin/pip install -q -r requirements-test.txt
    cp requirements-test.txt .venv/.requirements
fi
