"""`bmrs_<code>_dedup`: the unified rows of a keyed dataset as a daily-partitioned table (FUELINST, MID).

A partition is a settlement day in Europe/London, replaced in one transaction from the unified view,
so re-running a day never doubles it. Today's partition is refreshed every 5 minutes (so it is never
more than ~10 minutes behind the IRIS tables); yesterday's again after midnight and after the morning
and evening history fetches, which bring the API's (and settlement's) later versions.
"""


import datetime as dt
from zoneinfo import ZoneInfo

import dagster as dg

from iris_pipeline import unified
from iris_pipeline.defs.resources import derived_pool
from iris_pipeline.defs.unified.checks import NO_DUPLICATE_KEYS, SETTLEMENT_DAYS_COMPLETE, CheckTarget, check_result, check_spec
from iris_pipeline.defs.unified.views import GROUP, OWNERS, unified_key
from iris_pipeline.historic import day_range
from iris_pipeline.registry import Dataset, Registry

LONDON = ZoneInfo("Europe/London")
JOB_NAME = "unified_dedup"
# Dataset -> the column a settlement day's periods are counted per (MID: each data provider's series).
SERIES = {"MID": "dataProvider", "mibm_mid": "dataProvider"}


def dedup_partitions(start: dt.date) -> dg.DailyPartitionsDefinition:
    # end_offset=1: today's partition exists while today is still filling
    return dg.DailyPartitionsDefinition(start_date=start.isoformat(), timezone="Europe/London", end_offset=1)


def dedup_key(dataset: Dataset) -> dg.AssetKey:
    return dg.AssetKey(unified.dedup_name(dataset))


def _checks(dataset: Dataset) -> list[str]:
    return [NO_DUPLICATE_KEYS] + ([SETTLEMENT_DAYS_COMPLETE] if dataset.column("settlementPeriod") else [])


def _build(dataset: Dataset, daily: dg.DailyPartitionsDefinition, storage_kind: str) -> dg.AssetsDefinition:
    key = dedup_key(dataset)
    flags = "".join(f" Flag `{name}`: {about}" for name, _, about in unified.DEDUP_FLAGS.get(dataset.code, ()))

    @dg.asset(
        key=key,
        deps=[unified_key(dataset)],
        partitions_def=daily,
        backfill_policy=dg.BackfillPolicy.multi_run(max_partitions_per_run=31),
        pool=derived_pool(storage_kind),
        group_name=GROUP,
        kinds={"sql", storage_kind},
        owners=OWNERS,
        check_specs=[check_spec(name, key) for name in _checks(dataset)],
        required_resource_keys={"warehouse"},
        description=f"{dataset.name} ({dataset.code}), one row per ({', '.join(dataset.natural_key)}): the"
        f" unified view's rows (history and IRIS, the latest version of each) as a table, one partition per"
        f" settlement day (Europe/London), replaced atomically.{flags}",
    )
    def dedup(context: dg.AssetExecutionContext):
        keys = context.partition_key_range
        first, last = dt.date.fromisoformat(keys.start), dt.date.fromisoformat(keys.end)
        table = unified.dedup_name(dataset)
        with context.resources.warehouse.open() as warehouse:
            unified.create_unified_view(warehouse, dataset)  # cheap, and the table never waits for the view asset
            rows = unified.replace_dedup_days(warehouse, dataset, first, last)
            yield dg.MaterializeResult(asset_key=key, metadata={
                "dagster/table_name": warehouse.qualified_name(table), "dagster/row_count": rows,
                "days": (last - first).days + 1})
            within = day_range(dataset, first, last)  # check the days just written, not the whole history
            target = CheckTarget(table, dataset, dataset.natural_key, SERIES.get(dataset.code))
            for name in _checks(dataset):
                yield check_result(name, key, warehouse, target, within)

    return dedup


def build_dedup_assets(registry: Registry, start: dt.date, storage_kind: str = "duckdb") -> list[dg.AssetsDefinition]:
    daily = dedup_partitions(start)
    return [_build(ds, daily, storage_kind) for ds in unified.dedup_datasets(registry)]


def build_dedup_schedules(assets: list[dg.AssetsDefinition], start: dt.date) -> tuple[dg.JobDefinition, list[dg.ScheduleDefinition]]:
    job = dg.define_asset_job(
        JOB_NAME, selection=dg.AssetSelection.assets(*assets), partitions_def=dedup_partitions(start),
        executor_def=dg.in_process_executor, tags={"dagster/max_runtime": "1800"},
        description="Replace settlement days of the dedup tables from the unified views.",
    )

    def day_request(days_back: int):
        def requests(context: dg.ScheduleEvaluationContext):
            day = context.scheduled_execution_time.astimezone(LONDON).date() - dt.timedelta(days=days_back)
            if day < start:
                return dg.SkipReason(f"{day} is before the first partition ({start})")
            return dg.RunRequest(partition_key=day.isoformat())
        return requests

    schedules = [
        dg.ScheduleDefinition(
            name="dedup_today", job=job, cron_schedule="*/5 * * * *", execution_timezone="Europe/London",
            execution_fn=day_request(0), default_status=dg.DefaultScheduleStatus.RUNNING,
            description="Today's partition, every 5 minutes: never more than ~10 minutes behind IRIS."),
        dg.ScheduleDefinition(
            name="dedup_yesterday", job=job, cron_schedule=["10 0 * * *", "45 7 * * *", "45 21 * * *"],
            execution_timezone="Europe/London", execution_fn=day_request(1),
            default_status=dg.DefaultScheduleStatus.RUNNING,
            description="Yesterday's partition after midnight, and after the morning and evening history fetches."),
    ]
    return job, schedules
