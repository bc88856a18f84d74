"""The unified layer through Dagster on a real DuckDB file: the views multi-asset (subsettable, checks
alone), the dedup tables per settlement-day partition with blocking checks that pass and fail, and the
schedules that keep today's partition fresh."""

import datetime as dt

import dagster as dg
import pytest

from iris_pipeline.defs.resources import DERIVED_POOL, WAREHOUSE_POOL, DuckDBWarehouseResource
from iris_pipeline.defs.unified import build_dedup_assets, build_dedup_schedules, build_unified_views, build_views_automation
from iris_pipeline.defs.unified.checks import KEY_ASSUMPTION_HOLDS, NO_DUPLICATE_KEYS, SETTLEMENT_DAYS_COMPLETE
from iris_pipeline.registry import Registry, load_registry
from iris_pipeline.warehouse.duckdb_warehouse import DuckDBWarehouse
from iris_pipeline_tests.test_unified import mid
from iris_pipeline_tests.timeline import load_history, load_iris

UTC = dt.timezone.utc
START = dt.date(2025, 1, 1)
DAY = dt.date(2025, 6, 1)
FULL = load_registry()


@pytest.fixture
def registry():
    return Registry({code: FULL[code] for code in ("MID", "DISEBSP", "BOAV", "FUELINST", "MELS")})


@pytest.fixture
def path(tmp_path):
    return tmp_path / "w.duckdb"


def materialize(assets, path, selection=None, partition=None):
    return dg.materialize(
        assets, selection=selection, partition_key=partition, instance=dg.DagsterInstance.ephemeral(),
        resources={"warehouse": DuckDBWarehouseResource(path=str(path))}, raise_on_error=False,
    )


def checks_of(result):
    return {(e.asset_key.path[-1], e.check_name): e.passed for e in result.get_asset_check_evaluations()}


def test_views_are_created_by_one_subsettable_step_with_their_checks(registry, path):
    views = build_unified_views(registry)
    keys = {k.path[-1] for k in views.keys}
    assert keys == {"bmrs_mid_unified", "bmrs_disebsp_unified", "bmrs_boav_unified", "bmrs_fuelinst_unified",
                    "bmrs_mels_unified", "bmrs_disebsp_latest", "bmrs_boav_latest", "bmrs_mels_resolved"}
    assert views.op.pool == WAREHOUSE_POOL  # DuckDB: one writer process, so they queue with the loads
    # BigQuery: they never hold up the real-time ingest, and queue only among themselves
    assert build_unified_views(registry, "bigquery").op.pool == DERIVED_POOL
    assert {a.op.pool for a in build_dedup_assets(registry, START, "bigquery")} == {DERIVED_POOL}
    specs = {(c.asset_key.path[-1], c.name): c for c in views.check_specs}
    assert specs[("bmrs_disebsp_latest", NO_DUPLICATE_KEYS)].blocking
    assert specs[("bmrs_mels_resolved", NO_DUPLICATE_KEYS)].blocking
    assert specs[("bmrs_disebsp_latest", SETTLEMENT_DAYS_COMPLETE)].blocking  # one price per period
    assert ("bmrs_boav_latest", SETTLEMENT_DAYS_COMPLETE) not in specs  # only periods with acceptances
    assert not specs[("bmrs_boav_unified", KEY_ASSUMPTION_HOLDS)].blocking  # an assumption warns only
    with DuckDBWarehouse(path) as wh:  # two bid/offer rows under one key: the assumed key misses a column
        row = {"settlementDate": "2025-06-01", "settlementPeriod": 3, "bmUnit": "T_X-1", "acceptanceId": 5,
               "acceptanceDuration": "S", "createdDateTime": "2025-06-01T01:14:00Z"}
        load_iris(wh, FULL["BOAV"], {"BOAV_202506010114_a.json": [row | {"totalVolumeAccepted": 10.0},
                                                                  row | {"totalVolumeAccepted": -4.0}]},
                  ingested_at=dt.datetime(2025, 6, 1, 1, 15, tzinfo=UTC))

    result = materialize([views], path, selection=[dg.AssetKey("bmrs_disebsp_unified"), dg.AssetKey("bmrs_disebsp_latest")])
    assert result.success
    with DuckDBWarehouse(path) as wh:
        assert {"bmrs_disebsp_unified", "bmrs_disebsp_latest"} <= wh.tables()
        assert "bmrs_mid_unified" not in wh.tables()  # not selected, not created
    assert checks_of(result) == {("bmrs_disebsp_latest", NO_DUPLICATE_KEYS): True,
                                 ("bmrs_disebsp_latest", SETTLEMENT_DAYS_COMPLETE): True}

    result = materialize([views], path)
    assert result.success
    assert checks_of(result)[("bmrs_boav_unified", KEY_ASSUMPTION_HOLDS)] is False
    assert checks_of(result)[("bmrs_mels_resolved", NO_DUPLICATE_KEYS)] is True
    with DuckDBWarehouse(path) as wh:
        assert "bmrs_mels_resolved" in wh.tables()

    # the hourly checks job runs the checks alone: no view is re-created
    sensor, job, schedule = build_views_automation(views)
    defs = dg.Definitions(assets=[views], jobs=[job], sensors=[sensor], schedules=[schedule],
                          resources={"warehouse": DuckDBWarehouseResource(path=str(path))})
    checks_only = defs.resolve_job_def(job.name).execute_in_process(instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)
    assert checks_only.success and not checks_only.get_asset_materialization_events()
    assert len(checks_only.get_asset_check_evaluations()) == len(views.check_specs)
    assert all(spec.automation_condition is not None for spec in views.specs)


def test_dedup_partition_checks_pass_then_block_on_a_broken_day(registry, path):
    dedup = build_dedup_assets(registry, START)
    assert [a.key.path[-1] for a in dedup] == ["bmrs_fuelinst_dedup", "bmrs_mid_dedup"]
    mid_dedup = dedup[1]
    with DuckDBWarehouse(path) as wh:
        load_history(wh, FULL["MID"], DAY, DAY, [mid(DAY, p, prov, 50.0, 10.0) for p in range(1, 49)
                                                 for prov in ("APXMIDP", "N2EXMIDP")],
                     fetched_at=dt.datetime(2025, 6, 2, 6, 0, tzinfo=UTC))
    result = materialize([mid_dedup], path, partition=DAY.isoformat())
    assert result.success
    assert checks_of(result) == {("bmrs_mid_dedup", NO_DUPLICATE_KEYS): True, ("bmrs_mid_dedup", SETTLEMENT_DAYS_COMPLETE): True}
    (event,) = result.get_asset_materialization_events()
    assert event.materialization.metadata["dagster/row_count"].value == 96

    # an impossible period 49 on a 48-period day arrives from IRIS: the blocking check fails
    with DuckDBWarehouse(path) as wh:
        load_iris(wh, FULL["MID"], {"MID_202506020000_x.json": [mid(DAY, 49, "APXMIDP", 1.0, 1.0)]},
                  ingested_at=dt.datetime(2025, 6, 2, 0, 1, tzinfo=UTC))
    result = materialize([mid_dedup], path, partition=DAY.isoformat())
    assert checks_of(result)[("bmrs_mid_dedup", SETTLEMENT_DAYS_COMPLETE)] is False
    assert [e for e in result.get_asset_check_evaluations() if not e.passed][0].severity == dg.AssetCheckSeverity.ERROR


def test_today_is_refreshed_every_five_minutes_and_yesterday_after_the_history_fetches(registry):
    dedup = build_dedup_assets(registry, START)
    job, schedules = build_dedup_schedules(dedup, START)
    by_name = {s.name: s for s in schedules}
    assert by_name["dedup_today"].cron_schedule == "*/5 * * * *"
    at = dt.datetime(2025, 6, 1, 23, 30, tzinfo=UTC)  # 00:30 on 2 June in London (BST)
    defs = dg.Definitions(assets=dedup, jobs=[job], schedules=schedules,
                          resources={"warehouse": DuckDBWarehouseResource(path="unused.duckdb")})
    repository = defs.get_repository_def()
    with dg.build_schedule_context(scheduled_execution_time=at, repository_def=repository) as context:
        (request,) = by_name["dedup_today"].evaluate_tick(context).run_requests
        assert request.partition_key == "2025-06-02"
        (request,) = by_name["dedup_yesterday"].evaluate_tick(context).run_requests
        assert request.partition_key == "2025-06-01"
    assert "2025-06-02" in job.partitions_def.get_partition_keys(current_time=at)  # today's partition exists


def test_a_view_is_asked_for_again_only_when_its_sql_may_have_changed(registry):
    """The code version follows the columns, keys, templates and rendering code, not the descriptions."""
    import dataclasses

    from iris_pipeline.defs.unified.views import _code_version

    mid = registry["MID"]
    version = _code_version(mid, "unified_view.sql")
    described = dataclasses.replace(mid, columns=tuple(dataclasses.replace(c, description="new words") for c in mid.columns))
    assert _code_version(described, "unified_view.sql") == version
    rekeyed = dataclasses.replace(mid, natural_key=mid.natural_key[:2])
    assert _code_version(rekeyed, "unified_view.sql") != version
    assert _code_version(mid, "latest_view.sql") != version


def test_the_unified_layer_materialises_on_bigquery(registry, bigquery_emulator, bq_dataset):
    """The same assets against the BigQuery emulator: views, a dedup partition and their checks."""
    from iris_pipeline.defs.resources import BigQueryWarehouseResource

    resource = BigQueryWarehouseResource(project=bigquery_emulator.project, dataset=bq_dataset,
                                         emulator_host=bigquery_emulator.host, min_flush_seconds=0)
    with resource.open() as wh:
        load_history(wh, FULL["MID"], DAY, DAY, [mid(DAY, p, prov, 50.0, 10.0) for p in range(1, 49)
                                                 for prov in ("APXMIDP", "N2EXMIDP")],
                     fetched_at=dt.datetime(2025, 6, 2, 6, 0, tzinfo=UTC))
    views = build_unified_views(registry, "bigquery")
    mid_dedup = build_dedup_assets(registry, START, "bigquery")[1]
    for assets, partition in (([views], None), ([mid_dedup], DAY.isoformat())):
        result = dg.materialize(assets, partition_key=partition, instance=dg.DagsterInstance.ephemeral(),
                                resources={"warehouse": resource}, raise_on_error=False)
        assert result.success
        assert all(e.passed for e in result.get_asset_check_evaluations()
                   if e.check_name != KEY_ASSUMPTION_HOLDS), checks_of(result)
    (event,) = result.get_asset_materialization_events()
    assert event.materialization.metadata["dagster/row_count"].value == 96
    assert event.materialization.metadata["dagster/table_name"].value.endswith(f"{bq_dataset}.bmrs_mid_dedup")
    with resource.open() as wh:
        assert {"bmrs_mels_resolved", "bmrs_disebsp_latest", "bmrs_mid_unified"} <= wh.tables()
