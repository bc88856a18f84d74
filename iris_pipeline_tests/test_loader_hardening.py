"""Issue 6 items on the loader: one bad file never blocks the others; one type rule however messages
are batched; oversized messages quarantined unread; a failed archive step still reports the commit."""

import os
import random
import subprocess
import sys

import orjson
import pytest

from iris_pipeline import codec
from iris_pipeline.loader import load_spool
from iris_pipeline.warehouse.duckdb_warehouse import DuckDBWarehouse
from iris_pipeline_tests.conftest import body

# Undeclared fields whose kinds drift between messages, a field first seen only as null, names that
# cannot be columns or differ only in case, a BOM, and "" in a declared timestamp field.
MESSAGES = [
    b"\xef\xbb\xbf" + orjson.dumps([{"fuelType": "WIND", "generation": 1, "extra": 5, "later": None}]),
    body([{"fuelType": "CCGT", "generation": 2, "extra": "n/a", "newField": 1}]),
    body([{"fuelType": "NUCLEAR", "generation": 3, "extra": {"x": 1}, "NewField": 2, "ünï": "kept"}]),
    body([{"fuelType": "COAL", "generation": 4, "later": 7, "extra": None, "startTime": ""}]),
    body([{"fuelType": "OCGT", "generation": 5.5, "later": 2.5, "flag": True}]),
    body([{"fuelType": "WIND", "generation": 6, "flag": "yes", "startTime": "2025-01-01T00:05:00Z"}]),
]


def _snapshot(path):
    with DuckDBWarehouse(path) as wh:
        columns = dict(sorted((k, v) for k, v in wh.table_columns("bmrs_fuelinst_iris").items() if k != "_ingested_at"))
        names = ", ".join(f'"{c}"::VARCHAR' for c in columns)
        rows = wh.query(f"SELECT {names} FROM bmrs_fuelinst_iris ORDER BY _source_file, _record_index")
    return columns, rows


def _write(spool, indexes):
    for i in indexes:
        spool.write_incoming("FUELINST", f"FUELINST_{i:02d}.json", MESSAGES[i])


@pytest.mark.parametrize("seed", range(3))
def test_the_outcome_does_not_depend_on_how_messages_were_batched(tmp_path, spool, seed):
    order = list(range(len(MESSAGES)))
    # All at once, in one chunk.
    _write(spool, order)
    with DuckDBWarehouse(tmp_path / "together.duckdb") as wh:
        report = load_spool(spool, wh, datasets=["FUELINST"])
    assert report.failed == {} and report.files_quarantined == 0, report.summary()
    together = _snapshot(tmp_path / "together.duckdb")

    # One message per run, and random chunkings with worker processes, into fresh warehouses.
    from iris_pipeline.spool import Spool

    rng = random.Random(seed)
    one_by_one = Spool(tmp_path / f"spool_one_{seed}")
    with DuckDBWarehouse(tmp_path / "one.duckdb") as wh:
        for i in order:
            _write(one_by_one, [i])
            report = load_spool(one_by_one, wh, datasets=["FUELINST"])
            assert report.failed == {} and report.files_quarantined == 0, report.summary()
    assert _snapshot(tmp_path / "one.duckdb") == together

    chunked = Spool(tmp_path / f"spool_chunked_{seed}")
    _write(chunked, order)
    with DuckDBWarehouse(tmp_path / "chunked.duckdb") as wh:
        report = load_spool(chunked, wh, datasets=["FUELINST"], chunk_files=rng.randint(1, 3), workers=2, parallel_min_files=1)
        assert report.failed == {} and report.files_quarantined == 0, report.summary()
    assert _snapshot(tmp_path / "chunked.duckdb") == together

    columns, rows = together
    assert columns["extra"] == "JSON" and columns["later"] == "FLOAT64" and columns["flag"] == "JSON"
    assert columns[codec.UNMAPPED_COLUMN] == "JSON" and "NewField" not in columns
    unmapped = [orjson.loads(r[list(columns).index(codec.UNMAPPED_COLUMN)]) for r in rows if r[list(columns).index(codec.UNMAPPED_COLUMN)]]
    assert unmapped == [{"NewField": 2, "ünï": "kept"}]


def test_case_variant_new_fields_in_one_chunk_do_not_block_the_dataset(spool, warehouse):
    spool.write_incoming("NEWCODE", "a.json", body([{"newField": 1}]))
    spool.write_incoming("NEWCODE", "b.json", body([{"NewField": 2}]))
    spool.write_incoming("NEWCODE", "c.json", body([{"other": 3}]))
    report = load_spool(spool, warehouse)
    assert report.failed == {} and report.files_loaded == 3 and report.files_quarantined == 0


def test_an_unreadable_file_is_quarantined_and_the_rest_load():
    """Root reads every file whatever its mode, so the loader runs as `nobody` here (a real
    PermissionError from the kernel, no mock), in a folder outside pytest's root-only tmp."""
    if os.geteuid() != 0:
        pytest.skip("needs root to run the loader as another user")
    import pwd
    import shutil
    import tempfile

    from iris_pipeline.spool import Spool

    nobody = pwd.getpwnam("nobody")
    base = tempfile.mkdtemp(prefix="iris-unreadable-")
    try:
        spool = Spool(os.path.join(base, "spool"))
        for i in range(5):
            spool.write_incoming("FREQ", f"FREQ_{i}.json", body([{"measurementTime": f"2025-01-01T00:00:0{i}Z", "frequency": 50.0}]))
        for root, dirs, files in os.walk(base):
            for name in dirs + files:
                os.chown(os.path.join(root, name), nobody.pw_uid, nobody.pw_gid)
        os.chown(base, nobody.pw_uid, nobody.pw_gid)
        secret = spool.incoming / "FREQ" / "FREQ_2.json"
        os.chown(secret, 0, 0)
        os.chmod(secret, 0o600)
        script = (
            "import os, sys, datetime, logging;"  # imported first: the interpreter's files may be root's alone
            "from iris_pipeline.loader import load_spool; from iris_pipeline.spool import Spool;"
            "from iris_pipeline.warehouse.duckdb_warehouse import DuckDBWarehouse;"
            "from iris_pipeline.registry import load_registry; import importlib.readers; reg = load_registry();"
            "os.setgid(%d); os.setuid(%d);"
            "wh = DuckDBWarehouse(sys.argv[2]); r = load_spool(Spool(sys.argv[1]), wh, datasets=['FREQ'], registry=reg);"
            "wh.close();"
            "print(r.summary()); sys.exit(1 if r.failed else 0)"
        ) % (nobody.pw_gid, nobody.pw_uid)
        warehouse = os.path.join(base, "wh.duckdb")
        proc = subprocess.run([sys.executable, "-c", script, str(spool.root), warehouse], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        with DuckDBWarehouse(warehouse) as wh:
            assert wh.query("SELECT count(*) FROM bmrs_freq_iris") == [(4,)]
        error = (spool.quarantine / "FREQ" / "FREQ_2.json.error").read_text()
        assert "cannot read the file" in error and "Permission denied" in error
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_an_io_error_on_one_file_is_quarantined_and_the_rest_load(spool, warehouse, monkeypatch):
    """EIO needs failing hardware, which cannot be had here: the read of one file is made to raise it."""
    import errno

    from iris_pipeline import chunk

    for i in range(4):
        spool.write_incoming("FREQ", f"FREQ_{i}.json", body([{"measurementTime": f"2025-01-01T00:00:0{i}Z", "frequency": 50.0}]))
    real_read = chunk.read_file

    def failing_read(f):
        if f.name == "FREQ_1.json":
            raise OSError(errno.EIO, "Input/output error")
        return real_read(f)

    monkeypatch.setattr(chunk, "read_file", failing_read)
    report = load_spool(spool, warehouse)
    assert report.failed == {} and report.files_loaded == 3 and report.files_quarantined == 1
    assert "Input/output error" in report.datasets["FREQ"].quarantine_reasons["FREQ_1.json"]
    assert warehouse.query("SELECT count(*) FROM bmrs_freq_iris") == [(3,)]


def test_a_message_above_the_size_limit_is_quarantined_unread(spool, warehouse):
    spool.write_incoming("FREQ", "big.json", body([{"measurementTime": "2025-01-01T00:00:00Z", "frequency": 50.0, "pad": "x" * 5000}]))
    spool.write_incoming("FREQ", "small.json", body([{"measurementTime": "2025-01-01T00:00:01Z", "frequency": 50.0}]))
    report = load_spool(spool, warehouse, max_message_bytes=4096)
    assert report.files_loaded == 1 and report.files_quarantined == 1
    assert "IRIS_MAX_MESSAGE_BYTES=4,096" in (spool.quarantine / "FREQ" / "big.json.error").read_text()


def test_the_size_limit_is_read_from_the_environment():
    from iris_pipeline.config import Settings

    assert Settings.from_env({}).max_message_bytes == 64 * 1024 * 1024
    assert Settings.from_env({"IRIS_MAX_MESSAGE_BYTES": "1000"}).max_message_bytes == 1000
    with pytest.raises(ValueError, match="IRIS_MAX_MESSAGE_BYTES"):
        Settings.from_env({"IRIS_MAX_MESSAGE_BYTES": "-1"})


def test_a_failed_archive_step_still_reports_what_committed(spool, warehouse, monkeypatch):
    from iris_pipeline import loader

    for i in range(3):
        spool.write_incoming("FREQ", f"FREQ_{i}.json", body([{"measurementTime": f"2025-01-01T00:00:0{i}Z", "frequency": 50.0}]))

    def broken_archive(root, files):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(loader, "_archive", broken_archive)
    report = load_spool(spool, warehouse)
    assert report.datasets["FREQ"].files_loaded == 3 and report.failed == {}
    assert "No space left" in report.datasets["FREQ"].archive_error
    monkeypatch.undo()
    again = load_spool(spool, warehouse)  # the ledger knows them: archived now, not loaded twice
    assert again.datasets["FREQ"].files_already_loaded == 3
    assert warehouse.query("SELECT count(*) FROM bmrs_freq_iris") == [(3,)]
