"""The `iris-pipeline` command line, as a user runs it."""

import subprocess

import pytest

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
        wh.con.execute("CREATE VIEW bmrs_freq_iris AS SELECT 1 AS frequency")  # sabotage: not through the interface
    spool.write_incoming("FREQ", "f.json", body(freq_records()))
    result = _cli(pipeline_env, "ingest")
    assert result.returncode == 1
    assert "ERROR" in result.stdout


# --- query: read-only, and never in ingestion's way ------------------------------------------------

def _ledger_with_one_file(warehouse_path):
    from iris_pipeline.warehouse.duckdb_warehouse import DuckDBWarehouse

    import pyarrow as pa

    from iris_pipeline.warehouse.base import LoadedFile

    with DuckDBWarehouse(warehouse_path) as wh:
        wh.ensure_table("bmrs_freq_iris", {"frequency": "FLOAT64"})
        no_rows = pa.table({"_source_file": pa.array([], pa.string())})
        wh.append("FREQ", "bmrs_freq_iris", no_rows, [LoadedFile("f.json", 8)])
        return wh.query("SELECT * FROM iris_ingest_log")


REFUSED = {
    "delete": "DELETE FROM iris_ingest_log",
    "insert": "INSERT INTO iris_ingest_log VALUES ('FREQ', 'g.json', 1, now(), NULL)",
    "update": "UPDATE iris_ingest_log SET rows = 0",
    "create": "CREATE TABLE evil AS SELECT 1",
    "drop": "DROP TABLE iris_ingest_log",
    "copy_to": "COPY iris_ingest_log TO '{tmp}/copied.csv'",
    "read_text": "SELECT content FROM read_text('/etc/hostname')",
    "attach": "ATTACH '{tmp}/attached.duckdb' AS other",
    "two_statements": "SELECT 1; DELETE FROM iris_ingest_log",
    "set_external_access": "SET enable_external_access = true",
}


@pytest.mark.parametrize("sql", REFUSED.values(), ids=REFUSED.keys())
def test_query_refuses_anything_but_one_read_statement(pipeline_env, warehouse_path, tmp_path, sql):
    before = _ledger_with_one_file(warehouse_path)
    result = _cli(pipeline_env, "query", sql.format(tmp=tmp_path))
    assert result.returncode == 2, result.stdout
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1 and "refused" in result.stderr
    assert not (tmp_path / "copied.csv").exists() and not (tmp_path / "attached.duckdb").exists()
    from iris_pipeline.warehouse.duckdb_warehouse import DuckDBWarehouse

    with DuckDBWarehouse(warehouse_path) as wh:
        assert wh.query("SELECT * FROM iris_ingest_log") == before
        assert wh.tables() == {"iris_ingest_log", "bmrs_freq_iris"}


def test_query_reads_alongside_a_notebook(pipeline_env, warehouse_path):
    """Readers share the file: a notebook's read-only connection does not stop `query` (it did when
    `query` opened the warehouse for writing)."""
    from iris_pipeline_tests.test_duckdb_warehouse import start_reader

    _ledger_with_one_file(warehouse_path)
    notebook = start_reader(warehouse_path, "stdin")
    try:
        result = _cli(pipeline_env, "query", "--wait", "5", "SELECT dataset, NULL, rows FROM iris_ingest_log")
        assert (result.returncode, result.stdout) == (0, "FREQ\t\t8\n"), result.stderr
        described = _cli(pipeline_env, "query", "--wait", "5", "DESCRIBE iris_ingest_log")
        assert described.returncode == 0 and described.stdout.startswith("dataset\tVARCHAR\tNO")
    finally:
        notebook.stdin.write("\n")
        notebook.stdin.flush()
        assert notebook.wait(timeout=10) == 0


def test_query_never_creates_a_warehouse(pipeline_env, warehouse_path):
    result = _cli(pipeline_env, "query", "SELECT 1")
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"iris-pipeline query: no warehouse at {warehouse_path} (IRIS_DUCKDB_PATH): nothing has been loaded there yet"
    )
    assert not warehouse_path.exists()


def test_a_query_nobody_reads_does_not_stop_ingestion(pipeline_env, warehouse_path, spool):
    """`iris-pipeline query ... | less` left open: the query has released the warehouse before printing."""
    _ledger_with_one_file(warehouse_path)
    rows = 300_000  # ~2 MB of output: far more than a pipe holds, so the query blocks writing it
    query = subprocess.Popen(
        [str(VENV_BIN / "iris-pipeline"), "query", f"SELECT range, 'x' FROM range({rows})"],
        env=pipeline_env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    try:
        assert query.stdout.readline() == "0\tx\n"  # it is printing, and stuck once the pipe is full
        spool.write_incoming("FREQ", "new.json", body(freq_records()))
        ingested = subprocess.run(  # before the fix: blocked behind the query's writer connection
            [str(VENV_BIN / "iris-pipeline"), "ingest"], env=pipeline_env, capture_output=True, text=True, timeout=60
        )
        assert ingested.returncode == 0, ingested.stderr
        assert "total: 1 files" in ingested.stdout
        assert query.poll() is None  # the query was still waiting for its reader all along
        assert 1 + sum(1 for _ in query.stdout) == rows
        assert query.wait(timeout=30) == 0
    finally:
        query.kill()
        query.wait()
