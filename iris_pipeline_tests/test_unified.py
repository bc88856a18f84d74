"""The unified layer on both backends (a DuckDB file; the BigQuery emulator): history backfilled for
some days, then IRIS for overlapping days, then one timeline with neither a gap nor a double at the
seam, the registry's "latest" rule deciding between versions and sources, the dedup tables and the
quality findings that pass and fail when they should."""

import datetime as dt

import pytest

from iris_pipeline import quality, unified
from iris_pipeline.insights_api import settlement_day_bounds
from iris_pipeline.registry import load_registry
from iris_pipeline_tests.timeline import iso, load_history, load_iris

UTC = dt.timezone.utc
REGISTRY = load_registry()
FIVE_MINUTES = dt.timedelta(minutes=5)
# Saturday, the Sunday clocks go back (50 periods), Monday
D1, D2, D3 = dt.date(2025, 10, 25), dt.date(2025, 10, 26), dt.date(2025, 10, 27)
FUELS = ("CCGT", "WIND")


def settlement_period(t: dt.datetime) -> tuple[str, int]:
    from iris_pipeline.insights_api import settlement_date_of

    day = settlement_date_of(t)
    return day.isoformat(), int((t - settlement_day_bounds(day)[0]) / dt.timedelta(minutes=30)) + 1


def fuelinst(t: dt.datetime, fuel: str, generation: int, published: dt.datetime | None = None) -> dict:
    day, period = settlement_period(t)
    return {"dataset": "FUELINST", "publishTime": iso(published or t + FIVE_MINUTES), "startTime": iso(t),
            "settlementDate": day, "settlementPeriod": period, "fuelType": fuel, "generation": generation}


def every_five_minutes(start: dt.datetime, end: dt.datetime):
    t = start
    while t < end:
        yield t
        t += FIVE_MINUTES


def rows(wh, sql_body, *columns):
    q = wh.quote
    return wh.query(f"SELECT {', '.join(q(c) for c in columns)} {sql_body}")


def test_fuelinst_history_then_overlapping_iris_is_one_timeline(any_warehouse):
    wh, ds = any_warehouse, REGISTRY["FUELINST"]
    start, seam_start, end = settlement_day_bounds(D1)[0], dt.datetime(2025, 10, 26, 12, 0, tzinfo=UTC), settlement_day_bounds(D3)[1]
    history_end = settlement_day_bounds(D2)[1]
    missing = settlement_day_bounds(D1)[0] + dt.timedelta(hours=9, minutes=30)  # D1 period 20: nobody has it yet
    revised_by_iris = dt.datetime(2025, 10, 26, 15, 0, tzinfo=UTC)
    revised_by_history = dt.datetime(2025, 10, 26, 16, 0, tzinfo=UTC)

    history = [fuelinst(t, f, 1000) for t in every_five_minutes(start, history_end) for f in FUELS
               if not missing <= t < missing + dt.timedelta(minutes=30)]
    for record in history:  # a later publication the API has and IRIS never sent
        if record["startTime"] == iso(revised_by_history):
            record.update(publishTime=iso(revised_by_history + dt.timedelta(minutes=20)), generation=1111)
    load_history(wh, ds, D1, D2, history, fetched_at=dt.datetime(2025, 10, 27, 6, 0, tzinfo=UTC))
    files = {}
    for t in every_five_minutes(seam_start, end):
        published = t + FIVE_MINUTES
        files[f"FUELINST_{published:%Y%m%d%H%M}_x.json"] = [fuelinst(t, f, 2000) for f in FUELS]
    files["FUELINST_202510261530_resent.json"] = [  # a revision published later than the first copy
        fuelinst(revised_by_iris, f, 2222, published=dt.datetime(2025, 10, 26, 15, 30, tzinfo=UTC)) for f in FUELS]
    load_iris(wh, ds, files, ingested_at=dt.datetime(2025, 10, 28, 0, 0, tzinfo=UTC))

    view = unified.create_unified_view(wh, ds)
    expected = len(list(every_five_minutes(start, end))) - 6  # minus the missing half hour
    ref = wh.table_ref(view)
    (count,), = wh.query(f"SELECT COUNT(*) FROM {ref}")
    assert count == expected * len(FUELS)  # with no duplicate key below: no double at the seam, and no gap
    assert quality.duplicate_keys(wh, view, ds, ["startTime", "fuelType"]).passed
    # the raw IRIS table keeps both versions of the revised reading: a finding that fails there
    raw = quality.duplicate_keys(wh, ds.table_name, ds, ["startTime", "fuelType"])
    assert not raw.passed and raw.metadata["duplicate_keys"] == len(FUELS)

    def reading(t):
        return rows(wh, f"FROM {ref} WHERE {wh.quote('startTime')} = TIMESTAMP '{t.isoformat()}'"
                        f" AND {wh.quote('fuelType')} = 'WIND'", "generation", "source")[0]

    assert reading(revised_by_iris) == (2222, "IRIS")  # the later publishTime wins
    assert reading(revised_by_history) == (1111, "HISTORIC")
    assert reading(start)[1] == "HISTORIC" and reading(end - FIVE_MINUTES)[1] == "IRIS"
    # same version in both sources: the later observation wins (the API was fetched after IRIS sent it)
    assert reading(dt.datetime(2025, 10, 26, 13, 0, tzinfo=UTC)) == (1000, "HISTORIC")

    # the dedup table, replaced day by day, and its completeness finding
    dedup = unified.dedup_datasets(REGISTRY, ("FUELINST",))[0]
    assert unified.replace_dedup_days(wh, dedup, D1, D3) == expected * len(FUELS)
    assert unified.replace_dedup_days(wh, dedup, D2, D2) == unified.replace_dedup_days(wh, dedup, D2, D2)
    table = unified.dedup_name(dedup)
    (total,), = wh.query(f"SELECT COUNT(*) FROM {wh.table_ref(table)}")
    assert total == expected * len(FUELS)  # re-running a day never doubles it
    assert quality.duplicate_keys(wh, table, dedup, ["startTime", "fuelType"]).passed
    gaps = quality.settlement_day_gaps(wh, table)
    assert not gaps.passed and gaps.metadata["first_bad_days"] == ["2025-10-25: 47 of 48 periods"]
    periods = wh.query(f"SELECT {wh.quote('settlementDate')}, COUNT(DISTINCT {wh.quote('settlementPeriod')})"
                       f" FROM {wh.table_ref(table)} GROUP BY 1 ORDER BY 1")
    assert periods == [(D1, 47), (D2, 50), (D3, 48)]  # the clock-change Sunday has 50

    # the missing half hour is backfilled: the day is whole again
    load_history(wh, ds, D1, D1, [fuelinst(t, f, 1000) for t in every_five_minutes(start, settlement_day_bounds(D1)[1])
                                  for f in FUELS], fetched_at=dt.datetime(2025, 10, 28, 6, 0, tzinfo=UTC))
    unified.replace_dedup_days(wh, dedup, D1, D1)
    assert quality.settlement_day_gaps(wh, table).passed


def mid(day: dt.date, period: int, provider: str, price: float, volume: float, **extra) -> dict:
    start = settlement_day_bounds(day)[0] + dt.timedelta(minutes=30 * (period - 1))
    return {"dataset": "MID", "startTime": iso(start), "dataProvider": provider, "settlementDate": day.isoformat(),
            "settlementPeriod": period, "price": price, "volume": volume, **extra}


def test_mid_precedence_and_missing_prices(any_warehouse):
    wh, ds = any_warehouse, REGISTRY["MID"]
    day = dt.date(2025, 6, 1)
    history = [mid(day, p, "APXMIDP", 50.0 + p, 100.0) for p in range(1, 49)] + [
        mid(day, p, "N2EXMIDP", 0.0, 0.0) for p in range(1, 49)]
    load_history(wh, ds, day, day, history, fetched_at=dt.datetime(2025, 6, 2, 6, 0, tzinfo=UTC))
    load_iris(wh, ds, {
        # published before the API was read: the API's copy is newer
        "MID_202506011005_a.json": [mid(day, 20, "APXMIDP", 1.0, 100.0)],
        # re-sent after the API was read, with a corrected price
        "MID_202506020900_b.json": [mid(day, 21, "APXMIDP", 99.0, 100.0,
                                        sourceFileDateTime="2025-06-02T08:59:00Z", sourceFileSerialNumber=7)],
        # two copies within one minute: the source file's serial number orders them
        "MID_202506020901_c.json": [mid(day, 22, "APXMIDP", 80.0, 100.0,
                                        sourceFileDateTime="2025-06-02T09:00:00Z", sourceFileSerialNumber=9)],
        "MID_202506020901_d.json": [mid(day, 22, "APXMIDP", 81.0, 100.0,
                                        sourceFileDateTime="2025-06-02T09:00:00Z", sourceFileSerialNumber=8)],
    }, ingested_at=dt.datetime(2025, 6, 2, 9, 5, tzinfo=UTC))
    view = unified.create_unified_view(wh, ds)

    def price(period, provider="APXMIDP"):
        return rows(wh, f"FROM {wh.table_ref(view)} WHERE {wh.quote('settlementPeriod')} = {period}"
                        f" AND {wh.quote('dataProvider')} = '{provider}'", "price", "source")

    assert price(20) == [(70.0, "HISTORIC")]
    assert price(21) == [(99.0, "IRIS")]
    assert price(22) == [(80.0, "IRIS")]
    assert quality.duplicate_keys(wh, view, ds, list(ds.natural_key)).passed

    unified.replace_dedup_days(wh, ds, day, day)
    table = unified.dedup_name(ds)
    flags = wh.query(f"SELECT {wh.quote('dataProvider')}, {wh.quote('missingPrice')}, COUNT(*) FROM {wh.table_ref(table)}"
                     " GROUP BY 1, 2 ORDER BY 1, 2")
    assert flags == [("APXMIDP", False, 48), ("N2EXMIDP", True, 48)]  # flagged, not deleted
    assert quality.settlement_day_gaps(wh, table, series_column="dataProvider").passed


def test_settlement_runs_are_all_kept_and_the_latest_view_has_the_last(any_warehouse):
    wh, ds = any_warehouse, REGISTRY["DISEBSP"]
    day = dt.date(2025, 6, 1)
    first_run, second_run, rerun = (dt.datetime(2025, 6, 1, 23, 0, tzinfo=UTC), dt.datetime(2025, 6, 2, 5, 0, tzinfo=UTC),
                                    dt.datetime(2025, 6, 2, 18, 0, tzinfo=UTC))

    def price(period, created, sell):
        start = settlement_day_bounds(day)[0] + dt.timedelta(minutes=30 * (period - 1))
        return {"settlementDate": day.isoformat(), "settlementPeriod": period, "startTime": iso(start),
                "createdDateTime": iso(created), "systemSellPrice": sell, "systemBuyPrice": sell}

    load_history(wh, ds, day, day, [price(p, second_run, 60.0) for p in range(1, 49)],
                 fetched_at=dt.datetime(2025, 6, 2, 6, 0, tzinfo=UTC))
    load_iris(wh, ds, {
        "DISEBSP_202506012300_a.json": [price(p, first_run, 50.0) for p in range(1, 49)],
        "DISEBSP_202506020500_b.json": [price(p, second_run, 60.0) for p in range(1, 49)],
        "DISEBSP_202506021800_c.json": [price(5, rerun, 70.0)],
    }, ingested_at=dt.datetime(2025, 6, 2, 18, 5, tzinfo=UTC))
    view = unified.create_unified_view(wh, ds)
    (count,), = wh.query(f"SELECT COUNT(*) FROM {wh.table_ref(view)}")
    assert count == 48 * 2 + 1  # every run once: the second run is in both sources
    latest = unified.create_latest_view(wh, ds)
    assert latest == "bmrs_disebsp_latest"
    got = rows(wh, f"FROM {wh.table_ref(latest)} ORDER BY 1", "settlementPeriod", "systemSellPrice")
    assert len(got) == 48 and got[4] == (5, 70.0) and {p for n, p in got if n != 5} == {60.0}
    assert quality.duplicate_keys(wh, latest, ds, list(ds.latest_key)).passed
    assert not quality.duplicate_keys(wh, view, ds, list(ds.latest_key)).passed  # the view keeps every run


def test_boalf_amendment_wins_whatever_the_order_and_remit_latest_revision(any_warehouse):
    wh = any_warehouse
    boalf, remit = REGISTRY["BOALF"], REGISTRY["REMIT"]
    acceptance = {"dataset": "BOALF", "settlementDate": "2025-06-01", "settlementPeriodFrom": 20, "settlementPeriodTo": 20,
                  "timeFrom": "2025-06-01T09:30:00Z", "timeTo": "2025-06-01T10:00:00Z", "acceptanceNumber": 7,
                  "acceptanceTime": "2025-06-01T09:00:00Z", "bmUnit": "T_X-1"}
    load_iris(wh, boalf, {
        "BOALF_202506010905_amd.json": [acceptance | {"amendmentFlag": "AMD", "levelFrom": 80, "levelTo": 80}],
        "BOALF_202506010910_ori.json": [acceptance | {"amendmentFlag": "ORI", "levelFrom": 50, "levelTo": 50}],
    }, ingested_at=dt.datetime(2025, 6, 1, 9, 11, tzinfo=UTC))
    view = unified.create_unified_view(wh, boalf)
    assert rows(wh, f"FROM {wh.table_ref(view)}", "amendmentFlag", "levelFrom") == [("AMD", 80)]

    def revision(n, capacity):
        return {"dataset": "REMIT", "mrid": "M-1", "revisionNumber": n, "publishTime": f"2025-06-0{n}T10:00:00Z",
                "eventStartTime": "2025-06-10T00:00:00Z", "availableCapacity": capacity}

    load_history(wh, remit, dt.date(2025, 6, 1), dt.date(2025, 6, 1), [revision(1, 100.0)],
                 fetched_at=dt.datetime(2025, 6, 2, 6, 0, tzinfo=UTC))
    load_iris(wh, remit, {"REMIT_202506021000_r2.json": [revision(2, 50.0)]},
              ingested_at=dt.datetime(2025, 6, 2, 10, 1, tzinfo=UTC))
    unified.create_unified_view(wh, remit)
    latest = unified.create_latest_view(wh, remit)
    assert latest == "bmrs_remit_latest"
    assert rows(wh, f"FROM {wh.table_ref(latest)}", "revisionNumber", "availableCapacity", "source") == [(2, 50.0, "IRIS")]


def legacy_fuelinst_table(wh):
    """A historic table as the earlier pipeline left it: DATETIME/naive and text times, a missing column,
    numbers as text, its own `_`-prefixed columns, no provenance columns."""
    if wh.dialect == "bigquery":
        ddl = (f"CREATE TABLE {wh.table_ref('bmrs_fuelinst')} (startTime DATETIME, fuelType STRING, generation STRING,"
               " settlementDate STRING, settlementPeriod INT64, _window_from_utc STRING, _hash STRING)")
        wh.client.query(ddl).result()
        values = ("(DATETIME '2025-06-01 10:00:00', 'WIND', '1500', '2025-06-01', 23, 'x', 'h1'),"
                  " (DATETIME '2025-06-01 10:05:00', 'WIND', 'n/a', '2025-06-01', 23, 'x', 'h2')")
        wh.client.query(f"INSERT INTO {wh.table_ref('bmrs_fuelinst')} VALUES {values}").result()
    else:
        wh.con.execute('CREATE TABLE bmrs_fuelinst ("startTime" TIMESTAMP, "fuelType" VARCHAR, generation VARCHAR,'
                       ' "settlementDate" VARCHAR, "settlementPeriod" BIGINT, _window_from_utc VARCHAR, _hash VARCHAR)')
        wh.con.execute("INSERT INTO bmrs_fuelinst VALUES ('2025-06-01 10:00:00', 'WIND', '1500', '2025-06-01', 23, 'x', 'h1'),"
                       " ('2025-06-01 10:05:00', 'WIND', 'n/a', '2025-06-01', 23, 'x', 'h2')")
        wh._columns_loaded = False


def test_a_legacy_historic_table_is_adapted_not_refused(any_warehouse):
    wh, ds = any_warehouse, REGISTRY["FUELINST"]
    legacy_fuelinst_table(wh)
    t = dt.datetime(2025, 6, 1, 10, 5, tzinfo=UTC)
    load_iris(wh, ds, {"FUELINST_202506011010_a.json": [fuelinst(t, "WIND", 1600)]},
              ingested_at=dt.datetime(2025, 6, 1, 10, 11, tzinfo=UTC))
    view = unified.create_unified_view(wh, ds)
    got = rows(wh, f"FROM {wh.table_ref(view)} ORDER BY 1", "startTime", "generation", "settlementDate", "publishTime", "source")
    assert got == [
        # naive times are UTC; text numbers and dates converted; the missing publishTime is NULL
        (dt.datetime(2025, 6, 1, 10, 0, tzinfo=UTC), 1500, dt.date(2025, 6, 1), None, "HISTORIC"),
        # the same reading from IRIS: observed later than a legacy row of unknown age, so it wins
        (t, 1600, dt.date(2025, 6, 1), t + FIVE_MINUTES, "IRIS"),
    ]


def test_a_column_one_source_widened_is_wide_in_the_view(any_warehouse):
    wh, ds = any_warehouse, REGISTRY["FUELINST"]
    t = dt.datetime(2025, 6, 1, 10, 0, tzinfo=UTC)
    load_history(wh, ds, dt.date(2025, 6, 1), dt.date(2025, 6, 1), [fuelinst(t, "WIND", 1500)], fetched_at=t)
    # a fraction in the declared INT64 field: the loader widens the IRIS column to FLOAT64
    load_iris(wh, ds, {"FUELINST_202506011010_a.json": [fuelinst(t + FIVE_MINUTES, "WIND", 1500.5)]},
              ingested_at=t + dt.timedelta(minutes=11))
    assert wh.table_columns(ds.table_name)["generation"] == "FLOAT64"
    view = unified.create_unified_view(wh, ds)
    assert unified.view_types(wh, ds)["generation"] == "FLOAT64"
    assert sorted(r[0] for r in rows(wh, f"FROM {wh.table_ref(view)}", "generation")) == [1500.0, 1500.5]  # not rounded
    unified.replace_dedup_days(wh, ds, dt.date(2025, 6, 1), dt.date(2025, 6, 1))
    assert wh.table_columns(unified.dedup_name(ds))["generation"] == "FLOAT64"


def test_history_is_never_written_into_a_legacy_table(any_warehouse):
    wh, ds = any_warehouse, REGISTRY["FUELINST"]
    legacy_fuelinst_table(wh)
    t = dt.datetime(2025, 6, 1, 10, 0, tzinfo=UTC)
    with pytest.raises(ValueError, match=r"bmrs_fuelinst has a legacy layout \(startTime is (DATETIME|TIMESTAMP), not TIMESTAMP"):
        load_history(wh, ds, dt.date(2025, 6, 1), dt.date(2025, 6, 1), [fuelinst(t, "WIND", 1)], fetched_at=t)
    (count,), = wh.query(f"SELECT COUNT(*) FROM {wh.table_ref('bmrs_fuelinst')}")
    assert count == 2  # untouched


def test_any_keyed_dataset_can_have_a_dedup_table(any_warehouse):
    """FREQ has no settlement date: its days are its readings' times in Europe/London (23 hours in March)."""
    wh, ds = any_warehouse, REGISTRY["FREQ"]
    day = dt.date(2025, 3, 30)
    start, end = settlement_day_bounds(day)
    readings = [{"dataset": "FREQ", "measurementTime": iso(t), "frequency": 50.0} for t in every_five_minutes(start, end)]
    load_iris(wh, ds, {"FREQ_202503300000_a.json": readings, "FREQ_202503300001_b.json": readings[:10]},
              ingested_at=dt.datetime(2025, 3, 31, 0, 0, tzinfo=UTC))
    unified.create_unified_view(wh, ds)
    assert unified.replace_dedup_days(wh, ds, day, day) == 23 * 12
    assert quality.duplicate_keys(wh, unified.dedup_name(ds), ds, ["measurementTime"]).passed


@pytest.mark.parametrize("code", ["SYS_WARN"])
def test_a_keyless_dataset_drops_exact_copies_only(any_warehouse, code):
    wh, ds = any_warehouse, REGISTRY[code]
    warning = {"dataset": "SYS_WARN", "publishTime": "2025-06-01T10:00:00Z", "warningType": "ELECTRICITY MARGIN NOTICE",
               "warningText": "NATIONAL GRID NOTIFICATION of an Electricity Margin Notice"}
    load_iris(wh, ds, {"SYS_WARN_202506011000_a.json": [warning], "SYS_WARN_202506011000_b.json": [warning],
                       "SYS_WARN_202506011001_c.json": [warning | {"warningText": "cancelled"}]},
              ingested_at=dt.datetime(2025, 6, 1, 10, 2, tzinfo=UTC))
    view = unified.create_unified_view(wh, ds)
    assert sorted(r[0] for r in rows(wh, f"FROM {wh.table_ref(view)}", "warningText")) == [
        "NATIONAL GRID NOTIFICATION of an Electricity Margin Notice", "cancelled"]


def test_every_dataset_has_views_that_compile_and_read(any_warehouse):
    """All 87 unified views, every latest and resolved view, created over empty tables and read once."""
    from iris_pipeline import resolved

    wh = any_warehouse
    names = [unified.create_unified_view(wh, ds) for ds in REGISTRY]
    names += [unified.create_latest_view(wh, ds) for ds in unified.latest_datasets(REGISTRY)]
    names += [resolved.create_resolved_view(wh, REGISTRY[code]) for code in unified.RESOLVED]
    assert len(set(names)) == len(REGISTRY) + len(unified.latest_datasets(REGISTRY)) + 2
    for name in names:
        assert wh.query(f"SELECT COUNT(*) FROM {wh.table_ref(name)}") == [(0,)], name
