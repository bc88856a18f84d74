"""The historic assets through Dagster, against a local server speaking the Insights API: rows per
settlement-day partition, idempotent re-materialisation, a several-day backfill in one run."""

import datetime as dt

import dagster as dg
import pytest

from iris_pipeline.defs.historic import BACKFILL_POLICY, build_historic_assets, build_historic_schedules, extract_key
from iris_pipeline.defs.resources import WAREHOUSE_POOL, DuckDBWarehouseResource, InsightsApiResource, SpoolResource
from iris_pipeline.registry import Registry, load_registry
from iris_pipeline.warehouse.duckdb_warehouse import DuckDBWarehouse
from iris_pipeline_tests.fake_insights_api import FakeInsightsApi

START = dt.date(2025, 3, 1)


@pytest.fixture
def registry():
    full = load_registry()
    return Registry({code: full[code] for code in ("FREQ", "BOD", "FUELINST")})


@pytest.fixture
def run(registry, tmp_path):
    assets = build_historic_assets(registry, START)
    api = FakeInsightsApi().__enter__()

    def materialize(codes, first, last=None):
        keys = [k for code in codes for k in (extract_key(registry[code]), dg.AssetKey(registry[code].historic_table_name))]
        tags = {"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last or first}
        return dg.materialize(
            assets, selection=keys, tags=tags, instance=dg.DagsterInstance.ephemeral(),
            resources={"spool": SpoolResource(root=str(tmp_path / "spool")),
                       "warehouse": DuckDBWarehouseResource(path=str(tmp_path / "w.duckdb")),
                       "insights_api": InsightsApiResource(base_url=api.base_url)},
        )

    yield materialize
    api.__exit__(None, None, None)


def _per_day(path, table, column):
    with DuckDBWarehouse(path) as wh:
        return dict(wh.query(
            f"SELECT CAST(timezone('Europe/London', {column}) AS DATE), count(*) FROM {table} GROUP BY 1 ORDER BY 1"
        ) if column != "settlementDate" else wh.query(f"SELECT settlementDate, count(*) FROM {table} GROUP BY 1 ORDER BY 1"))


def test_a_partition_holds_its_settlement_day_and_rematerialising_replaces_it(run, tmp_path):
    for _ in range(2):
        result = run(["FREQ", "BOD"], "2025-03-30")
        assert result.success
    day = dt.date(2025, 3, 30)  # the clocks go forward: 23 hours, 46 periods
    assert _per_day(tmp_path / "w.duckdb", "bmrs_freq", "measurementTime") == {day: 23 * 240}
    assert _per_day(tmp_path / "w.duckdb", "bmrs_bod", "settlementDate") == {day: 46 * 4}
    (bod,) = [e for e in result.get_asset_materialization_events() if e.asset_key == dg.AssetKey("bmrs_bod")]
    metadata = {k: v.value for k, v in bod.materialization.metadata.items()}
    assert metadata["rows_by_day"] == {"2025-03-30": 184} and metadata["dagster/table_name"] == "main.bmrs_bod"
    assert not list((tmp_path / "spool" / "historic").rglob("*.json"))  # extracts go once loaded


def test_a_table_partition_without_its_extract_says_what_to_run(run, registry, tmp_path):
    assets = build_historic_assets(registry, START)
    result = dg.materialize(
        assets, selection=[dg.AssetKey("bmrs_freq")], partition_key="2025-03-30", raise_on_error=False,
        instance=dg.DagsterInstance.ephemeral(),
        resources={"spool": SpoolResource(root=str(tmp_path / "spool")),
                   "warehouse": DuckDBWarehouseResource(path=str(tmp_path / "w.duckdb")),
                   "insights_api": InsightsApiResource()},
    )
    assert not result.success
    (failure,) = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert "materialise bmrs_freq_api_extract for that day first" in str(failure.event_specific_data.error)


def test_a_backfill_of_several_days_runs_as_one_run_with_one_replacement(run, tmp_path):
    result = run(["FUELINST", "BOD"], "2025-10-25", "2025-10-27")
    assert result.success
    days = {dt.date(2025, 10, 25): 48, dt.date(2025, 10, 26): 50, dt.date(2025, 10, 27): 48}
    assert _per_day(tmp_path / "w.duckdb", "bmrs_bod", "settlementDate") == {d: n * 4 for d, n in days.items()}
    assert _per_day(tmp_path / "w.duckdb", "bmrs_fuelinst", "settlementDate") == {d: n * 6 * 3 for d, n in days.items()}
    assert len({e.partition for e in result.get_asset_materialization_events()}) == 3  # every day recorded


def test_extracts_fetch_outside_the_pool_and_tables_write_inside_it(registry):
    assets = {a.key: a for a in build_historic_assets(registry, START)}
    freq = registry["FREQ"]
    table, extract = assets[dg.AssetKey("bmrs_freq")], assets[extract_key(freq)]
    assert table.op.pool == WAREHOUSE_POOL and extract.op.pool is None
    assert table.backfill_policy == BACKFILL_POLICY == dg.BackfillPolicy.multi_run(max_partitions_per_run=31)
    assert table.partitions_def.timezone == "Europe/London" and table.partitions_def.start.date() == START
    assert extract_key(freq) in table.dependency_keys


def test_schedules_run_yesterday_and_revised_days_again(registry):
    jobs, schedules = build_historic_schedules(load_registry(), START)
    by_name = {s.name: s for s in schedules}
    assert by_name["historic_core_daily"].default_status == dg.DefaultScheduleStatus.RUNNING
    assert by_name["historic_other_daily"].default_status == dg.DefaultScheduleStatus.STOPPED
    assert by_name["historic_revised_daily"].cron_schedule == "15 20 * * *"
