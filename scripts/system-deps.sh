#!/usr/bin/env bash
# Debian packages the test suite needs: Chromium drives the web UI in the end-to-end test.
set -euo pipefail
command -v chromium >/dev/null 2>&1 && exit 0
if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian's chromium for the UI test..."
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
else
  echo "the UI test needs Chromium: sudo apt-get install chromium" >&2
  exit 1
fi
