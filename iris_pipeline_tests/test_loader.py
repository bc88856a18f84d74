"""The loader on a real spool and a real DuckDB file: every bad input ends where it should."""

import os

import orjson

from iris_pipeline.loader import load_spool
from iris_pipeline.registry import load_registry
from iris_pipeline_tests.conftest import body, freq_records

BOALF = {
    "dataset": "BOALF", "settlementDate": "2025-06-01", "settlementPeriodFrom": 29, "settlementPeriodTo": 30,
    "timeFrom": "2025-06-01T13:34:00Z", "timeTo": "2025-06-01T13:37:00.0000000+00:00", "levelFrom": 5,
    "levelTo": 46, "acceptanceNumber": 1234567, "acceptanceTime": "2025-06-01T13:30:00Z", "deemedBoFlag": False,
    "soFlag": True, "amendmentFlag": "ORI", "storFlag": False, "rrFlag": None,
    "nationalGridBmUnit": "ABRBO-1", "bmUnit": "T_ABRBO-1",
}


def rows(warehouse, table, where="true"):
    return warehouse.query(f"SELECT count(*) FROM {table} WHERE {where}")[0][0]


def test_every_bad_input_ends_where_it_should(spool, warehouse):
    good = [dict(BOALF, acceptanceNumber=i) for i in range(3)]
    inputs = {
        "good_double.json": body(good),
        "good_plain.json": body(good, double_encoded=False),
        "single_object.json": orjson.dumps(BOALF),
        "empty_array.json": b"[]",
        "malformed.json": b'[{"bmUnit": ',
        "truncated.json": body(good)[:-7],
        "empty.json": b"",
        "number.json": b"42",
        "not_utf8.json": b'[{"bmUnit": "\xff\xfe"}]',
        "extra_fields.json": body([dict(BOALF, brandNewField="x", nested={"a": [1, 2]})]),
        "float_in_int.json": body([dict(BOALF, levelFrom=5.5)]),
        "missing_fields.json": body([{"dataset": "BOALF", "bmUnit": "T_X-1"}]),
        "string_in_int.json": body([dict(BOALF, acceptanceNumber="not a number")]),
    }
    for name, data in inputs.items():
        assert spool.write_incoming("BOALF", name, data)
    spool.write_incoming("NEWCODE", "new.json", body([{"a": 1}]))
    (spool.incoming / "x; drop table bmrs_boalf_iris").mkdir(parents=True)
    (spool.incoming / "x; drop table bmrs_boalf_iris" / "evil.json").write_bytes(b"[]")

    report = load_spool(spool, warehouse)

    boalf = report.datasets["BOALF"]
    quarantined = {"malformed.json", "truncated.json", "empty.json", "number.json", "not_utf8.json", "string_in_int.json"}
    assert set(boalf.quarantine_reasons) == quarantined
    assert "not UTF-8" in boalf.quarantine_reasons["not_utf8.json"]
    assert "empty file" in boalf.quarantine_reasons["empty.json"]
    assert "acceptanceNumber" in boalf.quarantine_reasons["string_in_int.json"]
    for name in quarantined:
        assert (spool.quarantine / "BOALF" / name).read_bytes() == inputs[name]
        assert (spool.quarantine / "BOALF" / f"{name}.error").read_text().strip()
    loaded = set(inputs) - quarantined
    assert boalf.files_loaded == len(loaded)
    assert {f.name for f in spool.pending("BOALF")} == set()
    archived = {p.name for p in (spool.archive / "BOALF").rglob("*.json")}
    assert archived == loaded

    assert rows(warehouse, "bmrs_boalf_iris") == 3 + 3 + 1 + 0 + 1 + 1 + 1
    assert warehouse.table_columns("bmrs_boalf_iris")["levelFrom"] == "FLOAT64"
    assert warehouse.query("SELECT levelFrom FROM bmrs_boalf_iris WHERE _source_file = 'float_in_int.json'") == [(5.5,)]
    assert warehouse.query("SELECT brandNewField, nested::VARCHAR FROM bmrs_boalf_iris WHERE brandNewField IS NOT NULL") == [
        ("x", '{"a":[1,2]}')
    ]
    assert warehouse.query(
        "SELECT acceptanceNumber, timeFrom IS NULL FROM bmrs_boalf_iris WHERE _source_file = 'missing_fields.json'"
    ) == [(None, True)]
    assert warehouse.query("SELECT rows FROM iris_ingest_log WHERE _source_file = 'empty_array.json'") == [(0,)]

    assert report.datasets["NEWCODE"].registered is False
    assert rows(warehouse, "bmrs_newcode_iris") == 1
    evil = report.datasets["x; drop table bmrs_boalf_iris"]
    assert evil.files_quarantined == 1 and "invalid dataset code" in evil.quarantine_reasons["evil.json"]
    assert warehouse.table_columns("bmrs_boalf_iris") is not None


def test_same_file_delivered_twice_loads_once(spool, warehouse):
    spool.write_incoming("FREQ", "FREQ_1.json", body(freq_records()))
    load_spool(spool, warehouse)
    # Redelivery after archiving is refused by the spool; a copy that arrives anyway (e.g. an archive
    # backfill written by another tool) is caught by the ledger.
    assert spool.write_incoming("FREQ", "FREQ_1.json", body(freq_records())) is False
    (spool.incoming / "FREQ").mkdir(exist_ok=True)
    (spool.incoming / "FREQ" / "FREQ_1.json").write_bytes(body(freq_records()))
    report = load_spool(spool, warehouse)
    assert report.datasets["FREQ"].files_already_loaded == 1
    assert report.datasets["FREQ"].rows_loaded == 0
    assert rows(warehouse, "bmrs_freq_iris") == 8
    assert spool.pending("FREQ") == []


def test_five_megabyte_message_loads(spool, warehouse):
    records = [dict(BOALF, acceptanceNumber=i, bmUnit=f"T_UNIT-{i}") for i in range(14_000)]
    data = body(records)
    assert len(data) > 5_000_000
    spool.write_incoming("BOALF", "big.json", data)
    report = load_spool(spool, warehouse)
    assert report.datasets["BOALF"].rows_loaded == 14_000
    assert warehouse.query("SELECT count(DISTINCT acceptanceNumber), max(_record_index) FROM bmrs_boalf_iris") == [
        (14_000, 13_999)
    ]


def test_a_failing_dataset_does_not_block_the_others(spool, warehouse):
    # A view where the FREQ table should be: every insert into it fails, for real.
    warehouse.con.execute("CREATE VIEW bmrs_freq_iris AS SELECT 1 AS frequency")  # sabotage: not through the interface
    spool.write_incoming("FREQ", "FREQ_1.json", body(freq_records()))
    spool.write_incoming("BOALF", "B_1.json", body([BOALF]))
    report = load_spool(spool, warehouse)
    assert report.failed.keys() == {"FREQ"}
    assert report.datasets["BOALF"].files_loaded == 1
    assert [f.name for f in spool.pending("FREQ")] == ["FREQ_1.json"]  # kept for the next run
    assert spool.quarantined("FREQ") == []


def test_bad_file_in_a_chunk_does_not_hold_back_the_chunk(spool, warehouse):
    for i in range(10):
        records = freq_records()
        if i == 4:
            records[3]["frequency"] = "fifty"
        spool.write_incoming("FREQ", f"FREQ_{i}.json", body(records))
    report = load_spool(spool, warehouse, chunk_files=4)
    assert report.datasets["FREQ"].files_loaded == 9
    assert list(report.datasets["FREQ"].quarantine_reasons) == ["FREQ_4.json"]
    assert rows(warehouse, "bmrs_freq_iris") == 72


def test_timestamps_of_every_precision_are_one_instant(spool, warehouse):
    stamps = ["2025-01-01T00:00:15Z", "2025-01-01T00:00:15.0000000+00:00", "2025-01-01T00:00:15.000Z", "2025-01-01T01:00:15+01:00"]
    spool.write_incoming("FREQ", "f.json", body([{"measurementTime": s, "frequency": 50.0} for s in stamps]))
    load_spool(spool, warehouse)
    assert warehouse.query("SELECT count(DISTINCT measurementTime), count(*) FROM bmrs_freq_iris") == [(1, 4)]


def test_only_selected_datasets_are_drained(spool, warehouse):
    spool.write_incoming("FREQ", "f.json", body(freq_records()))
    spool.write_incoming("BOALF", "b.json", body([BOALF]))
    report = load_spool(spool, warehouse, datasets=["FREQ"])
    assert set(report.datasets) == {"FREQ"}
    assert [f.name for f in spool.pending("BOALF")] == ["b.json"]


def test_registry_types_reach_the_table(spool, warehouse):
    spool.write_incoming("BOALF", "b.json", body([BOALF]))
    load_spool(spool, warehouse)
    columns = warehouse.table_columns("bmrs_boalf_iris")
    declared = {c.name: c.type for c in load_registry()["BOALF"].columns}
    assert {k: columns[k] for k in declared} == declared
    assert columns["_source_file"] == "STRING" and columns["_ingested_at"] == "TIMESTAMP"


def test_crash_after_commit_before_archive_is_repaired(spool, warehouse):
    spool.write_incoming("FREQ", "f.json", body(freq_records()))
    load_spool(spool, warehouse)
    archived = next((spool.archive / "FREQ").rglob("f.json"))
    os.replace(archived, spool.incoming / "FREQ" / "f.json")  # as if the run died right after COMMIT
    report = load_spool(spool, warehouse)
    assert report.datasets["FREQ"].files_already_loaded == 1
    assert rows(warehouse, "bmrs_freq_iris") == 8
    assert spool.pending("FREQ") == []


def test_worker_processes_load_the_same_as_in_process(spool, warehouse, tmp_path):
    """Large backlogs are prepared by worker processes: same rows, same quarantine, same ledger."""
    for i in range(40):
        records = freq_records(second=i)
        if i == 7:
            records[0]["frequency"] = "fifty"
        spool.write_incoming("FREQ", f"FREQ_{i:03d}.json", body(records))
        spool.write_incoming("BOALF", f"B_{i:03d}.json", body([dict(BOALF, acceptanceNumber=i)]))
    spool.write_incoming("BOALF", "broken.json", b"[")
    report = load_spool(spool, warehouse, chunk_files=6, workers=2, parallel_min_files=1)
    assert report.datasets["FREQ"].files_loaded == 39 and list(report.datasets["FREQ"].quarantine_reasons) == ["FREQ_007.json"]
    assert report.datasets["BOALF"].files_loaded == 40 and report.datasets["BOALF"].files_quarantined == 1
    assert rows(warehouse, "bmrs_freq_iris") == 39 * 8
    assert warehouse.query("SELECT count(*) FROM iris_ingest_log") == [(79,)]
    assert spool.datasets_pending() == []


def test_drifting_field_across_parallel_chunks_is_reconciled(spool, warehouse):
    # Chunk 1 sees `note` as text; chunk 2 (prepared at the same time) sees numbers only.
    for i in range(4):
        spool.write_incoming("NEWCODE", f"a{i}.json", body([{"note": "text"}]))
    for i in range(4):
        spool.write_incoming("NEWCODE", f"b{i}.json", body([{"note": 5}]))
    report = load_spool(spool, warehouse, chunk_files=4, workers=2, parallel_min_files=1)
    assert report.failed == {}
    assert warehouse.table_columns("bmrs_newcode_iris")["note"] == "JSON"
    assert warehouse.query("SELECT note::VARCHAR, count(*) FROM bmrs_newcode_iris GROUP BY ALL ORDER BY ALL") == [
        ('"text"', 4), ("5", 4)
    ]


def test_every_registered_table_exists_typed_before_its_first_message(spool, warehouse):
    load_spool(spool, warehouse)  # an empty spool
    registry = load_registry()
    assert {ds.table_name for ds in registry} <= warehouse.tables()
    remit = warehouse.table_columns("bmrs_remit_iris")
    assert remit["outageProfile"] == "JSON" and rows(warehouse, "bmrs_remit_iris") == 0


def test_a_worker_killed_mid_drain_costs_nothing(spool, warehouse):
    """A worker that dies (OOM killer, an operator) costs only a rerun of its chunk on a new worker."""
    import signal

    from iris_pipeline import loader
    from iris_pipeline.workers import WorkerPool

    for i in range(12):
        spool.write_incoming("FREQ", f"FREQ_{i:02d}.json", body(freq_records(second=i)))
    tasks = loader._plan(spool, warehouse, load_registry(), ["FREQ"], 3, 0, loader.LoadReport())
    with WorkerPool(2) as pool:
        pool.submit(int).result()  # start a worker
        os.kill(pool.pids[0], signal.SIGKILL)
        prepared = [p for _, _, p in loader._prepared_in_order(tasks, pool, window=4)]
        assert pool.deaths == 1
    assert [p.error for p in prepared] == [None] * 4
    assert sum(len(p.decoded) for p in prepared) == 12


def test_column_types_only_ever_widen():
    from iris_pipeline.warehouse.base import evolved_type

    assert evolved_type(None, "STRING") == "STRING"
    assert evolved_type("INT64", "FLOAT64") == evolved_type("FLOAT64", "INT64") == "FLOAT64"
    assert evolved_type("STRING", "INT64") == evolved_type("BOOL", "JSON") == evolved_type("JSON", "INT64") == "JSON"
    types = ["BOOL", "INT64", "FLOAT64", "STRING", "JSON"]
    for a in types:  # a join: order never matters, and it never narrows
        for b in types:
            assert evolved_type(a, b) == evolved_type(b, a)
            assert evolved_type(evolved_type(a, b), a) == evolved_type(a, b)
