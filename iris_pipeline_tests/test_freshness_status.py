"""The ingest status file the health job reads instead of the warehouse."""

import datetime as dt

from iris_pipeline.freshness_status import read_status, status_path, update_status
from iris_pipeline.warehouse.base import TableFreshness

T = dt.datetime(2025, 1, 1, 12, 0, tzinfo=dt.timezone.utc)


def test_updates_merge_and_leave_no_temporary_files(tmp_path):
    assert read_status(tmp_path) is None
    update_status(tmp_path, {"FREQ": TableFreshness(T, T, 8)}, ["NEWCODE"])
    update_status(tmp_path, {"FUELINST": TableFreshness(T, None, 3)})
    status = read_status(tmp_path)
    assert status.freshness("FREQ") == TableFreshness(T, T, 8)
    assert status.freshness("FUELINST") == TableFreshness(T, None, 3)
    assert status.freshness("MID") == TableFreshness(None, None, 0)
    assert status.unregistered_codes == {"NEWCODE"}
    assert [p.name for p in tmp_path.iterdir()] == [status_path(tmp_path).name]


def test_a_damaged_file_reads_as_none_and_is_rewritten_whole(tmp_path):
    status_path(tmp_path).write_text('{"tables": {"FREQ": {"rows": "x"')
    assert read_status(tmp_path) is None
    update_status(tmp_path, {"FREQ": TableFreshness(T, T, 8)})
    assert read_status(tmp_path).freshness("FREQ").rows == 8
