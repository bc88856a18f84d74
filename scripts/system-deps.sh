#!/usr/bin/env bash
# Debian packages the test suite needs: Chromium drives the web UI in the end-to-end test, and a
# PostgreSQL server backs the production-instance test (which skips, saying why, when it is missing).
set -euo pipefail

can_install() { [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; }
apt_updated=
apt_install() {
  [[ -n $apt_updated ]] || { apt-get update -qq; apt_updated=1; }
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}
have_postgres() { compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null; }

if ! command -v chromium >/dev/null 2>&1; then
  if can_install; then
    echo "installing Debian's chromium for the UI test..."
    apt_install chromium
  else
    echo "the UI test needs Chromium: sudo apt-get install chromium" >&2
    exit 1
  fi
fi

if ! have_postgres; then
  if can_install; then
    echo "installing Debian's postgresql server for the production-instance test..."
    apt_install postgresql
  else
    echo "note: no PostgreSQL server (/usr/lib/postgresql/*/bin/initdb): test_postgres_instance will be" \
         "skipped; to run it: sudo apt-get install postgresql" >&2
  fi
fi
