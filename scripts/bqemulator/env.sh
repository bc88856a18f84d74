#!/usr/bin/env bash
# Builds .bqemulator-venv, the BigQuery emulator's own environment (its pins clash with the project's),
# from scripts/bqemulator/requirements.lock. Idempotent: a stamp records the lock it was built from.
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON="${PYTHON:-$(command -v python3.11 || command -v python3)}"
VENV=.bqemulator-venv
STAMP="$VENV/.installed-$(cksum < scripts/bqemulator/requirements.lock | cut -d' ' -f1)"
[[ -e "$STAMP" ]] && exit 0
test -x "$VENV/bin/python" || "$PYTHON" -m venv "$VENV"
# uv from the project's venv when there is one: 10x faster than pip for ~80 packages
if [[ -x .venv/bin/uv ]]; then
  .venv/bin/uv pip install --python "$VENV/bin/python" -q --no-deps -r scripts/bqemulator/requirements.lock
else
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps -r scripts/bqemulator/requirements.lock
fi
rm -f "$VENV"/.installed-* && touch "$STAMP"
