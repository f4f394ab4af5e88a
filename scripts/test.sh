#!/usr/bin/env bash
# Set up and run the whole test suite on a fresh machine:
# virtualenv and dependencies, PostgreSQL (installed from the distribution's
# packages if missing, started if stopped, test database created), Chromium
# for the browser test, then lint, type checks and pytest against SQLite and
# PostgreSQL.
#   scripts/test.sh [pytest arguments]
set -euo pipefail
source "$(dirname "$0")/common.sh"

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

as_postgres() {
    if [ "$(id -u)" -eq 0 ]; then su postgres -c "$*"; else sudo -u postgres sh -c "$*"; fi
}

ensure_postgres() {
    if ! command -v pg_lsclusters >/dev/null 2>&1; then
        echo "==> installing PostgreSQL from the distribution's packages"
        as_root apt-get update -qq
        DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq postgresql >/dev/null
    fi
    local version
    version=$(ls /etc/postgresql | sort -V | tail -n 1)
    if ! pg_lsclusters -h | awk -v v="$version" '$1 == v && $2 == "main"' | grep -q online; then
        echo "==> starting PostgreSQL $version"
        as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start
    fi
    for _ in $(seq 1 30); do
        pg_isready -q -h 127.0.0.1 -p 5432 && break
        sleep 1
    done
    export PGCONNECT_TIMEOUT=5
    if [ -z "${IDNODE_TEST_PG:-}" ]; then
        if psql -h 127.0.0.1 -U postgres -d postgres -Atc 'SELECT 1' >/dev/null 2>&1; then
            IDNODE_TEST_PG=postgresql://postgres@127.0.0.1:5432
        else
            # A stock installation wants a password on TCP: give postgres one for the tests.
            as_postgres "psql -q -c \"ALTER USER postgres PASSWORD 'postgres'\""
            IDNODE_TEST_PG=postgresql://postgres:postgres@127.0.0.1:5432
        fi
        export IDNODE_TEST_PG
    fi
    if ! psql "$IDNODE_TEST_PG/idnode_test" -Atc 'SELECT 1' >/dev/null 2>&1; then
        echo "==> creating the test database idnode_test"
        psql "$IDNODE_TEST_PG/postgres" -q -c 'CREATE DATABASE idnode_test'
    fi
}

ensure_chromium() {
    # The lookup page is tested in a real headless browser: Debian's chromium.
    if [ ! -x /usr/bin/chromium ]; then
        echo "==> installing chromium from the distribution's packages"
        as_root apt-get update -qq
        DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq chromium >/dev/null
    fi
}

install_without_services() {
    # Debian packages whose services must not start or stay enabled: the tests
    # run their own servers on loopback ports.
    local policy=/usr/sbin/policy-rc.d created_policy=0 status=0 service
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' | as_root tee "$policy" >/dev/null
        as_root chmod 755 "$policy"
        created_policy=1
    fi
    {
        as_root apt-get update -qq &&
            DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$@" >/dev/null
    } || status=$?
    [ "$created_policy" -eq 0 ] || as_root rm -f "$policy"
    [ "$status" -eq 0 ] || return "$status"
    for service in knot nsd nginx prometheus prometheus-node-exporter; do
        if [ -d /run/systemd/system ]; then
            as_root systemctl disable --now "$service" >/dev/null 2>&1 || true
        fi
        as_root update-rc.d "$service" disable >/dev/null 2>&1 || true
    done
}

ensure_dns_tools() {
    # The DNS tests compare with a reference authoritative server (Knot DNS,
    # NSD) and drive dnsperf.
    local missing=0 bin
    for bin in /usr/bin/dig /usr/bin/kdig /usr/sbin/knotd /usr/sbin/nsd /usr/bin/dnsperf; do
        [ -x "$bin" ] || missing=1
    done
    [ "$missing" -eq 1 ] || return 0
    echo "==> installing knot, nsd, dnsperf, dig and kdig from the distribution's packages"
    install_without_services bind9-dnsutils knot-dnsutils knot nsd dnsperf
}

ensure_load_tools() {
    # The benchmark suite drives HTTP with wrk (peak) and h2load (fixed rates).
    if [ -x /usr/bin/wrk ] && [ -x /usr/bin/h2load ]; then
        return 0
    fi
    echo "==> installing wrk and h2load from the distribution's packages"
    install_without_services wrk nghttp2-client
}

ensure_proxy_and_openssl() {
    # The reverse-proxy test puts a real nginx in front of the node; signatures
    # the node makes are checked with the openssl command.
    if [ -x /usr/sbin/nginx ] && command -v openssl >/dev/null 2>&1; then
        return 0
    fi
    echo "==> installing nginx-light and openssl from the distribution's packages"
    install_without_services nginx-light openssl
}

ensure_prometheus() {
    # The rules are unit-tested with promtool, and the dashboard's queries run
    # against a real Prometheus scraping a real node.
    if [ -x /usr/bin/prometheus ] && [ -x /usr/bin/promtool ]; then
        return 0
    fi
    echo "==> installing prometheus and promtool from the distribution's packages"
    install_without_services prometheus
}

ensure_venv "test"
ensure_postgres
ensure_chromium
ensure_dns_tools
ensure_load_tools
ensure_prometheus
ensure_proxy_and_openssl
cd "$ROOT"
echo "==> ruff"
"$VENV/bin/ruff" check .
"$VENV/bin/ruff" format --check .
echo "==> mypy"
"$VENV/bin/mypy"
echo "==> pytest (SQLite and PostgreSQL at ${IDNODE_TEST_PG%%@*}@...)"
# Two pytest workers: most tests wait on subprocesses and sockets, so two run
# side by side in about half the time (IDNODE_TEST_WORKERS=0 runs them in one).
workers=${IDNODE_TEST_WORKERS:-2}
if [ "$workers" -gt 0 ]; then
    exec "$VENV/bin/pytest" -n "$workers" "$@"
fi
exec "$VENV/bin/pytest" "$@"
