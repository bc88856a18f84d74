"""SIGKILL `iris-pipeline ingest` at random points, rerun, and find every record exactly once."""

import random
import signal
import subprocess
import time

from iris_pipeline.warehouse.duckdb_warehouse import DuckDBWarehouse
from iris_pipeline_tests.conftest import VENV_BIN, body, freq_records

FILES_PER_DATASET = 1500


def _fill(spool):
    expected = 0
    for i in range(FILES_PER_DATASET):
        for dataset in ("FREQ", "FUELINST", "NEWCODE"):
            n = 1 + (i % 9)
            records = freq_records(n) if dataset == "FREQ" else [{"fuelType": "WIND", "generation": i, "k": j} for j in range(n)]
            spool.write_incoming(dataset, f"{dataset}_{i:05d}.json", body(records), durable=False)
            expected += n
    return expected


def _files_in_ledger(path):
    with DuckDBWarehouse(path) as wh:
        return wh.query("SELECT count(*) FROM iris_ingest_log")[0][0]


def _ingest(env, workers=0):
    return subprocess.Popen(
        [str(VENV_BIN / "iris-pipeline"), "ingest", "--chunk-files", "40", "--workers", str(workers)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )


def _moved_out(spool) -> int:
    return sum(1 for _ in spool.archive.rglob("*.json"))


def test_sigkill_at_random_points_then_rerun_is_exactly_once(spool, pipeline_env, warehouse_path):
    expected_rows = _fill(spool)
    total = 3 * FILES_PER_DATASET
    rng = random.Random(20261128)
    killed_mid_way = 0
    for round_ in range(8):
        # Kill once a random share of what is left has been archived: mid-drain however fast the machine.
        target = _moved_out(spool) + int(rng.uniform(0.02, 0.25) * (total - _moved_out(spool)))
        proc = _ingest(pipeline_env, workers=round_ % 2 * 2)  # in-process and with worker processes
        while proc.poll() is None and _moved_out(spool) < target:
            time.sleep(0.001)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
            # Mid-way: work was left, either uncommitted or committed but not yet archived (archiving
            # runs behind the commits on the workers, so under load the ledger can be complete first).
            killed_mid_way += 0 < _files_in_ledger(warehouse_path) and _moved_out(spool) < total
        proc.wait(timeout=30)
    final = _ingest(pipeline_env)
    out, _ = final.communicate(timeout=120)
    assert final.returncode == 0, out.decode()
    assert killed_mid_way >= 2, "runs were not killed mid-way: the test proved nothing"

    with DuckDBWarehouse(warehouse_path) as wh:
        total = 0
        for table in ("bmrs_freq_iris", "bmrs_fuelinst_iris", "bmrs_newcode_iris"):
            dupes = wh.query(
                f"SELECT count(*) FROM (SELECT _source_file, _record_index FROM {table}"
                " GROUP BY ALL HAVING count(*) > 1)"
            )[0][0]
            assert dupes == 0, f"{table} has doubled records"
            total += wh.query(f"SELECT count(*) FROM {table}")[0][0]
        assert total == expected_rows
        assert wh.query("SELECT count(*), sum(rows) FROM iris_ingest_log") == [(3 * FILES_PER_DATASET, expected_rows)]
    assert spool.datasets_pending() == []
    assert sum(1 for _ in spool.archive.rglob("*.json")) == 3 * FILES_PER_DATASET
    assert spool.quarantined() == []
