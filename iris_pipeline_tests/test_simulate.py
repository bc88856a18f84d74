"""The synthetic IRIS feed: realistic shapes and cadences, correct settlement time, loads cleanly."""

from __future__ import annotations

import collections
import datetime as dt
import re
import statistics
import threading
import time

import orjson
import pytest

from iris_pipeline import cli
from iris_pipeline.codec import decode_body
from iris_pipeline.loader import load_spool
from iris_pipeline.registry import load_registry
from iris_pipeline.simulate import (
    BM_DATASETS,
    DATE_LIKE_WARNING,
    Simulator,
    mixed_backlog,
    period_start,
    periods_in_day,
    run,
    settlement_period,
)
from iris_pipeline.spool import Spool
from iris_pipeline.warehouse.duckdb_warehouse import DuckDBWarehouse

UTC = dt.timezone.utc


def utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)


def incoming_files(spool_dir) -> list:
    return sorted(p for p in (spool_dir / "incoming").rglob("*") if p.is_file())


def write_all(spool: Spool, messages) -> None:
    for m in messages:
        assert spool.write_incoming(m.dataset, m.file_name, m.body, durable=False)


# --- settlement time -----------------------------------------------------------------------------

@pytest.mark.parametrize(
    "day, periods",
    [
        (dt.date(2025, 6, 15), 48),
        (dt.date(2025, 1, 15), 48),
        (dt.date(2025, 3, 30), 46),  # last Sunday of March: clocks go forward
        (dt.date(2025, 10, 26), 50),  # last Sunday of October: clocks go back
        (dt.date(2024, 3, 31), 46),
        (dt.date(2024, 10, 27), 50),
    ],
)
def test_periods_in_day(day, periods):
    assert periods_in_day(day) == periods
    starts = [period_start(day, p) for p in range(1, periods + 1)]
    assert all(b - a == dt.timedelta(minutes=30) for a, b in zip(starts, starts[1:]))
    assert [settlement_period(s) for s in starts] == [(day, p) for p in range(1, periods + 1)]
    assert settlement_period(starts[-1] + dt.timedelta(minutes=30)) == (day + dt.timedelta(days=1), 1)
    with pytest.raises(ValueError):
        period_start(day, periods + 1)


@pytest.mark.parametrize(
    "instant, expected",
    [
        (utc(2025, 6, 14, 23, 0), (dt.date(2025, 6, 15), 1)),  # BST: period 1 starts 23:00 UTC the day before
        (utc(2025, 6, 14, 22, 59, 59), (dt.date(2025, 6, 14), 48)),
        (utc(2025, 6, 15, 12, 0), (dt.date(2025, 6, 15), 27)),
        (utc(2025, 1, 15, 0, 0), (dt.date(2025, 1, 15), 1)),  # GMT
        (utc(2025, 1, 15, 23, 45), (dt.date(2025, 1, 15), 48)),
        (utc(2025, 3, 30, 0, 30), (dt.date(2025, 3, 30), 2)),
        (utc(2025, 3, 30, 22, 30), (dt.date(2025, 3, 30), 46)),
        (utc(2025, 3, 30, 23, 0), (dt.date(2025, 3, 31), 1)),
        (utc(2025, 10, 25, 23, 0), (dt.date(2025, 10, 26), 1)),
        (utc(2025, 10, 26, 1, 0), (dt.date(2025, 10, 26), 5)),  # second 01:00 local
        (utc(2025, 10, 26, 23, 30), (dt.date(2025, 10, 26), 50)),
    ],
)
def test_settlement_period(instant, expected):
    assert settlement_period(instant) == expected


def test_settlement_period_rejects_naive_datetimes():
    with pytest.raises(ValueError):
        settlement_period(dt.datetime(2025, 6, 15, 12, 0))


# --- every dataset loads -------------------------------------------------------------------------

def _instant(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def test_every_dataset_loads_with_zero_quarantine(tmp_path):
    registry = load_registry()
    sim = Simulator(registry, seed=7, start=utc(2025, 3, 29), plain_fraction=0.5)
    # Publications either side of both clock changes.
    instants = [utc(2025, 3, 30, 0, 50), utc(2025, 10, 26, 1, 20), utc(2025, 6, 15, 11, 31)]
    messages = [m for code in registry.codes() for t in instants for m in sim.messages_at(code, t)]
    assert {m.dataset for m in messages} == set(registry.codes())
    assert len({m.file_name for m in messages}) == len(messages)

    expected_rows: collections.Counter = collections.Counter()
    for m in messages:
        records = decode_body(m.body)
        assert records, m.file_name
        expected_rows[m.dataset] += len(records)
        dataset = registry[m.dataset]
        for r in records:
            assert set(r) <= set(dataset.column_names), m.dataset
            assert ("dataset" in r) == ("dataset" in dataset.column_names)
            if "dataset" in r:
                assert r["dataset"] == m.dataset
            instant = r.get("startTime") or r.get("timeFrom") or r.get("time")
            if dataset.has_settlement_date and "settlementPeriod" in r and instant:
                day, period = settlement_period(_instant(instant))
                assert (r["settlementDate"], r["settlementPeriod"]) == (day.isoformat(), period), m.dataset

    spool = Spool(tmp_path / "spool")
    write_all(spool, messages)
    with DuckDBWarehouse(tmp_path / "warehouse.duckdb") as warehouse:
        report = load_spool(spool, warehouse, registry=registry)
        reasons = {c: r.quarantine_reasons for c, r in report.datasets.items() if r.quarantine_reasons}
        assert report.files_quarantined == 0, reasons
        assert not report.failed
        assert report.files_loaded == len(messages)
        for dataset in registry:
            table_rows, = warehouse.query(f'SELECT count(*) FROM "{dataset.table_name}"')[0]
            assert table_rows == expected_rows[dataset.code], dataset.code
            stored = warehouse.table_columns(dataset.table_name)
            for column in dataset.columns:  # no drift: every value fitted its registry type
                if column.name in stored:
                    assert stored[column.name] == column.type, (dataset.code, column.name)
        assert all(c.startswith("created") for r in report.datasets.values() for c in r.schema_changes)


def test_messages_due_follows_each_cadence_without_repeats():
    sim = Simulator(seed=1, start=utc(2025, 6, 2, 10, 0))
    messages = []
    for minute in range(1, 61):
        messages += sim.messages_due(utc(2025, 6, 2, 10, 0) + dt.timedelta(minutes=minute) - dt.timedelta(seconds=1))
    counts = collections.Counter(m.dataset for m in messages)
    assert counts["FREQ"] == 30
    assert counts["FUELINST"] == 12
    assert counts["MID"] == counts["DISEBSP"] == 2
    assert counts["BOD"] > 30 * 60 * 0.5
    assert len({m.file_name for m in messages}) == len(messages)
    assert all(re.fullmatch(rf"{m.dataset}_20250602(10\d\d)_s1\w+-\d{{7}}\.json", m.file_name) for m in messages)
    assert sim.messages_due(utc(2025, 6, 2, 10, 59, 59)) == []


def test_restarted_simulators_do_not_reuse_file_names():
    start = utc(2025, 6, 2, 10, 0)
    first = Simulator(seed=0, start=start).messages_due(start + dt.timedelta(minutes=2))
    second = Simulator(seed=0, start=start).messages_due(start + dt.timedelta(minutes=2))
    assert not {m.file_name for m in first} & {m.file_name for m in second}


# --- dataset realism -----------------------------------------------------------------------------

def test_freq_messages_hold_eight_readings_fifteen_seconds_apart():
    sim = Simulator(seed=2, start=utc(2025, 6, 2, 10, 0))
    readings = []
    for m in sim.messages_due(utc(2025, 6, 2, 10, 20)):
        if m.dataset != "FREQ":
            continue
        records = decode_body(m.body)
        assert len(records) == 8
        times = [_instant(r["measurementTime"]) for r in records]
        assert all(b - a == dt.timedelta(seconds=15) for a, b in zip(times, times[1:]))
        readings += records
    assert len(readings) == 80
    times = [_instant(r["measurementTime"]) for r in readings]
    assert len(set(times)) == len(times)
    frequencies = [r["frequency"] for r in readings]
    assert all(49.8 <= f <= 50.2 for f in frequencies)
    assert len(set(frequencies)) > 10  # a walk, not a constant


def test_mid_has_both_providers_and_n2ex_sometimes_missing():
    sim = Simulator(seed=3)
    n2ex_zero = 0
    for hour in range(20):
        (m,) = sim.messages_at("MID", utc(2025, 6, 2, hour, 2))
        records = decode_body(m.body)
        assert {r["dataProvider"] for r in records} == {"APXMIDP", "N2EXMIDP"}
        assert len({(r["settlementDate"], r["settlementPeriod"]) for r in records}) == 1
        n2ex = next(r for r in records if r["dataProvider"] == "N2EXMIDP")
        n2ex_zero += n2ex["price"] == 0 and n2ex["volume"] == 0
        assert next(r for r in records if r["dataProvider"] == "APXMIDP")["price"] > 0
    assert 0 < n2ex_zero < 20


def test_fuelinst_has_twenty_fuel_types_of_plausible_mw():
    (m,) = Simulator(seed=4).messages_at("FUELINST", utc(2025, 6, 2, 10, 5))
    records = decode_body(m.body)
    fuels = {r["fuelType"]: r["generation"] for r in records}
    assert len(fuels) == 20 and {"CCGT", "WIND", "NUCLEAR", "INTFR", "INTGRNL"} <= set(fuels)
    assert 3800 <= fuels["NUCLEAR"] <= 5600 and all(isinstance(v, int) for v in fuels.values())
    assert {r["startTime"][:16] for r in records} == {"2025-06-02T10:00"}


def test_remit_has_nested_outage_profile():
    (m, _) = Simulator(seed=5).messages_at("REMIT", utc(2025, 6, 2, 10, 0))
    (record,) = decode_body(m.body)
    profile = record["outageProfile"]
    assert profile and all(set(p) == {"startTime", "endTime", "capacity"} for p in profile)


def test_sys_warn_date_like_free_text_stays_a_string(tmp_path):
    sim = Simulator(seed=6)
    messages = [m for hour in range(24) for m in sim.messages_at("SYS_WARN", utc(2025, 6, 2, hour, 0))]
    texts = sorted(r["warningText"] for m in messages for r in decode_body(m.body))
    assert DATE_LIKE_WARNING in texts
    spool = Spool(tmp_path / "spool")
    write_all(spool, messages)
    with DuckDBWarehouse(tmp_path / "warehouse.duckdb") as warehouse:
        report = load_spool(spool, warehouse)
        assert report.files_quarantined == 0
        assert warehouse.table_columns("bmrs_sys_warn_iris")["warningText"] == "STRING"
        stored = sorted(v for (v,) in warehouse.query('SELECT "warningText" FROM bmrs_sys_warn_iris'))
    assert stored == texts


def test_bodies_are_mostly_double_encoded_with_mixed_timestamp_precisions():
    messages = list(mixed_backlog(500, seed=8))
    double = sum(isinstance(orjson.loads(m.body), str) for m in messages)
    assert 0.8 * len(messages) < double < len(messages)
    text = b"".join(m.body for m in messages)
    assert re.search(rb'\d\d:\d\d:\d\dZ', text) and re.search(rb'\d\d:\d\d:\d\d\.0000000\+00:00', text)


def test_mixed_backlog_has_the_real_iris_mix():
    messages = list(mixed_backlog(1000))
    assert len(messages) == 1000
    counts = collections.Counter(m.dataset for m in messages)
    assert counts.most_common(1)[0][0] == "BOD"
    assert sum(counts[c] for c in BM_DATASETS) / 1000 > 0.6
    assert {"FREQ", "FUELINST", "MID", "DISEBSP"} <= set(counts)
    minutes = {m.file_name.split("_")[-2] for m in messages}
    assert 100 <= 1000 / len(minutes) <= 300  # messages per minute
    sizes = [len(m.body) for m in messages]
    assert 500 <= statistics.median(sizes) <= 5000
    assert max(sizes) > 5 * statistics.median(sizes)
    assert [m.file_name for m in mixed_backlog(50)] == [m.file_name for m in messages[:50]]


# --- writing into the spool ----------------------------------------------------------------------

def test_cli_count_writes_exactly_n_files(tmp_path):
    spool_dir = tmp_path / "spool"
    assert cli.main(["simulate", "--count", "25", "--spool-dir", str(spool_dir)]) == 0
    assert len(incoming_files(spool_dir)) == 25


def test_cli_spool_dir_defaults_to_env(tmp_path, monkeypatch):
    monkeypatch.setenv("IRIS_SPOOL_DIR", str(tmp_path / "env_spool"))
    assert cli.main(["simulate", "--count", "7"]) == 0
    assert len(incoming_files(tmp_path / "env_spool")) == 7


def test_run_writes_backfill_then_stops_on_event(tmp_path):
    # Stopped once the backfill is on disk, however slow the machine: no race with a timer.
    stop = threading.Event()
    result = []
    runner = threading.Thread(target=lambda: result.append(
        run(tmp_path / "spool", backfill_minutes=3, stop_event=stop, duration=120)))
    runner.start()
    deadline = time.monotonic() + 60
    while len(incoming_files(tmp_path / "spool")) <= 100 and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    runner.join(timeout=30)
    assert not runner.is_alive(), "the simulator did not stop on the event"
    files = incoming_files(tmp_path / "spool")
    assert result[0] == len(files) > 100  # three minutes of backfill
    assert "FREQ" in {f.parent.name for f in files}


def test_run_with_count_and_no_realtime_is_fast_and_exact(tmp_path):
    assert run(tmp_path / "spool", count=2000, realtime=False) == 2000
    assert len(incoming_files(tmp_path / "spool")) == 2000
