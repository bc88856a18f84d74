#!/usr/bin/env bash
# `make dev`: a feed into the spool (the real IRIS client when credentials are configured, otherwise the
# simulator) and `dagster dev` on http://127.0.0.1:3000, DuckDB at data/warehouse.duckdb.
# `make dev WAREHOUSE=bigquery-emulator`: the same against a local BigQuery emulator (data/bqemulator).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
root="$PWD"
# Absolute paths: `dagster dev` below runs from $DAGSTER_HOME, and the simulator or client from here.
IRIS_SPOOL_DIR="$(realpath -m "${IRIS_SPOOL_DIR:-data/spool}")"
IRIS_DUCKDB_PATH="$(realpath -m "${IRIS_DUCKDB_PATH:-data/warehouse.duckdb}")"
DAGSTER_HOME="$(realpath -m "${DAGSTER_HOME:-data/dagster_home}")"
export IRIS_SPOOL_DIR IRIS_DUCKDB_PATH DAGSTER_HOME
mkdir -p "$DAGSTER_HOME" "$IRIS_SPOOL_DIR"
# The instance reads $DAGSTER_HOME/dagster.yaml: a link to the project's (it used to be a copy), so
# the project's file is the one in use, and an edit to it applies at the next start.
ln -sfn "$root/dagster.yaml" "$DAGSTER_HOME/dagster.yaml"
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true' EXIT INT TERM

if [[ "${WAREHOUSE:-duckdb}" == "bigquery-emulator" ]]; then
  scripts/bqemulator/env.sh
  port="${BQ_EMULATOR_PORT:-9050}"
  mkdir -p data/bqemulator
  if curl -fsS "http://127.0.0.1:$port/" >/dev/null 2>&1 || (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "make dev: port $port is taken (an emulator left running?): stop it or set BQ_EMULATOR_PORT" >&2
    exit 1
  fi
  echo "make dev: starting the BigQuery emulator on 127.0.0.1:$port (tables in data/bqemulator)"
  .bqemulator-venv/bin/python scripts/bqemulator/launch.py start --rest-port "$port" --grpc-port 0 \
    --project iris-local --persistent --data-dir data/bqemulator --log-level warning >data/bqemulator/emulator.log 2>&1 &
  pids+=($!)
  for _ in $(seq 1 120); do
    curl -fsS "http://127.0.0.1:$port/bigquery/v2/projects/iris-local/datasets" >/dev/null 2>&1 && break
    kill -0 "${pids[-1]}" 2>/dev/null || { echo "the emulator exited: see data/bqemulator/emulator.log" >&2; exit 1; }
    sleep 0.5
  done
  export IRIS_WAREHOUSE=bigquery BIGQUERY_EMULATOR_HOST="http://127.0.0.1:$port" BQ_PROJECT=iris-local
  # a flush every 10 s rather than production's 60 s, so new rows show up quickly
  export IRIS_BQ_MIN_FLUSH_SECONDS="${IRIS_BQ_MIN_FLUSH_SECONDS:-10}"
fi

if [[ -n "${IRIS_CONNECTION_STRING:-}" || ( -n "${IRIS_CLIENT_ID:-}" && -n "${IRIS_CLIENT_SECRET:-}" && -n "${IRIS_QUEUE_NAME:-}" ) ]]; then
  echo "make dev: IRIS credentials found: starting the IRIS client"
  iris-pipeline client &
else
  echo "make dev: no IRIS credentials: starting the simulated IRIS feed (see README to use the real one)"
  iris-pipeline simulate &
fi
pids+=($!)

# From $DAGSTER_HOME: `dagster dev` warns that a dagster.yaml in its working directory is not used
# unless that directory is DAGSTER_HOME, and here it is.
cd "$DAGSTER_HOME"
dagster dev -w "$root/workspace.yaml" -h 127.0.0.1 -p "${DAGSTER_PORT:-3000}"
