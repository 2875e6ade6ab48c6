#!/usr/bin/env bash
# Everything the test suite needs beyond the Python venv, on a fresh machine of our kind
# (Debian, apt, root): the binaries the end-to-end and SSO tests drive, and PostgreSQL and
# Redis running on 127.0.0.1. Idempotent and quick when all is there; says what it does.
# `make test` runs it first; `.ci/run` runs `make test`.
#
#   nginx     tests/e2e/test_nginx.py (the sidecar behind nginx auth_request)
#   xmlsec1   tests/idp/saml_idp.py (pysaml2 signs SAML responses with it)
#   chromium  tests/e2e/test_ui.py (the web studio in a real browser; never `playwright install`)
#   npm       the web studio's build and unit tests (Node.js 20+ and npm 11 come with the machine)
#   prometheus  promtool + prometheus: tests/deploy (alert rule tests), tests/e2e/test_prometheus_alerts.py
#   unzip     scripts/fetch-helm.sh (helm comes out of an npm package's zip)
#   azurite   tests/object_stores.py (Microsoft's Azure Blob emulator, npm ci in tests/emulators)
#
# `--bench` (what `make bench` runs) also installs the load generators wrk and hey.
set -euo pipefail

say() { printf 'test-deps: %s\n' "$*"; }
fail() { printf 'test-deps: %s\n' "$*" >&2; exit 1; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    fail "need root for: $* (run it as root, then 'make test' again)"
  fi
}

# -- Debian packages: binary on PATH (or at its Debian path) -> package ----------------------
declare -A PACKAGE_OF=([nginx]=nginx [xmlsec1]=xmlsec1 [chromium]=chromium [wrk]=wrk [hey]=hey
  [promtool]=prometheus [unzip]=unzip)
declare -A DEBIAN_PATH=([nginx]=/usr/sbin/nginx [xmlsec1]=/usr/bin/xmlsec1 [chromium]=/usr/bin/chromium
  [wrk]=/usr/bin/wrk [hey]=/usr/bin/hey [promtool]=/usr/bin/promtool [unzip]=/usr/bin/unzip)
binaries=(nginx xmlsec1 chromium promtool unzip)
[ "${1:-}" = "--bench" ] && binaries+=(wrk hey)
missing=()
for binary in "${binaries[@]}"; do
  if ! command -v "$binary" >/dev/null 2>&1 && [ ! -x "${DEBIAN_PATH[$binary]}" ]; then
    missing+=("${PACKAGE_OF[$binary]}")
  fi
done
if [ "${#missing[@]}" -gt 0 ]; then
  command -v apt-get >/dev/null 2>&1 \
    || fail "missing ${missing[*]} and no apt-get here: install them with your package manager"
  say "installing ${missing[*]} with apt-get (first run only; a minute or two)"
  export DEBIAN_FRONTEND=noninteractive
  # A fresh machine's package lists may be empty or stale: refresh them once, first.
  as_root apt-get update -qq
  as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  say "installed ${missing[*]}"
fi

command -v npm >/dev/null 2>&1 \
  || fail "npm is missing: install Node.js 20+ with npm 11 (the web studio's build needs it)"

# -- Emulators from npm (tests/emulators/package-lock.json), when the lock is newer -------------
emulators="$(dirname "$0")/../tests/emulators"
if [ ! -e "$emulators/node_modules/.package-lock.json" ] \
  || [ "$emulators/package-lock.json" -nt "$emulators/node_modules/.package-lock.json" ]; then
  say "installing the test emulators (azurite) with npm ci (first run only)"
  (cd "$emulators" && npm ci --no-audit --no-fund --loglevel=error >/dev/null) \
    || fail "npm ci in tests/emulators failed"
fi

# -- PostgreSQL and Redis on 127.0.0.1, started when stopped ---------------------------------
# Only the local ones: a URL pointing elsewhere is the caller's service to run.
postgres_url="${KAIZEN_TEST_POSTGRES_URL:-postgresql+asyncpg://postgres@127.0.0.1:5432/postgres}"
redis_url="${KAIZEN_TEST_REDIS_URL:-redis://127.0.0.1:6379/0}"

case "$postgres_url" in
  *@127.0.0.1:5432/* | *@localhost:5432/*)
    if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
      command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ] \
        || fail "PostgreSQL is not running on 127.0.0.1:5432 and not installed (apt-get install -y postgresql; trust auth for 127.0.0.1)"
      say "starting PostgreSQL"
      as_root pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -1)" main start
      for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
      pg_isready -q -h 127.0.0.1 -p 5432 || fail "PostgreSQL did not come up on 127.0.0.1:5432"
    fi ;;
  *) say "PostgreSQL: using $postgres_url as given" ;;
esac

case "$redis_url" in
  redis://127.0.0.1:6379* | redis://localhost:6379*)
    if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
      command -v redis-server >/dev/null 2>&1 \
        || fail "Redis is not running on 127.0.0.1:6379 and not installed (apt-get install -y redis-server)"
      say "starting Redis"
      redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >/dev/null
      for _ in $(seq 1 30); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break; sleep 1; done
      redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 || fail "Redis did not come up on 127.0.0.1:6379"
    fi ;;
  *) say "Redis: using $redis_url as given" ;;
esac

say "nginx, xmlsec1, chromium, npm, azurite, PostgreSQL and Redis are ready"
