"""The synthetic IRIS feed: realistic shapes and cadences, correct settlement time, loads cleanly."""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import itertools
import re
import statistics
import threading
import time

import orjson
import pytest

from iris_pipeline import cli
from iris_pipeline.codec import decode_body
from iris_pipeline.loader import load_spool
from iris_pipeline.registry import Registry, load_registry
from iris_pipeline.simulate import (
    BM_DATASETS,
    BM_UNITS,
    EXTRA_FIELDS,
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
            assert set(r) <= {*dataset.column_names, *EXTRA_FIELDS.get(m.dataset, ())}, m.dataset
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
        for code, r in report.datasets.items():  # only the fields the registry does not declare (yet) are added
            extra = EXTRA_FIELDS.get(code, ())
            assert all(c.startswith("created") or c.split()[1] in extra for c in r.schema_changes), (code, r.schema_changes)


def test_messages_due_follows_each_cadence_without_repeats():
    sim = Simulator(seed=1, start=utc(2025, 6, 2, 10, 0))
    messages = []
    for minute in range(1, 61):
        messages += sim.messages_due(utc(2025, 6, 2, 10, 0) + dt.timedelta(minutes=minute) - dt.timedelta(seconds=1))
    counts = collections.Counter(m.dataset for m in messages)
    assert counts["FREQ"] == 30
    assert counts["FUELINST"] == 12
    assert counts["MID"] == 2
    assert counts["DISEBSP"] == 4  # each half hour: the period just ended, and yesterday's re-run
    assert counts["BOAV"] == 8  # each half hour: bid and offer, first run and next-day re-run
    assert counts["BOD"] > 30 * 60 * 0.5
    assert len({m.file_name for m in messages}) == len(messages)
    assert all(re.fullmatch(rf"{m.dataset}_20250602(10\d\d)_SIM1-\d{{7}}\.json", m.file_name) for m in messages)
    assert sim.messages_due(utc(2025, 6, 2, 10, 59, 59)) == []


def test_a_restarted_simulator_regenerates_the_same_messages():
    start = utc(2025, 6, 2, 10, 0)
    first = Simulator(seed=0, start=start).messages_due(start + dt.timedelta(minutes=20))
    again = Simulator(seed=0, start=start + dt.timedelta(minutes=10)).messages_due(start + dt.timedelta(minutes=30))
    overlap = {m.file_name: m for m in first} .keys() & {m.file_name for m in again}
    assert len(overlap) > 500
    by_name = {m.file_name: m.body for m in first}
    assert all(by_name[m.file_name] == m.body for m in again if m.file_name in overlap)
    other_seed = Simulator(seed=1, start=start).messages_due(start + dt.timedelta(minutes=2))
    assert not {m.file_name for m in first} & {m.file_name for m in other_seed}


def _spool_files(spool_dir) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in (spool_dir / "incoming").rglob("*") if p.is_file()}


# Version fields beyond the registry's: MID re-sends are told apart by their source file serial, BOALF
# amendments by their flag.
EXTRA_VERSION_FIELDS = {"MID": ("sourceFileSerialNumber",), "mibm_mid": ("sourceFileSerialNumber",),
                        "BOALF": ("amendmentFlag",)}
# Keys (with their version field) domain.md expects for datasets the registry may not key yet.
ANTICIPATED_KEYS = {
    "DISBSAD": ("settlementDate", "settlementPeriod", "id"),
    "NETBSAD": ("settlementDate", "settlementPeriod"),
    "QAS": ("settlementDate", "settlementPeriod", "bmUnit"),
    **{code: ("settlementDate", "settlementPeriod", "bmUnit", "bidOffer", "createdDateTime")
       for code in ("BOAV", "EBOCF", "DISPTAV")},
    "ISPSTACK": ("settlementDate", "settlementPeriod", "bidOffer", "sequenceNumber", "createdDateTime"),
}


def test_three_restarts_leave_no_key_with_two_values(tmp_path):
    """Like restarting `make dev` three times: each run backfills 15 minutes that overlap the previous
    run's output and stops part-way through a minute. All three spools load into one warehouse."""
    registry = load_registry()
    start = utc(2025, 1, 15, 1, 40)
    spools = [tmp_path / f"spool{i}" for i in range(3)]
    for i, spool_dir in enumerate(spools):
        written = run(spool_dir, now=start + i * dt.timedelta(minutes=7), backfill_minutes=15,
                      realtime=False, count=2500, seed=0)
        assert written == 2500
    files = [_spool_files(s) for s in spools]
    for a, b in ((0, 1), (1, 2), (0, 2)):
        common = files[a].keys() & files[b].keys()
        assert len(common) > 100, (a, b)
        assert all(files[a][name] == files[b][name] for name in common)  # same name, same bytes

    with DuckDBWarehouse(tmp_path / "warehouse.duckdb") as warehouse:
        reports = [load_spool(Spool(s), warehouse, registry=registry, workers=0) for s in spools]
        assert not any(r.failed or r.files_quarantined for r in reports)
        assert sum(r.datasets[c].files_already_loaded for r in reports[1:] for c in r.datasets) > 1000
        distinct = len(set().union(*files))
        assert warehouse.query("SELECT count(*) FROM iris_ingest_log")[0][0] == distinct
        checked = {d.code for d in registry if _conflicts(warehouse, d) == []}
        assert {"FREQ", "FUELINST", "FUELHH", "MID", "PN", "BOD", "BOALF", "DISEBSP", "MELS", "NETBSAD", "QAS",
                "DISBSAD", "BOAV", "ISPSTACK"} <= checked
        assert not [(d.code, c) for d in registry if (c := _conflicts(warehouse, d))]

        # The check can fail: a second reading for a stored FREQ timestamp is a conflict.
        (measured, frequency), = warehouse.query(
            'SELECT strftime("measurementTime", \'%Y-%m-%dT%H:%M:%SZ\'), frequency FROM bmrs_freq_iris LIMIT 1')
        fourth = Spool(tmp_path / "spool3")
        fourth.write_incoming("FREQ", "FREQ_conflict.json", orjson.dumps(
            [{"dataset": "FREQ", "measurementTime": measured, "frequency": frequency + 0.01}]), durable=False)
        assert load_spool(fourth, warehouse, registry=registry, workers=0).files_loaded == 1
        assert _conflicts(warehouse, registry["FREQ"])


def _conflicts(warehouse, dataset) -> list | None:
    """Keys of `dataset` (natural key plus version fields) stored with two different values; None when
    the dataset has no key to check."""
    if dataset.key_kind != "record" and dataset.natural_key:
        declared = (*dataset.natural_key, *dataset.version_columns)
    elif dataset.code in ANTICIPATED_KEYS:
        declared = ANTICIPATED_KEYS[dataset.code]
    else:
        return None
    stored = warehouse.table_columns(dataset.table_name)
    key = [*dict.fromkeys([*declared, *EXTRA_VERSION_FIELDS.get(dataset.code, ())])]
    values = [c for c in stored if c not in key and not c.startswith("_")]
    if not values or not set(key) <= set(stored):
        return None
    keys = ", ".join(f'"{c}"' for c in key)
    row = ", ".join(f'"{c}"' for c in values)
    return warehouse.query(f'SELECT {keys}, count(DISTINCT ({row}, 0)) AS n FROM "{dataset.table_name}" '
                           f"GROUP BY ALL HAVING n > 1 LIMIT 3")


# --- revisions -----------------------------------------------------------------------------------

def _records(sim: Simulator, code: str, t: dt.datetime) -> list[dict]:
    """The records of one publication, timestamps in one precision (each message picks its own)."""
    return [{k: v.replace(".0000000+00:00", "Z") if isinstance(v, str) else v for k, v in r.items()}
            for m in sim.messages_at(code, t) for r in decode_body(m.body)]


def test_disebsp_is_rerun_next_day_with_a_later_created_time():
    sim = Simulator(seed=0)
    first = _records(sim, "DISEBSP", utc(2025, 1, 15, 10, 1))
    rerun = _records(sim, "DISEBSP", utc(2025, 1, 16, 10, 1))
    (original,) = [r for r in first if r["settlementDate"] == "2025-01-15"]
    (again,) = [r for r in rerun if r["settlementDate"] == "2025-01-15"]
    assert original["settlementPeriod"] == again["settlementPeriod"] == 20
    assert _instant(again["createdDateTime"]) - _instant(original["createdDateTime"]) == dt.timedelta(days=1)
    assert again["systemSellPrice"] != original["systemSellPrice"]
    assert abs(again["systemSellPrice"] - original["systemSellPrice"]) < 5


def test_mid_resends_a_period_in_a_later_file():
    sim = Simulator(seed=0)
    resends = corrected = 0
    for half_hour in range(200):
        t = utc(2025, 1, 15, 0, 2) + half_hour * dt.timedelta(minutes=30)
        records = _records(sim, "MID", t)
        assert all(isinstance(r["sourceFileSerialNumber"], int) and _instant(r["sourceFileDateTime"]) == t
                   for r in records)
        periods = sorted({(r["settlementDate"], r["settlementPeriod"]) for r in records})
        if len(periods) == 2:
            resends += 1
            earlier = _records(sim, "MID", t - dt.timedelta(minutes=30))
            before = {r["dataProvider"]: r for r in earlier if (r["settlementDate"], r["settlementPeriod"]) == periods[0]}
            for r in records:
                if (r["settlementDate"], r["settlementPeriod"]) == periods[0]:
                    old = before[r["dataProvider"]]
                    assert r["sourceFileSerialNumber"] > old["sourceFileSerialNumber"]
                    assert r["sourceFileDateTime"] > old["sourceFileDateTime"]
                    corrected += r["price"] != old["price"]
    assert 30 < resends < 100 and corrected > 0


def test_remit_events_are_revised_under_the_same_mrid():
    sim = Simulator(seed=0)
    by_mrid = collections.defaultdict(list)
    for hour in range(48):
        for r in _records(sim, "REMIT", utc(2025, 1, 15, 0, 2) + hour * dt.timedelta(hours=1)):
            by_mrid[r["mrid"]].append(r)
    revised = {m: rs for m, rs in by_mrid.items() if len(rs) > 1}
    assert len(revised) > 5
    for rs in revised.values():
        rs.sort(key=lambda r: r["publishTime"])
        assert [r["revisionNumber"] for r in rs] == list(range(1, len(rs) + 1))
        assert len({r["assetId"] for r in rs}) == 1


def test_mels_redeclarations_overlap_earlier_declarations_with_a_higher_sequence():
    sim = Simulator(seed=0)
    declarations = collections.defaultdict(list)  # bmUnit -> [(sequence, time, from, to)]
    for minute in range(60):
        t = utc(2025, 1, 15, 10, 0) + minute * MINUTE_
        for m in sim.messages_at("MELS", t):
            records = decode_body(m.body)
            assert len({r["notificationSequence"] for r in records}) == 1
            r0 = records[0]
            assert r0["notificationSequence"] > 100_000_000 // 2
            declarations[r0["bmUnit"]].append((r0["notificationSequence"], r0["notificationTime"],
                                               _instant(records[0]["timeFrom"]), _instant(records[-1]["timeTo"])))
    unaligned = 0
    for decls in declarations.values():
        decls.sort()
        for (seq_a, time_a, from_a, to_a), (seq_b, time_b, from_b, to_b) in itertools.pairwise(decls):
            assert seq_b > seq_a
            if time_b > time_a and from_b < to_a and to_b > from_a and from_b > from_a:
                unaligned += from_b.minute % 30 != 0
    assert unaligned > 20


def test_settlement_runs_are_published_after_the_period_and_again_next_day():
    sim = Simulator(seed=0)
    for code in ("BOAV", "EBOCF", "DISPTAV", "ISPSTACK"):
        first = sim.messages_at(code, utc(2025, 1, 15, 10, 14))
        next_day = sim.messages_at(code, utc(2025, 1, 16, 10, 14))
        assert len(first) == len(next_day) == 4
        today = [r for m in first[:2] for r in decode_body(m.body)]
        rerun = [r for m in next_day[2:] for r in decode_body(m.body)]
        assert {(r["settlementDate"], r["settlementPeriod"]) for r in today} == {("2025-01-15", 20)}
        assert {(r["settlementDate"], r["settlementPeriod"]) for r in rerun} == {("2025-01-15", 20)}
        assert {r["createdDateTime"][:16] for r in rerun} == {"2025-01-16T10:14"}
        assert {r["bidOffer"] for r in today} == {"bid", "offer"}
        volume = "totalCashflow" if code == "EBOCF" else "volume" if code == "ISPSTACK" else "totalVolumeAccepted"
        if code != "EBOCF":
            assert all((r[volume] < 0) == (r["bidOffer"] == "bid") for r in today + rerun), code


def test_boalf_sometimes_amends_an_earlier_acceptance():
    sim = Simulator(seed=0)
    seen = {}
    amendments = 0
    for minute in range(120):
        for r in _records(sim, "BOALF", utc(2025, 1, 15, 10, 0) + minute * MINUTE_):
            key = (r["bmUnit"], r["acceptanceNumber"], r["timeFrom"])
            if r["amendmentFlag"] == "AMD":
                if minute >= 10:  # amendments follow within 10 minutes, so the original was seen first
                    assert seen[key]["amendmentFlag"] == "ORI"
                    assert seen[key]["acceptanceTime"] == r["acceptanceTime"]
                    amendments += 1
            else:
                assert key not in seen
            seen[key] = r
    assert amendments > 5


# --- dataset realism -----------------------------------------------------------------------------

MINUTE_ = dt.timedelta(minutes=1)


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
    steps = [abs(b - a) for a, b in zip(frequencies, frequencies[1:])]
    assert max(steps) < 0.05  # smooth, as real frequency is over 15 s


def test_mid_n2ex_is_almost_always_no_trades_and_apx_has_a_daily_shape():
    sim = Simulator(seed=3)
    n2ex_zero = 0
    apx = collections.defaultdict(list)
    for half_hour in range(48 * 7):
        t = utc(2025, 1, 13, 0, 2) + half_hour * dt.timedelta(minutes=30)
        (m,) = sim.messages_at("MID", t)
        records = [r for r in decode_body(m.body) if _instant(r["startTime"]) == t - dt.timedelta(minutes=32)]
        assert {r["dataProvider"] for r in records} == {"APXMIDP", "N2EXMIDP"}
        n2ex = next(r for r in records if r["dataProvider"] == "N2EXMIDP")
        n2ex_zero += n2ex["price"] == 0 and n2ex["volume"] == 0
        price = next(r for r in records if r["dataProvider"] == "APXMIDP")["price"]
        assert 0 < price < 300
        apx[_instant(records[0]["startTime"]).hour].append(price)
    assert n2ex_zero >= 0.9 * 48 * 7
    assert statistics.mean(apx[17]) > statistics.mean(apx[3]) + 20  # evening peak over the night


def test_fuelinst_has_twenty_fuel_types_of_plausible_mw():
    (m,) = Simulator(seed=4).messages_at("FUELINST", utc(2025, 6, 2, 10, 5))
    records = decode_body(m.body)
    fuels = {r["fuelType"]: r["generation"] for r in records}
    assert len(fuels) == 20 and {"CCGT", "WIND", "NUCLEAR", "INTFR", "INTGRNL"} <= set(fuels)
    assert 3800 <= fuels["NUCLEAR"] <= 5600 and all(isinstance(v, int) for v in fuels.values())
    assert {r["startTime"][:16] for r in records} == {"2025-06-02T10:00"}


def test_winter_nights_import_gigawatts_and_pumped_storage_generates_only_at_peaks():
    sim = Simulator(seed=0)
    for day in range(1, 29):
        night = sim.fuel_mix(utc(2025, 1, day, 2, 0))
        assert sum(mw for fuel, mw in night.items() if fuel.startswith("INT")) > 2500, day
        assert night["PS"] == 0
        demand = sim.national_demand(utc(2025, 1, day, 17, 30))
        assert 30000 < demand <= 45000
    peaks = [sim.fuel_mix(utc(2025, 1, day, 17, 30))["PS"] for day in range(1, 29)]
    assert min(peaks) > 0
    for hour in range(24):
        assert 20000 <= sim.national_demand(utc(2025, 7, 10, hour)) <= 45000


def test_pn_levels_are_continuous_across_period_boundaries():
    sim = Simulator(seed=0)
    by_unit = collections.defaultdict(dict)
    for minute in range(30):
        for r in _records(sim, "PN", utc(2025, 1, 15, 10, 0) + minute * MINUTE_):
            previous = by_unit[r["bmUnit"]].setdefault(r["timeFrom"], r)
            assert previous == r  # the same segment whichever message carries it
    for unit, segments in by_unit.items():
        ordered = sorted(segments.values(), key=lambda r: r["timeFrom"])
        for a, b in itertools.pairwise(ordered):
            if a["timeTo"] == b["timeFrom"]:
                assert a["levelTo"] == b["levelFrom"], (unit, a, b)


def test_values_are_plausible(tmp_path):
    registry = load_registry()
    sim = Simulator(registry, seed=0)
    instants = [utc(2025, 1, 15, 0, 14) + k * dt.timedelta(minutes=97) for k in range(15)]
    messages = [m for code in registry.codes() for t in instants for m in sim.messages_at(code, t)]
    capacity = {u.bm_unit: u for u in BM_UNITS}
    rows = collections.defaultdict(list)
    for m in messages:
        assert m.file_name.split("_")[-2].isdigit()
        rows[m.dataset] += decode_body(m.body)
    for r in rows["TEMP"]:
        assert 0 <= r["temperature"] <= 25
    assert all(0 <= r["lossOfLoadProbability"] <= 1 for r in rows["LOLPDM"])
    for code in ("NDF", "INDO", "ITSDO", "TSDF"):
        assert all(20000 <= r["demand"] <= 48000 for r in rows[code]), code
    for code in ("PN", "QPN", "MELS", "BOALF", "SEL", "BOD"):
        for r in rows[code]:
            unit = capacity[r["bmUnit"]]
            for field in ("levelFrom", "levelTo", "level"):
                if field in r:
                    assert abs(r[field]) <= unit.capacity, (code, r)
    for r in rows["QAS"]:
        assert abs(r["bmUnitApplicableBalancingServicesVolume"]) <= capacity[r["bmUnit"]].capacity
    for r in rows["REMIT"]:
        assert r["fuelType"] == capacity[r["assetId"]].remit_fuel
        assert r["availableCapacity"] <= r["normalCapacity"] == capacity[r["assetId"]].capacity
    for r in rows["BOD"]:
        assert (r["levelFrom"] < 0) == (r["pairId"] < 0)
        assert r["bid"] <= r["offer"]
    for code in ("MELS", "MILS"):
        assert all(50_000_000 < r["notificationSequence"] < 1_000_000_000 for r in rows[code])
    for r in rows["SYS_WARN"]:
        assert len(r["warningText"].split()) > 8
        with pytest.raises(ValueError):
            dt.datetime.fromisoformat(r["warningText"].replace("Z", "+00:00"))
    publish_times = [r[f] for rs in rows.values() for r in rs
                     for f in ("publishTime", "createdDateTime", "notificationTime", "acceptanceTime") if f in r]
    assert publish_times and all(_instant(t).second == 0 for t in publish_times)


def test_remit_has_nested_outage_profile():
    m = Simulator(seed=5).messages_at("REMIT", utc(2025, 6, 2, 10, 0))[0]
    (record,) = decode_body(m.body)
    profile = record["outageProfile"]
    assert profile and all(set(p) == {"startTime", "endTime", "capacity"} for p in profile)


def test_date_like_free_text_stays_a_string(tmp_path):
    """SYS_WARN text shaped exactly like a timestamp is stored as the string it is (codec, not simulator)."""
    date_like = "2024-01-01T00:00:00Z"
    (m,) = Simulator(seed=6).messages_at("SYS_WARN", utc(2025, 6, 2, 10, 0))
    records = decode_body(m.body) + [{"dataset": "SYS_WARN", "publishTime": "2025-06-02T10:00:00Z",
                                      "warningType": "IT SYSTEMS OUTAGE", "warningText": date_like}]
    spool = Spool(tmp_path / "spool")
    spool.write_incoming("SYS_WARN", m.file_name, orjson.dumps(records), durable=False)
    with DuckDBWarehouse(tmp_path / "warehouse.duckdb") as warehouse:
        report = load_spool(spool, warehouse)
        assert report.files_quarantined == 0
        assert warehouse.table_columns("bmrs_sys_warn_iris")["warningText"] == "STRING"
        stored = sorted(v for (v,) in warehouse.query('SELECT "warningText" FROM bmrs_sys_warn_iris'))
    assert stored == sorted(r["warningText"] for r in records)


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
    assert [(m.file_name, m.body) for m in mixed_backlog(50)] == [(m.file_name, m.body) for m in messages[:50]]


# --- writing into the spool ----------------------------------------------------------------------

def test_cli_count_writes_exactly_n_files(tmp_path):
    spool_dir = tmp_path / "spool"
    assert cli.main(["simulate", "--count", "25", "--spool-dir", str(spool_dir)]) == 0
    assert len(incoming_files(spool_dir)) == 25


def test_cli_spool_dir_defaults_to_env(tmp_path, monkeypatch):
    monkeypatch.setenv("IRIS_SPOOL_DIR", str(tmp_path / "env_spool"))
    assert cli.main(["simulate", "--count", "7"]) == 0
    assert len(incoming_files(tmp_path / "env_spool")) == 7


@pytest.mark.parametrize("args, option", [
    (["--count", "-5"], "--count"), (["--count", "0"], "--count"), (["--count", "many"], "--count"),
    (["--duration", "-1"], "--duration"), (["--duration", "0"], "--duration"), (["--speed", "0"], "--speed"),
    (["--speed", "-2"], "--speed"), (["--speed", "nan"], "--speed"), (["--backfill-minutes", "-15"], "--backfill-minutes"),
])
def test_cli_rejects_nonsense_with_one_line_and_exit_code_2(tmp_path, capsys, args, option):
    with pytest.raises(SystemExit) as exited:
        cli.main(["simulate", *args, "--spool-dir", str(tmp_path / "spool")])
    assert exited.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "error:" in lines[0] and f"argument {option}" in lines[0] and args[1] in lines[0]
    assert not (tmp_path / "spool").exists()


def test_cli_accepts_zero_backfill(tmp_path):
    assert cli.main(["simulate", "--count", "3", "--backfill-minutes", "0", "--spool-dir", str(tmp_path / "s")]) == 0
    assert len(incoming_files(tmp_path / "s")) == 3


def test_run_writes_backfill_then_stops_on_event(tmp_path):
    # Stopped once the backfill is on disk, however slow the machine: no race with a timer.
    now = utc(2025, 1, 15, 12, 0, 30)
    backfill = Simulator(seed=0, start=now - dt.timedelta(minutes=3)).messages_due(now)
    stop = threading.Event()
    result = []
    runner = threading.Thread(target=lambda: result.append(
        run(tmp_path / "spool", backfill_minutes=3, stop_event=stop, duration=120, now=now)))
    runner.start()
    deadline = time.monotonic() + 60
    while len(incoming_files(tmp_path / "spool")) < len(backfill) and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    runner.join(timeout=30)
    assert not runner.is_alive(), "the simulator did not stop on the event"
    files = incoming_files(tmp_path / "spool")
    assert result[0] == len(files) >= len(backfill) > 100  # three minutes of backfill
    assert {m.file_name for m in backfill} <= {f.name for f in files}
    assert "FREQ" in {f.parent.name for f in files}


def test_a_restart_on_the_same_spool_writes_only_what_is_new(tmp_path):
    """As `make dev` restarts: the first run's files are loaded and archived, then the simulator restarts
    with a backfill that covers them."""
    now = utc(2025, 1, 15, 12, 0)
    spool = Spool(tmp_path / "spool")
    first = run(spool, now=now, backfill_minutes=10, realtime=False, count=1000)
    files = _spool_files(tmp_path / "spool")
    assert first == len(files) == 1000
    with DuckDBWarehouse(tmp_path / "warehouse.duckdb") as warehouse:
        assert load_spool(spool, warehouse, workers=0).files_loaded == 1000
        assert not _spool_files(tmp_path / "spool")  # all archived
        # Restarted 2 minutes later: its 10-minute backfill is already archived, so only new messages follow.
        again = run(spool, now=now + dt.timedelta(minutes=2), backfill_minutes=10, realtime=False, count=300)
        new = _spool_files(tmp_path / "spool")
        assert again == len(new) == 300 and not new.keys() & files.keys()
        assert not any("+" in name for name in new)  # no content variants: nothing came back different
        assert load_spool(spool, warehouse, workers=0).files_loaded == 300
        assert warehouse.query("SELECT count(*) FROM iris_ingest_log")[0][0] == 1300


def test_run_with_count_and_no_realtime_is_fast_and_exact(tmp_path):
    assert run(tmp_path / "spool", count=2000, realtime=False) == 2000
    assert len(incoming_files(tmp_path / "spool")) == 2000


def test_event_driven_datasets_without_a_registry_cadence_still_publish():
    """The registry may give event-driven datasets no expected cadence: the simulator keeps its own."""
    registry = load_registry()
    quiet = {code: dataclasses.replace(registry[code], cadence_seconds=None) for code in ("SYS_WARN", "SEL")}
    sim = Simulator(Registry({**{d.code: d for d in registry}, **quiet}), seed=0, start=utc(2025, 1, 15, 10, 0))
    counts = collections.Counter(m.dataset for m in sim.messages_due(utc(2025, 1, 15, 11, 59)))
    assert counts["SYS_WARN"] == 2 and counts["SEL"] == 120


@pytest.mark.parametrize("code", ["NETBSAD", "QAS", "DISBSAD"])
def test_facts_without_a_publication_time_are_the_same_in_every_message(code):
    """A period's NETBSAD (a unit's QAS, an action's DISBSAD) sent again carries the same values."""
    sim = Simulator(seed=0)
    by_key = collections.defaultdict(set)
    records = 0
    for half_hour in range(24):
        for r in _records(sim, code, utc(2025, 1, 15, 0, 1) + half_hour * dt.timedelta(minutes=30)):
            by_key[tuple(r[k] for k in ANTICIPATED_KEYS[code])].add(orjson.dumps(r, option=orjson.OPT_SORT_KEYS))
            records += 1
    assert records > len(by_key) > 24  # facts are sent more than once
    assert all(len(values) == 1 for values in by_key.values())
