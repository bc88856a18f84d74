"""The warehouse contract, run on both backends: a real DuckDB file, and BigQuery's API served by the
`bqemulator` emulator (a real server process, driven by the real google-cloud-bigquery client).

Exactly once, duplicate delivery, all-or-nothing commits, schema evolution, bad input, column types.
Where the emulator differs from BigQuery, the test says so beside the assertion.
"""

import datetime as dt

import pyarrow as pa
import pytest

from iris_pipeline_tests.timeline import file_batch
from iris_pipeline.warehouse import LEDGER_TABLE, QueryRefused, WarehouseError
from iris_pipeline.warehouse.base import Batch, LoadedFile, TableLayout

UTC = dt.timezone.utc
DS = "BOALF"
TABLE = "bmrs_boalf_iris"
TYPES = {"bmUnit": "STRING", "timeFrom": "TIMESTAMP", "settlementDate": "DATE", "levelFrom": "INT64"}
ALL_TYPES = {"ts": "TIMESTAMP", "d": "DATE", "i": "INT64", "f": "FLOAT64", "b": "BOOL", "s": "STRING", "j": "JSON"}
META_TYPES = {"_source_file": "STRING", "_record_index": "INT64", "_ingested_at": "TIMESTAMP"}
INGESTED_AT = dt.datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
LAYOUT = TableLayout("settlementDate", ("bmUnit", "timeFrom"))


@pytest.fixture(params=["duckdb", "bigquery"])
def open_wh(request, tmp_path):
    """A function opening the warehouse under test (the same one each time it is called)."""
    if request.param == "duckdb":
        from iris_pipeline.warehouse.duckdb_warehouse import DuckDBWarehouse

        return lambda: DuckDBWarehouse(tmp_path / "warehouse.duckdb", lock_timeout_s=5)
    emulator = request.getfixturevalue("bigquery_emulator")
    dataset = request.getfixturevalue("bq_dataset")
    from iris_pipeline.warehouse.bigquery_client import make_client
    from iris_pipeline.warehouse.bigquery_warehouse import BigQueryWarehouse

    return lambda: BigQueryWarehouse(
        make_client(emulator.project, "EU", emulator.host), dataset, min_flush_interval_s=0
    )


@pytest.fixture
def wh(open_wh):
    with open_wh() as w:
        yield w


def boalf(unit, level, minute=0):
    return {"bmUnit": unit, "timeFrom": f"2024-06-01T10:{minute:02d}:00Z", "settlementDate": "2024-06-01", "levelFrom": level}


def batch(files, known=TYPES):
    """(Arrow rows, LoadedFile list) for {file name: records}, built the way the loader builds them."""
    return file_batch(files, known, INGESTED_AT)


def load(wh, files, dataset=DS, table=TABLE, known=TYPES):
    converted, loaded = batch(files, known)
    wh.ensure_table(table, converted.column_types, LAYOUT)
    return wh.append(dataset, table, converted.table, loaded)


def table_rows(wh, table=TABLE):
    q = wh.quote
    return wh.query(
        f"SELECT _source_file, _record_index, {q('bmUnit')}, {q('levelFrom')} FROM {wh.table_ref(table)} ORDER BY 1, 2"
    )


def ledger(wh):
    return wh.query(f"SELECT dataset, _source_file, rows FROM {wh.table_ref(LEDGER_TABLE)} ORDER BY 1, 2")


def as_json_text(wh, column):
    """SQL giving a JSON column's value as JSON text, in the backend's dialect."""
    if type(wh).__name__ == "BigQueryWarehouse":
        return f"TO_JSON_STRING({wh.quote(column)})"
    return f"CAST({wh.quote(column)} AS VARCHAR)"


# --- tables ---------------------------------------------------------------------------------------

def test_a_new_warehouse_has_only_an_empty_ledger(wh):
    assert wh.tables() == {LEDGER_TABLE}
    assert ledger(wh) == []


def test_ensure_table_creates_every_column_type(wh):
    changes = wh.ensure_table("t", ALL_TYPES, TableLayout("d", ("s",)))
    assert len(changes) == 1 and changes[0].startswith("created t with 7 columns")
    assert wh.table_columns("t") == ALL_TYPES | META_TYPES
    assert wh.table_columns("nope") is None
    assert wh.ensure_table("t", ALL_TYPES) == []
    assert wh.ensure_table("t", {"i": "INT64"}) == []  # a subset of the columns changes nothing


def test_every_column_type_round_trips(wh):
    values = {
        "ts": "2025-03-30T00:59:59.123456Z", "d": "2025-10-26", "i": 2**53 + 1, "f": -0.5, "b": True,
        "s": "naïve ✓ 'quoted'", "j": {"nested": [1, "two", None]},
    }
    converted, files = batch({"all.json": [values, {}]}, known=ALL_TYPES)
    wh.ensure_table("t", converted.column_types)
    assert wh.append("TYPES", "t", converted.table, files) == files
    q = wh.quote
    rows = wh.query(
        f"SELECT {q('ts')}, {q('d')}, {q('i')}, {q('f')}, {q('b')}, {q('s')}, {as_json_text(wh, 'j')}"
        f" FROM {wh.table_ref('t')} ORDER BY _record_index"
    )
    ts, d, i, f, b, s, j = rows[0]
    assert ts == dt.datetime(2025, 3, 30, 0, 59, 59, 123456, tzinfo=UTC)
    assert (d, i, f, b, s) == (dt.date(2025, 10, 26), 2**53 + 1, -0.5, True, "naïve ✓ 'quoted'")
    assert j.replace(" ", "") == '{"nested":[1,"two",null]}'
    assert rows[1] == (None,) * 7


def test_ensure_table_adds_missing_columns(wh):
    load(wh, {"f1.json": [boalf("A", 1)]})
    changes = wh.ensure_table(TABLE, TYPES | {"soFlag": "BOOL", "extra": "JSON"})
    assert changes == ["added soFlag BOOL", "added extra JSON"]
    assert {k: wh.table_columns(TABLE)[k] for k in ("soFlag", "extra")} == {"soFlag": "BOOL", "extra": "JSON"}
    q = wh.quote
    assert wh.query(f"SELECT {q('bmUnit')}, {q('soFlag')}, {q('extra')} FROM {wh.table_ref(TABLE)}") == [("A", None, None)]


def test_int64_widens_to_float64_keeping_values(wh):
    load(wh, {"f1.json": [boalf("A", 100), boalf("B", -7), boalf("C", 2**52 + 1)]})
    assert wh.table_columns(TABLE)["levelFrom"] == "INT64"
    assert load(wh, {"f2.json": [boalf("D", 2.5)]}) == [LoadedFile("f2.json", 1, "sha-f2.json")]
    # The emulator's catalogue does not follow ALTER COLUMN (BigQuery's does): the type is read from
    # this connection, which made the change; the values below come from the table itself.
    assert wh.table_columns(TABLE)["levelFrom"] == "FLOAT64"
    q = wh.quote
    assert wh.query(f"SELECT {q('bmUnit')}, {q('levelFrom')} FROM {wh.table_ref(TABLE)} ORDER BY 1") == [
        ("A", 100.0), ("B", -7.0), ("C", float(2**52 + 1)), ("D", 2.5),
    ]


def test_differing_types_widen_to_json_keeping_each_value(wh):
    load(wh, {"f1.json": [{"bmUnit": "A", "note": "abc", "n": 5}]}, known=TYPES | {"note": "STRING", "n": "INT64"})
    changes = wh.ensure_table(TABLE, {"note": "INT64", "n": "STRING"})
    assert changes == ["widened note STRING -> JSON", "widened n INT64 -> JSON"]
    assert {k: wh.table_columns(TABLE)[k] for k in ("note", "n")} == {"note": "JSON", "n": "JSON"}
    assert wh.query(f"SELECT {as_json_text(wh, 'note')}, {as_json_text(wh, 'n')} FROM {wh.table_ref(TABLE)}") == [
        ('"abc"', "5")
    ]


def test_types_never_narrow(wh):
    load(wh, {"f1.json": [boalf("A", 2.5)]}, known=TYPES | {"levelFrom": "FLOAT64"})
    assert wh.ensure_table(TABLE, {"levelFrom": "INT64"}) == []
    assert wh.table_columns(TABLE)["levelFrom"] == "FLOAT64"


# --- exactly once -----------------------------------------------------------------------------------

def test_append_inserts_rows_and_ledger_entries(wh):
    before = dt.datetime.now(UTC)
    loaded = load(wh, {"f1.json": [boalf("A", 1), boalf("B", 2)], "f2.json": [boalf("C", 3)]})
    assert sorted(f.name for f in loaded) == ["f1.json", "f2.json"]
    assert table_rows(wh) == [("f1.json", 0, "A", 1), ("f1.json", 1, "B", 2), ("f2.json", 0, "C", 3)]
    assert ledger(wh) == [(DS, "f1.json", 2), (DS, "f2.json", 1)]
    (stamp,) = {r[0] for r in wh.query(f"SELECT ingested_at FROM {wh.table_ref(LEDGER_TABLE)}")}
    assert before - dt.timedelta(seconds=5) <= stamp <= dt.datetime.now(UTC) + dt.timedelta(seconds=5)
    q = wh.quote
    typed = wh.query(
        f"SELECT {q('timeFrom')}, {q('settlementDate')}, _ingested_at FROM {wh.table_ref(TABLE)} WHERE {q('bmUnit')} = 'A'"
    )
    assert typed == [(dt.datetime(2024, 6, 1, 10, 0, tzinfo=UTC), dt.date(2024, 6, 1), INGESTED_AT)]
    assert wh.loaded_files(DS, ["f1.json", "f2.json", "f3.json"]) == {"f1.json": "sha-f1.json", "f2.json": "sha-f2.json"}


def test_the_same_file_delivered_twice_is_loaded_once(wh):
    files = {"f1.json": [boalf("A", 1), boalf("B", 2)]}
    assert [f.name for f in load(wh, files)] == ["f1.json"]
    assert load(wh, files) == []
    assert table_rows(wh) == [("f1.json", 0, "A", 1), ("f1.json", 1, "B", 2)]
    assert ledger(wh) == [(DS, "f1.json", 2)]


def test_a_batch_mixing_loaded_and_new_files_loads_only_the_new_one(wh):
    load(wh, {"old.json": [boalf("A", 1)]})
    loaded = load(wh, {"old.json": [boalf("A", 1)], "new.json": [boalf("B", 2), boalf("C", 3)]})
    assert [f.name for f in loaded] == ["new.json"]
    assert table_rows(wh) == [("new.json", 0, "B", 2), ("new.json", 1, "C", 3), ("old.json", 0, "A", 1)]
    assert ledger(wh) == [(DS, "new.json", 2), (DS, "old.json", 1)]


def test_append_many_commits_batches_together_and_skips_files_loaded_before(wh):
    load(wh, {"old.json": [boalf("A", 1)]})
    first, files1 = batch({"old.json": [boalf("A", 1)], "new1.json": [boalf("B", 2)]})
    second, files2 = batch({"new2.json": [boalf("C", 3)]})
    loaded = wh.append_many([Batch(DS, TABLE, first.table, files1), Batch(DS, TABLE, second.table, files2)])
    assert [[f.name for f in part] for part in loaded] == [["new1.json"], ["new2.json"]]
    assert [r[0] for r in table_rows(wh)] == ["new1.json", "new2.json", "old.json"]
    assert [r[1] for r in ledger(wh)] == ["new1.json", "new2.json", "old.json"]


def test_append_many_is_all_or_nothing(wh):
    good, good_files = batch({"good.json": [boalf("A", 1)]})
    wh.ensure_table(TABLE, good.column_types)
    bad = good.table.append_column("noSuchColumn", pa.array([1], pa.int64()))
    with pytest.raises(Exception, match="noSuchColumn"):
        wh.append_many([Batch(DS, TABLE, good.table, good_files), Batch(DS, TABLE, bad, [LoadedFile("bad.json", 1)])])
    assert table_rows(wh) == [] and ledger(wh) == []
    # and the warehouse is usable afterwards: the good file still loads, once
    assert [f.name for f in load(wh, {"good.json": [boalf("A", 1)]})] == ["good.json"]
    assert ledger(wh) == [(DS, "good.json", 1)]


def test_a_value_that_does_not_fit_its_column_fails_the_whole_batch(wh):
    load(wh, {"f1.json": [boalf("A", 1)]})
    converted, files = batch({"f2.json": [boalf("B", 2)], "f3.json": [boalf("C", "not a number")]},
                             known=TYPES | {"levelFrom": "STRING"})
    with pytest.raises(Exception):
        wh.append(DS, TABLE, converted.table, files)
    assert table_rows(wh) == [("f1.json", 0, "A", 1)]
    assert ledger(wh) == [(DS, "f1.json", 1)]


def test_an_empty_message_is_recorded_once(wh):
    assert [f.name for f in load(wh, {"empty.json": []})] == ["empty.json"]
    assert load(wh, {"empty.json": []}) == []
    assert table_rows(wh) == []
    assert ledger(wh) == [(DS, "empty.json", 0)]


def test_the_ledger_is_per_dataset(wh):
    load(wh, {"same_name.json": [boalf("A", 1)]})
    loaded = load(wh, {"same_name.json": [boalf("B", 2)]}, dataset="BOD", table="bmrs_bod_iris")
    assert [f.name for f in loaded] == ["same_name.json"]
    assert ledger(wh) == [(DS, "same_name.json", 1), ("BOD", "same_name.json", 1)]
    assert wh.ledger_datasets() == {DS, "BOD"}


def test_loaded_files_many_and_hostile_names(wh):
    assert wh.loaded_files_many({DS: [], "BOD": []}) == {DS: {}, "BOD": {}}
    load(wh, {"BOALF_202406011000_a.json": [boalf("A", 1)], "b.json": [boalf("B", 1)]})
    found = wh.loaded_files_many({DS: ["BOALF_202406011000_a.json", "c.json", "b.json"], "BOD": ["b.json"]})
    assert found == {DS: {"BOALF_202406011000_a.json": "sha-BOALF_202406011000_a.json", "b.json": "sha-b.json"}, "BOD": {}}
    assert wh.loaded_files(DS, ["a.json'; DROP TABLE iris_ingest_log; --"]) == {}
    assert len(ledger(wh)) == 2


def test_data_survives_reopening(open_wh):
    with open_wh() as w:
        load(w, {"a.json": [boalf("A", 1)]})
    with open_wh() as w:
        assert table_rows(w) == [("a.json", 0, "A", 1)]
        assert load(w, {"a.json": [boalf("A", 1)]}) == []


# --- freshness --------------------------------------------------------------------------------------

def test_freshness(wh):
    f = wh.freshness(DS, TABLE, "timeFrom")
    assert (f.last_ingested_at, f.latest_reference_time, f.rows) == (None, None, 0)
    now = dt.datetime.now(UTC).replace(microsecond=0)
    recent = [{"bmUnit": u, "timeFrom": (now - dt.timedelta(minutes=m)).isoformat(), "levelFrom": 1} for u, m in (("A", 30), ("B", 5))]
    load(wh, {"BOALF_x.json": recent})
    f = wh.freshness(DS, TABLE, "timeFrom")
    assert f.rows == 2
    assert f.latest_reference_time == now - dt.timedelta(minutes=5)
    assert f.last_ingested_at is not None and f.last_ingested_at.utcoffset() == dt.timedelta(0)
    assert wh.freshness(DS, TABLE, "bmUnit").latest_reference_time is None  # not a TIMESTAMP column
    assert wh.freshness(DS, TABLE, "noSuchColumn").latest_reference_time is None


# --- bad input never becomes SQL ---------------------------------------------------------------------

BAD_NAMES = ["x; drop table", 'x"; DROP TABLE iris_ingest_log; --', "x`; DROP TABLE iris_ingest_log; --", "",
             "1abc", "a-b", "a b", "abc\n", "x" * 129]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_invalid_table_and_column_names_never_reach_sql(wh, name):
    with pytest.raises(WarehouseError, match="invalid identifier"):
        wh.ensure_table(name, {"a": "STRING"})
    with pytest.raises(WarehouseError, match="invalid identifier"):
        wh.ensure_table("t", {name: "STRING"})
    with pytest.raises(WarehouseError, match="invalid identifier"):
        wh.quote(name)
    assert wh.tables() <= {LEDGER_TABLE, "t"}


def test_query_runs_one_read_statement_only(wh):
    load(wh, {"f1.json": [boalf("A", 1)]})
    for sql in (f"DELETE FROM {wh.table_ref(LEDGER_TABLE)} WHERE TRUE", f"DROP TABLE {wh.table_ref(TABLE)}"):
        with pytest.raises(QueryRefused):
            wh.query(sql)
    assert ledger(wh) == [(DS, "f1.json", 1)]
    assert TABLE in wh.tables()


def test_usage_is_reported(wh):
    load(wh, {"f1.json": [boalf("A", 1)]})
    usage = wh.usage()
    if type(wh).__name__ == "BigQueryWarehouse":
        # a staging load for the rows and one for the ledger entries; bytes processed are 0 on the
        # emulator (BigQuery reports them), so only their presence is checked
        assert usage["load_jobs"] == 2 and usage["query_jobs"] >= 1 and "bytes_processed" in usage
    else:
        assert usage == {}



# --- historic days: replace a range atomically --------------------------------------------------------

def _day_rows(day, units, level=1, minutes=(0, 30)):
    records = [
        {"bmUnit": u, "timeFrom": f"{day}T10:{m:02d}:00Z", "settlementDate": day, "levelFrom": level}
        for u in units for m in minutes
    ]
    converted, _ = batch({f"api_{day}": records})
    return converted


def _per_day(wh, table="bmrs_boalf"):
    q = wh.quote
    return wh.query(
        f"SELECT {q('settlementDate')}, count(*), max({q('levelFrom')}) FROM {wh.table_ref(table)} GROUP BY 1 ORDER BY 1"
    )


def test_replacing_a_day_twice_never_doubles_it_and_leaves_other_days_alone(wh):
    d1, d2 = dt.date(2025, 3, 30), dt.date(2025, 3, 31)
    first = _day_rows("2025-03-30", ["A", "B"])
    wh.ensure_table("bmrs_boalf", first.column_types, LAYOUT)
    assert wh.replace_range("bmrs_boalf", "settlementDate", d1, d2, first.table) == 4
    assert wh.replace_range("bmrs_boalf", "settlementDate", d2, d2 + dt.timedelta(1), _day_rows("2025-03-31", ["A"]).table) == 2
    # re-materialising 30 March with revised data replaces it, and only it
    assert wh.replace_range("bmrs_boalf", "settlementDate", d1, d2, _day_rows("2025-03-30", ["A", "B", "C"], level=7).table) == 6
    assert wh.replace_range("bmrs_boalf", "settlementDate", d1, d2, _day_rows("2025-03-30", ["A", "B", "C"], level=7).table) == 6
    assert _per_day(wh) == [(d1, 6, 7), (d2, 2, 1)]


def test_an_empty_day_is_a_valid_replacement(wh):
    d1 = dt.date(2025, 10, 26)
    rows = _day_rows("2025-10-26", ["A"])
    wh.ensure_table("bmrs_boalf", rows.column_types, LAYOUT)
    wh.replace_range("bmrs_boalf", "settlementDate", d1, d1 + dt.timedelta(1), rows.table)
    assert wh.replace_range("bmrs_boalf", "settlementDate", d1, d1 + dt.timedelta(1), rows.table.slice(0, 0)) == 0
    assert _per_day(wh) == []


def test_a_range_of_instants_is_replaced_by_utc_time(wh):
    """A settlement day in Europe/London as UTC instants: 2025-03-30 is 23 hours long."""
    start = dt.datetime(2025, 3, 29, 23, 0, tzinfo=UTC)
    end = dt.datetime(2025, 3, 30, 23, 0, tzinfo=UTC)
    rows = _day_rows("2025-03-30", ["A"], minutes=(0,))  # 10:00Z on the 30th: inside
    wh.ensure_table("bmrs_boalf", rows.column_types, LAYOUT)
    wh.replace_range("bmrs_boalf", "timeFrom", start, end, rows.table)
    wh.replace_range("bmrs_boalf", "timeFrom", start, end, rows.table)
    assert len(table_rows(wh, "bmrs_boalf")) == 1


def test_rows_outside_the_range_are_refused_before_anything_changes(wh):
    d1 = dt.date(2025, 3, 30)
    rows = _day_rows("2025-03-30", ["A"])
    wh.ensure_table("bmrs_boalf", rows.column_types, LAYOUT)
    wh.replace_range("bmrs_boalf", "settlementDate", d1, d1 + dt.timedelta(1), rows.table)
    stray = _day_rows("2025-03-31", ["Z"]).table
    with pytest.raises(WarehouseError, match="2 rows of bmrs_boalf have no settlementDate in"):
        wh.replace_range("bmrs_boalf", "settlementDate", d1, d1 + dt.timedelta(1), stray)
    no_date = _day_rows("2025-03-30", ["Z"]).table.drop_columns(["settlementDate"])
    with pytest.raises(WarehouseError, match="no settlementDate"):
        wh.replace_range("bmrs_boalf", "settlementDate", d1, d1 + dt.timedelta(1), no_date)
    assert _per_day(wh) == [(d1, 2, 1)]
