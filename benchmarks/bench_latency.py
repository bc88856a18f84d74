"""Latency under `make dev`: from a file landing in the spool to its rows being committed.

    .venv/bin/python benchmarks/bench_latency.py [--files 40] [--interval 4]

Starts a real `dagster dev` on a fresh spool and warehouse, writes one FREQ message every
`--interval` seconds (jittered), then reads each file's commit time from `iris_ingest_log` and
prints p50/p95/max of (ingested_at - landed_at). Target (design card): p95 <= 20 s.
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import time
from pathlib import Path

import orjson

from iris_pipeline.spool import Spool
from iris_pipeline.warehouse.duckdb_warehouse import DuckDBWarehouse
from iris_pipeline_tests.dagster_process import VENV_BIN, is_up, start_dagster_dev, stop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=40)
    parser.add_argument("--interval", type=float, default=4.0)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="iris-latency-"))
    env = dict(os.environ) | {
        "IRIS_SPOOL_DIR": str(work / "spool"),
        "IRIS_DUCKDB_PATH": str(work / "warehouse.duckdb"),
        "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '')}",
    }
    spool = Spool(work / "spool")
    landed: dict[str, float] = {}
    with open(work / "dev.log", "wb") as log:
        dev, port = start_dagster_dev(work / "dagster_home", env, log)
        try:
            while not is_up(port):
                time.sleep(1)
            time.sleep(10)  # let the daemon start its sensor loop
            rng = random.Random(7)
            for i in range(args.files):
                name = f"FREQ_latency_{i:04d}.json"
                records = [{"dataset": "FREQ", "measurementTime": f"2025-01-01T00:{i % 60:02d}:{s:02d}Z", "frequency": 50.0}
                           for s in (0, 15, 30, 45)]
                spool.write_incoming("FREQ", name, orjson.dumps(records))
                landed[name] = os.stat(spool.incoming / "FREQ" / name).st_mtime
                time.sleep(args.interval * rng.uniform(0.5, 1.5))
            deadline = time.time() + 120
            while spool.pending("FREQ") and time.time() < deadline:
                time.sleep(1)
            time.sleep(5)
        finally:
            stop(dev)
    with DuckDBWarehouse(work / "warehouse.duckdb") as wh:
        committed = dict(wh.query("SELECT _source_file, epoch(ingested_at) FROM iris_ingest_log WHERE dataset = 'FREQ'"))
    latencies = sorted(committed[n] - t for n, t in landed.items() if n in committed)
    missing = len(landed) - len(latencies)
    pick = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))]  # noqa: E731
    print(f"machine: {os.cpu_count()} cores; {len(latencies)} files, {missing} not loaded within the run")
    print(f"landing -> committed: p50 {pick(0.5):.1f}s  p95 {pick(0.95):.1f}s  max {latencies[-1]:.1f}s "
          f"(target p95 <= 20 s: {'met' if pick(0.95) <= 20 else 'NOT met'})")


if __name__ == "__main__":
    main()
