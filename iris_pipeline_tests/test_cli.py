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

    queried = _cli(pipeline_env, "query", "--format", "csv", "SELECT count(*) AS files FROM iris_ingest_log")
    assert queried.stdout == "files\n200\n"


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
        result = _cli(pipeline_env, "query", "--wait", "5", "--format", "csv", "SELECT dataset, NULL AS n, rows FROM iris_ingest_log")
        assert (result.returncode, result.stdout) == (0, "dataset,n,rows\nFREQ,,8\n"), result.stderr
        described = _cli(pipeline_env, "query", "--wait", "5", "--format", "csv", "DESCRIBE iris_ingest_log")
        assert described.returncode == 0 and described.stdout.splitlines()[1].startswith("dataset,VARCHAR,NO")
    finally:
        notebook.stdin.write("\n")
        notebook.stdin.flush()
        assert notebook.wait(timeout=10) == 0


def test_query_never_creates_a_warehouse(pipeline_env, warehouse_path):
    result = _cli(pipeline_env, "query", "SELECT 1")
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"iris-pipeline query: no warehouse at {warehouse_path}: nothing has been loaded there yet"
        " (set IRIS_DUCKDB_PATH to the warehouse file, e.g. the project's data/warehouse.duckdb)"
    )
    assert not warehouse_path.exists()


def test_query_from_another_directory_creates_nothing_there(pipeline_env, tmp_path):
    """A newcomer in another directory, with no IRIS_DUCKDB_PATH: told where it looked, and nothing appears."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in pipeline_env.items() if k not in ("IRIS_DUCKDB_PATH", "IRIS_SPOOL_DIR")}
    result = subprocess.run(
        [str(VENV_BIN / "iris-pipeline"), "query", "SELECT 1"], env=env, cwd=elsewhere,
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.startswith(f"iris-pipeline query: no warehouse at {elsewhere / 'data' / 'warehouse.duckdb'}:")
    assert "IRIS_DUCKDB_PATH" in result.stderr and len(result.stderr.splitlines()) == 1
    assert list(elsewhere.iterdir()) == []


def test_a_query_nobody_reads_does_not_stop_ingestion(pipeline_env, warehouse_path, spool):
    """`iris-pipeline query ... | less` left open: the query has released the warehouse before printing."""
    _ledger_with_one_file(warehouse_path)
    rows = 300_000  # ~2 MB of output: far more than a pipe holds, so the query blocks writing it
    query = subprocess.Popen(
        [str(VENV_BIN / "iris-pipeline"), "query", "--format", "csv", f"SELECT range, 'x' AS x FROM range({rows})"],
        env=pipeline_env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    try:
        assert query.stdout.readline() == "range,x\n"
        assert query.stdout.readline() == "0,x\n"  # it is printing, and stuck once the pipe is full
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


# --- what a newcomer types: headers and formats, one-line errors, exit codes -----------------------

def _one_error_line(result, code, *fragments):
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr  # no traceback, no caret diagram
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


SAMPLE = "SELECT 'FREQ' AS dataset, 8 AS rows, NULL AS note, 2.5 AS share, 'a,\"b\"' AS text, [1, 2] AS list"


def test_query_prints_a_table_with_headers_by_default(pipeline_env, warehouse_path):
    _ledger_with_one_file(warehouse_path)
    result = _cli(pipeline_env, "query", SAMPLE)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "dataset  rows  note  share  text   list",
        "-------  ----  ----  -----  -----  ------",
        'FREQ        8  NULL    2.5  a,"b"  [1, 2]',
        "(1 row)",
    ]


def test_query_csv_has_a_header_row(pipeline_env, warehouse_path):
    import csv
    import io

    _ledger_with_one_file(warehouse_path)
    result = _cli(pipeline_env, "query", "--format", "csv", SAMPLE)
    assert result.returncode == 0, result.stderr
    assert list(csv.reader(io.StringIO(result.stdout))) == [
        ["dataset", "rows", "note", "share", "text", "list"], ["FREQ", "8", "", "2.5", 'a,"b"', "[1, 2]"],
    ]


def test_query_json_is_one_array_of_objects(pipeline_env, warehouse_path):
    import json

    _ledger_with_one_file(warehouse_path)
    result = _cli(pipeline_env, "query", "--format", "json", SAMPLE + " UNION ALL " + SAMPLE.replace("8 AS", "9 AS"))
    assert result.returncode == 0, result.stderr
    row = {"dataset": "FREQ", "rows": 8, "note": None, "share": 2.5, "text": 'a,"b"', "list": [1, 2]}
    assert sorted(json.loads(result.stdout), key=lambda r: r["rows"]) == [row, row | {"rows": 9}]
    empty = _cli(pipeline_env, "query", "--format", "json", "SELECT 1 AS a WHERE false")
    assert (empty.returncode, json.loads(empty.stdout)) == (0, [])


BAD_SQL = {
    "unknown_table": ("SELECT * FROM no_such_table", 1, "Catalog Error: Table with name no_such_table does not exist"),
    "bad_cast": ("SELECT 'a'::INTEGER", 1, "Conversion Error"),
    "syntax": ("SELEC 1", 2, "syntax error"),
}


@pytest.mark.parametrize("sql, code, message", BAD_SQL.values(), ids=BAD_SQL.keys())
def test_bad_sql_is_one_line_on_stderr(pipeline_env, warehouse_path, sql, code, message):
    _ledger_with_one_file(warehouse_path)
    _one_error_line(_cli(pipeline_env, "query", sql), code, "iris-pipeline query: ", message)


@pytest.mark.parametrize("sql", ["", "   ", "-- only a comment"])
def test_an_empty_query_is_a_usage_error(pipeline_env, warehouse_path, sql):
    _ledger_with_one_file(warehouse_path)
    _one_error_line(_cli(pipeline_env, "query", sql), 2, "the query is empty")


def test_query_into_a_closed_pipe_ends_quietly(pipeline_env, warehouse_path):
    _ledger_with_one_file(warehouse_path)
    shell = f"'{VENV_BIN / 'iris-pipeline'}' query --format csv 'SELECT * FROM range(200000)' | head -n 2"
    result = subprocess.run(["bash", "-c", shell], env=pipeline_env, capture_output=True, text=True, timeout=120)
    assert result.stdout == "range\n0\n"
    assert result.stderr == ""


def test_ingest_refuses_an_unknown_dataset_code(pipeline_env, spool):
    spool.write_incoming("FREQ", "f.json", body(freq_records()))
    line = _one_error_line(_cli(pipeline_env, "ingest", "--dataset", "NOPE"), 2, "unknown dataset code 'NOPE'")
    assert "did you mean" not in line
    _one_error_line(_cli(pipeline_env, "ingest", "--dataset", "FREQQ"), 2, "'FREQQ'", "did you mean FREQ")
    assert spool.datasets_pending() == ["FREQ"]  # nothing was loaded


def test_ingest_accepts_a_code_in_the_wrong_case(pipeline_env, spool):
    spool.write_incoming("FREQ", "f.json", body(freq_records()))
    result = _cli(pipeline_env, "ingest", "--dataset", "freq")
    assert result.returncode == 0, result.stderr
    assert "FREQ" in result.stdout and "total: 1 files" in result.stdout and "UNREGISTERED" not in result.stdout


def test_a_lower_case_code_matches_itself_first(pipeline_env, spool):
    """`mibm_mid` is a real code (lower case in the registry): matched exactly, and MIBM_MID finds it."""
    from iris_pipeline.cli import resolve_code

    assert resolve_code("mibm_mid", {"mibm_mid", "MID"}) == "mibm_mid"
    assert resolve_code("MIBM_MID", {"mibm_mid", "MID"}) == "mibm_mid"
    assert resolve_code("AB", {"ab", "AB"}) == "AB"
    with pytest.raises(ValueError, match="unknown dataset code 'Ab'"):
        resolve_code("Ab", {"ab", "AB"})  # two codes differ from it only by case: ambiguous
    spool.incoming.mkdir(parents=True)
    result = _cli(pipeline_env, "ingest", "--dataset", "mibm_mid")
    assert result.returncode == 0 and "mibm_mid" in result.stdout and "UNREGISTERED" not in result.stdout


def test_backfill_takes_iris_codes_first_then_api_codes():
    from iris_pipeline.cli import historic_dataset
    from iris_pipeline.registry import load_registry

    registry = load_registry()
    api = {code: historic_dataset(registry, code).code for code in ("MID", "mibm_mid", "SYSWARN", "SYS_WARN", "syswarn", "fuelinst")}
    assert api == {"MID": "MID", "mibm_mid": "mibm_mid", "SYSWARN": "SYS_WARN", "SYS_WARN": "SYS_WARN",
                   "syswarn": "SYS_WARN", "fuelinst": "FUELINST"}
    with pytest.raises(ValueError, match="unknown dataset code 'NOPE'"):
        historic_dataset(registry, "NOPE")


def test_ingest_takes_an_unregistered_code_waiting_in_the_spool(pipeline_env, spool):
    spool.write_incoming("NEWCODE", "n.json", body([{"a": 1}]))
    result = _cli(pipeline_env, "ingest", "--dataset", "NEWCODE")
    assert result.returncode == 0, result.stderr
    assert "NEWCODE" in result.stdout and "total: 1 files" in result.stdout


NONSENSE = {
    "backfill_reversed": (["backfill", "--dataset", "FUELINST", "--from", "2025-01-05", "--to", "2025-01-01"],
                          "--to 2025-01-01 is before --from 2025-01-05"),
    "backfill_unknown": (["backfill", "--dataset", "NOPE", "--from", "2025-01-01", "--to", "2025-01-01"],
                         "unknown dataset code 'NOPE'"),
    "backfill_zero_days": (["backfill", "--dataset", "FUELINST", "--from", "2025-01-01", "--to", "2025-01-01",
                            "--days-per-range", "0"], "--days-per-range"),
    "backfill_bad_date": (["backfill", "--dataset", "FUELINST", "--from", "2025-13-01", "--to", "2025-01-01"],
                          "not a date"),
    "simulate_negative_count": (["simulate", "--count", "-5"], "argument --count: expected a whole number above 0"),
    "simulate_zero_speed": (["simulate", "--speed", "0"], "argument --speed: expected a number above 0"),
    "simulate_negative_backfill": (["simulate", "--backfill-minutes", "-1"], "argument --backfill-minutes"),
    "client_negative_idle": (["client", "--max-idle", "-3"], "--max-idle must be 0 or more"),
    "client_no_writers": (["client", "--writers", "0"], "--writers must be above 0"),
    "ingest_zero_chunk": (["ingest", "--chunk-files", "0"], "--chunk-files"),
    "ingest_negative_workers": (["ingest", "--workers", "-1"], "--workers"),
    "query_negative_wait": (["query", "--wait", "-1", "SELECT 1"], "--wait"),
    "query_unknown_format": (["query", "--format", "xml", "SELECT 1"], "--format"),
}


@pytest.mark.parametrize("argv, message", NONSENSE.values(), ids=NONSENSE.keys())
def test_nonsense_options_are_usage_errors(pipeline_env, spool, tmp_path, argv, message):
    result = _cli(pipeline_env, *argv)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr  # one line, not a usage block
    assert not spool.root.exists() and not (tmp_path / "warehouse.duckdb").exists()  # nothing was done


def test_ingest_without_a_spool_creates_nothing(pipeline_env, tmp_path):
    """`ingest` from the wrong directory: told where it looked, and no empty warehouse appears there."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in pipeline_env.items() if k not in ("IRIS_DUCKDB_PATH", "IRIS_SPOOL_DIR")}
    result = subprocess.run(
        [str(VENV_BIN / "iris-pipeline"), "ingest"], env=env, cwd=elsewhere, capture_output=True, text=True, timeout=120
    )
    line = _one_error_line(result, 1, f"no spool at {elsewhere / 'data' / 'spool'}", "IRIS_SPOOL_DIR")
    assert line.startswith("iris-pipeline ingest: ")
    assert list(elsewhere.iterdir()) == []


def test_an_unusable_setting_is_one_line(pipeline_env, warehouse_path):
    result = _cli(pipeline_env | {"IRIS_WAREHOUSE": "postgres"}, "query", "SELECT 1")
    _one_error_line(result, 2, "IRIS_WAREHOUSE must be 'duckdb' or 'bigquery'")
