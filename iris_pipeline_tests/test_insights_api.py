"""The Insights API client against a real local HTTP server that answers like the API."""

from __future__ import annotations

import datetime as dt
import json
import time

import pytest

from iris_pipeline.insights_api import (
    InsightsApiError,
    InsightsClient,
    Window,
    request_for,
    settlement_day_bounds,
    windows,
)
from iris_pipeline.registry import ApiEndpoint
from iris_pipeline_tests.fake_insights_api import BM_UNITS, FUEL_TYPES, PAIR_IDS, FakeInsightsApi, Fault

UTC = dt.timezone.utc
DAY = dt.datetime(2025, 1, 1, tzinfo=UTC)


def endpoint(path, *, stream=False, kind="query_range", from_param=None, to_param=None, path_param=None,
             window_filter="measurement_time", max_window_seconds=86400, extra_params=()) -> ApiEndpoint:
    return ApiEndpoint(path=path, stream=stream, window_kind=kind, from_param=from_param, to_param=to_param,
                       path_param=path_param, window_filter=window_filter, max_window_seconds=max_window_seconds,
                       max_window_source="test", versions="all", extra_params=extra_params)


FREQ = endpoint("/datasets/FREQ", from_param="measurementDateTimeFrom", to_param="measurementDateTimeTo")
FREQ_STREAM = endpoint("/datasets/FREQ/stream", stream=True, from_param="measurementDateTimeFrom",
                       to_param="measurementDateTimeTo", max_window_seconds=7 * 86400)
FUELINST = endpoint("/datasets/FUELINST/stream", stream=True, from_param="publishDateTimeFrom", to_param="publishDateTimeTo",
                    window_filter="publish_time", max_window_seconds=6 * 3600)
BOD = endpoint("/datasets/BOD", from_param="from", to_param="to", window_filter="time_from", max_window_seconds=3600)
DISEBSP = endpoint("/balancing/settlement/system-prices/{settlementDate}", kind="path_date", path_param="settlementDate",
                   window_filter="settlement_date")


@pytest.fixture
def api():
    with FakeInsightsApi() as server:
        yield server


def client_for(api, **kw) -> InsightsClient:
    # Small backoff so retry tests stay fast; high rate so only the tests about rate see it.
    defaults = dict(max_in_flight=4, requests_per_second=200, timeout=5, max_retries=3, backoff_factor=0.05,
                    backoff_jitter=0.05, backoff_max=0.5)
    return InsightsClient(api.base_url, **{**defaults, **kw})


def assert_windows_cover(pieces, start, end, max_seconds):
    assert pieces[0].start == start and pieces[-1].end == end
    for a, b in zip(pieces, pieces[1:]):
        assert a.end == b.start  # no gap, no overlap
    assert all(0 < (w.end - w.start).total_seconds() <= max_seconds for w in pieces)


def test_a_day_of_freq_is_5760_records_without_boundary_duplicates(api):
    # Two days through the 24-hour non-stream endpoint: the inclusive `to` returns the midnight record twice.
    with client_for(api) as client:
        records = client.fetch(FREQ, DAY, DAY + dt.timedelta(days=2))
    times = [r["measurementTime"] for r in records]
    assert len(records) == 2 * 5760
    assert len(set(times)) == len(times) and times == sorted(times)
    assert times[0] == "2025-01-01T00:00:00Z" and times[-1] == "2025-01-02T23:59:45Z"
    sent = api.requests_to("/bmrs/api/v1/datasets/FREQ")
    assert sorted(r.params["measurementDateTimeFrom"] for r in sent) == ["2025-01-01T00:00:00Z", "2025-01-02T00:00:00Z"]
    assert all(r.status == 200 for r in sent)


def test_freq_stream_returns_a_bare_array_and_one_request_for_a_day(api):
    with client_for(api) as client:
        records = client.fetch(FREQ_STREAM, DAY, DAY + dt.timedelta(days=1))
    assert len(records) == 5760
    [request] = api.log
    assert request.params == {"measurementDateTimeFrom": "2025-01-01T00:00:00Z", "measurementDateTimeTo": "2025-01-02T00:00:00Z"}


def test_a_day_of_fuelinst_in_six_hour_windows(api):
    with client_for(api) as client:
        records = client.fetch(FUELINST, DAY, DAY + dt.timedelta(days=1))
    assert len(records) == 288 * len(FUEL_TYPES)
    keys = [(r["publishTime"], r["fuelType"]) for r in records]
    assert len(set(keys)) == len(keys)
    assert min(r["publishTime"] for r in records) == "2025-01-01T00:00:00Z"
    assert max(r["publishTime"] for r in records) == "2025-01-01T23:55:00Z"
    assert len(api.log) == 4


def test_bod_day_in_one_hour_windows_never_exceeds_the_limit_and_covers_the_range(api):
    start, end = DAY + dt.timedelta(minutes=30), DAY + dt.timedelta(days=1, minutes=30)
    with client_for(api) as client:
        records = client.fetch(BOD, start, end)
    sent = sorted(api.log, key=lambda r: r.params["from"])
    assert len(sent) == 24 and all(r.status == 200 for r in sent)  # the server 400s any window over an hour
    spans = [Window(dt.datetime.fromisoformat(r.params["from"]), dt.datetime.fromisoformat(r.params["to"])) for r in sent]
    assert_windows_cover(spans, start, end, 3600)
    assert len(records) == 48 * len(BM_UNITS) * len(PAIR_IDS)
    keys = [(r["timeFrom"], r["bmUnit"], r["pairId"]) for r in records]
    assert len(set(keys)) == len(keys) and keys == sorted(keys, key=lambda k: k[0])  # window order
    assert keys[0][0] == "2025-01-01T00:30:00Z" and keys[-1][0] == "2025-01-02T00:00:00Z"


def test_a_window_over_the_limit_raises_naming_the_request_and_the_servers_message(api):
    too_wide = endpoint("/datasets/BOD", from_param="from", to_param="to", window_filter="time_from", max_window_seconds=7200)
    with client_for(api) as client, pytest.raises(InsightsApiError) as raised:
        client.fetch(too_wide, DAY, DAY + dt.timedelta(hours=2))
    message = str(raised.value)
    assert "GET /datasets/BOD?from=2025-01-01T00:00:00Z&to=2025-01-01T02:00:00Z" in message
    assert "HTTP 400" in message and "The date range must be at most 1 hour(s)." in message
    assert len(api.log) == 1  # a 400 is not retried


def test_windows_are_contiguous_bounded_and_exact():
    start = dt.datetime(2025, 1, 1, 0, 7, 13, tzinfo=UTC)
    for seconds in (1, 900, 3600, 7000, 86400):
        for length in (dt.timedelta(seconds=1), dt.timedelta(hours=2, minutes=30), dt.timedelta(days=3, seconds=5)):
            ep = endpoint("/datasets/X", from_param="from", to_param="to", max_window_seconds=seconds)
            pieces = windows(ep, start, start + length)
            assert_windows_cover(pieces, start, start + length, seconds)
            assert len(pieces) == -(-int(length.total_seconds()) // seconds)
    assert windows(FREQ, DAY, DAY) == []
    # Given in another zone: the same instants, in UTC.
    bst = dt.timezone(dt.timedelta(hours=1))
    assert windows(BOD, dt.datetime(2025, 6, 1, 1, tzinfo=bst), dt.datetime(2025, 6, 1, 2, tzinfo=bst)) == [
        Window(dt.datetime(2025, 6, 1, 0, tzinfo=UTC), dt.datetime(2025, 6, 1, 1, tzinfo=UTC))]
    with pytest.raises(ValueError, match="naive"):
        windows(FREQ, dt.datetime(2025, 1, 1), DAY)


def test_path_date_windows_are_london_settlement_days():
    start, _ = settlement_day_bounds(dt.date(2025, 3, 29))
    _, end = settlement_day_bounds(dt.date(2025, 3, 31))
    pieces = windows(DISEBSP, start, end)
    assert [request_for(DISEBSP, w)[0] for w in pieces] == [
        "/balancing/settlement/system-prices/2025-03-29",
        "/balancing/settlement/system-prices/2025-03-30",
        "/balancing/settlement/system-prices/2025-03-31",
    ]
    assert [(w.end - w.start) / dt.timedelta(hours=1) for w in pieces] == [24, 23, 24]
    assert all(request_for(DISEBSP, w)[1] == [] for w in pieces)
    # A range inside a day still asks for that whole day, once.
    assert len(windows(DISEBSP, start + dt.timedelta(hours=1), start + dt.timedelta(hours=2))) == 1


def test_settlement_date_query_windows_send_inclusive_dates():
    ep = endpoint("/datasets/X", from_param="settlementDateFrom", to_param="settlementDateTo", window_filter="settlement_date",
                  max_window_seconds=7 * 86400, extra_params=(("format", "json"),))
    pieces = windows(ep, *[settlement_day_bounds(dt.date(2025, 1, d))[i] for d, i in ((1, 0), (10, 1))])
    assert [request_for(ep, w)[1] for w in pieces] == [
        [("settlementDateFrom", "2025-01-01"), ("settlementDateTo", "2025-01-07"), ("format", "json")],
        [("settlementDateFrom", "2025-01-08"), ("settlementDateTo", "2025-01-10"), ("format", "json")],
    ]


def test_extra_params_are_sent_and_fill_other_path_placeholders():
    ep = endpoint("/balancing/settlement/acceptance/volumes/all/{bidOffer}/{settlementDate}", kind="path_date",
                  path_param="settlementDate", window_filter="settlement_date", extra_params=(("bidOffer", "offer"), ("format", "json")))
    [w] = windows(ep, *settlement_day_bounds(dt.date(2025, 5, 1)))
    assert request_for(ep, w) == ("/balancing/settlement/acceptance/volumes/all/offer/2025-05-01", [("format", "json")])


@pytest.mark.parametrize("day, periods", [("2025-03-30", 46), ("2025-10-26", 50), ("2025-06-15", 48)])
def test_system_prices_have_46_48_50_periods(api, day, periods):
    with client_for(api) as client:
        records = client.fetch(DISEBSP, *settlement_day_bounds(dt.date.fromisoformat(day)))
    assert [r["settlementPeriod"] for r in records] == list(range(1, periods + 1))
    assert {r["settlementDate"] for r in records} == {day}
    assert [r.path for r in api.log] == [f"/bmrs/api/v1/balancing/settlement/system-prices/{day}"]


def test_settlement_day_bounds():
    assert settlement_day_bounds(dt.date(2025, 3, 30)) == (dt.datetime(2025, 3, 30, 0, tzinfo=UTC), dt.datetime(2025, 3, 30, 23, tzinfo=UTC))
    assert settlement_day_bounds(dt.date(2025, 10, 26)) == (dt.datetime(2025, 10, 25, 23, tzinfo=UTC), dt.datetime(2025, 10, 27, 0, tzinfo=UTC))
    assert settlement_day_bounds(dt.date(2025, 7, 1)) == (dt.datetime(2025, 6, 30, 23, tzinfo=UTC), dt.datetime(2025, 7, 1, 23, tzinfo=UTC))
    assert settlement_day_bounds(dt.date(2025, 1, 15)) == (dt.datetime(2025, 1, 15, tzinfo=UTC), dt.datetime(2025, 1, 16, tzinfo=UTC))


def test_empty_days_give_no_records_and_no_error(api):
    api.empty_days = {dt.date(2025, 1, 1), dt.date(2025, 6, 15)}
    with client_for(api) as client:
        assert client.fetch(FREQ_STREAM, DAY, DAY + dt.timedelta(days=1)) == []
        assert client.fetch(DISEBSP, *settlement_day_bounds(dt.date(2025, 6, 15))) == []
        assert len(client.fetch(FREQ_STREAM, DAY, DAY + dt.timedelta(days=1, hours=1))) == 240  # the next day's first hour


def test_429_with_retry_after_waits_then_succeeds(api):
    api.faults.append(Fault(429, retry_after=1, body='{"message": "Too many requests"}'))
    started = time.monotonic()
    with client_for(api) as client:
        records = client.fetch(BOD, DAY, DAY + dt.timedelta(hours=1))
    assert len(records) == 2 * len(BM_UNITS) * len(PAIR_IDS)
    first, second = api.log
    assert (first.status, second.status) == (429, 200)
    assert second.started - first.finished >= 0.95  # Retry-After: 1 (monotonic clocks, a little slack)
    assert time.monotonic() - started < 5


def test_500_and_503_are_retried(api):
    api.faults.extend([Fault(500), Fault(503), Fault(502)])
    with client_for(api) as client:
        records = client.fetch(FREQ_STREAM, DAY, DAY + dt.timedelta(hours=1))
    assert len(records) == 240
    assert [r.status for r in api.log] == [500, 503, 502, 200]


def test_retries_are_bounded(api):
    api.always_status = 503
    started = time.monotonic()
    with client_for(api, max_retries=3) as client, pytest.raises(InsightsApiError) as raised:
        client.fetch(BOD, DAY, DAY + dt.timedelta(hours=1))
    assert time.monotonic() - started < 5
    assert len(api.log) == 4  # the first attempt and 3 retries
    assert "gave up after retries" in str(raised.value) and "GET /datasets/BOD?from=" in str(raised.value)


def test_a_failed_window_stops_the_fetch_without_asking_for_the_rest(api):
    api.always_status = 404
    with client_for(api, max_in_flight=2) as client, pytest.raises(InsightsApiError, match="HTTP 404"):
        client.fetch(BOD, DAY, DAY + dt.timedelta(hours=24))
    assert len(api.log) < 24


def test_max_in_flight_is_respected(api):
    api.latency = 0.1
    with client_for(api, max_in_flight=3) as client:
        records = client.fetch(BOD, DAY, DAY + dt.timedelta(hours=12))
    assert len(api.log) == 12 and len(records) == 24 * len(BM_UNITS) * len(PAIR_IDS)
    assert api.max_concurrent == 3  # concurrent, but never more than asked


def test_rate_limit_spaces_request_starts(api):
    with client_for(api, max_in_flight=4, requests_per_second=10) as client:
        client.fetch(BOD, DAY, DAY + dt.timedelta(hours=6))
    starts = sorted(r.started for r in api.log)
    assert len(starts) == 6 and starts[-1] - starts[0] >= 0.45  # 6 starts at least 0.1 s apart


def test_non_json_and_wrongly_shaped_answers_raise(api):
    api.faults.append(Fault(200, body="<html>maintenance</html>"))
    api.faults.append(Fault(200, body=json.dumps({"data": []})))
    with client_for(api) as client:
        with pytest.raises(InsightsApiError, match="not JSON.*maintenance"):
            client.fetch(FREQ_STREAM, DAY, DAY + dt.timedelta(hours=1))
        with pytest.raises(InsightsApiError, match="stream endpoint returned dict"):
            client.fetch(FREQ_STREAM, DAY, DAY + dt.timedelta(hours=1))


def test_unknown_filter_field_falls_back_to_exact_duplicate_removal(api):
    # A filter whose record field the client does not know: boundary records are caught as exact duplicates.
    unknown = endpoint("/datasets/FREQ", from_param="measurementDateTimeFrom", to_param="measurementDateTimeTo",
                       window_filter="event_time", max_window_seconds=3600)
    with client_for(api) as client:
        records = client.fetch(unknown, DAY, DAY + dt.timedelta(hours=3))
    times = [r["measurementTime"] for r in records]
    assert len(times) == len(set(times)) == 3 * 240 + 1  # only the final inclusive `to` record remains


def test_base_url_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("ELEXON_API_BASE_URL", "http://127.0.0.1:1/custom/")
    assert InsightsClient().base_url == "http://127.0.0.1:1/custom"
    monkeypatch.delenv("ELEXON_API_BASE_URL")
    assert InsightsClient().base_url == "https://data.elexon.co.uk/bmrs/api/v1"
