"""History from the Insights API: per dataset, a daily-partitioned extract and the `bmrs_<code>` table.

Each partition is a settlement day in Europe/London. Two assets per dataset so that the slow part
(the API, minutes for a month of BOD's one-hour windows) runs outside the warehouse pool, and the
table asset holds the pool only while it replaces its days (seconds): a backfill never starves the
real-time ingest. The extracts are files under `<IRIS_SPOOL_DIR>/historic/<CODE>/<day>.json`.
"""


import datetime as dt

import dagster as dg

from iris_pipeline.defs.resources import WAREHOUSE_POOL
from iris_pipeline.historic import extract_days, load_extracted_days
from iris_pipeline.registry import Dataset, Registry

GROUP = "historic"
EXTRACT_GROUP = "historic_extracts"
OWNERS = ["team:iris-pipeline"]
# A backfill of a year runs as 12 runs of a month (one API fetch and one transaction per dataset each),
# not 365 runs of a day.
BACKFILL_POLICY = dg.BackfillPolicy.multi_run(max_partitions_per_run=31)
# Fetched every morning by default: the datasets analysts reach for first (domain.md §8).
CORE = ("FUELINST", "FUELHH", "FREQ", "MID", "BOALF", "BOD", "PN", "QPN", "MELS", "MILS", "DISBSAD",
        "NETBSAD", "DISEBSP", "REMIT", "INDGEN", "INDO", "ITSDO", "WINDFOR", "TEMP", "SYS_WARN")
# Re-run on D+1 by settlement (a later run of the same periods): fetched again in the evening.
REVISED_NEXT_DAY = ("DISEBSP", "DISBSAD", "NETBSAD")


def partitions(start: dt.date) -> dg.DailyPartitionsDefinition:
    return dg.DailyPartitionsDefinition(start_date=start.isoformat(), timezone="Europe/London")


def extract_key(dataset: Dataset) -> dg.AssetKey:
    return dg.AssetKey(f"{dataset.historic_table_name}_api_extract")


def _days(context: dg.AssetExecutionContext) -> tuple[dt.date, dt.date]:
    keys = context.partition_key_range
    return dt.date.fromisoformat(keys.start), dt.date.fromisoformat(keys.end)


def _build_pair(dataset: Dataset, daily: dg.DailyPartitionsDefinition, storage_kind: str) -> list[dg.AssetsDefinition]:
    api = dataset.api

    @dg.asset(
        key=extract_key(dataset),
        partitions_def=daily,
        backfill_policy=BACKFILL_POLICY,
        group_name=EXTRACT_GROUP,
        kinds={"python"},
        owners=OWNERS,
        required_resource_keys={"spool", "insights_api"},
        description=f"{dataset.name} ({dataset.code}) as the Insights API serves it ({api.path}), one JSON file"
        f" per settlement day. Requests of at most {api.max_window_seconds // 60} min each ({api.max_window_source}).",
    )
    def extract(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        first, last = _days(context)
        with context.resources.insights_api.client() as client:
            counts = extract_days(context.resources.spool.root, dataset, first, last, client.fetch)
        return dg.MaterializeResult(metadata={"records": sum(counts.values()), "days": len(counts)})

    @dg.asset(
        key=dg.AssetKey(dataset.historic_table_name),
        deps=[extract_key(dataset)],
        partitions_def=daily,
        backfill_policy=BACKFILL_POLICY,
        pool=WAREHOUSE_POOL,
        group_name=GROUP,
        kinds={"python", storage_kind},
        owners=OWNERS,
        required_resource_keys={"spool", "warehouse"},
        description=f"{dataset.name} ({dataset.code}) history from the Insights API, typed like"
        f" `{dataset.table_name}`. One partition per settlement day (Europe/London); materialising a day"
        f" replaces it atomically, and a day with no data is an empty day."
        + (" The API serves only the latest version of each record." if api.versions == "latest" else ""),
    )
    def table(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        first, last = _days(context)
        with context.resources.warehouse.open() as warehouse:
            loaded = load_extracted_days(warehouse, context.resources.spool.root, dataset, first, last)
            name = warehouse.qualified_name(dataset.historic_table_name)
            usage = warehouse.usage()
        return dg.MaterializeResult(
            metadata={
                "dagster/table_name": name,
                "rows": sum(loaded.rows_by_day.values()),
                "rows_by_day": {day.isoformat(): n for day, n in loaded.rows_by_day.items()},
                "records_outside_the_days": loaded.records_outside,
            } | {f"run_{k}": v for k, v in sorted(usage.items())}
        )

    return [extract, table]


def build_historic_assets(registry: Registry, start: dt.date, storage_kind: str = "duckdb") -> list[dg.AssetsDefinition]:
    daily = partitions(start)
    return [a for ds in registry if ds.api is not None for a in _build_pair(ds, daily, storage_kind)]


def build_historic_schedules(registry: Registry, start: dt.date) -> tuple[list, list[dg.ScheduleDefinition]]:
    """Yesterday's partitions every morning (the core datasets on by default, the rest off), and the
    datasets settlement revises next day again in the evening."""
    daily = partitions(start)

    def selection(codes) -> dg.AssetSelection:
        keys = [k for ds in registry if ds.api is not None and ds.code in codes
                for k in (extract_key(ds), dg.AssetKey(ds.historic_table_name))]
        return dg.AssetSelection.assets(*keys)

    others = [ds.code for ds in registry if ds.api is not None and ds.code not in CORE]
    jobs, schedules = [], []
    for name, codes, hour, status in (
        ("historic_core", CORE, 6, dg.DefaultScheduleStatus.RUNNING),
        ("historic_other", others, 6, dg.DefaultScheduleStatus.STOPPED),
        ("historic_revised", REVISED_NEXT_DAY, 20, dg.DefaultScheduleStatus.RUNNING),
    ):
        job = dg.define_asset_job(name, selection=selection(codes), partitions_def=daily,
                                  executor_def=dg.in_process_executor, tags={"dagster/max_runtime": "3600"})
        jobs.append(job)
        schedules.append(dg.build_schedule_from_partitioned_job(
            job, hour_of_day=hour, minute_of_hour=15, default_status=status, name=f"{name}_daily"))
    return jobs, schedules
