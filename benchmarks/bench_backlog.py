"""Backlog drain benchmark: a realistic mixed spool into DuckDB, next to a naive per-file loader.

    .venv/bin/python benchmarks/bench_backlog.py [--files 100000] [--naive-files 5000]

Prints files/s, rows/s and peak RSS (summed over the loader process and its worker processes,
sampled every 20 ms) of each loader, each run in its own child process on the same machine in the
same run. Targets (design card): >= 10,000 files/s and peak RSS <= 1 GiB.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import orjson
import psutil

from iris_pipeline.codec import decode_body
from iris_pipeline.loader import load_spool
from iris_pipeline.simulate import mixed_backlog
from iris_pipeline.spool import Spool
from iris_pipeline.warehouse.duckdb_warehouse import DuckDBWarehouse


def build_spool(root: Path, n: int) -> int:
    spool = Spool(root)
    total_bytes = 0
    for message in mixed_backlog(n, seed=1):
        spool.write_incoming(message.dataset, message.file_name, message.body, durable=False)
        total_bytes += len(message.body)
    return total_bytes


def run_fast(spool_root: str, db: str) -> None:
    with DuckDBWarehouse(db) as wh:
        report = load_spool(Spool(spool_root), wh)
    print(orjson.dumps({"files": report.files_loaded, "rows": report.rows_loaded, "seconds": report.seconds,
                        "quarantined": report.files_quarantined, "failed": len(report.failed)}).decode())


def run_naive(spool_root: str, db: str) -> None:
    """What the earlier pipeline did: per file, parse, insert its rows one by one, delete the file."""
    con = duckdb.connect(db)
    started = time.monotonic()
    files = rows = 0
    incoming = Path(spool_root) / "incoming"
    for dataset_dir in sorted(incoming.iterdir()):
        table = f"naive_{dataset_dir.name.lower()}"
        con.execute(f'CREATE TABLE IF NOT EXISTS "{table}" (_source_file VARCHAR, record JSON)')
        for path in sorted(dataset_dir.iterdir()):
            records = decode_body(path.read_bytes())
            con.executemany(f'INSERT INTO "{table}" VALUES (?, ?)', [(path.name, orjson.dumps(r).decode()) for r in records])
            path.unlink()
            files += 1
            rows += len(records)
    con.close()
    print(orjson.dumps({"files": files, "rows": rows, "seconds": time.monotonic() - started}).decode())


def measure(mode: str, spool_root: Path, db: Path) -> dict:
    """Run one loader in a child process; peak RSS is the largest sum over the child and its workers."""
    proc = psutil.Popen(
        [sys.executable, __file__, "--child", mode, str(spool_root), str(db)], stdout=subprocess.PIPE, text=True
    )
    peak = 0
    while proc.poll() is None:
        try:
            tree = [proc, *proc.children(recursive=True)]
            peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
        except psutil.Error:
            pass
        time.sleep(0.02)
    out = proc.stdout.read()
    if proc.returncode:
        raise SystemExit(f"{mode} loader failed ({proc.returncode})")
    result = orjson.loads(out.strip().splitlines()[-1])
    result["peak_rss_mib"] = peak / 2**20
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--naive-files", type=int, default=5_000)
    parser.add_argument("--child", nargs=3, metavar=("MODE", "SPOOL", "DB"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        mode, spool_root, db = args.child
        (run_fast if mode == "fast" else run_naive)(spool_root, db)
        return

    work = Path(tempfile.mkdtemp(prefix="iris-bench-"))
    try:
        started = time.monotonic()
        build_spool(work / "naive", args.naive_files)
        fast_bytes = build_spool(work / "fast", args.files)
        print(f"built spools in {time.monotonic() - started:.1f}s: {args.files:,} files ({fast_bytes / 2**20:.0f} MiB) "
              f"and {args.naive_files:,} files for the naive loader")
        naive = measure("naive", work / "naive", work / "naive.duckdb")
        fast = measure("fast", work / "fast", work / "fast.duckdb")
    finally:
        shutil.rmtree(work, ignore_errors=True)

    cpu = os.cpu_count()
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    print(f"machine: {cpu} cores, {mem_gib:.0f} GiB, Python {sys.version.split()[0]}, duckdb {duckdb.__version__}")
    for name, r in (("naive per-file", naive), ("iris-pipeline", fast)):
        print(f"{name:<15} {r['files']:>7,} files {r['rows']:>9,} rows {r['seconds']:7.2f}s "
              f"{r['files'] / r['seconds']:>9,.0f} files/s {r['rows'] / r['seconds']:>10,.0f} rows/s "
              f"peak RSS {r['peak_rss_mib']:,.0f} MiB")
    print(f"speed-up: {(fast['files'] / fast['seconds']) / (naive['files'] / naive['seconds']):.0f}x; "
          f"target >= 10,000 files/s: {'met' if fast['files'] / fast['seconds'] >= 10_000 else 'NOT met'}; "
          f"target peak RSS <= 1024 MiB: {'met' if fast['peak_rss_mib'] <= 1024 else 'NOT met'}")
    if fast["quarantined"] or fast["failed"]:
        print(f"WARNING: {fast['quarantined']} files quarantined, {fast['failed']} datasets failed")


if __name__ == "__main__":
    main()
