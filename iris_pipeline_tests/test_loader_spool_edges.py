"""The loader with the spool's edge cases (issue 6): a name reused by another body, paths outside the
spool, entries that are not files, an unreadable directory. Real spool, real DuckDB file."""

import datetime as dt
import os

import duckdb

from iris_pipeline import cli
from iris_pipeline.loader import load_spool
from iris_pipeline.spool import content_hash, content_variant_name
from iris_pipeline.warehouse.duckdb_warehouse import DuckDBWarehouse
from iris_pipeline_tests.conftest import body, freq_records
from iris_pipeline_tests.unprivileged import run_without_permission_bypass, unreadable

NAME = "FREQ_1.json"


def freq_rows(warehouse):
    return warehouse.query("SELECT count(*) FROM bmrs_freq_iris")[0][0]


def ledger(warehouse):
    return warehouse.query("SELECT _source_file, sha256 FROM iris_ingest_log WHERE dataset = 'FREQ' ORDER BY 1")


def prune_everything(spool):
    spool.prune_archive(keep_days=0, today=dt.datetime.now(dt.timezone.utc).date() + dt.timedelta(days=2))
    assert not any(spool.archive.rglob("*.json"))


def test_a_different_body_under_a_loaded_name_is_loaded_after_the_archive_was_pruned(spool, warehouse):
    first, second = body(freq_records(8)), body(freq_records(8, second=8))
    assert spool.write_incoming("FREQ", NAME, first)
    load_spool(spool, warehouse, workers=0)
    prune_everything(spool)  # the spool can no longer compare: only the ledger knows the first body

    assert spool.write_incoming("FREQ", NAME, second)
    report = load_spool(spool, warehouse, workers=0).datasets["FREQ"]

    variant = content_variant_name(NAME, content_hash(second))
    assert (report.files_loaded, report.files_already_loaded) == (1, 0)
    assert freq_rows(warehouse) == 16
    assert ledger(warehouse) == sorted([(NAME, content_hash(first)), (variant, content_hash(second))])
    assert warehouse.query(f"SELECT count(*) FROM bmrs_freq_iris WHERE _source_file = '{variant}'") == [(8,)]
    assert [p.name for p in spool.archive.rglob("*.json")] == [variant]

    # Either body delivered again later is a duplicate, under whichever name it arrives.
    for again in (first, second):
        prune_everything(spool)
        assert spool.write_incoming("FREQ", NAME, again)
        report = load_spool(spool, warehouse, workers=0).datasets["FREQ"]
        assert (report.files_loaded, report.files_already_loaded) == (0, 1)
        assert spool.pending("FREQ") == []
    assert freq_rows(warehouse) == 16 and len(ledger(warehouse)) == 2


def test_a_different_body_while_the_first_is_archived_is_loaded_too(spool, warehouse):
    first, second = body(freq_records(8)), body(freq_records(8, second=8))
    assert spool.write_incoming("FREQ", NAME, first)
    load_spool(spool, warehouse, workers=0)
    assert spool.write_incoming("FREQ", NAME, second)
    report = load_spool(spool, warehouse, workers=0).datasets["FREQ"]
    assert report.files_loaded == 1 and freq_rows(warehouse) == 16
    assert sorted(p.read_bytes() for p in spool.archive.rglob("*.json")) == sorted([first, second])


def test_the_ledger_keeps_the_content_hash_of_every_loaded_file(spool, warehouse):
    bodies = {f"FREQ_{i}.json": body(freq_records(2, second=2 * i)) for i in range(5)}
    for name, data in bodies.items():
        assert spool.write_incoming("FREQ", name, data)
    load_spool(spool, warehouse, workers=0)
    assert ledger(warehouse) == sorted((name, content_hash(data)) for name, data in bodies.items())


def test_a_ledger_from_before_hashes_is_migrated_and_its_entries_still_count(spool, warehouse_path):
    with duckdb.connect(str(warehouse_path)) as con:  # the ledger as earlier versions created it
        con.execute(
            "CREATE TABLE iris_ingest_log (dataset VARCHAR NOT NULL, _source_file VARCHAR NOT NULL,"
            " rows BIGINT NOT NULL, ingested_at TIMESTAMPTZ NOT NULL, PRIMARY KEY (dataset, _source_file))"
        )
        con.execute("INSERT INTO iris_ingest_log VALUES ('FREQ', ?, 8, now())", [NAME])
    with DuckDBWarehouse(warehouse_path) as warehouse:
        assert warehouse.loaded_files("FREQ", [NAME, "other.json"]) == {NAME: None}
        assert spool.write_incoming("FREQ", NAME, body(freq_records(8)))
        assert spool.write_incoming("FREQ", "FREQ_2.json", body(freq_records(8, second=8)))
        report = load_spool(spool, warehouse, workers=0).datasets["FREQ"]
        assert (report.files_loaded, report.files_already_loaded) == (1, 1)  # without a hash, the name decides
        assert ledger(warehouse) == [(NAME, None), ("FREQ_2.json", content_hash(body(freq_records(8, second=8))))]


def test_ingest_of_a_dataset_outside_the_spool_touches_nothing_there(spool, tmp_path, pipeline_env, capsys):
    outside = tmp_path / "x"  # incoming/../../x
    outside.mkdir()
    (outside / "victim.json").write_bytes(b"[]")
    assert (spool.incoming / ".." / ".." / "x").resolve() == outside.resolve()
    spool.write_incoming("FREQ", NAME, body(freq_records(8)))

    assert cli.main(["ingest", "--dataset", "../../x", "--dataset", "FREQ"]) == 2  # refused as a whole

    assert os.listdir(outside) == ["victim.json"]
    assert "unknown dataset code '../../x'" in capsys.readouterr().err
    assert [f.name for f in spool.pending("FREQ")] == [NAME]  # nothing was loaded

    assert cli.main(["ingest", "--dataset", "FREQ"]) == 0
    assert spool.pending("FREQ") == []


LOAD_SCRIPT = """
    import json, sys
    from iris_pipeline.loader import load_spool
    from iris_pipeline.spool import Spool
    from iris_pipeline.warehouse.duckdb_warehouse import DuckDBWarehouse
    with DuckDBWarehouse(sys.argv[2]) as warehouse:
        report = load_spool(Spool(sys.argv[1]), warehouse, workers=0)
        print(json.dumps({code: [r.files_loaded, r.error] for code, r in report.datasets.items()}))
"""


def test_links_and_an_unreadable_directory_do_not_stop_the_load(spool, warehouse_path, tmp_path):
    secret = tmp_path / "secret.json"
    secret.write_bytes(body(freq_records(1)))
    assert spool.write_incoming("FREQ", NAME, body(freq_records(8)))
    os.symlink(secret, spool.incoming / "FREQ" / "link.json")
    assert spool.write_incoming("BOD", "BOD_1.json", b"[]")

    with unreadable(spool.incoming / "BOD"):
        loaded = run_without_permission_bypass(LOAD_SCRIPT, str(spool.root), str(warehouse_path))

    assert loaded == {"FREQ": [1, None]}
    assert os.readlink(spool.quarantine / "FREQ" / "link.json") == str(secret)
    assert "symbolic link" in (spool.quarantine / "FREQ" / "link.json.error").read_text()
    assert secret.exists() and os.listdir(spool.incoming / "FREQ") == []
    with DuckDBWarehouse(warehouse_path) as warehouse:
        assert freq_rows(warehouse) == 8
