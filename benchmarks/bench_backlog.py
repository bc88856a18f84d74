"""Backlog drain benchmark: a realistic mixed spool into DuckDB, next to a naive per-file loader.

    .venv/bin/python benchmarks/bench_backlog.py [--files 50000,100000] [--naive-files 5000]

For each spool size, runs the naive loader and then the real `iris-pipeline ingest` command, each as a
whole process timed from start to exit (interpreter start-up and imports included), and prints files/s,
rows/s, peak RSS (summed over the process and its worker processes, sampled every 20 ms) and the ratio
of the two rates. Machines here are shared and noisy, so the ratio within one run is the figure that
counts. Targets (design card): >= 78x the naive loader and peak RSS <= 1 GiB.
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
from iris_pipeline.simulate import mixed_backlog
from iris_pipeline.spool import Spool


def build_spool(root: Path, n: int) -> int:
    spool = Spool(root)
    total_bytes = 0
    for message in mixed_backlog(n, seed=1):
        spool.write_incoming(message.dataset, message.file_name, message.body, durable=False)
        total_bytes += len(message.body)
    return total_bytes


def run_naive(spool_root: str, db: str) -> None:
    """What the earlier pipeline did: per file, parse, insert its rows one by one, delete the file."""
    con = duckdb.connect(db)
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
    print(orjson.dumps({"files": files, "rows": rows}).decode())


def measure(mode: str, spool_root: Path, db: Path) -> dict:
    """Run one loader as a whole process; peak RSS is the largest sum over it and its workers."""
    if mode == "fast":
        command = [str(Path(sys.executable).with_name("iris-pipeline")), "ingest"]
        env = os.environ | {"IRIS_SPOOL_DIR": str(spool_root), "IRIS_DUCKDB_PATH": str(db), "IRIS_WAREHOUSE": "duckdb"}
    else:
        command, env = [sys.executable, __file__, "--child", mode, str(spool_root), str(db)], None
    started = time.monotonic()
    proc = psutil.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    peak = 0
    while proc.poll() is None:
        try:
            tree = [proc, *proc.children(recursive=True)]
            peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
        except psutil.Error:
            pass
        time.sleep(0.02)
    seconds = time.monotonic() - started
    out = proc.stdout.read()
    if proc.returncode:
        raise SystemExit(f"{mode} loader failed ({proc.returncode}): {out[-2000:]}")
    if mode == "fast":  # the summary's last line: "total: N files, R rows, Q quarantined, F datasets failed, ..."
        words = out.strip().splitlines()[-1].replace(",", "").split()
        result = {"files": int(words[1]), "rows": int(words[3]), "quarantined": int(words[5]), "failed": int(words[7])}
    else:
        result = orjson.loads(out.strip().splitlines()[-1])
    result["seconds"] = seconds
    result["peak_rss_mib"] = peak / 2**20
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", default="50000,100000", help="comma-separated spool sizes")
    parser.add_argument("--naive-files", type=int, default=5_000)
    parser.add_argument("--child", nargs=3, metavar=("MODE", "SPOOL", "DB"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run_naive(*args.child[1:])
        return

    cpu = os.cpu_count()
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    print(f"machine: {cpu} cores, {mem_gib:.0f} GiB, Python {sys.version.split()[0]}, duckdb {duckdb.__version__}")
    met = True
    for n in (int(x) for x in args.files.split(",")):
        work = Path(tempfile.mkdtemp(prefix="iris-bench-"))
        try:
            build_spool(work / "naive", args.naive_files)
            fast_bytes = build_spool(work / "fast", n)
            naive = measure("naive", work / "naive", work / "naive.duckdb")
            fast = measure("fast", work / "fast", work / "fast.duckdb")
        finally:
            shutil.rmtree(work, ignore_errors=True)
        print(f"--- {n:,} files ({fast_bytes / 2**20:.0f} MiB), whole processes, start-up included")
        for name, r in (("naive per-file", naive), ("iris-pipeline", fast)):
            print(f"{name:<15} {r['files']:>7,} files {r['rows']:>9,} rows {r['seconds']:7.2f}s "
                  f"{r['files'] / r['seconds']:>9,.0f} files/s {r['rows'] / r['seconds']:>10,.0f} rows/s "
                  f"peak RSS {r['peak_rss_mib']:,.0f} MiB")
        ratio = (fast["files"] / fast["seconds"]) / (naive["files"] / naive["seconds"])
        ok = ratio >= 78 and fast["peak_rss_mib"] <= 1024
        met &= ok
        print(f"ratio to naive: {ratio:.0f}x (target >= 78x); peak RSS {fast['peak_rss_mib']:,.0f} MiB (target <= 1024):"
              f" {'met' if ok else 'NOT met'}")
        if fast["quarantined"] or fast["failed"] or fast["files"] != n:
            print(f"WARNING: {fast['files']} of {n} loaded, {fast['quarantined']} quarantined, {fast['failed']} failed")
    print("all targets met" if met else "some targets NOT met")


if __name__ == "__main__":
    main()
