"""In-process Dagster runs of `iris_ingest` on a real spool and a real DuckDB file."""

import os
import time

import dagster as dg

from iris_pipeline.warehouse.duckdb_warehouse import DuckDBWarehouse
from iris_pipeline_tests.conftest import body, freq_records


def _run(selection=None):
    from iris_pipeline.definitions import build_definitions

    job = build_definitions().resolve_job_def("iris_ingest")
    with dg.instance_for_test() as instance:
        return job.execute_in_process(instance=instance, asset_selection=selection, raise_on_error=False)


def _count(path, sql):
    with DuckDBWarehouse(path) as wh:
        return wh.query(sql)[0][0]


def test_run_loads_pending_datasets_with_metadata_and_checks(pipeline_env, spool, warehouse_path):
    for i in range(3):
        spool.write_incoming("FREQ", f"FREQ_{i}.json", body(freq_records(second=8 * i)))
    spool.write_incoming("FREQ", "broken.json", b"[{")
    result = _run()
    assert result.success
    materialized = {e.asset_key.to_user_string(): e.materialization.metadata for e in result.get_asset_materialization_events()}
    assert set(materialized) == {"bmrs_freq_iris"}  # only datasets with pending files
    meta = materialized["bmrs_freq_iris"]
    assert meta["files_loaded"].value == 3 and meta["rows_loaded"].value == 24 and meta["files_quarantined"].value == 1
    checks = {(c.asset_key.to_user_string(), c.check_name): c for c in result.get_asset_check_evaluations()}
    assert checks[("bmrs_freq_iris", "freshness")].passed
    assert not checks[("bmrs_freq_iris", "quarantine_empty")].passed
    assert _count(warehouse_path, "SELECT count(*) FROM bmrs_freq_iris") == 24


FREQ_ONLY = [dg.AssetKey("bmrs_freq_iris")]  # what the sensor selects when only FREQ files wait


def test_duplicate_delivery_through_dagster_is_loaded_once(pipeline_env, spool, warehouse_path):
    spool.write_incoming("FREQ", "FREQ_1.json", body(freq_records()))
    assert _run(FREQ_ONLY).success
    # The same message delivered again (e.g. written by an archive backfill that bypasses the spool check).
    (spool.incoming / "FREQ" / "FREQ_1.json").write_bytes(body(freq_records()))
    second = _run(FREQ_ONLY)
    assert second.success
    meta = {e.asset_key.to_user_string(): e.materialization.metadata for e in second.get_asset_materialization_events()}
    assert meta["bmrs_freq_iris"]["files_already_loaded"].value == 1
    assert _count(warehouse_path, "SELECT count(*) FROM bmrs_freq_iris") == 8


def test_stale_backlog_fails_the_freshness_check(pipeline_env, spool, warehouse_path):
    from iris_pipeline.definitions import build_definitions

    spool.write_incoming("FREQ", "old.json", body(freq_records()))
    old = time.time() - 600
    os.utime(spool.incoming / "FREQ" / "old.json", (old, old))
    defs = build_definitions()
    job = defs.resolve_job_def("iris_health")
    with dg.instance_for_test() as instance:
        result = job.execute_in_process(instance=instance, raise_on_error=False)
    checks = {(c.asset_key.to_user_string(), c.check_name): c for c in result.get_asset_check_evaluations()}
    freq = checks[("bmrs_freq_iris", "freshness")]
    assert not freq.passed and freq.severity == dg.AssetCheckSeverity.ERROR
    assert "waiting" in freq.description
    assert not checks[("bmrs_fuelinst_iris", "freshness")].passed  # never loaded: a warning
    assert checks[("bmrs_fuelinst_iris", "freshness")].severity == dg.AssetCheckSeverity.WARN


def test_a_failing_dataset_fails_the_run_but_others_materialize(pipeline_env, spool, warehouse_path):
    with DuckDBWarehouse(warehouse_path) as wh:
        wh.con.execute("CREATE VIEW bmrs_freq_iris AS SELECT 1 AS frequency")  # sabotage: not through the interface
    spool.write_incoming("FREQ", "f.json", body(freq_records()))
    spool.write_incoming("FUELINST", "fi.json", body([{"fuelType": "WIND", "generation": 1000}]))
    result = _run(FREQ_ONLY + [dg.AssetKey("bmrs_fuelinst_iris")])
    assert not result.success
    keys = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert keys == {"bmrs_fuelinst_iris"}
    assert [f.name for f in spool.pending("FREQ")] == ["f.json"]


HOLD_WAREHOUSE = """
import sys
from iris_pipeline.spool import Spool
from iris_pipeline.warehouse.duckdb_warehouse import DuckDBWarehouse
with DuckDBWarehouse(sys.argv[1]) as wh, Spool(sys.argv[2]).exclusive("ingest.lock"):
    print("ready", flush=True)
    sys.stdin.read()
"""


def _small_defs():
    """The real step and jobs over two datasets instead of 87, which keeps a run to a second or two."""
    from iris_pipeline.defs.realtime.health import build_health_job
    from iris_pipeline.defs.realtime.jobs import iris_ingest
    from iris_pipeline.defs.realtime.tables import build_iris_tables
    from iris_pipeline.defs.resources import resources_from_env
    from iris_pipeline.registry import Registry, load_registry

    full = load_registry()
    registry = Registry({code: full[code] for code in ("FREQ", "FUELINST")})
    iris_health = build_health_job(registry, max_lag_s=300, client_max_silence_s=600)
    return dg.Definitions(
        assets=[build_iris_tables(registry)], jobs=[iris_ingest, iris_health], resources=resources_from_env()
    )


def _health_within(seconds):
    """Run `iris_health` in a thread, bounded: a health job that waited on the warehouse lock would hang."""
    import threading

    job = _small_defs().resolve_job_def("iris_health")
    out = {}

    def run():
        with dg.instance_for_test() as instance:
            out["result"] = job.execute_in_process(instance=instance, raise_on_error=False)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"iris_health still running after {seconds}s"
    return out["result"]


def _checks(result):
    return {(c.asset_key.to_user_string(), c.check_name): c for c in result.get_asset_check_evaluations()}


def test_health_job_reads_the_ingest_status_while_ingest_holds_the_warehouse(pipeline_env, spool, warehouse_path):
    import subprocess
    import sys

    for i in range(3):
        spool.write_incoming("FREQ", f"FREQ_{i}.json", body(freq_records(second=8 * i)))
    spool.write_incoming("NEWCODE", "n.json", body([{"a": 1}]))
    with dg.instance_for_test() as instance:
        assert _small_defs().resolve_job_def("iris_ingest").execute_in_process(instance=instance).success
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_WAREHOUSE, str(warehouse_path), str(spool.root)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=pipeline_env,
    )
    try:
        assert holder.stdout.readline() == b"ready\n"
        result = _health_within(60)
    finally:
        holder.stdin.close()
        holder.wait(timeout=20)
    assert result.success
    checks = _checks(result)
    freq = checks[("bmrs_freq_iris", "freshness")]
    assert freq.passed and freq.metadata["rows"].value == 24
    assert checks[("bmrs_fuelinst_iris", "freshness")].description == "no data loaded yet"
    registered = checks[("bmrs_unregistered_iris", "all_codes_registered")]
    assert not registered.passed and "NEWCODE" in registered.description


def test_health_job_creates_nothing(pipeline_env, spool, warehouse_path):
    spool.write_incoming("FREQ", "f.json", body(freq_records()))
    before = sorted(str(p.relative_to(spool.root.parent)) for p in spool.root.parent.rglob("*"))
    result = _health_within(60)
    assert result.success and _checks(result)[("bmrs_freq_iris", "freshness")].passed is not None
    after = sorted(str(p.relative_to(spool.root.parent)) for p in spool.root.parent.rglob("*"))
    assert after == before  # no warehouse file, no lock files, no tmp/
    assert not warehouse_path.exists()
