"""DuckDB-only behaviour: its SQL types, the primary key, time zones, the file locks. Real DuckDB files.
The contract both backends keep (exactly once, evolution, bad input) is in test_warehouse_contract.py."""

import datetime as dt
import os
import subprocess
import sys
import textwrap
import time

import pyarrow as pa
import pytest

from iris_pipeline_tests.timeline import file_batch
from iris_pipeline.warehouse import LEDGER_TABLE, WarehouseError
from iris_pipeline.warehouse.base import LoadedFile
from iris_pipeline.warehouse.duckdb_warehouse import quote_identifier
from iris_pipeline.warehouse.duckdb_warehouse import DuckDBWarehouse

UTC = dt.timezone.utc
DS = "BOALF"
TABLE = "bmrs_boalf_iris"
TYPES = {"bmUnit": "STRING", "timeFrom": "TIMESTAMP", "settlementDate": "DATE", "levelFrom": "INT64"}
ALL_TYPES = {
    "ts": "TIMESTAMP", "d": "DATE", "i": "INT64", "f": "FLOAT64", "b": "BOOL", "s": "STRING", "j": "JSON",
}
INGESTED_AT = dt.datetime(2024, 6, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def db_path(tmp_path):
    return tmp_path / "wh" / "warehouse.duckdb"


@pytest.fixture
def wh(db_path):
    with DuckDBWarehouse(db_path, lock_timeout_s=5) as w:
        yield w


def boalf(unit, level, minute=0):
    return {
        "bmUnit": unit,
        "timeFrom": f"2024-06-01T10:{minute:02d}:00Z",
        "settlementDate": "2024-06-01",
        "levelFrom": level,
    }


def batch(files, known=TYPES):
    """(Arrow rows, LoadedFile list) for {file name: records}, built the way the loader builds them."""
    return file_batch(files, known, INGESTED_AT, hashed=False)


def load(wh, files, dataset=DS, table=TABLE, known=TYPES):
    converted, loaded = batch(files, known)
    wh.ensure_table(table, converted.column_types)
    return wh.append(dataset, table, converted.table, loaded)


def table_rows(wh, table=TABLE):
    return wh.query(f'SELECT _source_file, _record_index, "bmUnit", "levelFrom" FROM {table} ORDER BY 1, 2')


def ledger(wh):
    return wh.query(f"SELECT dataset, _source_file, rows FROM {LEDGER_TABLE} ORDER BY 1, 2")


def tables(wh):
    return {r[0] for r in wh.query(
        "SELECT table_name FROM information_schema.tables"
        " WHERE table_schema = 'main' AND table_catalog = current_database()"
    )}


# --- ensure_table -----------------------------------------------------------------------------------



def test_ensure_table_creates_with_duckdb_types(wh):
    changes = wh.ensure_table("t", ALL_TYPES)
    assert changes == ["created t with 7 columns"]
    columns = wh.query(
        "SELECT column_name, data_type, is_nullable FROM information_schema.columns"
        " WHERE table_name = 't' ORDER BY ordinal_position"
    )
    assert columns == [
        ("ts", "TIMESTAMP WITH TIME ZONE", "YES"),
        ("d", "DATE", "YES"),
        ("i", "BIGINT", "YES"),
        ("f", "DOUBLE", "YES"),
        ("b", "BOOLEAN", "YES"),
        ("s", "VARCHAR", "YES"),
        ("j", "JSON", "YES"),
        ("_source_file", "VARCHAR", "NO"),
        ("_record_index", "BIGINT", "NO"),
        ("_ingested_at", "TIMESTAMP WITH TIME ZONE", "NO"),
    ]
    assert wh.table_columns("t") == ALL_TYPES | {
        "_source_file": "STRING", "_record_index": "INT64", "_ingested_at": "TIMESTAMP"
    }










def test_ensure_table_never_narrows(wh):
    wh.ensure_table("t", {"x": "FLOAT64"})
    wh.con.execute("INSERT INTO t VALUES (2.5, 'f', 0, now())")
    assert wh.ensure_table("t", {"x": "INT64"}) == []
    assert wh.table_columns("t")["x"] == "FLOAT64"
    assert wh.query("SELECT x FROM t") == [(2.5,)]


def test_ensure_table_widens_differing_types_to_json_keeping_each_value(wh):
    wh.ensure_table("t", {"s": "STRING", "n": "INT64", "b": "BOOL"})
    wh.con.execute("INSERT INTO t VALUES ('abc', 5, true, 'f', 0, now())")
    changes = wh.ensure_table("t", {"s": "INT64", "n": "STRING", "b": "BOOL"})
    assert changes == ["widened s STRING -> JSON", "widened n INT64 -> JSON"]
    assert wh.table_columns("t") | {} == {"s": "JSON", "n": "JSON", "b": "BOOL"} | {
        k: v for k, v in wh.table_columns("t").items() if k.startswith("_")
    }
    assert wh.query("SELECT s::VARCHAR, n::VARCHAR, b FROM t") == [('"abc"', "5", True)]


# --- append: exactly once ---------------------------------------------------------------------------















def test_failed_insert_writes_neither_rows_nor_ledger_missing_column(wh):
    load(wh, {"f1.json": [boalf("A", 1)]})
    converted, files = batch({"f2.json": [boalf("B", 2) | {"notInTable": "x"}]})
    with pytest.raises(Exception, match="notInTable"):
        wh.append(DS, TABLE, converted.table, files)  # no ensure_table: the column is missing
    assert table_rows(wh) == [("f1.json", 0, "A", 1)]
    assert ledger(wh) == [(DS, "f1.json", 1)]
    assert wh.loaded_files(DS, ["f2.json"]) == {}
    # The connection is usable afterwards and the file can still be loaded once.
    assert load(wh, {"f2.json": [boalf("B", 2)]}) == [LoadedFile("f2.json", 1)]
    assert ledger(wh) == [(DS, "f1.json", 1), (DS, "f2.json", 1)]




def test_failure_after_the_rows_are_inserted_rolls_them_back(wh):
    """The ledger insert comes after the row insert: its failure must take the rows with it."""
    converted, _ = batch({"dup.json": [boalf("A", 1)]})
    wh.ensure_table(TABLE, converted.column_types)
    with pytest.raises(Exception, match="(?i)constraint|duplicate|primary key"):
        wh.append(DS, TABLE, converted.table, [LoadedFile("dup.json", 1), LoadedFile("dup.json", 1)])
    assert table_rows(wh) == []
    assert ledger(wh) == []






# --- freshness --------------------------------------------------------------------------------------



def test_freshness_after_loads(wh):
    before = dt.datetime.now(UTC)
    load(wh, {"a.json": [boalf("A", 1, minute=5), boalf("B", 1, minute=30)], "b.json": [boalf("C", 1, minute=10)]})
    load(wh, {"x.json": [boalf("Z", 1, minute=59)]}, dataset="BOD", table="bmrs_bod_iris")
    wh.con.execute("SET TimeZone = 'Asia/Tokyo'")  # DuckDB returns TIMESTAMPTZ in the session zone
    f = wh.freshness(DS, TABLE, "timeFrom")
    assert f.rows == 3
    assert f.latest_reference_time == dt.datetime(2024, 6, 1, 10, 30, tzinfo=UTC)
    assert f.latest_reference_time.utcoffset() == dt.timedelta(0)
    assert f.last_ingested_at.utcoffset() == dt.timedelta(0)
    assert before - dt.timedelta(seconds=1) <= f.last_ingested_at <= dt.datetime.now(UTC) + dt.timedelta(seconds=1)


def test_freshness_reference_column_must_be_a_timestamp(wh):
    load(wh, {"a.json": [boalf("A", 1)]})
    assert wh.freshness(DS, TABLE, None).latest_reference_time is None
    assert wh.freshness(DS, TABLE, "bmUnit").latest_reference_time is None  # STRING column
    assert wh.freshness(DS, TABLE, "noSuchColumn").latest_reference_time is None
    assert wh.freshness(DS, TABLE, 'x"; drop table t; --').rows == 1


def test_freshness_with_ledger_entries_but_no_table(wh):
    load(wh, {"a.json": [boalf("A", 1)]})
    wh.con.execute(f"DROP TABLE {TABLE}")
    wh._columns_loaded = False  # DDL behind the warehouse's back
    wh.con.execute("SET TimeZone = 'Asia/Tokyo'")  # DuckDB returns TIMESTAMPTZ in the session zone
    f = wh.freshness(DS, TABLE, "timeFrom")
    assert f.rows == 0 and f.latest_reference_time is None
    assert f.last_ingested_at is not None and f.last_ingested_at.utcoffset() == dt.timedelta(0)


# --- identifiers ------------------------------------------------------------------------------------

BAD_NAMES = ["x; drop table", 'x"; DROP TABLE iris_ingest_log; --', "", "1abc", "a-b", "a b", "abc\n", "x" * 129]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_identifier_rejects_unsafe_names(name):
    with pytest.raises(WarehouseError, match="invalid identifier"):
        quote_identifier(name)


def test_identifier_quotes_safe_names():
    assert quote_identifier("bmrs_boalf_iris") == '"bmrs_boalf_iris"'
    assert quote_identifier("_source_file") == '"_source_file"'
    assert quote_identifier("select") == '"select"'


@pytest.mark.parametrize("name", BAD_NAMES)
def test_invalid_table_and_column_names_never_reach_sql(wh, name):
    load(wh, {"a.json": [boalf("A", 1)]})
    with pytest.raises(WarehouseError):
        wh.ensure_table(name, {"a": "INT64"})
    with pytest.raises(WarehouseError):
        wh.ensure_table("t_new", {name: "INT64"})
    with pytest.raises(WarehouseError):
        wh.ensure_table(TABLE, {name: "INT64"})
    converted, files = batch({"b.json": [boalf("B", 2)]})
    with pytest.raises(WarehouseError):
        wh.append(DS, name, converted.table, files)
    if name:  # Arrow needs a non-empty column name
        bad_rows = converted.table.append_column(name, pa.array([1], pa.int64()))
        with pytest.raises(WarehouseError):
            wh.append(DS, TABLE, bad_rows, files)
    assert wh.freshness(DS, name, None).rows == 0  # looked up as a parameter, never spliced into SQL
    assert tables(wh) == {LEDGER_TABLE, TABLE}
    assert table_rows(wh) == [("a.json", 0, "A", 1)]
    assert ledger(wh) == [(DS, "a.json", 1)]


# --- one writer process at a time -------------------------------------------------------------------

HOLDER = textwrap.dedent(
    """
    import sys, time
    from iris_pipeline.warehouse.duckdb_warehouse import DuckDBWarehouse
    with DuckDBWarehouse(sys.argv[1]) as w:
        w.con.execute("CREATE TABLE held (x BIGINT)")  # no query parameters: they make DuckDB import pandas (1 s)
        print("ready", flush=True)
        if sys.argv[2] == "stdin":
            sys.stdin.readline()
        else:
            time.sleep(float(sys.argv[2]))
    """
)


def start_script(script, db_path, hold):
    """A process running `script` on the warehouse file, once it says it holds what it holds."""
    proc = subprocess.Popen(
        [sys.executable, "-c", script, str(db_path), hold], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "ready"
    return proc


def start_holder(db_path, hold):
    return start_script(HOLDER, db_path, hold)


def test_second_process_waits_for_the_lock_then_opens(db_path):
    holder = start_holder(db_path, "1.0")
    try:
        started = time.monotonic()
        with DuckDBWarehouse(db_path, lock_timeout_s=30) as w:
            waited = time.monotonic() - started
            assert "held" in tables(w)  # the holder's committed work is visible
        assert 0.7 <= waited < 10  # the holder kept the warehouse for 1 s after saying "ready"
    finally:
        holder.wait(timeout=10)
    assert holder.returncode == 0


def test_short_lock_timeout_raises(db_path):
    holder = start_holder(db_path, "stdin")
    try:
        started = time.monotonic()
        with pytest.raises(WarehouseError, match="held by another writer"):
            DuckDBWarehouse(db_path, lock_timeout_s=0.3)
        assert 0.3 <= time.monotonic() - started < 5
    finally:
        holder.stdin.write("\n")
        holder.stdin.flush()
        assert holder.wait(timeout=10) == 0
    with DuckDBWarehouse(db_path, lock_timeout_s=1) as w:  # free again once the holder closed
        assert "held" in tables(w)


def test_close_releases_the_lock(db_path):
    w = DuckDBWarehouse(db_path)
    w.close()
    w.close()  # idempotent
    with DuckDBWarehouse(db_path, lock_timeout_s=0.2) as again:
        assert tables(again) == {LEDGER_TABLE}


# --- one connection, several threads ----------------------------------------------------------------

CONCURRENT = textwrap.dedent(
    """
    import sys, threading, datetime as dt
    import pyarrow as pa
    from iris_pipeline import codec
    from iris_pipeline.warehouse.base import LoadedFile
    from iris_pipeline.warehouse.duckdb_warehouse import DuckDBWarehouse

    wh = DuckDBWarehouse(sys.argv[1])
    wh.ensure_table("t", {"x": "INT64"})
    now = pa.scalar(dt.datetime.now(dt.timezone.utc), codec.ARROW_TYPES["TIMESTAMP"])
    errors = []

    def write():
        try:
            for i in range(100):
                names = [f"f{i}_{j}" for j in range(20)]
                rows = codec.to_records_table([{"x": j} for j in range(20)], {"x": "INT64"}, pa.array(names),
                                              pa.array([0] * 20, pa.int64()), now).table
                wh.append("D", "t", rows, [LoadedFile(n, 1) for n in names])
        except Exception as exc:
            errors.append(repr(exc))

    writer = threading.Thread(target=write)
    writer.start()
    reads = 0
    try:
        while writer.is_alive():
            wh.loaded_files("D", ["f0_0", "f50_1", "nope"])
            wh.table_columns("t")
            reads += 1
    except Exception as exc:
        errors.append(repr(exc))
    writer.join()
    print(wh.query("SELECT count(*) FROM t")[0][0], reads, errors)
    """
)


def test_one_warehouse_used_from_two_threads(db_path):
    """The loader commits on a writer thread while its main thread asks the ledger about the next chunk."""
    proc = subprocess.Popen([sys.executable, "-c", CONCURRENT, str(db_path)], stdout=subprocess.PIPE, text=True)
    try:
        out, _ = proc.communicate(timeout=60)  # a subprocess: a deadlock on the GIL would hang pytest itself
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        pytest.fail("deadlocked using one DuckDBWarehouse from two threads")
    assert proc.returncode == 0
    rows, reads, errors = out.strip().split(" ", 2)
    assert errors == "[]"
    assert int(rows) == 2000
    assert int(reads) > 0


def test_loaded_files_many_asks_once_for_every_dataset(wh):
    load(wh, {"a.json": [boalf("A", 1)]})
    load(wh, {"a.json": [boalf("B", 2)]}, dataset="OTHER")
    found = wh.loaded_files_many({DS: ["a.json", "b.json"], "OTHER": ["a.json"], "NONE": ["a.json"], "EMPTY": []})
    assert found.keys() == {DS, "OTHER", "NONE", "EMPTY"}
    assert set(found[DS]) == {"a.json"} and set(found["OTHER"]) == {"a.json"}
    assert found["NONE"] == {} and found["EMPTY"] == {}

# --- another process with the DuckDB file open (a notebook, `iris-pipeline query`) ------------------

READER = textwrap.dedent(
    """
    import sys, time, duckdb
    con = duckdb.connect(sys.argv[1], read_only=True)  # what an analyst's notebook does
    print("ready", flush=True)
    if sys.argv[2] == "stdin":
        sys.stdin.readline()
    else:
        time.sleep(float(sys.argv[2]))
    con.close()
    """
)


def start_reader(db_path, hold):
    DuckDBWarehouse(db_path).close()  # the file exists, as it does once the pipeline has run
    return start_script(READER, db_path, hold)


def test_writer_waits_while_another_process_reads_the_file(db_path):
    reader = start_reader(db_path, "1.0")
    try:
        started = time.monotonic()
        with DuckDBWarehouse(db_path, lock_timeout_s=30) as w:
            waited = time.monotonic() - started
            load(w, {"a.json": [boalf("A", 1)]})
        assert 0.7 <= waited < 10  # the reader kept the file for 1 s after saying "ready"
    finally:
        assert reader.wait(timeout=10) == 0


def test_writer_gives_up_in_time_naming_the_process_that_holds_the_file(db_path, caplog):
    reader = start_reader(db_path, "stdin")
    try:
        started = time.monotonic()
        with pytest.raises(WarehouseError, match=rf"held by .*python.* \(PID {reader.pid}\) for more than 1s"):
            DuckDBWarehouse(db_path, lock_timeout_s=1)
        assert 1 <= time.monotonic() - started < 5
        assert f"(PID {reader.pid})" in caplog.text  # said so while waiting, not only at the end
    finally:
        reader.stdin.write("\n")
        reader.stdin.flush()
        assert reader.wait(timeout=10) == 0
    with DuckDBWarehouse(db_path, lock_timeout_s=1) as w:  # our own lock was released on the way out
        assert ledger(w) == []


# --- read-only queries for people -------------------------------------------------------------------

def test_read_query_waits_for_a_writer_then_reads(db_path):
    from iris_pipeline.query_output import ResultSpill
    from iris_pipeline.warehouse.duckdb_read import read_query

    holder = start_holder(db_path, "1.0")
    try:
        started = time.monotonic()
        with ResultSpill() as out:
            assert read_query(db_path, "SELECT table_name FROM duckdb_tables() ORDER BY 1", out, timeout_s=30) == 2
            assert 0.7 <= time.monotonic() - started < 10
            assert (out.columns, list(out.rows())) == (["table_name"], [["held"], [LEDGER_TABLE]])
    finally:
        assert holder.wait(timeout=10) == 0


def test_read_query_gives_up_in_time_naming_the_writer(db_path):
    from iris_pipeline.query_output import ResultSpill
    from iris_pipeline.warehouse.duckdb_read import read_query

    holder = start_holder(db_path, "stdin")
    try:
        started = time.monotonic()
        with pytest.raises(WarehouseError, match=rf"\(PID {holder.pid}\) for more than 1s"), ResultSpill() as out:
            read_query(db_path, "SELECT 1", out, timeout_s=1)
        assert 1 <= time.monotonic() - started < 5
    finally:
        holder.stdin.write("\n")
        holder.stdin.flush()
        assert holder.wait(timeout=10) == 0


@pytest.mark.parametrize("sql", [
    "SELECT 1", "FROM iris_ingest_log", "WITH a AS (SELECT 1) SELECT * FROM a", "SHOW TABLES",
    "SUMMARIZE iris_ingest_log", "DESCRIBE iris_ingest_log", "VALUES (1)", "SELECT 1;",
])
def test_read_statements_are_accepted(sql):
    from iris_pipeline.warehouse.duckdb_read import read_statement

    assert read_statement(sql).type.name == "SELECT"


@pytest.mark.parametrize("sql", [
    "DELETE FROM t", "TRUNCATE t", "CHECKPOINT", "EXPORT DATABASE 'x'", "INSTALL httpfs", "LOAD httpfs",
    "CALL pragma_version()", "PRAGMA threads=1", "BEGIN", "VACUUM", "DETACH x", "USE memory",
    "PIVOT t ON x", "SELECT 1; SELECT 2", "", "SELEC 1",
])
def test_other_statements_are_refused(sql):
    from iris_pipeline.warehouse import QueryRefused
    from iris_pipeline.warehouse.duckdb_read import read_statement

    with pytest.raises(QueryRefused):
        read_statement(sql)


# --- a failed COMMIT ---------------------------------------------------------------------------------

@pytest.fixture
def small_disk(tmp_path):
    """A real 8 MiB file system (tmpfs), so DuckDB meets a genuine ENOSPC when it writes its WAL at
    COMMIT. Mounting needs root (as in CI's container); elsewhere the test is skipped."""
    mount = tmp_path / "small_disk"
    mount.mkdir()
    if os.geteuid() != 0 or subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)], capture_output=True
    ).returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root): no honest way to fill a disk")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


def test_a_commit_on_a_full_disk_reports_the_full_disk(small_disk):
    with DuckDBWarehouse(small_disk / "warehouse.duckdb") as w:
        files = {f"f{i}.json": [boalf(f"UNIT{i}_{j}", j) for j in range(100)] for i in range(50)}
        converted, loaded = batch(files)
        w.ensure_table(TABLE, converted.column_types)
        free = os.statvfs(small_disk)
        filler = small_disk / "filler"
        filler.write_bytes(b"\0" * (free.f_bavail * free.f_frsize - 64 * 1024))  # 64 KiB left: less than the WAL needs
        with pytest.raises(Exception, match="No space left on device") as failed:
            w.append(DS, TABLE, converted.table, loaded)
        assert "Failed to commit" in str(failed.value)  # it was the COMMIT that failed
        assert ledger(w) == [] and table_rows(w) == []
        filler.unlink()  # space again: the same files load, once
        assert len(w.append(DS, TABLE, converted.table, loaded)) == 50
        assert len(ledger(w)) == 50 and len(table_rows(w)) == 5000
