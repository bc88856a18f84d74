#!/usr/bin/env bash
# `make dev`: a feed into the spool (the real IRIS client when credentials are configured, otherwise the
# simulator) and `dagster dev` on http://127.0.0.1:3000, DuckDB at data/warehouse.duckdb.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
export IRIS_SPOOL_DIR="${IRIS_SPOOL_DIR:-data/spool}"
export IRIS_DUCKDB_PATH="${IRIS_DUCKDB_PATH:-data/warehouse.duckdb}"
export DAGSTER_HOME="${DAGSTER_HOME:-$PWD/data/dagster_home}"
mkdir -p "$DAGSTER_HOME" "$IRIS_SPOOL_DIR"
cp dagster.yaml "$DAGSTER_HOME/dagster.yaml"

if [[ -n "${IRIS_CONNECTION_STRING:-}" || ( -n "${IRIS_CLIENT_ID:-}" && -n "${IRIS_CLIENT_SECRET:-}" && -n "${IRIS_QUEUE_NAME:-}" ) ]]; then
  echo "make dev: IRIS credentials found: starting the IRIS client"
  iris-pipeline client &
else
  echo "make dev: no IRIS credentials: starting the simulated IRIS feed (see README to use the real one)"
  iris-pipeline simulate &
fi
feed=$!
trap 'kill "$feed" 2>/dev/null || true; wait "$feed" 2>/dev/null || true' EXIT INT TERM

dagster dev -w workspace.yaml -h 127.0.0.1 -p "${DAGSTER_PORT:-3000}"
