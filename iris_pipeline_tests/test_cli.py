"""The `iris-pipeline` command line, as a user runs it."""

import subprocess

from iris_pipeline_tests.conftest import VENV_BIN, body, freq_records


def _cli(env, *args):
    return subprocess.run([str(VENV_BIN / "iris-pipeline"), *args], env=env, capture_output=True, text=True, timeout=120)


def test_simulate_then_ingest_then_query(pipeline_env, spool):
    simulated = _cli(pipeline_env, "simulate", "--count", "200")
    assert simulated.returncode == 0, simulated.stderr
    written = sum(1 for p in spool.incoming.rglob("*") if p.is_file())
    assert written == 200

    ingested = _cli(pipeline_env, "ingest")
    assert ingested.returncode == 0, ingested.stderr
    assert "total: 200 files" in ingested.stdout and "0 quarantined" in ingested.stdout

    queried = _cli(pipeline_env, "query", "SELECT count(*) FROM iris_ingest_log")
    assert queried.stdout.strip() == "200"


def test_ingest_reports_quarantine_and_exits_zero(pipeline_env, spool):
    spool.write_incoming("FREQ", "good.json", body(freq_records()))
    spool.write_incoming("FREQ", "bad.json", b"{not json")
    result = _cli(pipeline_env, "ingest")
    assert result.returncode == 0
    assert "quarantined=1" in result.stdout
    assert (spool.quarantine / "FREQ" / "bad.json.error").read_text().strip()


def test_ingest_exits_non_zero_when_a_dataset_fails(pipeline_env, spool, warehouse_path):
    from iris_pipeline.warehouse.duckdb_warehouse import DuckDBWarehouse

    with DuckDBWarehouse(warehouse_path) as wh:
        wh.query("CREATE VIEW bmrs_freq_iris AS SELECT 1 AS frequency")
    spool.write_incoming("FREQ", "f.json", body(freq_records()))
    result = _cli(pipeline_env, "ingest")
    assert result.returncode == 1
    assert "ERROR" in result.stdout
