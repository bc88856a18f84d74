"""Issue 9's "done when", end to end on a real DuckDB file: a backfill of several days from a local server
speaking the Insights API (the real client, the real historic load), then the simulated IRIS feed for
overlapping hours through the real loader; every unified view has one row per key and no gap at the seam."""

import datetime as dt

import pytest

from iris_pipeline import quality, unified
from iris_pipeline.historic import load_days
from iris_pipeline.insights_api import InsightsClient, settlement_day_bounds
from iris_pipeline.loader import load_spool
from iris_pipeline.registry import Registry, load_registry
from iris_pipeline.simulate import Simulator
from iris_pipeline.spool import Spool
from iris_pipeline.warehouse.duckdb_warehouse import DuckDBWarehouse
from iris_pipeline_tests.fake_insights_api import FakeInsightsApi

UTC = dt.timezone.utc
FIRST, LAST = dt.date(2025, 10, 24), dt.date(2025, 10, 26)  # ends on the 50-period Sunday
CODES = ("FREQ", "FUELINST", "MID", "DISEBSP", "BOD")
# IRIS from 20:00 on the last backfilled day (4 hours of overlap) into the next morning
IRIS_FROM = dt.datetime(2025, 10, 26, 20, 0, tzinfo=UTC)
IRIS_UNTIL = dt.datetime(2025, 10, 27, 6, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def warehouse_path(tmp_path_factory):
    root = tmp_path_factory.mktemp("seam")
    full = load_registry()
    with DuckDBWarehouse(root / "w.duckdb") as wh:
        with FakeInsightsApi() as api, InsightsClient(api.base_url, requests_per_second=50) as client:
            for code in CODES:
                load_days(wh, full[code], FIRST, LAST, client.fetch, now=dt.datetime(2025, 10, 27, 6, 30, tzinfo=UTC))
        spool = Spool(root / "spool")
        simulator = Simulator(Registry({code: full[code] for code in CODES}), seed=3, start=IRIS_FROM)
        for message in simulator.messages_due(IRIS_UNTIL):
            spool.write_incoming(message.dataset, message.file_name, message.body, durable=False)
        report = load_spool(spool, wh, workers=1)
        assert report.files_loaded > 100 and report.files_quarantined == 0 and not report.failed
        for code in CODES:
            unified.create_unified_view(wh, full[code])
    return root / "w.duckdb"


@pytest.mark.parametrize("code", CODES)
def test_one_row_per_key_from_both_sources(warehouse_path, code):
    ds = load_registry()[code]
    with DuckDBWarehouse(warehouse_path) as wh:
        finding = quality.duplicate_keys(wh, unified.unified_name(ds), ds, unified.fact_key(ds))
        assert finding.passed, finding.reason
        sources = dict(wh.query(f"SELECT source, count(*) FROM {unified.unified_name(ds)} GROUP BY 1"))
        assert sources.get("HISTORIC", 0) > 0 and sources.get("IRIS", 0) > 0, sources


def _largest_gap(wh, view, column, where=""):
    (gap,), = wh.query(
        f'SELECT max(gap) FROM (SELECT epoch("{column}") - lag(epoch("{column}")) OVER (ORDER BY "{column}") AS gap'
        f' FROM (SELECT DISTINCT "{column}" FROM {view} {where}))')
    return gap


def test_no_gap_at_the_seam(warehouse_path):
    start = settlement_day_bounds(FIRST)[0]
    with DuckDBWarehouse(warehouse_path) as wh:
        # 15-second frequency readings from the first backfilled day to the last IRIS message
        (first, last), = wh.query('SELECT min("measurementTime"), max("measurementTime") FROM bmrs_freq_unified')
        assert first == start and last >= IRIS_UNTIL - dt.timedelta(minutes=5)
        assert _largest_gap(wh, "bmrs_freq_unified", "measurementTime") == 15
        # 5-minute generation of a fuel type both sources carry
        assert _largest_gap(wh, "bmrs_fuelinst_unified", "startTime", "WHERE \"fuelType\" = 'CCGT'") == 300
        # every settlement period of the days both sources cover, for each MID provider
        unified.replace_dedup_days(wh, load_registry()["MID"], FIRST, LAST + dt.timedelta(days=1))
        gaps = quality.settlement_day_gaps(wh, "bmrs_mid_dedup", series_column="dataProvider")
        assert gaps.passed, gaps.reason
        periods = dict(wh.query('SELECT "settlementDate", count(DISTINCT "settlementPeriod") FROM bmrs_mid_dedup'
                                " WHERE \"dataProvider\" = 'APXMIDP' GROUP BY 1"))
        assert periods[LAST] == 50 and periods[FIRST] == 48
