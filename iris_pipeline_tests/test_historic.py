"""Historic days into `bmrs_<code>` (core): day placement in Europe/London, atomic replacement, empty
days. The fetcher here is a function returning records for the asked window, as the API would; the
HTTP side (windows, retries, limits) is tested against a local server in test_insights_api.py."""

import dataclasses
import datetime as dt

import pytest

from iris_pipeline.historic import day_bounds, load_days, split_days
from iris_pipeline.insights_api import settlement_date_of
from iris_pipeline.registry import ApiEndpoint, load_registry
from iris_pipeline.warehouse.duckdb_warehouse import DuckDBWarehouse

UTC = dt.timezone.utc


def _with_api(code, path):
    endpoint = ApiEndpoint(path=path, stream=True, window_kind="query_range", from_param="from", to_param="to",
                           path_param=None, window_filter="measurement_time", max_window_seconds=86400,
                           max_window_source="test", versions="all")
    return dataclasses.replace(load_registry()[code], api=endpoint)


def freq_api(endpoint, start, end):
    """FREQ as the API serves it: a reading every 15 s, and one stray just outside the window."""
    out, t = [], start
    while t < end:
        out.append({"dataset": "FREQ", "measurementTime": t.strftime("%Y-%m-%dT%H:%M:%SZ"), "frequency": 50.0})
        t += dt.timedelta(seconds=15)
    out.append({"dataset": "FREQ", "measurementTime": end.strftime("%Y-%m-%dT%H:%M:%SZ"), "frequency": 49.9})
    return out


def disebsp_api(endpoint, start, end):
    """Settlement periods of every London day in the window (46, 48 or 50), as path-date requests give."""
    out, t = [], start
    while t < end:
        day = settlement_date_of(t)
        day_start = day_bounds(day)[0]
        period = int((t - day_start).total_seconds() // 1800) + 1
        out.append({"settlementDate": day.isoformat(), "settlementPeriod": period,
                    "startTime": t.strftime("%Y-%m-%dT%H:%M:%SZ"), "systemSellPrice": 80.0 + period})
        t += dt.timedelta(minutes=30)
    return out


@pytest.fixture
def wh(tmp_path):
    with DuckDBWarehouse(tmp_path / "w.duckdb") as w:
        yield w


def test_day_bounds_follow_the_clocks():
    assert [end - start for start, end in map(day_bounds, (dt.date(2025, 3, 30), dt.date(2025, 10, 26), dt.date(2025, 6, 1)))] == [
        dt.timedelta(hours=23), dt.timedelta(hours=25), dt.timedelta(hours=24)]
    assert day_bounds(dt.date(2025, 6, 1))[0] == dt.datetime(2025, 5, 31, 23, 0, tzinfo=UTC)


def test_a_timestamp_keyed_day_is_placed_by_london_time_and_replaced_not_doubled(wh):
    freq = _with_api("FREQ", "/datasets/FREQ/stream")
    for _ in range(2):
        loaded = load_days(wh, freq, dt.date(2025, 3, 30), dt.date(2025, 3, 31), freq_api)
    assert loaded.rows_by_day == {dt.date(2025, 3, 30): 23 * 240, dt.date(2025, 3, 31): 24 * 240}
    assert loaded.records_outside == 1
    assert wh.query("SELECT count(*), count(DISTINCT measurementTime) FROM bmrs_freq") == [(47 * 240, 47 * 240)]


def test_settlement_days_have_46_48_and_50_periods(wh):
    disebsp = _with_api("DISEBSP", "/balancing/settlement/system-prices/{settlementDate}")
    loaded = load_days(wh, disebsp, dt.date(2025, 10, 25), dt.date(2025, 10, 27), disebsp_api)
    assert loaded.rows_by_day == {dt.date(2025, 10, 25): 48, dt.date(2025, 10, 26): 50, dt.date(2025, 10, 27): 48}
    load_days(wh, disebsp, dt.date(2025, 3, 30), dt.date(2025, 3, 30), disebsp_api)
    assert wh.query("SELECT settlementDate, max(settlementPeriod) FROM bmrs_disebsp GROUP BY 1 ORDER BY 1") == [
        (dt.date(2025, 3, 30), 46), (dt.date(2025, 10, 25), 48), (dt.date(2025, 10, 26), 50), (dt.date(2025, 10, 27), 48)]


def test_a_day_with_no_data_is_an_empty_day_that_replaces_what_was_there(wh):
    freq = _with_api("FREQ", "/datasets/FREQ/stream")
    load_days(wh, freq, dt.date(2025, 6, 1), dt.date(2025, 6, 1), freq_api)
    loaded = load_days(wh, freq, dt.date(2025, 6, 1), dt.date(2025, 6, 1), lambda *_: [])
    assert loaded.rows_by_day == {dt.date(2025, 6, 1): 0}
    assert wh.query("SELECT count(*) FROM bmrs_freq") == [(0,)]


def test_a_dataset_without_an_endpoint_is_refused():
    with pytest.raises(ValueError, match="no Insights API endpoint"):
        load_days(None, dataclasses.replace(load_registry()["FREQ"], api=None), dt.date(2025, 1, 1), dt.date(2025, 1, 1), freq_api)


def test_split_days():
    assert split_days(dt.date(2025, 1, 30), dt.date(2025, 2, 3), 2) == [
        (dt.date(2025, 1, 30), dt.date(2025, 1, 31)), (dt.date(2025, 2, 1), dt.date(2025, 2, 2)),
        (dt.date(2025, 2, 3), dt.date(2025, 2, 3))]
